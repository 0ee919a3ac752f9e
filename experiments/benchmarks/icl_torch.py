"""AD speed: our JAX Algorithm Distillation against a straightforward PyTorch one, same process.

Same model on both sides (the AD transformer of :func:`jaxrl_icl.icl.ad.make_model`: ALiBi,
a sliding window of one training context, the same initial parameters copied into the
torch model), on synthetic learning histories of Dark Room 9x9 shape (random positions,
actions and rewards: speed does not depend on content). The reference is
:mod:`experiments.bench_ref.torch_ad`, eager PyTorch (no ``torch.compile``) on CUDA when
torch sees a GPU, else on the CPU with torch's default thread count (``torch_threads``
sets another: on a CPU shared with other busy processes, torch's OpenMP threads can slow
down many times when one of its cores is taken, so compare with ``--torch-threads 1``).

* **training tokens/s**: ours is one jitted ``lax.scan`` of ``train_updates`` updates of
  :func:`jaxrl_icl.icl.ad.make_train` (compiled ahead, best of ``repeats``); torch is a
  Python loop of ``train_updates`` :func:`~experiments.bench_ref.torch_ad.train_step` calls
  (after one untimed step, best of ``repeats``). Tokens = updates x batch x context tokens.
* **evaluation env steps/s** for every task count N in ``num_tasks``: ours is jitted
  :func:`jaxrl_icl.icl.evaluate.evaluate` of :func:`~jaxrl_icl.icl.ad.make_agent` over N
  goals (one seed each, vmapped); torch is
  :func:`~experiments.bench_ref.torch_ad.evaluate` with batch N under
  ``torch.inference_mode`` (a Python loop over env steps). ``eval_episodes`` x 20 steps.

``scale``: ``"cpu"`` is the default :class:`experiments.darkroom_ad.DarkroomADConfig`
(step layout, width 64, 4 layers, 4 heads, batch 32, 80-token window); ``"paper"`` is
its :data:`~experiments.darkroom_ad.PAPER_FLAGS` (triplet layout, width 512, 4 layers,
4 heads, dropout 0.1, batch 128, 240-token window). Both sides compute in float32 unless
``bf16`` (training only: our ``OptimConfig.bf16``, torch autocast).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

import envs
from experiments.benchmarks.report import Skipped, row
from experiments.benchmarks.timing import time_jitted
from experiments.darkroom_ad import PAPER_FLAGS, DarkroomADConfig
from jaxrl_icl.config import ConfigError, field, require_positive
from jaxrl_icl.icl import ad
from jaxrl_icl.icl.evaluate import evaluate
from jaxrl_icl.run.config import parse_cli

SUITE = "icl-torch"
ENV = "darkroom-9x9"


@dataclasses.dataclass(frozen=True)
class ICLTorchBenchConfig:
    """AD training tokens/s and evaluation env steps/s: ours (JAX) vs a PyTorch reference."""

    scale: Literal["cpu", "paper"] = field("cpu", help="model/batch of experiments.darkroom_ad: cpu default "
                                           "or --scale paper sizes")
    num_tasks: tuple[int, ...] = field((16, 256), help="task counts for the evaluation rollouts")
    eval_episodes: int = field(10, help="episodes (of 20 steps) per evaluation rollout")
    train_updates: int = field(20, help="training updates per timed call")
    repeats: int = field(3, help="timed calls per measurement; the best is kept")
    bf16: bool = field(False, help="bfloat16 training compute on both sides (for GPUs)")
    torch_threads: int = field(0, help="torch.set_num_threads for the reference; 0 keeps torch's default")
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("eval_episodes", "train_updates", "repeats"):
            require_positive(self, name)
        if self.torch_threads < 0:
            raise ConfigError("torch_threads", f"must be >= 0 (0 = torch's default), got {self.torch_threads}")
        if not self.num_tasks or min(self.num_tasks) < 1:
            raise ConfigError("num_tasks", f"must be a non-empty tuple of positive ints, got {self.num_tasks}")


def experiment_config(scale: str) -> DarkroomADConfig:
    """The AD experiment's config at ``scale`` (``"paper"``: with :data:`PAPER_FLAGS`)."""
    return DarkroomADConfig() if scale == "cpu" else parse_cli(DarkroomADConfig, list(PAPER_FLAGS))[0]


