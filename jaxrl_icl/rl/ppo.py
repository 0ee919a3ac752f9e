"""Proximal Policy Optimisation (Schulman et al. 2017) as one pure ``make_train`` closure.

``make_train(config, env)`` returns a :class:`~jaxrl_icl.trainer.Trainer`; one
``update`` collects ``num_steps`` steps from ``num_envs`` parallel copies of the env
(``lax.scan``), computes GAE advantages, and runs ``update_epochs`` epochs of
``num_minibatches`` clipped-objective Adam steps. Everything is jittable and vmappable
over seeds and over env params (tasks)::

    env, env_params = envs.make("gymnax:CartPole-v1")
    trainer = make_train(PPOConfig(), env)
    state, metrics = jax.jit(jax.vmap(trainer, in_axes=(0, None)))(keys, env_params)

Truncated episodes (time limits) are bootstrapped with the value of the true final
observation (``info["final_observation"]``), terminated ones are not.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Literal

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from envs.running_moments import RunningMoments
from envs.spaces import exact_dtype, feature_encoder, is_box, is_discrete
from envs.wrappers import EpisodeStats
from jaxrl_icl.config import ConfigError, require_in, require_nonnegative, require_positive, require_types
from jaxrl_icl.rl.networks import ActorCritic, DiagGaussian
from jaxrl_icl.trainer import Trainer

__all__ = ["PPOBatch", "PPOConfig", "PPOState", "RewardNormState", "gae_advantages", "make_train", "ppo_loss"]


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """PPO hyperparameters; the defaults are PureJaxRL's CartPole-v1 settings.

    Attributes:
      num_envs: parallel environments per seed.
      num_steps: steps per environment in one rollout (one update uses num_envs * num_steps).
      total_timesteps: env steps per seed; the run makes total_timesteps // (num_envs * num_steps) updates.
      update_epochs: passes over each rollout.
      num_minibatches: minibatches per epoch; must divide num_envs * num_steps.
      lr: Adam learning rate (the initial one when anneal_lr).
      anneal_lr: decay the learning rate linearly to 0 over the run, once per update.
      gamma: discount factor.
      gae_lambda: GAE lambda.
      clip_eps: clip range of the probability ratio (and of the value change, if clip_value_loss).
      ent_coef: weight of the entropy bonus.
      vf_coef: weight of the value loss.
      max_grad_norm: global gradient-norm clip.
      activation: hidden-layer nonlinearity.
      hidden_size: width of the hidden layers of the actor and of the critic.
      num_layers: hidden layers of the actor and of the critic.
      clip_value_loss: use PPO's clipped value loss max((V - R)^2, (V_clipped - R)^2).
      normalize_obs: feed the networks observations normalised by the running mean and variance
        of all observations collected so far, pooled over envs (``PPOState.obs_norm``).
      normalize_reward: divide rewards by the running std of the discounted return.
      continuous_action: how a Gaussian sample meets a Box action space: clip to the bounds,
        or tanh-squash into them (bounds must be finite).
      record_history: also return each rollout's raw transitions (learning histories).
    """

    num_envs: int = 4
    num_steps: int = 128
    total_timesteps: int = 500_000
    update_epochs: int = 4
    num_minibatches: int = 4
    lr: float = 2.5e-4
    anneal_lr: bool = True
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    activation: Literal["tanh", "relu"] = "tanh"
    hidden_size: int = 64
    num_layers: int = 2
    clip_value_loss: bool = True
    normalize_obs: bool = False
    normalize_reward: bool = False
    continuous_action: Literal["clip", "tanh"] = "clip"
    record_history: bool = False

    def __post_init__(self) -> None:
        require_types(self)
        for name in ("num_envs", "num_steps", "total_timesteps", "update_epochs", "num_minibatches",
                     "lr", "clip_eps", "max_grad_norm", "hidden_size", "num_layers"):
            require_positive(self, name)
        require_in(self, "gamma", 0.0, 1.0)
        require_in(self, "gae_lambda", 0.0, 1.0)
        require_nonnegative(self, "ent_coef")
        require_nonnegative(self, "vf_coef")
        if self.batch_size % self.num_minibatches:
            raise ConfigError(
                "num_minibatches",
                f"must divide num_envs * num_steps = {self.batch_size}, got {self.num_minibatches}",
            )
        if self.total_timesteps < self.batch_size:
            raise ConfigError(
                "total_timesteps",
                f"must be at least one rollout, num_envs * num_steps = {self.batch_size}, "
                f"got {self.total_timesteps}",
            )

    @property
    def batch_size(self) -> int:
        """Transitions per rollout: ``num_envs * num_steps``."""
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        """Transitions per SGD step: ``batch_size // num_minibatches``."""
        return self.batch_size // self.num_minibatches

    @property
    def num_updates(self) -> int:
        """Updates in a full run (leftover ``total_timesteps`` beyond whole rollouts are unused)."""
        return self.total_timesteps // self.batch_size


