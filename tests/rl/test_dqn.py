"""Tests for DQN (``jaxrl_icl.rl.dqn``)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from jaxrl_icl.config import ConfigError
from jaxrl_icl.rl.dqn import DQNConfig, linear_epsilon, make_train, q_loss, td_targets

# A tiny config: 3 updates of 200 env steps (4 envs); the first gradient step is at step 208.
# Double DQN, Huber loss and a soft target update here; the learning test covers the defaults.
TINY = DQNConfig(
    num_envs=4, total_timesteps=600, steps_per_update=200, buffer_size=600, batch_size=32,
    learning_starts=201, train_frequency=8, target_update_interval=40, epsilon_anneal_steps=400,
    hidden_size=16, double_dqn=True, loss="huber", tau=0.5,
)


def _tree_equal(a, b) -> bool:
    """Bitwise equality of two pytrees of arrays (NaNs in the same places count as equal)."""
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(leaves_a) == len(leaves_b) and all(
        np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True) for x, y in zip(leaves_a, leaves_b)
    )


@pytest.fixture(scope="module")
def cartpole():
    return envs.make("gymnax:CartPole-v1")


@pytest.fixture(scope="module")
def tiny(cartpole):
    """``(trainer, jitted trainer)`` for TINY on CartPole (one compilation for the module)."""
    trainer = make_train(TINY, cartpole[0])
    return trainer, jax.jit(trainer)


# ----------------------------------------------------------------------------- components


def _targets_oracle(r, term, q_next_target, gamma, q_next_online=None):
    """Loop over the batch: r + gamma * Q_target(s', a*) unless terminated."""
    out = np.empty(len(r))
    for i in range(len(r)):
        if q_next_online is None:
            a_star = max(range(q_next_target.shape[1]), key=lambda a: q_next_target[i, a])
        else:
            a_star = max(range(q_next_online.shape[1]), key=lambda a: q_next_online[i, a])
        out[i] = r[i] if term[i] else r[i] + gamma * q_next_target[i, a_star]
    return out


@pytest.mark.parametrize("double", [False, True])
def test_td_targets_match_oracle(double):
    rng = np.random.default_rng(0)
    B, A, gamma = 64, 4, 0.9
    r = rng.normal(size=B).astype(np.float32)
    term = rng.random(B) < 0.3
    q_t = rng.normal(size=(B, A)).astype(np.float32)
    q_o = rng.normal(size=(B, A)).astype(np.float32) if double else None
    got = jax.jit(td_targets, static_argnums=3)(r, term, q_t, gamma, q_o)
    np.testing.assert_allclose(got, _targets_oracle(r, term, q_t, gamma, q_o), rtol=1e-6, atol=1e-6)


def test_double_dqn_differs_where_the_argmaxes_differ():
    r, term = np.zeros(2, np.float32), np.zeros(2, bool)
    q_t = np.array([[1.0, 5.0], [3.0, 2.0]], np.float32)
    q_o = np.array([[2.0, 0.0], [0.0, 1.0]], np.float32)  # online prefers a=0, then a=1
    np.testing.assert_allclose(td_targets(r, term, q_t, 1.0), [5.0, 3.0])
    np.testing.assert_allclose(td_targets(r, term, q_t, 1.0, q_o), [1.0, 2.0])


def test_losses_match_closed_form():
    err = np.array([-3.0, -0.5, 0.0, 0.25, 2.0], np.float32)
    q = err + 1.0
    targets = np.ones_like(err)
    huber = np.where(np.abs(err) <= 1, 0.5 * err**2, np.abs(err) - 0.5)
    np.testing.assert_allclose(q_loss(q, targets, "mse"), 0.5 * err**2, rtol=1e-6)
    np.testing.assert_allclose(q_loss(q, targets, "huber"), huber, rtol=1e-6)


def test_linear_epsilon():
    steps = np.array([0, 50, 100, 1000])
    got = linear_epsilon(steps, 1.0, 0.1, 100)
    np.testing.assert_allclose(got, [1.0, 0.55, 0.1, 0.1], rtol=1e-6)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "field, overrides",
    [
        ("lr", {"lr": 0.0}),
        ("buffer_size", {"buffer_size": 64, "batch_size": 128}),
        ("gamma", {"gamma": 1.5}),
        ("tau", {"tau": 0.0}),
        ("epsilon_finish", {"epsilon_finish": -0.1}),
        ("learning_starts", {"learning_starts": -1}),
        ("train_frequency", {"num_envs": 4, "train_frequency": 10}),
        ("steps_per_update", {"steps_per_update": 1005}),
        ("target_update_interval", {"target_update_interval": 505}),
        ("total_timesteps", {"total_timesteps": 500}),
        ("loss", {"loss": "l1"}),
        ("num_envs", {"num_envs": 2.0}),
    ],
)
def test_bad_config_names_the_field(field, overrides):
    with pytest.raises(ConfigError) as info:
        DQNConfig(**overrides)
    assert info.value.field_name == field


