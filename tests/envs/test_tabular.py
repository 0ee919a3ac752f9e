"""Tabular MDPs: sampled transitions and returns against the explicit P, R tables."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs.tabular import TabularMDP, TabularState, make_random_mdp, validate_mdp


def test_next_state_frequencies_and_rewards_match_tables():
    env, params = make_random_mdp()
    S, A, n = env.num_states, env.num_actions, 20_000
    s, a = (x.ravel() for x in jnp.meshgrid(jnp.arange(S), jnp.arange(A), indexing="ij"))

    def sample(s, a, key):
        state = TabularState(state=s, time=jnp.int32(0))
        keys = jax.random.split(key, n)
        obs, _, reward, *_ = jax.vmap(env.step, (0, None, None, None))(keys, state, a, params)
        return obs, reward

    keys = jax.random.split(jax.random.key(0), S * A)
    obs, reward = jax.jit(jax.vmap(sample))(s.astype(jnp.int32), a.astype(jnp.int32), keys)
    assert obs.dtype == jnp.int32
    freq = np.stack([np.bincount(o, minlength=S) for o in np.asarray(obs)]) / n  # [S*A, S]
    P = np.asarray(params.P, np.float64).reshape(S * A, S)
    assert np.all(np.abs(freq - P) <= 5 * np.sqrt(P * (1 - P) / n) + 1 / n)
    R = np.asarray(params.R).reshape(S * A)
    np.testing.assert_array_equal(np.asarray(reward), np.broadcast_to(R[:, None], reward.shape))


def test_zero_probability_states_never_drawn_and_init_dist_followed():
    env = TabularMDP(num_states=4, num_actions=1)
    rows = [[0.0, 0.5, 0.5, 0.0], [0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.3, 0.0, 0.7]]
    P = jnp.array(rows)[:, None, :]  # [S, A=1, S]
    init = jnp.array([0.1, 0.0, 0.6, 0.3])
    params = env.default_params.replace(P=P, R=jnp.zeros((4, 1)), init_dist=init)
    validate_mdp(params, 4, 1)
    n = 40_000
    keys = jax.random.split(jax.random.key(1), n)
    starts, _ = jax.vmap(env.reset, (0, None))(keys, params)
    freq = np.bincount(np.asarray(starts), minlength=4) / n
    p = np.asarray(init, np.float64)
    assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1 / n)
    assert freq[1] == 0.0
    for s in range(4):
        state = TabularState(state=jnp.int32(s), time=jnp.int32(0))
        nxt = np.asarray(jax.vmap(env.step, (0, None, None, None))(keys, state, 0, params)[0])
        assert np.all(np.asarray(P)[s, 0][nxt] > 0)


def test_random_policy_return_matches_backward_induction():
    env, params = make_random_mdp()
    H, n = 50, 4096
    P, R = np.asarray(params.P, np.float64), np.asarray(params.R, np.float64)
    value = np.zeros(env.num_states)
    for _ in range(H):  # uniform-random policy, finite horizon
        value = (R + P @ value).mean(axis=1)
    expected = float(np.asarray(params.init_dist, np.float64) @ value)

    def episode(key):
        rkey, key = jax.random.split(key)
        _, state = env.reset(rkey, params)

        def body(state, key):
            akey, skey = jax.random.split(key)
            action = env.action_space(params).sample(akey)
            _, state, reward, _, trunc, _ = env.step(skey, state, action, params)
            return state, (reward, trunc)

        _, (rewards, trunc) = jax.lax.scan(body, state, jax.random.split(key, H))
        return rewards.sum(), trunc

    returns, trunc = jax.jit(jax.vmap(episode))(jax.random.split(jax.random.key(2), n))
    returns = np.asarray(returns, np.float64)
    assert abs(returns.mean() - expected) <= 5 * returns.std(ddof=1) / np.sqrt(n)
    np.testing.assert_array_equal(np.asarray(trunc)[0], np.arange(1, H + 1) == H)


def test_make_is_deterministic_and_samples_are_valid_mdps():
    (env, p1), (_, p2) = make_random_mdp(), envs.make("tabular-random")
    jax.tree.map(np.testing.assert_array_equal, p1, p2)
    assert p1.P.shape == (10, 3, 10) and p1.max_steps_in_episode == 50
    tasks = jax.vmap(env.sample_params)(jax.random.split(jax.random.key(0), 8))
    for i in range(8):
        task = jax.tree.map(lambda x, i=i: x[i], tasks)
        validate_mdp(task, 10, 3)
        assert np.all(np.asarray(task.R) >= 0) and np.all(np.asarray(task.R) < 1)
    assert not np.allclose(tasks.P[0], tasks.P[1])


def test_validate_mdp_errors():
    _, good = make_random_mdp()
    P = np.asarray(good.P).copy()
    bad_rows = P.copy()
    bad_rows[2, 1] *= 1.1
    negative = P.copy()
    negative[0, 0, 0] = -0.1
    negative[0, 0, 1] += 0.1
    cases = [
        (good.replace(P=bad_rows), r"P rows must sum to 1; P\[2, 1\]"),
        (good.replace(P=negative), "P has negative"),
        (good.replace(P=P[:, :, :9]), "P must have shape"),
        (good.replace(R=np.zeros((10, 2))), "R must have shape"),
        (good.replace(R=np.full((10, 3), np.nan)), "R has non-finite"),
        (good.replace(init_dist=np.full(10, 0.2)), "init_dist rows must sum to 1"),
        (good.replace(init_dist=np.ones(9) / 9), "init_dist must have shape"),
    ]
    for params, message in cases:
        with pytest.raises(ValueError, match=message):
            validate_mdp(params)
    with pytest.raises(ValueError, match="P has 10 states"):
        validate_mdp(good, num_states=11)
    with pytest.raises(ValueError, match="num_states"):
        TabularMDP(num_states=0)


def test_spaces_and_vmap_over_tasks():
    env, params = make_random_mdp()
    space = env.observation_space(params)
    n = 6
    keys = jax.random.split(jax.random.key(4), n)
    tasks = jax.vmap(env.sample_params)(keys)
    obs, states = jax.vmap(env.reset)(keys, tasks)
    assert obs.shape == (n,) and space.shape == () and obs.dtype == space.dtype == jnp.int32
    actions = jnp.arange(n, dtype=jnp.int32) % env.num_actions
    batched = jax.vmap(env.step, in_axes=(0, 0, 0, 0))(keys, states, actions, tasks)
    for i in range(n):
        take = lambda tree, i=i: jax.tree.map(lambda x: x[i], tree)
        single = env.step(keys[i], take(states), actions[i], take(tasks))
        jax.tree.map(np.testing.assert_array_equal, take(batched), single)
        assert single[0].shape == () and bool(space.contains(single[0]))
        assert single[2] == tasks.R[i, states.state[i], actions[i]]
