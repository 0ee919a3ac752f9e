"""experiments.lcb: a tiny run writes its summary, table and figures; the slow test carries
the paper's qualitative bars on the default-size bandit and tabular-MDP settings."""

from __future__ import annotations

import json

import pytest

from experiments import lcb as experiment

SETTINGS = ["contextual_bandit", "mdp"]  # one bandit and one MDP setting: each costs a compilation


@pytest.mark.slow
def test_tiny_run_writes_summary_table_and_figures(tmp_path, capsys):
    path = tmp_path / "run"
    experiment.main(["--settings", *SETTINGS, "--sizes", "5", "100", "--expert-fractions", "0", "1",
                     "--bandit-instances", "3", "--mdp-instances", "2", "--mdp-states", "3", "--mdp-actions", "2",
                     "--mdp-horizon", "3", "--extra-penalty-scales", "0", "--run-dir", str(path)])
    summary = json.loads((path / "summary.json").read_text())
    assert set(summary["suboptimality"]) == set(SETTINGS)
    for setting in SETTINGS:
        table = summary["suboptimality"][setting]
        assert set(table) == {"lcb", "greedy", "bc", "lcb_x0"}
        assert table["lcb_x0"] == table["greedy"]  # LCB without a penalty is greedy
        for method in table.values():
            assert set(method) == {"0", "1"}
            assert all(set(row) == {"5", "100"} for row in method.values())
            assert all(v >= -1e-5 for row in method.values() for v in row.values())  # never above the optimum
        assert (path / f"lcb_{setting}.png").stat().st_size > 10_000
    # Expert-only data covering every context: each method recovers the expert's choices.
    assert all(summary["suboptimality"]["contextual_bandit"][m]["1"]["100"] <= 1e-6 for m in ("lcb", "greedy", "bc"))
    assert summary["instances"] == {"contextual_bandit": 3, "mdp": 2}
    out = capsys.readouterr().out
    assert "lcb N=100" in out and "mdp: sub-optimality" in out


@pytest.mark.slow
def test_qualitative_bars(tmp_path):
    """Bandit, contextual bandit and tabular-random MDP at N = 100 and 1000 (penalty scale 1):
    near-expert data (f = 0.9): LCB and BC within 0.01 of the optimum, greedy worse by more
    than 0.05; uniform data (f = 0): BC worse than LCB by more than 0.1, LCB within 0.05 of
    greedy (bandits) or within a tenth of BC's gap above greedy (MDP); every fraction: LCB within
    0.05 of the better of greedy and BC (bandits). Dark Room carries none of these: its
    deterministic dynamics make greedy exact once the goal is in the data, while the
    Hoeffding penalty keeps LCB close to BC on uniform data (see the module docstring)."""
    path = tmp_path / "run"
    experiment.main(["--settings", "bandit", "contextual_bandit", "mdp", "--sizes", "10", "100", "1000",
                     "--bandit-instances", "300", "--mdp-instances", "40", "--run-dir", str(path)])
    sub = json.loads((path / "summary.json").read_text())["suboptimality"]
    for setting in ("bandit", "contextual_bandit", "mdp"):
        s = sub[setting]
        for n in ("100", "1000"):
            assert s["lcb"]["0.9"][n] < 0.01 and s["bc"]["0.9"][n] < 0.01, (setting, n)
            assert s["bc"]["0"][n] > s["lcb"]["0"][n] + 0.1, (setting, n)
        assert s["greedy"]["0.9"]["100"] > s["lcb"]["0.9"]["100"] + 0.05, setting
    for setting in ("bandit", "contextual_bandit"):
        s = sub[setting]
        for n in ("100", "1000"):
            assert abs(s["lcb"]["0"][n] - s["greedy"]["0"][n]) < 0.05, (setting, n)
            for f in ("0", "0.25", "0.5", "0.75", "0.9", "1"):
                assert s["lcb"][f][n] <= min(s["greedy"][f][n], s["bc"][f][n]) + 0.05, (setting, f, n)
    lcb, greedy, bc = (sub["mdp"][m]["0"]["1000"] for m in ("lcb", "greedy", "bc"))
    assert lcb - greedy < 0.1 * (bc - greedy)
