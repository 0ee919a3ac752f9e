"""The teacher-student loop against a plain Python loop over the same protocol, with a toy student."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from jaxrl_icl.config import ConfigError
from jaxrl_icl.curriculum import RandomConfig, RIACConfig, Student, make_curriculum_run, teacher_for, trainer_student

CUBES = 4  # the toy student practises on a CUBES x CUBES grid over [0, 1]^2


def _cube(tasks):
    return jnp.clip(jnp.floor(tasks * CUBES).astype(jnp.int32), 0, CUBES - 1)


def _toy_student(nan_above: float = 2.0) -> Student:
    """Practice counts per cube; competence = practice / 5 (at most 1) plus key noise, NaN on
    tasks whose first coordinate exceeds ``nan_above`` (a student that sometimes fails to score)."""

    def init(key, tasks):
        del tasks
        return jax.random.uniform(key, (CUBES, CUBES), maxval=0.5)

    def train(practice, tasks):
        cubes = _cube(tasks)
        return practice.at[cubes[:, 0], cubes[:, 1]].add(1.0)

    def evaluate(practice, tasks, key):
        cubes = _cube(tasks)
        level = jnp.minimum(practice[cubes[:, 0], cubes[:, 1]] / 5.0, 1.0)
        level = level + 0.01 * jax.random.uniform(key, level.shape)
        return jnp.where(tasks[:, 0] > nan_above, jnp.nan, level)

    return Student(init, train, evaluate)


def _python_loop(teacher, config, student, eval_tasks, key, num_rounds, tasks_per_round, eval_every):
    """The protocol written out round by round (same key derivation), one report at a time."""
    # each step jitted, so the loop compiles a few programs instead of one per eager op
    update, split = jax.jit(teacher.update), jax.jit(jax.random.split, static_argnums=1)
    student = Student(*map(jax.jit, student))

    @jax.jit
    def propose(k, state):
        return jax.vmap(teacher.sample, in_axes=(0, None))(jax.random.split(k, tasks_per_round), state)[0]

    k_student, k_teacher, k_first, k_blocks = split(key, 4)
    teacher_state = jax.jit(teacher.init, static_argnums=1)(k_teacher, config)
    student_state = student.init(k_student, propose(k_first, teacher_state))
    evals, proposed, reported = [student.evaluate(student_state, eval_tasks, k_first)], [], []
    for k_block in split(k_blocks, num_rounds // eval_every):
        k_rounds, k_eval = split(k_block, 2)
        for k_round in split(k_rounds, eval_every):
            k_sample, k_score = split(k_round, 2)
            tasks = propose(k_sample, teacher_state)
            student_state = student.train(student_state, tasks)
            competence = student.evaluate(student_state, tasks, k_score)
            for task, c in zip(np.asarray(tasks), np.asarray(competence)):
                teacher_state = update(teacher_state, task, c)
            proposed.append(tasks)
            reported.append(competence)
        evals.append(student.evaluate(student_state, eval_tasks, k_eval))
    return student_state, teacher_state, np.stack(evals), np.stack(proposed), np.stack(reported)


def test_loop_matches_a_python_loop_and_counts_the_student_nan_reports():
    config = RIACConfig(max_region_size=12, min_child_pairs=2)
    teacher, student = teacher_for(config), _toy_student(nan_above=0.8)
    eval_tasks = jnp.array([[0.1, 0.1], [0.6, 0.3], [0.9, 0.9]], jnp.float32)
    sizes = {"num_rounds": 6, "tasks_per_round": 5, "eval_every": 2}
    key = jax.random.key(4)
    (student_state, teacher_state), out = jax.jit(make_curriculum_run(teacher, config, student, eval_tasks,
                                                                      **sizes))(key)
    want = _python_loop(teacher, config, student, eval_tasks, key, *sizes.values())
    np.testing.assert_allclose(student_state, want[0], rtol=1e-6)
    np.testing.assert_allclose(out.eval_competence, want[2], rtol=1e-6)
    np.testing.assert_allclose(out.tasks, want[3], rtol=1e-6)
    np.testing.assert_allclose(out.competence, want[4], rtol=1e-6)
    for got, ref in zip(jax.tree.leaves(teacher_state), jax.tree.leaves(want[1])):
        if jnp.issubdtype(got.dtype, jax.dtypes.prng_key):
            got, ref = jax.random.key_data(got), jax.random.key_data(ref)
        np.testing.assert_allclose(got, ref, rtol=1e-6)
    assert out.eval_competence.shape == (4, 3) and out.tasks.shape == (6, 5, 2) and out.competence.shape == (6, 5)
    nan_reports = int(np.isnan(out.competence).sum())
    assert nan_reports > 0 and int(out.num_rejected) == nan_reports
    assert int(teacher_state.count) == 6 * 5 - nan_reports
    assert np.all(np.isnan(out.eval_competence[:, 2])) and np.all(np.isfinite(out.eval_competence[:, :2]))


@pytest.mark.slow
def test_vmapped_seeds_equal_single_runs():
    config = RandomConfig()
    run = make_curriculum_run(teacher_for(config), config, _toy_student(), jnp.full((1, 2), 0.3),
                              num_rounds=4, tasks_per_round=3, eval_every=4)
    keys = jax.random.split(jax.random.key(0), 3)
    _, batched = jax.jit(jax.vmap(run))(keys)
    for i, key in enumerate(keys):
        _, single = jax.jit(run)(key)
        for got, want in zip(batched, single):
            np.testing.assert_allclose(got[i], want, rtol=1e-6)
    assert not np.array_equal(batched.tasks[0], batched.tasks[1])


@struct.dataclass
class _FakeState:
    env_params: jax.Array
    seen: jax.Array  # sum over updates of the env params each update trained on


class _FakeTrainer:
    def init(self, key, env_params):
        del key
        return _FakeState(env_params, jnp.zeros_like(env_params))

    def update(self, state, env_params):
        return state.replace(seen=state.seen + env_params), {}


def test_trainer_student_swaps_the_tasks_into_the_state_and_runs_the_updates():
    student = trainer_student(_FakeTrainer(), lambda tasks: 10.0 * tasks, updates_per_round=3,
                              competence=lambda state, tasks, key: state.seen.sum(-1))
    state = student.init(jax.random.key(0), jnp.ones((2, 2)))
    np.testing.assert_array_equal(state.env_params, 10.0)
    tasks = jnp.array([[0.1, 0.2], [0.3, 0.4]])
    state = student.train(state, tasks)
    np.testing.assert_allclose(state.env_params, 10.0 * tasks)
    np.testing.assert_allclose(state.seen, 3 * 10.0 * tasks, rtol=1e-6)
    with pytest.raises(ConfigError, match="^updates_per_round"):
        trainer_student(_FakeTrainer(), lambda t: t, 0, lambda s, t, k: t[:, 0])


@pytest.mark.parametrize("sizes, field", [
    ({"num_rounds": 0, "tasks_per_round": 2, "eval_every": 1}, "num_rounds"),
    ({"num_rounds": 4, "tasks_per_round": 2, "eval_every": 3}, "eval_every"),
    ({"num_rounds": 4, "tasks_per_round": 1.5, "eval_every": 2}, "tasks_per_round"),
])
def test_bad_sizes_name_the_field(sizes, field):
    config = RandomConfig()
    with pytest.raises(ConfigError, match=f"^{field}"):
        make_curriculum_run(teacher_for(config), config, _toy_student(), jnp.zeros((1, 2)), **sizes)
