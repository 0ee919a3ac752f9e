"""The teacher-student loop: a teacher proposes tasks, a student trains on them and is scored.

Any teacher (:class:`jaxrl_icl.curriculum.Teacher`) with any :class:`Student`::

    run = make_curriculum_run(teacher_for(cfg), cfg, student, eval_tasks,
                              num_rounds=200, tasks_per_round=16, eval_every=10)
    (student_state, teacher_state), out = jax.jit(jax.vmap(run))(keys)   # seeds vmapped

One round (a ``lax.scan`` step): the teacher samples ``tasks_per_round`` tasks (independent
keys, same state); the student trains on them; its competence on each is measured and
reported to the teacher, one task after the other. Every ``eval_every`` rounds, and once
before training, the student is scored on the fixed ``eval_tasks``. The whole run is one
pure function of a key. Tasks are in the teacher's coordinates throughout; the student maps
them to whatever it trains on (env params, a dataset, ...).

:func:`trainer_student` makes a student of an RL :class:`jaxrl_icl.trainer.Trainer` whose
state keeps its env params (``state.env_params``), as PPO's does.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from jaxrl_icl.config import ConfigError


class Student(NamedTuple):
    """A student as pure functions; ``tasks`` are float32[M, d] in the teacher's coordinates.

    Attributes:
      init: ``(key, tasks) -> state``, a student ready to train on ``tasks`` (the first round's).
      train: ``(state, tasks) -> state``, one round of training on ``tasks``.
      evaluate: ``(state, tasks, key) -> float32[M]``, the competence on each task.
    """

    init: Callable[[jax.Array, jax.Array], Any]
    train: Callable[[Any, jax.Array], Any]
    evaluate: Callable[[Any, jax.Array, jax.Array], jax.Array]


class CurriculumOutputs(NamedTuple):
    """What a run records (``R = num_rounds``, ``M = tasks_per_round``, ``E`` eval tasks).

    Attributes:
      eval_competence: float32[R / eval_every + 1, E], the student's competence on the eval
        tasks before training and after every ``eval_every`` rounds.
      tasks: float32[R, M, d], the tasks the teacher proposed each round.
      competence: float32[R, M], the competence reported to the teacher on each.
      num_rejected: int32[], reports the teacher skipped as non-finite.
    """

    eval_competence: jax.Array
    tasks: jax.Array
    competence: jax.Array
    num_rejected: jax.Array


def make_curriculum_run(
    teacher: Any,
    teacher_config: Any,
    student: Student,
    eval_tasks: jax.Array,
    *,
    num_rounds: int,
    tasks_per_round: int,
    eval_every: int,
) -> Callable[[jax.Array], tuple[tuple[Any, Any], CurriculumOutputs]]:
    """``run(key) -> ((student_state, teacher_state), CurriculumOutputs)``, jittable and vmappable.

    Args:
      teacher: a :class:`jaxrl_icl.curriculum.Teacher` (``init``, ``sample``, ``update``).
      teacher_config: its config (the task box).
      student: the :class:`Student`.
      eval_tasks: float32[E, d], fixed tasks the student is scored on.
      num_rounds: teacher rounds; ``eval_every`` must divide it.
      tasks_per_round: tasks proposed (and reported) per round.

    The teacher is initialised inside ``run``, so under ``vmap`` over seeds its step count
    stays unbatched and its refits are real branches.
    """
    for name, value in (("num_rounds", num_rounds), ("tasks_per_round", tasks_per_round),
                        ("eval_every", eval_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(name, f"must be a positive int, got {value!r}")
    if num_rounds % eval_every:
        raise ConfigError("eval_every", f"must divide num_rounds ({num_rounds}), got {eval_every}")

    def propose(key: jax.Array, teacher_state: Any) -> jax.Array:
        return jax.vmap(teacher.sample, in_axes=(0, None))(jax.random.split(key, tasks_per_round), teacher_state)[0]

    def one_round(carry: tuple, key: jax.Array) -> tuple[tuple, tuple[jax.Array, jax.Array]]:
        student_state, teacher_state = carry
        k_sample, k_eval = jax.random.split(key)
        tasks = propose(k_sample, teacher_state)
        student_state = student.train(student_state, tasks)
        competence = student.evaluate(student_state, tasks, k_eval)
        teacher_state, _ = jax.lax.scan(lambda s, tc: (teacher.update(s, *tc), None), teacher_state,
                                        (tasks, competence))
        return (student_state, teacher_state), (tasks, competence)

    def block(carry: tuple, key: jax.Array) -> tuple[tuple, tuple]:
        k_rounds, k_eval = jax.random.split(key)
        carry, rounds = jax.lax.scan(one_round, carry, jax.random.split(k_rounds, eval_every))
        return carry, (student.evaluate(carry[0], eval_tasks, k_eval), rounds)

    def run(key: jax.Array) -> tuple[tuple[Any, Any], CurriculumOutputs]:
        k_student, k_teacher, k_first, k_blocks = jax.random.split(key, 4)
        teacher_state = teacher.init(k_teacher, teacher_config)
        student_state = student.init(k_student, propose(k_first, teacher_state))
        first = student.evaluate(student_state, eval_tasks, k_first)
        carry, (evals, (tasks, competence)) = jax.lax.scan(
            block, (student_state, teacher_state), jax.random.split(k_blocks, num_rounds // eval_every))
        outputs = CurriculumOutputs(
            eval_competence=jnp.concatenate([first[None], evals]),
            tasks=tasks.reshape(num_rounds, *tasks.shape[2:]),
            competence=competence.reshape(num_rounds, -1),
            num_rejected=carry[1].num_rejected,
        )
        return carry, outputs

    return run


def trainer_student(
    trainer: Any,
    env_params: Callable[[jax.Array], Any],
    updates_per_round: int,
    competence: Callable[[Any, jax.Array, jax.Array], jax.Array],
) -> Student:
    """A :class:`Student` of an RL trainer that reads its tasks from ``state.env_params``.

    Args:
      trainer: a :class:`jaxrl_icl.trainer.Trainer` (``init(key, env_params)``,
        ``update(state, env_params)``) whose state has an ``env_params`` field.
      env_params: ``tasks float32[M, d] -> env params`` (e.g. a task pool the envs draw from).
      updates_per_round: trainer updates per round.
      competence: ``(state, tasks, key) -> float32[M]``, e.g. greedy returns on each task.
    """
    if isinstance(updates_per_round, bool) or not isinstance(updates_per_round, int) or updates_per_round < 1:
        raise ConfigError("updates_per_round", f"must be a positive int, got {updates_per_round!r}")

    def train(state: Any, tasks: jax.Array) -> Any:
        state = state.replace(env_params=env_params(tasks))
        state, _ = jax.lax.scan(lambda s, _: trainer.update(s, s.env_params), state, None, updates_per_round)
        return state

    return Student(init=lambda key, tasks: trainer.init(key, env_params(tasks)), train=train, evaluate=competence)
