"""Benchmark-only reference TD3+BC and IQL in JAX-CORL's published design (not part of the library).

JAX-CORL's single-file offline algorithms share one training structure, reproduced here:

- every network (actor, twin critic, IQL's value net) is a flax ``TrainState`` holding its
  params and its optax Adam state; target networks are plain params beside them;
- the dataset is a dict of ``jnp`` arrays on the device, and each update draws its batch
  with ``jax.random.randint`` indices inside the jitted function;
- one jitted ``update_n_times(state, dataset, rng)`` runs ``n_jitted_updates`` (8) updates
  unrolled by a Python for-loop in the traced function;
- the host loop calls it ``num_updates / n_jitted_updates`` times.

The math and hyperparameters are those of :mod:`jaxrl_icl.offline.td3_bc` and
:mod:`jaxrl_icl.offline.iql` at their defaults (256-256 ReLU MLPs, batch 256, Adam 3e-4,
gamma 0.99, tau 0.005; TD3+BC: policy noise 0.2 clipped at 0.5, an actor and target step
after every 2nd critic step, alpha 2.5 with ``lambda = alpha / mean|Q|``; IQL: expectile 0.7,
beta 3, weights clipped at 100, Gaussian actor with a state-independent log-std and a cosine
decay of its learning rate). An "update" is one critic gradient step: 1M updates of TD3+BC
are 1M critic and 500k actor steps, as in JAX-CORL; the TD3+BC actor step reuses the batch of
the critic step before it, as ours does.

Written from the design description for :mod:`experiments.benchmarks.offline`, which times it
beside our trainers; :func:`td3_bc_critic_loss` and :func:`td3_bc_actor_loss` are also the
second implementation its test compares our losses with.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState

N_JITTED_UPDATES = 8
HIDDEN = (256, 256)
BATCH_SIZE = 256
LR = 3e-4
GAMMA = 0.99
TAU = 0.005
POLICY_NOISE, NOISE_CLIP, POLICY_FREQ, ALPHA = 0.2, 0.5, 2, 2.5
EXPECTILE, BETA, MAX_WEIGHT = 0.7, 3.0, 100.0


class MLP(nn.Module):
    """ReLU hidden layers of ``hidden`` units, then ``out`` linear units: ``[B, in] -> [B, out]``."""

    out: int
    hidden: tuple[int, ...] = HIDDEN

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden:
            x = nn.relu(nn.Dense(width)(x))
        return nn.Dense(self.out)(x)


class Actor(nn.Module):
    """``obs [B, obs] -> tanh action [B, act]`` (TD3+BC; IQL's Gaussian mean)."""

    action_dim: int

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return jnp.tanh(MLP(self.action_dim)(obs))


class GaussianActor(nn.Module):
    """IQL's policy: ``obs [B, obs] -> (tanh mean [B, act], log_std [act])``."""

    action_dim: int

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean = jnp.tanh(MLP(self.action_dim)(obs))
        log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))
        return mean, jnp.clip(log_std, -5.0, 2.0)


class DoubleCritic(nn.Module):
    """``(obs [B, obs], action [B, act]) -> (q1 [B], q2 [B])``."""

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = jnp.concatenate([obs, action], axis=-1)
        return MLP(1)(x)[:, 0], MLP(1)(x)[:, 0]


class ValueCritic(nn.Module):
    """``obs [B, obs] -> V [B]``."""

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        return MLP(1)(obs)[:, 0]


class TD3BCTrainState(NamedTuple):
    actor: TrainState
    critic: TrainState
    target_actor: Any
    target_critic: Any


class IQLTrainState(NamedTuple):
    actor: TrainState
    critic: TrainState
    value: TrainState
    target_critic: Any


def _sample(rng: jax.Array, dataset: dict[str, jax.Array]) -> dict[str, jax.Array]:
    idx = jax.random.randint(rng, (BATCH_SIZE,), 0, dataset["rewards"].shape[0])
    return jax.tree.map(lambda x: x[idx], dataset)


def _polyak(new: Any, old: Any) -> Any:
    return jax.tree.map(lambda n, o: TAU * n + (1.0 - TAU) * o, new, old)


# ----------------------------------------------------------------------------- TD3+BC


