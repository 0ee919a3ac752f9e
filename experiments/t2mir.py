"""T2MIR vs the dense backbone for Algorithm Distillation on Dark Room 9x9: ``python -m experiments.t2mir``.

Both models distil the same Q-learning histories (``histories_per_goal`` runs on each of the
81 goals; the 65 training goals of :func:`experiments.darkroom_ad.goal_split`) with the same
optimiser and number of updates; the only difference is the feed-forward block of the last
layer (``--moe.*``: T2MIR's token MoE and task MoE side by side, :mod:`jaxrl_icl.icl.moe`).
Each model is trained ``num_seeds`` times (seeds vmapped) and rolled out in context on the 16
held-out goals for ``eval_episodes`` episodes (``eval_seeds`` rollouts per goal).

Writes ``runs/t2mir/<timestamp>/``: ``config.json``, ``versions.json``, ``returns.png``
(held-out return per episode, mean and 95% band over training seeds, with the optimum),
``router_losses.png`` (the balance and contrastive losses over training), ``router_load.png``
(the share of routing slots each expert of the MoE layer takes on training windows, mean
over seeds) and ``summary.json`` with ``difference["ad"]["darkroom-9x9"] = {"mean", "ci95"}``:
the held-out return of the last episode, T2MIR minus dense, with Welch's 95% interval over
training seeds. The CPU default is small (minutes); its difference says little about the
paper's scale, and the summary says how many seeds it rests on.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import envs
from envs.darkroom import optimal_return
from experiments.darkroom_ad import ENV, goal_split, source_returns
from jaxrl_icl.config import field, require_in, require_nonnegative, require_positive, require_types
from jaxrl_icl.icl import ad
from jaxrl_icl.icl import transformer as tr
from jaxrl_icl.icl.evaluate import episode_returns, evaluate
from jaxrl_icl.icl.moe import MoEConfig
from jaxrl_icl.icl.train import OptimConfig
from jaxrl_icl.rl.collect import CollectConfig, collect_histories
from jaxrl_icl.rl.q_learning import QLearningConfig
from jaxrl_icl.run.config import check_num_seeds, parse_cli
from jaxrl_icl.run.loop import train_in_chunks
from jaxrl_icl.run.plots import moving_average, plot_bars, plot_curve_panels, plot_curves
from jaxrl_icl.run.rundir import open_run, write_json
from jaxrl_icl.run.sweep import gather_seeds, seed_keys
from jaxrl_icl.stats import welch_difference

PROG = "python -m experiments.t2mir"
MODELS = ("dense", "t2mir")


@dataclasses.dataclass(frozen=True)
class T2MIRConfig:
    """AD with a dense backbone vs AD with T2MIR in the last layer, same data and updates."""

    num_seeds: int = field(3, help="training seeds per model (the confidence intervals are over these)")
    seed: int = field(0, help="seed of collection, training (seed keys) and evaluation")
    histories_per_goal: int = field(1, help="Q-learning runs per goal")
    split_seed: int = field(0, help="goal permutation of experiments.darkroom_ad.goal_split")
    num_train_goals: int = field(65, help="training goals; the rest of the 81 are held out")
    eval_episodes: int = field(20, help="in-context episodes per held-out goal and rollout")
    eval_seeds: int = field(4, help="rollouts per held-out goal and trained model")
    chunk_updates: int = field(250, help="updates per jitted chunk (progress)")
    ad: ad.ADConfig = ad.ADConfig(obs_scale=0.125)
    moe: MoEConfig = MoEConfig()
    optim: OptimConfig = OptimConfig(num_updates=2000, batch_size=32, lr=1e-3, warmup_updates=100)
    q_learning: QLearningConfig = QLearningConfig(num_episodes=100, lr=1.0, epsilon_decay_episodes=25,
                                                  record_history=True)

    def __post_init__(self) -> None:
        require_types(self)
        for name in ("num_seeds", "histories_per_goal", "eval_episodes", "eval_seeds", "chunk_updates"):
            require_positive(self, name)
        require_nonnegative(self, "split_seed")
        require_in(self, "num_train_goals", 1, 80)

    def ad_config(self, model: str) -> ad.ADConfig:
        """The AD config of ``model`` (``"dense"`` or ``"t2mir"``)."""
        backbone = dataclasses.replace(self.ad.backbone, ffn=model, moe=self.moe)
        return dataclasses.replace(self.ad, backbone=backbone)


def collect(config: T2MIRConfig) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Q-learning histories on all 81 goals (``histories_per_goal`` runs) and each one's goal ``[N, 2]``."""
    parts = []
    for i in range(config.histories_per_goal):
        histories, meta, _, _ = collect_histories(CollectConfig(env=ENV, algo="q_learning", seed=config.seed + i,
                                                                summary_episodes=1, q_learning=config.q_learning))
        parts.append((histories, np.asarray(meta["params"]["goal"])))
    return {k: np.concatenate([h[k] for h, _ in parts]) for k in parts[0][0]}, np.concatenate([g for _, g in parts])


