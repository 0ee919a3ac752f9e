"""The benchmark's scikit-learn ALP-GMM and ours agree on the deterministic part of the algorithm."""

import jax
import numpy as np

from experiments.bench_ref.alp_gmm_sklearn import SklearnALPGMM
from jaxrl_icl.curriculum import ALPGMMConfig, alp_gmm


def test_same_reports_give_same_alps_and_refit_schedule():
    rng = np.random.default_rng(5)
    tasks = rng.random((40, 2)).astype(np.float32)
    rewards = rng.random(40).astype(np.float32)
    ref = SklearnALPGMM((0.0, 0.0), (1.0, 1.0), seed=0, fit_rate=20, max_k=3)
    state = alp_gmm.init(jax.random.key(0), ALPGMMConfig(fit_rate=20, max_k=3, history_capacity=64))
    update = jax.jit(alp_gmm.update)
    fitted = []
    for t, r in zip(tasks, rewards):
        ref.update(t, float(r))
        state = update(state, t, r)
        fitted.append((ref.gmm is not None, int(state.gmm.num_components) >= 2))
    np.testing.assert_allclose(state.window[:, -1], np.asarray(ref.window)[-20:, -1], atol=1e-6)
    assert [a for a, _ in fitted] == [b for _, b in fitted] == [False] * 19 + [True] * 21
    assert 2 <= ref.gmm.n_components <= 3
    assert np.all((ref.sample() >= 0) & (ref.sample() <= 1))
