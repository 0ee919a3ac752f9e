"""Oracle teacher on the toy grid: the unlocked-cube map, the mirror, and that it beats Random."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs import curriculum_toy as toy
from jaxrl_icl.config import ConfigError
from jaxrl_icl.curriculum import OracleConfig, RandomConfig, teacher_for


def _brute_unlocked(comp: np.ndarray) -> np.ndarray:
    """The unlocking rule of REFERENCES.md, cube by cube."""
    out = np.zeros(comp.shape, bool)
    for cube in itertools.product(*[range(n) for n in comp.shape]):
        ok = all(i == 0 for i in cube)
        for choice in itertools.product(*[(i, max(i - 1, 0)) for i in cube]):
            ok |= choice != cube and comp[choice] >= 75
        out[cube] = ok
    return out


@pytest.mark.parametrize("shape", [(6, 6), (4, 4, 4), (7,)])
def test_unlocked_matches_brute_force(shape):
    rng = np.random.default_rng(len(shape))
    comp = rng.choice([0, 40, 74, 75, 76, 100], size=shape).astype(np.int32)
    got = np.asarray(toy.unlocked(toy.ToyState(jnp.asarray(comp))))
    np.testing.assert_array_equal(got, _brute_unlocked(comp))
    assert got.any() and not got.all()


def _toy_run(config, num_episodes: int, nb_cubes: int):
    teacher = teacher_for(config)

    def run(key):
        def step(carry, k):
            state, grid = carry
            task, state = teacher.sample(k, state)
            frontier = toy.unlocked(grid) & ~toy.mastered(grid)
            cube = tuple(toy.cube_index(task, nb_cubes))
            useful = frontier[cube] | ~jnp.any(frontier)
            grid, reward = toy.episode(grid, task)
            return (teacher.update(state, task, reward), grid), useful

        init_key, run_key = jax.random.split(key)
        carry = (teacher.init(init_key, config), toy.init(2, nb_cubes))
        return jax.lax.scan(step, carry, jax.random.split(run_key, num_episodes))

    return jax.jit(jax.vmap(run))(jax.random.split(jax.random.key(0), 2))


def test_oracle_mirrors_the_grid_trains_only_the_frontier_and_beats_random():
    n = 1500
    (state, grid), useful = _toy_run(OracleConfig(nb_dims=2, nb_cubes=10), n, 10)
    np.testing.assert_array_equal(state.grid.competence, grid.competence)
    assert np.all(useful)
    # every episode raised a counter by one, so the counters add up to the episodes played
    np.testing.assert_array_equal(np.asarray(grid.competence).sum(axis=(1, 2)), n)
    oracle_score = np.asarray(jax.vmap(toy.score)(grid))
    (_, random_grid), _ = _toy_run(RandomConfig(), n, 10)
    random_score = np.asarray(jax.vmap(toy.score)(random_grid))
    # n / 76 cubes at most can pass 75; the oracle leaves fewer than 76 * frontier size unfinished
    assert np.all(oracle_score <= 100 * (n // 76) / 100)
    assert np.all(oracle_score >= 10) and oracle_score.min() > random_score.max()


def test_bad_oracle_config_names_the_field():
    with pytest.raises(ConfigError, match="^nb_cubes"):
        OracleConfig(nb_cubes=0)