def _rows_of(goal: np.ndarray, goals: np.ndarray) -> np.ndarray:
    return np.any(np.all(goal[:, None, :] == goals[None, :, :], axis=-1), axis=1)


def held_out_returns(config: T2MIRConfig, ad_config: ad.ADConfig, model: tr.TransformerConfig, params: Any,
                     goals: np.ndarray) -> np.ndarray:
    """Mean in-context return per episode ``[num_seeds, eval_episodes]`` of the trained ``params``
    (leading seed axis) over ``goals`` and ``eval_seeds`` rollouts each."""
    env, base = envs.make(ENV)
    tasks = jax.vmap(lambda g: base.replace(goal=g))(jnp.asarray(goals))
    run = jax.jit(lambda p, k: evaluate(env, tasks, ad.make_agent(ad_config, model), p, k,
                                        num_steps=config.eval_episodes * env.horizon, num_seeds=config.eval_seeds))
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1)
    rows = []
    for s in range(config.num_seeds):
        out = run(jax.tree.map(lambda x, s=s: x[s], params), key)
        rows.append(episode_returns(out["reward"], out["done"], env.horizon).reshape(-1, config.eval_episodes).mean(0))
    return np.stack(rows)


def expert_loads(config: T2MIRConfig, ad_config: ad.ADConfig, model: tr.TransformerConfig, params: Any,
                 data: ad.ADData, num_actions: int, horizon: int) -> dict[str, np.ndarray]:
    """Share of routing slots per expert, ``name -> [num_seeds, E]``, on one batch of training
    windows (names like ``block_3/task_load``)."""
    window = ad.sample_windows(data, jax.random.PRNGKey(config.seed), config.optim.batch_size,
                               ad_config.context_steps(horizon))
    tokens, _ = ad.window_tokens(ad_config, window, num_actions)

    def loads(p):
        _, inter = tr.Transformer(model).apply(p, tokens, mutable=["intermediates"])
        flat = jax.tree_util.tree_flatten_with_path(inter["intermediates"])[0]
        return {"/".join(str(getattr(k, "key", k)) for k in path[:-1]): v for path, v in flat}

    return {name: np.asarray(v) for name, v in jax.jit(jax.vmap(loads))(params).items()}


