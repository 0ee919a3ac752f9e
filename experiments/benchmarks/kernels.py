"""Where a jitted call's device time goes: its GPU kernels, read from a ``jax.profiler`` trace.

:func:`kernel_profile` traces one call and reads the trace's device plane back with
``jax.profiler.ProfileData``; :func:`summarize` turns the kernel events into per-step figures:
how many kernels a step launches, their summed durations, the time the device was busy (the
union of the kernel intervals; kernels of one CUDA graph may overlap), and the share of matrix
products (cuBLAS / CUTLASS / XLA's Triton GEMM fusions). A device that is busy for the whole
step with many short kernels is bound by the number of kernels; one busy with few long ones by
their work. On a CPU the trace has no device plane and :func:`kernel_profile` returns None.
"""

from __future__ import annotations

import glob
import os
import tempfile
from collections import defaultdict
from typing import Any, Callable, NamedTuple

import jax

GEMM_MARKERS = ("gemm", "cublas", "cutlass", "xmma", "sm90_", "matmul")


class Kernel(NamedTuple):
    """One kernel execution: ``name`` and its start and end in nanoseconds."""

    name: str
    start_ns: float
    end_ns: float


def is_gemm(name: str) -> bool:
    """Whether a kernel name is a matrix product (library GEMM or XLA's GEMM fusion)."""
    name = name.lower()
    return any(marker in name for marker in GEMM_MARKERS)


def summarize(kernels: list[Kernel], steps: int, top: int = 10) -> dict[str, Any]:
    """Per-step figures of ``kernels`` recorded over ``steps`` steps: ``kernels`` (count),
    ``kernel_us`` (summed durations), ``busy_us`` (union of the intervals), ``span_us`` (first
    start to last end), ``gemm_share`` (GEMM durations over all durations) and ``top``, the
    ``top`` kernel names by time as ``(name, us per step, launches per step)``."""
    if not kernels:
        raise ValueError("no kernels to summarize")
    spans = sorted((k.start_ns, k.end_ns) for k in kernels)
    busy, (lo, hi) = 0.0, spans[0]
    for start, end in spans[1:]:
        if start > hi:
            busy, lo = busy + hi - lo, start
        hi = max(hi, end)
    busy += hi - lo
    total = sum(k.end_ns - k.start_ns for k in kernels)
    by_name: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for k in kernels:
        by_name[k.name][0] += k.end_ns - k.start_ns
        by_name[k.name][1] += 1
    ranked = sorted(by_name.items(), key=lambda item: -item[1][0])[:top]
    return {"kernels": len(kernels) / steps, "kernel_us": total / steps / 1e3, "busy_us": busy / steps / 1e3,
            "span_us": (spans[-1][1] - spans[0][0]) / steps / 1e3,
            "gemm_share": sum(k.end_ns - k.start_ns for k in kernels if is_gemm(k.name)) / total if total else 0.0,
            "top": [(name, ns / steps / 1e3, count / steps) for name, (ns, count) in ranked]}


def device_kernels(path: str) -> list[Kernel]:
    """The kernels of the first GPU plane of the ``.xplane.pb`` trace at ``path`` (empty without one)."""
    from jax.profiler import ProfileData

    for plane in ProfileData.from_file(path).planes:
        if plane.name.startswith("/device:GPU"):
            return [Kernel(event.name, event.start_ns, event.end_ns) for line in plane.lines
                    if line.name.startswith("Stream") for event in line.events if "Memcpy" not in event.name]
    return []


def kernel_profile(call: Callable[[], Any], steps: int) -> dict[str, Any] | None:
    """:func:`summarize` of the device kernels of one traced ``call()`` that runs ``steps`` steps
    (run once untraced first), or None where the trace has no GPU kernels (a CPU)."""
    jax.block_until_ready(call())
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp):
            jax.block_until_ready(call())
        paths = glob.glob(os.path.join(tmp, "**", "*.xplane.pb"), recursive=True)
        kernels = device_kernels(paths[0]) if paths else []
    return summarize(kernels, steps) if kernels else None
