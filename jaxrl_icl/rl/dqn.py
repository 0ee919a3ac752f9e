"""Deep Q-Networks (Mnih et al. 2015), optionally double (van Hasselt et al. 2016), as one
pure ``make_train`` closure.

``make_train(config, env)`` returns a :class:`~jaxrl_icl.trainer.Trainer`. The runner
state holds the online and target Q-networks, Adam state, a replay ring buffer
(:mod:`jaxrl_icl.rl.replay`) and ``num_envs`` environments. One ``update`` runs
``steps_per_update`` env steps; every ``train_frequency`` env steps the agent makes one
Adam step on a uniformly sampled minibatch (once ``learning_starts`` env steps are done),
and every ``target_update_interval`` env steps the target moves towards the online
network by ``tau`` (``tau = 1``: a hard copy)::

    env, env_params = envs.make("gymnax:CartPole-v1")
    trainer = make_train(DQNConfig(), env)
    state, metrics = jax.jit(jax.vmap(trainer, in_axes=(0, None)))(keys, env_params)

Bootstrapping is cut only by ``terminated``; a truncated (time-limit) transition
bootstraps from its true final observation (``info["final_observation"]``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Literal

import chex
import jax
import jax.numpy as jnp
import optax
from flax import struct

from envs.spaces import feature_encoder, is_discrete
from envs.wrappers import EpisodeStats
from jaxrl_icl.config import ConfigError, require_in, require_nonnegative, require_positive, require_types
from jaxrl_icl.rl.action_selection import epsilon_greedy
from jaxrl_icl.rl.networks import MLP
from jaxrl_icl.rl.replay import ReplayBuffer, replay_add, replay_init, replay_sample
from jaxrl_icl.trainer import Trainer

__all__ = [
    "DQNConfig", "DQNState", "ReplayTransition", "linear_epsilon", "make_train", "q_loss", "q_network", "td_targets",
]


@dataclasses.dataclass(frozen=True)
class DQNConfig:
    """DQN hyperparameters; the defaults are PureJaxRL's CartPole-v1 settings. Step counts are env steps per seed.

    Attributes:
      num_envs: parallel environments per seed.
      total_timesteps: env steps per seed; the run makes total_timesteps // steps_per_update updates.
      steps_per_update: env steps in one update (one metrics point); a multiple of train_frequency.
      buffer_size: replay capacity in transitions.
      batch_size: transitions per gradient step.
      lr: Adam learning rate.
      gamma: discount factor.
      tau: target update step size (1.0 copies the online network).
      target_update_interval: env steps between target updates; a multiple of train_frequency.
      epsilon_start: exploration rate at step 0.
      epsilon_finish: exploration rate after epsilon_anneal_steps.
      epsilon_anneal_steps: env steps of the linear epsilon decay.
      learning_starts: env steps before the first gradient step.
      train_frequency: env steps between gradient steps; a multiple of num_envs.
      double_dqn: choose the bootstrap action with the online network (double DQN).
      loss: TD-error loss, 0.5 * err^2 ("mse") or Huber with delta 1 ("huber").
      hidden_size: width of the Q-network's hidden layers.
      num_layers: hidden layers of the Q-network.
    """

    num_envs: int = 10
    total_timesteps: int = 500_000
    steps_per_update: int = 1_000
    buffer_size: int = 10_000
    batch_size: int = 128
    lr: float = 2.5e-4
    gamma: float = 0.99
    tau: float = 1.0
    target_update_interval: int = 500
    epsilon_start: float = 1.0
    epsilon_finish: float = 0.05
    epsilon_anneal_steps: int = 250_000
    learning_starts: int = 10_000
    train_frequency: int = 10
    double_dqn: bool = False
    loss: Literal["mse", "huber"] = "mse"
    hidden_size: int = 128
    num_layers: int = 2

    def __post_init__(self) -> None:
        require_types(self)
        for name in ("num_envs", "total_timesteps", "steps_per_update", "buffer_size", "batch_size",
                     "lr", "tau", "target_update_interval", "epsilon_anneal_steps", "train_frequency",
                     "hidden_size", "num_layers"):
            require_positive(self, name)
        require_in(self, "gamma", 0.0, 1.0)
        require_in(self, "tau", 0.0, 1.0)
        require_in(self, "epsilon_start", 0.0, 1.0)
        require_in(self, "epsilon_finish", 0.0, 1.0)
        require_nonnegative(self, "learning_starts")
        if self.buffer_size < self.batch_size:
            raise ConfigError("buffer_size", f"must be >= batch_size={self.batch_size}, got {self.buffer_size}")
        if self.buffer_size < self.train_frequency:
            raise ConfigError(
                "buffer_size", f"must hold the train_frequency={self.train_frequency} transitions "
                f"collected between gradient steps, got {self.buffer_size}"
            )
        for name, unit in (("train_frequency", "num_envs"), ("steps_per_update", "train_frequency"),
                           ("target_update_interval", "train_frequency")):
            if getattr(self, name) % getattr(self, unit):
                raise ConfigError(
                    name, f"must be a multiple of {unit}={getattr(self, unit)}, got {getattr(self, name)}"
                )
        if self.total_timesteps < self.steps_per_update:
            raise ConfigError(
                "total_timesteps",
                f"must be at least one update, steps_per_update={self.steps_per_update}, got {self.total_timesteps}",
            )

    @property
    def num_updates(self) -> int:
        """Updates in a full run (leftover ``total_timesteps`` beyond whole updates are unused)."""
        return self.total_timesteps // self.steps_per_update


@struct.dataclass
class ReplayTransition:
    """One replay-buffer transition per entry (leaves ``[..., ...]`` with any leading batch axes).

    ``obs``/``next_obs``: raw observations (``next_obs`` before any auto-reset);
    ``action`` int32; ``reward`` float32; ``terminated`` bool (cuts bootstrapping).
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminated: jax.Array


