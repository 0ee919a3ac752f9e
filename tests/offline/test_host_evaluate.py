"""Host evaluation in gymnasium's MuJoCo envs, against plain gymnasium loops, and
experiments.offline on a D4RL-layout file with Hopper's shapes."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_icl.offline import ObsNormalizer, make_dataset, reference_returns, save_d4rl

gym = pytest.importorskip("gymnasium")
pytest.importorskip("imageio")

from jaxrl_icl.offline.host_evaluate import HostEvaluator, episode_seeds, gymnasium_env_id  # noqa: E402


def _plain_return(env_id: str, seed: int, act, max_steps: int) -> float:
    """One episode as a plain gymnasium loop: reset with ``seed``, act until it ends."""
    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    total = 0.0
    for _ in range(max_steps):
        obs, reward, terminated, truncated, _ = env.step(act(obs))
        total += reward
        if terminated or truncated:
            break
    return total


def test_names_map_to_gymnasium_mujoco_envs():
    assert gymnasium_env_id("hopper-medium-v2") == "Hopper-v5"
    assert gymnasium_env_id("halfcheetah-medium-expert-v2") == "HalfCheetah-v5"
    assert gymnasium_env_id("mujoco/walker2d/simple-v0") == "Walker2d-v5"
    assert gymnasium_env_id("Hopper-v5") == "Hopper-v5"
    for jax_env in ("brax:hopper", "gymnax:Pendulum-v1", "darkroom-9x9", "pendulum-v1-medium"):
        assert gymnasium_env_id(jax_env) is None
    assert reference_returns("mujoco/hopper/medium-v0") == reference_returns("hopper-medium-v2")


def test_zero_action_return_equals_a_plain_gymnasium_loop():
    evaluate = HostEvaluator("Hopper-v5", lambda params, obs: jnp.zeros(3) * params, num_episodes=2,
                             max_episode_steps=300)
    key = jax.random.PRNGKey(4)
    expected = np.mean([_plain_return("Hopper-v5", int(s), lambda obs: np.zeros(3), 300)
                        for s in episode_seeds(key, 2)])
    np.testing.assert_allclose(evaluate(key, jnp.float32(1.0)), expected, rtol=1e-6)


def test_linear_policy_with_normaliser_and_scale_equals_a_plain_loop_per_seed():
    w = np.random.default_rng(0).normal(size=(2, 6, 17)).astype(np.float32) * 0.3  # two seeds' params
    norm = ObsNormalizer(mean=jnp.full(17, 0.1), std=jnp.full(17, 2.0))
    evaluate = HostEvaluator("HalfCheetah-v5", lambda p, obs: jnp.tanh(p @ obs), num_episodes=2,
                             max_episode_steps=50, normalizer=norm, action_scale=0.5)
    keys = jax.random.split(jax.random.PRNGKey(1), 2)
    got = evaluate.evaluate_seeds(keys, jnp.asarray(w))
    for s in range(2):
        act = lambda obs, s=s: 0.5 * np.tanh(w[s] @ ((obs.astype(np.float32) - 0.1) / 2.0))
        expected = np.mean([_plain_return("HalfCheetah-v5", int(e), act, 50) for e in episode_seeds(keys[s], 2)])
        np.testing.assert_allclose(got[s], expected, rtol=1e-4)


@pytest.fixture(scope="module")
def hopper_file(tmp_path_factory):
    """A D4RL-layout file with Hopper's shapes (obs 11, act 3) and no metadata, named like D4RL's."""
    rng = np.random.default_rng(0)
    n = 400
    arrays = {"observations": rng.normal(size=(n, 11)).astype(np.float32),
              "actions": rng.uniform(-1, 1, size=(n, 3)).astype(np.float32),
              "rewards": rng.normal(size=n).astype(np.float32), "terminals": np.zeros(n, bool),
              "timeouts": np.arange(n) % 100 == 99}
    arrays["next_observations"] = np.roll(arrays["observations"], -1, axis=0)
    path = tmp_path_factory.mktemp("d4rl") / "hopper-medium-v2.hdf5"
    save_d4rl(path, make_dataset(arrays))
    return path


@pytest.mark.slow  # about 12 s here: the run's compile and orbax checkpoints
def test_offline_experiment_trains_on_a_hopper_file_and_evaluates_in_hopper_v5(tmp_path, hopper_file):
    from experiments import offline

    summary = offline.main(["--algo", "bc", "--dataset", str(hopper_file), "--num-seeds", "2", "--num-updates", "20",
                            "--eval-every", "10", "--eval-episodes", "2", "--max-episode-steps", "50",
                            "--final-evals", "1", "--bc.hidden", "16", "--bc.batch-size", "8", "--no-progress",
                            "--run-dir", str(tmp_path / "run")])
    assert summary["env"] == "hopper-medium-v2" and summary["gradient_steps"] == 20
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert sorted({r["update"] for r in rows}) == [1, 2] and {r["seed"] for r in rows} == {0, 1}
    low, high = reference_returns("hopper")  # D4RL's published Hopper references
    for r in rows:
        assert np.isfinite(r["eval_return"]) and 0 < r["eval_return"] < 50 * 6  # at most ~6 reward per step
        assert r["normalized_score"] == pytest.approx(100 * (r["eval_return"] - low) / (high - low), rel=1e-5)
    final = sorted(r["normalized_score"] for r in rows if r["update"] == 2)
    np.testing.assert_allclose(final, sorted(summary["final_score_per_seed"]), rtol=1e-6)


def test_mismatched_shapes_are_a_flag_error(tmp_path, hopper_file, capsys):
    from experiments import offline

    with pytest.raises(SystemExit):
        offline.main(["--dataset", str(hopper_file), "--env", "Walker2d-v5", "--run-dir", str(tmp_path / "r")])
    assert "Walker2d-v5 has observations 17" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
