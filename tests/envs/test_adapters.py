"""gymnax and Brax adapters: equality with the raw libraries, errors, termination vs truncation."""

from __future__ import annotations

from functools import partial

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs.brax_adapter import BraxAdapter, make_brax
from envs.gymnax_adapter import make_gymnax


@partial(jax.jit, static_argnames=("env", "steps"))
def _rollout(env, key, params, steps=60):
    """Everything ``reset``/``step`` return over a random-action rollout."""
    reset_key, key = jax.random.split(key)
    obs0, state0 = env.reset(reset_key, params)

    def body(state, step_key):
        act_key, key = jax.random.split(step_key)
        action = env.action_space(params).sample(act_key)
        out = env.step(key, state, action, params)
        return out[1], out

    _, outs = jax.lax.scan(body, state0, jax.random.split(key, steps))
    return obs0, state0, outs


# ----------------------------------------------------------------------------- gymnax


@pytest.mark.parametrize("env_id", ["CartPole-v1", "DeepSea-bsuite", "Pendulum-v1"])
def test_gymnax_adapter_transitions_bitwise_equal_raw_gymnax(env_id):
    adapted, params = make_gymnax(env_id)
    raw, raw_params = gymnax.make(env_id)
    jax.tree.map(np.testing.assert_array_equal, params, raw_params)
    key = jax.random.key(11)
    got, want = _rollout(adapted, key, params), _rollout(raw, key, raw_params)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    jax.tree.map(np.testing.assert_array_equal, got, want)
    assert adapted.observation_space(params).shape == raw.observation_space(params).shape
    assert adapted.num_actions == raw.num_actions and adapted.name == raw.name


def test_gymnax_sample_params_is_a_batch_of_defaults():
    env, params = envs.make("gymnax:CartPole-v1", max_steps_in_episode=50)
    batch = jax.vmap(env.sample_params)(jax.random.split(jax.random.key(0), 3))
    default = env.default_params
    for field in ("gravity", "length", "max_steps_in_episode"):
        np.testing.assert_array_equal(getattr(batch, field), jnp.full(3, getattr(default, field)))
    assert params.max_steps_in_episode == 50
    assert hash(env) == hash(env)  # static-argument ready


def test_unknown_gymnax_id_lists_known_ids():
    with pytest.raises(ValueError, match="CartPole-v1") as err:
        make_gymnax("CartPole-v9")
    assert "'CartPole-v9'" in str(err.value) and "Breakout-MinAtar" in str(err.value)
    with pytest.raises(ValueError, match="CartPole-v1"):
        envs.make("gymnax:NoSuchEnv")


# ----------------------------------------------------------------------------- Brax


def test_unknown_brax_name_or_backend_lists_known():
    with pytest.raises(ValueError, match="hopper") as err:
        make_brax("hoppr")
    assert "'hoppr'" in str(err.value) and "inverted_pendulum" in str(err.value)
    with pytest.raises(ValueError, match="hopper"):
        envs.make("brax:hoppr")
    with pytest.raises(ValueError, match="spring"):
        make_brax("hopper", backend="warp-drive")


@pytest.mark.slow
def test_brax_override_and_truncation_without_termination():
    env, params = envs.make("brax:inverted_pendulum", max_steps_in_episode=5)
    assert params.max_steps_in_episode == 5
    with pytest.raises(ValueError, match="max_steps"):
        envs.make("brax:inverted_pendulum", max_step_in_episode=5)
    _, state = jax.jit(env.reset)(jax.random.key(0), params)
    step = jax.jit(env.step)  # one compiled step instead of each of its ops
    # Zero force keeps the nearly upright pole within 0.2 rad for these few steps.
    for t in range(1, 13):
        obs, state, reward, terminated, truncated, info = step(jax.random.key(t), state, jnp.zeros(1), params)
        at_limit = t % 5 == 0
        assert not bool(terminated), t
        assert bool(truncated) == at_limit, t
        assert int(state.time) == t % 5, t
        assert float(reward) == 1.0
        if at_limit:  # auto-reset: fresh state near the origin, final obs is the pre-reset one
            assert np.all(np.abs(np.asarray(obs)) <= 0.01)
            assert not np.array_equal(obs, info["final_observation"])


