"""Algorithm Distillation (Laskin et al. 2022): imitate a source RL algorithm's learning histories.

A learning history is every step a source algorithm (Q-learning, PPO, ...) took in one task,
episodes back to back (:mod:`jaxrl_icl.rl.histories`). AD trains a causal transformer on
random windows of ``context_episodes * horizon`` consecutive steps cut from those histories
(across episode boundaries) to predict the action taken at every step from the steps
before it. Because the histories *improve*, the model learns an improvement operator: rolled
out in a new task with its own transitions entering the context, its return rises from
episode to episode with no weight update.

Token layouts (:mod:`jaxrl_icl.icl.tokens`): ``"step"``, one token ``(a_{t-1}, r_{t-1},
o_t)`` per step (the previous action/reward are the real ones of the history, also at a
window's first step, and "none" only at a history's first step), or ``"triplet"``, tokens
``o_t, a_t, r_t``. The transformer attends over a sliding window of exactly one training
context (ALiBi or RoPE positions), so an evaluation rollout can run for any number of
episodes at O(context) cost per step.

Usage::

    histories, meta = load_ad_histories(path, "darkroom-9x9", env, env_params, config)
    data = ad_data(histories, env.num_actions)
    trainer = make_train(config, optim, data.obs.shape[-1], env.num_actions, env.horizon)
    state, metrics = train_in_chunks(trainer, keys, data, chunk_updates=100)
    agent = make_agent(config, make_model(config, obs_dim, env.num_actions, env.horizon))
    out = evaluate(env, held_out_params, agent, params, key, num_steps=40 * env.horizon)
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Literal, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_icl.config import require_positive, require_types
from jaxrl_icl.icl import tokens as tk
from jaxrl_icl.icl import transformer as tr
from jaxrl_icl.icl.evaluate import ContextTransition, InContextAgent
from jaxrl_icl.icl.train import OptimConfig, accuracy, cross_entropy, make_supervised_trainer, with_aux
from jaxrl_icl.rl.histories import check_in_space, load_histories
from jaxrl_icl.trainer import Trainer

__all__ = [
    "ADCarry",
    "ADConfig",
    "ADData",
    "Window",
    "ad_data",
    "load_ad_histories",
    "init_params",
    "make_agent",
    "make_model",
    "make_train",
    "policy_logits",
    "sample_windows",
    "window_tokens",
]


@dataclasses.dataclass(frozen=True)
class ADConfig:
    """Model and context of an AD agent.

    Attributes:
      layout: ``"step"`` (one token per step) or ``"triplet"`` (obs, action, reward tokens).
      context_episodes: episodes per training context (and the evaluation window).
      backbone: the transformer (:class:`~jaxrl_icl.icl.transformer.BackboneConfig`); positions
        must be ``"alibi"`` or ``"rope"`` (relative, so the evaluation window can slide).
      obs_scale: observations are multiplied by this before tokenising (e.g. ``1 / (size - 1)``
        for grid positions).
    """

    layout: Literal["step", "triplet"] = "step"
    context_episodes: int = 4
    backbone: tr.BackboneConfig = tr.BackboneConfig(width=64, num_layers=4, num_heads=4)
    obs_scale: float = 1.0

    def __post_init__(self) -> None:
        require_types(self)
        for name in ("context_episodes", "obs_scale"):
            require_positive(self, name)
        tr.require_relative_positions(self.backbone)

    @property
    def tokens_per_step(self) -> int:
        return tk.STEP_TOKENS_PER_STEP if self.layout == "step" else tk.TRIPLET_TOKENS_PER_STEP

    def context_steps(self, horizon: int) -> int:
        """Environment steps in one training context: ``context_episodes * horizon``."""
        if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
            raise ValueError(f"horizon: must be a positive int, got {horizon!r}")
        return self.context_episodes * int(horizon)


def _token_dim(config: ADConfig, obs_dim: int, num_actions: int) -> int:
    return (tk.step_token_dim if config.layout == "step" else tk.triplet_token_dim)(obs_dim, num_actions)


def make_model(config: ADConfig, obs_dim: int, num_actions: int, horizon: int) -> tr.TransformerConfig:
    """The transformer: a sliding window of exactly one training context (``context_steps *
    tokens_per_step`` tokens), so evaluation rollouts may run for any number of episodes."""
    for name, value in (("obs_dim", obs_dim), ("num_actions", num_actions)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: must be a positive int, got {value!r}")
    window = config.context_steps(horizon) * config.tokens_per_step
    return tr.TransformerConfig(d_in=_token_dim(config, obs_dim, num_actions), d_out=num_actions, max_len=window,
                                window=window, backbone=config.backbone)


# ----------------------------------------------------------------------------- data


def load_ad_histories(
    path: str | os.PathLike, env_name: str, env: Any, env_params: Any, config: ADConfig
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load a histories file (:func:`jaxrl_icl.rl.histories.load_histories`) and check it fits.

    Checks, each a ValueError naming ``path`` and the mismatch: the file's env is
    ``env_name``; observations have ``env.observation_space(env_params).shape`` and lie in
    that space (on the grid); actions
    are scalars in ``[0, env.num_actions)``; histories hold at least one context
    (``config.context_steps(env.horizon)`` steps). Empty or malformed files fail in
    ``load_histories`` (also naming the file).
    """
    histories, meta = load_histories(path)
    if meta["env"] != env_name:
        raise ValueError(f"{path}: histories are from env {meta['env']!r}, expected {env_name!r}")
    obs_shape = tuple(env.observation_space(env_params).shape)
    if histories["obs"].shape[2:] != obs_shape:
        raise ValueError(
            f"{path}: observation shape {list(histories['obs'].shape[2:])} does not match "
            f"{env_name}'s {list(obs_shape)}"
        )
    check_in_space(histories["obs"], env.observation_space(env_params), f"{path}: histories/obs")
    _check_actions(histories["action"], env.num_actions, str(path))
    steps, need = histories["reward"].shape[1], config.context_steps(env.horizon)
    if steps < need:
        raise ValueError(
            f"{path}: histories have {steps} steps, shorter than one context of "
            f"{config.context_episodes} episodes x {env.horizon} steps = {need}"
        )
    return histories, meta


