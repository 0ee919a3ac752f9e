"""experiments.bench end to end at tiny sizes: run directory, results and chart per suite."""

from __future__ import annotations

import json
import math

import pytest

from experiments import bench



def _run(suite, flags, tmp_path):
    run = tmp_path / suite
    bench.main([suite, *flags, "--run-dir", str(run)])
    rows = json.loads((run / "results.json").read_text())
    assert (run / f"{suite}.png").stat().st_size > 0
    assert json.loads((run / "config.json").read_text())["experiment"] == f"bench-{suite}"
    return rows


def _positive_finite(x):
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_envs_suite(tmp_path):
    rows = _run("envs", ["--num-envs", "8", "--num-steps", "10", "--repeats", "1"], tmp_path)
    assert rows[0]["env"] == "gymnax:CartPole-v1" and rows[0]["ratio_to_cartpole"] == pytest.approx(1.0)
    assert len(rows) == 1 + 7
    for row in rows:
        assert _positive_finite(row["ratio_to_cartpole"]) and _positive_finite(row["steps_per_s"])


def test_ppo_suite(tmp_path, capsys):
    # 3 seeds under a 1024-step cap: per-seed steps shrink to one 512-step rollout
    rows = _run("ppo", ["--num-seeds", "3", "--total-timesteps", "1024", "--max-total-steps", "1024",
                        "--repeats", "1"], tmp_path)
    assert [row["seeds"] for row in rows] == [3] and rows[0]["steps_per_seed"] == 512
    row = rows[0]
    for key in ("ours_steps_per_s", "reference_steps_per_s", "ratio", "ours_s_per_seed", "reference_s_per_seed"):
        assert _positive_finite(row[key]), key
    # the ratio is the ratio of the two throughputs, and per-seed time is total time / seeds
    assert row["ratio"] == pytest.approx(row["ours_steps_per_s"] / row["reference_steps_per_s"])
    assert row["ours_s_per_seed"] == pytest.approx(3 * 512 / row["ours_steps_per_s"] / 3)
    assert "ours/ref" in capsys.readouterr().out


def test_ppo_suite_rejects_bad_seed_counts(tmp_path):
    with pytest.raises(SystemExit):
        bench.main(["ppo", "--num-seeds", "0", "--run-dir", str(tmp_path / "bad")])
    assert not (tmp_path / "bad" / "results.json").exists()


def test_dp_suite(tmp_path, capsys):
    rows = _run("dp", ["--num-states", "12", "--num-atoms", "11", "--num-iterations", "2",
                       "--batch-size", "3", "--batch-states", "5", "--stock-states", "4",
                       "--stock-horizon", "3", "--repeats", "1"], tmp_path)
    numpy_row, ours, single, batch, *stock = rows
    assert [r["impl"] for r in (numpy_row, ours, single)] == ["numpy", "ours (jax)", "ours, 1 MDP"]
    assert batch["impl"] == "ours, batch of 3"
    assert [r["impl"] for r in stock] == ["C=8", "C=16", "C=32", "C=64"]
    for row in (ours, single, batch):
        assert _positive_finite(row["iters_per_s"]) and _positive_finite(row["ratio"])
    # ratios are the ratios of the throughputs / of the stock costs
    assert ours["ratio"] == pytest.approx(ours["iters_per_s"] / numpy_row["iters_per_s"])
    assert batch["ratio"] == pytest.approx(batch["iters_per_s"] / single["iters_per_s"])
    assert stock[0]["ratio"] == pytest.approx(1.0)
    for row in stock:
        assert _positive_finite(row["seconds"])
        assert row["ratio"] == pytest.approx(row["seconds"] / stock[0]["seconds"])
    assert "ours/numpy" in capsys.readouterr().out


def test_curriculum_suite(tmp_path, capsys):
    rows = _run("curriculum", ["--num-seeds", "1", "2", "--num-updates", "24", "--fit-rate", "12",
                               "--max-k", "3", "--repeats", "1"], tmp_path)
    assert [r["seeds"] for r in rows] == [1, 2]
    for row in rows:
        assert row["refits_per_seed"] == 2
        for key in ("ours_updates_per_s", "reference_updates_per_s", "ratio", "ours_s", "reference_s"):
            assert _positive_finite(row[key]), key
        # throughputs count every seed's updates, and the ratio is the ratio of the two
        assert row["ours_updates_per_s"] == pytest.approx(row["seeds"] * 24 / row["ours_s"])
        assert row["ratio"] == pytest.approx(row["ours_updates_per_s"] / row["reference_updates_per_s"])
    assert "ours/ref" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # fewer rounds than one refit
        bench.main(["curriculum", "--num-updates", "5", "--fit-rate", "10", "--run-dir", str(tmp_path / "bad")])