@struct.dataclass
class RewardNormState:
    """Running statistics of the discounted return, for reward scaling.

    ``discounted_return`` float32[num_envs]: return so far of each env's current episode;
    ``moments``: scalar :class:`~envs.running_moments.RunningMoments` of those returns over
    all envs and steps seen.
    """

    discounted_return: jax.Array
    moments: RunningMoments


@struct.dataclass
class PPOState:
    """Everything one seed's run carries between updates.

    ``params``/``opt_state``: network and Adam state; ``env_state``/``obs``: the
    ``num_envs`` environments (leading axis ``num_envs``); ``obs_norm``: the
    :class:`~envs.running_moments.RunningMoments` (float32[obs_dim]) of the encoded
    observations of every env and step collected so far, which the networks' inputs are
    normalised with (None when ``normalize_obs`` is off; apply the policy as
    ``network.apply(params, obs_norm.normalize(obs))``). It starts at mean 0, variance 1,
    count 0; each update merges its rollout's ``num_steps * num_envs`` observations after its
    gradient steps, so a rollout and the gradient steps on it see the same normalisation.
    ``reward_norm``: a
    :class:`RewardNormState`, or None when ``normalize_reward`` is off; ``env_params``: the
    task; ``key``: PRNG key; ``update_step``: int32 updates done.
    """

    params: Any
    opt_state: Any
    env_state: Any
    obs: jax.Array
    obs_norm: RunningMoments | None
    reward_norm: RewardNormState | None
    env_params: Any
    key: jax.Array
    update_step: jax.Array


@struct.dataclass
class _Transition:
    """One rollout step for all envs; leaves are ``[num_envs, ...]`` (``[T, num_envs, ...]`` stacked)."""

    obs: jax.Array  # the env's observation (the policy saw it normalised when normalize_obs)
    action: jax.Array  # the policy's sample (pre-squash for continuous actions)
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array  # training reward (scaled when normalize_reward)
    terminated: jax.Array
    truncated: jax.Array
    final_obs: jax.Array  # observation after the step, before any auto-reset
    info: dict[str, jax.Array]


