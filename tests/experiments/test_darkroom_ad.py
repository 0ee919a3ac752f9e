"""experiments.darkroom_ad end to end at a tiny budget.

Oracles: the optimum over the held-out goals from the closed form ``H - d + 1`` (``H`` at
the start cell) on a numpy re-derivation of the goal split; the source curve from the saved
histories' rewards summed over 20-step blocks; the final loss from ``metrics.jsonl``.
"""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest

from experiments import darkroom_ad
from jaxrl_icl.icl import ad
from jaxrl_icl.rl.histories import load_histories, save_histories
from jaxrl_icl.run.checkpoint import CheckpointError
from jaxrl_icl.run.config import with_scale

H, UPDATES, CHUNK, EPISODES, SEEDS = 20, 20, 10, 3, 2
TINY = [
    "--optim.num-updates", str(UPDATES), "--optim.batch-size", "8", "--chunk-updates", str(CHUNK),
    "--checkpoint-every-chunks", "1", "--q-learning.num-episodes", "6", "--q-learning.epsilon-decay-episodes", "3",
    "--ad.context-episodes", "2", "--ad.backbone.width", "16", "--ad.backbone.num-layers", "1",
    "--ad.backbone.num-heads", "2",
    "--eval-episodes", str(EPISODES), "--eval-seeds", str(SEEDS), "--histories-per-goal", "1", "--no-progress",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("darkroom_ad") / "run"
    darkroom_ad.main(TINY + ["--run-dir", str(path)])
    return path


def held_out_goals(split_seed: int = 0, num_train: int = 65) -> np.ndarray:
    order = np.random.RandomState(split_seed).permutation(81)
    cells = np.array([(x, y) for x in range(9) for y in range(9)])  # all_goals' x-major order
    return cells[order[num_train:]]


@pytest.mark.slow
def test_run_directory_holds_config_metrics_plots_summary(run):
    config = json.loads((run / "config.json").read_text())
    assert config["experiment"] == "darkroom_ad" and config["config"]["optim"]["num_updates"] == UPDATES
    assert "jax" in json.loads((run / "versions.json").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["update"] for row in rows] == list(range(1, UPDATES + 1))
    for name in ("returns.png", "loss.png", "histories.h5"):
        assert (run / name).stat().st_size > 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["train_loss_final"] == pytest.approx(np.mean([r["loss"] for r in rows[-CHUNK:]]), rel=1e-6)
    assert summary["num_train_goals"] == 65 and summary["num_held_out_goals"] == 16
    curve = summary["return_per_episode"]
    assert len(curve) == EPISODES and all(0 <= x <= H for x in curve)
    assert summary["first_episode_return"] == curve[0] and summary["last_episode_return"] == curve[-1]


@pytest.mark.slow
def test_summary_optimum_and_source_curve_match_independent_recomputation(run):
    summary = json.loads((run / "summary.json").read_text())
    goals = held_out_goals()
    d = np.abs(goals - 4).sum(axis=1)
    optimum = np.where(d == 0, H, H - d + 1).mean()
    assert summary["optimal_return"] == pytest.approx(optimum, rel=1e-6)
    assert summary["last_percent_of_optimal"] == pytest.approx(100 * summary["last_episode_return"] / optimum,
                                                               rel=1e-6)
    histories, meta = load_histories(run / "histories.h5")
    held = np.any(np.all(meta["params"]["goal"][:, None] == goals[None], axis=-1), axis=1)
    assert held.sum() == 16 and summary["num_train_histories"] == 65
    returns = histories["reward"][held].astype(np.float64).reshape(16, -1, H).sum(axis=-1)
    assert summary["source_first_episode_return"] == pytest.approx(returns[:, 0].mean())
    assert summary["source_last_episode_return"] == pytest.approx(returns[:, EPISODES - 1].mean())


@pytest.mark.slow
def test_load_trained_restores_the_evaluated_params(run):
    """The restored params reproduce the summary's in-context curve; untrained ones do not."""
    config, model, params = darkroom_ad.load_trained(run)
    assert config.optim.num_updates == UPDATES and config.eval_episodes == EPISODES
    summary = json.loads((run / "summary.json").read_text())
    curve = darkroom_ad.evaluate_ad(config, model, params, held_out_goals()).mean(axis=(0, 1))
    np.testing.assert_allclose(curve, summary["return_per_episode"], rtol=1e-6)
    untrained = ad.init_params(model, jax.random.PRNGKey(config.seed))
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(untrained)))


@pytest.mark.slow
def test_load_trained_names_a_run_without_checkpoints(run, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run / "config.json", bare / "config.json")
    with pytest.raises(CheckpointError, match="checkpoint"):
        darkroom_ad.load_trained(bare)


@pytest.mark.slow
def test_histories_for_another_env_fail_before_any_run_directory(run, tmp_path, capsys):
    histories, meta = load_histories(run / "histories.h5")
    bad = save_histories(tmp_path / "other_env.h5", histories, {**meta, "env": "darkroom-10x10"})
    out_dir = tmp_path / "never"
    with pytest.raises(SystemExit) as err:
        darkroom_ad.main(TINY + ["--histories", str(bad), "--run-dir", str(out_dir)])
    assert err.value.code == 2
    message = capsys.readouterr().err
    assert "--histories" in message and str(bad) in message and "darkroom-10x10" in message
    assert not out_dir.exists()


def test_paper_preset_is_overridden_by_later_flags():
    argv = with_scale(["--scale", "paper", "--optim.lr", "1e-3"], {"paper": list(darkroom_ad.PAPER_FLAGS)})
    config, _ = darkroom_ad.parse_cli(darkroom_ad.DarkroomADConfig, argv)
    assert config.scale == "paper" and config.ad.backbone.width == 512 and config.ad.layout == "triplet"
    assert config.optim.lr == 1e-3 and config.optim.num_updates == 100_000
    assert with_scale(["--optim.lr", "1e-3"], {"paper": list(darkroom_ad.PAPER_FLAGS)}) == ["--optim.lr", "1e-3"]


@pytest.mark.slow
def test_resume_after_a_stop_gives_the_uninterrupted_result(run, tmp_path):
    from jaxrl_icl.run.checkpoint import Checkpoints

    stopped = tmp_path / "stopped"
    shutil.copytree(run, stopped)
    with Checkpoints(stopped / "checkpoints") as checkpoints:
        assert checkpoints.latest_update() == UPDATES
    for step_dir in (stopped / "checkpoints").iterdir():
        if step_dir.name.isdigit() and int(step_dir.name) > CHUNK:
            shutil.rmtree(step_dir)
    for name in ("summary.json", "returns.png", "loss.png"):
        (stopped / name).unlink()
    darkroom_ad.main(["--resume", str(stopped), "--no-progress"])
    assert json.loads((stopped / "summary.json").read_text()) == json.loads((run / "summary.json").read_text())
