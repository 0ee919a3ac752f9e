"""ALP-GMM teacher (Portelas et al. 2019): a Gaussian mixture over (task, absolute learning progress).

Each reported ``(task, competence)`` gets an absolute learning progress (ALP): 0 while 5 or
fewer tasks have been seen, otherwise ``|competence - competence of the nearest earlier
task|`` (Euclidean nearest neighbour over the history buffer, which keeps the last
``history_capacity`` tasks). The first ``fit_rate`` tasks are uniform; after every
``fit_rate`` tasks, mixtures with k = 2..max_k are fitted to the last ``fit_rate`` points
``concat(task, ALP)`` and the lowest AIC (or BIC) is kept. Sampling: with probability
``random_task_ratio`` uniform in the box, else a Gaussian chosen with probability
proportional to its mean ALP, a draw from it without the ALP coordinate, clipped to the box.

The refit runs inside :func:`update` in a real branch on the task count, also under ``vmap``
over seeds (:mod:`jaxrl_icl.curriculum.gmm_teacher`). A report with a non-finite task or
competence is skipped and counted in ``num_rejected`` (:mod:`jaxrl_icl.curriculum.reports`).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_icl.config import require_positive
from jaxrl_icl.curriculum import gmm as gmm_lib
from jaxrl_icl.curriculum import gmm_teacher
from jaxrl_icl.curriculum.reports import check_report, set_if


@dataclasses.dataclass(frozen=True)
class ALPGMMConfig:
    """ALP-GMM hyper-parameters (defaults as in the reference code).

    Attributes:
      low: lower corner of the task box.
      high: upper corner of the task box (``low < high`` in every dimension).
      fit_rate: tasks between two GMM fits; also the bootstrap length and the fit window.
      max_k: largest number of Gaussians tried (k = 2..max_k).
      random_task_ratio: probability of a uniform task after the bootstrap.
      nb_em_init: EM restarts per k (best log-likelihood kept).
      criterion: model selection criterion, "aic" or "bic".
      history_capacity: tasks kept for the ALP nearest neighbour (oldest overwritten).
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
    history_capacity: int = 20_000
    max_em_iter: int = 100
    reg_covar: float = 1e-6

    def __post_init__(self) -> None:
        gmm_teacher.validate_config(self)
        require_positive(self, "history_capacity")


@struct.dataclass
class ALPGMMState:
    """Teacher state, fixed capacity.

    Attributes:
      config: the (static) config.
      count: int32[] valid reports so far.
      num_rejected: int32[] reports skipped as non-finite.
      history_tasks: float32[history_capacity, d] ring buffer of tasks.
      history_rewards: float32[history_capacity] their competences.
      window: float32[fit_rate, d + 1] ring buffer of the last ``concat(task, ALP)``.
      gmm: current mixture over (task, ALP), ``max_k`` slots.
      key: PRNG key for the EM initialisations.
    """

    config: ALPGMMConfig = struct.field(pytree_node=False)
    count: jax.Array
    num_rejected: jax.Array
    history_tasks: jax.Array
    history_rewards: jax.Array
    window: jax.Array
    gmm: gmm_lib.GaussianMixture
    key: jax.Array


def init(key: jax.Array, config: ALPGMMConfig) -> ALPGMMState:
    """Empty buffers and a placeholder mixture (unused until the first fit)."""
    d = len(config.low)
    return ALPGMMState(
        config=config,
        count=jnp.int32(0),
        num_rejected=jnp.int32(0),
        history_tasks=jnp.zeros((config.history_capacity, d), jnp.float32),
        history_rewards=jnp.zeros((config.history_capacity,), jnp.float32),
        window=jnp.zeros((config.fit_rate, d + 1), jnp.float32),
        gmm=gmm_lib.placeholder_gmm(config.max_k, d + 1),
        key=key,
    )


def sample(key: jax.Array, state: ALPGMMState) -> tuple[jax.Array, ALPGMMState]:
    """Next task float32[d] in the box; the state is unchanged."""
    return gmm_teacher.sample(key, state, state.gmm.means[:, -1], slice(None, -1)), state


def absolute_learning_progress(state: ALPGMMState, task: jax.Array, competence: jax.Array) -> jax.Array:
    """ALP of a new ``(task, competence)`` against the history: float32[] (0 while count <= 5)."""
    capacity = state.config.history_capacity
    seen = jnp.arange(capacity) < jnp.minimum(state.count, capacity)
    dist = jnp.sum((state.history_tasks - task[None, :]) ** 2, axis=-1)
    nearest = jnp.argmin(jnp.where(seen, dist, jnp.inf))
    alp = jnp.abs(competence - state.history_rewards[nearest])
    return jnp.where(state.count > 5, alp, 0.0)


def update(state: ALPGMMState, task: jax.Array, competence: jax.Array) -> ALPGMMState:
    """Record ``task`` float32[d] with ``competence`` float32[]; refit every ``fit_rate`` tasks.

    A non-finite report leaves the state as it was but for ``num_rejected``."""
    cfg = state.config
    task, competence, valid = check_report(task, competence, len(cfg.low))
    alp = absolute_learning_progress(state, task, competence)
    slot = state.count % cfg.history_capacity
    return gmm_teacher.record(
        state, jnp.append(task, alp), valid,
        history_tasks=set_if(valid, state.history_tasks, slot, task),
        history_rewards=set_if(valid, state.history_rewards, slot, competence),
    )
