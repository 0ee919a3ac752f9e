"""envs.make: names, overrides and their validation."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import envs


def test_unknown_name_lists_every_known_env():
    with pytest.raises(ValueError) as err:
        envs.make("darkroom-7x7")
    for name in ("darkroom-9x9", "darkroom-10x10", "key-to-door-9x9", "bandit-gaussian", "tabular-random",
                 "gymnax:<id>", "brax:<name>"):
        assert name in str(err.value)


def test_override_replaces_the_field():
    _, params = envs.make("darkroom-9x9", goal=jnp.array([2, 7], jnp.int32), max_steps_in_episode=30)
    assert params.goal.tolist() == [2, 7] and params.max_steps_in_episode == 30


def test_unknown_override_names_the_field_and_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown override\(s\) \['gaol'\].*goal"):
        envs.make("darkroom-9x9", gaol=jnp.array([1, 1]))


@pytest.mark.parametrize(
    "name, overrides, field",
    [
        ("darkroom-9x9", {"goal": jnp.array([9, 0], jnp.int32)}, "goal"),
        ("darkroom-10x10", {"goal": jnp.array([1.0, 2.0])}, "goal"),
        ("darkroom-9x9", {"max_steps_in_episode": 0}, "max_steps_in_episode"),
        ("key-to-door-9x9", {"door": jnp.array([0, 0], jnp.int32)}, "door"),
        ("bandit-bernoulli", {"means": jnp.array([0.1, 0.2, 1.5, 0.3, 0.4])}, "means"),
        ("bandit-gaussian", {"means": jnp.zeros(3)}, "means"),
        ("bandit-gaussian", {"noise_std": -0.1}, "noise_std"),
        ("bandit-linear", {"theta": jnp.zeros((5, 4))}, "theta"),
        ("tabular-random", {"R": jnp.zeros((10, 2))}, "R"),
    ],
)
def test_bad_override_value_names_the_field(name, overrides, field):
    with pytest.raises(ValueError, match=rf"make\('{name}'\): {field}"):
        envs.make(name, **overrides)


def test_tabular_probabilities_must_sum_to_one():
    _, params = envs.make("tabular-random")
    bad = np.asarray(params.P).copy()
    bad[3, 1] *= 0.5
    with pytest.raises(ValueError, match=r"P rows must sum to 1; P\[3, 1\]"):
        envs.make("tabular-random", P=jnp.asarray(bad))