@struct.dataclass
class DQNState:
    """Everything one seed's run carries between updates.

    ``params``/``target_params``: online and target Q-network; ``opt_state``: Adam;
    ``buffer``: replay of :class:`ReplayTransition`; ``env_state``/``obs``: the ``num_envs``
    environments; ``env_params``: the task; ``key``: PRNG key; ``timestep``: int32 env
    steps done (summed over the ``num_envs`` envs).
    """

    params: Any
    target_params: Any
    opt_state: Any
    buffer: ReplayBuffer
    env_state: Any
    obs: jax.Array
    env_params: Any
    key: jax.Array
    timestep: jax.Array


def linear_epsilon(timestep: jax.Array, start: float, finish: float, anneal_steps: int) -> jax.Array:
    """``start + (finish - start) * min(timestep / anneal_steps, 1)`` as float32."""
    fraction = jnp.minimum(jnp.asarray(timestep, jnp.float32) / anneal_steps, 1.0)
    return jnp.float32(start) + (jnp.float32(finish) - jnp.float32(start)) * fraction


def td_targets(
    reward: jax.Array,
    terminated: jax.Array,
    next_q_target: jax.Array,
    gamma: float,
    next_q_online: jax.Array | None = None,
) -> jax.Array:
    """One-step Q-learning targets ``r + gamma * (1 - terminated) * Q_target(s', a*)``.

    Args:
      reward: float ``[B]``.
      terminated: bool ``[B]``; True cuts the bootstrap (a truncated step is not terminated).
      next_q_target: float ``[B, A]``, target-network values at the next observation.
      gamma: discount.
      next_q_online: float ``[B, A]`` or None. None: ``a* = argmax Q_target(s')`` (DQN);
        given: ``a* = argmax Q_online(s')`` (double DQN).

    Returns:
      float32 ``[B]``; gradients do not flow through it.
    """
    chex.assert_rank([reward, terminated, next_q_target], [1, 1, 2])
    chex.assert_equal_shape_prefix([reward, terminated, next_q_target], 1)
    if next_q_online is None:
        bootstrap = jnp.max(next_q_target, axis=-1)
    else:
        chex.assert_equal_shape([next_q_online, next_q_target])
        best = jnp.argmax(next_q_online, axis=-1)
        bootstrap = jnp.take_along_axis(next_q_target, best[:, None], axis=-1)[:, 0]
    continues = 1.0 - jnp.asarray(terminated, jnp.float32)
    targets = jnp.asarray(reward, jnp.float32) + gamma * continues * bootstrap.astype(jnp.float32)
    return jax.lax.stop_gradient(targets)


def q_loss(q_taken: jax.Array, targets: jax.Array, kind: Literal["mse", "huber"]) -> jax.Array:
    """Per-transition loss ``[B]``: ``0.5 * err^2`` ("mse") or Huber(err, delta=1) ("huber"), ``err = q - target``."""
    chex.assert_equal_shape([q_taken, targets])
    err = q_taken - targets
    if kind == "mse":
        return 0.5 * jnp.square(err)
    if kind == "huber":
        return optax.huber_loss(err, delta=1.0)
    raise ValueError(f"kind: must be 'mse' or 'huber', got {kind!r}")


def _env_name(env: Any) -> str:
    return str(getattr(env, "name", type(env).__name__))


