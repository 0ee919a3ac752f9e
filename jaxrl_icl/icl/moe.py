"""Mixture-of-experts feed-forward blocks for in-context RL: T2MIR's token-wise and task-wise MoE.

T2MIR replaces the feed-forward block of chosen layers by two MoEs side by side, each of
output width ``d/2``, their outputs concatenated (:class:`T2MIR`):

* :class:`TokenMoE`: a router per token, top-2 of 6 experts with noisy gating, and a balance
  loss ``weight * (cv^2(importance) + cv^2(load))`` (Shazeer et al. 2017) that spreads tokens
  over the experts.
* :class:`TaskMoE`: top-2 of 12 experts, no noise and no balance loss; the router sees a
  summary of the sequence rather than the token, so whole tasks go to the same experts. A
  contrastive (InfoNCE) loss through a learned bilinear ``W`` pulls the sequence-averaged
  router logits of two sequences of the same task together, against an EMA copy of the router
  (the target, updated by :func:`ema_update` after every optimiser step).

Each module follows the backbone's feed-forward interface:
``__call__(x [B, T, d], deterministic, num_queries=0) -> (y [B, T, d_out], aux)`` over a whole
sequence, ``aux`` a dict of scalar losses already multiplied by their weights (the trainer adds
them as they are); ``step(x [B, d], state) -> (y [B, d_out], state)`` for one token of a
KV-cached rollout; ``init_state(batch_size) -> state``. ``num_queries`` marks the last tokens
as queries in the sense of :func:`jaxrl_icl.icl.transformer.apply_queries` (query ``j`` sits at
position ``j`` and sees the context before it and itself).

Choices where the paper is silent or not causal:

* Noise: plain Gaussian noise of std ``noise_std`` (0.01) on the router logits while training
  (drawn from the ``"dropout"`` RNG stream; none when ``deterministic``), not a learned
  softplus noise scale. The load of an expert is Shazeer's smooth estimate: the summed
  probability, under that noise, that the expert is in a token's top-k.
* ``cv^2(x) = var(x) / mean(x)^2`` with the population variance over experts.
* Task router input: the paper averages the whole sequence; here it is the *causal* prefix
  mean of the block inputs, ``mean(x_{t-window+1} .. x_t)`` (window 0: ``x_0 .. x_t``), so the
  one-token step of a cached rollout equals the full sequence and no token sees the future.
  The cached state is a ring buffer of the last ``cache_len`` inputs (like the KV cache).
* Pairs for the contrastive loss (``paired=True``): a training batch of ``B`` sequences holds
  ``B/2`` tasks twice, sequence ``i`` and ``i + B/2`` the same task; the anchor is the online
  router's sequence-averaged logits of one, the positive the target router's of the other,
  the negatives the target's of the other tasks in that half, both ways round and averaged.
  An odd batch (e.g. the batch of 1 at init), or ``paired=False`` for a trainer that cannot
  draw a task twice, pairs each sequence with its own target logits.

Dispatch is dense: every expert runs on every token and a top-k mask with renormalised gates
mixes them, so the cost is ``num_experts`` MLPs per token. That is the fast choice for small
models (width 64, 6 to 12 experts, a CPU or one GPU), where gathers and scatters cost more
than the matmuls they save; sparse dispatch (tokens sorted into per-expert buffers with a
capacity factor) pays off once ``num_experts / k`` is large (roughly 8 or more) and the experts
are wide enough (hidden sizes in the thousands) that the skipped expert FLOPs dominate the
block, typically across accelerators with expert parallelism.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrl_icl.config import require_in, require_nonnegative, require_positive, require_types

__all__ = [
    "MoEConfig",
    "T2MIR",
    "TaskMoE",
    "TokenMoE",
    "balance_loss",
    "cv_squared",
    "ema_update",
    "info_nce",
    "paired_info_nce",
    "prefix_means",
    "smooth_load",
    "t2mir_block",
    "token_moe_block",
    "top_k_gates",
]

TARGET = "target"  # the variable collection of EMA target routers (not trained by the optimiser)


@dataclasses.dataclass(frozen=True)
class MoEConfig:
    """Mixture-of-experts settings of a backbone whose ``ffn`` is ``"token_moe"`` or ``"t2mir"``.

    Attributes:
      last_layers: the MoE replaces the feed-forward block of the last this many layers (T2MIR:
        the last layer); the others keep the dense MLP.
      token_experts: experts of the token-wise MoE (6).
      task_experts: experts of the task-wise MoE (12 for AD on Dark Room, 8 elsewhere).
      k: experts per token in both (2).
      noise_std: std of the Gaussian noise on the token router's logits while training (0.01).
      balance_weight: weight of the token MoE's balance loss (0.1 AD, 0.01 DPT).
      contrastive_weight: weight of the task MoE's InfoNCE loss (0.01 AD, 0.001 DPT).
      ema_rate: the target router moves this fraction towards the online one after every
        optimiser step (0.005).
      paired: training batches hold ``B/2`` tasks twice (sequences ``i`` and ``i + B/2``), the
        contrastive positives; false pairs each sequence with itself.

    Every expert is a GELU MLP of hidden width ``mlp_ratio`` times its output width (``width``
    for ``token_moe``, ``width / 2`` for each half of ``t2mir``).
    """

    last_layers: int = 1
    token_experts: int = 6
    task_experts: int = 12
    k: int = 2
    noise_std: float = 0.01
    balance_weight: float = 0.1
    contrastive_weight: float = 0.01
    ema_rate: float = 0.005
    paired: bool = True

    def __post_init__(self) -> None:
        require_types(self)
        for name in ("last_layers", "k"):
            require_positive(self, name)
        for name in ("noise_std", "balance_weight", "contrastive_weight"):
            require_nonnegative(self, name)
        require_in(self, "token_experts", self.k + 1, 1 << 16)
        require_in(self, "task_experts", self.k, 1 << 16)
        require_in(self, "ema_rate", 0.0, 1.0)


# ----------------------------------------------------------------------------- pure pieces


def top_k_gates(logits: jax.Array, k: int) -> jax.Array:
    """Gates ``[..., E]``: the softmax over each row's ``k`` largest logits, 0 elsewhere (rows sum to 1)."""
    values, index = jax.lax.top_k(logits, k)
    weights = jax.nn.softmax(values.astype(jnp.float32), axis=-1)
    return jnp.einsum("...k,...ke->...e", weights, jax.nn.one_hot(index, logits.shape[-1])).astype(logits.dtype)


