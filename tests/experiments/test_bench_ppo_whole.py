"""bench ppo's whole-process case: both scripts as fresh interpreters, one row of wall seconds."""

from __future__ import annotations

import pytest

from experiments.benchmarks import ppo as ppo_bench


def test_row_compares_median_wall_seconds_of_the_two_scripts(monkeypatch):
    calls = []
    times = {"experiments.ppo": iter([30.0, 10.0, 20.0]),
             "experiments.bench_ref.purejaxrl_ppo": iter([25.0, 40.0, 5.0])}

    def fake(argv):
        calls.append(argv)
        return next(times[argv[1]])

    monkeypatch.setattr(ppo_bench, "_wall_seconds", fake)
    cfg = ppo_bench.PPOBenchConfig(whole_seeds=3, whole_timesteps=2048, whole_repeats=3, seed=7)
    row = ppo_bench.whole_process(cfg)
    assert [argv[1] for argv in calls] == ["experiments.bench_ref.purejaxrl_ppo", "experiments.ppo"] * 3  # alternating
    assert row["ours"] == 20.0 and row["reference"] == 25.0 and row["unit"] == "s"
    assert row["ratio"] == pytest.approx(25.0 / 20.0)  # > 1: ours took less time
    assert "3 seeds x 2,048 steps" in row["case"]
    ours, ref = calls[1], calls[0]
    assert ours[ours.index("--num-seeds") + 1] == ref[ref.index("--num-seeds") + 1] == "3"
    assert ours[ours.index("--ppo.total-timesteps") + 1] == ref[ref.index("--total-timesteps") + 1] == "2048"
    assert ours[ours.index("--seed") + 1] == ref[ref.index("--seed") + 1] == "7"


def test_zero_seeds_skips_the_case(monkeypatch):
    monkeypatch.setattr(ppo_bench, "measure", lambda cfg, seeds: [])
    monkeypatch.setattr(ppo_bench, "whole_process", lambda cfg: pytest.fail("ran the whole-process case"))
    assert ppo_bench.run(ppo_bench.PPOBenchConfig(whole_seeds=0)) == []


@pytest.mark.slow
def test_both_scripts_run_at_a_tiny_size():
    row = ppo_bench.whole_process(ppo_bench.PPOBenchConfig(whole_seeds=1, whole_timesteps=1024))
    assert row["ours"] > 0 and row["reference"] > 0 and row["ratio"] == pytest.approx(row["reference"] / row["ours"])
