"""Tests for tabular Q-learning (``jaxrl_icl.rl.q_learning``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces

import envs
from envs.darkroom import all_goals
from envs.spaces import state_encoder
from jaxrl_icl.config import ConfigError
from jaxrl_icl.rl.evaluate import greedy_episode_return, tabular_scores
from jaxrl_icl.rl.q_learning import (
    QLearningConfig,
    epsilon_schedule,
    make_train,
)

# Dark Room 9x9 (AD): start (4, 4), H = 20.
START, H = (4, 4), 20


def _darkroom_tasks():
    env, params = envs.make("darkroom-9x9")
    goals = all_goals(9)
    return env, jax.vmap(lambda g: params.replace(goal=g))(goals), np.asarray(goals)


def _optimal_return(goal) -> int:
    """H - d + 1 for Manhattan distance d >= 1 from the start, H on the start cell."""
    d = abs(int(goal[0]) - START[0]) + abs(int(goal[1]) - START[1])
    return H if d == 0 else H - d + 1


def test_darkroom_all_goals_reach_near_optimal_and_history_rises():
    env, params, goals = _darkroom_tasks()
    optimum = np.mean([_optimal_return(g) for g in goals])
    assert optimum == pytest.approx(1340 / 81)
    config = QLearningConfig(num_episodes=300, lr=0.5, epsilon_decay_episodes=150, record_history=True)
    trainer = make_train(config, env)
    keys = jax.random.split(jax.random.key(0), len(goals))
    state, metrics = jax.jit(jax.vmap(trainer))(keys, params)
    greedy = jax.vmap(lambda q, p: greedy_episode_return(jax.random.key(1), env, p, tabular_scores(env, p, q), H))(
        state.q, params)
    assert abs(float(greedy.mean()) - optimum) <= 0.1 * optimum
    # No greedy policy can beat the optimum of its own goal.
    assert np.all(np.asarray(greedy) <= np.array([_optimal_return(g) for g in goals]))

    returns = np.asarray(metrics["episode_return"])  # [81, 300]
    assert returns.shape == (81, 300)
    # The first episodes are near-random (a random walk rarely finds the goal); the last ones
    # (epsilon = 0.05) are near-optimal.
    assert returns[:, :10].mean() < 0.2 * optimum
    assert returns[:, -30:].mean() > 0.85 * optimum

    # The recorded stream agrees with the metric and with the env's rules.
    obs = np.asarray(metrics["history/obs"])  # [81, 300, H, 1, 2]
    assert obs.shape == (81, 300, H, 1, 2) and obs.dtype == np.int8
    assert metrics["history/action"].dtype == np.int8
    reward = np.asarray(metrics["history/reward"])
    np.testing.assert_allclose(reward.sum(axis=(2, 3)), returns, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(obs[:, :, 0, 0], np.broadcast_to(START, (81, 300, 2)))
    truncated = np.asarray(metrics["history/truncated"])[..., 0]
    assert truncated[:, :, -1].all() and not truncated[:, :, :-1].any()
    assert not np.asarray(metrics["history/terminated"]).any()
    on_goal = np.all(obs[:, :, 1:, 0] == goals[:, None, None, :], axis=-1)
    np.testing.assert_array_equal(reward[:, :, :-1, 0] == 1.0, on_goal)


def _move(pos, action, size=9):
    """Dark Room move rule, written independently: 0 stay, 1 up, 2 down, 3 left, 4 right."""
    dx = {3: -1, 4: 1}.get(int(action), 0)
    dy = {1: 1, 2: -1}.get(int(action), 0)
    return np.clip(np.asarray(pos) + (dx, dy), 0, size - 1)


def test_update_matches_sequential_numpy_replay():
    """Replaying the recorded stream with textbook Q-learning gives the same table."""
    env, params, _ = _darkroom_tasks()
    task = jax.tree.map(lambda x: x[30], params)
    config = QLearningConfig(num_episodes=6, num_envs=3, lr=0.3, gamma=0.8, q_init=0.25, record_history=True)
    state, metrics = jax.jit(make_train(config, env))(jax.random.key(3), task)
    q = np.full((81, 5), 0.25, np.float32)
    obs, actions, rewards = (np.asarray(metrics[f"history/{k}"]) for k in ("obs", "action", "reward"))
    for u in range(6):
        for t in range(H):
            for e in range(3):  # envs update the shared table one after another
                pos, a, r = obs[u, t, e], int(actions[u, t, e]), rewards[u, t, e]
                nxt = _move(pos, a)
                s, s2 = pos[0] * 9 + pos[1], nxt[0] * 9 + nxt[1]
                q[s, a] += np.float32(0.3) * (r + np.float32(0.8) * q[s2].max() - q[s, a])
    np.testing.assert_allclose(np.asarray(state.q), q, rtol=1e-5, atol=1e-6)
    assert int(state.episode) == 6


def _value_iteration(P, R, gamma, iters=2000):
    q = np.zeros_like(R, dtype=np.float64)
    for _ in range(iters):
        q = R + gamma * P @ q.max(axis=1)
    return q


def test_tabular_mdp_converges_to_value_iteration():
    """On a random MDP (Discrete obs) the table approaches Q* from value iteration."""
    env, params = envs.make("tabular-random")
    config = QLearningConfig(num_episodes=150, num_envs=4, lr=0.05, gamma=0.8, epsilon_start=1.0,
                             epsilon_end=1.0)
    state, _ = jax.jit(make_train(config, env))(jax.random.key(0), params)
    q_star = _value_iteration(np.asarray(params.P, np.float64), np.asarray(params.R, np.float64), 0.8)
    err = np.abs(np.asarray(state.q) - q_star).max()
    assert err < 0.05 * np.abs(q_star).max(), err


def test_epsilon_schedule_is_linear_then_flat():
    config = QLearningConfig(epsilon_start=0.9, epsilon_end=0.1, epsilon_decay_episodes=8)
    got = np.asarray(jax.vmap(lambda u: epsilon_schedule(config, u))(jnp.arange(12)))
    want = [0.9 - 0.8 * min(u / 8, 1.0) for u in range(12)]
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_state_encoder_is_a_bijection_on_the_grid():
    env, params = envs.make("darkroom-9x9")
    encode, num_states, dtype = state_encoder(env.observation_space(params))
    assert num_states == 81 and dtype == np.int8
    index = np.asarray(jax.vmap(encode)(all_goals(9)))
    assert sorted(index.tolist()) == list(range(81))
    with pytest.raises(ValueError, match="observation_space"):
        state_encoder(spaces.Box(0.0, 1.0, (2,), jnp.float32))


@pytest.mark.parametrize(
    "field, value", [("lr", 0.0), ("gamma", 1.5), ("epsilon_end", -0.1), ("num_episodes", 0), ("num_envs", 0)]
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ConfigError, match=f"^{field}:"):
        QLearningConfig(**{field: value})


def test_rejects_continuous_observations():
    env, _ = envs.make("gymnax:CartPole-v1")
    with pytest.raises(ValueError, match="observation_space"):
        make_train(QLearningConfig(), env)
