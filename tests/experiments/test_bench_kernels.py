"""The kernel summary of experiments.benchmarks.kernels against hand-computed figures."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from experiments.benchmarks import offline
from experiments.benchmarks.kernels import Kernel, is_gemm, kernel_profile, summarize


def test_summary_counts_overlaps_once_and_splits_out_the_gemms():
    # two steps: a GEMM 0-10 overlapping a fusion 5-12, a gap, a fusion 20-25; then 30-40 and 38-44
    kernels = [Kernel("gemm_fusion_dot_3", 0, 10_000), Kernel("loop_add_fusion", 5_000, 12_000),
               Kernel("loop_add_fusion", 20_000, 25_000), Kernel("sm90_xmma_gemm_f32", 30_000, 40_000),
               Kernel("input_reduce_fusion", 38_000, 44_000)]
    s = summarize(kernels, steps=2)
    assert s["kernels"] == 2.5
    assert s["kernel_us"] == pytest.approx((10 + 7 + 5 + 10 + 6) / 2)
    assert s["busy_us"] == pytest.approx((12 + 5 + 14) / 2)  # [0, 12] + [20, 25] + [30, 44]
    assert s["span_us"] == pytest.approx(44 / 2)
    assert s["gemm_share"] == pytest.approx(20 / 38)
    assert s["top"][0] == ("loop_add_fusion", pytest.approx(6.0), 1.0)
    assert [name for name, _, _ in s["top"]][1:3] == ["gemm_fusion_dot_3", "sm90_xmma_gemm_f32"]
    assert is_gemm("Cutlass_80_tensorop") and not is_gemm("loop_multiply_select_fusion")
    with pytest.raises(ValueError, match="no kernels"):
        summarize([], steps=1)


def test_no_gpu_no_profile_and_no_rows():
    f = jax.jit(lambda x: jnp.tanh(x @ x))
    x = jnp.ones((8, 8))
    if jax.default_backend() == "cpu":
        assert kernel_profile(lambda: f(x), steps=1) is None
    assert offline.kernel_rows("td3_bc, 1 seed", None) == []
    rows = offline.kernel_rows("td3_bc, 1 seed", {"kernels": 110.0, "kernel_us": 180.0, "busy_us": 169.0,
                                                  "span_us": 170.0, "gemm_share": 0.35, "top": [("gemm", 9.0, 5.0)]})
    assert [(r["unit"], r["ours"]) for r in rows] == [("kernels", 110.0), ("s", pytest.approx(169e-6)),
                                                      ("fraction", 0.35)]
