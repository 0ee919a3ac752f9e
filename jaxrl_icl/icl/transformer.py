"""GPT-style causal transformer with a full-sequence face and a KV-cached one-token face.

One set of parameters, two ways to run it:

* ``apply(config, params, tokens [B, T, d_in]) -> [B, T, d_out]``: the whole sequence at
  once under a causal mask (training);
* ``init_cache(config, B)`` then ``step(config, params, cache, token [B, d_in]) ->
  (out [B, d_out], cache)``: one token at a time against a fixed-size key/value cache,
  O(cache length) per step, jittable inside ``lax.scan`` and vmappable over tasks.

Both faces compute the same function: the output at position ``t`` depends on tokens
``max(0, t - window + 1) .. t`` (all of ``0 .. t`` when ``window == 0``). Blocks are
pre-LayerNorm: ``x + Attn(LN(x))`` then ``x + FFN(LN(x))``, a final LayerNorm and a linear
head. Positions are ``"learned"`` (absolute embeddings added to the input), ``"alibi"`` (a
per-head linear distance penalty on the attention logits, Press et al. 2022) or ``"rope"``
(rotary embeddings of queries and keys, Su et al. 2021).

The model is a :class:`TransformerConfig` (input/output sizes and context length, which
the agent derives from its task) around one :class:`BackboneConfig` (width, depth, heads,
positions, feed-forward block, attention sink), the part AD, DPT and the Decision
Transformer nest in their own configs, so a backbone option written here reaches all of them.

Backbone options:

* ``sink``: ``"kv"`` adds a learned key and value per layer and head (zero-initialised) that
  every query may attend to besides the real tokens, so a head can attend to "nothing"
  (Sink-KV of ReLIC); ``"k"`` learns the key and keeps the value at zero ("KV0"). The sink
  has no position (no ALiBi penalty, no rotation) and no cache slot. All three attention
  paths (full, cached, queries) go through one masked softmax, :func:`attend`, which holds
  the sink once.
* ``attention_chunk``: the full-sequence face computes attention that many query rows at a
  time (a ``lax.map`` of rematerialised chunks), bounding a layer's score tensor at ``[B, H,
  chunk, T]`` in the forward and backward pass; AD at 16k steps needs 4.1 instead of 86 GiB
  per update (:mod:`experiments.long_context`). The cached face is unchanged.
* ``ffn``: the feed-forward block, a name in :data:`FFN_BLOCKS` (``"dense"``: the GELU MLP
  ``out(gelu(fc(x)))`` of hidden width ``mlp_ratio * width``). A block is a flax module built
  as ``FFN_BLOCKS[name](config=<TransformerConfig>, layer=<block index>)`` with three methods::

      __call__(x [B, T, d], deterministic, num_queries=0) -> (y [B, T, d], aux: dict[str, scalar])
      step(x [B, d], ffn_state) -> (y [B, d], ffn_state)        # cached face, one token
      init_state(batch_size) -> ffn_state                       # a pytree; {} for dense

  ``init_state`` must not touch parameters (it is called on an unbound module). The cache
  carries one ``ffn_state`` per layer (``KVCache.ffn``), so a block may depend causally on
  the tokens so far, e.g. through their running mean (:func:`prefix_mean` and
  :func:`prefix_mean_step`, which agree). ``num_queries`` marks the last tokens as the
  queries of :func:`apply_queries` (query ``i`` sits at position ``i`` and sees only the
  context before it). The module shares its block's parameter scope (dense keeps the
  parameter names ``fc`` and ``out``), so its parameter names must differ from ``ln1``,
  ``attn``, ``ln2``. ``aux`` holds scalars: every entry whose name ends in ``_loss`` is a
  weighted auxiliary loss the trainer adds to its objective (:func:`aux_loss`); the others are
  logged only. The output dropout and the residual connection are the block's.

With ``return_aux=True`` :func:`apply` and :func:`apply_queries` also return the blocks'
``aux`` entries as ``{"layer<i>/<name>": scalar}`` (empty for dense).

Context limits: with ``window == 0`` (or learned positions, whose table has ``max_len``
rows) a sequence may hold at most ``max_len`` tokens: ``apply`` raises ValueError at trace
time for a longer one, and ``step`` raises at run time (a host callback that fires only on
overflow) rather than silently dropping old tokens. With ``window > 0`` and ALiBi/RoPE the
cache is a ring buffer of ``window`` slots and a rollout may run for any number of steps.

Example::

    cfg = TransformerConfig(d_in=12, d_out=4, backbone=BackboneConfig(width=64, num_layers=4, sink="k"))
    params = init(cfg, jax.random.PRNGKey(0))
    logits = apply(cfg, params, tokens)                      # [B, T, 4]
    cache = init_cache(cfg, batch_size=B)
    out, cache = step(cfg, params, cache, tokens[:, 0])      # out == logits[:, 0]
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Literal

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl_icl.config import (
    ConfigError,
    require_divides,
    require_in,
    require_nonnegative,
    require_positive,
    require_types,
)
from jaxrl_icl.icl.moe import MoEConfig, t2mir_block, token_moe_block

Positions = Literal["learned", "alibi", "rope"]
Sink = Literal["none", "kv", "k"]


# ----------------------------------------------------------------------------- configs and feed-forward blocks


class DenseFFN(nn.Module):
    """The GELU MLP ``out(gelu(fc(x)))``, hidden width ``mlp_ratio * width``; no state, no aux."""

    config: TransformerConfig
    layer: int

    def setup(self):
        cfg = self.config.backbone
        self.fc = nn.Dense(cfg.mlp_ratio * cfg.width, name="fc")
        self.out = nn.Dense(cfg.width, name="out")

    def __call__(self, x, deterministic: bool, num_queries: int = 0):
        return self.out(nn.gelu(self.fc(x))), {}

    def step(self, x, ffn_state):
        return self.out(nn.gelu(self.fc(x))), ffn_state

    def init_state(self, batch_size: int) -> dict:
        return {}


FFN_BLOCKS: dict[str, Callable[..., nn.Module]] = {
    "dense": DenseFFN, "token_moe": token_moe_block, "t2mir": t2mir_block,
}
MOE_FFNS = ("token_moe", "t2mir")  # the blocks that BackboneConfig.moe configures
"""Feed-forward blocks by ``BackboneConfig.ffn`` name; see the module docstring for the interface."""


@dataclasses.dataclass(frozen=True)
class BackboneConfig:
    """Architecture of the causal transformer, nested in the AD, DPT and Decision Transformer configs.

    Attributes:
      width: residual stream width; ``head_dim = width // num_heads``.
      num_layers: transformer blocks.
      num_heads: attention heads per block.
      positions: ``"learned"``, ``"alibi"`` or ``"rope"``.
      mlp_ratio: hidden width of the dense feed-forward block is ``mlp_ratio * width``.
      dropout: dropout rate on attention weights and residual branches (training only).
      rope_base: RoPE frequency base; pair ``i`` of a head turns by ``pos * base^(-2i/head_dim)``.
      ffn: feed-forward block, a name in ``FFN_BLOCKS``: ``"dense"``, ``"token_moe"`` (a token-wise
        mixture of experts) or ``"t2mir"`` (token- and task-wise MoE side by side), the MoEs in
        the last ``moe.last_layers`` layers only (:mod:`jaxrl_icl.icl.moe`).
      moe: the mixture-of-experts settings (:class:`~jaxrl_icl.icl.moe.MoEConfig`).
      sink: attention sink per layer and head: ``"none"``, ``"kv"`` (learned key and value) or
        ``"k"`` (learned key, value fixed at zero).
      attention_chunk: query rows per attention chunk in the full-sequence face; 0 = all rows
        at once. Chunks are computed one after another and recomputed in the backward pass, so
        a layer's score tensor is ``[B, H, attention_chunk, T]`` instead of ``[B, H, T, T]``
        (long contexts; the same function up to float rounding, slower by the recomputation).
    """

    width: int = 64
    num_layers: int = 4
    num_heads: int = 4
    positions: Positions = "alibi"
    mlp_ratio: int = 4
    dropout: float = 0.0
    rope_base: float = 10000.0
    ffn: str = "dense"
    sink: Sink = "none"
    moe: MoEConfig = MoEConfig()
    attention_chunk: int = 0

    def __post_init__(self) -> None:
        require_types(self)
        for name in ("width", "num_layers", "num_heads", "mlp_ratio", "rope_base"):
            require_positive(self, name)
        require_nonnegative(self, "attention_chunk")
        require_divides(self, "num_heads", "width")
        require_in(self, "dropout", 0.0, 1.0 - 1e-9)
        if self.positions == "rope" and self.head_dim % 2:
            raise ConfigError("num_heads", f"rope needs an even head_dim; width/num_heads = {self.head_dim}")
        if self.ffn not in FFN_BLOCKS:
            raise ConfigError("ffn", f"expected one of {sorted(FFN_BLOCKS)}, got {self.ffn!r}")
        if self.ffn in MOE_FFNS and self.moe.last_layers > self.num_layers:
            raise ConfigError("moe.last_layers", f"{self.moe.last_layers} exceeds num_layers={self.num_layers}")

    def ffn_at(self, layer: int) -> str:
        """The feed-forward block of ``layer``: ``ffn``, except that a mixture of experts fills only
        the last ``moe.last_layers`` layers and the others are ``"dense"``."""
        if self.ffn in MOE_FFNS and layer < self.num_layers - self.moe.last_layers:
            return "dense"
        return self.ffn

    @property
    def needs_rng(self) -> bool:
        """Whether training draws random numbers (dropout, or the token router's gating noise)."""
        return self.dropout > 0 or (self.ffn in MOE_FFNS and self.moe.noise_std > 0)

    @property
    def paired_batches(self) -> bool:
        """Whether a training batch should hold ``B/2`` tasks twice (rows ``i`` and ``i + B/2``), the
        positives of T2MIR's contrastive loss."""
        return self.ffn == "t2mir" and self.moe.paired

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads


def require_relative_positions(backbone: BackboneConfig) -> None:
    """ConfigError naming ``backbone.positions`` unless it is ``"alibi"`` or ``"rope"`` (relative
    positions, which a sliding evaluation window needs)."""
    if backbone.positions not in ("alibi", "rope"):
        raise ConfigError("backbone.positions", f"must be 'alibi' or 'rope' (a sliding window), got "
                                                f"{backbone.positions!r}")


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """The causal transformer of one agent: its token sizes, context and backbone.

    Attributes:
      d_in: features per input token.
      d_out: features per output (e.g. number of action logits).
      max_len: longest context in tokens (learned-position table size; cache size without a window).
      window: attend only to the last ``window`` tokens (self included); 0 = whole context.
      backbone: the architecture (:class:`BackboneConfig`).
    """

    d_in: int
    d_out: int
    max_len: int = 1024
    window: int = 0
    backbone: BackboneConfig = BackboneConfig()

    def __post_init__(self) -> None:
        require_types(self)
        for name in ("d_in", "d_out", "max_len"):
            require_positive(self, name)
        require_in(self, "window", 0, self.max_len)

    @property
    def head_dim(self) -> int:
        return self.backbone.head_dim

    @property
    def cache_len(self) -> int:
        """Key/value slots per layer: ``window`` (a ring buffer) or ``max_len``."""
        return self.window or self.max_len

    @property
    def context_limit(self) -> int | None:
        """Most tokens a sequence may hold, or None when unbounded (window with ALiBi/RoPE)."""
        return None if self.window and self.backbone.positions != "learned" else self.max_len


@struct.dataclass
class KVCache:
    """Per-layer keys and values of the last ``cache_len`` tokens.

    ``keys``/``values`` are float32 ``[B, num_layers, num_heads, cache_len, head_dim]``; the
    token at position ``p`` lives in slot ``p % cache_len`` (keys already RoPE-rotated).
    ``pos`` is the int32 scalar position of the next token (= tokens seen so far); ``ffn``
    is a tuple of one feed-forward state per layer (``{}`` for dense blocks).
    """

    keys: jax.Array
    values: jax.Array
    pos: jax.Array
    ffn: tuple = ()


# ----------------------------------------------------------------------------- positions


def alibi_slopes(num_heads: int) -> np.ndarray:
    """ALiBi head slopes, float32 ``[num_heads]``.

    For ``n`` a power of two, head ``h = 1..n`` has slope ``2^(-8h/n)``. Otherwise the
    slopes of the nearest lower power of two ``m`` are followed by every other slope of
    ``2m`` (``2^(-4(2k-1)/m)``, k = 1..n-m), as in the ALiBi paper's code.
    """
    if num_heads < 1:
        raise ValueError(f"num_heads must be >= 1, got {num_heads}")
    m = 2 ** int(math.floor(math.log2(num_heads)))
    slopes = [2.0 ** (-8.0 * h / m) for h in range(1, m + 1)]
    slopes += [2.0 ** (-4.0 * (2 * k - 1) / m) for k in range(1, num_heads - m + 1)]
    return np.asarray(slopes, dtype=np.float32)


def rope(x: jax.Array, positions: jax.Array, base: float) -> jax.Array:
    """Rotate ``x [..., T, H, D]`` by its positions ``[T]`` (RoPE, half-split pairing).

    Feature ``i`` and ``i + D/2`` form pair ``i``, turned by angle ``pos * base^(-2i/D)``.
    Norms are kept, and ``rope(q, m) . rope(k, n)`` depends on ``m - n`` only.
    """
    half = x.shape[-1] // 2
    freqs = base ** (-jnp.arange(half, dtype=jnp.float32) * 2.0 / x.shape[-1])
    angles = positions.astype(jnp.float32)[:, None] * freqs  # [T, D/2]
    cos, sin = jnp.cos(angles)[:, None, :], jnp.sin(angles)[:, None, :]  # [T, 1, D/2]
    x1, x2 = x[..., :half], x[..., half:]
    return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)


