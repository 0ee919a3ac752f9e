"""Cliff walk: the environment's sampled transitions and rewards against its exported tabular
model, and an episode-return law against distributional DP on that model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs.cliffwalk import CLIFF, GOAL, START, CliffWalkState, cliffwalk_mdp
from envs.tabular import validate_mdp
from jaxrl_icl.distributional import CategoricalRep, policy_evaluation

N = 4000  # samples per (state, action)


def _grid_neighbour(s, a):
    """Independent oracle: the (row, col) move with wall clipping."""
    r, c = divmod(s, 12)
    dr, dc = [(-1, 0), (0, 1), (1, 0), (0, -1)][a]
    return min(max(r + dr, 0), 3) * 12 + min(max(c + dc, 0), 11)


@pytest.mark.parametrize("slip", [0.1, 0.3])
def test_sampled_transitions_and_rewards_match_model(slip):
    env, params = envs.make("cliffwalk", slip_prob=slip)
    model = cliffwalk_mdp(params)
    validate_mdp(model, 48, 4)
    states = jnp.array([s for s in range(48) if s != GOAL], jnp.int32)  # goal ends the episode
    S, A = states.shape[0], 4

    @jax.jit
    def sample(key):
        keys = jax.random.split(key, (S, A, N))

        def one(k, s, a):
            _, st, r, term, _ = env.step_env(k, CliffWalkState(s, jnp.int32(0)), a, params)
            return st.state, r, term

        f = jax.vmap(jax.vmap(jax.vmap(one, (0, None, None)), (0, None, 0)), (0, 0, None))
        return f(keys, states, jnp.arange(A))

    nxt, rew, term = (np.asarray(x) for x in sample(jax.random.key(0)))
    counts = (nxt[..., None] == np.arange(48)).mean(axis=2)  # [S, A, 48]
    P = np.asarray(model.P)[np.asarray(states)]
    sigma = np.sqrt(P * (1 - P) / N)
    assert np.all(np.abs(counts - P) <= 5 * sigma + 1e-6)
    R = np.asarray(model.R)[np.asarray(states)]
    np.testing.assert_array_equal(rew, np.broadcast_to(R[..., None], rew.shape))
    np.testing.assert_array_equal(term, nxt == GOAL)
    # The model itself against the grid oracle: chosen move 1 - 3 slip / 4, others slip / 4.
    for s in (0, 13, 25, START):
        for a in range(4):
            expected = np.zeros(48)
            for b in range(4):
                expected[_grid_neighbour(s, b)] += slip / 4 + (1 - slip) * (a == b)
            np.testing.assert_allclose(np.asarray(model.P)[s, a], expected, atol=1e-6)
    for s in CLIFF:
        np.testing.assert_allclose(np.asarray(model.P)[s, :, START], 1.0)
        np.testing.assert_array_equal(np.asarray(model.R)[s], -40.0)
    np.testing.assert_allclose(np.asarray(model.P)[GOAL, :, GOAL], 1.0)
    np.testing.assert_array_equal(np.asarray(model.R)[GOAL], 0.0)


def test_episode_return_law_matches_dp_on_model():
    """Uniform-random episodes of the env (termination and truncation through ``env.step``)
    have the H-step return law of the model: compare mean and Pr(G <= -41) within 5 SE."""
    H, episodes = 10, 20000
    env, params = envs.make("cliffwalk", max_steps_in_episode=H)

    @jax.jit
    def episode(key):
        reset_key, key = jax.random.split(key)
        _, state = env.reset(reset_key, params)

        def body(carry, k):
            state, g, alive = carry
            a_key, s_key = jax.random.split(k)
            a = jax.random.randint(a_key, (), 0, 4)
            _, state, r, term, trunc, _ = env.step(s_key, state, a, params)
            return (state, g + alive * r, alive & ~(term | trunc)), None

        (_, g, _), _ = jax.lax.scan(body, (state, 0.0, jnp.bool_(True)), jax.random.split(key, H))
        return g

    g = np.asarray(jax.vmap(episode)(jax.random.split(jax.random.key(1), episodes)))
    model = cliffwalk_mdp(params)
    support = jnp.arange(-41.0 * H, 1.0)
    res = policy_evaluation(model.P, model.R, jnp.full((48, 4), 0.25), 1.0,
                            CategoricalRep(support), num_iterations=H)
    law = np.asarray(res.state_dist[START])
    mean = law @ np.asarray(support)
    assert abs(g.mean() - mean) <= 5 * g.std() / np.sqrt(episodes)
    p_fall = law[np.asarray(support) <= -41].sum()
    assert 0.05 < p_fall < 0.95
    assert abs((g <= -41).mean() - p_fall) <= 5 * np.sqrt(p_fall * (1 - p_fall) / episodes)


def test_registered_and_bad_params_rejected():
    assert "cliffwalk" in envs.registered_envs()
    with pytest.raises(ValueError, match="slip_prob"):
        envs.make("cliffwalk", slip_prob=1.5)
    with pytest.raises(ValueError, match="max_steps_in_episode"):
        envs.make("cliffwalk", max_steps_in_episode=0)