def q_network_spaces(
    obs_space: Any, action_space: Any, who: str, env_name: str
) -> tuple[int, Callable[[jax.Array], jax.Array], int]:
    """``(obs_dim, encode, num_actions)`` for a Q-network on these spaces.

    ``encode`` is :func:`envs.spaces.feature_encoder`'s (one-hot for ``Discrete``, flattened
    for ``Box``). Raises ConfigError naming ``action_space`` unless it is ``Discrete``, or
    ``observation_space`` unless it is ``Box`` or ``Discrete`` (with ``who`` and ``env_name``).
    """
    if not is_discrete(action_space):
        raise ConfigError("action_space", f"{who} needs a Discrete action space; env {env_name} has {action_space!r}")
    encoder = feature_encoder(obs_space)
    if encoder is None:
        raise ConfigError(
            "observation_space", f"{who} needs a Box or Discrete observation space; env {env_name} has {obs_space!r}"
        )
    return encoder[0], encoder[1], int(action_space.n)


def q_network(config: DQNConfig, num_actions: int) -> MLP:
    """The Q-network: ``apply(params, encoded_obs [..., obs_dim]) -> Q [..., num_actions]``."""
    return MLP(config.hidden_size, config.num_layers, num_actions, "relu", 1.0)


def make_train(config: DQNConfig, env: Any, env_params: Any = None) -> Trainer:
    """Build DQN for ``env`` (the env from ``envs.make``, unwrapped).

    Args:
      config: hyperparameters.
      env: a gymnax-API environment with a ``Discrete`` action space and a ``Box`` (any
        shape, flattened) or ``Discrete`` (one-hot encoded) observation space. It is
        wrapped in ``EpisodeStats``.
      env_params: params used only to read the spaces here (default ``env.default_params``).

    Returns:
      A ``Trainer``: ``init(key, env_params) -> DQNState``; ``update(state, env_params) -> (state,
      metrics)`` with float32 scalar metrics ``episode_return`` (mean over episodes
      finished during the update, NaN if none), ``loss`` and ``q_mean`` (means over the
      update's gradient steps of the TD loss and of ``Q(s, a)`` on the minibatch; NaN
      before ``learning_starts``), ``epsilon`` (the exploration rate of the update's last
      env step).

    Raises:
      ConfigError naming ``action_space`` (e.g. a continuous-action env) or
      ``observation_space`` when the env's spaces do not fit.
    """
    if not isinstance(config, DQNConfig):
        raise TypeError(f"config must be a DQNConfig, got {type(config).__name__}")
    space_params = env.default_params if env_params is None else env_params
    obs_dim, encode, num_actions = q_network_spaces(
        env.observation_space(space_params), env.action_space(space_params), "DQN", _env_name(env)
    )
    env = EpisodeStats(env)
    network = q_network(config, num_actions)
    tx = optax.adam(config.lr)
    reset_envs = jax.vmap(env.reset, in_axes=(0, None))
    step_envs = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def init(key: jax.Array, env_params: Any) -> DQNState:
        key, net_key, env_key = jax.random.split(key, 3)
        obs, env_state = reset_envs(jax.random.split(env_key, config.num_envs), env_params)
        params = network.init(net_key, jnp.zeros((obs_dim,), jnp.float32))
        example = ReplayTransition(
            obs=obs[0], action=jnp.int32(0), reward=jnp.float32(0.0), next_obs=obs[0],
            terminated=jnp.bool_(False),
        )
        return DQNState(
            params=params,
            target_params=params,
            opt_state=tx.init(params),
            buffer=replay_init(example, config.buffer_size),
            env_state=env_state,
            obs=obs,
            env_params=env_params,
            key=key,
            timestep=jnp.zeros((), jnp.int32),
        )

    def env_step(state: DQNState, _: None) -> tuple[DQNState, tuple[jax.Array, ...]]:
        """One epsilon-greedy step of all ``num_envs`` envs, stored in the buffer."""
        key, explore_key, random_key, step_key = jax.random.split(state.key, 4)
        epsilon = linear_epsilon(
            state.timestep, config.epsilon_start, config.epsilon_finish, config.epsilon_anneal_steps
        )
        action = epsilon_greedy(explore_key, random_key, network.apply(state.params, encode(state.obs)), epsilon)
        obs, env_state, reward, terminated, _, info = step_envs(
            jax.random.split(step_key, config.num_envs), state.env_state, action, state.env_params
        )
        transition = ReplayTransition(
            obs=state.obs, action=action, reward=reward.astype(jnp.float32),
            next_obs=info["final_observation"], terminated=jnp.asarray(terminated, bool),
        )
        state = state.replace(
            buffer=replay_add(state.buffer, transition), env_state=env_state, obs=obs, key=key,
            timestep=state.timestep + config.num_envs,
        )
        return state, (info["returned_episode"], info["returned_episode_returns"], epsilon)

    def loss_fn(params: Any, target_params: Any, batch: ReplayTransition) -> tuple[jax.Array, tuple]:
        """Mean TD loss; aux: the per-transition losses and ``Q(s, a)``, float32 ``[batch_size]``."""
        q = network.apply(params, encode(batch.obs))
        q_taken = jnp.take_along_axis(q, batch.action[:, None], axis=-1)[:, 0]
        next_obs = encode(batch.next_obs)
        next_q_online = network.apply(params, next_obs) if config.double_dqn else None
        targets = td_targets(
            batch.reward, batch.terminated, network.apply(target_params, next_obs), config.gamma,
            next_q_online,
        )
        losses = q_loss(q_taken, targets, config.loss)
        return jnp.mean(losses), (losses, q_taken)

    # Both branches return per-transition values: metrics are reduced outside the cond, so a
    # vmapped run (where the cond becomes a select) reduces them in the same order.
    update = learner_update(config, tx, loss_fn, env_step)

    return Trainer(init=init, update=update, num_updates=config.num_updates,
                   env_steps_per_update=config.steps_per_update)