def _best_of(fn, repeats: int, sync) -> float:
    """Best wall seconds of ``repeats`` calls of ``fn()``, ``sync()`` before and after each."""
    best = float("inf")
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def run(cfg: ICLTorchBenchConfig) -> list[dict]:
    """Result rows (:mod:`experiments.benchmarks.report`) of training and every evaluation task
    count, with ours' compile times; skipped without PyTorch (the optional bench-ref extra)."""
    try:
        import torch

        from experiments.bench_ref import torch_ad
    except ImportError as err:
        raise Skipped(f"the PyTorch reference needs torch ({err}): pip install -e '.[bench-ref]'") from None
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    exp = experiment_config(cfg.scale)
    ad_cfg = exp.ad
    env, base = envs.make(ENV)
    horizon, num_actions = env.horizon, env.num_actions
    model = ad.make_model(ad_cfg, 2, num_actions, horizon)
    context_steps = ad_cfg.context_steps(horizon)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    key = jax.random.PRNGKey(cfg.seed)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)

    params = ad.init_params(model, key)
    arch = model.backbone
    net = torch_ad.ADTransformer(model.d_in, model.d_out, arch.width, arch.num_layers, arch.num_heads,
                                 model.window, dropout=arch.dropout).to(device)
    torch_ad.load_flax_params(net, params)

    # (a) training on synthetic histories of the experiment's shape
    rng = np.random.default_rng(cfg.seed)
    shape = (exp.num_train_goals * exp.histories_per_goal, exp.q_learning.num_episodes * horizon)
    histories = {"obs": rng.integers(0, env.size, (*shape, 2), dtype=np.int32),
                 "action": rng.integers(0, num_actions, shape, dtype=np.int32),
                 "reward": (rng.random(shape) < 0.2).astype(np.float32)}
    optim = dataclasses.replace(exp.optim, num_updates=cfg.train_updates, bf16=cfg.bf16)
    ad_histories = ad.ad_data(histories, num_actions)
    trainer = ad.make_train(ad_cfg, optim, ad_histories.obs.shape[-1], num_actions, horizon)
    state = jax.jit(trainer.init)(key, ad_histories)
    ours_s, ours_compile = time_jitted(
        lambda s, d: jax.lax.scan(lambda s, _: trainer.update(s, d), s, None, cfg.train_updates),
        (state, ad_histories), cfg.repeats)
    data = torch_ad.Histories.from_numpy(histories["obs"], histories["action"], histories["reward"], device)
    optimizer, scheduler = torch_ad.make_optimizer(
        net, lr=optim.lr, num_updates=cfg.train_updates * (cfg.repeats + 1), warmup_updates=optim.warmup_updates,
        final_lr_fraction=optim.final_lr_fraction, weight_decay=optim.weight_decay)
    step = lambda: torch_ad.train_step(net, optimizer, scheduler, data, generator, batch_size=optim.batch_size,
                                       context_steps=context_steps, layout=ad_cfg.layout,
                                       obs_scale=ad_cfg.obs_scale, max_grad_norm=optim.max_grad_norm, bf16=cfg.bf16)
    _best_of(step, 1, sync)  # warm-up
    torch_s = _best_of(lambda: [step() for _ in range(cfg.train_updates)], cfg.repeats, sync)
    tokens = cfg.train_updates * optim.batch_size * context_steps * ad_cfg.tokens_per_step
    threads = torch.get_num_threads()
    versus = f"vs eager torch {torch.__version__} on {device}"
    versus += f", {threads} threads" if device.type == "cpu" else ""
    case = f"AD training ({cfg.scale} scale, {'bf16' if cfg.bf16 else 'float32'})"
    rows = [row(SUITE, f"{case} {versus}", tokens / ours_s, tokens / torch_s, "tokens/s"),
            row(SUITE, f"{case}: compile", ours_compile, None, "s")]

    # (b) in-context evaluation; reload the initial params (training above changed the torch ones)
    torch_ad.load_flax_params(net, params)
    agent = ad.make_agent(ad_cfg, model)
    num_steps = cfg.eval_episodes * horizon
    for tasks in cfg.num_tasks:
        goals = rng.integers(0, env.size, (tasks, 2), dtype=np.int32)
        task_params = jax.vmap(lambda g: base.replace(goal=g))(jnp.asarray(goals))
        ours_s, ours_compile = time_jitted(
            lambda p, t, k: evaluate(env, t, agent, p, k, num_steps=num_steps, num_seeds=1),
            (params, task_params, key), cfg.repeats)
        torch_goals = torch.as_tensor(goals, device=device).long()
        rollout = lambda n, goals=torch_goals: torch_ad.evaluate(net, goals, n, generator, layout=ad_cfg.layout,
                                                                 obs_scale=ad_cfg.obs_scale)
        _best_of(lambda r=rollout: r(2), 1, sync)  # warm-up
        torch_s = _best_of(lambda r=rollout: r(num_steps), cfg.repeats, sync)
        case = f"AD evaluation ({cfg.scale} scale), {tasks} tasks x {num_steps} steps"
        rows += [row(SUITE, f"{case} {versus}", tasks * num_steps / ours_s, tasks * num_steps / torch_s, "steps/s"),
                 row(SUITE, f"{case}: compile", ours_compile, None, "s")]
    return rows


def plot(rows: list[dict], path) -> None:
    """Bars of ours and torch per measure (train tokens/s, eval env steps/s; log axis)."""
    from jaxrl_icl.run.plots import plot_paired_bars

    pairs = {f"{r['case'].split(' vs ')[0]} ({r['unit']})": (r["ours"], r["reference"])
             for r in rows if r["reference"] is not None}
    plot_paired_bars(pairs, ("ours", "torch"), path, ylabel="per second (compile excluded)",
                     title=f"AD: ours (JAX) vs PyTorch ({rows[0]['case'].split(' on ')[-1]})")
