"""experiments.lhf: the noisy history set, the gain with its interval, and a tiny end-to-end run.

Oracles: the replaced histories' own returns (real Q-learning vs the random policy on Dark
Room) stay flat and far below the learners'; the gain and its t-interval against a hand
computation (t quantile of 2 degrees of freedom from tables); the summary's gains recomputed
from its per-seed returns.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from experiments import lhf as lhf_experiment
from experiments.darkroom_ad import source_returns
from jaxrl_icl.icl import lhf
from jaxrl_icl.rl.collect import CollectConfig, collect_histories


def _histories(q_learning, seed):
    histories, meta, _, _ = collect_histories(CollectConfig(seed=seed, summary_episodes=1, q_learning=q_learning))
    return histories, np.asarray(meta["params"]["goal"])


def test_noisy_set_replaces_30_percent_per_goal_with_histories_that_do_not_learn():
    config = lhf_experiment.LHFExperimentConfig()
    assert config.noise_histories() == 3 and config.histories_per_goal == 10
    learner, goal = _histories(config.q_learning, 0)
    random, random_goal = _histories(lhf_experiment.random_policy(config.q_learning), 1)
    # Ten copies of the learners' run per goal, three of the random policy's (rows of a goal need not differ here).
    clean = {k: np.concatenate([v] * 10) for k, v in learner.items()}
    noise = {k: np.concatenate([v] * 3) for k, v in random.items()}
    clean_goal, noise_goal = np.concatenate([goal] * 10), np.concatenate([random_goal] * 3)
    noisy, replaced = lhf_experiment.noisy_set(clean, clean_goal, noise, noise_goal, 3)

    assert replaced.mean() == pytest.approx(0.3)
    groups = lhf.task_groups(clean_goal)
    np.testing.assert_array_equal(replaced[groups].sum(axis=1), 3)
    for key in clean:
        np.testing.assert_array_equal(noisy[key][~replaced], clean[key][~replaced])
    returns = source_returns(noisy, 20)  # [N, 100] per-episode returns
    # The random policy's rows: a flat curve (last 25 episodes no better than the first 25, within noise) far
    # below the learners', whose return rises from the random walk's level.
    noise_rows, clean_rows = returns[replaced], returns[~replaced]
    assert noise_rows[:, -25:].mean() < noise_rows[:, :25].mean() + 0.5
    assert clean_rows[:, -25:].mean() > clean_rows[:, :25].mean() + 3.0
    assert clean_rows[:, -25:].mean() > 4 * noise_rows[:, -25:].mean()
    # LHF scores the random policy's rows below the learners' (U = 1 + (...) / r_max ranks alike for any r_max > 0).
    u = np.asarray(lhf.utility(returns, 10.0))
    assert u[replaced].mean() < u[~replaced].mean()


def test_noisy_set_checks_goals_and_counts():
    goal = np.array([[1, 1], [1, 1], [2, 2], [2, 2]])
    data = {"x": np.arange(4)}
    out, replaced = lhf_experiment.noisy_set(data, goal, {"x": np.array([10, 20, 30, 40])}, goal[[0, 2, 1, 3]], 1)
    np.testing.assert_array_equal(out["x"], [10, 1, 20, 3])
    np.testing.assert_array_equal(replaced, [True, False, True, False])
    with pytest.raises(ValueError, match="per_goal"):
        lhf_experiment.noisy_set(data, goal, data, goal, 3)
    with pytest.raises(ValueError, match="other goals"):
        lhf_experiment.noisy_set(data, goal, data, goal + 1, 1)


def test_gain_percent_against_a_hand_computation():
    # Paired differences 1, 0, 2: mean 1, sd 1; t(0.975, 2 dof) = 4.302653 (tables); no-filtering mean 2.
    gain, low, high = lhf_experiment.gain_percent(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 5.0]))
    half = 4.302653 / math.sqrt(3) * 100 / 2
    assert gain == pytest.approx(50.0)
    assert (low, high) == pytest.approx((50.0 - half, 50.0 + half), rel=1e-6)
    assert all(math.isnan(x) for x in lhf_experiment.gain_percent(np.zeros(3), np.ones(3)))


@pytest.mark.slow
def test_lhf_experiment_end_to_end_writes_gains_table_and_figure(tmp_path):
    run = tmp_path / "run"
    lhf_experiment.main([
        "--run-dir", str(run), "--num-seeds", "2", "--histories-per-goal", "4", "--optim.num-updates", "6",
        "--optim.batch-size", "4", "--optim.warmup-updates", "1", "--chunk-updates", "3",
        "--q-learning.num-episodes", "4", "--q-learning.epsilon-decay-episodes", "2", "--ad.context-episodes", "1",
        "--ad.backbone.width", "16", "--ad.backbone.num-layers", "2", "--ad.backbone.num-heads", "2",
        "--eval-episodes", "2", "--eval-seeds", "1", "--no-progress",
    ])
    assert (run / "returns.png").stat().st_size > 0
    summary = json.loads((run / "summary.json").read_text())
    last = summary["last_episode_return"]
    for dataset in ("clean", "noisy"):
        base = np.array(last[dataset]["none"]["per_seed"])
        for method in ("reweight", "filter"):
            gain, low, high = lhf_experiment.gain_percent(base, np.array(last[dataset][method]["per_seed"]))
            got = summary["gain_percent"][dataset][method]
            assert got["mean"] == pytest.approx(gain, nan_ok=True)
            assert got["ci95"] == pytest.approx([low, high], nan_ok=True)
    share = summary["random_policy_share"]
    assert share["clean"] == {"none": 0.0, "reweight": 0.0, "filter": 0.0}
    assert share["noisy"]["none"] == pytest.approx(0.25)  # round(0.3 * 4) = 1 of 4 per goal
    assert (run / "table.md").read_text().count("\n") == 2 + 6
