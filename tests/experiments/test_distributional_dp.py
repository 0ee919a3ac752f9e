"""experiments.distributional_dp end to end with small settings: outputs, agreement of each
policy's Monte Carlo objective with its DP value, and the CVaR policy's mean-for-tail trade on
cliff walk."""

from __future__ import annotations

import json

import numpy as np
import pytest

from experiments import distributional_dp

N = 20000
ARGS = ["--cliff-horizon", "20", "--mdp-states", "5", "--mdp-horizon", "6", "--mdp-threshold",
        "3", "--mdp-target", "2", "--num-episodes", str(N)]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("ddp") / "run"
    distributional_dp.main(ARGS + ["--run-dir", str(path)])
    return path


@pytest.mark.slow
def test_outputs_written(run_dir, capsys):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary) == {"cliffwalk", "random-mdp"}
    labels = ["expectation", "CVaR_0.1", "CVaR_0.25", "CVaR_0.5"]
    for name, entry in summary.items():
        assert labels == list(entry["policies"])[:4], name
        assert len(entry["policies"]) == 6
    assert summary["cliffwalk"]["horizon"] == 20
    for png in ("return_histograms.png", "cliffwalk_paths.png"):
        assert (run_dir / png).stat().st_size > 10_000


@pytest.mark.slow
def test_mc_agrees_with_each_dp_objective(run_dir):
    """Mean (expectation), CVaR_alpha and threshold probability: MC within 4 standard errors
    (plus 1e-3) of the DP optimum of the policy's own objective."""
    summary = json.loads((run_dir / "summary.json").read_text())
    for name, entry in summary.items():
        rows = entry["policies"]
        exp = rows["expectation"]
        assert abs(exp["mean"] - exp["dp_objective"]) <= 4 * exp["mean_se"] + 1e-3, name
        thr = next(v for k, v in rows.items() if k.startswith("threshold"))
        p = thr["dp_objective"]
        assert abs(thr["threshold_prob"] - p) <= 4 * np.sqrt(p * (1 - p) / N) + 1e-3, name
        for alpha in (0.1, 0.25, 0.5):
            key = f"cvar_{alpha:g}"
            row = rows[f"CVaR_{alpha:g}"]
            assert abs(row[key] - row["dp_objective"]) <= 4 * row[key + "_se"] + 1e-3, name
            # No policy has a CVaR_alpha clearly above the optimum.
            for label, other in rows.items():
                assert other[key] <= row["dp_objective"] + 4 * other[key + "_se"] + 1e-3, label


@pytest.mark.slow
def test_cvar_policy_trades_mean_for_tail_on_cliffwalk(run_dir):
    rows = json.loads((run_dir / "summary.json").read_text())["cliffwalk"]["policies"]
    exp, safe = rows["expectation"], rows["CVaR_0.1"]
    assert safe["mean"] <= exp["mean"] + 4 * np.hypot(safe["mean_se"], exp["mean_se"])
    assert safe["mean"] < exp["mean"]  # strictly: the safer path is longer
    # CVaR_0.1 higher by more than 4 standard errors of the difference.
    assert safe["cvar_0.1"] > exp["cvar_0.1"] + 4 * np.hypot(safe["cvar_0.1_se"], exp["cvar_0.1_se"])
    # Also in exact terms: the DP CVaR_0.1 optimum beats the expectation policy's estimate.
    assert safe["dp_objective"] > exp["cvar_0.1"]


def test_bad_config_rejected():
    with pytest.raises(ValueError, match="slip_prob"):
        distributional_dp.DistributionalDPConfig(slip_prob=1.5)
    with pytest.raises(ValueError, match="num_episodes"):
        distributional_dp.DistributionalDPConfig(num_episodes=0)
