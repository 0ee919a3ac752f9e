"""collect_offline end to end at a tiny size: files, metadata, the qualities' ordering."""

from __future__ import annotations

import numpy as np
import pytest

from experiments import collect_offline
from jaxrl_icl.offline import load_d4rl, normalized_score

TINY = [
    "--num-transitions", "2000", "--num-envs", "10", "--eval-episodes", "8", "--chunk-updates", "2",
    "--ppo.num-envs", "32", "--ppo.total-timesteps", "40960", "--no-progress",
]


@pytest.mark.slow
def test_tiny_pendulum_run_writes_every_quality(tmp_path):
    summary = collect_offline.main([*TINY, "--run-dir", str(tmp_path / "run")])
    entry = summary["gymnax:Pendulum-v1"]
    returns = {}
    for quality in ("random", "medium", "medium-replay", "expert", "medium-expert"):
        info = entry["datasets"][quality]
        dataset, meta = load_d4rl(tmp_path / "run" / info["path"], action_bounds=(-1.0, 1.0))
        assert meta["quality"] == quality and meta["env_name"] == "gymnax:Pendulum-v1"
        assert meta["ref_min_score"] == pytest.approx(entry["ref_min_score"])
        assert dataset.size == info["transitions"]
        # the stored score is the D4RL formula on the stored references
        if np.isfinite(info["mean_episode_return"]):  # medium-replay may hold no complete episode here
            assert info["normalized_score"] == pytest.approx(
                float(normalized_score("x", info["mean_episode_return"], meta)), rel=1e-6)
        returns[quality] = info["mean_episode_return"]
    assert entry["datasets"]["medium-expert"]["transitions"] == 4000
    assert entry["ref_max_score"] > entry["ref_min_score"]
    # medium-expert is the union of the two: its complete episodes average theirs
    assert np.isclose(returns["medium-expert"], (returns["medium"] + returns["expert"]) / 2, rtol=1e-9)
    assert (tmp_path / "run" / "pendulum-v1-learner.png").stat().st_size > 10_000


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