def gae_advantages(
    rewards: jax.Array,
    values: jax.Array,
    next_values: jax.Array,
    terminated: jax.Array,
    truncated: jax.Array,
    gamma: float,
    gae_lambda: float,
) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimates over a time-major rollout.

    Args:
      rewards, values: float32 ``[T]`` or ``[T, num_envs]``; ``values[t] = V(s_t)``.
      next_values: float32, same shape, ``V(s'_t)`` of the state reached by step ``t``
        (before any auto-reset), used only where the step did not terminate.
      terminated, truncated: bool, same shape. A terminated step does not bootstrap; both
        end the episode, so no advantage flows back across them.
      gamma, gae_lambda: discount and GAE lambda.

    Returns:
      ``(advantages, targets)``, float32, same shape, ``targets = advantages + values``.
    """
    chex.assert_rank(rewards, {1, 2})
    chex.assert_equal_shape([rewards, values, next_values, terminated, truncated])
    terminated = jnp.asarray(terminated, bool)
    continues = 1.0 - jnp.logical_or(terminated, truncated).astype(jnp.float32)
    deltas = rewards + gamma * (1.0 - terminated.astype(jnp.float32)) * next_values - values

    def backward(next_advantage: jax.Array, step: tuple[jax.Array, jax.Array]) -> tuple:
        delta, cont = step
        advantage = delta + gamma * gae_lambda * cont * next_advantage
        return advantage, advantage

    _, advantages = jax.lax.scan(
        backward, jnp.zeros_like(values[0]), (deltas, continues), reverse=True
    )
    return advantages, advantages + values


def _update_reward_norm(
    norm: RewardNormState, reward: jax.Array, done: jax.Array, gamma: float
) -> tuple[RewardNormState, jax.Array]:
    """Fold one step's rewards ``[num_envs]`` into the return statistics; return scaled rewards.

    The discounted return of each env's episode so far is pooled over envs into a running
    mean/variance (Chan et al.'s parallel update); rewards are divided by ``sqrt(var + 1e-8)``.
    """
    returns = norm.discounted_return * gamma + reward
    norm = RewardNormState(jnp.where(done, 0.0, returns), norm.moments.merge(returns))
    return norm, reward / jnp.sqrt(norm.moments.var + 1e-8)


@struct.dataclass
class PPOBatch:
    """Transitions for PPO gradient steps; every leaf has the leading batch axis ``[B]``.

    ``features`` float32[B, obs_dim]: the networks' input (encoded, normalised);
    ``action`` int32[B] (discrete) or float32[B, action_dim] (the Gaussian sample, before
    any clip or squash); ``log_prob`` float32[B]: its log-probability under the policy that
    collected it; ``value`` float32[B]: that policy's value estimate; ``advantage``
    float32[B]: GAE advantage; ``target`` float32[B]: value target (advantage + value).
    """

    features: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    advantage: jax.Array
    target: jax.Array


def ppo_loss(
    params: Any,
    apply_fn: Callable[[Any, jax.Array], tuple[Any, jax.Array]],
    batch: PPOBatch,
    *,
    clip_eps: float,
    vf_coef: float,
    ent_coef: float,
    clip_value_loss: bool = True,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The clipped PPO objective (Schulman et al. 2017) on a minibatch of ``B`` transitions.

    With ``ratio = pi(a|s) / pi_old(a|s)`` and the advantages standardised over the
    minibatch, ``A = (adv - mean(adv)) / (std(adv) + 1e-8)`` (population std):

    - ``policy_loss = -mean(min(ratio * A, clip(ratio, 1 - clip_eps, 1 + clip_eps) * A))``;
    - ``value_loss = 0.5 * mean((V - target)^2)``, or with ``clip_value_loss``
      ``0.5 * mean(max((V - target)^2, (V_old + clip(V - V_old, -clip_eps, clip_eps) - target)^2))``;
    - ``entropy = mean(H(pi(.|s)))`` in nats;
    - ``loss = policy_loss + vf_coef * value_loss - ent_coef * entropy``.

    Args:
      params: network parameters (differentiated).
      apply_fn: ``apply_fn(params, batch.features) -> (dist, value float32[B])`` where
        ``dist.log_prob(batch.action)`` and ``dist.entropy()`` are float32[B].
      batch: a :class:`PPOBatch`.
      clip_eps, vf_coef, ent_coef, clip_value_loss: as in :class:`PPOConfig`.

    Returns:
      ``(loss, aux)``: float32 scalars; ``aux`` holds ``value_loss``, ``policy_loss``,
      ``entropy``, ``approx_kl`` (``mean((ratio - 1) - log ratio)``) and ``clip_frac``
      (fraction of ``|ratio - 1| > clip_eps``).
    """
    chex.assert_rank([batch.log_prob, batch.value, batch.advantage, batch.target], 1)
    dist, value = apply_fn(params, batch.features)
    log_ratio = dist.log_prob(batch.action) - batch.log_prob
    ratio = jnp.exp(log_ratio)
    adv = batch.advantage
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    clipped_ratio = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    policy_loss = -jnp.mean(jnp.minimum(ratio * adv, clipped_ratio * adv))
    value_err = jnp.square(value - batch.target)
    if clip_value_loss:
        clipped_value = batch.value + jnp.clip(value - batch.value, -clip_eps, clip_eps)
        value_err = jnp.maximum(value_err, jnp.square(clipped_value - batch.target))
    value_loss = 0.5 * jnp.mean(value_err)
    entropy = jnp.mean(dist.entropy())
    total = policy_loss + vf_coef * value_loss - ent_coef * entropy
    return total, {
        "value_loss": value_loss,
        "policy_loss": policy_loss,
        "entropy": entropy,
        "approx_kl": jnp.mean((ratio - 1.0) - log_ratio),
        "clip_frac": jnp.mean((jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32)),
    }


@dataclasses.dataclass(frozen=True)
class _PolicyParts:
    """What acting needs: the encoder of observations, the network and the map of its actions
    into the env's action space (shared by :func:`make_train` and :func:`make_policy`)."""

    obs_space: Any
    obs_dim: int
    encode: Callable[[jax.Array], jax.Array]
    network: ActorCritic
    to_env_action: Callable[[jax.Array], jax.Array]
    history_action_dtype: np.dtype


def _policy_parts(config: PPOConfig, env: Any, env_params: Any) -> _PolicyParts:
    if not isinstance(config, PPOConfig):
        raise TypeError(f"config must be a PPOConfig, got {type(config).__name__}")
    space_params = env.default_params if env_params is None else env_params
    obs_space = env.observation_space(space_params)
    action_space = env.action_space(space_params)

    # ---- observations: the network sees float32[obs_dim] (one-hot or flattened)
    encoder = feature_encoder(obs_space)
    if encoder is None:
        raise ConfigError(
            "observation_space", f"PPO needs a Box or Discrete observation space, got {obs_space!r}"
        )
    if config.normalize_obs and is_discrete(obs_space):
        raise ConfigError("normalize_obs", "needs a Box observation space, env has Discrete")
    obs_dim, encode = encoder

    # ---- actions: a Categorical over n actions, or a Gaussian mapped into a Box
    if is_discrete(action_space):
        continuous = False
        action_dim = int(action_space.n)
        history_action_dtype = exact_dtype(action_space)

        def to_env_action(action: jax.Array) -> jax.Array:
            return action

    elif is_box(action_space) and len(action_space.shape) == 1:
        continuous = True
        action_dim = int(action_space.shape[0])
        history_action_dtype = np.dtype(np.float32)
        low = np.broadcast_to(np.asarray(action_space.low, np.float32), (action_dim,))
        high = np.broadcast_to(np.asarray(action_space.high, np.float32), (action_dim,))
        if config.continuous_action == "tanh":
            if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
                raise ConfigError(
                    "continuous_action", f"'tanh' needs finite action bounds, env has [{low}, {high}]"
                )

            def to_env_action(action: jax.Array) -> jax.Array:
                return low + 0.5 * (jnp.tanh(action) + 1.0) * (high - low)

        else:

            def to_env_action(action: jax.Array) -> jax.Array:
                return jnp.clip(action, low, high)

    else:
        raise ConfigError(
            "action_space", f"PPO needs a Discrete or 1-D Box action space, got {action_space!r}"
        )

    network = ActorCritic(
        action_dim=action_dim,
        continuous=continuous,
        hidden=config.hidden_size,
        num_layers=config.num_layers,
        activation=config.activation,
    )
    return _PolicyParts(obs_space, obs_dim, encode, network, to_env_action, history_action_dtype)


def make_policy(config: PPOConfig, env: Any, env_params: Any = None) -> Callable[..., jax.Array]:
    """``act(state, key, obs, deterministic=False) -> env action`` for a PPO state that
    :func:`make_train` trained with ``config`` on ``env`` (any object with its ``params`` and
    ``obs_norm``), on observations ``[..., *obs_shape]``.

    Stochastic actions sample the policy as in training; deterministic ones take the
    Gaussian's mean (clipped or squashed into the bounds like a sample) or the most likely
    discrete action. Jittable and vmappable.
    """
    parts = _policy_parts(config, env, env_params)

    def act(state: Any, key: jax.Array, obs: jax.Array, deterministic: bool = False) -> jax.Array:
        x = parts.encode(obs)
        if state.obs_norm is not None:
            x = state.obs_norm.normalize(x)
        dist, _ = parts.network.apply(state.params, x)
        if not deterministic:
            return parts.to_env_action(dist.sample(key))
        if isinstance(dist, DiagGaussian):
            return parts.to_env_action(dist.mean)
        return jnp.argmax(dist.logits, axis=-1)

    return act


def make_train(config: PPOConfig, env: Any, env_params: Any = None) -> Trainer:
    """Build PPO for ``env`` as returned by ``envs.make`` (this function adds the wrappers).

    Args:
      config: hyperparameters.
      env: a gymnax-API environment with a ``Discrete`` or 1-D ``Box`` action space and a
        ``Box`` (any shape, flattened for the MLP) or ``Discrete`` (one-hot encoded)
        observation space. It is wrapped in ``EpisodeStats``.
      env_params: params used only to read the spaces here (default ``env.default_params``);
        the params given to ``init`` must have spaces of the same shapes.

    Returns:
      A ``Trainer``: ``init(key, env_params) -> PPOState``; ``update(state, env_params) -> (state,
      metrics)`` with float32 scalar metrics ``episode_return`` / ``episode_length`` (means
      over episodes finished during this update's rollout, NaN if none), ``value_loss``,
      ``policy_loss``, ``entropy``, ``approx_kl``, ``clip_frac`` (means over the epochs and
      minibatches), ``learning_rate`` (used in this update); with ``record_history`` also
      ``history/obs`` ``[num_steps, num_envs, *obs_shape]`` (raw observations, the narrowest
      exact integer dtype for integer spaces), ``history/action`` ``[num_steps, num_envs, ...]``
      (the env's action: narrowest int for discrete, float32 after clip/squash for
      continuous), ``history/reward`` float32 (raw), ``history/terminated`` and
      ``history/truncated`` bool, all ``[num_steps, num_envs]``. Step ``t`` of an env is
      ``(obs_t, action_t, reward_t, ...)``: the action taken at ``obs_t`` and its outcome.

    Raises:
      ConfigError naming ``observation_space`` / ``action_space`` when the env's spaces do
      not fit, or ``continuous_action`` for tanh squashing into unbounded actions.
    """
    parts = _policy_parts(config, env, env_params)
    obs_space, obs_dim, encode = parts.obs_space, parts.obs_dim, parts.encode
    network, to_env_action, history_action_dtype = parts.network, parts.to_env_action, parts.history_action_dtype
    env = EpisodeStats(env)
    history_obs_dtype = exact_dtype(obs_space)

    num_updates = config.num_updates
    steps_per_update = config.update_epochs * config.num_minibatches

    def learning_rate(update_step: jax.Array) -> jax.Array:
        """The learning rate of update ``update_step`` (0-based)."""
        if not config.anneal_lr:
            return jnp.float32(config.lr)
        return config.lr * (1.0 - update_step / num_updates)

    tx = optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm),
        optax.adam(lambda count: learning_rate(count // steps_per_update), eps=1e-5),
    )
    def features(obs_norm: RunningMoments | None, obs: jax.Array) -> jax.Array:
        """The networks' input for observations ``obs [..., *obs_shape]``: encoded, normalised."""
        x = encode(obs)
        return x if obs_norm is None else obs_norm.normalize(x)

    reset_envs = jax.vmap(env.reset, in_axes=(0, None))
    step_envs = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def init(key: jax.Array, env_params: Any) -> PPOState:
        key, net_key, env_key = jax.random.split(key, 3)
        obs, env_state = reset_envs(jax.random.split(env_key, config.num_envs), env_params)
        params = network.init(net_key, jnp.zeros((obs_dim,), jnp.float32))
        obs_norm = None
        if config.normalize_obs:
            obs_norm = RunningMoments.create((obs_dim,))
        reward_norm = None
        if config.normalize_reward:
            reward_norm = RewardNormState(
                jnp.zeros((config.num_envs,), jnp.float32), RunningMoments.create(count=1e-4)
            )
        return PPOState(
            params=params,
            opt_state=tx.init(params),
            env_state=env_state,
            obs=obs,
            obs_norm=obs_norm,
            reward_norm=reward_norm,
            env_params=env_params,
            key=key,
            update_step=jnp.zeros((), jnp.int32),
        )

    def rollout(state: PPOState) -> tuple[PPOState, _Transition, jax.Array]:
        """``num_steps`` steps of all envs; returns the stacked transitions and raw rewards."""

        def env_step(carry: PPOState, _: None) -> tuple[PPOState, tuple[_Transition, jax.Array]]:
            key, action_key, step_key = jax.random.split(carry.key, 3)
            dist, value = network.apply(carry.params, features(carry.obs_norm, carry.obs))
            action = dist.sample(action_key)
            obs, env_state, reward, terminated, truncated, info = step_envs(
                jax.random.split(step_key, config.num_envs),
                carry.env_state,
                to_env_action(action),
                carry.env_params,
            )
            reward = reward.astype(jnp.float32)
            train_reward, reward_norm = reward, carry.reward_norm
            if config.normalize_reward:
                reward_norm, train_reward = _update_reward_norm(
                    reward_norm, reward, jnp.logical_or(terminated, truncated), config.gamma
                )
            transition = _Transition(
                obs=carry.obs,
                action=action,
                log_prob=dist.log_prob(action),
                value=value,
                reward=train_reward,
                terminated=terminated,
                truncated=truncated,
                final_obs=info["final_observation"],
                info={k: info[k] for k in ("returned_episode", "returned_episode_returns",
                                           "returned_episode_lengths")},
            )
            carry = carry.replace(key=key, env_state=env_state, obs=obs, reward_norm=reward_norm)
            return carry, (transition, reward)

        state, (traj, raw_reward) = jax.lax.scan(env_step, state, None, config.num_steps)
        return state, traj, raw_reward

    def loss_fn(params: Any, batch: PPOBatch) -> tuple[jax.Array, dict[str, jax.Array]]:
        return ppo_loss(
            params, network.apply, batch, clip_eps=config.clip_eps, vf_coef=config.vf_coef,
            ent_coef=config.ent_coef, clip_value_loss=config.clip_value_loss,
        )

    def sgd_step(carry: tuple, minibatch: PPOBatch) -> tuple[tuple, dict[str, jax.Array]]:
        params, opt_state = carry
        grads, losses = jax.grad(loss_fn, has_aux=True)(params, minibatch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), losses

    def epoch(carry: tuple, key: jax.Array) -> tuple[tuple, dict[str, jax.Array]]:
        params, opt_state, batch = carry
        order = jax.random.permutation(key, config.batch_size)
        minibatches = jax.tree.map(
            lambda x: x[order].reshape((config.num_minibatches, config.minibatch_size) + x.shape[1:]),
            batch,
        )
        (params, opt_state), losses = jax.lax.scan(sgd_step, (params, opt_state), minibatches)
        return (params, opt_state, batch), losses

    def update(state: PPOState, _env_params: Any) -> tuple[PPOState, dict[str, jax.Array]]:
        """One update; the task is ``state.env_params`` (set by ``init``), not the argument."""
        lr = learning_rate(state.update_step)
        state, traj, raw_reward = rollout(state)
        _, next_values = network.apply(state.params, features(state.obs_norm, traj.final_obs))
        advantages, targets = gae_advantages(
            traj.reward, traj.value, next_values, traj.terminated, traj.truncated,
            config.gamma, config.gae_lambda,
        )
        batch = PPOBatch(
            features=features(state.obs_norm, traj.obs), action=traj.action, log_prob=traj.log_prob,
            value=traj.value, advantage=advantages, target=targets,
        )
        batch = jax.tree.map(lambda x: x.reshape((config.batch_size,) + x.shape[2:]), batch)
        key, epoch_key = jax.random.split(state.key)
        (params, opt_state, _), losses = jax.lax.scan(
            epoch, (state.params, state.opt_state, batch),
            jax.random.split(epoch_key, config.update_epochs),
        )
        obs_norm = state.obs_norm
        if obs_norm is not None:
            obs_norm = obs_norm.merge(encode(traj.obs).reshape(config.batch_size, obs_dim))
        state = state.replace(
            params=params, opt_state=opt_state, obs_norm=obs_norm, key=key,
            update_step=state.update_step + 1,
        )

        finished = traj.info["returned_episode"]
        num_finished = jnp.sum(finished)

        def finished_mean(x: jax.Array) -> jax.Array:
            total = jnp.sum(jnp.where(finished, x.astype(jnp.float32), 0.0))
            return jnp.where(num_finished > 0, total / jnp.maximum(num_finished, 1), jnp.nan)

        metrics = {name: jnp.mean(value) for name, value in losses.items()}
        metrics["episode_return"] = finished_mean(traj.info["returned_episode_returns"])
        metrics["episode_length"] = finished_mean(traj.info["returned_episode_lengths"])
        metrics["learning_rate"] = jnp.asarray(lr, jnp.float32)
        if config.record_history:
            metrics["history/obs"] = traj.obs.astype(history_obs_dtype)
            metrics["history/action"] = to_env_action(traj.action).astype(history_action_dtype)
            metrics["history/reward"] = raw_reward
            metrics["history/terminated"] = traj.terminated.astype(bool)
            metrics["history/truncated"] = traj.truncated.astype(bool)
        return state, metrics

    return Trainer(init=init, update=update, num_updates=num_updates, env_steps_per_update=config.batch_size)
