"""The toy competence grid against a brute-force Python implementation of the same rules."""

import itertools

import jax
import numpy as np
import pytest

from envs import curriculum_toy as toy


class BruteToy:
    """Direct transcription of the rules in REFERENCES.md, one Python loop per neighbour."""

    def __init__(self, nb_dims: int, nb_cubes: int):
        self.nb_cubes = nb_cubes
        self.comp = np.zeros((nb_cubes,) * nb_dims, int)

    def episode(self, task: np.ndarray) -> float:
        cube = tuple(min(int(v * self.nb_cubes), self.nb_cubes - 1) for v in task)
        unlocked = all(i == 0 for i in cube)
        for choice in itertools.product(*[(i, max(i - 1, 0)) for i in cube]):
            if choice != cube and self.comp[choice] >= 75:
                unlocked = True
        if unlocked:
            self.comp[cube] = min(self.comp[cube] + 1, 100)
        return self.comp[cube] / 100

    def score(self) -> float:
        return 100.0 * np.mean(self.comp > 75)


@pytest.mark.parametrize("nb_dims,nb_cubes", [(2, 10), (3, 4), (1, 5)])
def test_matches_brute_force(nb_dims, nb_cubes):
    rng = np.random.default_rng(nb_dims)
    # tasks biased towards low cubes so that unlocking actually happens
    tasks = (rng.random((4000, nb_dims)) ** 3).astype(np.float32)
    tasks[::97] = 1.0  # the upper border belongs to the last cube

    def run(state, task):
        state, reward = toy.episode(state, task)
        return state, (reward, toy.score(state))

    state, (rewards, scores) = jax.jit(lambda s, t: jax.lax.scan(run, s, t))(toy.init(nb_dims, nb_cubes), tasks)
    brute = BruteToy(nb_dims, nb_cubes)
    expected = [(brute.episode(t), brute.score()) for t in tasks]
    np.testing.assert_allclose(rewards, [e[0] for e in expected], atol=1e-6)
    np.testing.assert_allclose(scores, [e[1] for e in expected], atol=1e-4)
    np.testing.assert_array_equal(state.competence, brute.comp)
    assert scores[-1] > 0  # the sequence did master cubes, so unlocking was exercised


def test_locked_cube_never_learns_and_origin_caps_at_100():
    state = toy.init(2, 10)
    episode = jax.jit(toy.episode)  # one compiled program for all 121 episodes
    for _ in range(120):
        state, r_origin = episode(state, np.array([0.05, 0.05], np.float32))
    state, r_far = episode(state, np.array([0.95, 0.95], np.float32))
    assert float(r_origin) == 1.0 and float(r_far) == 0.0
    assert float(jax.jit(toy.score)(state)) == pytest.approx(1.0)


def test_bad_sizes_name_the_argument():
    with pytest.raises(ValueError, match="nb_cubes"):
        toy.init(2, 0)
    with pytest.raises(ValueError, match="nb_dims"):
        toy.init(0, 10)