def smooth_load(clean: jax.Array, noisy: jax.Array, k: int, noise_std: float) -> jax.Array:
    """Expected number of tokens per expert, float32 ``[E]``, from ``clean``/``noisy`` logits ``[N, E]``.

    Expert ``i`` is in a token's top-k when its clean logit plus fresh noise beats the k-th
    largest of the *other* noisy logits, which happens with probability
    ``Phi((clean_i - threshold_i) / noise_std)`` (Shazeer et al. 2017); summed over tokens.
    Needs ``E > k``.
    """
    chex.assert_rank([clean, noisy], 2)
    num_experts = clean.shape[-1]
    if num_experts <= k:
        raise ValueError(f"smooth_load: needs more experts than k, got {num_experts} <= {k}")
    clean, noisy = clean.astype(jnp.float32), noisy.astype(jnp.float32)
    top, index = jax.lax.top_k(noisy, k + 1)
    in_top = jax.nn.one_hot(index[:, :k], num_experts).sum(axis=1) > 0
    threshold = jnp.where(in_top, top[:, k:], top[:, k - 1 : k])
    return jax.scipy.stats.norm.cdf((clean - threshold) / noise_std).sum(axis=0)


def cv_squared(x: jax.Array) -> jax.Array:
    """Squared coefficient of variation ``var(x) / mean(x)^2`` of ``x [E]`` (population variance)."""
    x = x.astype(jnp.float32)
    return jnp.var(x) / (jnp.mean(x) ** 2 + 1e-10)


