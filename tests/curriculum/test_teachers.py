"""Teacher interface: config errors, determinism, vmap equivalence, ALP bookkeeping, behaviour."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_icl.config import ConfigError
from jaxrl_icl.curriculum import (
    ALPGMMConfig,
    CovarGMMConfig,
    OracleConfig,
    RandomConfig,
    RIACConfig,
    alp_gmm,
    covar_gmm,
    teacher_for,
)

SMALL = {
    "random": RandomConfig(low=(-1.0, 2.0), high=(0.0, 5.0)),
    "alp-gmm": ALPGMMConfig(low=(-1.0, 2.0), high=(0.0, 5.0), fit_rate=20, max_k=3, history_capacity=64),
    "covar-gmm": CovarGMMConfig(low=(-1.0, 2.0), high=(0.0, 5.0), fit_rate=20, max_k=3),
    "riac": RIACConfig(low=(-1.0, 2.0), high=(0.0, 5.0), max_region_size=15, min_child_pairs=2),
    "oracle": OracleConfig(nb_dims=2, nb_cubes=4),
}


def _competence(task: jax.Array, low: jax.Array, high: jax.Array) -> jax.Array:
    """A fixed smooth competence over the box, in [0, 1]."""
    u = (task - low) / (high - low)
    return jnp.clip(0.5 + 0.5 * jnp.sin(3.0 * u[0]) * u[1], 0.0, 1.0)


def _rollout(config, num_steps: int):
    teacher = teacher_for(config)
    low, high = jnp.asarray(config.low), jnp.asarray(config.high)

    def run(key):
        init_key, run_key = jax.random.split(key)

        def step(state, k):
            task, state = teacher.sample(k, state)
            return teacher.update(state, task, _competence(task, low, high)), task

        return jax.lax.scan(step, teacher.init(init_key, config), jax.random.split(run_key, num_steps))[1]

    return run


@pytest.mark.parametrize("name", [
    # the guided teachers' vmap is in test_rejection.py (riac) by default, all of them in the slow suite
    pytest.param(n, marks=pytest.mark.slow) if n in ("alp-gmm", "covar-gmm", "riac") else n for n in sorted(SMALL)])
def test_deterministic_in_bounds_and_vmap_equals_per_seed(name):
    config = SMALL[name]
    run = jax.jit(_rollout(config, 70))
    keys = jax.random.split(jax.random.key(7), 3)
    batched = np.asarray(jax.jit(jax.vmap(_rollout(config, 70)))(keys))
    single = np.stack([np.asarray(run(k)) for k in keys])
    np.testing.assert_array_equal(np.asarray(run(keys[0])), single[0])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    assert np.all(batched >= np.array(config.low)) and np.all(batched <= np.array(config.high))
    assert not np.array_equal(single[0], single[1])


@pytest.mark.parametrize("cls", [RandomConfig, ALPGMMConfig, CovarGMMConfig, RIACConfig])
def test_bad_box_names_the_field(cls):
    with pytest.raises(ConfigError, match="^low"):
        cls(low=(0.0, 1.0), high=(1.0, 1.0))
    with pytest.raises(ConfigError, match="^high"):
        cls(low=(0.0, 0.0), high=(1.0,))
    with pytest.raises(ConfigError, match="^low"):
        cls(low=(), high=())


@pytest.mark.parametrize("field,value", [("fit_rate", 0), ("max_k", 1), ("random_task_ratio", 1.5),
                                         ("nb_em_init", 0), ("history_capacity", 0), ("criterion", "x")])
def test_bad_alp_gmm_config_names_the_field(field, value):
    with pytest.raises(ConfigError, match=f"^{field}"):
        ALPGMMConfig(**{field: value})


def test_alp_matches_brute_force_nearest_neighbour_with_ring_buffer():
    config = ALPGMMConfig(low=(0.0, 0.0, 0.0), high=(1.0, 1.0, 1.0), fit_rate=1000, history_capacity=16)
    rng = np.random.default_rng(0)
    tasks = rng.random((40, 3)).astype(np.float32)
    rewards = rng.random(40).astype(np.float32)
    state = alp_gmm.init(jax.random.key(0), config)
    update = jax.jit(alp_gmm.update)
    for t, r in zip(tasks, rewards):
        state = update(state, t, r)
    expected = []
    for i, (t, r) in enumerate(zip(tasks, rewards)):
        earlier = np.arange(max(0, i - 16), i)  # the ring buffer keeps the last 16 tasks
        if i <= 5:
            expected.append(0.0)
        else:
            nearest = earlier[np.argmin(((tasks[earlier] - t) ** 2).sum(-1))]
            expected.append(abs(r - rewards[nearest]))
    np.testing.assert_allclose(state.window[:40, -1], expected, atol=1e-6)
    np.testing.assert_allclose(state.window[:40, :3], tasks)
    assert int(state.count) == 40


def test_alp_gmm_refits_every_fit_rate_tasks():
    config = ALPGMMConfig(fit_rate=10, max_k=3, history_capacity=64)
    state = alp_gmm.init(jax.random.key(0), config)
    update = jax.jit(alp_gmm.update)
    rng = np.random.default_rng(1)
    gmms = []
    for _ in range(20):
        state = update(state, rng.random(2).astype(np.float32), np.float32(rng.random()))
        gmms.append(state.gmm)
    assert all(int(g.num_components) == 1 for g in gmms[:9])  # placeholder until the first fit
    assert 2 <= int(gmms[9].num_components) <= 3
    np.testing.assert_array_equal(gmms[9].means, gmms[18].means)
    assert not np.array_equal(gmms[18].means, gmms[19].means)


def _fraction_in_progress_region(config, num_steps: int, seed: int, skip: int) -> float:
    """Share of tasks after the first ``skip`` with x0 < 0.25, where competence grows with visits."""
    teacher = teacher_for(config)

    def run(key):
        def step(carry, k):
            state, visits = carry
            task, state = teacher.sample(k, state)
            inside = task[0] < 0.25
            visits = visits + inside
            competence = jnp.where(inside, jnp.minimum(visits / 400.0, 1.0), 0.3)
            return (teacher.update(state, task, competence), visits), inside

        init_key, run_key = jax.random.split(key)
        carry = (teacher.init(init_key, config), jnp.float32(0))
        return jax.lax.scan(step, carry, jax.random.split(run_key, num_steps))[1]

    inside = np.asarray(jax.jit(run)(jax.random.key(seed)))
    return float(inside[skip:].mean())


@pytest.mark.parametrize("config", [
    ALPGMMConfig(fit_rate=50, max_k=4, history_capacity=600),
    pytest.param(CovarGMMConfig(fit_rate=50, max_k=4), marks=pytest.mark.slow),
    pytest.param(RIACConfig(max_region_size=50), marks=pytest.mark.slow),
], ids=["alp-gmm", "covar-gmm", "riac"])
def test_guided_teachers_concentrate_where_progress_is_possible(config):
    guided = _fraction_in_progress_region(config, 600, seed=0, skip=100)
    assert guided > 0.45, guided


def test_random_teacher_is_uniform():
    uniform = _fraction_in_progress_region(RandomConfig(), 2000, seed=0, skip=0)
    assert abs(uniform - 0.25) < 0.03  # the region is a quarter of the box


@pytest.mark.parametrize("field,value", [("fit_rate", 0), ("max_k", 1), ("random_task_ratio", -0.1)])
def test_bad_covar_gmm_config_names_the_field(field, value):
    with pytest.raises(ConfigError, match=f"^{field}"):
        CovarGMMConfig(**{field: value})


def test_covar_gmm_window_holds_time_task_competence():
    config = CovarGMMConfig(fit_rate=8, max_k=2)
    state = covar_gmm.init(jax.random.key(0), config)
    update = jax.jit(covar_gmm.update)
    rng = np.random.default_rng(2)
    tasks, rewards = rng.random((7, 2)).astype(np.float32), rng.random(7).astype(np.float32)
    for t, r in zip(tasks, rewards):
        state = update(state, t, r)
    np.testing.assert_allclose(state.window[:7], np.column_stack([np.arange(7) / 8, tasks, rewards]))
    assert int(state.gmm.num_components) == 1
    state = update(state, tasks[0], rewards[0])
    assert int(state.gmm.num_components) == 2
