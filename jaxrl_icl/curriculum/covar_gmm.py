"""Covar-GMM teacher (Moulin-Frier et al. 2014, as a baseline in Portelas et al. 2019).

A Gaussian mixture over ``(time, task, competence)``: time is the position of the task in
the current batch of ``fit_rate`` tasks, scaled to [0, 1). The covariance between time and
competence inside a Gaussian measures its learning progress. The first ``fit_rate`` tasks
are uniform; after every ``fit_rate`` tasks, mixtures with k = 2..max_k are fitted to the
last ``fit_rate`` points and the lowest AIC (or BIC) is kept. Sampling: with probability
``random_task_ratio`` uniform, else a Gaussian chosen with probability proportional to its
positive (or absolute, ``absolute_lp``) time-competence covariance, a draw from it without
the time and competence coordinates, clipped to the box. The refit runs in :func:`update`
in a real branch; the window, refit and sampling are :mod:`jaxrl_icl.curriculum.gmm_teacher`'s.
A report with a non-finite task or competence is skipped and counted in ``num_rejected``.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_icl.curriculum import gmm as gmm_lib
from jaxrl_icl.curriculum import gmm_teacher
from jaxrl_icl.curriculum.reports import check_report


@dataclasses.dataclass(frozen=True)
class CovarGMMConfig:
    """Covar-GMM hyper-parameters.

    Attributes:
      low: lower corner of the task box.
      high: upper corner of the task box (``low < high`` in every dimension).
      fit_rate: tasks between two GMM fits; also the bootstrap length and the fit window.
      max_k: largest number of Gaussians tried (k = 2..max_k).
      random_task_ratio: probability of a uniform task after the bootstrap.
      nb_em_init: EM restarts per k (best log-likelihood kept).
      criterion: model selection criterion, "aic" or "bic".
      absolute_lp: rank Gaussians by |covariance| instead of max(covariance, 0).
      max_em_iter: EM iteration cap per fit.
      reg_covar: added to every covariance diagonal.
    """

    low: tuple[float, ...] = (0.0, 0.0)
    high: tuple[float, ...] = (1.0, 1.0)
    fit_rate: int = 250
    max_k: int = 10
    random_task_ratio: float = 0.2
    nb_em_init: int = 1
    criterion: Literal["aic", "bic"] = "aic"
    absolute_lp: bool = False
    max_em_iter: int = 100
    reg_covar: float = 1e-6

    def __post_init__(self) -> None:
        gmm_teacher.validate_config(self)


@struct.dataclass
class CovarGMMState:
    """Teacher state, fixed capacity.

    Attributes:
      config: the (static) config.
      count: int32[] valid reports so far.
      num_rejected: int32[] reports skipped as non-finite.
      window: float32[fit_rate, d + 2] ring buffer of the last ``(time, task, competence)``.
      gmm: current mixture over (time, task, competence), ``max_k`` slots.
      key: PRNG key for the EM initialisations.
    """

    config: CovarGMMConfig = struct.field(pytree_node=False)
    count: jax.Array
    num_rejected: jax.Array
    window: jax.Array
    gmm: gmm_lib.GaussianMixture
    key: jax.Array


def init(key: jax.Array, config: CovarGMMConfig) -> CovarGMMState:
    """Empty window and a placeholder mixture (unused until the first fit)."""
    d = len(config.low)
    return CovarGMMState(config, jnp.int32(0), jnp.int32(0), jnp.zeros((config.fit_rate, d + 2), jnp.float32),
                         gmm_lib.placeholder_gmm(config.max_k, d + 2), key)


def learning_progress(state: CovarGMMState) -> jax.Array:
    """Per-Gaussian time-competence covariance, float32[max_k] (absolute if ``absolute_lp``)."""
    lp = state.gmm.covariances[:, 0, -1]
    return jnp.abs(lp) if state.config.absolute_lp else lp


def sample(key: jax.Array, state: CovarGMMState) -> tuple[jax.Array, CovarGMMState]:
    """Next task float32[d] in the box; the state is unchanged."""
    return gmm_teacher.sample(key, state, learning_progress(state), slice(1, -1)), state


def update(state: CovarGMMState, task: jax.Array, competence: jax.Array) -> CovarGMMState:
    """Record ``task`` float32[d] with ``competence`` float32[]; refit every ``fit_rate`` tasks.

    A non-finite report leaves the state as it was but for ``num_rejected``."""
    cfg = state.config
    task, competence, valid = check_report(task, competence, len(cfg.low))
    time = (state.count % cfg.fit_rate).astype(jnp.float32) / cfg.fit_rate
    return gmm_teacher.record(state, jnp.concatenate([time[None], task, competence[None]]), valid)
