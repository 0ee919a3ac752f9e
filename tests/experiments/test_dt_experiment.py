"""Decision Transformers in experiments.offline and experiments.offline_table."""

from __future__ import annotations

import json

import pytest

from experiments import offline, offline_table
from jaxrl_icl.offline import decision_transformer as dt
from tests.experiments.test_bench import _run
from tests.experiments.test_offline_experiment import TINY, pendulum_file  # noqa: F401 - the fixture


def test_table_takes_dt_and_mo_dt_configs_as_given():
    config = offline_table.OfflineTableConfig(algos=("bc", "dt", "mo_dt"), hidden=(16,),
                                              mo_dt=dt.mo_dt_config(context_len=5, segment_len=10))
    cell = config.cell("mo_dt", "medium", "/data")
    assert cell.algo == "mo_dt" and cell.mo_dt == config.mo_dt and cell.mo_dt.multi_objective
    assert cell.dt == dt.DTConfig() and cell.bc.hidden == (16,)


def test_table_check_mo_dt_against_dt():
    def entry(mean):
        return {"mean": mean, "std": 0.0, "per_seed": [mean]}

    scores = {"dt": {"medium": entry(40.0), "medium-replay": entry(30.0)},
              "mo_dt": {"medium": entry(45.0), "medium-replay": entry(20.0)}}
    got = offline_table.checks(scores, {"medium": 30.0, "medium-replay": 10.0})
    assert got == {"mo_dt_beats_dt": {"medium": True, "medium-replay": False}}


@pytest.mark.slow  # compiles a transformer trainer with rollouts inside: about a minute on a loaded 2-core CPU
@pytest.mark.parametrize("algo", ["dt", "mo_dt"])
def test_tiny_dt_run(tmp_path, pendulum_file, algo):  # noqa: F811 - the imported fixture
    flag = "--" + algo.replace("_", "-")
    extra = [f"{flag}.context-len", "3", f"{flag}.segment-len", "6", f"{flag}.batch-size", "4",
             f"{flag}.backbone.width", "16", f"{flag}.backbone.num-layers", "1"]
    summary = offline.main(["--algo", algo, "--dataset", str(pendulum_file), *TINY, *extra,
                            "--run-dir", str(tmp_path / "run")])
    assert summary["algo"] == algo and len(summary["final_score_per_seed"]) == 2
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["normalized_score"] == pytest.approx(100 * (r["eval_return"] + 1200.0) / 1000.0, rel=1e-5)
               for r in rows)
    assert ("state_loss" in rows[0]) == (algo == "mo_dt")


@pytest.mark.slow  # compiles the default DT's cached and recomputed rollouts
def test_bench_dt_rollout_row(tmp_path):
    rows = _run("offline", ["--algos", "dt", "--dt-episodes", "1", "--dt-steps", "6", "--repeats", "1",
                            "--peak-size", "64"], tmp_path)
    peak, rollout = rows
    assert peak["unit"] == "FLOP/s"
    assert rollout["case"].startswith("dt rollout, 1 episodes x 6 steps (window 59 tokens)")
    assert rollout["unit"] == "env steps/s"
    assert rollout["ratio"] == pytest.approx(rollout["ours"] / rollout["reference"])
    assert (tmp_path / "offline" / "offline.png").stat().st_size > 0
