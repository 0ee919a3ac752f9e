"""experiments.offline end to end at a tiny size, on a dataset recorded here."""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest

import envs
from experiments import offline
from jaxrl_icl.offline import load_d4rl, make_dataset, save_d4rl
from jaxrl_icl.offline.collect import action_scale, record_rollouts, uniform_policy
from jaxrl_icl.rl.evaluate import policy_returns


@pytest.fixture(scope="module")
def pendulum_file(tmp_path_factory):
    env, params = envs.make("gymnax:Pendulum-v1")
    arrays = record_rollouts(jax.random.PRNGKey(0), env, params, uniform_policy(env, params), num_envs=4,
                             num_steps=200, action_scale=action_scale(env, params))
    path = tmp_path_factory.mktemp("data") / "pendulum-v1-random.hdf5"
    meta = {"env_name": "gymnax:Pendulum-v1", "ref_min_score": -1200.0, "ref_max_score": -200.0,
            "action_scale": 2.0, "mean_episode_return": float(arrays["rewards"].sum() / 4)}
    save_d4rl(path, make_dataset(arrays), meta)
    return path


TINY = ["--num-seeds", "2", "--num-updates", "40", "--eval-every", "20", "--eval-episodes", "2",
        "--final-evals", "1", "--chunk-evals", "1", "--no-progress"]


@pytest.mark.parametrize("algo", ["bc", pytest.param("td3_bc", marks=pytest.mark.slow)])
def test_tiny_run_writes_scores_and_summary(tmp_path, pendulum_file, algo):
    extra = ["--bc.hidden", "16", "--bc.batch-size", "8"] if algo == "bc" else [
        "--td3-bc.hidden", "16", "--td3-bc.batch-size", "8"]
    summary = offline.main(["--algo", algo, "--dataset", str(pendulum_file), *TINY, *extra,
                            "--run-dir", str(tmp_path / "run")])
    assert summary["gradient_steps"] == 40 and len(summary["final_score_per_seed"]) == 2
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert sorted({r["update"] for r in rows}) == [1, 2] and {r["seed"] for r in rows} == {0, 1}
    for r in rows:  # the score is the D4RL formula on the file's references
        assert r["normalized_score"] == pytest.approx(100 * (r["eval_return"] + 1200.0) / 1000.0, rel=1e-5)
    final = [r["normalized_score"] for r in rows if r["update"] == 2]
    np.testing.assert_allclose(sorted(final), sorted(summary["final_score_per_seed"]), rtol=1e-6)
    assert (tmp_path / "run" / "normalized_score.png").stat().st_size > 10_000

    # Loaded back, each seed's policy acting on the env's own observations returns what the
    # run logged at its last evaluation (same episodes: the key the evaluation folded).
    trained = offline.load_trained(tmp_path / "run")
    assert trained.gradient_steps == summary["gradient_steps"]
    env, params = envs.make("gymnax:Pendulum-v1")
    for seed in range(2):
        seed_params = jax.tree.map(lambda x, s=seed: x[s], trained.params)
        key = jax.random.fold_in(trained.state.key[seed], 0x5EED)
        returns = policy_returns(key, env, params, lambda obs, p=seed_params: trained.act(p, obs), 2, 200)
        logged = next(r["eval_return"] for r in rows if r["update"] == 2 and r["seed"] == seed)
        assert float(returns.mean()) == pytest.approx(logged, rel=1e-5)


