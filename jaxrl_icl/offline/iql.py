"""Implicit Q-Learning (Kostrikov et al. 2021).

Three regressions, none querying actions outside the dataset: ``V(s)`` is an upper expectile
of the target critics' ``min_i Q_i(s, a)`` over the data's actions; ``Q(s, a)`` regresses
``r + gamma * V(s')``; the actor is advantage-weighted regression with weights
``exp(beta * (Q - V))`` clipped at 100. The actor is a Gaussian with a tanh mean and a
state-independent log-std (``deterministic=True``: weighted squared error on the tanh
mean); its learning rate decays with a cosine schedule. Actions lie in ``[-1, 1]``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl_icl.config import require_in, require_positive, require_types
from jaxrl_icl.offline.dataset import Dataset, sample_transitions
from jaxrl_icl.offline.networks import LOG_STD_MAX, LOG_STD_MIN, DeterministicActor, TwinCritic, ValueNet, compute_dtype
from jaxrl_icl.trainer import Trainer


@dataclasses.dataclass(frozen=True)
class IQLConfig:
    """IQL hyperparameters (defaults: the paper's locomotion settings).

    Attributes:
      num_updates: gradient steps (each updates value, critics and actor once).
      batch_size: transitions per step.
      lr: Adam learning rate of all three networks (the actor's decays to 0 by a cosine).
      gamma: discount.
      tau: Polyak step of the target critics.
      expectile: the value net's expectile of Q (0.7 locomotion, 0.9 AntMaze).
      beta: inverse temperature of the advantage weights.
      max_weight: advantage weights are clipped at this value.
      deterministic: deterministic actor (weighted squared error) instead of a Gaussian.
      hidden: hidden layer widths of all networks.
      bf16: run the networks' matmuls and activations in bfloat16 (parameters, optimiser
        state and losses stay float32; as :class:`~jaxrl_icl.offline.td3_bc.TD3BCConfig`).
    """

    num_updates: int = 500_000
    batch_size: int = 256
    lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    expectile: float = 0.7
    beta: float = 3.0
    max_weight: float = 100.0
    deterministic: bool = False
    hidden: tuple[int, ...] = (256, 256)
    bf16: bool = False

    def __post_init__(self) -> None:
        require_types(self)
        for name in ("num_updates", "batch_size", "lr", "beta", "max_weight"):
            require_positive(self, name)
        for name in ("gamma", "tau"):
            require_in(self, name, 0.0, 1.0)
        require_in(self, "expectile", 0.0, 1.0)


class IQLActor(nn.Module):
    """``obs -> (tanh mean [..., act], log_std [act])``; log_std is a free parameter."""

    action_dim: int
    hidden: tuple[int, ...]
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean = DeterministicActor(self.action_dim, self.hidden, dtype=self.dtype)(obs)
        log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))
        return mean, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


@struct.dataclass
class IQLState:
    actor: Any
    critic: Any
    target_critic: Any
    value: Any
    actor_opt: Any
    critic_opt: Any
    value_opt: Any
    key: jax.Array
    step: jax.Array


def expectile_loss(diff: jax.Array, expectile: float) -> jax.Array:
    """Mean asymmetric squared error ``|expectile - 1[diff < 0]| * diff^2`` of ``diff = Q - V`` [B]."""
    weight = jnp.where(diff < 0, 1.0 - expectile, expectile)
    return jnp.mean(weight * diff**2)


def awr_weights(q: jax.Array, v: jax.Array, beta: float, max_weight: float) -> jax.Array:
    """Advantage weights ``min(exp(beta * (q - v)), max_weight)`` [B], without gradient."""
    return jax.lax.stop_gradient(jnp.minimum(jnp.exp(beta * (q - v)), max_weight))


def gaussian_log_prob(mean: jax.Array, log_std: jax.Array, action: jax.Array) -> jax.Array:
    """Diagonal Gaussian log density [B] of ``action [B, act]``."""
    z = (action - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


def make_train(config: IQLConfig, obs_dim: int, action_dim: int) -> Trainer:
    """IQL as a :class:`~jaxrl_icl.trainer.Trainer` over a dataset argument.

    Metrics per update: ``value_loss``, ``critic_loss``, ``actor_loss``, ``q_mean``,
    ``v_mean``, ``weight_mean``.
    """
    dtype = compute_dtype(config.bf16)
    actor = _actor(config, action_dim)
    critic = TwinCritic(config.hidden, dtype=dtype)
    value = ValueNet(config.hidden, dtype=dtype)
    actor_tx = optax.adam(optax.cosine_decay_schedule(config.lr, config.num_updates))
    critic_tx, value_tx = optax.adam(config.lr), optax.adam(config.lr)

    def init(key: jax.Array, dataset: Dataset) -> IQLState:
        del dataset
        k_a, k_c, k_v, key = jax.random.split(key, 4)
        obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim))
        a, c, v = actor.init(k_a, obs), critic.init(k_c, obs, act), value.init(k_v, obs)
        return IQLState(actor=a, critic=c, target_critic=c, value=v, actor_opt=actor_tx.init(a),
                        critic_opt=critic_tx.init(c), value_opt=value_tx.init(v), key=key, step=jnp.int32(0))

    def update(state: IQLState, dataset: Dataset) -> tuple[IQLState, dict[str, jax.Array]]:
        key, k_batch = jax.random.split(state.key)
        b = sample_transitions(k_batch, dataset, config.batch_size)
        target_q = jnp.min(critic.apply(state.target_critic, b["observations"], b["actions"]), axis=0)

        def value_loss_fn(params):
            v = value.apply(params, b["observations"])
            return expectile_loss(target_q - v, config.expectile), v

        (v_loss, v), v_grads = jax.value_and_grad(value_loss_fn, has_aux=True)(state.value)
        v_updates, value_opt = value_tx.update(v_grads, state.value_opt, state.value)
        value_params = optax.apply_updates(state.value, v_updates)

        next_v = value.apply(value_params, b["next_observations"])
        target = b["rewards"] + config.gamma * (1.0 - b["terminals"].astype(jnp.float32)) * next_v

        def critic_loss_fn(params):
            q = critic.apply(params, b["observations"], b["actions"])
            return jnp.mean(jnp.sum((q - target[None]) ** 2, axis=0)), q

        (c_loss, q), c_grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(state.critic)
        c_updates, critic_opt = critic_tx.update(c_grads, state.critic_opt, state.critic)
        critic_params = optax.apply_updates(state.critic, c_updates)

        weights = awr_weights(target_q, v, config.beta, config.max_weight)

        def actor_loss_fn(params):
            mean, log_std = actor.apply(params, b["observations"])
            if config.deterministic:
                return jnp.mean(weights * jnp.sum((mean - b["actions"]) ** 2, axis=-1))
            return -jnp.mean(weights * gaussian_log_prob(mean, log_std, b["actions"]))

        a_loss, a_grads = jax.value_and_grad(actor_loss_fn)(state.actor)
        a_updates, actor_opt = actor_tx.update(a_grads, state.actor_opt, state.actor)
        state = IQLState(
            actor=optax.apply_updates(state.actor, a_updates), critic=critic_params,
            target_critic=optax.incremental_update(critic_params, state.target_critic, config.tau),
            value=value_params, actor_opt=actor_opt, critic_opt=critic_opt, value_opt=value_opt, key=key,
            step=state.step + 1,
        )
        return state, {"value_loss": v_loss, "critic_loss": c_loss, "actor_loss": a_loss, "q_mean": jnp.mean(q),
                       "v_mean": jnp.mean(v), "weight_mean": jnp.mean(weights)}

    return Trainer(init=init, update=update, num_updates=config.num_updates, env_steps_per_update=0)


def _actor(config: IQLConfig, action_dim: int) -> IQLActor:
    """The actor network of ``config`` (the trainer's and :func:`policy`'s)."""
    return IQLActor(action_dim, config.hidden, compute_dtype(config.bf16))


def policy(config: IQLConfig, action_dim: int):
    """``(actor_params, obs [..., obs]) -> action [..., act]``: the Gaussian's (tanh) mean."""
    actor = _actor(config, action_dim)
    return lambda params, obs: actor.apply(params, obs)[0]