def balance_loss(gates: jax.Array, load: jax.Array) -> jax.Array:
    """``cv^2(importance) + cv^2(load)`` with ``importance = gates.sum(0)`` for ``gates [N, E]``
    and ``load [E]`` (:func:`smooth_load`); 0 when both are uniform over experts."""
    return cv_squared(gates.astype(jnp.float32).sum(axis=0)) + cv_squared(load)


def info_nce(anchors: jax.Array, keys: jax.Array, w: jax.Array) -> jax.Array:
    """InfoNCE with bilinear scores: ``mean_i -log softmax_j(a_i W k_j)[i]`` for ``anchors``,
    ``keys [N, E]`` and ``w [E, E]``; the positive of anchor ``i`` is key ``i``, the other keys
    are its negatives. Scores have their row maximum subtracted; no temperature."""
    chex.assert_rank([anchors, keys, w], 2)
    scores = (anchors @ w @ keys.T).astype(jnp.float32)
    scores = scores - jax.lax.stop_gradient(scores.max(axis=1, keepdims=True))
    return -jnp.mean(jnp.diagonal(jax.nn.log_softmax(scores, axis=1)))


def paired_info_nce(online: jax.Array, target: jax.Array, w: jax.Array) -> jax.Array:
    """:func:`info_nce` for a batch ``[B, E]`` whose sequences ``i`` and ``i + B/2`` share a task:
    online first half against target second half and the other way round, averaged. An odd
    ``B`` pairs each online row with its own target row."""
    half = online.shape[0] // 2
    if online.shape[0] % 2:
        return info_nce(online, target, w)
    return 0.5 * (info_nce(online[:half], target[half:], w) + info_nce(online[half:], target[:half], w))


def prefix_means(x: jax.Array, window: int = 0, num_queries: int = 0) -> jax.Array:
    """Causal mean of ``x [B, T, d]`` over what each token sees, ``[B, T, d]``.

    Context token ``t`` (one of the first ``T - num_queries``) averages context tokens
    ``max(0, t - window + 1) .. t`` (``0 .. t`` for ``window == 0``); query ``j`` (one of the
    last ``num_queries``, at position ``j``) averages context tokens ``max(0, j - window + 1) ..
    j - 1`` and itself.
    """
    chex.assert_rank(x, 3)
    length = x.shape[1]
    num_context = length - num_queries
    positions = jnp.concatenate([jnp.arange(num_context), jnp.arange(num_queries)])
    offset = positions[:, None] - jnp.arange(num_context)[None, :]  # [T, T_context]
    is_query = jnp.arange(length) >= num_context
    visible = (offset >= 0) & ~(is_query[:, None] & (offset == 0))
    if window:
        visible &= offset < window
    count = visible.sum(axis=1) + is_query  # [T]
    weights = visible / count[:, None]
    own = jnp.where(is_query, 1.0 / count, 0.0)[None, :, None]
    return jnp.einsum("tk,bkd->btd", weights.astype(x.dtype), x[:, :num_context]) + own.astype(x.dtype) * x


def ema_update(old: Any, new: Any, rate: float) -> Any:
    """``new`` variables with every EMA target leaf set to ``(1 - rate) * old_target + rate * online``.

    ``old`` / ``new`` are the model variables (``{"params": ..., "target": ...}``) before and
    after an optimiser step; the target collection mirrors the module paths of the online
    router parameters it tracks. Whatever the optimiser did to the target leaves (e.g. weight
    decay) is discarded. Variables without a target collection come back unchanged.
    """
    if TARGET not in new:
        return new

    def blend(old_target, online):
        if isinstance(old_target, dict):
            return {name: blend(value, online[name]) for name, value in old_target.items()}
        return ((1.0 - rate) * old_target + rate * online).astype(old_target.dtype)

    return {**new, TARGET: blend(old[TARGET], new["params"])}


