"""Benchmark-only reference PPO in PureJaxRL's published design (not part of the library).

One ``make_train(config)`` closure builds ``train(rng) -> {"runner_state", "metrics"}``:
gymnax's ``LogWrapper`` around the env, a flax actor-critic with separate actor and critic
MLPs, optax Adam behind ``clip_by_global_norm`` with a linearly annealed learning rate, the
runner state ``(train_state, env_state, last_obs, rng)`` threaded through one ``lax.scan``
over updates, GAE on ``done = terminated | truncated`` (no truncation bootstrapping), and the
whole rollout ``info`` returned as metrics. Seeds: ``jax.jit(jax.vmap(make_train(cfg)))(rngs)``.

Written from the design description for :mod:`experiments.benchmarks.ppo`, which times it side by
side with :func:`jaxrl_icl.rl.ppo.make_train`; it is not tested for learning beyond that.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training.train_state import TrainState
from gymnax.wrappers.purerl import LogWrapper

# PureJaxRL uses flax's LAPACK-backed orthogonal init; same draws, but LAPACK-free (see linalg).
from jaxrl_icl.linalg import orthogonal


class ActorCritic(nn.Module):
    """Two tanh hidden layers of 64 for the actor and the critic; ``obs -> (logits, value)``."""

    action_dim: int

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        def dense(features: int, scale: float) -> nn.Dense:
            return nn.Dense(features, kernel_init=orthogonal(scale),
                            bias_init=nn.initializers.constant(0.0))

        actor = nn.tanh(dense(64, np.sqrt(2))(x))
        actor = nn.tanh(dense(64, np.sqrt(2))(actor))
        logits = dense(self.action_dim, 0.01)(actor)
        critic = nn.tanh(dense(64, np.sqrt(2))(x))
        critic = nn.tanh(dense(64, np.sqrt(2))(critic))
        return logits, jnp.squeeze(dense(1, 1.0)(critic), axis=-1)


class Transition(NamedTuple):
    done: jax.Array
    action: jax.Array
    value: jax.Array
    reward: jax.Array
    log_prob: jax.Array
    obs: jax.Array
    info: Any


def _log_prob(logits: jax.Array, action: jax.Array) -> jax.Array:
    return jnp.take_along_axis(jax.nn.log_softmax(logits), action[..., None], axis=-1)[..., 0]


def _entropy(logits: jax.Array) -> jax.Array:
    log_p = jax.nn.log_softmax(logits)
    return -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)


def make_train(config: dict[str, Any]):
    """``config`` keys (PureJaxRL's names): ENV_NAME, NUM_ENVS, NUM_STEPS, TOTAL_TIMESTEPS,
    UPDATE_EPOCHS, NUM_MINIBATCHES, LR, ANNEAL_LR, GAMMA, GAE_LAMBDA, CLIP_EPS, ENT_COEF,
    VF_COEF, MAX_GRAD_NORM."""
    num_updates = config["TOTAL_TIMESTEPS"] // config["NUM_STEPS"] // config["NUM_ENVS"]
    batch_size = config["NUM_ENVS"] * config["NUM_STEPS"]
    minibatch_size = batch_size // config["NUM_MINIBATCHES"]
    env, env_params = gymnax.make(config["ENV_NAME"])
    env = LogWrapper(env)

    def linear_schedule(count: jax.Array) -> jax.Array:
        frac = 1.0 - (count // (config["NUM_MINIBATCHES"] * config["UPDATE_EPOCHS"])) / num_updates
        return config["LR"] * frac

    def train(rng: jax.Array) -> dict[str, Any]:
        network = ActorCritic(env.action_space(env_params).n)
        rng, init_rng = jax.random.split(rng)
        params = network.init(init_rng, jnp.zeros(env.observation_space(env_params).shape))
        lr = linear_schedule if config["ANNEAL_LR"] else config["LR"]
        tx = optax.chain(optax.clip_by_global_norm(config["MAX_GRAD_NORM"]), optax.adam(lr, eps=1e-5))
        train_state = TrainState.create(apply_fn=network.apply, params=params, tx=tx)

        rng, reset_rng = jax.random.split(rng)
        obsv, env_state = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(reset_rng, config["NUM_ENVS"]), env_params
        )

        def update_step(runner_state, _):
            def env_step(runner_state, _):
                train_state, env_state, last_obs, rng = runner_state
                rng, action_rng, step_rng = jax.random.split(rng, 3)
                logits, value = network.apply(train_state.params, last_obs)
                action = jax.random.categorical(action_rng, logits)
                log_prob = _log_prob(logits, action)
                obsv, env_state, reward, terminated, truncated, info = jax.vmap(
                    env.step, in_axes=(0, 0, 0, None)
                )(jax.random.split(step_rng, config["NUM_ENVS"]), env_state, action, env_params)
                done = jnp.logical_or(terminated, truncated)
                transition = Transition(done, action, value, reward, log_prob, last_obs, info)
                return (train_state, env_state, obsv, rng), transition

            runner_state, traj_batch = jax.lax.scan(env_step, runner_state, None, config["NUM_STEPS"])

            train_state, env_state, last_obs, rng = runner_state
            _, last_val = network.apply(train_state.params, last_obs)

            def gae_step(carry, transition):
                gae, next_value = carry
                not_done = 1.0 - transition.done
                delta = transition.reward + config["GAMMA"] * next_value * not_done - transition.value
                gae = delta + config["GAMMA"] * config["GAE_LAMBDA"] * not_done * gae
                return (gae, transition.value), gae

            _, advantages = jax.lax.scan(
                gae_step, (jnp.zeros_like(last_val), last_val), traj_batch, reverse=True, unroll=16
            )
            targets = advantages + traj_batch.value

            def update_epoch(update_state, _):
                def update_minibatch(train_state, batch_info):
                    traj, gae, target = batch_info

                    def loss_fn(params):
                        logits, value = network.apply(params, traj.obs)
                        log_prob = _log_prob(logits, traj.action)
                        value_clipped = traj.value + jnp.clip(
                            value - traj.value, -config["CLIP_EPS"], config["CLIP_EPS"]
                        )
                        value_loss = 0.5 * jnp.maximum(
                            jnp.square(value - target), jnp.square(value_clipped - target)
                        ).mean()
                        ratio = jnp.exp(log_prob - traj.log_prob)
                        gae_n = (gae - gae.mean()) / (gae.std() + 1e-8)
                        actor_loss = -jnp.minimum(
                            ratio * gae_n,
                            jnp.clip(ratio, 1.0 - config["CLIP_EPS"], 1.0 + config["CLIP_EPS"]) * gae_n,
                        ).mean()
                        entropy = _entropy(logits).mean()
                        total = actor_loss + config["VF_COEF"] * value_loss - config["ENT_COEF"] * entropy
                        return total, (value_loss, actor_loss, entropy)

                    (total, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(train_state.params)
                    return train_state.apply_gradients(grads=grads), (total, aux)

                train_state, traj_batch, advantages, targets, rng = update_state
                rng, perm_rng = jax.random.split(rng)
                permutation = jax.random.permutation(perm_rng, batch_size)
                batch = (traj_batch, advantages, targets)
                batch = jax.tree.map(lambda x: x.reshape((batch_size,) + x.shape[2:]), batch)
                shuffled = jax.tree.map(lambda x: jnp.take(x, permutation, axis=0), batch)
                minibatches = jax.tree.map(
                    lambda x: x.reshape((config["NUM_MINIBATCHES"], minibatch_size) + x.shape[1:]),
                    shuffled,
                )
                train_state, losses = jax.lax.scan(update_minibatch, train_state, minibatches)
                return (train_state, traj_batch, advantages, targets, rng), losses

            update_state = (train_state, traj_batch, advantages, targets, rng)
            update_state, _ = jax.lax.scan(update_epoch, update_state, None, config["UPDATE_EPOCHS"])
            train_state, rng = update_state[0], update_state[-1]
            return (train_state, env_state, last_obs, rng), traj_batch.info

        rng, run_rng = jax.random.split(rng)
        runner_state = (train_state, env_state, obsv, run_rng)
        runner_state, metrics = jax.lax.scan(update_step, runner_state, None, num_updates)
        return {"runner_state": runner_state, "metrics": metrics}

    return train


def main(argv: list[str] | None = None) -> None:
    """The whole-process reference: PureJaxRL's CartPole config, ``jax.jit(jax.vmap(train))`` over
    seeds, block until done, print the mean final return (what its notebook does before plotting)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m experiments.bench_ref.purejaxrl_ppo", description=main.__doc__)
    parser.add_argument("--num-seeds", type=int, default=16)
    parser.add_argument("--total-timesteps", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    config = {
        "ENV_NAME": "CartPole-v1", "NUM_ENVS": 4, "NUM_STEPS": 128, "TOTAL_TIMESTEPS": args.total_timesteps,
        "UPDATE_EPOCHS": 4, "NUM_MINIBATCHES": 4, "LR": 2.5e-4, "ANNEAL_LR": True, "GAMMA": 0.99,
        "GAE_LAMBDA": 0.95, "CLIP_EPS": 0.2, "ENT_COEF": 0.01, "VF_COEF": 0.5, "MAX_GRAD_NORM": 0.5,
    }
    rngs = jax.random.split(jax.random.PRNGKey(args.seed), args.num_seeds)
    out = jax.block_until_ready(jax.jit(jax.vmap(make_train(config)))(rngs))
    info = out["metrics"]  # leaves [seeds, updates, steps, envs]
    returns = np.asarray(info["returned_episode_returns"])[:, -10:][np.asarray(info["returned_episode"])[:, -10:]]
    print(f"PureJaxRL-design PPO on CartPole-v1: mean return over the last 10 updates {returns.mean():.1f} "
          f"({args.num_seeds} seeds, {args.total_timesteps:,} steps per seed)")


if __name__ == "__main__":
    main()