def learner_update(
    config: DQNConfig,
    tx: optax.GradientTransformation,
    loss_fn: Callable[[Any, Any, ReplayTransition], tuple[jax.Array, tuple[jax.Array, jax.Array]]],
    env_step: Callable[[Any, None], tuple[Any, tuple[jax.Array, jax.Array, jax.Array]]],
    extra_metrics: Callable[[Any], dict[str, jax.Array]] = lambda state: {},
) -> Callable[[Any, Any], tuple[Any, dict[str, jax.Array]]]:
    """The ``update(state, env_params)`` of a DQN-style learner, shared by DQN and DηN.

    One update is ``steps_per_update // train_frequency`` times: ``train_frequency // num_envs`` scanned
    ``env_step``s (returning ``(done, episode_return, epsilon)`` per step), then, once
    ``learning_starts`` steps are in the buffer, a gradient step on a replay batch and,
    every ``target_update_interval`` steps, a (Polyak) target update. ``state`` needs
    ``params``, ``target_params``, ``opt_state``, ``key``, ``buffer`` and ``timestep``;
    ``loss_fn(params, target_params, batch) -> (loss, (per-sample losses, taken values))``.
    Metrics: mean finished ``episode_return`` (NaN if none), ``loss``, ``epsilon``,
    ``q_mean`` and ``extra_metrics(state)``.
    """

    vector_steps_per_train = config.train_frequency // config.num_envs
    trains_per_update = config.steps_per_update // config.train_frequency

    def gradient_step(state, batch: ReplayTransition):
        (_, (losses, q_taken)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state.target_params, batch
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        return optax.apply_updates(state.params, updates), opt_state, losses, q_taken

    def skip_step(state, batch: ReplayTransition):
        nan = jnp.full_like(batch.reward, jnp.nan)
        return state.params, state.opt_state, nan, nan

    def train_step(state, _: None):
        """``train_frequency`` env steps, then one gradient step and maybe a target update."""
        state, (done, returns, epsilon) = jax.lax.scan(env_step, state, None, vector_steps_per_train)
        key, sample_key = jax.random.split(state.key)
        batch = replay_sample(state.buffer, sample_key, config.batch_size)
        learn = state.timestep >= config.learning_starts
        params, opt_state, losses, q_taken = jax.lax.cond(learn, gradient_step, skip_step, state, batch)
        retarget = learn & (state.timestep % config.target_update_interval == 0)
        target_params = jax.tree.map(
            lambda online, target: jnp.where(retarget, config.tau * online + (1.0 - config.tau) * target, target),
            params, state.target_params,
        )
        state = state.replace(params=params, target_params=target_params, opt_state=opt_state, key=key)
        return state, (done, returns, epsilon[-1], losses, q_taken)

    def update(state, _env_params):  # the task is state.env_params (set by init)
        state, (done, returns, epsilon, losses, q_taken) = jax.lax.scan(train_step, state, None, trains_per_update)
        num_done = jnp.sum(done)
        episode_return = jnp.where(
            num_done > 0, jnp.sum(jnp.where(done, returns, 0.0)) / jnp.maximum(num_done, 1), jnp.nan
        )
        metrics = {
            "episode_return": episode_return.astype(jnp.float32),
            "loss": jnp.nanmean(losses),
            "epsilon": epsilon[-1],
            "q_mean": jnp.nanmean(q_taken),
        }
        return state, {**metrics, **extra_metrics(state)}

    return update
