"""Timing shared by the benchmark suites."""

from __future__ import annotations

import time
from typing import Any, Callable

import jax


def time_jitted(fn: Callable[..., Any], args: tuple, repeats: int) -> tuple[float, float]:
    """``(best seconds per call, compile seconds)`` of ``jax.jit(fn)(*args)``.

    Compilation is timed separately (ahead of time, ``lower(...).compile()``) and excluded
    from the per-call figure, which is the best of ``repeats`` calls.
    """
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        best = min(best, time.perf_counter() - t0)
    return best, compile_s