# ----------------------------------------------------------------------------- modules


class _Experts(nn.Module):
    """``num_experts`` GELU MLPs ``width -> hidden -> d_out``, all run on every token and mixed by gates."""

    num_experts: int
    hidden: int
    d_out: int

    @nn.compact
    def __call__(self, x: jax.Array, gates: jax.Array) -> jax.Array:
        """``x [..., width]``, ``gates [..., E]`` -> ``sum_e gates_e * expert_e(x)`` ``[..., d_out]``."""
        init = nn.initializers.lecun_normal(batch_axis=(0,))
        e = self.num_experts
        w1 = self.param("w1", init, (e, x.shape[-1], self.hidden))
        b1 = self.param("b1", nn.initializers.zeros, (e, self.hidden))
        w2 = self.param("w2", init, (e, self.hidden, self.d_out))
        b2 = self.param("b2", nn.initializers.zeros, (e, self.d_out))
        h = nn.gelu(jnp.einsum("...d,edh->...eh", x, w1.astype(x.dtype)) + b1.astype(x.dtype))
        y = jnp.einsum("...eh,eho->...eo", h, w2.astype(x.dtype)) + b2.astype(x.dtype)
        return jnp.einsum("...e,...eo->...o", gates.astype(x.dtype), y)


def _sow_load(module: nn.Module, name: str, gates: jax.Array) -> None:
    """Record the fraction of routing slots each expert took, ``[E]`` summing to 1 (collection
    ``"intermediates"``, read with ``mutable=["intermediates"]``)."""
    chosen = (gates > 0).astype(jnp.float32).reshape(-1, gates.shape[-1])
    module.sow("intermediates", name, chosen.sum(axis=0) / chosen.sum())


class TokenMoE(nn.Module):
    """Token-wise MoE: each token routed to the top-``k`` of ``num_experts`` experts.

    Attributes:
      d_out: output features.
      hidden: hidden width of every expert MLP.
      num_experts: experts (T2MIR: 6).
      k: experts per token (2).
      noise_std: std of the Gaussian noise on the router logits while training.
      balance_weight: the balance loss is ``balance_weight * (cv^2(importance) + cv^2(load))``
        over all tokens of the batch (T2MIR: 0.1 for AD, 0.01 for DPT); ``aux["balance_loss"]``.
    """

    d_out: int
    hidden: int
    num_experts: int = 6
    k: int = 2
    noise_std: float = 0.01
    balance_weight: float = 0.1

    def setup(self):
        self.router = nn.Dense(self.num_experts, name="router")
        self.experts = _Experts(self.num_experts, self.hidden, self.d_out, name="experts")

    def __call__(self, x: jax.Array, deterministic: bool = True, num_queries: int = 0):
        del num_queries  # routing is per token
        clean = self.router(x)
        noisy = clean
        if not deterministic and self.noise_std > 0:
            noisy = clean + self.noise_std * jax.random.normal(self.make_rng("dropout"), clean.shape, clean.dtype)
        gates = top_k_gates(noisy, self.k)
        _sow_load(self, "token_load", gates)
        flat = lambda a: a.reshape(-1, self.num_experts)
        load = smooth_load(flat(clean), flat(noisy), self.k, max(self.noise_std, 1e-6))
        aux = {"balance_loss": self.balance_weight * balance_loss(flat(gates), load)}
        return self.experts(x, gates), aux

    def step(self, x: jax.Array, state: Any):
        """One token ``x [B, width]`` (no noise); ``state`` is ``{}`` and passes through."""
        return self.experts(x, top_k_gates(self.router(x), self.k)), state

    def init_state(self, batch_size: int) -> dict:
        del batch_size
        return {}