@pytest.mark.slow
def test_brax_termination_is_not_truncation():
    """Full force topples the pole: terminated (|angle| > 0.2, brax's rule) but not truncated."""
    env, params = envs.make("brax:inverted_pendulum")
    _, state = jax.jit(env.reset)(jax.random.key(0), params)
    step = jax.jit(env.step)
    for t in range(1, 200):
        obs, state, _, terminated, truncated, info = step(jax.random.key(t), state, jnp.ones(1), params)
        assert not bool(truncated)
        angle = float(info["final_observation"][1])
        assert bool(terminated) == (abs(angle) > 0.2), (t, angle)
        if terminated:
            assert int(state.time) == 0
            break
    else:
        pytest.fail("the pendulum never fell under full force")


@pytest.mark.slow
def test_brax_adapter_matches_raw_brax():
    env, params = make_brax("inverted_pendulum")
    raw_reset, raw_step = jax.jit(env.brax_env.reset), jax.jit(env.brax_env.step)
    key = jax.random.key(4)
    obs, state = env.reset(key, params)
    raw = raw_reset(key)
    np.testing.assert_array_equal(obs, raw.obs)
    for t, a in enumerate([0.3, -0.7, 1.0]):
        action = jnp.array([a], jnp.float32)
        obs, state, reward, terminated, _, _ = env.step(jax.random.key(t), state, action, params)
        raw = raw_step(raw, action)
        np.testing.assert_allclose(obs, raw.obs, rtol=1e-6, atol=1e-7)
        assert float(reward) == float(raw.reward)
        assert bool(terminated) == bool(raw.done)
    assert obs.dtype == jnp.float32 and obs.shape == (4,)


def test_brax_spaces_equality_and_bad_action():
    env, params = make_brax("inverted_pendulum")
    assert make_brax("inverted_pendulum")[0] is env
    fresh = BraxAdapter("inverted_pendulum")
    assert fresh is not env and fresh == env and hash(fresh) == hash(env)
    assert BraxAdapter("inverted_pendulum", backend="generalized") != env
    assert env.observation_space(params).shape == (4,)
    space = env.action_space(params)
    assert space.shape == (1,) and space.low == -1.0 and space.high == 1.0
    _, state = env.reset(jax.random.key(0), params)
    with pytest.raises(ValueError, match=r"action must have shape \(1,\)"):
        env.step(jax.random.key(0), state, jnp.zeros(2), params)


_BRAX_SIZES = {  # name -> (obs_size, action_size), from the Brax environment docs
    "inverted_pendulum": (4, 1),
    "hopper": (11, 3),
    "walker2d": (17, 6),
    "halfcheetah": (17, 6),
    "ant": (27, 8),
}


@pytest.fixture
def _in_tmp_dir(tmp_path, monkeypatch):
    """MuJoCo writes MUJOCO_LOG.TXT (a deprecation warning) into the working directory when it
    loads some Brax models; keep it out of the repository."""
    monkeypatch.chdir(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(_BRAX_SIZES))
def test_brax_envs_build_reset_and_step(name, _in_tmp_dir):
    env, params = envs.make(f"brax:{name}", max_steps_in_episode=20)
    obs_size, action_size = _BRAX_SIZES[name]
    assert env.observation_space(params).shape == (obs_size,)
    assert env.action_space(params).shape == (action_size,)
    obs0, _, outs = _rollout(env, jax.random.key(0), params, steps=25)
    obs, _, reward, terminated, truncated, info = outs
    assert obs0.shape == (obs_size,) and obs.shape == (25, obs_size) and obs.dtype == jnp.float32
    assert np.all(np.isfinite(obs)) and np.all(np.isfinite(reward))
    assert terminated.dtype == jnp.bool_ and truncated.dtype == jnp.bool_
    assert bool(truncated.any()) or bool(terminated.any())


@pytest.mark.slow
def test_falling_hopper_terminates_without_truncation(_in_tmp_dir):
    """Under random actions the hopper falls; unhealthy = z <= 0.7, |angle| >= 0.2 or a state
    coordinate outside (-100, 100) (Brax hopper; obs = [z, angle, joints..., velocities])."""
    env, params = envs.make("brax:hopper")
    obs0, _, outs = _rollout(env, jax.random.key(0), params, steps=300)
    _, _, _, terminated, truncated, info = outs
    assert bool(terminated.any()), "hopper never fell"
    t = int(np.argmax(np.asarray(terminated)))
    assert not bool(truncated[t])
    final = np.asarray(info["final_observation"][t])
    assert final[0] <= 0.7 or abs(final[1]) >= 0.2 or np.any(np.abs(final[1:]) >= 100)