def _attention_logits(config: TransformerConfig, scores, q_pos, k_pos, allowed=None):
    """Masked attention logits ``[B, H, Tq, Tk]`` from raw ``q.k`` scores of the same shape.

    ``q_pos [Tq]`` / ``k_pos [Tk]`` are absolute int positions; a key is visible when
    ``0 <= k_pos <= q_pos`` and, with a window, ``q_pos - k_pos < window``, and ``allowed
    [Tq, Tk]`` (bool, optional) is true; hidden keys get ``-inf``. Scores are scaled by
    ``1/sqrt(head_dim)``; ALiBi subtracts ``slope_h * (q_pos - k_pos)``.
    """
    scores = scores / math.sqrt(config.head_dim)
    offset = q_pos[:, None] - k_pos[None, :]  # [Tq, Tk]
    visible = (k_pos[None, :] >= 0) & (offset >= 0)
    if config.window:
        visible &= offset < config.window
    if allowed is not None:
        visible &= allowed
    if config.backbone.positions == "alibi":
        slopes = jnp.asarray(alibi_slopes(config.backbone.num_heads))
        scores = scores - slopes[:, None, None] * offset.astype(jnp.float32)
    return jnp.where(visible, scores, -jnp.inf)


def attend(
    logits: jax.Array,
    values: jax.Array,
    extra: tuple[tuple[jax.Array, jax.Array], ...] = (),
    dropout: Callable[[jax.Array], jax.Array] | None = None,
) -> jax.Array:
    """Softmax attention output ``[B, Q, H, D]`` over the keys and some extra columns.

    Args:
      logits: ``[B, H, Q, K]`` masked logits (hidden keys ``-inf``; each query sees at least one
        key or extra column).
      values: ``[B, K, H, D]``.
      extra: columns outside the key axis, each ``(logit [B, H, Q], value)`` with ``value``
        broadcastable to ``[B, Q, H, D]``: a query's own key (:func:`apply_queries`) or the
        attention sink (one value ``[H, D]`` for every query).
      dropout: applied to the attention weights (training), or None.

    The weights are one softmax over the ``K`` keys and the extra columns together. The
    weighted sum is taken of the unnormalised ``exp(logit - max)`` and divided by their total
    afterwards (one ``[B, Q, H, D]`` division instead of one per weight; dropout, elementwise,
    commutes with it): on a CPU that trains a width-64 model at context 1024 about 1.4x as
    fast as ``jax.nn.softmax`` followed by the sum.
    """
    drop = dropout or (lambda w: w)
    extra_logits = jnp.stack([logit for logit, _ in extra], axis=-1) if extra else None  # [B, H, Q, E]
    top = jnp.max(logits, axis=-1)
    if extra:
        top = jnp.maximum(top, jnp.max(extra_logits, axis=-1))
    top = jax.lax.stop_gradient(top)
    e = jnp.exp(logits - top[..., None])
    total = jnp.sum(e, axis=-1)
    out = jnp.einsum("bhqk,bkhd->bqhd", drop(e), values)
    if extra:
        e_extra = jnp.exp(extra_logits - top[..., None])
        total = total + jnp.sum(e_extra, axis=-1)
        w_extra = drop(e_extra)
        for j, (_, value) in enumerate(extra):
            out = out + jnp.swapaxes(w_extra[..., j], 1, 2)[..., None] * value
    return out / jnp.swapaxes(total, 1, 2)[..., None]