def main(argv: list[str] | None = None):
    config, options = parse_cli(T2MIRConfig, sys.argv[1:] if argv is None else argv, prog=PROG)
    check_num_seeds(PROG, config.num_seeds)
    env, base = envs.make(ENV)
    run = open_run("t2mir", config, options)
    print(f"run directory: {run.path}", file=sys.stderr)
    histories, goal = collect(config)
    train_goals, test_goals = goal_split(config.split_seed, config.num_train_goals)
    data = ad.ad_data({k: v[_rows_of(goal, train_goals)] for k, v in histories.items()}, env.num_actions)
    obs_dim = data.obs.shape[-1]

    curves, logs, loads, last = {}, {}, {}, {}
    for name in MODELS:
        ad_config = config.ad_config(name)
        model = ad.make_model(ad_config, obs_dim, env.num_actions, env.horizon)
        trainer = ad.make_train(ad_config, config.optim, obs_dim, env.num_actions, env.horizon)
        state, metrics = train_in_chunks(trainer, seed_keys(config.seed, config.num_seeds), data,
                                         chunk_updates=config.chunk_updates, progress=options.progress)
        params = gather_seeds(state.params)
        returns = held_out_returns(config, ad_config, model, params, test_goals)
        curves[name], logs[name], last[name] = returns, metrics, returns[:, -1]
        if name != "dense":
            loads = expert_loads(config, ad_config, model, params, data, env.num_actions, env.horizon)

    start = np.asarray(env.start, np.int32)
    optimum = float(np.mean([optimal_return(g, start, env.horizon) for g in test_goals]))
    episodes = np.arange(1, config.eval_episodes + 1)
    labels = {"dense": "AD, dense backbone", "t2mir": "AD + T2MIR (last layer)"}
    plot_curves({f"{labels[m]} ({config.num_seeds} seeds)": (episodes, curves[m]) for m in MODELS},
                run.plot_path("returns"), xlabel="episode", ylabel="held-out return",
                title=f"T2MIR vs dense AD on {ENV} ({len(test_goals)} held-out goals)",
                hlines={f"optimal ({optimum:.2f})": optimum})
    updates = np.arange(1, config.optim.num_updates + 1)
    aux = {name: v for name, v in logs["t2mir"].items() if name.startswith("layer") and name.endswith("_loss")}
    smooth = max(1, config.optim.num_updates // 50)
    label = f"AD + T2MIR (moving average of {smooth})"
    panels = {name: {label: (updates[smooth - 1:], moving_average(v, smooth))} for name, v in aux.items()}
    plot_curve_panels(panels, run.plot_path("router_losses"), xlabel="update", ylabel="weighted loss",
                      title="T2MIR auxiliary losses over training", ncols=2)
    plot_bars({f"{name.split('/')[0]} {name.split('/')[-1].split('_')[0]} e{e}": float(v[:, e].mean())
               for name, v in loads.items() for e in range(v.shape[1])}, run.plot_path("router_load"),
              ylabel="share of routing slots", title="Expert load per MoE layer (training windows, mean over seeds)")

    diff, lo, hi = welch_difference(last["dense"], last["t2mir"])
    source = source_returns(histories, env.horizon)[_rows_of(goal, test_goals)]
    summary = {
        "env": ENV, "machine": "see versions.json", "num_seeds": config.num_seeds,
        "num_train_histories": int(data.action.shape[0]), "held_out_goals": int(len(test_goals)),
        "eval_episodes": config.eval_episodes, "eval_seeds": config.eval_seeds,
        "num_updates": config.optim.num_updates, "optimal_return": optimum,
        "source_last_episode_return": float(source[:, -1].mean()) if source.size else None,
        "return_per_episode": {m: [float(x) for x in curves[m].mean(0)] for m in MODELS},
        "last_episode_return": {m: {"mean": float(last[m].mean()), "per_seed": [float(x) for x in last[m]]}
                                for m in MODELS},
        "train_loss_final": {m: float(np.mean(logs[m]["loss"][:, -config.chunk_updates:])) for m in MODELS},
        "expert_load": {name: [float(x) for x in v.mean(0)] for name, v in loads.items()},
        "difference": {"ad": {ENV: {"mean": diff, "ci95": [lo, hi]}}},
    }
    write_json(run.path / "summary.json", summary)
    print(f"held-out return of episode {config.eval_episodes}: dense {last['dense'].mean():.2f}, T2MIR "
          f"{last['t2mir'].mean():.2f}; T2MIR - dense {diff:+.2f} (95% CI [{lo:.2f}, {hi:.2f}], "
          f"{config.num_seeds} seeds); optimal {optimum:.2f}")
    print(f"run directory: {run.path}")
    return run


if __name__ == "__main__":
    main()
