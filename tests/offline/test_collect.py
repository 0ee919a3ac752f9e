"""Recording datasets from JAX envs: stream layout, true successors, reference returns."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import envs
from jaxrl_icl.offline import make_dataset
from jaxrl_icl.offline.collect import (
    action_scale,
    complete_episode_returns,
    episode_returns,
    record_rollouts,
    reference_return,
    streams_to_arrays,
    uniform_policy,
)


def test_streams_are_laid_out_one_after_another_and_cut_by_timeouts():
    t, e = 5, 2
    obs = np.arange(t * e, dtype=np.float32).reshape(t, e, 1)
    terminated = np.zeros((t, e), bool)
    terminated[2, 0] = True
    truncated = np.zeros((t, e), bool)
    arrays = streams_to_arrays(obs, np.zeros((t, e), np.int32), np.ones((t, e)), terminated, truncated, obs + 100)
    np.testing.assert_array_equal(arrays["observations"][:, 0], [0, 2, 4, 6, 8, 1, 3, 5, 7, 9])
    np.testing.assert_array_equal(arrays["terminals"], [0, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(arrays["timeouts"], [0, 0, 0, 0, 1, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(episode_returns(arrays), [3, 2, 5])


def test_complete_episode_returns_leave_out_each_streams_unfinished_tail():
    reward = np.arange(1.0, 11.0).reshape(5, 2)  # [T=5, E=2]: env 0 gets 1, 3, 5, 7, 9
    done = np.zeros((5, 2), bool)
    done[1, 0] = done[4, 0] = done[2, 1] = True
    np.testing.assert_array_equal(complete_episode_returns(reward, done), [1 + 3, 5 + 7 + 9, 2 + 4 + 6])


def test_recorded_pendulum_keeps_true_successors_and_scales_actions():
    env, params = envs.make("gymnax:Pendulum-v1")
    scale = action_scale(env, params)
    arrays = record_rollouts(jax.random.PRNGKey(0), env, params, uniform_policy(env, params), num_envs=3,
                             num_steps=450, action_scale=scale)
    ds = make_dataset(arrays, action_bounds=(-1.0, 1.0))
    assert ds.size == 3 * 450  # the env reports final observations: nothing dropped
    assert float(scale) == 2.0 and np.abs(arrays["actions"]).max() > 0.9
    # within an episode the successor is the next row; episodes end at the env's 200-step limit
    ends = np.flatnonzero(arrays["terminals"] | arrays["timeouts"])
    np.testing.assert_array_equal(ends, [199, 399, 449, 649, 849, 899, 1099, 1299, 1349])
    inner = np.setdiff1d(np.arange(ds.size - 1), ends)
    # (equal up to float rounding: XLA may fuse the two copies of the step differently)
    np.testing.assert_allclose(arrays["next_observations"][inner], arrays["observations"][inner + 1], atol=1e-6)
    # across a time-limit cut the successor is the final state, not the reset one
    assert not np.allclose(arrays["next_observations"][199], arrays["observations"][200])


def test_reference_return_matches_a_python_loop():
    env, params = envs.make("gymnax:Pendulum-v1")
    policy = lambda params, key, obs: jnp.clip(-2.0 * obs[:, 2:3], -2.0, 2.0)  # damp the angular velocity
    mean = reference_return(jax.random.PRNGKey(4), env, params, policy, num_episodes=3, max_episode_steps=200)
    # second implementation: step each env one at a time with the same keys
    key, k_reset = jax.random.split(jax.random.PRNGKey(4))
    reset_keys = jax.random.split(k_reset, 3)
    states = [env.reset(k, params) for k in reset_keys]
    totals = np.zeros(3)
    step = jax.jit(env.step)
    for _ in range(200):
        key, _, k_step = jax.random.split(key, 3)
        step_keys = jax.random.split(k_step, 3)
        new = []
        for i, (obs, state) in enumerate(states):
            action = jnp.clip(-2.0 * obs[2:3], -2.0, 2.0)
            obs, state, reward, _, _, _ = step(step_keys[i], state, action, params)
            totals[i] += float(reward)
            new.append((obs, state))
        states = new
    np.testing.assert_allclose(mean, totals.mean(), rtol=1e-4)
