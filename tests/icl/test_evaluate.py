"""In-context rollouts: against a hand-written env loop, online vs offline contexts, episode returns."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs.darkroom import optimal_action, optimal_return
from jaxrl_icl.icl.evaluate import (
    ContextTransition,
    InContextAgent,
    episode_returns,
    evaluate,
    held_out_evaluation,
    prefill,
    rollout,
)


def _counting_agent(goal_from_carry: bool = False) -> InContextAgent:
    """carry = (transitions observed, reward seen so far); acts optimally toward a goal
    it reads off the carry (the test stores it there), else always 'right'."""

    def act(params, carry, obs, key):
        count, rewards, goal = carry
        action = optimal_action(obs, goal) if goal_from_carry else jnp.int32(4)
        return action, carry

    def observe(params, carry, t: ContextTransition):
        count, rewards, goal = carry
        return count + 1, rewards + t.reward, goal

    return InContextAgent(init=lambda: (jnp.int32(0), jnp.float32(0), jnp.zeros(2, jnp.int32)), act=act,
                          observe=observe)


def test_rollout_matches_a_direct_env_loop():
    env, params = envs.make("darkroom-9x9")
    params = params.replace(goal=jnp.array([8, 4], jnp.int32))
    out = jax.jit(lambda k: rollout(env, params, _counting_agent(), None, k, 45))(jax.random.key(0))
    # always 'right' from (4, 4): reaches x = 8 after 4 steps, then stays on the goal
    expected = np.tile(np.r_[np.zeros(3), np.ones(17)], 3)[:45]
    np.testing.assert_array_equal(out["reward"], expected)
    np.testing.assert_array_equal(np.flatnonzero(out["done"]), [19, 39])
    count, seen, _ = out["carry"]
    assert int(count) == 45 and float(seen) == expected.sum()


def test_observed_transitions_end_where_the_step_led_not_at_the_reset():
    """At an episode's last step the observed next_obs is the cell moved to (here the goal,
    with reward 1), not the start cell the env resets to."""

    def observe(params, carry, t: ContextTransition):
        return carry.at[t.done.astype(jnp.int32)].set(jnp.concatenate([t.next_obs, t.reward[None]]))

    recorder = InContextAgent(init=lambda: jnp.zeros((2, 3)), act=lambda p, c, o, k: (jnp.int32(4), c),
                              observe=observe)  # always 'right'
    env, params = envs.make("darkroom-9x9")
    out = rollout(env, params.replace(goal=jnp.array([8, 4], jnp.int32)), recorder, None, jax.random.key(0), 20)
    last = out["carry"][1]  # the transition with done = True
    np.testing.assert_array_equal(last, [8, 4, 1])
    assert tuple(env.start) == (4, 4)


def test_offline_context_is_never_updated_and_online_is():
    env, base = envs.make("darkroom-9x9")
    goals = jnp.array([[0, 0], [8, 8], [4, 6]], jnp.int32)
    tasks = jax.vmap(lambda g: base.replace(goal=g))(goals)
    agent = _counting_agent(goal_from_carry=True)
    data = ContextTransition(jnp.zeros((7, 2), jnp.int32), jnp.zeros(7, jnp.int32), jnp.ones(7),
                             jnp.zeros((7, 2), jnp.int32), jnp.zeros(7, bool))
    contexts = jax.vmap(lambda g: (lambda c: (c[0], c[1], g))(prefill(agent, None, data)))(goals)
    assert contexts[0].tolist() == [7, 7, 7]
    out = evaluate(env, tasks, agent, None, jax.random.key(1), num_steps=40, num_seeds=2, learn=False,
                   contexts=contexts)
    returns = episode_returns(out["reward"], out["done"], 20)
    optimum = jax.vmap(lambda g: optimal_return(g, jnp.array([4, 4]), 20))(goals)
    np.testing.assert_allclose(returns, np.broadcast_to(np.asarray(optimum)[:, None, None], (3, 2, 2)))


def test_episode_returns_checks_the_horizon():
    reward = np.arange(8.0)[None]
    done = np.array([[0, 0, 0, 1, 0, 0, 0, 1]], bool)
    np.testing.assert_array_equal(episode_returns(reward, done, 4), [[6.0, 22.0]])
    with pytest.raises(ValueError, match="horizon=2"):
        episode_returns(reward, done, 2)
    with pytest.raises(ValueError, match="whole number"):
        episode_returns(reward, done, 3)


def test_held_out_evaluation_gives_each_models_closed_form_return_per_episode():
    """Two "models" (params 4 = always right, 3 = always left) from (4, 4) on goals (8, 4) and
    (1, 4): right reaches (8, 4) at step 4 and stays there (H - 3 per episode), never (1, 4);
    left passes (1, 4) once, at step 3, on its way to the wall (1 per episode), never (8, 4).
    The reduced curve is the mean over tasks and rollouts of the per-rollout one."""
    agent = InContextAgent(init=lambda: jnp.int32(0), act=lambda p, c, o, k: (p, c), observe=lambda p, c, t: c)
    env, base = envs.make("darkroom-9x9")
    tasks = jax.vmap(lambda g: base.replace(goal=g))(jnp.array([[8, 4], [1, 4]], jnp.int32))
    returns = held_out_evaluation(agent, env, tasks, eval_episodes=3, eval_seeds=2, seed=0, per_rollout=True)
    per_rollout = returns(jnp.array([4, 3], jnp.int32))
    assert per_rollout.shape == (2, 2, 2, 3)
    h = env.horizon
    np.testing.assert_array_equal(per_rollout[0], np.broadcast_to(np.reshape([h - 3, 0], (2, 1, 1)), (2, 2, 3)))
    np.testing.assert_array_equal(per_rollout[1], np.broadcast_to(np.reshape([0, 1], (2, 1, 1)), (2, 2, 3)))
    mean = held_out_evaluation(agent, env, tasks, eval_episodes=3, eval_seeds=2, seed=0)(jnp.array([4, 3]))
    np.testing.assert_allclose(mean, per_rollout.mean(axis=(1, 2)))
