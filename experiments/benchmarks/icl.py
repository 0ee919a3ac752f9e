"""In-context rollout speed: KV-cached ``step`` vs recomputing the whole context every step.

A small causal transformer (default width 64, 4 layers, 4 heads, ALiBi) is rolled out
autoregressively for every context length ``L`` in ``context_lengths``: each next token is
the next row of a fixed random stream plus the softmax of the previous output, so steps
cannot be batched together. Two ways, same parameters:

* **cached**: ``lax.scan`` of :func:`jaxrl_icl.icl.step` over all ``L`` tokens from an
  empty ``L``-slot cache, O(L) per token;
* **recompute**: ``lax.scan`` whose body writes the token into a zero-padded ``[1, L]``
  context and runs :func:`jaxrl_icl.icl.apply` over all of it, O(L^2) per token; only the
  last ``min(recompute_steps, recompute_tokens // L)`` positions are timed (at least 2),
  since its per-token cost does not depend on the position.

Also timed: training tokens/s (``value_and_grad`` of a cross-entropy through ``apply`` on
``max(1, train_tokens // L)`` sequences of length ``L``) and cached rollouts of
``vmap_context`` tokens for every task count in ``num_tasks`` (``jax.vmap`` over tasks, one
sequence each). Every function is compiled ahead of time; the best of ``repeats`` calls is
reported as tokens/s (all sequences together).

Backbone options (``backbones``, at context ``backbone_context``, all timed in turn, round
after round, so that load from other processes hits them alike): training tokens/s (the
auxiliary losses of the feed-forward blocks added to the loss, the gating noise on) and
cached-rollout tokens/s of ``t2mir`` (token MoE of 6 and task MoE of 12 experts, dense
dispatch, in the last ``moe_layers`` layers), ``token_moe`` and the Sink-KV attention
(``sink_kv``), each against the dense backbone of the same sizes. The issue's bar: T2MIR's
training costs at most 3x the dense backbone's time (a ratio of at least 0.33). Measured on
the 2-core CPU shared with two other jobs (5 rounds, default width 64, 4 layers, MoE in the
last layer): training T2MIR 0.80x, token MoE 0.85x, Sink-KV 1.21x the dense backbone's
tokens/s (1,586); cached rollouts 0.66x, 0.71x and 0.69x (dense 1,397 tokens/s).

Chunked attention (``attention_chunk``, at the longest context): the training step with
attention computed that many query rows at a time (rematerialised in the backward pass,
:class:`~jaxrl_icl.icl.transformer.BackboneConfig`) against all rows at once, tokens/s and
XLA's temporary memory. On the 2-core CPU (shared with a test run), 2 x 4096 tokens in chunks
of 512: 0.93x the tokens/s (588 vs 635) in 6.7x less temporary memory (407 vs 2,748 MiB).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from experiments.benchmarks.report import row
from experiments.benchmarks.timing import best_of_alternating, compile_ahead, compile_timed, time_jitted
from jaxrl_icl.config import ConfigError, field, require_nonnegative, require_positive
from jaxrl_icl.icl import transformer as tr
from jaxrl_icl.icl.moe import MoEConfig

SUITE = "icl"
BACKBONES = ("t2mir", "token_moe", "sink_kv")


@dataclasses.dataclass(frozen=True)
class ICLBenchConfig:
    """Cached vs recomputed in-context rollouts, training and vmapped-task throughput."""

    context_lengths: tuple[int, ...] = field((256, 1024, 4096), help="context lengths in tokens")
    width: int = 64
    num_layers: int = 4
    num_heads: int = 4
    positions: tr.Positions = field("alibi", help="position scheme")
    d_in: int = field(16, help="features per input token")
    d_out: int = field(8, help="outputs per token (action logits)")
    recompute_steps: int = field(64, help="most timed steps of the recompute rollout")
    recompute_tokens: int = field(32768, help="timed recompute steps are at most this // context length")
    train_tokens: int = field(8192, help="tokens per training batch (sequences = this // length)")
    num_tasks: tuple[int, ...] = field((1, 64), help="task counts for the vmapped cached rollout")
    vmap_context: int = field(1024, help="context length of the vmapped cached rollout")
    backbones: tuple[str, ...] = field(BACKBONES, help=f"backbone options timed against dense: {', '.join(BACKBONES)}")
    backbone_context: int = field(1024, help="context length of the backbone-option rows")
    moe_layers: int = field(1, help="layers (the last ones) holding the mixtures of experts")
    attention_chunk: int = field(512, help="query rows per attention chunk of the chunked-training row at the "
                                 "longest context (0 or at least that context: no row)")
    repeats: int = field(3, help="timed calls per measurement; the best is kept")
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("recompute_steps", "recompute_tokens", "train_tokens", "vmap_context", "repeats",
                     "backbone_context", "moe_layers"):
            require_positive(self, name)
        require_nonnegative(self, "attention_chunk")
        for name in ("context_lengths", "num_tasks"):
            values = getattr(self, name)
            if not values or min(values) < 1:
                raise ConfigError(name, f"must be a non-empty tuple of positive ints, got {values}")
        if set(self.backbones) - set(BACKBONES):
            raise ConfigError("backbones", f"must name some of {', '.join(BACKBONES)}; got {list(self.backbones)}")
        if self.moe_layers > self.num_layers:
            raise ConfigError("moe_layers", f"{self.moe_layers} exceeds num_layers={self.num_layers}")
        self.model(max(self.context_lengths))  # validates width/heads/positions

    def model(self, max_len: int, option: str = "dense", attention_chunk: int = 0) -> tr.TransformerConfig:
        """The timed transformer; ``option`` is ``"dense"`` or one of :data:`BACKBONES`."""
        ffn = option if option in ("t2mir", "token_moe") else "dense"
        backbone = tr.BackboneConfig(width=self.width, num_layers=self.num_layers, num_heads=self.num_heads,
                                     positions=self.positions, ffn=ffn, sink="kv" if option == "sink_kv" else "none",
                                     moe=MoEConfig(last_layers=self.moe_layers), attention_chunk=attention_chunk)
        return tr.TransformerConfig(d_in=self.d_in, d_out=self.d_out, max_len=max_len, backbone=backbone)


def _feedback(row: jax.Array, out: jax.Array) -> jax.Array:
    """Next token ``[B, d_in]``: a stream row plus the softmax of the last output in its first slots."""
    return row.at[:, : out.shape[-1]].add(jax.nn.softmax(out, axis=-1))


def cached_rollout(model: tr.TransformerConfig, params, stream: jax.Array) -> jax.Array:
    """Autoregressive cached rollout over ``stream [B, T, d_in]``; returns the last output ``[B, d_out]``."""
    batch = stream.shape[0]

    def body(carry, row):
        cache, out = carry
        out, cache = tr.step(model, params, cache, _feedback(row, out))
        return (cache, out), None

    init = (tr.init_cache(model, batch), jnp.zeros((batch, model.d_out)))
    (_, out), _ = jax.lax.scan(body, init, jnp.swapaxes(stream, 0, 1))
    return out


def recompute_rollout(model: tr.TransformerConfig, params, stream: jax.Array, start: int) -> jax.Array:
    """The same rollout for positions ``start..T-1``, re-running ``apply`` on the padded context each step."""
    batch, length, _ = stream.shape
    context = jnp.zeros_like(stream).at[:, :start].set(stream[:, :start])

    def body(carry, inputs):
        context, out = carry
        pos, row = inputs
        context = jax.lax.dynamic_update_slice_in_dim(context, _feedback(row, out)[:, None], pos, axis=1)
        out = jax.lax.dynamic_index_in_dim(tr.apply(model, params, context), pos, axis=1, keepdims=False)
        return (context, out), None

    positions = jnp.arange(start, length)
    init = (context, jnp.zeros((batch, model.d_out)))
    (_, out), _ = jax.lax.scan(body, init, (positions, jnp.swapaxes(stream[:, start:], 0, 1)))
    return out


def train_step(model: tr.TransformerConfig, params, tokens: jax.Array, targets: jax.Array):
    """Cross-entropy of ``apply`` outputs against int ``targets [B, T]`` plus the feed-forward
    blocks' auxiliary losses, and its gradient with respect to ``params["params"]`` (a T2MIR
    target router, in its own collection, gets none). Gating noise and dropout draw from a
    fixed key, as a training step would."""
    key = jax.random.PRNGKey(0) if model.backbone.needs_rng else None

    def loss(trainable):
        logits, aux = tr.apply(model, {**params, "params": trainable}, tokens, dropout_key=key, return_aux=True)
        log_p = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(log_p, targets[..., None], axis=-1)) + tr.aux_loss(aux)

    return jax.value_and_grad(loss)(params["params"])


def _rows(case: str, tokens: int, ours: tuple[float, float], reference: tuple[float, float] | None) -> list[dict]:
    """A tokens/s row and a compile-seconds row from ``(seconds, compile seconds)`` timings."""
    ref_speed, ref_compile = (None, None) if reference is None else (tokens / reference[0], reference[1])
    return [row(SUITE, case, tokens / ours[0], ref_speed, "tokens/s"),
            row(SUITE, f"{case}: compile", ours[1], ref_compile, "s", lower_is_better=True)]


def run(cfg: ICLBenchConfig) -> list[dict]:
    """Result rows (:mod:`experiments.benchmarks.report`): per context length, the cached rollout
    against recomputing (per-token rates, the recompute run over fewer tokens) and training;
    the vmapped cached rollout at every task count against the first; each with its compile row."""
    key = jax.random.PRNGKey(cfg.seed)
    rows = []
    for length in cfg.context_lengths:
        model = cfg.model(length)
        params = tr.init(model, key)
        stream = jax.random.normal(jax.random.fold_in(key, length), (1, length, cfg.d_in))
        cached = time_jitted(lambda p, s, m=model: cached_rollout(m, p, s), (params, stream), cfg.repeats)
        steps = max(2, min(cfg.recompute_steps, cfg.recompute_tokens // length, length))
        recompute = time_jitted(lambda p, s, m=model, st=length - steps: recompute_rollout(m, p, s, st),
                                (params, stream), cfg.repeats)
        recompute = (recompute[0] * length / steps, recompute[1])  # seconds per `length` tokens
        rows += _rows(f"cached rollout, context {length}, vs recomputing it every step", length, cached, recompute)
        batch = max(1, cfg.train_tokens // length)
        tokens = jax.random.normal(jax.random.fold_in(key, 1), (batch, length, cfg.d_in))
        targets = jax.random.randint(jax.random.fold_in(key, 2), (batch, length), 0, cfg.d_out)
        train = time_jitted(lambda p, x, y, m=model: train_step(m, p, x, y), (params, tokens, targets), cfg.repeats)
        rows += _rows(f"training, {batch} x {length} tokens", batch * length, train, None)
    model = cfg.model(cfg.vmap_context)
    params = tr.init(model, key)
    first = None
    for tasks in cfg.num_tasks:
        streams = jax.random.normal(jax.random.fold_in(key, 3), (tasks, 1, cfg.vmap_context, cfg.d_in))
        fn = jax.vmap(lambda s, p=params: cached_rollout(model, p, s))
        timing = time_jitted(fn, (streams,), cfg.repeats)
        case = f"cached rollout x{tasks} tasks (vmap), context {cfg.vmap_context}"
        if first is None:
            rows += _rows(case, tasks * cfg.vmap_context, timing, None)
            first = (tasks, timing)
        else:  # the reference: the first task count's time, scaled to this many tasks
            reference = (first[1][0] * tasks / first[0], first[1][1])
            rows += _rows(f"{case}, vs x{first[0]}", tasks * cfg.vmap_context, timing, reference)
    return rows + chunked_rows(cfg, key) + backbone_rows(cfg, key)


def chunked_rows(cfg: ICLBenchConfig, key: jax.Array) -> list[dict]:
    """Training tokens/s and XLA's temporary memory of the training step at the longest context
    with attention ``cfg.attention_chunk`` query rows at a time against all rows at once (none
    when chunking would not split the context)."""
    length, chunk = max(cfg.context_lengths), cfg.attention_chunk
    if not chunk or chunk >= length:
        return []
    batch = max(1, cfg.train_tokens // length)
    tokens = jax.random.normal(jax.random.fold_in(key, 6), (batch, length, cfg.d_in))
    targets = jax.random.randint(jax.random.fold_in(key, 7), (batch, length), 0, cfg.d_out)
    calls, compile_s, memory = {}, {}, {}
    for rows_at_once in (chunk, 0):
        model = cfg.model(length, attention_chunk=rows_at_once)
        params = tr.init(model, key)
        compiled, compile_s[rows_at_once] = compile_ahead(lambda p, x, y, m=model: train_step(m, p, x, y),
                                                          (params, tokens, targets))
        memory[rows_at_once] = compiled.memory_analysis().temp_size_in_bytes
        calls[rows_at_once] = lambda c=compiled, p=params: c(p, tokens, targets)
    best = best_of_alternating(cfg.repeats, calls)
    case = f"training, {batch} x {length} tokens, attention in chunks of {chunk} rows, vs all rows at once"
    print(f"icl: {case}: {batch * length / best[chunk]:,.0f} vs {batch * length / best[0]:,.0f} tokens/s, "
          f"temporary memory {memory[chunk] / 2**20:,.1f} vs {memory[0] / 2**20:,.1f} MiB", flush=True)
    return (_rows(case, batch * length, (best[chunk], compile_s[chunk]), (best[0], compile_s[0]))
            + [row(SUITE, f"{case}: temporary memory", memory[chunk], memory[0], "B", lower_is_better=True)])


def backbone_rows(cfg: ICLBenchConfig, key: jax.Array) -> list[dict]:
    """Training and cached-rollout tokens/s of every option in ``cfg.backbones`` against the dense
    backbone, at context ``cfg.backbone_context`` (same inputs, same sizes)."""
    length = cfg.backbone_context
    batch = max(1, cfg.train_tokens // length)
    tokens = jax.random.normal(jax.random.fold_in(key, 4), (batch, length, cfg.d_in))
    targets = jax.random.randint(jax.random.fold_in(key, 5), (batch, length), 0, cfg.d_out)
    stream = tokens[:1]
    calls, compile_s = {}, {}
    for option in ("dense", *cfg.backbones):
        model = cfg.model(length, option)
        params = tr.init(model, key)
        calls[option, "train"], compile_s[option, "train"] = compile_timed(
            lambda p, x, y, m=model: train_step(m, p, x, y), (params, tokens, targets))
        calls[option, "rollout"], compile_s[option, "rollout"] = compile_timed(
            lambda p, s, m=model: cached_rollout(m, p, s), (params, stream))
    best = best_of_alternating(cfg.repeats, calls)  # every option in turn: load hits all alike
    timings = {option: tuple((best[option, part], compile_s[option, part]) for part in ("train", "rollout"))
               for option in ("dense", *cfg.backbones)}
    for option, (train, rollout) in timings.items():
        print(f"icl: backbone {option}: training {batch * length / train[0]:,.0f} tokens/s, "
              f"cached rollout {length / rollout[0]:,.0f} tokens/s", flush=True)
    rows = []
    experts = f"{MoEConfig().token_experts}+{MoEConfig().task_experts} experts, last {cfg.moe_layers} layer(s)"
    names = {"t2mir": f"T2MIR ({experts})", "token_moe": f"token MoE ({MoEConfig().token_experts} experts, "
             f"last {cfg.moe_layers} layer(s))", "sink_kv": "Sink-KV"}
    for option in cfg.backbones:
        train, rollout = timings[option]
        rows += _rows(f"backbone {names[option]}: training, {batch} x {length} tokens, vs dense", batch * length,
                      train, timings["dense"][0])
        rows += _rows(f"backbone {names[option]}: cached rollout, context {length}, vs dense", length, rollout,
                      timings["dense"][1])
    return rows


def plot(rows: list[dict], path) -> None:
    """Log-scale bar chart of tokens/s for every variant and context length (recompute too)."""
    from jaxrl_icl.run.plots import plot_bars

    values = {}
    for r in rows:
        if r["unit"] == "tokens/s" and r["case"].startswith("backbone "):
            name, what = r["case"].removeprefix("backbone ").split(", vs")[0].split(": ", 1)
            values[f"{name.split(' (')[0]}: {what}"] = r["ours"]
            values[f"dense: {what}"] = r["reference"]
        elif r["unit"] == "tokens/s":
            values[r["case"].split(", vs")[0]] = r["ours"]
            if r["case"].startswith("cached rollout, context"):
                values[r["case"].replace("cached rollout", "recompute").split(", vs")[0]] = r["reference"]
    plot_bars(values, path, ylabel="tokens / s", log_scale=True,
              title="In-context transformer throughput")
