"""Curriculum teachers as pure JAX functions (Portelas et al. 2019).

Every teacher is a module with the same three jittable functions, its state a
fixed-capacity pytree that carries its (static) config::

    state = alp_gmm.init(key, ALPGMMConfig(low=(0.0, 0.0), high=(1.0, 1.0)))
    task, state = alp_gmm.sample(key, state)
    state = alp_gmm.update(state, task, competence)

:func:`teacher_for` returns the :class:`Teacher` triple for a config, for code that is
generic over teachers. :mod:`jaxrl_icl.curriculum.gmm` is the jitted EM + AIC/BIC model
selection underneath ALP-GMM and Covar-GMM, whose shared window/refit/sampling core is
:mod:`jaxrl_icl.curriculum.gmm_teacher`. :mod:`jaxrl_icl.curriculum.oracle` is the toy
task space's hand-made reference teacher. A report with a non-finite task or competence is
skipped and counted in the state's ``num_rejected`` (:mod:`jaxrl_icl.curriculum.reports`).

:func:`make_curriculum_run` (:mod:`jaxrl_icl.curriculum.student_loop`) runs any teacher with
any :class:`Student` (teacher samples tasks, the student trains, its competence goes back to
the teacher) as one jittable function of a key; :func:`trainer_student` wraps an RL trainer.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from jaxrl_icl.curriculum import (
    alp_gmm,
    covar_gmm,
    gmm,
    gmm_teacher,
    oracle,
    random_teacher,
    reports,
    riac,
    student_loop,
)
from jaxrl_icl.curriculum.alp_gmm import ALPGMMConfig
from jaxrl_icl.curriculum.covar_gmm import CovarGMMConfig
from jaxrl_icl.curriculum.gmm import GaussianMixture, fit_gmm, select_gmm
from jaxrl_icl.curriculum.oracle import OracleConfig
from jaxrl_icl.curriculum.random_teacher import RandomConfig
from jaxrl_icl.curriculum.riac import RIACConfig
from jaxrl_icl.curriculum.student_loop import CurriculumOutputs, Student, make_curriculum_run, trainer_student

__all__ = [
    "ALPGMMConfig", "CovarGMMConfig", "CurriculumOutputs", "GaussianMixture", "OracleConfig", "RIACConfig",
    "RandomConfig", "Student", "Teacher", "alp_gmm", "covar_gmm", "fit_gmm", "gmm", "gmm_teacher",
    "make_curriculum_run", "oracle", "random_teacher", "reports", "riac", "select_gmm", "student_loop",
    "teacher_for", "trainer_student",
]


class Teacher(NamedTuple):
    """The teacher interface: ``init(key, config) -> state``, ``sample(key, state) -> (task, state)``,
    ``update(state, task, competence) -> state``."""

    init: Callable[[Any, Any], Any]
    sample: Callable[[Any, Any], Any]
    update: Callable[[Any, Any, Any], Any]


_MODULES = {RandomConfig: random_teacher, ALPGMMConfig: alp_gmm, CovarGMMConfig: covar_gmm,
            RIACConfig: riac, OracleConfig: oracle}


def teacher_for(config: Any) -> Teacher:
    """The :class:`Teacher` whose ``init`` takes ``config`` (TypeError for an unknown config type)."""
    module = _MODULES.get(type(config))
    if module is None:
        raise TypeError(f"config: no teacher for {type(config).__name__}")
    return Teacher(module.init, module.sample, module.update)
