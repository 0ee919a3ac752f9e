"""Bandits: Monte Carlo reward moments against the task parameters."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs.bandits import (
    BanditEnv,
    LinearBanditEnv,
    LinearBanditState,
    expected_rewards,
    make_bandit,
)

N = 20_000  # Monte Carlo pulls per arm; bounds below are 5 standard errors


def pulls(env, params, state, action, n=N, seed=0):
    """Rewards of ``n`` independent steps from ``state`` with ``action``: float32[n]."""
    keys = jax.random.split(jax.random.key(seed), n)
    out = jax.vmap(env.step, (0, None, None, None))(keys, state, action, params)
    return np.asarray(out[2], dtype=np.float64)


def test_bernoulli_arm_means():
    env, params = make_bandit("bernoulli")
    params = params.replace(means=jnp.array([0.0, 0.1, 0.5, 0.83, 1.0], jnp.float32))
    _, state = env.reset(jax.random.key(0), params)
    for arm, p in enumerate(np.asarray(params.means, np.float64)):
        r = pulls(env, params, state, arm, seed=arm)
        assert set(np.unique(r)) <= {0.0, 1.0}
        assert abs(r.mean() - p) <= 5 * np.sqrt(p * (1 - p) / N)


def test_gaussian_arm_means_and_variance():
    env, params = make_bandit("gaussian")
    assert float(params.noise_std) == pytest.approx(0.3)
    params = params.replace(means=jnp.array([-1.0, 0.2, 0.4, 0.6, 2.0], jnp.float32))
    _, state = env.reset(jax.random.key(0), params)
    var = 0.3**2
    for arm, m in enumerate(np.asarray(params.means, np.float64)):
        r = pulls(env, params, state, arm, seed=arm)
        assert abs(r.mean() - m) <= 5 * np.sqrt(var / N)
        assert abs(r.var(ddof=1) - var) <= 5 * var * np.sqrt(2 / (N - 1))


def test_linear_bandit_mean_reward_matches_expected_rewards():
    env, params = envs.make("bandit-linear")
    obs, state = env.reset(jax.random.key(0), params)
    mu = np.asarray(expected_rewards(obs, params), np.float64)
    theta, x = np.asarray(params.theta, np.float64), np.asarray(obs, np.float64)
    np.testing.assert_allclose(mu, theta @ x, rtol=1e-5)
    sigma = float(params.noise_std)
    for arm in range(env.num_actions):
        r = pulls(env, params, state, arm, seed=arm)
        assert abs(r.mean() - mu[arm]) <= 5 * sigma / np.sqrt(N)
        assert abs(r.var(ddof=1) - sigma**2) <= 5 * sigma**2 * np.sqrt(2 / (N - 1))


def test_linear_bandit_reward_uses_the_context_shown_before_acting():
    env, params = envs.make("bandit-linear", noise_std=0.0)
    obs, state = env.reset(jax.random.key(0), params)

    def body(carry, key):
        obs, state = carry
        akey, skey = jax.random.split(key)
        action = jax.random.randint(akey, (), 0, env.num_actions)
        next_obs, state, reward, *_ = env.step(skey, state, action, params)
        return (next_obs, state), (obs, action, reward, next_obs)

    _, (shown, action, reward, nxt) = jax.lax.scan(
        body, (obs, state), jax.random.split(jax.random.key(1), 4000)
    )
    theta = np.asarray(params.theta, np.float64)
    shown, nxt = np.asarray(shown, np.float64), np.asarray(nxt, np.float64)
    expected = np.einsum("td,td->t", theta[np.asarray(action)], shown)
    np.testing.assert_allclose(np.asarray(reward), expected, atol=1e-5)
    # Contexts are i.i.d. N(0, I): mean 0, identity covariance (5 standard errors).
    n, dim = nxt.shape
    assert np.all(np.abs(nxt.mean(0)) <= 5 / np.sqrt(n))
    cov = np.cov(nxt, rowvar=False)
    off = ~np.eye(dim, dtype=bool)
    assert np.all(np.abs(np.diag(cov) - 1) <= 5 * np.sqrt(2 / n))
    assert np.all(np.abs(cov[off]) <= 5 / np.sqrt(n))


def test_sample_params_distributions():
    keys = jax.random.split(jax.random.key(0), 4000)
    means = np.asarray(jax.vmap(BanditEnv(num_arms=5).sample_params)(keys).means).ravel()
    assert means.min() >= 0 and means.max() < 1
    assert abs(means.mean() - 0.5) <= 5 * np.sqrt(1 / 12 / means.size)
    assert abs(means.var() - 1 / 12) <= 5 * np.sqrt(1 / 180 / means.size)  # Var of U^2 term
    env = LinearBanditEnv(num_arms=3, dim=4)
    theta = np.asarray(jax.vmap(env.sample_params)(keys).theta).ravel()
    assert abs(theta.mean()) <= 5 * np.sqrt(0.25 / theta.size)
    assert abs(theta.var() - 0.25) <= 5 * 0.25 * np.sqrt(2 / theta.size)


@pytest.mark.parametrize("name", ["bandit-bernoulli", "bandit-gaussian", "bandit-linear"])
def test_spaces_truncation_and_vmap_over_tasks(name):
    env, params = envs.make(name)
    space = env.observation_space(params)
    n = 5
    keys = jax.random.split(jax.random.key(7), n)
    tasks = jax.vmap(env.sample_params)(keys)
    obs, states = jax.vmap(env.reset)(keys, tasks)
    assert obs.shape == (n, *space.shape) and obs.dtype == space.dtype
    actions = jnp.arange(n, dtype=jnp.int32) % env.num_actions
    batched = jax.vmap(env.step, in_axes=(0, 0, 0, 0))(keys, states, actions, tasks)
    for i in range(n):
        take = lambda tree, i=i: jax.tree.map(lambda x: x[i], tree)
        single = env.step(keys[i], take(states), actions[i], take(tasks))
        jax.tree.map(np.testing.assert_array_equal, take(batched), single)
        assert single[0].shape == space.shape and single[0].dtype == space.dtype
        assert single[2].dtype == jnp.float32
    if name != "bandit-linear":
        np.testing.assert_array_equal(np.asarray(batched[0]), 0.0)  # constant observation
    # Truncation exactly at the horizon (500), never termination.
    state = jax.tree.map(lambda x: x[0], states)
    before = state.replace(time=jnp.int32(498))
    *_, term, trunc, _ = env.step(keys[0], before, 0, params)
    assert not bool(term) and not bool(trunc)
    *_, term, trunc, _ = env.step(keys[0], before.replace(time=jnp.int32(499)), 0, params)
    assert not bool(term) and bool(trunc)


def test_bad_arguments():
    with pytest.raises(ValueError, match="bernoulli, gaussian"):
        make_bandit("poisson")
    with pytest.raises(ValueError, match="num_arms"):
        BanditEnv(num_arms=0)
    with pytest.raises(ValueError, match="noise_std"):
        LinearBanditEnv(noise_std=-1.0)
    assert isinstance(envs.make("bandit-linear")[0].reset(jax.random.key(0))[1], LinearBanditState)
