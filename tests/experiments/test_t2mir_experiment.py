"""experiments.t2mir end to end at a tiny budget, and LHF in experiments.darkroom_ad.

Oracles: the summary's difference equals Welch's interval recomputed from its per-seed
last-episode returns; expert loads are shares summing to 1 per MoE; the filtered training set
keeps its size and per-goal counts and never holds a goal's worst history.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from experiments import darkroom_ad, t2mir
from jaxrl_icl.icl import lhf
from jaxrl_icl.stats import welch_difference

TINY = [
    "--num-seeds", "2", "--optim.num-updates", "6", "--optim.batch-size", "4", "--optim.warmup-updates", "1",
    "--chunk-updates", "3", "--q-learning.num-episodes", "4", "--q-learning.epsilon-decay-episodes", "2",
    "--ad.context-episodes", "1", "--ad.backbone.width", "16", "--ad.backbone.num-layers", "2",
    "--ad.backbone.num-heads", "2", "--eval-episodes", "2", "--eval-seeds", "1", "--no-progress",
]


@pytest.mark.slow
def test_t2mir_experiment_writes_the_difference_and_router_figures(tmp_path):
    t2mir.main(TINY + ["--run-dir", str(tmp_path / "run")])
    run = tmp_path / "run"
    for name in ("returns", "router_losses", "router_load"):
        assert (run / f"{name}.png").stat().st_size > 0
    summary = json.loads((run / "summary.json").read_text())
    last = summary["last_episode_return"]
    diff, lo, hi = welch_difference(last["dense"]["per_seed"], last["t2mir"]["per_seed"])
    got = summary["difference"]["ad"]["darkroom-9x9"]
    assert got["mean"] == pytest.approx(diff) and got["ci95"] == pytest.approx([lo, hi])
    assert set(summary["expert_load"]) == {"block_1/token/token_load", "block_1/task/task_load"}
    for shares in summary["expert_load"].values():
        assert sum(shares) == pytest.approx(1.0, abs=1e-5)


def test_darkroom_ad_filtering_keeps_size_and_drops_each_goals_worst():
    goals = np.array([[1, 1], [1, 1], [8, 8], [8, 8]], np.int32)
    reward = np.zeros((4, 40), np.float32)
    reward[0, 20:] = 1.0  # goal (1, 1): history 0 improves in episode 2, history 1 never
    reward[3, 10:20] = reward[3, 30:] = 1.0  # goal (8, 8): history 3 returns 10 twice, history 2 never
    done = np.zeros((4, 40), bool)
    done[:, 19::20] = True
    histories = {"reward": reward, "terminated": np.zeros_like(done), "truncated": done, "row": np.arange(4)}
    config = darkroom_ad.DarkroomADConfig(lhf=lhf.LHFConfig("filter"))
    start = np.array([4, 4], np.int32)
    kept, weights = darkroom_ad.select_training_histories(config, histories, goals, start, 20)
    assert weights is None and sorted(kept["row"]) == [0, 0, 3, 3]
    config = darkroom_ad.DarkroomADConfig(lhf=lhf.LHFConfig("reweight"))
    same, weights = darkroom_ad.select_training_histories(config, histories, goals, start, 20)
    np.testing.assert_array_equal(same["row"], np.arange(4))
    np.testing.assert_allclose(weights, [0.5, 0.0, 0.0, 0.5])
