"""The core shared by the GMM teachers (ALP-GMM and Covar-GMM).

Both keep a ring buffer ``window`` float32[fit_rate, D] of the last ``fit_rate`` data rows,
a task count, a mixture over the rows and a PRNG key for EM; both refit the mixture every
``fit_rate`` tasks (k = 2..max_k, lowest AIC/BIC) and sample either uniformly (bootstrap
phase, or with probability ``random_task_ratio``) or from one Gaussian chosen by a
per-Gaussian learning-progress score. They differ only in what a row holds and how a
Gaussian's score is read from the mixture; this module holds everything else.

A state here is any ``flax.struct`` dataclass with fields ``config`` (with ``low``,
``high``, ``fit_rate``, ``max_k``, ``random_task_ratio``, ``nb_em_init``, ``criterion``,
``max_em_iter``, ``reg_covar``), ``count`` int32[] (valid reports), ``num_rejected`` int32[]
(skipped non-finite reports, :mod:`jaxrl_icl.curriculum.reports`), ``window``, ``gmm`` and ``key``.
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar

import jax
import jax.numpy as jnp

from jaxrl_icl.batching import batch_function
from jaxrl_icl.config import ConfigError, require_in, require_positive, require_types
from jaxrl_icl.curriculum import gmm as gmm_lib
from jaxrl_icl.curriculum.box import clip_to_box, uniform_in_box, validate_box
from jaxrl_icl.curriculum.branch import update_if
from jaxrl_icl.curriculum.reports import count_report, set_if

State = TypeVar("State")


def validate_config(cfg: Any) -> None:
    """Checks common to the GMM teacher configs: types, box, positive sizes, max_k >= 2, ratio in [0, 1]."""
    require_types(cfg)
    validate_box(cfg)
    for name in ("fit_rate", "nb_em_init", "max_em_iter", "reg_covar"):
        require_positive(cfg, name)
    if cfg.max_k < 2:
        raise ConfigError("max_k", f"must be >= 2, got {cfg.max_k}")
    require_in(cfg, "random_task_ratio", 0.0, 1.0)


def sample(key: jax.Array, state: Any, scores: jax.Array, task_slice: slice) -> jax.Array:
    """Next task float32[d] in the box.

    Uniform during the first ``fit_rate`` tasks and with probability ``random_task_ratio``;
    otherwise a Gaussian drawn with probability proportional to ``max(scores, 0)``
    (float32[max_k]), a point drawn from it, its ``task_slice`` coordinates clipped to the box.
    """
    cfg = state.config
    k_uniform, k_coin, k_comp, k_draw = jax.random.split(key, 4)
    uniform = uniform_in_box(k_uniform, cfg.low, cfg.high)
    component = gmm_lib.proportional_choice(k_comp, state.gmm, scores)
    guided = clip_to_box(gmm_lib.sample_component(k_draw, state.gmm, component)[task_slice], cfg.low, cfg.high)
    use_uniform = (state.count < cfg.fit_rate) | (jax.random.uniform(k_coin) < cfg.random_task_ratio)
    return jnp.where(use_uniform, uniform, guided)


def _select(key: jax.Array, window: jax.Array, cfg: Any) -> gmm_lib.GaussianMixture:
    """The lowest-criterion mixture over k = 2..max_k fitted to every row of ``window``."""
    gmm, _ = gmm_lib.select_gmm(
        key, window, jnp.ones(window.shape[0], bool), min_components=2,
        max_components=cfg.max_k, num_inits=cfg.nb_em_init, criterion=cfg.criterion,
        max_iter=cfg.max_em_iter, reg_covar=cfg.reg_covar,
    )
    return gmm


def refit(state: State) -> State:
    """The mixture with the lowest criterion over k = 2..max_k fitted to the whole window.

    On CPU, teachers ``vmap``-ed over seeds fit one seed after another
    (:func:`jaxrl_icl.batching.batch_function`): a seed's EM then runs only until its own
    fits converge, not the slowest of all seeds', and its buffers stay in cache. On
    accelerators the seeds fit in parallel.
    """
    cfg = state.config
    key, fit_key = jax.random.split(state.key)
    select = batch_function(functools.partial(_select, cfg=cfg))
    return state.replace(gmm=select(fit_key, state.window), key=key)


def record(state: State, row: jax.Array, valid: jax.Array, **fields: jax.Array) -> State:
    """Write ``row`` float32[D] at ``count % fit_rate``, count it, set ``fields``; refit every fit_rate.

    When ``valid`` (bool[]) is false nothing is written (``fields`` must already leave the
    state as it was, e.g. through :func:`jaxrl_icl.curriculum.reports.set_if`) and the report
    only counts in ``num_rejected``. The refit runs in a real branch, also under ``vmap``
    (:func:`jaxrl_icl.curriculum.branch.update_if`).
    """
    fit_rate = state.config.fit_rate
    state = state.replace(window=set_if(valid, state.window, state.count % fit_rate, row), **fields)
    state = count_report(state, valid)
    return update_if(valid & (state.count % fit_rate == 0), refit, state)
