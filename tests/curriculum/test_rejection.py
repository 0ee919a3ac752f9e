"""Teachers skip non-finite reports: the oracle is the same teacher fed only the finite ones."""

import functools
import operator

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_icl.curriculum import (
    ALPGMMConfig,
    CovarGMMConfig,
    OracleConfig,
    RandomConfig,
    RIACConfig,
    teacher_for,
)

CONFIGS = {
    "random": RandomConfig(low=(-1.0, 2.0), high=(0.0, 5.0)),
    "alp-gmm": ALPGMMConfig(low=(-1.0, 2.0), high=(0.0, 5.0), fit_rate=12, max_k=3, history_capacity=64),
    "covar-gmm": CovarGMMConfig(low=(-1.0, 2.0), high=(0.0, 5.0), fit_rate=12, max_k=3),
    "riac": RIACConfig(low=(-1.0, 2.0), high=(0.0, 5.0), max_region_size=10, min_child_pairs=2),
    "oracle": OracleConfig(nb_dims=2, nb_cubes=4),
}
NUM_REPORTS = 60


def _reports(config, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Finite tasks uniform in the box and a smooth competence in [0, 1] on each."""
    rng = np.random.default_rng(seed)
    low, high = np.asarray(config.low), np.asarray(config.high)
    tasks = (low + rng.random((NUM_REPORTS, len(low))) * (high - low)).astype(np.float32)
    u = (tasks - low) / (high - low)
    competence = np.clip(0.5 + 0.5 * np.sin(3.0 * u[:, 0]) * u[:, 1] + 0.01 * np.arange(NUM_REPORTS) / NUM_REPORTS,
                         0.0, 1.0).astype(np.float32)
    return tasks, competence


def _spoil(tasks, competence, where: list[int]):
    """Copies with a NaN, +inf, -inf competence and a NaN task coordinate at ``where`` (in turn)."""
    tasks, competence = tasks.copy(), competence.copy()
    for i, at in enumerate(where):
        if i % 4 == 3:
            tasks[at, i % tasks.shape[1]] = np.nan
        else:
            competence[at] = (np.nan, np.inf, -np.inf)[i % 4]
    return tasks, competence


@functools.cache
def _jitted(config):
    """Jitted ``(update, sample 64 tasks)`` of ``config``'s teacher, compiled once per config."""
    teacher = teacher_for(config)
    keys = jax.random.split(jax.random.key(9), 64)
    sample = jax.jit(lambda state: jax.vmap(teacher.sample, in_axes=(0, None))(keys, state)[0])
    return jax.jit(teacher.update), sample


def _feed(config, tasks, competence):
    """``(state, 64 samples)`` after reporting every ``(task, competence)`` in turn."""
    update, sample = _jitted(config)
    state = teacher_for(config).init(jax.random.key(3), config)
    for task, c in zip(tasks, competence):
        state = update(state, task, c)
    return state, sample(state)


def _feed_batch(config):
    """``(tasks [N, d], competence [N]) -> (state, samples)`` as one scan, to vmap over seeds."""
    teacher = teacher_for(config)
    keys = jax.random.split(jax.random.key(9), 64)

    def run(tasks, competence):
        state = teacher.init(jax.random.key(3), config)
        state, _ = jax.lax.scan(lambda s, tc: (teacher.update(s, *tc), None), state, (tasks, competence))
        return state, jax.vmap(teacher.sample, in_axes=(0, None))(keys, state)[0]

    return run


def _assert_same_state(got, want):
    got, want = got.replace(num_rejected=want.num_rejected), want
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.slow) if n in ("covar-gmm", "riac") else n for n in sorted(CONFIGS)])
def test_non_finite_reports_are_skipped_and_counted(name):
    config = CONFIGS[name]
    tasks, competence = _reports(config, 0)
    bad = [5, 17, 30, 41]  # before and after the GMM teachers' first refits (fit_rate 12)
    spoilt = _spoil(tasks, competence, bad)
    keep = np.setdiff1d(np.arange(NUM_REPORTS), bad)
    state, samples = _feed(config, *spoilt)
    want_state, want_samples = _feed(config, tasks[keep], competence[keep])
    samples = np.asarray(samples)
    assert np.all(np.isfinite(samples))
    assert np.all((samples >= np.array(config.low)) & (samples <= np.array(config.high)))
    np.testing.assert_allclose(samples, np.asarray(want_samples), rtol=1e-5, atol=1e-6)
    assert int(state.num_rejected) == len(bad) and int(want_state.num_rejected) == 0
    assert int(state.count) == len(keep)
    _assert_same_state(state, want_state)


@pytest.mark.parametrize("name", [pytest.param("alp-gmm", marks=pytest.mark.slow),
                                  pytest.param("covar-gmm", marks=pytest.mark.slow), "riac"])
def test_vmapped_seeds_with_rejections_at_different_times_match_each_seed_alone(name):
    # each seed skips different reports, so the GMM teachers' refits fall on different calls
    config = CONFIGS[name]
    where = ([2, 20, 33, 50], [11, 12, 13, 14], [40, 45, 55, 59])
    data = [_spoil(*_reports(config, s), w) for s, w in enumerate(where)]
    tasks, competence = (np.stack(x) for x in zip(*data))
    state, samples = jax.jit(jax.vmap(_feed_batch(config)))(tasks, competence)
    np.testing.assert_array_equal(state.num_rejected, [4, 4, 4])
    for s, w in enumerate(where):
        keep = np.setdiff1d(np.arange(NUM_REPORTS), w)
        clean_tasks, clean_competence = _reports(config, s)
        want_state, want_samples = _feed(config, clean_tasks[keep], clean_competence[keep])
        np.testing.assert_allclose(samples[s], want_samples, rtol=1e-5, atol=1e-5)
        _assert_same_state(jax.tree.map(operator.itemgetter(s), state), want_state)