def _prefix_state(batch_size: int, cache_len: int, width: int) -> dict[str, jax.Array]:
    """Ring buffer ``inputs [B, cache_len, width]`` of the last block inputs and ``pos`` (int32
    scalar, tokens seen)."""
    return {"inputs": jnp.zeros((batch_size, cache_len, width), jnp.float32), "pos": jnp.int32(0)}


class TaskMoE(nn.Module):
    """Task-wise MoE: the router sees the causal prefix mean of the block inputs.

    Attributes:
      width: input features ``d``.
      d_out: output features.
      hidden: hidden width of every expert MLP.
      cache_len: ring-buffer slots of the cached state (the backbone's KV cache length).
      window: the prefix mean covers the last ``window`` tokens (0: all), as attention does.
      num_experts: experts (T2MIR: 12 for AD on Dark Room, 8 elsewhere).
      k: experts per token (2).
      contrastive_weight: ``aux["contrastive_loss"]`` is this times :func:`paired_info_nce` of
        the online and target routers' sequence-averaged logits (T2MIR: 0.01 AD, 0.001 DPT).
      paired: sequences ``i`` and ``i + B/2`` of a batch share a task (else :func:`info_nce` of
        each sequence against itself).

    Variables: ``params`` hold the router (``router_kernel [d, E]``, ``router_bias [E]``), the
    bilinear ``contrastive_w [E, E]`` and the experts; the collection ``"target"`` holds the
    EMA router (same names), initialised equal to the router, read under ``stop_gradient`` and
    moved only by :func:`ema_update`.
    """

    width: int
    d_out: int
    hidden: int
    cache_len: int
    window: int = 0
    num_experts: int = 12
    k: int = 2
    contrastive_weight: float = 0.01
    paired: bool = True

    def setup(self):
        e = self.num_experts
        self.router_kernel = self.param("router_kernel", nn.initializers.lecun_normal(), (self.width, e))
        self.router_bias = self.param("router_bias", nn.initializers.zeros, (e,))
        self.target_kernel = self.variable(TARGET, "router_kernel", lambda: self.router_kernel)
        self.target_bias = self.variable(TARGET, "router_bias", lambda: self.router_bias)
        self.contrastive_w = self.param("contrastive_w", nn.initializers.lecun_normal(), (e, e))
        self.experts = _Experts(e, self.hidden, self.d_out, name="experts")

    def _logits(self, mean: jax.Array) -> jax.Array:
        return mean @ self.router_kernel.astype(mean.dtype) + self.router_bias.astype(mean.dtype)

    def __call__(self, x: jax.Array, deterministic: bool = True, num_queries: int = 0):
        del deterministic  # no noise, no dropout
        mean = prefix_means(x, self.window, num_queries)
        logits = self._logits(mean)
        gates = top_k_gates(logits, self.k)
        _sow_load(self, "task_load", gates)
        target = jax.lax.stop_gradient(mean @ self.target_kernel.value.astype(mean.dtype)
                                       + self.target_bias.value.astype(mean.dtype))
        w = self.contrastive_w.astype(jnp.float32)
        nce = (paired_info_nce if self.paired else info_nce)(
            logits.mean(axis=1).astype(jnp.float32), target.mean(axis=1).astype(jnp.float32), w)
        return self.experts(x, gates), {"contrastive_loss": self.contrastive_weight * nce}

    def step(self, x: jax.Array, state: dict[str, jax.Array]):
        """One token ``x [B, width]`` at position ``state["pos"]``; its input enters the ring buffer."""
        pos, slots = state["pos"], self.cache_len
        inputs = jax.lax.dynamic_update_slice(state["inputs"], x[:, None].astype(jnp.float32), (0, pos % slots, 0))
        # Slot s holds the latest position p <= pos with p = s (mod slots); negative = empty.
        slot_pos = pos - jnp.mod(pos - jnp.arange(slots), slots)
        visible = slot_pos >= 0
        if self.window:
            visible &= pos - slot_pos < self.window
        mean = jnp.einsum("s,bsd->bd", visible / visible.sum(), inputs).astype(x.dtype)
        out = self.experts(x, top_k_gates(self._logits(mean), self.k))
        return out, {"inputs": inputs, "pos": pos + 1}

    def init_state(self, batch_size: int) -> dict[str, jax.Array]:
        return _prefix_state(batch_size, self.cache_len, self.width)


