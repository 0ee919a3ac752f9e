"""collect_offline end to end at a tiny size: files, metadata, the qualities' ordering."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from experiments import collect_offline
from jaxrl_icl.offline import load_d4rl, normalized_score

TINY = [
    "--num-transitions", "2000", "--num-envs", "10", "--eval-episodes", "8", "--chunk-updates", "2",
    "--ppo.num-envs", "32", "--ppo.total-timesteps", "40960", "--no-progress",
]


QUALITIES = ("random", "medium", "medium-replay", "expert", "medium-expert")


def check_files(run_dir, entry: dict, env_name: str) -> dict[str, float]:
    """Every quality's file loads with the run's metadata, size and score; the mean returns."""
    env, params = envs.make(env_name)
    obs_dim = int(np.prod(env.observation_space(params).shape))
    returns = {}
    for quality in QUALITIES:
        info = entry["datasets"][quality]
        dataset, meta = load_d4rl(run_dir / info["path"], action_bounds=(-1.0, 1.0))
        assert meta["quality"] == quality and meta["env_name"] == env_name
        assert meta["ref_min_score"] == pytest.approx(entry["ref_min_score"])
        assert dataset.size == info["transitions"] and dataset.observations.shape[1] == obs_dim
        # the stored score is the D4RL formula on the stored references
        if np.isfinite(info["mean_episode_return"]):  # medium-replay may hold no complete episode here
            assert info["normalized_score"] == pytest.approx(
                float(normalized_score("x", info["mean_episode_return"], meta)), rel=1e-6)
        returns[quality] = info["mean_episode_return"]
    assert entry["datasets"]["medium-expert"]["transitions"] == 2 * entry["datasets"]["expert"]["transitions"]
    assert entry["ref_max_score"] > entry["ref_min_score"]
    return returns


@pytest.mark.slow
def test_tiny_pendulum_run_writes_every_quality(tmp_path):
    summary = collect_offline.main([*TINY, "--run-dir", str(tmp_path / "run")])
    returns = check_files(tmp_path / "run", summary["gymnax:Pendulum-v1"], "gymnax:Pendulum-v1")
    # medium-expert is the union of the two: its complete (200-step) episodes average theirs
    assert np.isclose(returns["medium-expert"], (returns["medium"] + returns["expert"]) / 2, rtol=1e-9)
    assert (tmp_path / "run" / "pendulum-v1-learner.png").stat().st_size > 10_000


@pytest.mark.slow
def test_tiny_brax_run_writes_every_quality(tmp_path):
    """The paper scale's path (a Brax env, episodes of up to 1000 steps that may end early) at
    a tiny size: PPO on inverted_pendulum beats random and every quality is written."""
    argv = ["--envs", "brax:inverted_pendulum", "--num-transitions", "2000", "--num-envs", "4", "--eval-episodes",
            "4", "--chunk-updates", "4", "--ppo.num-envs", "32", "--ppo.num-steps", "64", "--ppo.total-timesteps",
            "32768", "--ppo.num-minibatches", "4", "--ppo.update-epochs", "4", "--no-progress"]
    summary = collect_offline.main([*argv, "--run-dir", str(tmp_path / "run")])
    returns = check_files(tmp_path / "run", summary["brax:inverted_pendulum"], "brax:inverted_pendulum")
    # episodes differ in length here: the union's mean is a weighted mean of the two
    assert min(returns["medium"], returns["expert"]) <= returns["medium-expert"] <= max(returns["medium"],
                                                                                         returns["expert"])
    assert (tmp_path / "run" / "inverted_pendulum-learner.png").stat().st_size > 10_000


def test_bad_values_fail_before_compute(tmp_path, capsys):
    with pytest.raises(SystemExit):
        collect_offline.main(["--num-transitions", "1001", "--run-dir", str(tmp_path / "r")])
    assert "num-transitions" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    with pytest.raises(SystemExit, match="--envs"):
        collect_offline.main(["--envs", "nope:Env", "--run-dir", str(tmp_path / "r")])
    assert not (tmp_path / "r").exists()
    # the reference returns average whole episodes: another episode limit than the env's is an error
    with pytest.raises(SystemExit, match="--max-episode-steps: gymnax:Pendulum-v1 ends episodes after 200 steps"):
        collect_offline.main(["--max-episode-steps", "100", "--run-dir", str(tmp_path / "r")])
    assert not (tmp_path / "r").exists()
