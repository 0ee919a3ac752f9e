"""Evaluating offline policies in JAX envs and training with periodic evaluation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import envs
from jaxrl_icl.offline import ObsNormalizer, bc
from jaxrl_icl.offline.evaluate import make_evaluator, with_evaluation
from jaxrl_icl.rl.evaluate import policy_returns
from tests.offline.test_io import dataset


def test_evaluator_normalises_observations_and_scales_actions():
    env, params = envs.make("gymnax:Pendulum-v1")
    norm = ObsNormalizer(mean=jnp.array([0.5, 0.0, 1.0]), std=jnp.array([2.0, 1.0, 4.0]))
    policy = lambda w, x: jnp.tanh(x[2:3] * w)  # in [-1, 1]
    evaluate = make_evaluator(env, params, policy, num_episodes=3, max_episode_steps=200, normalizer=norm,
                              action_scale=2.0)
    got = jax.jit(evaluate)(jax.random.PRNGKey(0), -3.0)
    by_hand = lambda obs: 2.0 * jnp.tanh((obs[2:3] - 1.0) / 4.0 * -3.0)
    expected = policy_returns(jax.random.PRNGKey(0), env, params, by_hand, 3, 200).mean()
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_periodic_evaluation_leaves_training_unchanged():
    ds = dataset(num_episodes=12)
    config = bc.BCConfig(num_updates=12, batch_size=8, hidden=(16,))
    trainer = bc.make_train(config, 3, 2)
    evaluate = lambda key, params: jnp.sum(jax.tree.leaves(params)[0]) + 0 * jax.random.uniform(key)
    wrapped = with_evaluation(trainer, evaluate, lambda s: s.params, eval_every=4, score=lambda r: 2 * r)
    assert wrapped.num_updates == 3
    plain_state, plain = jax.jit(trainer)(jax.random.PRNGKey(1), ds)
    state, metrics = jax.jit(wrapped)(jax.random.PRNGKey(1), ds)
    for a, b in zip(jax.tree.leaves(plain_state), jax.tree.leaves(state)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(metrics["loss"], plain["loss"][3::4])
    np.testing.assert_allclose(metrics["normalized_score"], 2 * metrics["eval_return"])