class T2MIR(nn.Module):
    """:class:`TokenMoE` and :class:`TaskMoE` side by side on the same input, each ``width / 2``
    wide (the token half takes the odd feature when ``width`` is odd), outputs concatenated
    ``[..., width]``; ``aux`` holds both losses and the state is the task MoE's.

    Attributes:
      width: input and output features ``d``.
      cache_len, window: as in :class:`TaskMoE`.
      hidden: hidden width of every expert MLP of both halves.
      token_experts, task_experts, k: expert counts (6 and 12) and experts per token (2).
      noise_std, balance_weight: the token MoE's.
      contrastive_weight, paired: the task MoE's.
    """

    width: int
    hidden: int
    cache_len: int
    window: int = 0
    token_experts: int = 6
    task_experts: int = 12
    k: int = 2
    noise_std: float = 0.01
    balance_weight: float = 0.1
    contrastive_weight: float = 0.01
    paired: bool = True

    def setup(self):
        half = self.width // 2
        self.token = TokenMoE(self.width - half, self.hidden, self.token_experts, self.k, self.noise_std,
                              self.balance_weight, name="token")
        self.task = TaskMoE(self.width, half, self.hidden, self.cache_len, self.window, self.task_experts, self.k,
                            self.contrastive_weight, self.paired, name="task")

    def __call__(self, x: jax.Array, deterministic: bool = True, num_queries: int = 0):
        y_token, aux_token = self.token(x, deterministic, num_queries)
        y_task, aux_task = self.task(x, deterministic, num_queries)
        return jnp.concatenate([y_token, y_task], axis=-1), {**aux_token, **aux_task}

    def step(self, x: jax.Array, state: dict[str, jax.Array]):
        y_token, _ = self.token.step(x, {})
        y_task, state = self.task.step(x, state)
        return jnp.concatenate([y_token, y_task], axis=-1), state

    def init_state(self, batch_size: int) -> dict[str, jax.Array]:
        return _prefix_state(batch_size, self.cache_len, self.width)


# ----------------------------------------------------------------------------- backbone plug


def token_moe_block(config: Any, layer: int, **kwargs: Any) -> TokenMoE:
    """The ``"token_moe"`` feed-forward block of a transformer ``config`` (its ``backbone.moe``
    settings); ``layer`` is unused (the backbone picks the layers); ``kwargs`` go to the module."""
    del layer
    backbone, moe = config.backbone, config.backbone.moe
    return TokenMoE(d_out=backbone.width, hidden=backbone.mlp_ratio * backbone.width, num_experts=moe.token_experts,
                    k=moe.k, noise_std=moe.noise_std, balance_weight=moe.balance_weight, **kwargs)


def t2mir_block(config: Any, layer: int, **kwargs: Any) -> T2MIR:
    """The ``"t2mir"`` feed-forward block of a transformer ``config``: the task MoE's prefix mean
    follows the attention window and its state the KV cache length (``config.window``,
    ``config.cache_len``)."""
    del layer
    backbone, moe = config.backbone, config.backbone.moe
    return T2MIR(width=backbone.width, hidden=backbone.mlp_ratio * (backbone.width // 2),
                 cache_len=config.cache_len, window=config.window, token_experts=moe.token_experts,
                 task_experts=moe.task_experts, k=moe.k, noise_std=moe.noise_std,
                 balance_weight=moe.balance_weight, contrastive_weight=moe.contrastive_weight, paired=moe.paired,
                 **kwargs)
