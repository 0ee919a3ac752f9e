"""Decision Transformer (return-conditioned sequence modelling) and its multi-objective variant,
on the shared causal transformer (:mod:`jaxrl_icl.icl.transformer`).

**Tokens.** Each step ``t`` of a trajectory gives three tokens in the order ``R_t, s_t, a_t``:
the return-to-go (divided by ``return_scale``), the normalised observation and the action
(in ``[-1, 1]``, or one-hot for discrete actions). A token is one vector of
``d_in = 3 + 1 + obs + act (+ regions) + timestep_features`` laid out in blocks::

    [ type one-hot (3) | R | s | a | action regions (MO-DT) | timestep features ]

with only its own block filled. The transformer's input layer is one linear map of this
vector, which is exactly a separate linear embedding per token type (the type one-hot gives
each its own bias) plus a timestep embedding shared by the three tokens, as DT has. DT
learns a table of timestep embeddings; here the timestep enters as ``timestep_features``
sinusoids (periods ``2 pi * 10000^(2i/F)`` steps) that the same linear map embeds, so no
episode-length bound is baked into the parameters.

**Prediction.** ``a_t`` is read from the output at the ``s_t`` token (tanh for continuous
actions, logits for discrete ones) and trained by mean squared error (cross-entropy) over the
valid, unpadded steps of segments from :func:`~jaxrl_icl.offline.dataset.sample_segments`.

**Multi-objective DT** (``multi_objective=True``). Two auxiliary targets are read from the
output at the ``a_t`` token, the first token that has seen the whole step: the next state
``s_{t+1}`` and the next return-to-go ``R_{t+1}`` (scaled), each a masked mean squared error
over the steps whose successor lies in the segment, weighted by ``state_loss_weight`` and
``return_loss_weight``. The ``a_t`` token also carries coarse action-space regions: each
action dimension's bin among ``action_bins`` equal bins of ``[-1, 1]`` (3 bins: clearly
negative, near zero, clearly positive), one-hot per dimension, so the linear input map adds a
learned embedding of the region pattern to the action token. Equal bins of the normalised
range need no dataset statistics and are identical at training and rollout time. Discrete
actions are their own regions (the one-hot action already is a region token), so there the
switch adds only the auxiliary losses.

**Rollout.** Inside jit, one token at a time through ``transformer.step`` on a KV cache
(``R_t``, then ``s_t`` gives the action, the env steps, then ``a_t``; the commanded return
drops by each reward). The attention window is ``3 * context_len - 1`` tokens with relative
positions (ALiBi or RoPE), so the cache is a ring buffer: the ``s_t`` query sees
``R_{t-K+1} .. s_t``, the ``K``-step span DT's evaluation context holds, and an episode may
be any length. A cached rollout equals the full causal (windowed) ``apply`` over the
episode's whole token stream; ``cached=False`` recomputes that at every step (the oracle and
the speed baseline). Training segments may be longer than the window (``segment_len``), so
the model also learns from tokens whose keys were computed with earlier context, as they
are in the sliding rollout (the default is twice the window: with segments of one window a
tiny DT cloning one expert trajectory drifted by ~0.1 in the action late in the episode,
with two it matched within 0.015).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl_icl.config import ConfigError, require_nonnegative, require_positive, require_types
from jaxrl_icl.icl import transformer as tr
from jaxrl_icl.offline.dataset import Dataset, ObsNormalizer, sample_segments
from jaxrl_icl.trainer import Trainer

RETURN, STATE, ACTION = 0, 1, 2  # token types, in their order within a step


@dataclasses.dataclass(frozen=True)
class DTConfig:
    """A (multi-objective) Decision Transformer.

    Attributes:
      num_updates: gradient steps.
      batch_size: segments per step.
      lr: AdamW peak learning rate (linear warmup from 0, then constant).
      warmup_steps: linear warmup length in gradient steps.
      weight_decay: AdamW weight decay.
      grad_clip: global gradient norm clip.
      context_len: steps ``K`` the ``s_t`` query attends over (window ``3K - 1`` tokens).
      segment_len: steps per training segment (``>= context_len``).
      return_scale: returns-to-go are divided by this in the tokens (and the return target).
      timestep_features: sinusoidal timestep features per token (even).
      backbone: the transformer; positions must be ``"alibi"`` or ``"rope"`` (sliding window).
      multi_objective: MO-DT: next-state and next-return auxiliary losses and action regions.
      state_loss_weight: weight of the next-state loss (MO-DT).
      return_loss_weight: weight of the next-return-to-go loss (MO-DT).
      action_bins: equal bins of ``[-1, 1]`` per action dimension in the region tokens (MO-DT,
        continuous actions; 0 = no region tokens).
    """

    num_updates: int = 100_000
    batch_size: int = 64
    lr: float = 1e-4
    warmup_steps: int = 1_000
    weight_decay: float = 1e-4
    grad_clip: float = 0.25
    context_len: int = 20
    segment_len: int = 40
    return_scale: float = 1000.0
    timestep_features: int = 16
    backbone: tr.BackboneConfig = tr.BackboneConfig(width=64, num_layers=3, num_heads=4, dropout=0.1)
    multi_objective: bool = False
    state_loss_weight: float = 1.0
    return_loss_weight: float = 1.0
    action_bins: int = 3

    def __post_init__(self) -> None:
        require_types(self)
        for name in ("num_updates", "batch_size", "lr", "grad_clip", "context_len", "segment_len",
                     "return_scale", "timestep_features"):
            require_positive(self, name)
        for name in ("warmup_steps", "weight_decay", "state_loss_weight", "return_loss_weight", "action_bins"):
            require_nonnegative(self, name)
        if self.segment_len < self.context_len:
            raise ConfigError("segment_len", f"must be >= context_len={self.context_len}, got {self.segment_len}")
        if self.timestep_features % 2:
            raise ConfigError("timestep_features", f"must be even (sin and cos pairs), got {self.timestep_features}")
        if self.action_bins == 1:
            raise ConfigError("action_bins", "must be 0 (no regions) or at least 2")
        tr.require_relative_positions(self.backbone)


def mo_dt_config(**overrides: Any) -> DTConfig:
    """:class:`DTConfig` with ``multi_objective=True`` (and any other ``overrides``)."""
    return DTConfig(**{"multi_objective": True, **overrides})


@dataclasses.dataclass(frozen=True)
class Layout:
    """Token layout and model of one DT on one task (built by :func:`layout`).

    Attributes:
      config: the DT config.
      obs_dim: observation size.
      action_dim: action vector size, or the number of actions when ``discrete``.
      discrete: integer actions (one-hot tokens, logits head).
      model: the transformer config (``d_in`` as in the module docstring, ``d_out = act``
        plus ``obs + 1`` auxiliary outputs for MO-DT).
    """

    config: DTConfig
    obs_dim: int
    action_dim: int
    discrete: bool
    model: tr.TransformerConfig

    @property
    def region_dim(self) -> int:
        """Region-token features: ``act * action_bins`` for continuous MO-DT, else 0."""
        use = self.config.multi_objective and not self.discrete and self.config.action_bins
        return self.action_dim * self.config.action_bins if use else 0

    @property
    def d_in(self) -> int:
        return 4 + self.obs_dim + self.action_dim + self.region_dim + self.config.timestep_features

    def timestep_features(self, t: jax.Array) -> jax.Array:
        """float32 ``[..., F]``: ``sin`` and ``cos`` of ``t * 10000^(-2i/F)``, ``i < F/2``."""
        half = self.config.timestep_features // 2
        freqs = 10000.0 ** (-2.0 * jnp.arange(half, dtype=jnp.float32) / self.config.timestep_features)
        angles = jnp.asarray(t, jnp.float32)[..., None] * freqs
        return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)

    def regions(self, action: jax.Array) -> jax.Array:
        """float32 ``[..., act * action_bins]``: one-hot bin of each dimension of ``action [..., act]``."""
        bins = self.config.action_bins
        index = jnp.clip(jnp.floor((action + 1.0) * 0.5 * bins), 0, bins - 1).astype(jnp.int32)
        return jax.nn.one_hot(index, bins).reshape(*action.shape[:-1], self.region_dim)

    def _token(self, kind: int, t: jax.Array, rtg=None, obs=None, action=None) -> jax.Array:
        batch = jnp.shape(t)
        zeros = lambda n: jnp.zeros((*batch, n), jnp.float32)  # noqa: E731
        if action is not None:
            vector = jax.nn.one_hot(action, self.action_dim) if self.discrete else action.astype(jnp.float32)
            regions = self.regions(action) if self.region_dim else zeros(0)
        parts = [
            jnp.broadcast_to(jax.nn.one_hot(kind, 3), (*batch, 3)),
            zeros(1) if rtg is None else jnp.asarray(rtg, jnp.float32)[..., None],
            zeros(self.obs_dim) if obs is None else obs.astype(jnp.float32),
            zeros(self.action_dim) if action is None else vector,
            zeros(self.region_dim) if action is None else regions,
            self.timestep_features(t),
        ]
        return jnp.concatenate(parts, axis=-1)

    def return_token(self, rtg: jax.Array, t: jax.Array) -> jax.Array:
        """``[..., d_in]`` for the unscaled return-to-go ``rtg [...]`` at timestep ``t [...]``."""
        return self._token(RETURN, t, rtg=jnp.asarray(rtg, jnp.float32) / self.config.return_scale)

    def state_token(self, obs: jax.Array, t: jax.Array) -> jax.Array:
        """``[..., d_in]`` for a normalised observation ``[..., obs]``."""
        return self._token(STATE, t, obs=obs)

    def action_token(self, action: jax.Array, t: jax.Array) -> jax.Array:
        """``[..., d_in]`` for an action ``[..., act]`` in ``[-1, 1]`` (int ``[...]`` when discrete)."""
        return self._token(ACTION, t, action=action)

    def segment_tokens(self, segment: dict[str, jax.Array]) -> jax.Array:
        """``[B, 3K, d_in]``: ``R_0, s_0, a_0, R_1, ...`` of a :func:`sample_segments` batch."""
        t = segment["timesteps"]
        steps = jnp.stack([self.return_token(segment["returns_to_go"], t),
                           self.state_token(segment["observations"], t),
                           self.action_token(segment["actions"], t)], axis=2)  # [B, K, 3, d_in]
        return steps.reshape(steps.shape[0], -1, steps.shape[-1])

    def action_from_output(self, out: jax.Array) -> jax.Array:
        """The action of an ``s_t`` output ``[..., d_out]``: ``tanh`` of its first ``act``
        entries, or the argmax of the logits (int32) when discrete."""
        head = out[..., : self.action_dim]
        return jnp.argmax(head, axis=-1).astype(jnp.int32) if self.discrete else jnp.tanh(head)


def layout(config: DTConfig, obs_dim: int, action_dim: int, *, discrete: bool = False) -> Layout:
    """The :class:`Layout` (tokens and transformer) of ``config`` on a task."""
    proto = Layout(config, obs_dim, action_dim, discrete, model=None)  # type: ignore[arg-type]
    window = 3 * config.context_len - 1
    d_out = action_dim + (obs_dim + 1 if config.multi_objective else 0)
    model = tr.TransformerConfig(d_in=proto.d_in, d_out=d_out, max_len=max(window, 3 * config.segment_len),
                                 window=window, backbone=config.backbone)
    return dataclasses.replace(proto, model=model)


def _masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of ``values [B, K, ...]`` over the entries of steps where ``mask [B, K]`` holds."""
    m = mask.reshape(mask.shape + (1,) * (values.ndim - mask.ndim)).astype(jnp.float32)
    count = jnp.sum(m) * (values.size // mask.size)
    return jnp.sum(values * m) / jnp.maximum(count, 1.0)


def losses(lay: Layout, out: jax.Array, segment: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Losses of transformer outputs ``out [B, 3K, d_out]`` on ``segment``.

    ``action_loss``: masked MSE of ``tanh`` predictions against the actions (mean over valid
    steps and action dimensions), or masked cross-entropy when discrete. MO-DT adds
    ``state_loss`` (next normalised state) and ``return_loss`` (next scaled return-to-go),
    masked to steps whose successor is valid. ``loss`` is the weighted total.
    """
    config = lay.config
    out = out.reshape(out.shape[0], -1, 3, out.shape[-1])
    mask = segment["mask"]
    head = out[:, :, STATE, : lay.action_dim]
    if lay.discrete:
        action_loss = _masked_mean(optax.softmax_cross_entropy_with_integer_labels(head, segment["actions"]), mask)
    else:
        action_loss = _masked_mean((jnp.tanh(head) - segment["actions"]) ** 2, mask)
    result = {"action_loss": action_loss, "loss": action_loss}
    if config.multi_objective:
        aux = out[:, :-1, ACTION, lay.action_dim:]
        has_next = mask[:, 1:]
        state_loss = _masked_mean((aux[..., : lay.obs_dim] - segment["observations"][:, 1:]) ** 2, has_next)
        next_return = segment["returns_to_go"][:, 1:] / config.return_scale
        return_loss = _masked_mean((aux[..., lay.obs_dim] - next_return) ** 2, has_next)
        result.update(state_loss=state_loss, return_loss=return_loss,
                      loss=action_loss + config.state_loss_weight * state_loss
                      + config.return_loss_weight * return_loss)
    return result


@struct.dataclass
class DTState:
    params: Any
    opt: Any
    key: jax.Array
    step: jax.Array


def make_train(config: DTConfig, obs_dim: int, action_dim: int, *, discrete: bool = False) -> Trainer:
    """The (MO-)DT as a :class:`~jaxrl_icl.trainer.Trainer` over a :class:`Dataset` argument
    (observations normalised, continuous actions in ``[-1, 1]``); vmappable over seed keys.

    One update samples ``batch_size`` segments of ``segment_len`` steps inside jit and takes
    one AdamW step (global-norm clip, linear warmup) on :func:`losses`' ``loss``. Metrics per
    update: every entry of :func:`losses` plus the backbone's auxiliary scalars.
    """
    lay = layout(config, obs_dim, action_dim, discrete=discrete)
    schedule = optax.linear_schedule(0.0, config.lr, max(config.warmup_steps, 1))
    tx = optax.chain(optax.clip_by_global_norm(config.grad_clip),
                     optax.adamw(schedule, weight_decay=config.weight_decay))

    def init(key: jax.Array, dataset: Dataset) -> DTState:
        del dataset
        key, k_init = jax.random.split(key)
        params = tr.init(lay.model, k_init)
        return DTState(params=params, opt=tx.init(params), key=key, step=jnp.int32(0))

    def loss_fn(params, key, segment):
        dropout_key = key if config.backbone.dropout else None
        out, aux = tr.apply(lay.model, params, lay.segment_tokens(segment), dropout_key=dropout_key,
                            return_aux=True)
        metrics = losses(lay, out, segment)
        total = metrics["loss"] + tr.aux_loss(aux)
        return total, {**metrics, **aux, "loss": total}

    def update(state: DTState, dataset: Dataset) -> tuple[DTState, dict[str, jax.Array]]:
        key, k_batch, k_drop = jax.random.split(state.key, 3)
        segment = sample_segments(k_batch, dataset, config.batch_size, config.segment_len)
        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, k_drop, segment)
        updates, opt = tx.update(grads, state.opt, state.params)
        return DTState(params=optax.apply_updates(state.params, updates), opt=opt, key=key,
                       step=state.step + 1), metrics

    return Trainer(init=init, update=update, num_updates=config.num_updates, env_steps_per_update=0)


# ----------------------------------------------------------------------------- rollouts


def rollout(lay: Layout, params: Any, key: jax.Array, env: Any, env_params: Any, target_return: jax.Array, *,
            num_steps: int, normalizer: ObsNormalizer | None = None, action_scale: Any = 1.0,
            cached: bool = True) -> dict[str, jax.Array]:
    """One episode of the DT commanded to reach ``target_return`` (unscaled float scalar).

    Resets with ``key``'s first half and runs ``num_steps`` env steps on keys split from its
    second half; rewards after the first episode ends are masked out (as
    :func:`jaxrl_icl.rl.evaluate.policy_episode_return`). ``cached`` feeds one token at a time
    through the KV cache; otherwise the whole causal ``apply`` over the token stream so far is
    recomputed at every step (same result, quadratic cost). Jittable and vmappable.

    Returns ``return`` (float32 scalar), ``tokens [3 * num_steps, d_in]`` (the stream fed to the
    model) and ``actions [num_steps, act]`` (int ``[num_steps]`` discrete), in ``[-1, 1]``.
    """
    model = lay.model
    reset_key, rollout_key = jax.random.split(key)
    obs, env_state = env.reset(reset_key, env_params)
    memory = tr.init_cache(model, 1) if cached else jnp.zeros((1, 3 * num_steps, lay.d_in), jnp.float32)

    def feed(memory, token, position):
        """Feed ``token [d_in]`` at stream ``position``; returns (output [d_out], memory)."""
        if cached:
            out, memory = tr.step(model, params, memory, token[None])
            return out[0], memory
        memory = jax.lax.dynamic_update_slice(memory, token[None, None], (0, position, 0))
        return tr.apply(model, params, memory)[0, position], memory

    def body(carry, inputs):
        obs, env_state, memory, rtg, alive, total = carry
        t, step_key = inputs
        x = obs.reshape(-1).astype(jnp.float32)
        r_token, s_token = lay.return_token(rtg, t), lay.state_token(x if normalizer is None else normalizer(x), t)
        _, memory = feed(memory, r_token, 3 * t)
        out, memory = feed(memory, s_token, 3 * t + 1)
        action = lay.action_from_output(out)
        env_action = action if lay.discrete else action * action_scale
        obs, env_state, reward, terminated, truncated, _ = env.step(step_key, env_state, env_action, env_params)
        a_token = lay.action_token(action, t)
        _, memory = feed(memory, a_token, 3 * t + 2)
        reward = reward.astype(jnp.float32)
        total = total + jnp.where(alive, reward, 0.0)
        carry = (obs, env_state, memory, rtg - reward, alive & ~(terminated | truncated), total)
        return carry, (jnp.stack([r_token, s_token, a_token]), action)

    carry = (obs, env_state, memory, jnp.asarray(target_return, jnp.float32), jnp.bool_(True), jnp.float32(0.0))
    inputs = (jnp.arange(num_steps), jax.random.split(rollout_key, num_steps))
    (*_, total), (tokens, actions) = jax.lax.scan(body, carry, inputs)
    return {"return": total, "tokens": tokens.reshape(-1, lay.d_in), "actions": actions}


def target_returns(lay: Layout, params: Any, key: jax.Array, env: Any, env_params: Any, targets: jax.Array, *,
                   num_episodes: int, num_steps: int, normalizer: ObsNormalizer | None = None,
                   action_scale: Any = 1.0, cached: bool = True) -> jax.Array:
    """float32 ``[G, num_episodes]``: episode returns under each commanded return of
    ``targets [G]`` (:func:`rollout`, vmapped over targets and episodes; every target sees
    the same ``num_episodes`` episode keys split from ``key``)."""
    keys = jax.random.split(key, num_episodes)
    one = lambda target, k: rollout(lay, params, k, env, env_params, target, num_steps=num_steps,  # noqa: E731
                                    normalizer=normalizer, action_scale=action_scale, cached=cached)["return"]
    return jax.vmap(lambda target: jax.vmap(lambda k: one(target, k))(keys))(jnp.asarray(targets, jnp.float32))


def make_evaluator(lay: Layout, env: Any, env_params: Any, target_return: float, *, num_episodes: int,
                   max_episode_steps: int, normalizer: ObsNormalizer | None = None,
                   action_scale: Any = 1.0):
    """``evaluate(key, params) -> mean return`` (float32 scalar) of cached rollouts commanded
    to ``target_return``; the interface of :func:`jaxrl_icl.offline.evaluate.make_evaluator`,
    so :func:`~jaxrl_icl.offline.evaluate.with_evaluation` takes it. Jittable and vmappable."""

    def evaluate(key: jax.Array, params: Any) -> jax.Array:
        return jnp.mean(target_returns(lay, params, key, env, env_params, jnp.array([target_return]),
                                       num_episodes=num_episodes, num_steps=max_episode_steps,
                                       normalizer=normalizer, action_scale=action_scale))

    return evaluate