def test_continuous_action_env_is_refused_before_compute():
    env, _ = envs.make("gymnax:Pendulum-v1")
    with pytest.raises(ConfigError, match="Pendulum") as info:
        make_train(DQNConfig(), env)
    assert info.value.field_name == "action_space"


# ----------------------------------------------------------------------------- determinism, vmap


@pytest.mark.slow
def test_same_key_is_bitwise_reproducible_and_keys_matter(cartpole, tiny):
    _, params = cartpole
    _, train = tiny
    a = train(jax.random.PRNGKey(0), params)
    b = train(jax.random.PRNGKey(0), params)
    c = train(jax.random.PRNGKey(1), params)
    assert _tree_equal(a, b)
    assert not _tree_equal(a[0].params, c[0].params)
    state, metrics = a
    assert set(metrics) == {"episode_return", "loss", "epsilon", "q_mean"}
    assert all(m.shape == (TINY.num_updates,) and m.dtype == jnp.float32 for m in metrics.values())
    assert int(state.timestep) == TINY.num_updates * TINY.steps_per_update
    # no gradient step in the first update; gradient steps in the others
    loss = np.asarray(metrics["loss"])
    assert np.isnan(loss[0]) and np.all(np.isfinite(loss[1:]))
    # epsilon of each update's last step: at t = 196, 396, 596 env steps
    expected = [1.0 - 0.95 * min(t / 400, 1.0) for t in (196, 396, 596)]
    np.testing.assert_allclose(metrics["epsilon"], expected, rtol=1e-5)


@pytest.mark.slow
def test_vmap_over_seeds_equals_each_seed_alone(cartpole, tiny):
    _, params = cartpole
    trainer, single = tiny
    keys = jax.random.split(jax.random.PRNGKey(7), 2)
    batched = jax.jit(jax.vmap(trainer, in_axes=(0, None)))(keys, params)
    # Integer leaves (env state, counters) are bitwise equal; floats agree to rounding only,
    # since XLA on CPU may sum the batched matrix products of the orthogonal init and the
    # gradients in a different order under vmap.
    for i in range(2):
        alone = single(keys[i], params)
        for x, y in zip(jax.tree.leaves(jax.tree.map(lambda x, i=i: x[i], batched)), jax.tree.leaves(alone)):
            if np.issubdtype(x.dtype, np.floating):
                np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
            else:
                np.testing.assert_array_equal(x, y)