def prefix_mean(x: jax.Array, num_queries: int = 0) -> jax.Array:
    """Causal running mean ``[B, T, d]`` of ``x [B, T, d]``: row ``t`` averages rows ``0 .. t``.

    With ``num_queries`` (the last rows are :func:`apply_queries` queries), query ``i`` averages
    context rows ``0 .. i-1`` and itself, as :func:`prefix_mean_step` after ``i`` context tokens.
    """
    num_context = x.shape[1] - num_queries
    total = jnp.cumsum(x[:, :num_context], axis=1)
    means = total / jnp.arange(1, num_context + 1, dtype=x.dtype)[:, None]
    if not num_queries:
        return means
    before = jnp.concatenate([jnp.zeros_like(x[:, :1]), total], axis=1)[:, :num_queries]  # sum of rows < i
    query_means = (before + x[:, num_context:]) / jnp.arange(1, num_queries + 1, dtype=x.dtype)[:, None]
    return jnp.concatenate([means, query_means], axis=1)


def prefix_mean_step(x: jax.Array, total: jax.Array, count: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One token ``x [B, d]`` after tokens summing to ``total [B, d]`` (``count`` int32 scalar):
    ``(mean of all of them [B, d], total + x, count + 1)``."""
    total = total + x
    return total / (count + 1).astype(x.dtype), total, count + 1


# ----------------------------------------------------------------------------- modules


class _Attention(nn.Module):
    config: TransformerConfig

    def setup(self):
        cfg = self.config.backbone
        self.qkv = nn.Dense(3 * cfg.width, name="qkv")
        self.proj = nn.Dense(cfg.width, name="proj")
        self.drop = nn.Dropout(cfg.dropout)
        if cfg.sink != "none":
            self.sink_key = self.param("sink_key", nn.initializers.zeros, (cfg.num_heads, cfg.head_dim))
        if cfg.sink == "kv":
            self.sink_value = self.param("sink_value", nn.initializers.zeros, (cfg.num_heads, cfg.head_dim))

    def _qkv(self, x, positions):
        """``x [B, T, W]`` -> q, k, v each ``[B, T, H, D]`` (q, k rotated under RoPE)."""
        cfg = self.config.backbone
        q, k, v = jnp.split(self.qkv(x).reshape(*x.shape[:-1], 3 * cfg.num_heads, cfg.head_dim), 3, axis=-2)
        if cfg.positions == "rope":
            q, k = rope(q, positions, cfg.rope_base), rope(k, positions, cfg.rope_base)
        return q, k, v

    def _sink(self, q, sink_params):
        """The sink column for queries ``q [B, Q, H, D]``: ``((logit [B, H, Q], value [H, D]),)``, or
        ``()`` where ``sink_params`` (:meth:`_sink_params`, read outside any loop over chunks) is None."""
        if sink_params is None:
            return ()
        key, value = sink_params
        return ((jnp.einsum("bqhd,hd->bhq", q, key) / math.sqrt(self.config.head_dim), value),)

    def _sink_params(self):
        """This layer's sink ``(key [H, D], value [H, D])`` (value zeros for ``"k"``), or None."""
        sink = self.config.backbone.sink
        if sink == "none":
            return None
        return self.sink_key, self.sink_value if sink == "kv" else jnp.zeros_like(self.sink_key)

    def _rows(self, q, k, v, row_pos, row_idx, context, sink_params, num_queries: int, dropout):
        """Attention output ``[B, C, H, D]`` of rows ``row_idx [C]`` (at ``row_pos [C]``, their
        ``q, k, v [B, C, H, D]``) over ``context = (keys, values [B, K, H, D], positions [K])``;
        rows at or past ``T - num_queries`` are queries, which see the context strictly before
        their position and their own key."""
        keys, values, k_pos = context
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, keys)
        extra = self._sink(q, sink_params)
        allowed = None
        if num_queries:
            is_query = row_idx >= k_pos.shape[0]
            allowed = ~(is_query[:, None] & (k_pos[None, :] >= row_pos[:, None]))
            own = jnp.einsum("bqhd,bqhd->bhq", q, k) / math.sqrt(self.config.head_dim)
            own = jnp.where(is_query, own, -jnp.inf)
            own_v = jnp.where(is_query[:, None, None], v, 0.0)
            extra = ((own, own_v), *extra)
        logits = _attention_logits(self.config, scores, row_pos, k_pos, allowed)
        return attend(logits, values, extra, dropout)

    def __call__(self, x, deterministic: bool, positions, num_queries: int = 0):
        """``x [B, T, W]`` at ``positions [T]``; the last ``num_queries`` tokens are queries that
        see the context tokens at earlier positions and themselves, never another query.

        Keys are the context tokens only, plus one "self" column for the queries, so the
        score tensor is ``[B, H, T, T - num_queries + 1]`` rather than ``[B, H, T, T]``; with
        ``attention_chunk`` rows at a time (:class:`BackboneConfig`).
        """
        q, k, v = self._qkv(x, positions)
        num_rows = x.shape[1]
        num_context = num_rows - num_queries
        context = (k[:, :num_context], v[:, :num_context], positions[:num_context])
        rows = jnp.arange(num_rows)
        chunk = self.config.backbone.attention_chunk
        if chunk and chunk < num_rows:
            out = self._chunked_rows(q, k, v, positions, rows, context, num_queries, chunk, deterministic)
        else:
            out = self._rows(q, k, v, positions, rows, context, self._sink_params(), num_queries,
                             lambda w: self.drop(w, deterministic=deterministic))
        return self.proj(out.reshape(x.shape))

    def _chunked_rows(self, q, k, v, positions, rows, context, num_queries: int, chunk: int, deterministic: bool):
        """:meth:`_rows` of all rows, ``chunk`` at a time in a ``lax.map`` of rematerialised chunks
        (the last chunk padded with copies of the last row). Dropout draws one key per chunk."""
        rate = self.config.backbone.dropout
        key = self.make_rng("dropout") if rate > 0 and not deterministic else None
        sink_params = self._sink_params()
        num_rows = q.shape[1]
        num_chunks = -(-num_rows // chunk)
        take = jnp.minimum(jnp.arange(num_chunks * chunk), num_rows - 1)
        split = lambda a, axis: jnp.moveaxis(  # noqa: E731  rows -> [num_chunks, ..., chunk, ...]
            jnp.take(a, take, axis=axis).reshape(*a.shape[:axis], num_chunks, chunk, *a.shape[axis + 1:]), axis, 0)

        def one(args):
            index, q, k, v, row_pos, row_idx = args

            def dropout(w):
                if key is None:
                    return w
                keep = jax.random.bernoulli(jax.random.fold_in(key, index), 1.0 - rate, w.shape)
                return jnp.where(keep, w / (1.0 - rate), 0.0)

            return self._rows(q, k, v, row_pos, row_idx, context, sink_params, num_queries, dropout)

        xs = (jnp.arange(num_chunks), split(q, 1), split(k, 1), split(v, 1), split(positions, 0), split(rows, 0))
        out = jax.lax.map(jax.checkpoint(one), xs)  # [num_chunks, B, chunk, H, D]
        out = jnp.moveaxis(out, 0, 1).reshape(q.shape[0], num_chunks * chunk, *q.shape[2:])
        return out[:, :num_rows]

    def step(self, x, keys, values, layer: int, pos):
        """One token ``x [B, W]`` at position ``pos`` through layer ``layer`` of the full cache
        ``keys/values [B, L, H, S, D]``; writes this token's key/value in place (slot ``pos % S``)."""
        q, k, v = self._qkv(x[:, None], pos[None])  # [B, 1, H, D]
        slots = keys.shape[3]
        start = (0, layer, 0, pos % slots, 0)
        keys = jax.lax.dynamic_update_slice(keys, k[:, None].transpose(0, 1, 3, 2, 4), start)
        values = jax.lax.dynamic_update_slice(values, v[:, None].transpose(0, 1, 3, 2, 4), start)
        # Slot s holds the latest position p' <= pos with p' = s (mod S); negative = empty.
        slot_pos = pos - jnp.mod(pos - jnp.arange(slots), slots)
        scores = jnp.einsum("bhd,bhkd->bhk", q[:, 0], keys[:, layer])[:, :, None]
        logits = _attention_logits(self.config, scores, pos[None], slot_pos)
        out = attend(logits, jnp.swapaxes(values[:, layer], 1, 2), self._sink(q, self._sink_params()))
        return self.proj(out.reshape(x.shape)), keys, values


def make_ffn(config: TransformerConfig, layer: int, **kwargs: Any) -> nn.Module:
    """The feed-forward module of block ``layer`` (:meth:`BackboneConfig.ffn_at`; ``kwargs`` such as
    ``name`` go to the module)."""
    return FFN_BLOCKS[config.backbone.ffn_at(layer)](config=config, layer=layer, **kwargs)


def aux_loss(aux: dict[str, jax.Array]) -> jax.Array:
    """Sum of the ``aux`` entries whose name ends in ``_loss`` (float32 scalar; 0 when none)."""
    return sum((value.astype(jnp.float32) for name, value in aux.items() if name.endswith("_loss")),
               jnp.float32(0.0))


class _Block(nn.Module):
    config: TransformerConfig
    layer: int

    def setup(self):
        cfg = self.config
        self.ln1 = nn.LayerNorm(name="ln1")
        self.attn = _Attention(cfg, name="attn")
        self.ln2 = nn.LayerNorm(name="ln2")
        self.ffn = make_ffn(cfg, self.layer)
        nn.share_scope(self, self.ffn)
        self.drop = nn.Dropout(cfg.backbone.dropout)

    def __call__(self, x, deterministic: bool, positions, num_queries: int):
        x = x + self.drop(self.attn(self.ln1(x), deterministic, positions, num_queries), deterministic=deterministic)
        y, aux = self.ffn(self.ln2(x), deterministic, num_queries)
        return x + self.drop(y, deterministic=deterministic), aux

    def step(self, x, keys, values, pos, ffn_state):
        h, keys, values = self.attn.step(self.ln1(x), keys, values, self.layer, pos)
        x = x + h
        y, ffn_state = self.ffn.step(self.ln2(x), ffn_state)
        return x + y, keys, values, ffn_state


class Transformer(nn.Module):
    """The causal transformer; use the module-level ``init``/``apply``/``step`` functions."""

    config: TransformerConfig

    def setup(self):
        cfg = self.config
        width = cfg.backbone.width
        self.embed = nn.Dense(width, name="embed")
        if cfg.backbone.positions == "learned":
            self.pos_embed = self.param("pos_embed", nn.initializers.normal(0.02), (cfg.max_len, width))
        self.blocks = [_Block(cfg, i, name=f"block_{i}") for i in range(cfg.backbone.num_layers)]
        self.ln_f = nn.LayerNorm(name="ln_f")
        self.head = nn.Dense(cfg.d_out, name="head")
        self.drop = nn.Dropout(cfg.backbone.dropout)

    def __call__(self, tokens, deterministic: bool = True, num_queries: int = 0):
        """``tokens [B, T, d_in]``; the last ``num_queries`` of them are queries (see ``apply_queries``).
        Returns ``(out [B, T, d_out], aux {"layer<i>/<name>": scalar})``."""
        length = tokens.shape[1]
        num_context = length - num_queries
        positions = jnp.concatenate([jnp.arange(num_context), jnp.arange(num_queries)])
        x = self.embed(tokens)
        if self.config.backbone.positions == "learned":
            x = x + self.pos_embed[positions]
        x = self.drop(x, deterministic=deterministic)
        aux = {}
        for i, block in enumerate(self.blocks):
            x, block_aux = block(x, deterministic, positions, num_queries)
            aux.update({f"layer{i}/{name}": value for name, value in block_aux.items()})
        return self.head(self.ln_f(x)), aux

    def step(self, cache: KVCache, token):
        x = self.embed(token)
        if self.config.backbone.positions == "learned":
            x = x + jax.lax.dynamic_index_in_dim(self.pos_embed, cache.pos, keepdims=False)
        keys, values, ffn = cache.keys, cache.values, []
        for block, state in zip(self.blocks, cache.ffn):
            x, keys, values, state = block.step(x, keys, values, cache.pos, state)
            ffn.append(state)
        return self.head(self.ln_f(x)), KVCache(keys=keys, values=values, pos=cache.pos + 1, ffn=tuple(ffn))


# ----------------------------------------------------------------------------- functional API


@functools.partial(jax.jit, static_argnums=0)
def init(config: TransformerConfig, key: jax.Array):
    """Parameters (a pytree of float32 arrays) for ``config`` (jitted; compiled once per config)."""
    return Transformer(config).init(key, jnp.zeros((1, 1, config.d_in), jnp.float32))


def _check_tokens(config: TransformerConfig, tokens: jax.Array, length: int) -> None:
    """Rank, feature size and a sequence of ``length`` positions within ``context_limit``."""
    chex.assert_rank(tokens, 3)
    if tokens.shape[-1] != config.d_in:
        raise ValueError(f"tokens: last axis must be d_in={config.d_in}, got shape {tokens.shape}")
    limit = config.context_limit
    if limit is not None and length > limit:
        raise ValueError(
            f"tokens: {length} positions exceed max_len={config.max_len}"
            + (" (learned positions)" if config.window else "; set a window or raise max_len")
        )


def apply(config: TransformerConfig, params, tokens: jax.Array, *, dropout_key: jax.Array | None = None,
          return_aux: bool = False):
    """Outputs ``[B, T, d_out]`` float32 for ``tokens [B, T, d_in]`` under the causal (window) mask.

    Dropout is active only when ``dropout_key`` is given (training) and ``backbone.dropout > 0``.
    With ``return_aux`` returns ``(out, aux)``, ``aux`` the feed-forward blocks' auxiliary
    scalars ``{"layer<i>/<name>": value}`` (add :func:`aux_loss` to the training loss).
    Raises ValueError at trace time if ``T`` exceeds ``config.context_limit``.
    """
    _check_tokens(config, tokens, tokens.shape[1])
    rngs = None if dropout_key is None else {"dropout": dropout_key}
    out, aux = Transformer(config).apply(params, tokens, deterministic=dropout_key is None, rngs=rngs)
    return (out, aux) if return_aux else out


def apply_queries(
    config: TransformerConfig,
    params,
    context: jax.Array,
    queries: jax.Array,
    *,
    dropout_key: jax.Array | None = None,
    return_aux: bool = False,
):
    """Outputs for ``context [B, T, d_in]`` and for ``queries [B, M, d_in]`` (``M <= T + 1``).

    Query ``i`` sits at position ``i`` and sees context tokens ``0 .. i-1`` and itself (not
    other queries): it equals ``peek`` after stepping the first ``i`` context tokens, and
    the last output of ``apply`` on ``concat(context[:, :i], queries[:, i:i+1])``. One call
    trains "predict from every prefix" targets such as DPT's. Returns ``(context_out [B, T,
    d_out], query_out [B, M, d_out])``, and ``aux`` (as in :func:`apply`) third with ``return_aux``.
    """
    chex.assert_rank([context, queries], 3)
    if queries.shape[0] != context.shape[0] or queries.shape[-1] != context.shape[-1]:
        raise ValueError(f"queries: shape {queries.shape} must match context {context.shape} in batch and d_in")
    if queries.shape[1] > context.shape[1] + 1:
        raise ValueError(f"queries: at most T + 1 = {context.shape[1] + 1} queries, got {queries.shape[1]}")
    tokens = jnp.concatenate([context, queries], axis=1)
    _check_tokens(config, tokens, context.shape[1] + 1)
    rngs = None if dropout_key is None else {"dropout": dropout_key}
    out, aux = Transformer(config).apply(
        params, tokens, deterministic=dropout_key is None, num_queries=queries.shape[1], rngs=rngs
    )
    outs = out[:, : context.shape[1]], out[:, context.shape[1] :]
    return (*outs, aux) if return_aux else outs


def init_cache(config: TransformerConfig, batch_size: int) -> KVCache:
    """An empty cache for ``batch_size`` sequences (zeros, ``pos = 0``, each block's ``init_state``)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    backbone = config.backbone
    shape = (batch_size, backbone.num_layers, backbone.num_heads, config.cache_len, backbone.head_dim)
    ffn = tuple(make_ffn(config, layer).init_state(batch_size) for layer in range(backbone.num_layers))
    return KVCache(keys=jnp.zeros(shape, jnp.float32), values=jnp.zeros(shape, jnp.float32), pos=jnp.int32(0),
                   ffn=ffn)


def step(config: TransformerConfig, params, cache: KVCache, token: jax.Array) -> tuple[jax.Array, KVCache]:
    """Feed one token ``[B, d_in]`` at position ``cache.pos``; returns ``(out [B, d_out], cache)``.

    ``out`` equals ``apply(config, params, tokens)[:, cache.pos]`` for the same token stream.
    No dropout. Running past ``config.context_limit`` tokens raises a runtime error (host
    callback, taken only on overflow; under ``vmap`` the check is reduced over the batch).
    """
    chex.assert_rank(token, 2)
    if token.shape[-1] != config.d_in:
        raise ValueError(f"token: last axis must be d_in={config.d_in}, got shape {token.shape}")
    if cache.keys.shape[0] != token.shape[0] or cache.keys.shape[1:] != (
        config.backbone.num_layers, config.backbone.num_heads, config.cache_len, config.head_dim
    ):
        raise ValueError(f"cache: keys shape {cache.keys.shape} does not fit batch {token.shape[0]} and config")
    limit = config.context_limit
    if limit is not None:
        _overflow_guard(cache.pos >= limit, jnp.int32(limit))
    return Transformer(config).apply(params, cache, token, method=Transformer.step)


def peek(config: TransformerConfig, params, cache: KVCache, token: jax.Array) -> jax.Array:
    """Output ``[B, d_out]`` for ``token`` at position ``cache.pos`` without keeping it.

    The cache is left as it was, so a query (e.g. DPT's current state) can be asked after
    any number of context tokens: ``peek`` after stepping ``context[:, :i]`` equals
    ``apply_queries(config, params, context, queries)[1][:, i]``.
    """
    return step(config, params, cache, token)[0]


def _raise_overflow(over, limit):
    if np.any(over):
        raise ValueError(f"step: context exceeds max_len={int(limit)} tokens; set a window or raise max_len")


@jax.custom_batching.custom_vmap
def _overflow_guard(over: jax.Array, limit: jax.Array) -> jax.Array:
    """Raise (through a host callback) iff the bool scalar ``over`` is true."""
    jax.lax.cond(over, lambda: jax.debug.callback(_raise_overflow, over, limit), lambda: None)
    return over


@_overflow_guard.def_vmap
def _overflow_guard_vmap(axis_size, in_batched, over, limit):
    # One check for the whole batch, so the callback still runs only on overflow.
    _overflow_guard(jnp.any(over) if in_batched[0] else over, jnp.max(limit) if in_batched[1] else limit)
    return over, in_batched[0]