def test_unknown_dataset_is_a_flag_error(tmp_path, capsys):
    with pytest.raises(SystemExit):
        offline.main(["--dataset", "no-such-dataset", "--datasets-dir", str(tmp_path), "--run-dir",
                      str(tmp_path / "r")])
    assert "--dataset" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_datasets_dir_may_be_a_collect_offline_run_directory(tmp_path, pendulum_file):
    """``--datasets-dir`` finds a generated dataset by name in the folder given and, for the run
    directory of a collect_offline run, in its ``datasets/``."""
    run_dir = tmp_path / "collect_run"
    (run_dir / "datasets").mkdir(parents=True)
    (run_dir / "datasets" / pendulum_file.name).write_bytes(pendulum_file.read_bytes())
    for folder in (run_dir, run_dir / "datasets"):
        dataset, meta = offline.resolve_dataset("pendulum-v1-random", str(folder))
        assert meta["env_name"] == "gymnax:Pendulum-v1" and dataset.rewards.shape == (800,)
    with pytest.raises(ValueError, match="collect_run/datasets"):
        offline.resolve_dataset("pendulum-v1-medium", str(run_dir))


def test_normalize_reward_trains_on_scaled_rewards_and_scores_the_env_returns(tmp_path, pendulum_file):
    """``--normalize-reward`` hands the trainer rewards times 1000 / (max - min episode return)
    of the file (its four episodes summed here) and records the factor; scores stay the D4RL
    formula on the env's returns. A Decision Transformer refuses the flag."""
    # BC as in the tiny run above (its compiled programs are reused): the flag acts on the data alone
    argv = ["--algo", "bc", "--dataset", str(pendulum_file), "--normalize-reward", *TINY[:-1], "--bc.hidden", "16",
            "--bc.batch-size", "8"]
    config, _ = offline.parse_cli(offline.OfflineConfig, argv, prog=offline.PROG)
    prepared = offline.prepare(config)
    rewards = np.asarray(load_d4rl(pendulum_file)[0].rewards, np.float64)
    returns = rewards.reshape(4, 200).sum(axis=1)
    assert prepared.reward_scale == pytest.approx(1000.0 / (returns.max() - returns.min()), rel=1e-6)
    np.testing.assert_allclose(np.asarray(prepared.data.rewards), rewards * prepared.reward_scale, rtol=1e-6)
    run = offline.RunDir.create("offline", config, path=tmp_path / "run")
    summary = offline.train(config, prepared, run, progress=False)
    assert summary["reward_scale"] == prepared.reward_scale
    for r in (json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()):
        assert r["normalized_score"] == pytest.approx(100 * (r["eval_return"] + 1200.0) / 1000.0, rel=1e-5)

    with pytest.raises(offline.ConfigError, match="normalize_reward"):
        offline.OfflineConfig(algo="dt", normalize_reward=True)


def test_a_generated_dataset_found_by_name_is_pinned_for_resume_and_loading(tmp_path, pendulum_file, monkeypatch):
    """A dataset named without ``--datasets-dir`` comes from the newest collect_offline run; the
    run's config.json names that folder, so a newer collect_offline run (other data under the
    same name) does not change what ``load_trained`` reads."""
    monkeypatch.chdir(tmp_path)
    first = tmp_path / "runs" / "collect_offline" / "20260101-000000" / "datasets"
    first.mkdir(parents=True)
    shutil.copy(pendulum_file, first / "pendulum-v1-random.hdf5")
    offline.main(["--algo", "bc", "--dataset", "pendulum-v1-random", *TINY, "--bc.hidden", "16", "--bc.batch-size",
                  "8", "--run-dir", "run"])
    stored = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert stored["datasets_dir"] == "runs/collect_offline/20260101-000000/datasets"

    newer = tmp_path / "runs" / "collect_offline" / "20270101-000000" / "datasets"
    newer.mkdir(parents=True)
    dataset, meta = load_d4rl(pendulum_file)
    arrays = dataset.arrays()
    arrays["rewards"] = arrays["rewards"] - 1.0
    save_d4rl(newer / "pendulum-v1-random.hdf5", make_dataset(arrays), meta)
    assert offline.resolve_dataset("pendulum-v1-random", "")[0].rewards.mean() < dataset.rewards.mean() - 0.5
    trained = offline.load_trained("run")  # reads the first file, not the newest
    np.testing.assert_array_equal(trained.prepared.data.rewards, dataset.rewards)