def test_buffer_holds_true_transitions_and_terminated_not_truncated(tiny):
    """CartPole with 12-step episodes: truncations are stored as non-terminal transitions.

    Oracle: CartPole terminates exactly when |x| > 2.4 or |theta| > 12 degrees at the next
    observation; the stored next observation must be the pre-reset one.
    """
    _, params = envs.make("gymnax:CartPole-v1", max_steps_in_episode=12)
    state, _ = tiny[1](jax.random.PRNGKey(3), params)
    data = jax.tree.map(np.asarray, state.buffer.data)
    size = int(state.buffer.size)
    assert size == TINY.total_timesteps == TINY.buffer_size  # every transition, no wrap-around
    next_obs, obs, term = data.next_obs[:size], data.obs[:size], data.terminated[:size]
    physics_term = (np.abs(next_obs[:, 0]) > 2.4) | (np.abs(next_obs[:, 2]) > 12 * 2 * math.pi / 360)
    np.testing.assert_array_equal(term, physics_term)
    assert term.any()
    # entry i + num_envs is the same env's next step; where it does not continue from
    # next_obs an episode ended there, by termination or by truncation
    ended = np.any(obs[TINY.num_envs:] != next_obs[:-TINY.num_envs], axis=1)
    truncated = ended & ~term[:-TINY.num_envs]
    assert truncated.any()
    np.testing.assert_array_equal(ended & term[:-TINY.num_envs], term[:-TINY.num_envs])


@pytest.mark.parametrize("name", [pytest.param("tabular-random", marks=pytest.mark.slow), "darkroom-9x9"])
def test_runs_on_discrete_and_integer_observations(name):
    """One-hot (Discrete) and integer Box observations: learning starts, values stay finite."""
    env, params = envs.make(name)
    state, metrics = jax.jit(make_train(TINY, env))(jax.random.PRNGKey(0), params)
    assert np.all(np.isfinite(np.asarray(metrics["loss"])[1:]))
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(state.params))
    assert state.buffer.data.obs.dtype == env.observation_space(params).dtype


# ----------------------------------------------------------------------------- learning


def _random_policy_mean_return(env, params, episodes: int = 256) -> float:
    def episode(key):
        reset_key, key = jax.random.split(key)
        _, state = env.reset(reset_key, params)

        def body(carry):
            key, state, _, total = carry
            key, a_key, s_key = jax.random.split(key, 3)
            action = env.action_space(params).sample(a_key)
            _, state, reward, term, trunc, _ = env.step(s_key, state, action, params)
            return key, state, term | trunc, total + reward

        return jax.lax.while_loop(lambda c: ~c[2], body, (key, state, jnp.bool_(False), 0.0))[3]

    return float(jnp.mean(jax.jit(jax.vmap(episode))(jax.random.split(jax.random.PRNGKey(0), episodes))))


@pytest.mark.slow
def test_short_cartpole_run_learns(cartpole):
    env, params = cartpole
    random_return = _random_policy_mean_return(env, params)
    assert 15 < random_return < 30  # CartPole's random policy lasts ~22 steps
    config = DQNConfig(
        total_timesteps=50_000, learning_starts=1_000, epsilon_anneal_steps=10_000, train_frequency=10,
    )
    _, metrics = jax.jit(make_train(config, env))(jax.random.PRNGKey(0), params)
    returns = np.asarray(metrics["episode_return"])
    assert np.nanmean(returns[:1]) < 2 * random_return
    assert np.nanmean(returns[-10:]) > 4 * random_return, (returns[-10:], random_return)


@pytest.mark.slow
def test_purejaxrl_defaults_reach_400_on_cartpole(cartpole):
    """The default config, 8 seeds, 5e5 steps: at least 6 of 8 seeds average >= 400.

    "Final" is each seed's mean over the episodes finished in its last 10 updates (10k steps).
    """
    env, params = cartpole
    trainer = make_train(DQNConfig(), env)
    keys = jax.random.split(jax.random.PRNGKey(2024), 8)
    _, metrics = jax.jit(jax.vmap(trainer, in_axes=(0, None)))(keys, params)
    final = np.nanmean(np.asarray(metrics["episode_return"])[:, -10:], axis=1)
    assert np.sum(final >= 400) >= 6, final
