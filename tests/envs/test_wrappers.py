"""EpisodeStats, ObsNorm and Flatten against independent oracles (Python loops, numpy)."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs.wrappers import EpisodeStats, Flatten, ObsNorm

STEPS = 80
# One instance for the whole module, so that its jitted rollouts compile once.
CARTPOLE, _CARTPOLE_PARAMS = envs.make("gymnax:CartPole-v1")


def _cartpole(max_steps):
    return CARTPOLE, _CARTPOLE_PARAMS.replace(max_steps_in_episode=max_steps)


@partial(jax.jit, static_argnames=("env",))
def _rollout(env, key, params):
    """(reset obs, per-step outputs incl. final state leaves) of a random-action rollout."""
    reset_key, key = jax.random.split(key)
    obs0, state0 = env.reset(reset_key, params)

    def body(state, step_key):
        act_key, key = jax.random.split(step_key)
        action = env.action_space(params).sample(act_key)
        obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)
        return state, {
            "obs": obs,
            "state": state,
            "reward": reward,
            "done": terminated | truncated,
            "info": info,
        }

    _, outs = jax.lax.scan(body, state0, jax.random.split(key, STEPS))
    return obs0, state0, outs


def _episode_oracle(rewards, dones):
    """Python loop: (last finished return, its length, finished count) after every step."""
    ret, length, last_ret, last_len, count = 0.0, 0, 0.0, 0, 0
    out = []
    for r, d in zip(np.asarray(rewards, np.float64), np.asarray(dones)):
        ret += r
        length += 1
        if d:
            last_ret, last_len, count = ret, length, count + 1
            ret, length = 0.0, 0
        out.append((last_ret, last_len, count))
    return [np.array(col) for col in zip(*out)]


def _check_episode_stats(outs, raw_outs):
    info = outs["info"]
    # The wrapper is transparent: same transitions as the unwrapped env.
    for k in ("obs", "reward", "done"):
        np.testing.assert_array_equal(outs[k], raw_outs[k])
    dones = np.asarray(outs["done"])
    assert dones.sum() >= 2, "need several finished episodes to test anything"
    returns, lengths, counts = _episode_oracle(outs["reward"], dones)
    np.testing.assert_allclose(info["returned_episode_returns"], returns, rtol=1e-6)
    np.testing.assert_array_equal(info["returned_episode_lengths"], lengths)
    np.testing.assert_array_equal(info["done_episodes"], counts)
    np.testing.assert_array_equal(info["returned_episode"], dones)


def test_episode_stats_matches_python_oracle_on_cartpole():
    env, params = _cartpole(15)
    key = jax.random.key(3)
    _, _, outs = _rollout(EpisodeStats(env), key, params)
    _, _, raw = _rollout(env, key, params)
    _check_episode_stats(outs, raw)
    # Both ways of ending occur: natural terminations (shorter) and the 15-step limit.
    lengths = np.asarray(outs["info"]["returned_episode_lengths"])[np.asarray(outs["done"])]
    assert (lengths == 15).any() and (lengths < 15).any()


def test_episode_stats_under_vmap_over_keys_and_tasks():
    env, params = envs.make("bandit-bernoulli", max_steps_in_episode=7)
    keys = jax.random.split(jax.random.key(0), 4)
    tasks = jax.vmap(env.sample_params)(jax.random.split(jax.random.key(1), 4))
    tasks = tasks.replace(max_steps_in_episode=jnp.array([7, 5, 9, 3]))
    wrapped = EpisodeStats(env)
    _, _, outs = jax.vmap(lambda k, p: _rollout(wrapped, k, p))(keys, tasks)
    _, _, raw = jax.vmap(lambda k, p: _rollout(env, k, p))(keys, tasks)
    for i in range(4):
        _check_episode_stats(jax.tree.map(lambda x, i=i: x[i], outs), jax.tree.map(lambda x, i=i: x[i], raw))
    # Rewards are random 0/1, so returns differ between episodes: the oracle comparison is real.
    assert len(np.unique(np.asarray(outs["info"]["returned_episode_returns"]))) > 3


def _raw_stream(env, key, params):
    """Observations the agent sees (reset + every step), and the pre-reset final observations."""
    obs0, _, raw = _rollout(env, key, params)
    stream = np.concatenate([np.asarray(obs0)[None], np.asarray(raw["obs"])]).astype(np.float64)
    return stream, np.asarray(raw["info"]["final_observation"], np.float64)


@pytest.mark.parametrize("clip", [10.0, 0.5])
def test_obs_norm_matches_numpy_running_statistics(clip):
    env, params = _cartpole(20)
    key = jax.random.key(5)
    eps = 1e-8
    wrapped = ObsNorm(env, clip=clip, eps=eps)
    obs0, state0, outs = _rollout(wrapped, key, params)
    stream, finals = _raw_stream(env, key, params)
    counts = np.arange(1, STEPS + 2)
    means = np.cumsum(stream, axis=0) / counts[:, None]
    varis = np.array([stream[: n].var(axis=0) for n in counts])
    state_mean = np.concatenate([np.asarray(state0.moments.mean)[None], outs["state"].moments.mean])
    state_var = np.concatenate([np.asarray(state0.moments.var)[None], outs["state"].moments.var])
    np.testing.assert_allclose(state_mean, means, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state_var, varis, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(outs["state"].moments.count, counts[1:])

    normed = np.clip((stream - means) / np.sqrt(varis + eps), -clip, clip)
    got = np.concatenate([np.asarray(obs0)[None], outs["obs"]])
    assert got.dtype == np.float32
    # From the third observation on, the variance is well away from eps.
    np.testing.assert_allclose(got[2:], normed[2:], rtol=1e-3, atol=1e-3)
    assert np.all(np.abs(got) <= clip)
    final_normed = np.clip((finals - means[1:]) / np.sqrt(varis[1:] + eps), -clip, clip)
    got_final = outs["info"]["final_observation"]
    np.testing.assert_allclose(got_final[2:], final_normed[2:], rtol=1e-3, atol=1e-3)
    if clip == 0.5:
        assert np.any(np.abs(got) == clip), "clip value never reached; the clip is untested"
    space = wrapped.observation_space(params)
    assert space.shape == (4,) and space.low == -clip and space.high == clip


def test_obs_norm_statistics_are_per_vmapped_env():
    env, params = _cartpole(20)
    keys = jax.random.split(jax.random.key(7), 3)
    _, _, outs = jax.vmap(lambda k: _rollout(ObsNorm(env), k, params))(keys)
    streams = [_raw_stream(env, k, params)[0] for k in keys]
    for i, stream in enumerate(streams):
        np.testing.assert_allclose(outs["state"].moments.mean[i, -1], stream.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(outs["state"].moments.var[i, -1], stream.var(0), rtol=1e-4, atol=1e-6)
    pooled = np.concatenate(streams).mean(0)
    assert not np.allclose(outs["state"].moments.mean[0, -1], pooled, rtol=1e-3, atol=1e-4)


def test_flatten_shapes_and_values():
    env, params = envs.make("gymnax:Catch-bsuite")
    wrapped = Flatten(env)
    space = wrapped.observation_space(params)
    assert space.shape == (50,) and space.dtype == jnp.float32
    assert np.asarray(space.low).shape == (50,) and np.asarray(space.high).shape == (50,)
    key = jax.random.key(2)
    obs0, _, outs = _rollout(wrapped, key, params)
    raw0, _, raw = _rollout(env, key, params)
    assert obs0.shape == (50,) and obs0.dtype == jnp.float32
    assert outs["obs"].shape == (STEPS, 50)
    assert outs["info"]["final_observation"].shape == (STEPS, 50)
    np.testing.assert_array_equal(obs0, np.asarray(raw0, np.float32).reshape(50))
    want = np.asarray(raw["obs"], np.float32).reshape(STEPS, 50)
    np.testing.assert_array_equal(outs["obs"], want)
    assert bool(space.contains(outs["obs"]))


def test_wrappers_compose_and_vmap():
    env, params = envs.make("gymnax:Catch-bsuite")
    wrapped = Flatten(ObsNorm(EpisodeStats(env), clip=5.0))
    keys = jax.random.split(jax.random.key(0), 2)
    obs0, _, outs = jax.vmap(lambda k: _rollout(wrapped, k, params))(keys)
    assert obs0.shape == (2, 50) and outs["obs"].shape == (2, STEPS, 50)
    assert outs["info"]["returned_episode"].shape == (2, STEPS)
    assert np.all(np.abs(outs["obs"]) <= 5.0)
    # Catch episodes last exactly `rows - 1` = 9 steps and return +1 or -1.
    done = np.asarray(outs["info"]["returned_episode"])
    assert np.all(np.asarray(outs["info"]["returned_episode_lengths"])[done] == 9)
    assert set(np.asarray(outs["info"]["returned_episode_returns"])[done]) <= {-1.0, 1.0}


def test_wrappers_forward_stateless_attributes_only():
    env, params = envs.make("darkroom-9x9")
    wrapped = EpisodeStats(env)
    assert wrapped.num_actions == env.num_actions
    jax.tree.map(np.testing.assert_array_equal, wrapped.default_params, params)
    key = jax.random.key(0)
    np.testing.assert_array_equal(wrapped.sample_params(key).goal, env.sample_params(key).goal)
    with pytest.raises(AttributeError, match="step_env"):
        _ = wrapped.step_env


def test_wrappers_reject_bad_input():
    env, _ = envs.make("tabular-random")  # Discrete observations
    with pytest.raises(ValueError, match="Box"):
        ObsNorm(env)
    with pytest.raises(ValueError, match="Box"):
        Flatten(env)
    with pytest.raises(ValueError, match="clip"):
        ObsNorm(CARTPOLE, clip=0.0)
    with pytest.raises(ValueError, match="eps"):
        ObsNorm(CARTPOLE, eps=-1.0)
