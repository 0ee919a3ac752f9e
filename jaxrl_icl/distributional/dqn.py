"""DηN: DQN with a categorical return-distribution head on stock-augmented observations, acting
greedily for a utility objective ``E f(c_0 + G_0)`` (Pires et al. 2025), as one ``make_train``.

The agent sees ``(obs, c)``: the observation and the stock ``c``, which starts each episode at
``c_0`` and follows ``c_{t+1} = (c_t + r_t) / gamma`` (:mod:`.stock`). The network maps
``(obs, c)`` to a categorical law ``Z(obs, c, a)`` on the fixed support ``z = linspace(v_min,
v_max, num_atoms)`` (returns-to-go, reward units) for every action, and the agent acts greedily
with respect to ``E f(c + Z(obs, c, a))``; for the positively homogeneous utilities here this is
the optimal stock-augmented policy of :mod:`.stock`. Objectives (``config.objective``):

* ``expectation``: ``f(x) = x``, ``c_0 = 0`` (the greedy action is ordinary DQN's, in the mean);
* ``cvar``: ``f(x) = min(x, 0) / alpha`` and ``c_0`` chosen at every episode start as the
  maximiser over ``linspace(c0_min, c0_max, num_c0)`` of ``-c_0 + max_a E f(c_0 + Z(obs_0, c_0,
  a))`` (Rockafellar-Uryasev), the online network's estimate of ``CVaR_alpha`` of the return;
* ``threshold``: ``f(x) = 1{x >= 0}``, ``c_0 = -threshold`` (maximises ``Pr(G >= threshold)``);
* ``homeostatic``: ``f(x) = -|x|``, ``c_0 = -threshold`` (minimises ``E|G - threshold|``).

Learning is categorical DQN (C51): the target of a transition ``((obs, c), a, r, (obs', c'))``
is the Cramér projection onto ``z`` of ``r + gamma (1 - terminated) z`` with the target
network's probabilities at ``(obs', c')`` for ``a* = argmax_a' E f(c' + Z(obs', c', a'))``
(``a*`` from the online network with ``double_dqn``), and the loss the cross-entropy to it.
Everything else (replay, epsilon schedule, target updates, time-limit handling, the
hyperparameters) is :mod:`jaxrl_icl.rl.dqn`'s, whose :class:`~jaxrl_icl.rl.dqn.DQNConfig` is
nested as ``config.dqn`` (its ``loss`` must stay ``"mse"``: the loss here is the
cross-entropy). The stock grows like ``gamma^-t`` along an episode, so keep ``gamma`` near 1 or
episodes short, and ``stock_scale`` near the stocks' typical size::

    env, env_params = envs.make("cliffwalk")
    trainer = make_train(DQNEtaConfig(objective="cvar", alpha=0.1), env)
    state, metrics = jax.jit(jax.vmap(trainer, in_axes=(0, None)))(keys, env_params)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Literal

import chex
import jax
import jax.numpy as jnp
import optax
from flax import struct

from envs.wrappers import EpisodeStats
from jaxrl_icl.config import ConfigError, require_in, require_positive, require_types
from jaxrl_icl.distributional.categorical import categorical_project
from jaxrl_icl.distributional.stock import (
    cvar_utility,
    expectation_utility,
    homeostatic_utility,
    threshold_utility,
)
from jaxrl_icl.rl.action_selection import epsilon_greedy
from jaxrl_icl.rl.dqn import DQNConfig, ReplayTransition, learner_update, linear_epsilon, q_network_spaces
from jaxrl_icl.rl.networks import MLP
from jaxrl_icl.rl.replay import ReplayBuffer, replay_add, replay_init
from jaxrl_icl.trainer import Trainer

__all__ = [
    "DQNEtaAgent",
    "DQNEtaConfig",
    "DQNEtaState",
    "categorical_targets",
    "make_agent",
    "make_train",
    "utility_scores",
]

Objective = Literal["expectation", "cvar", "threshold", "homeostatic"]


@dataclasses.dataclass(frozen=True)
class DQNEtaConfig:
    """DηN hyperparameters. Step counts are env steps per seed.

    Attributes:
      dqn: the shared DQN hyperparameters (``dqn.gamma`` also drives the stock; ``dqn.loss``
        must stay "mse", unused: the loss is the categorical cross-entropy).
      num_atoms: atoms of the categorical return law.
      v_min: lowest support atom (return-to-go, reward units).
      v_max: highest support atom.
      objective: utility of ``c_0 + G_0`` to maximise: expectation, cvar, threshold, homeostatic.
      alpha: CVaR level in (0, 1] (objective cvar).
      threshold: the return threshold (objective threshold) or target (homeostatic); c_0 = -threshold.
      c0_min: lowest candidate initial stock (objective cvar; minus the highest VaR considered).
      c0_max: highest candidate initial stock (objective cvar; minus the lowest VaR considered).
      num_c0: candidate initial stocks, evenly spaced in [c0_min, c0_max] (objective cvar).
      stock_scale: the network sees the stock as c / stock_scale.
    """

    dqn: DQNConfig = DQNConfig()
    num_atoms: int = 51
    v_min: float = -100.0
    v_max: float = 0.0
    objective: Objective = "cvar"
    alpha: float = 0.1
    threshold: float = 0.0
    c0_min: float = 0.0
    c0_max: float = 100.0
    num_c0: int = 51
    stock_scale: float = 100.0

    def __post_init__(self) -> None:
        require_types(self)
        for name in ("num_atoms", "num_c0", "stock_scale"):
            require_positive(self, name)
        if self.num_atoms < 2:
            raise ConfigError("num_atoms", f"must be >= 2, got {self.num_atoms}")
        if not self.v_min < self.v_max:
            raise ConfigError("v_max", f"must be > v_min={self.v_min}, got {self.v_max}")
        if not 0.0 < self.alpha <= 1.0:
            raise ConfigError("alpha", f"must lie in (0, 1], got {self.alpha}")
        if self.c0_min > self.c0_max:
            raise ConfigError("c0_max", f"must be >= c0_min={self.c0_min}, got {self.c0_max}")
        if self.objective not in ("expectation", "cvar", "threshold", "homeostatic"):
            raise ConfigError("objective", f"unknown objective {self.objective!r}")
        if self.dqn.gamma <= 0.0:
            raise ConfigError("dqn.gamma", f"must be > 0 (the stock divides by it), got {self.dqn.gamma}")
        if self.dqn.loss != "mse":
            raise ConfigError("dqn.loss",
                              f"is unused by DηN (cross-entropy loss); leave it 'mse', got {self.dqn.loss!r}")
        require_in(self, "threshold", -1e9, 1e9)

    @property
    def support(self) -> jax.Array:
        """float32[num_atoms], the categorical support."""
        return jnp.linspace(self.v_min, self.v_max, self.num_atoms, dtype=jnp.float32)

    @property
    def utility(self) -> Callable[[jax.Array], jax.Array]:
        """The elementwise utility ``f`` of the objective."""
        if self.objective == "cvar":
            return cvar_utility(self.alpha)
        return {"expectation": expectation_utility, "threshold": threshold_utility,
                "homeostatic": homeostatic_utility}[self.objective]


@struct.dataclass
class DQNEtaState:
    """One seed's run: as :class:`jaxrl_icl.rl.dqn.DQNState`, plus ``stock``/``c0``:
    float32[num_envs], each env's current stock and the initial stock of its episode.

    The replay holds :class:`~jaxrl_icl.rl.dqn.ReplayTransition` with stock-augmented observations:
    ``obs = [encode(obs), c]`` and ``next_obs = [encode(final obs), (c + r) / gamma]``.
    """

    params: Any
    target_params: Any
    opt_state: Any
    buffer: ReplayBuffer
    env_state: Any
    obs: jax.Array
    stock: jax.Array
    c0: jax.Array
    env_params: Any
    key: jax.Array
    timestep: jax.Array


def utility_scores(probs: jax.Array, stock: jax.Array, support: jax.Array, utility) -> jax.Array:
    """``float32[..., A]``: ``E f(c + Z(a)) = sum_j probs[..., a, j] f(stock + support[j])``.

    ``probs: float[..., A, m]`` categorical laws, ``stock: float[...]``, ``support: float[m]``.
    """
    chex.assert_rank(support, 1)
    chex.assert_equal_shape_prefix([probs, stock], stock.ndim)
    values = utility(stock[..., None] + support)  # [..., m]
    return jnp.einsum("...am,...m->...a", probs, values.astype(jnp.float32))


def categorical_targets(
    reward: jax.Array,
    terminated: jax.Array,
    next_probs: jax.Array,
    next_scores: jax.Array,
    support: jax.Array,
    gamma: float,
) -> jax.Array:
    """``float32[B, m]``: the projected distributional targets of a batch of transitions.

    ``reward: float[B]``, ``terminated: bool[B]`` (cuts the bootstrap), ``next_probs: float[B, A,
    m]`` (target network at the next augmented observation), ``next_scores: float[B, A]`` (the
    objective's score of each next action; ``a* = argmax``, first on ties). The target is the
    Cramér projection onto ``support`` of the atoms ``reward + gamma (1 - terminated) support``
    with probabilities ``next_probs[a*]``. Gradients do not flow through it.
    """
    chex.assert_rank([reward, terminated, next_probs, next_scores], [1, 1, 3, 2])
    best = jnp.argmax(next_scores, axis=-1)
    probs = jnp.take_along_axis(next_probs, best[:, None, None], axis=1)[:, 0]
    discount = gamma * (1.0 - jnp.asarray(terminated, jnp.float32))
    atoms = jnp.asarray(reward, jnp.float32)[:, None] + discount[:, None] * support
    return jax.lax.stop_gradient(categorical_project(atoms, probs, support))


@dataclasses.dataclass(frozen=True)
class DQNEtaAgent:
    """The DηN network and its objective-greedy decisions for one env's spaces (from
    :func:`make_agent`); every method is pure and jittable, ``params`` the network's.

    An augmented observation is ``x: float32[..., obs_dim + 1]``, the encoded observation
    (``encode``: one-hot for ``Discrete``, flattened ``Box``) followed by the raw stock.
    """

    config: DQNEtaConfig
    obs_dim: int
    num_actions: int
    encode: Callable[[jax.Array], jax.Array]

    @property
    def network(self) -> MLP:
        dqn = self.config.dqn
        return MLP(dqn.hidden_size, dqn.num_layers, self.num_actions * self.config.num_atoms, "relu", 1.0)

    def augment(self, obs: jax.Array, stock: jax.Array) -> jax.Array:
        """``float32[..., obs_dim + 1]`` from raw observations and stocks ``float[...]``
        (their batch shapes broadcast together)."""
        features = self.encode(obs)
        stock = jnp.asarray(stock, jnp.float32)
        batch = jnp.broadcast_shapes(features.shape[:-1], stock.shape)
        features = jnp.broadcast_to(features, batch + features.shape[-1:])
        return jnp.concatenate([features, jnp.broadcast_to(stock, batch)[..., None]], axis=-1)

    def logits(self, params: Any, x: jax.Array) -> jax.Array:
        """``float32[..., A, m]``, the return-law logits at augmented observations ``x``."""
        scaled = x.at[..., -1].divide(self.config.stock_scale)
        return self.network.apply(params, scaled).reshape(x.shape[:-1] + (self.num_actions, -1))

    def scores(self, params: Any, x: jax.Array) -> jax.Array:
        """``float32[..., A]``: ``E f(c + Z(obs, c, a))`` at augmented observations ``x``."""
        probs = jax.nn.softmax(self.logits(params, x))
        return utility_scores(probs, x[..., -1], self.config.support, self.config.utility)

    def act(self, params: Any, obs: jax.Array, stock: jax.Array) -> jax.Array:
        """``int32[...]``, the greedy action for raw ``obs`` and ``stock`` (first on ties)."""
        return jnp.argmax(self.scores(params, self.augment(obs, stock)), axis=-1).astype(jnp.int32)

    def initial_stock(self, params: Any, obs: jax.Array) -> jax.Array:
        """``float32[N]``: ``c_0`` for episodes starting at the raw observations ``obs [N, ...]``
        (for cvar the argmax over the candidate grid; see the module docstring)."""
        config, n = self.config, obs.shape[0]
        if config.objective == "expectation":
            return jnp.zeros((n,), jnp.float32)
        if config.objective != "cvar":
            return jnp.full((n,), -config.threshold, jnp.float32)
        grid = jnp.linspace(config.c0_min, config.c0_max, config.num_c0, dtype=jnp.float32)
        x = self.augment(obs[:, None], grid)  # [N, num_c0, obs_dim + 1]
        objective = -grid + self.scores(params, x).max(axis=-1)
        return grid[jnp.argmax(objective, axis=-1)]


def make_agent(config: DQNEtaConfig, env: Any, env_params: Any = None) -> DQNEtaAgent:
    """:class:`DQNEtaAgent` for ``env``'s spaces (``env_params`` only to read them; default
    ``env.default_params``). ConfigError naming ``action_space`` unless it is ``Discrete``,
    or ``observation_space`` unless it is ``Box`` or ``Discrete``."""
    if not isinstance(config, DQNEtaConfig):
        raise TypeError(f"config must be a DQNEtaConfig, got {type(config).__name__}")
    space_params = env.default_params if env_params is None else env_params
    name = str(getattr(env, "name", type(env).__name__))
    obs_dim, encode, num_actions = q_network_spaces(
        env.observation_space(space_params), env.action_space(space_params), "DηN", name
    )
    return DQNEtaAgent(config, obs_dim, num_actions, encode)


def make_train(config: DQNEtaConfig, env: Any, env_params: Any = None) -> Trainer:
    """Build DηN for ``env`` (the env from ``envs.make``, unwrapped); see the module docstring.

    ``env`` needs a ``Discrete`` action space and a ``Box`` or ``Discrete`` observation space
    (ConfigError naming the space otherwise); ``env_params`` is used only to read the spaces.
    Returns a ``Trainer``: ``init(key, env_params) -> DQNEtaState``; ``update(state, env_params) -> (state,
    metrics)`` with float32 scalars ``episode_return`` (mean over the episodes finished in the
    update, NaN if none), ``loss`` (mean cross-entropy; NaN before ``learning_starts``),
    ``q_mean`` (mean of ``E Z(s, c, a)`` on the minibatches), ``epsilon`` and ``c0`` (mean
    initial stock of the envs' current episodes). Use :func:`make_agent` with the final
    ``state.params`` to act with the trained agent.
    """
    agent = make_agent(config, env, env_params)
    dqn = config.dqn
    env = EpisodeStats(env)
    tx = optax.adam(dqn.lr)
    support, gamma = config.support, dqn.gamma
    reset_envs = jax.vmap(env.reset, in_axes=(0, None))
    step_envs = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def init(key: jax.Array, env_params: Any) -> DQNEtaState:
        key, net_key, env_key = jax.random.split(key, 3)
        obs, env_state = reset_envs(jax.random.split(env_key, dqn.num_envs), env_params)
        params = agent.network.init(net_key, jnp.zeros((agent.obs_dim + 1,), jnp.float32))
        c0 = agent.initial_stock(params, obs)
        x = agent.augment(obs[0], c0[0])
        example = ReplayTransition(obs=x, action=jnp.int32(0), reward=jnp.float32(0.0), next_obs=x,
                             terminated=jnp.bool_(False))
        return DQNEtaState(
            params=params, target_params=params, opt_state=tx.init(params),
            buffer=replay_init(example, dqn.buffer_size), env_state=env_state, obs=obs,
            stock=c0, c0=c0, env_params=env_params, key=key, timestep=jnp.zeros((), jnp.int32),
        )

    def env_step(state: DQNEtaState, _: None) -> tuple[DQNEtaState, tuple[jax.Array, ...]]:
        """One epsilon-greedy step (greedy in the objective) of all envs, stored in the buffer."""
        key, explore_key, random_key, step_key = jax.random.split(state.key, 4)
        x = agent.augment(state.obs, state.stock)
        epsilon = linear_epsilon(state.timestep, dqn.epsilon_start, dqn.epsilon_finish, dqn.epsilon_anneal_steps)
        action = epsilon_greedy(explore_key, random_key, agent.scores(state.params, x), epsilon)
        obs, env_state, reward, terminated, truncated, info = step_envs(
            jax.random.split(step_key, dqn.num_envs), state.env_state, action, state.env_params
        )
        reward = reward.astype(jnp.float32)
        next_stock = (state.stock + reward) / gamma
        transition = ReplayTransition(
            obs=x, action=action, reward=reward,
            next_obs=agent.augment(info["final_observation"], next_stock),
            terminated=jnp.asarray(terminated, bool),
        )
        done = jnp.logical_or(terminated, truncated)
        c0 = jnp.where(done, agent.initial_stock(state.params, obs), state.c0)
        state = state.replace(
            buffer=replay_add(state.buffer, transition), env_state=env_state, obs=obs,
            stock=jnp.where(done, c0, next_stock), c0=c0, key=key,
            timestep=state.timestep + dqn.num_envs,
        )
        return state, (info["returned_episode"], info["returned_episode_returns"], epsilon)

    def loss_fn(params: Any, target_params: Any, batch: ReplayTransition) -> tuple[jax.Array, tuple]:
        """Mean cross-entropy; aux: per-transition losses and ``E Z(s, c, a)`` ``[batch_size]``."""
        log_p = jax.nn.log_softmax(agent.logits(params, batch.obs))
        log_p_taken = jnp.take_along_axis(log_p, batch.action[:, None, None], axis=1)[:, 0]
        next_probs = jax.nn.softmax(agent.logits(target_params, batch.next_obs))
        chooser = params if dqn.double_dqn else target_params
        targets = categorical_targets(batch.reward, batch.terminated, next_probs,
                                      agent.scores(chooser, batch.next_obs), support, gamma)
        losses = -jnp.sum(targets * log_p_taken, axis=-1)
        return jnp.mean(losses), (losses, jnp.exp(log_p_taken) @ support)

    update = learner_update(dqn, tx, loss_fn, env_step,
                            extra_metrics=lambda state: {"c0": jnp.mean(state.c0)})

    return Trainer(init=init, update=update, num_updates=dqn.num_updates,
                   env_steps_per_update=dqn.steps_per_update)

