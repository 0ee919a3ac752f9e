"""experiments.curriculum_toy: the run directory it writes, and RIAC against the reference code's own run."""

import json

import numpy as np
import pytest

from experiments import curriculum_toy


@pytest.mark.slow
def test_experiment_writes_summary_ordering_and_plot(tmp_path, capsys):
    run_dir = tmp_path / "run"
    curriculum_toy.main(["--teachers", "random", "alp-gmm", "--num-episodes", "300", "--score-every", "100",
                         "--num-seeds", "2", "--fit-rate", "50", "--max-k", "3", "--run-dir", str(run_dir),
                         "--no-progress"])
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = summary["final_percent_mastered"]
    assert set(rows) == {"random", "alp-gmm"}
    assert all(0 <= row["min"] <= row["mean"] <= row["max"] <= 100 for row in rows.values())
    assert all(row["rejected_reports"] == 0 for row in rows.values())
    assert summary["measured_ordering"] in ("random > alp-gmm", "alp-gmm > random")
    assert summary["reference_ordering"] == ""  # the reference run scored 10k and 20k episodes only
    assert (run_dir / "mastered.png").stat().st_size > 0
    out = capsys.readouterr().out
    assert str(run_dir) in out and "measured ordering" in out
    with pytest.raises(SystemExit):
        curriculum_toy.main(["--teachers", "nope", "--run-dir", str(tmp_path / "bad")])
    assert "--teachers" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_reference_run_values_follow_the_config():
    config = curriculum_toy.CurriculumToyConfig(teachers=("covar-gmm", "oracle"), num_episodes=12_000)
    assert curriculum_toy.reference_run(config) == {"covar-gmm": {10_000: (30.2, None, None)}}
    assert curriculum_toy.reference_run(curriculum_toy.CurriculumToyConfig(nb_cubes=5)) == {}
    assert curriculum_toy.ordering({"a": 1.0, "b": 3.0, "c": 2.0}) == "b > c > a"


@pytest.mark.slow  # ~3 minutes on a 2-core CPU
def test_riac_is_within_the_reference_codes_range_on_the_toy():
    # The authors' code, 8 seeds: 47.8% (45-51) of the cubes mastered at 20,000 episodes, 22.4% (19-25) at 10,000.
    config = curriculum_toy.CurriculumToyConfig(teachers=("riac",), num_seeds=8)
    scores, rejected, _ = curriculum_toy.run(config)
    mastered = scores["riac"]
    assert 45 <= mastered[:, 20].mean() <= 51, mastered[:, 20]
    assert 19 <= mastered[:, 10].mean() <= 25, mastered[:, 10]
    assert np.all(rejected["riac"] == 0)