def td3_bc_critic_loss(critic_params: Any, critic: DoubleCritic, target: jax.Array,
                       batch: dict[str, jax.Array]) -> jax.Array:
    """Sum over both critics of the mean squared TD error to ``target`` [B]."""
    q1, q2 = critic.apply(critic_params, batch["observations"], batch["actions"])
    return jnp.mean((q1 - target) ** 2) + jnp.mean((q2 - target) ** 2)


def td3_bc_target(target_actor: Any, target_critic: Any, actor: Actor, critic: DoubleCritic,
                  batch: dict[str, jax.Array], noise: jax.Array) -> jax.Array:
    """``r + gamma * (1 - done) * min(Q1', Q2')(s', clip(pi'(s') + noise))`` [B]; ``noise`` is the
    already clipped smoothing noise [B, act]."""
    next_action = jnp.clip(actor.apply(target_actor, batch["next_observations"]) + noise, -1.0, 1.0)
    q1, q2 = critic.apply(target_critic, batch["next_observations"], next_action)
    return batch["rewards"] + GAMMA * (1.0 - batch["dones"]) * jnp.minimum(q1, q2)


def td3_bc_actor_loss(actor_params: Any, critic_params: Any, actor: Actor, critic: DoubleCritic,
                      batch: dict[str, jax.Array]) -> jax.Array:
    """``mean((pi(s) - a)^2) - lambda * mean(Q1(s, pi(s)))``, ``lambda = alpha / mean|Q1|`` held fixed."""
    action = actor.apply(actor_params, batch["observations"])
    q, _ = critic.apply(critic_params, batch["observations"], action)
    lam = jax.lax.stop_gradient(ALPHA / jnp.mean(jnp.abs(q)))
    return jnp.mean((action - batch["actions"]) ** 2) - lam * jnp.mean(q)


def make_td3_bc(obs_dim: int, action_dim: int) -> tuple[Callable, Callable]:
    """``(init(rng) -> TD3BCTrainState, update_n_times(state, dataset, rng) -> (state, rng, info))``;
    ``update_n_times`` is not jitted here (the caller jits it, or a vmap of it)."""
    actor, critic = Actor(action_dim), DoubleCritic()

    def init(rng: jax.Array) -> TD3BCTrainState:
        k_actor, k_critic = jax.random.split(rng)
        obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim))
        actor_params, critic_params = actor.init(k_actor, obs), critic.init(k_critic, obs, act)
        return TD3BCTrainState(
            actor=TrainState.create(apply_fn=actor.apply, params=actor_params, tx=optax.adam(LR)),
            critic=TrainState.create(apply_fn=critic.apply, params=critic_params, tx=optax.adam(LR)),
            target_actor=actor_params, target_critic=critic_params)

    def update_n_times(state: TD3BCTrainState, dataset: dict[str, jax.Array], rng: jax.Array):
        info = {}
        for i in range(N_JITTED_UPDATES):
            rng, k_batch, k_noise = jax.random.split(rng, 3)
            batch = _sample(k_batch, dataset)
            noise = jnp.clip(POLICY_NOISE * jax.random.normal(k_noise, batch["actions"].shape),
                             -NOISE_CLIP, NOISE_CLIP)
            target = td3_bc_target(state.target_actor, state.target_critic, actor, critic, batch, noise)
            info["critic_loss"], grads = jax.value_and_grad(td3_bc_critic_loss)(
                state.critic.params, critic, target, batch)
            state = state._replace(critic=state.critic.apply_gradients(grads=grads))
            if (i + 1) % POLICY_FREQ == 0:
                info["actor_loss"], grads = jax.value_and_grad(td3_bc_actor_loss)(
                    state.actor.params, state.critic.params, actor, critic, batch)
                new_actor = state.actor.apply_gradients(grads=grads)
                state = TD3BCTrainState(actor=new_actor, critic=state.critic,
                                        target_actor=_polyak(new_actor.params, state.target_actor),
                                        target_critic=_polyak(state.critic.params, state.target_critic))
        return state, rng, info

    return init, update_n_times


# ----------------------------------------------------------------------------- IQL