def _check_actions(action: np.ndarray, num_actions: int, where: str) -> None:
    if action.ndim != 2 or not np.issubdtype(action.dtype, np.integer):
        raise ValueError(f"{where}: action must be integer [N, T] (discrete), got {action.dtype}{list(action.shape)}")
    if action.size and (action.min() < 0 or action.max() >= num_actions):
        raise ValueError(
            f"{where}: action values must be in [0, {num_actions}), got range [{action.min()}, {action.max()}]"
        )


class ADData(NamedTuple):
    """Learning histories as device arrays (dtypes as given, e.g. the compact int8/float16).

    ``obs [N, T, obs_dim]``, ``action [N, T]`` int, ``reward [N, T]``, and the token inputs
    ``prev_action [N, T]`` int32 (``-1`` at ``t = 0``) and ``prev_reward [N, T]`` (0 at ``t = 0``);
    ``history_weights [N]`` float32, the probability of drawing each history (e.g.
    :func:`jaxrl_icl.icl.lhf.reweight`), or None for uniform.
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    prev_action: jax.Array
    prev_reward: jax.Array
    history_weights: jax.Array | None = None


def ad_data(histories: Mapping[str, Any], num_actions: int, history_weights: Any = None) -> ADData:
    """:class:`ADData` from ``histories`` (``obs``, ``action``, ``reward`` ``[N, T, ...]``;
    other keys ignored) and optional sampling probabilities ``history_weights [N]`` (summing to
    1). ValueError naming the field on bad shapes, action values or weights."""
    obs, action, reward = (np.asarray(histories[k]) for k in ("obs", "action", "reward"))
    _check_actions(action, num_actions, "histories")
    if action.shape[0] < 1 or action.shape[1] < 1:
        raise ValueError(f"histories: need at least one history of one step, got action shape {action.shape}")
    if reward.shape != action.shape or obs.shape[:2] != action.shape:
        raise ValueError(f"histories: obs {obs.shape}, action {action.shape}, reward {reward.shape} "
                         "must share [N, T]")
    obs = obs.reshape(*action.shape, math.prod(obs.shape[2:]))
    prev_action = np.concatenate([np.full((action.shape[0], 1), -1), action[:, :-1]], axis=1).astype(np.int32)
    prev_reward = np.concatenate([np.zeros((reward.shape[0], 1), reward.dtype), reward[:, :-1]], axis=1)
    if history_weights is not None:
        history_weights = np.asarray(history_weights, np.float32)
        if history_weights.shape != action.shape[:1] or np.any(history_weights < 0) or not np.isclose(
                history_weights.sum(), 1.0, atol=1e-4):
            raise ValueError(f"history_weights: need {action.shape[0]} non-negative probabilities summing to 1, "
                             f"got shape {history_weights.shape}")
        history_weights = jnp.asarray(history_weights)
    return ADData(*(jnp.asarray(x) for x in (obs, action, reward, prev_action, prev_reward)), history_weights)


class Window(NamedTuple):
    """A batch of context windows: ``history [B]`` and ``start [B]`` (int32) locate each; the
    other fields are ``data.<field>[history, start:start + L]`` (``[B, L, ...]``)."""

    history: jax.Array
    start: jax.Array
    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    prev_action: jax.Array
    prev_reward: jax.Array


def sample_windows(data: ADData, key: jax.Array, batch_size: int, length: int, *, paired: bool = False) -> Window:
    """``batch_size`` windows of ``length`` consecutive steps: a history (uniform, or drawn by
    ``data.history_weights``), a uniform start in ``[0, T - length]`` (so windows cross
    episode boundaries). ``paired``: ``batch_size / 2`` histories, each twice (windows ``i``
    and ``i + batch_size / 2``, independent starts), the same-task pairs of T2MIR's
    contrastive loss; ``batch_size`` must be even. Jittable."""
    num, steps = data.action.shape
    if length > steps:
        raise ValueError(f"length: windows of {length} steps do not fit histories of {steps} steps")
    if paired and batch_size % 2:
        raise ValueError(f"batch_size: paired windows need an even batch, got {batch_size}")
    hist_key, start_key = jax.random.split(key)
    count = batch_size // 2 if paired else batch_size
    if data.history_weights is None:
        history = jax.random.randint(hist_key, (count,), 0, num, dtype=jnp.int32)
    else:
        history = jax.random.choice(hist_key, num, (count,), p=data.history_weights).astype(jnp.int32)
    if paired:
        history = jnp.concatenate([history, history])
    start = jax.random.randint(start_key, (batch_size,), 0, steps - length + 1, dtype=jnp.int32)

    def cut(x, h, s):
        start_indices = (h, s) + (0,) * (x.ndim - 2)
        return jax.lax.dynamic_slice(x, start_indices, (1, length, *x.shape[2:]))[0]

    fields = {name: jax.vmap(cut, in_axes=(None, 0, 0))(getattr(data, name), history, start)
              for name in Window._fields[2:]}
    return Window(history=history, start=start, **fields)


def window_tokens(config: ADConfig, window: Window, num_actions: int) -> tuple[jax.Array, jax.Array]:
    """``(tokens [B, L * tokens_per_step, d] float32, action_positions [L])`` of a window batch."""
    obs = window.obs.astype(jnp.float32) * config.obs_scale
    if config.layout == "triplet":
        return tk.triplet_tokens(obs, window.action.astype(jnp.int32), window.reward, num_actions)
    batch, length = window.action.shape
    flat = lambda x: x.reshape(batch * length, *x.shape[2:])
    tokens = tk.step_token(flat(obs), flat(window.prev_action), flat(window.prev_reward), num_actions)
    return tokens.reshape(batch, length, -1), jnp.arange(length, dtype=jnp.int32)


def make_train(config: ADConfig, optim: OptimConfig, obs_dim: int, num_actions: int, horizon: int) -> Trainer:
    """AD pretraining as a :class:`Trainer` on histories of ``obs_dim`` observation features.

    Run it on the training tasks' :class:`ADData` (:func:`ad_data`), an argument of every
    jitted update, never compiled in: ``trainer(key, data)`` or ``train_in_chunks(trainer,
    keys, data, ...)``. Each update draws ``optim.batch_size`` windows of
    ``config.context_steps(horizon)`` steps (:func:`sample_windows`) and minimises the
    cross-entropy of the action taken at every step of the window plus the backbone's
    auxiliary losses (:func:`~jaxrl_icl.icl.train.with_aux`); metrics add ``accuracy``
    (argmax = taken action). Data of another ``obs_dim`` or shorter than one context is a
    ValueError naming the field when the update is traced, before any compute.
    """
    length = config.context_steps(horizon)
    model = make_model(config, obs_dim, num_actions, horizon)

    def loss(params, key, compute_dtype, data: ADData):
        _check_data(data, obs_dim, length)
        sample_key, dropout_key = jax.random.split(key)
        window = sample_windows(data, sample_key, optim.batch_size, length, paired=config.backbone.paired_batches)
        tokens, positions = window_tokens(config, window, num_actions)
        out, aux = tr.apply(model, params, tokens.astype(compute_dtype),
                            dropout_key=dropout_key if config.backbone.needs_rng else None, return_aux=True)
        logits, labels = out[:, positions], window.action.astype(jnp.int32)
        return with_aux(cross_entropy(logits, labels), {"accuracy": accuracy(logits, labels)}, aux)

    return make_supervised_trainer(optim, lambda k: init_params(model, k), loss, ema_rate=config.backbone.moe.ema_rate)


def _check_data(data: Any, obs_dim: int, length: int) -> None:
    if not isinstance(data, ADData):
        raise TypeError(f"data: AD trains on ADData (ad.ad_data(histories, num_actions)), got {type(data).__name__}")
    if data.obs.shape[-1] != obs_dim:
        raise ValueError(f"data.obs: {data.obs.shape[-1]} observation features, the model has obs_dim={obs_dim}")
    if data.action.shape[-1] < length:
        raise ValueError(f"data.action: {data.action.shape[-1]} steps, shorter than one context of {length} steps")


def init_params(model: tr.TransformerConfig, key: jax.Array) -> Any:
    """Transformer parameters with a zero output layer: the untrained policy is uniform
    (loss ``log(num_actions)``), so early rollouts explore evenly instead of following
    random initial preferences."""
    params = tr.init(model, key)
    head = params["params"]["head"]
    zeros = {name: jnp.zeros_like(value) for name, value in head.items()}
    return {**params, "params": {**params["params"], "head": zeros}}


# ----------------------------------------------------------------------------- acting


class ADCarry(NamedTuple):
    """An AD agent's context: the KV cache (batch 1), the previous action (int32, -1 before
    the first step) and the previous reward (float32)."""

    cache: tr.KVCache
    prev_action: jax.Array
    prev_reward: jax.Array


def _obs_dim(config: ADConfig, model: tr.TransformerConfig) -> int:
    return model.d_in - _token_dim(config, 0, model.d_out)


def policy_logits(
    config: ADConfig, model: tr.TransformerConfig, params: Any, carry: ADCarry, obs: jax.Array
) -> tuple[jax.Array, ADCarry]:
    """Action logits ``[A]`` in state ``obs`` and the context with ``obs``'s token added.

    Step layout: the token ``(prev_action, prev_reward, obs)``; triplet: the obs token.
    """
    obs = obs.astype(jnp.float32).reshape(1, -1) * config.obs_scale
    if config.layout == "step":
        token = tk.step_token(obs, carry.prev_action[None], carry.prev_reward[None], model.d_out)
    else:
        token = tk.triplet_obs_token(obs, model.d_out)
    logits, cache = tr.step(model, params, carry.cache, token)
    return logits[0], carry._replace(cache=cache)


def make_agent(config: ADConfig, model: tr.TransformerConfig) -> InContextAgent:
    """AD as an online :class:`InContextAgent` (for :func:`jaxrl_icl.icl.evaluate.evaluate`
    with ``learn=True``; acting itself adds the observation to the context).

    ``act`` samples from the logits (temperature 1); ``observe`` records the action and
    reward (step layout: for the next token; triplet layout: as two more tokens).
    """
    obs_dim = _obs_dim(config, model)
    if obs_dim < 1:
        raise ValueError(f"model: d_in={model.d_in} leaves no observation features in layout {config.layout!r} "
                         f"with d_out={model.d_out} actions")

    def init() -> ADCarry:
        return ADCarry(tr.init_cache(model, 1), jnp.int32(-1), jnp.float32(0.0))

    def act(params, carry: ADCarry, obs, key):
        logits, carry = policy_logits(config, model, params, carry, obs)
        return jax.random.categorical(key, logits).astype(jnp.int32), carry

    def observe(params, carry: ADCarry, t: ContextTransition) -> ADCarry:
        action, reward = jnp.asarray(t.action, jnp.int32), jnp.asarray(t.reward, jnp.float32)
        carry = carry._replace(prev_action=action, prev_reward=reward)
        if config.layout == "step":
            return carry
        cache = carry.cache
        for token in (tk.triplet_action_token(action[None], obs_dim, model.d_out),
                      tk.triplet_reward_token(reward[None], obs_dim, model.d_out)):
            cache = tr.step(model, params, cache, token)[1]
        return carry._replace(cache=cache)

    return InContextAgent(init=init, act=act, observe=observe)
