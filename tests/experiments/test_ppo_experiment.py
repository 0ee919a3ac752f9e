"""experiments.ppo end to end: run directory contents, and --resume after a stop."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from experiments import ppo as ppo_experiment
from jaxrl_icl.run.checkpoint import Checkpoints
from jaxrl_icl.run.config import parse_cli

# 8 updates of 512 steps in chunks of 2 updates, a checkpoint after every chunk.
ARGS = [
    "--num-seeds", "2", "--ppo.total-timesteps", "4096", "--chunk-updates", "2",
    "--checkpoint-every-chunks", "1", "--final-window", "2", "--no-progress",
]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("ppo") / "full"
    ppo_experiment.main(ARGS + ["--run-dir", str(path)])
    return path


def test_run_directory_holds_config_versions_metrics_plot_summary(full_run):
    config = json.loads((full_run / "config.json").read_text())
    assert config["experiment"] == "ppo" and config["config"]["ppo"]["total_timesteps"] == 4096
    versions = json.loads((full_run / "versions.json").read_text())
    assert {"python", "jax", "jaxlib", "flax"} <= versions.keys()
    rows = [json.loads(line) for line in (full_run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 8 * 2 and {row["seed"] for row in rows} == {0, 1}
    assert sorted({row["step"] for row in rows}) == [512 * u for u in range(1, 9)]
    assert (full_run / "episode_return.png").stat().st_size > 0
    summary = json.loads((full_run / "summary.json").read_text())
    per_seed = {}
    for row in rows:
        if row["episode_return"] is not None:
            per_seed.setdefault(row["seed"], []).append(row["episode_return"])
    # Independent recomputation of the headline number from metrics.jsonl.
    expected = [np.mean(per_seed[s][-2:]) for s in (0, 1)]
    np.testing.assert_allclose(summary["final_return_per_seed"], expected, rtol=1e-6)


@pytest.mark.slow
def test_resume_after_a_stop_reproduces_the_uninterrupted_run(full_run, tmp_path):
    stopped = tmp_path / "stopped"
    shutil.copytree(full_run, stopped)
    # Pretend the run stopped after update 4: later checkpoints never happened, and the
    # metrics file holds more lines than the last checkpoint (a chunk logged, not saved).
    with Checkpoints(stopped / "checkpoints") as checkpoints:
        kept = checkpoints.latest_update()
    assert kept == 8
    for step_dir in (stopped / "checkpoints").iterdir():
        if step_dir.name.isdigit() and int(step_dir.name) > 4:
            shutil.rmtree(step_dir)
    lines = (full_run / "metrics.jsonl").read_text().splitlines(keepends=True)
    (stopped / "metrics.jsonl").write_text("".join(lines[: 6 * 2]))
    for name in ("summary.json", "episode_return.png"):
        (stopped / name).unlink()

    ppo_experiment.main(["--resume", str(stopped), "--no-progress"])
    assert (stopped / "metrics.jsonl").read_bytes() == (full_run / "metrics.jsonl").read_bytes()
    assert json.loads((stopped / "summary.json").read_text()) == json.loads((full_run / "summary.json").read_text())


def test_bad_flag_fails_before_compute_naming_it(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        ppo_experiment.main(["--ppo.lr", "-1e-3", "--run-dir", str(tmp_path / "bad")])
    assert err.value.code == 2
    assert "lr" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_brax_envs_get_their_defaults_and_explicit_flags_win():
    parse = lambda argv: parse_cli(ppo_experiment.PPOExperimentConfig, ppo_experiment.with_env_defaults(argv))[0]  # noqa: E731
    cartpole = parse([])
    assert cartpole.ppo.num_envs == 4 and not cartpole.ppo.normalize_obs  # PureJaxRL defaults
    brax = parse(["--env", "brax:hopper", "--ppo.lr", "1e-3"])
    assert brax.num_seeds == 4 and brax.ppo.num_envs == 64 and brax.ppo.normalize_obs
    assert brax.ppo.normalize_reward and not brax.ppo.anneal_lr
    assert brax.ppo.lr == 1e-3  # the user's flag, not the preset's 3e-4


def test_carry_forward_matches_a_loop():
    rng = np.random.default_rng(0)
    returns = np.where(rng.random((5, 40)) < 0.6, np.nan, rng.normal(size=(5, 40)))
    expected = np.full_like(returns, np.nan)
    for i, row in enumerate(returns):
        last = np.nan
        for t, value in enumerate(row):
            last = value if np.isfinite(value) else last
            expected[i, t] = last
    np.testing.assert_array_equal(ppo_experiment.carry_forward(returns), expected)
