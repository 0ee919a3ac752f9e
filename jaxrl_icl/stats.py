"""Small-sample statistics for results over seeds: Student's t quantiles, NaN-aware
confidence bands over seeds, and Welch's interval for a difference of two means.

Pure numpy and the standard library, so experiments, plots and users' own analysis share one
implementation.
"""

from __future__ import annotations

import functools
import math

import numpy as np


def _t_two_sided_prob(t: float, dof: int) -> float:
    """``P(|T| <= t)`` for Student's t with integer ``dof`` (Abramowitz & Stegun 26.7.3-4)."""
    theta = math.atan(t / math.sqrt(dof))
    c2 = math.cos(theta) ** 2
    if dof % 2:
        term, series = math.cos(theta), 0.0
        for k in range(1, (dof - 1) // 2 + 1):
            series += term
            term *= c2 * (2 * k) / (2 * k + 1)
        return 2 / math.pi * (theta + math.sin(theta) * series)
    term, series = 1.0, 0.0
    for k in range(1, dof // 2 + 1):
        series += term
        term *= c2 * (2 * k - 1) / (2 * k)
    return math.sin(theta) * series


@functools.lru_cache(maxsize=None)
def t_quantile(level: float, dof: int) -> float:
    """``t`` with ``P(|T| <= t) = level`` for Student's t with ``dof >= 1`` (bisection, ~1e-12)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if dof < 1:
        raise ValueError(f"dof must be >= 1, got {dof}")
    lo, hi = 0.0, 1.0
    while _t_two_sided_prob(hi, dof) < level:
        lo, hi = hi, 2 * hi
    while hi - lo > 1e-12 * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _t_two_sided_prob(mid, dof) < level else (lo, mid)
    return 0.5 * (lo + hi)


def confidence_band(y: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NaN-aware mean over seeds and its t-interval.

    Args:
      y: ``[num_seeds, T]`` values; NaN/inf mean "no value".
      level: coverage of the interval.

    Returns:
      ``(mean, low, high)``, each float64 ``[T]``; NaN where no seed has a value, and
      ``low == high == mean`` where exactly one has.
    """
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 2:
        raise ValueError(f"y must be [num_seeds, T], got shape {y.shape}")
    finite = np.isfinite(y)
    n = finite.sum(axis=0)
    filled = np.where(finite, y, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(axis=0) / n
        var = np.where(finite, (filled - mean) ** 2, 0.0).sum(axis=0) / (n - 1)
    quantile = np.array([t_quantile(level, int(k) - 1) if k > 1 else 0.0 for k in n])
    half = np.where(n > 1, quantile * np.sqrt(np.where(n > 1, var, 0.0) / np.maximum(n, 1)), 0.0)
    return mean, mean - half, mean + half


def welch_difference(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """``(mean(b) - mean(a), low, high)``: Welch's t-interval for the difference of the means of
    two float[n] samples (degrees of freedom rounded down; a point when neither varies; NaN bounds,
    i.e. no interval, when either sample has fewer than 2 values)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    diff = float(b.mean() - a.mean())
    if a.size < 2 or b.size < 2:
        return diff, math.nan, math.nan
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    if va + vb == 0:
        return diff, diff, diff
    dof = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = t_quantile(level, max(1, int(dof))) * float(np.sqrt(va + vb))
    return diff, diff - half, diff + half


def paired_difference(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """``(mean(b - a), low, high)``: the paired t-interval of two float[n] samples matched by
    index (e.g. two variants trained with the same seeds on the same data and evaluated on the
    same rollouts, where seed-to-seed variation hits both alike); NaN bounds (no interval) for
    ``n < 2``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be float[n] of one length, got shapes {a.shape} and {b.shape}")
    if a.size < 2:
        return float(np.mean(b - a)), math.nan, math.nan
    mean, low, high = confidence_band((b - a)[:, None], level)
    return float(mean[0]), float(low[0]), float(high[0])


def difference_intervals_text(ci95: list[float], paired_ci95: list[float], num_seeds: int) -> str:
    """``"95% CI [lo, hi]; paired by seed [lo, hi]; n seeds"`` for a difference's Welch and paired
    intervals, or ``"no interval from 1 training seed"`` where ``num_seeds < 2`` (NaN bounds)."""
    if num_seeds < 2:
        return f"no interval from {num_seeds} training seed"
    return (f"95% CI [{ci95[0]:+.2f}, {ci95[1]:+.2f}]; paired by seed [{paired_ci95[0]:+.2f}, "
            f"{paired_ci95[1]:+.2f}]; {num_seeds} seeds")
