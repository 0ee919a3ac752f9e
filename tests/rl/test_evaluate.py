"""Greedy-policy evaluation (``jaxrl_icl.rl.evaluate``).

Oracles: Dark Room's closed-form optimal return (``envs.darkroom.optimal_return``) for the
expert policy given as a Q-table and as a function; an eager Python loop over the env for
CartPole, whose episodes end before the step budget.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import envs
from envs.darkroom import all_goals, optimal_action, optimal_return
from jaxrl_icl.rl.evaluate import greedy_episode_return, greedy_returns, tabular_scores


def test_expert_policy_as_table_and_as_function_reaches_the_closed_form_optimum():
    env, base = envs.make("darkroom-9x9")
    goals = all_goals(9)
    cells = jnp.stack(jnp.meshgrid(jnp.arange(9), jnp.arange(9), indexing="ij"), -1).reshape(-1, 2)
    start = jnp.asarray(env.start, jnp.int32)

    def returns(goal):
        params = base.replace(goal=goal)
        # state_encoder's index of cell (x, y) is 9 x + y: the row-major order of `cells`
        q = jax.nn.one_hot(jax.vmap(lambda c: optimal_action(c, goal))(cells), env.num_actions)
        table = greedy_returns(jax.random.key(0), env, params, tabular_scores(env, params, q), 2, env.horizon)
        function = greedy_returns(jax.random.key(0), env, params,
                                  lambda obs: jax.nn.one_hot(optimal_action(obs, goal), env.num_actions), 2,
                                  env.horizon)
        return table, function, optimal_return(goal, start, env.horizon)

    table, function, optimum = jax.jit(jax.vmap(returns))(goals)
    assert table.shape == (81, 2) and table.dtype == jnp.float32
    np.testing.assert_array_equal(table, np.repeat(np.asarray(optimum, np.float32)[:, None], 2, axis=1))
    np.testing.assert_array_equal(function, table)


def test_rollouts_equal_an_eager_loop_and_stop_at_the_first_episode_end():
    env, params = envs.make("gymnax:CartPole-v1")
    scores = lambda obs: jnp.stack([-obs[2], obs[2]])  # noqa: E731  (pushes toward the lean: falls in 20-50 steps)
    num_steps = 300
    got = jax.jit(lambda k: greedy_returns(k, env, params, scores, 4, num_steps))(jax.random.key(7))

    expected = []
    for key in jax.random.split(jax.random.key(7), 4):
        reset_key, rollout_key = jax.random.split(key)
        obs, state = env.reset(reset_key, params)
        total = 0.0
        for step_key in jax.random.split(rollout_key, num_steps):
            action = int(np.argmax(np.asarray(scores(obs))))
            obs, state, reward, terminated, truncated, _ = env.step(step_key, state, action, params)
            total += float(reward)
            if terminated or truncated:
                break
        expected.append(total)
    np.testing.assert_array_equal(got, np.asarray(expected, np.float32))
    assert np.all(np.asarray(expected) < num_steps)  # every episode ended inside the budget: masking was tested
    assert len(set(expected)) > 1  # different resets per episode
    # one episode from a key is the first of greedy_returns from the split key
    assert float(greedy_episode_return(jax.random.split(jax.random.key(7), 4)[0], env, params, scores,
                                       num_steps)) == expected[0]


def test_ties_go_to_the_lowest_action():
    env, params = envs.make("gymnax:CartPole-v1")
    # CartPole falls after a few steps pushing left (action 0) all along
    tie = greedy_returns(jax.random.key(1), env, params, lambda obs: jnp.zeros(2), 3, 200)
    left = greedy_returns(jax.random.key(1), env, params, lambda obs: jnp.array([1.0, 0.0]), 3, 200)
    np.testing.assert_array_equal(tie, left)
    assert np.all(np.asarray(left) < 20)
