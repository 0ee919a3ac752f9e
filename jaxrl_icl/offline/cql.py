"""Conservative Q-Learning (Kumar et al. 2020): SAC with a penalty that pushes Q down on
actions away from the data and up on the data's actions; and discrete CQL on a Q head.

The penalty is ``log E_{a ~ U}[exp Q(s, a)] - Q(s, a_data)``, the CQL(H) regulariser
measured against the uniform distribution over actions: the official form uses the log of
the integral (or sum) of ``exp Q`` instead, which differs by the constant log volume of the
action set, so both have the same gradients, and ours is zero when Q is flat over actions.
For continuous actions the expectation is estimated by importance sampling with
``num_samples`` uniform actions and as many from the policy at ``s`` and at ``s'``, as in the
paper's code. Actions lie in ``[-1, 1]``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl_icl.config import require_in, require_nonnegative, require_positive, require_types
from jaxrl_icl.offline.dataset import Dataset, sample_transitions
from jaxrl_icl.offline.networks import MLP, GaussianActor, TwinCritic, tanh_gaussian_sample
from jaxrl_icl.trainer import Trainer


@dataclasses.dataclass(frozen=True)
class CQLConfig:
    """CQL hyperparameters (continuous: SAC-based, the paper's MuJoCo settings; discrete:
    a Q head trained by DQN targets plus the penalty).

    Attributes:
      num_updates: gradient steps.
      batch_size: transitions per step.
      actor_lr: Adam learning rate of the actor (and of the entropy temperature).
      critic_lr: Adam learning rate of the critics.
      gamma: discount.
      tau: Polyak step of the target critics.
      cql_weight: weight of the conservative penalty (5 to 10 for locomotion).
      num_samples: actions sampled per state for each of the three proposals.
      target_entropy_scale: the temperature is tuned toward ``-scale * action_dim`` entropy.
      hidden: hidden layer widths of actor and critics.
    """

    num_updates: int = 500_000
    batch_size: int = 256
    actor_lr: float = 1e-4
    critic_lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    cql_weight: float = 5.0
    num_samples: int = 10
    target_entropy_scale: float = 1.0
    hidden: tuple[int, ...] = (256, 256)

    def __post_init__(self) -> None:
        require_types(self)
        for name in ("num_updates", "batch_size", "actor_lr", "critic_lr", "num_samples"):
            require_positive(self, name)
        for name in ("gamma", "tau"):
            require_in(self, name, 0.0, 1.0)
        require_nonnegative(self, "cql_weight")


def cql_penalty(q_samples: jax.Array, log_density: jax.Array, q_data: jax.Array, action_dim: int) -> jax.Array:
    """Continuous CQL penalty [B]: ``log mean_j exp(q_j - log p_j - action_dim * log 2) - q_data``.

    Args:
      q_samples: Q at sampled actions [B, M]; log_density: the log density [B, M] of the
        proposal each action was drawn from (``-action_dim * log 2`` for uniform ones);
      q_data: Q at the dataset's action [B].

    ``exp(q - log p)`` averages to the integral of ``exp Q`` over ``[-1, 1]^act``, whose log
    minus ``act * log 2`` is ``log E_U[exp Q]``: the penalty is 0 when Q is flat.
    """
    shifted = q_samples - log_density - action_dim * math.log(2.0)
    return jax.nn.logsumexp(shifted, axis=-1) - math.log(q_samples.shape[-1]) - q_data


def discrete_cql_penalty(q_all: jax.Array, action: jax.Array) -> jax.Array:
    """Discrete CQL penalty [B]: ``logsumexp_a Q(s, a) - log A - Q(s, a_data)`` for
    ``q_all [B, A]`` and int ``action [B]``; 0 when Q is flat over the ``A`` actions."""
    q_data = jnp.take_along_axis(q_all, action[:, None].astype(jnp.int32), axis=-1)[:, 0]
    return jax.nn.logsumexp(q_all, axis=-1) - math.log(q_all.shape[-1]) - q_data


@struct.dataclass
class CQLState:
    actor: Any
    critic: Any
    target_critic: Any
    log_alpha: jax.Array
    actor_opt: Any
    critic_opt: Any
    alpha_opt: Any
    key: jax.Array
    step: jax.Array


def make_train(config: CQLConfig, obs_dim: int, action_dim: int) -> Trainer:
    """Continuous CQL (SAC + the penalty, fixed weight) as a :class:`~jaxrl_icl.trainer.Trainer`
    over a dataset argument. Metrics: ``critic_loss``, ``cql_penalty``, ``actor_loss``,
    ``alpha``, ``q_mean``, ``entropy``."""
    actor = GaussianActor(action_dim, config.hidden)
    critic = TwinCritic(config.hidden)
    actor_tx, alpha_tx = optax.adam(config.actor_lr), optax.adam(config.actor_lr)
    critic_tx = optax.adam(config.critic_lr)
    target_entropy = -config.target_entropy_scale * action_dim
    m = config.num_samples

    def sample_actions(params, obs, key):
        mean, log_std = actor.apply(params, obs)
        return tanh_gaussian_sample(key, mean, log_std)

    def init(key: jax.Array, dataset: Dataset) -> CQLState:
        del dataset
        k_a, k_c, key = jax.random.split(key, 3)
        obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim))
        a, c = actor.init(k_a, obs), critic.init(k_c, obs, act)
        log_alpha = jnp.zeros((), jnp.float32)
        return CQLState(actor=a, critic=c, target_critic=c, log_alpha=log_alpha, actor_opt=actor_tx.init(a),
                        critic_opt=critic_tx.init(c), alpha_opt=alpha_tx.init(log_alpha), key=key, step=jnp.int32(0))

    def update(state: CQLState, dataset: Dataset) -> tuple[CQLState, dict[str, jax.Array]]:
        key, k_batch, k_next, k_rand, k_pi, k_pi_next, k_actor = jax.random.split(state.key, 7)
        b = sample_transitions(k_batch, dataset, config.batch_size)
        obs, next_obs = b["observations"], b["next_observations"]
        bsz = obs.shape[0]

        next_action, _ = sample_actions(state.actor, next_obs, k_next)
        next_q = jnp.min(critic.apply(state.target_critic, next_obs, next_action), axis=0)
        target = b["rewards"] + config.gamma * (1.0 - b["terminals"].astype(jnp.float32)) * next_q

        # proposals for the penalty: uniform, the policy at s, the policy at s'; [B, M, act] each
        rand = jax.random.uniform(k_rand, (bsz, m, action_dim), minval=-1.0, maxval=1.0)
        tile = lambda x: jnp.repeat(x[:, None], m, axis=1)
        pi, logp = sample_actions(state.actor, tile(obs), k_pi)
        pi_next, logp_next = sample_actions(state.actor, tile(next_obs), k_pi_next)
        proposals = jax.lax.stop_gradient(jnp.concatenate([rand, pi, pi_next], axis=1))
        log_density = jax.lax.stop_gradient(jnp.concatenate(
            [jnp.full((bsz, m), -action_dim * math.log(2.0)), logp, logp_next], axis=1))

        def critic_loss_fn(params):
            q = critic.apply(params, obs, b["actions"])  # [2, B]
            q_samples = critic.apply(params, jnp.repeat(obs[:, None], 3 * m, axis=1), proposals)  # [2, B, 3M]
            penalty = jax.vmap(cql_penalty, in_axes=(0, None, 0, None))(q_samples, log_density, q, action_dim)
            bellman = jnp.mean(jnp.sum((q - target[None]) ** 2, axis=0))
            pen = jnp.mean(jnp.sum(penalty, axis=0))
            return bellman + config.cql_weight * pen, (q, pen)

        (c_loss, (q, pen)), c_grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(state.critic)
        c_updates, critic_opt = critic_tx.update(c_grads, state.critic_opt, state.critic)
        critic_params = optax.apply_updates(state.critic, c_updates)

        alpha = jnp.exp(state.log_alpha)

        def actor_loss_fn(params):
            action, log_prob = sample_actions(params, obs, k_actor)
            q_pi = jnp.min(critic.apply(state.critic, obs, action), axis=0)
            return jnp.mean(alpha * log_prob - q_pi), log_prob

        (a_loss, log_prob), a_grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(state.actor)
        a_updates, actor_opt = actor_tx.update(a_grads, state.actor_opt, state.actor)

        entropy = -jnp.mean(log_prob)
        alpha_grad = jax.grad(lambda la: -la * jax.lax.stop_gradient(target_entropy - entropy))(state.log_alpha)
        al_updates, alpha_opt = alpha_tx.update(alpha_grad, state.alpha_opt, state.log_alpha)

        state = CQLState(
            actor=optax.apply_updates(state.actor, a_updates), critic=critic_params,
            target_critic=optax.incremental_update(critic_params, state.target_critic, config.tau),
            log_alpha=optax.apply_updates(state.log_alpha, al_updates), actor_opt=actor_opt, critic_opt=critic_opt,
            alpha_opt=alpha_opt, key=key, step=state.step + 1,
        )
        return state, {"critic_loss": c_loss, "cql_penalty": pen, "actor_loss": a_loss, "alpha": alpha,
                       "q_mean": jnp.mean(q), "entropy": entropy}

    return Trainer(init=init, update=update, num_updates=config.num_updates, env_steps_per_update=0)


def policy(config: CQLConfig, action_dim: int):
    """``(actor_params, obs [..., obs]) -> tanh(mean) [..., act]``, the deterministic action."""
    actor = GaussianActor(action_dim, config.hidden)
    return lambda params, obs: jnp.tanh(actor.apply(params, obs)[0])


class _QHead(nn.Module):
    num_actions: int
    hidden: tuple[int, ...]

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return MLP(self.hidden, self.num_actions)(obs)


@struct.dataclass
class DiscreteCQLState:
    params: Any
    target: Any
    opt: Any
    key: jax.Array
    step: jax.Array


def make_train_discrete(config: CQLConfig, obs_dim: int, num_actions: int) -> Trainer:
    """Discrete CQL: a Q head ``[B, A]`` trained on ``(Q(s, a) - (r + gamma * max_a' Q'(s', a')))^2
    + cql_weight * penalty`` over a dataset with int actions. Metrics: ``loss``, ``cql_penalty``,
    ``q_mean``."""
    net = _QHead(num_actions, config.hidden)
    tx = optax.adam(config.critic_lr)

    def init(key: jax.Array, dataset: Dataset) -> DiscreteCQLState:
        del dataset
        key, k_init = jax.random.split(key)
        params = net.init(k_init, jnp.zeros((1, obs_dim)))
        return DiscreteCQLState(params=params, target=params, opt=tx.init(params), key=key, step=jnp.int32(0))

    def update(state: DiscreteCQLState, dataset: Dataset) -> tuple[DiscreteCQLState, dict[str, jax.Array]]:
        key, k_batch = jax.random.split(state.key)
        b = sample_transitions(k_batch, dataset, config.batch_size)
        next_q = jnp.max(net.apply(state.target, b["next_observations"]), axis=-1)
        target = b["rewards"] + config.gamma * (1.0 - b["terminals"].astype(jnp.float32)) * next_q

        def loss_fn(params):
            q_all = net.apply(params, b["observations"])
            q = jnp.take_along_axis(q_all, b["actions"][:, None], axis=-1)[:, 0]
            pen = jnp.mean(discrete_cql_penalty(q_all, b["actions"]))
            return jnp.mean((q - target) ** 2) + config.cql_weight * pen, (q, pen)

        (loss, (q, pen)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt = tx.update(grads, state.opt, state.params)
        params = optax.apply_updates(state.params, updates)
        state = DiscreteCQLState(params=params, target=optax.incremental_update(params, state.target, config.tau),
                                 opt=opt, key=key, step=state.step + 1)
        return state, {"loss": loss, "cql_penalty": pen, "q_mean": jnp.mean(q)}

    return Trainer(init=init, update=update, num_updates=config.num_updates, env_steps_per_update=0)


def discrete_policy(config: CQLConfig, num_actions: int):
    """``(params, obs [..., obs]) -> argmax_a Q(s, a)`` int ``[...]``."""
    net = _QHead(num_actions, config.hidden)
    return lambda params, obs: jnp.argmax(net.apply(params, obs), axis=-1)
