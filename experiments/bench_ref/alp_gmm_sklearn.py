"""Benchmark-only host ALP-GMM on scikit-learn, the design of the paper's reference code.

One Python object per teacher; ``sample()`` and ``update(task, competence)`` run one task
at a time on the host (NumPy + scikit-learn), as the reference implementation of Portelas
et al. (2019) does:

- ALP of a new ``(task, competence)``: 0 while 5 or fewer tasks have been seen, else
  ``|competence - competence of the nearest earlier task|`` (Euclidean, over every earlier task).
- The first ``fit_rate`` tasks are uniform in the box. After every ``fit_rate`` tasks,
  ``sklearn.mixture.GaussianMixture`` (full covariances, ``n_init`` restarts) is fitted for
  k = 2..max_k on the last ``fit_rate`` points ``concat(task, ALP)``; the lowest AIC is kept.
- Sampling: with probability ``random_task_ratio`` uniform; else a Gaussian with probability
  proportional to its mean ALP (uniform if all are 0), a draw from it without the ALP
  coordinate, clipped to the box.

Used by :mod:`experiments.benchmarks.curriculum` to time the JAX teacher against; not part of
the library.
"""

from __future__ import annotations

import numpy as np
from sklearn.mixture import GaussianMixture


class SklearnALPGMM:
    """ALP-GMM on the host for one seed.

    Args:
      low, high: the task box corners (sequences of floats, ``low < high``).
      seed: seed of the teacher's NumPy generator (sampling and EM initialisations).
      fit_rate, max_k, random_task_ratio, nb_em_init, max_em_iter, reg_covar: as in
        :class:`jaxrl_icl.curriculum.ALPGMMConfig`.
    """

    def __init__(self, low, high, seed: int = 0, *, fit_rate: int = 250, max_k: int = 10,
                 random_task_ratio: float = 0.2, nb_em_init: int = 1, max_em_iter: int = 100,
                 reg_covar: float = 1e-6):
        self.low, self.high = np.asarray(low, np.float64), np.asarray(high, np.float64)
        self.rng = np.random.default_rng(seed)
        self.fit_rate, self.max_k = fit_rate, max_k
        self.random_task_ratio, self.nb_em_init = random_task_ratio, nb_em_init
        self.max_em_iter, self.reg_covar = max_em_iter, reg_covar
        self.tasks: list[np.ndarray] = []
        self.rewards: list[float] = []
        self.window: list[np.ndarray] = []  # concat(task, ALP) rows since the start
        self.gmm: GaussianMixture | None = None

    def sample(self) -> np.ndarray:
        """The next task, float64[d] in the box."""
        if self.gmm is None or self.rng.random() < self.random_task_ratio:
            return self.rng.uniform(self.low, self.high)
        alp = np.maximum(self.gmm.means_[:, -1], 0.0)
        probs = alp / alp.sum() if alp.sum() > 0 else np.full(len(alp), 1.0 / len(alp))
        k = self.rng.choice(len(alp), p=probs)
        draw = self.rng.multivariate_normal(self.gmm.means_[k], self.gmm.covariances_[k])
        return np.clip(draw[:-1], self.low, self.high)

    def alp(self, task: np.ndarray, competence: float) -> float:
        """Absolute learning progress of ``(task, competence)`` against the earlier tasks."""
        if len(self.tasks) <= 5:
            return 0.0
        dist = np.sum((np.asarray(self.tasks) - task) ** 2, axis=-1)
        return abs(competence - self.rewards[int(np.argmin(dist))])

    def update(self, task: np.ndarray, competence: float) -> None:
        """Record ``(task, competence)``; refit the mixture every ``fit_rate`` tasks."""
        task = np.asarray(task, np.float64)
        self.window.append(np.append(task, self.alp(task, competence)))
        self.tasks.append(task)
        self.rewards.append(float(competence))
        if len(self.tasks) % self.fit_rate == 0:
            data = np.asarray(self.window[-self.fit_rate:])
            fits = [GaussianMixture(k, covariance_type="full", n_init=self.nb_em_init,
                                    max_iter=self.max_em_iter, reg_covar=self.reg_covar,
                                    random_state=int(self.rng.integers(2**31))).fit(data)
                    for k in range(2, self.max_k + 1)]
            self.gmm = min(fits, key=lambda g: g.aic(data))
