"""API conformance of every environment ``envs.make`` can build.

Covers each registered name (prefix patterns excluded) plus one gymnax and one Brax env. For
each: jitted reset/step inside a scan, shapes and dtypes against the declared spaces, sampled
actions accepted, ``jax.vmap`` over keys and params equal to unbatched runs, bitwise
determinism, finite rewards, and the auto-reset contract of ``Environment.step``.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs

STEPS = 40  # rollout length
HORIZON = 12  # max_steps_in_episode used here, so every rollout crosses several auto-resets
BATCH = 3

# Brax compiles slowly on CPU (about 20 s of CPU time for the two rollouts here), so its case is
# slow; tests/envs/test_adapters.py checks the Brax adapter in the default suite.
NAMES = [n for n in envs.registered_envs() if not n.endswith(">")] + [
    "gymnax:CartPole-v1",
    pytest.param("brax:inverted_pendulum", marks=pytest.mark.slow),
]


# How an env's `step(key)` may derive the keys of its `step_env` and `reset_env` calls:
# gymnax's base class splits the key; envs.base.TimeLimitEnvironment shares it (so XLA can
# compute the common draw once).
_KEY_CONVENTIONS = {
    "gymnax_split": lambda key: tuple(jax.random.split(key)),
    "shared_key": lambda key: (key, key),
}


@partial(jax.jit, static_argnames=("env", "checks"))
def _rollout(env, key, params, checks=True):
    """Random-action rollout of STEPS steps from ``env.reset``.

    With ``checks``, besides ``step``'s outputs it records the two things ``step`` must combine,
    the pre-reset transition ``step_env`` and the fresh ``reset_env``, under each key convention
    in ``_KEY_CONVENTIONS``.
    """
    reset_key, key = jax.random.split(key)
    obs0, state0 = env.reset(reset_key, params)

    def body(carry, step_key):
        state = carry
        act_key, key = jax.random.split(step_key)
        action = env.action_space(params).sample(act_key)
        obs, new_state, reward, terminated, truncated, info = env.step(key, state, action, params)
        out = {
            "obs": obs,
            "time": new_state.time,
            "reward": reward,
            "terminated": terminated,
            "truncated": truncated,
            "final_obs": info["final_observation"],
            "obs_in_space": env.observation_space(params).contains(obs),
            "final_in_space": env.observation_space(params).contains(info["final_observation"]),
        }
        if checks:
            out |= {"info_terminated": info["terminated"], "info_truncated": info["truncated"]}
            for convention, split in _KEY_CONVENTIONS.items():
                key_step, key_reset = split(key)
                obs_st, state_st, reward_st, terminated_st, _ = env.step_env(
                    key_step, state, action, params
                )
                obs_re, state_re = env.reset_env(key_reset, params)
                out[convention] = {
                    "obs_st": obs_st,
                    "reward_st": reward_st,
                    "terminated_st": terminated_st,
                    "truncated_st": env.is_truncated(state_st, params),
                    "obs_re": obs_re,
                    "time_re": state_re.time,
                }
        return new_state, out

    _, outs = jax.lax.scan(body, state0, jax.random.split(key, STEPS))
    return obs0, state0.time, outs


@partial(jax.jit, static_argnames=("env",))
def _batched_rollout(env, keys, params):
    return jax.vmap(lambda k, p: _rollout(env, k, p, checks=False))(keys, params)


def _task_batch(env, key):
    """BATCH tasks from ``env.sample_params`` with the short test horizon."""
    batch = jax.vmap(env.sample_params)(jax.random.split(key, BATCH))
    return batch.replace(max_steps_in_episode=jnp.full((BATCH,), HORIZON, jnp.int32))


def _index(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def _assert_tree_equal(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.fixture(scope="module", params=NAMES)
def case(request):
    """(name, env, task batch, keys, unbatched rollouts of tasks 0 and 1, batched rollout)."""
    name = request.param
    env, _ = envs.make(name)
    params = _task_batch(env, jax.random.key(0))
    keys = jax.random.split(jax.random.key(1), BATCH)
    singles = [_rollout(env, keys[i], _index(params, i)) for i in range(2)]
    batched = _batched_rollout(env, keys, params)
    return name, env, params, keys, singles, batched


def test_shapes_and_dtypes_match_spaces(case):
    _, env, params, _, singles, _ = case
    space = env.observation_space(_index(params, 0))
    obs0, time0, outs = singles[0]
    assert obs0.shape == tuple(space.shape) and obs0.dtype == space.dtype
    assert int(time0) == 0
    observations = {"obs": outs["obs"], "final_obs": outs["final_obs"]}
    for convention in _KEY_CONVENTIONS:
        observations |= {f"{convention}/{k}": outs[convention][k] for k in ("obs_st", "obs_re")}
    for field, value in observations.items():
        assert value.shape == (STEPS, *space.shape), field
        assert value.dtype == space.dtype, field
    for field in ("terminated", "truncated"):
        assert outs[field].shape == (STEPS,) and outs[field].dtype == jnp.bool_, field
    assert outs["reward"].shape == (STEPS,)
    assert jnp.issubdtype(outs["reward"].dtype, jnp.floating)


def test_observations_in_space_and_rewards_finite(case):
    _, _, _, _, singles, batched = case
    for outs in (singles[0][2], batched[2]):
        assert np.all(outs["obs_in_space"]) and np.all(outs["final_in_space"])
        assert np.all(np.isfinite(outs["reward"]))
        if jnp.issubdtype(outs["obs"].dtype, jnp.floating):
            assert np.all(np.isfinite(outs["obs"])) and np.all(np.isfinite(outs["final_obs"]))


def test_auto_reset(case):
    """A step with terminated | truncated returns a fresh reset; final_observation is pre-reset."""
    _, _, _, _, singles, _ = case
    outs = singles[0][2]
    done = np.asarray(outs["terminated"] | outs["truncated"])
    assert done.any(), "rollout never ended an episode; the auto-reset path went untested"
    np.testing.assert_array_equal(outs["info_terminated"], outs["terminated"])
    np.testing.assert_array_equal(outs["info_truncated"], outs["truncated"])
    assert np.all(outs["time"][done] == 0)
    failures = {}
    for convention in _KEY_CONVENTIONS:
        ref = outs[convention]
        try:
            np.testing.assert_array_equal(outs["terminated"], ref["terminated_st"])
            np.testing.assert_array_equal(outs["truncated"], ref["truncated_st"])
            np.testing.assert_array_equal(outs["reward"], ref["reward_st"])
            np.testing.assert_array_equal(outs["final_obs"], ref["obs_st"])
            np.testing.assert_array_equal(outs["obs"][done], ref["obs_re"][done])
            np.testing.assert_array_equal(outs["obs"][~done], ref["obs_st"][~done])
            np.testing.assert_array_equal(ref["time_re"], 0)
        except AssertionError as err:
            failures[convention] = err
    assert len(failures) < len(_KEY_CONVENTIONS), (
        f"step is not step_env + auto-reset under any key convention: {failures}"
    )
    # Between resets the clock counts steps, and truncation happens exactly at the horizon.
    np.testing.assert_array_equal(outs["time"][1:][~done[1:]], outs["time"][:-1][~done[1:]] + 1)
    assert np.all(outs["time"][:-1][np.asarray(outs["truncated"])[1:]] == HORIZON - 1)


def test_vmap_over_keys_and_params_matches_unbatched(case):
    name, _, params, _, singles, batched = case
    for i, (obs0, time0, outs) in enumerate(singles):
        got = _index(batched, i)
        single = (obs0, time0, {k: outs[k] for k in got[2]})
        for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(got), strict=True):
            if name.startswith("brax:") and jnp.issubdtype(a.dtype, jnp.floating):
                # Batched and unbatched physics may round differently in the last bits.
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
            else:
                np.testing.assert_array_equal(a, b)
    assert batched[2]["obs"].shape[:2] == (BATCH, STEPS)


def test_deterministic_given_key(case):
    """A freshly built env instance and a second call give bitwise the same rollout."""
    name, _, params, keys, singles, _ = case
    env2, _ = envs.make(name)
    _assert_tree_equal(_rollout(env2, keys[0], _index(params, 0)), singles[0])


def test_sample_params_vmaps_to_a_batch(case):
    _, env, params, _, _, _ = case
    for leaf in jax.tree.leaves(params):
        assert leaf.shape[0] == BATCH
    again = _task_batch(env, jax.random.key(0))
    _assert_tree_equal(params, again)