def make_iql(obs_dim: int, action_dim: int, num_updates: int) -> tuple[Callable, Callable]:
    """Like :func:`make_td3_bc` for IQL; ``num_updates`` sets the actor's cosine decay."""
    actor, critic, value = GaussianActor(action_dim), DoubleCritic(), ValueCritic()

    def init(rng: jax.Array) -> IQLTrainState:
        k_actor, k_critic, k_value = jax.random.split(rng, 3)
        obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim))
        critic_params = critic.init(k_critic, obs, act)
        actor_tx = optax.adam(optax.cosine_decay_schedule(LR, num_updates))
        return IQLTrainState(
            actor=TrainState.create(apply_fn=actor.apply, params=actor.init(k_actor, obs), tx=actor_tx),
            critic=TrainState.create(apply_fn=critic.apply, params=critic_params, tx=optax.adam(LR)),
            value=TrainState.create(apply_fn=value.apply, params=value.init(k_value, obs), tx=optax.adam(LR)),
            target_critic=critic_params)

    def one_update(state: IQLTrainState, batch: dict[str, jax.Array]) -> tuple[IQLTrainState, dict]:
        q1, q2 = critic.apply(state.target_critic, batch["observations"], batch["actions"])
        target_q = jnp.minimum(q1, q2)

        def value_loss(params):
            v = value.apply(params, batch["observations"])
            diff = target_q - v
            return jnp.mean(jnp.abs(EXPECTILE - (diff < 0).astype(jnp.float32)) * diff**2), v

        (v_loss, v), grads = jax.value_and_grad(value_loss, has_aux=True)(state.value.params)
        new_value = state.value.apply_gradients(grads=grads)
        next_v = value.apply(new_value.params, batch["next_observations"])
        target = batch["rewards"] + GAMMA * (1.0 - batch["dones"]) * next_v

        def critic_loss(params):
            c1, c2 = critic.apply(params, batch["observations"], batch["actions"])
            return jnp.mean((c1 - target) ** 2) + jnp.mean((c2 - target) ** 2)

        c_loss, grads = jax.value_and_grad(critic_loss)(state.critic.params)
        new_critic = state.critic.apply_gradients(grads=grads)
        weights = jax.lax.stop_gradient(jnp.minimum(jnp.exp(BETA * (target_q - v)), MAX_WEIGHT))

        def actor_loss(params):
            mean, log_std = actor.apply(params, batch["observations"])
            z = (batch["actions"] - mean) * jnp.exp(-log_std)
            log_prob = jnp.sum(-0.5 * z**2 - log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)
            return -jnp.mean(weights * log_prob)

        a_loss, grads = jax.value_and_grad(actor_loss)(state.actor.params)
        state = IQLTrainState(actor=state.actor.apply_gradients(grads=grads), critic=new_critic, value=new_value,
                              target_critic=_polyak(new_critic.params, state.target_critic))
        return state, {"value_loss": v_loss, "critic_loss": c_loss, "actor_loss": a_loss}

    def update_n_times(state: IQLTrainState, dataset: dict[str, jax.Array], rng: jax.Array):
        info = {}
        for _ in range(N_JITTED_UPDATES):
            rng, k_batch = jax.random.split(rng)
            state, info = one_update(state, _sample(k_batch, dataset))
        return state, rng, info

    return init, update_n_times


def dataset_dict(observations, actions, rewards, next_observations, terminals) -> dict[str, jax.Array]:
    """JAX-CORL's dataset layout: float32 ``jnp`` arrays, ``dones`` the terminals as floats."""
    return {"observations": jnp.asarray(observations, jnp.float32), "actions": jnp.asarray(actions, jnp.float32),
            "rewards": jnp.asarray(rewards, jnp.float32),
            "next_observations": jnp.asarray(next_observations, jnp.float32),
            "dones": jnp.asarray(terminals, jnp.float32)}


def train(update_n_times: Callable, state: Any, dataset: dict[str, jax.Array], rng: jax.Array,
          num_updates: int) -> tuple[Any, dict]:
    """JAX-CORL's host loop: ``num_updates // N_JITTED_UPDATES`` calls of the jitted
    ``update_n_times``; returns the final state and the last call's info (blocked on)."""
    info = {}
    for _ in range(num_updates // N_JITTED_UPDATES):
        state, rng, info = update_n_times(state, dataset, rng)
    return jax.block_until_ready((state, info))
