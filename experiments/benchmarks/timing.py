"""Timing shared by the benchmark suites."""

from __future__ import annotations

import time
from typing import Any, Callable

import jax


def compile_ahead(fn: Callable[..., Any], args: tuple) -> tuple[Any, float]:
    """``(compiled, compile seconds)``: ``jax.jit(fn)`` lowered and compiled for ``args``."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - t0


def compile_timed(fn: Callable[..., Any], args: tuple) -> tuple[Callable[[], Any], float]:
    """``(call, compile seconds)``: ``jax.jit(fn)`` compiled ahead of time for ``args``, and a
    no-argument ``call`` running the compiled program on them."""
    compiled, seconds = compile_ahead(fn, args)
    return (lambda: compiled(*args)), seconds


def best_of_alternating(repeats: int, calls: dict[Any, Callable[[], Any]]) -> dict[Any, float]:
    """Best seconds of each of ``calls`` over ``repeats`` rounds that call each once in turn
    (side by side, so that load from other processes hits all of them alike)."""
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(repeats):
        for name, call in calls.items():
            t0 = time.perf_counter()
            jax.block_until_ready(call())
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def time_jitted(fn: Callable[..., Any], args: tuple, repeats: int) -> tuple[float, float]:
    """``(best seconds per call, compile seconds)`` of ``jax.jit(fn)(*args)``.

    Compilation is timed separately (ahead of time, ``lower(...).compile()``) and excluded
    from the per-call figure, which is the best of ``repeats`` calls.
    """
    call, compile_s = compile_timed(fn, args)
    return best_of_alternating(repeats, {"fn": call})["fn"], compile_s
