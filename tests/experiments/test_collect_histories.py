"""experiments.collect_histories end to end for both source algorithms, at a tiny budget.

Oracles: Dark Room 9x9 episodes last exactly 20 steps and never terminate, so each
history's episode returns are its rewards summed over consecutive 20-step blocks; the
summary's first/last means must equal those sums averaged over histories.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from envs.darkroom import all_goals
from experiments import collect_histories as experiment
from jaxrl_icl.rl.collect import CollectConfig, collect_histories, finished_episode_returns
from jaxrl_icl.rl.histories import load_histories

H, TASKS, K = 20, 81, 2

CASES = {
    # algo: (flags, parallel envs per task, episodes per env)
    "q_learning": (["--q-learning.num-episodes", "6", "--q-learning.epsilon-decay-episodes", "3"], 1, 6),
    # 3 updates of 2 envs x 40 steps: 120 steps = 6 episodes per env
    "ppo": (["--ppo.num-envs", "2", "--ppo.num-steps", "40", "--ppo.total-timesteps", "240",
             "--ppo.num-minibatches", "2"], 2, 6),
}


@pytest.fixture(scope="module", params=[
    pytest.param(a, marks=pytest.mark.slow) if a == "ppo" else a for a in sorted(CASES)])
def collected(request, tmp_path_factory):
    algo = request.param
    flags, num_envs, episodes = CASES[algo]
    run = tmp_path_factory.mktemp(algo) / "run"
    experiment.main(["--algo", algo, "--summary-episodes", str(K), "--run-dir", str(run)] + flags)
    return algo, run, num_envs, episodes


def test_dataset_loads_with_shapes_and_metadata(collected):
    algo, run, num_envs, episodes = collected
    histories, meta = load_histories(run / "histories.h5")
    n, t = TASKS * num_envs, episodes * H
    assert histories["obs"].shape == (n, t, 2) and histories["action"].shape == (n, t)
    for key in ("reward", "terminated", "truncated"):
        assert histories[key].shape == (n, t)
    assert meta["env"] == "darkroom-9x9" and meta["algorithm"] == algo
    assert meta["config"]["algo"] == algo
    # history b * num_envs + e belongs to task b
    np.testing.assert_array_equal(meta["params"]["goal"], np.repeat(np.asarray(all_goals(9)), num_envs, axis=0))
    assert np.all((histories["obs"] >= 0) & (histories["obs"] < 9))
    assert np.all((histories["action"] >= 0) & (histories["action"] < 5))
    assert not histories["terminated"].any()
    expected_truncated = np.zeros(t, bool)
    expected_truncated[H - 1 :: H] = True
    np.testing.assert_array_equal(histories["truncated"], np.broadcast_to(expected_truncated, (n, t)))
    assert set(np.unique(histories["reward"]).tolist()) <= {0.0, 1.0}
    assert histories["obs"].dtype == histories["action"].dtype == np.int8 and histories["reward"].dtype == np.float16
    assert (run / "returns.png").stat().st_size > 0


def test_reward_is_one_exactly_on_the_histories_own_goal(collected):
    """Each history's reward is 1 exactly when the step lands on its own goal (the next obs,
    except after the last step of an episode, where the env resets)."""
    _, run, _, _ = collected
    histories, meta = load_histories(run / "histories.h5")
    obs, reward, truncated = histories["obs"], histories["reward"], histories["truncated"]
    inside = ~truncated[:, :-1]
    on_goal = np.all(obs[:, 1:] == meta["params"]["goal"][:, None, :], axis=-1)
    np.testing.assert_array_equal((reward[:, :-1] == 1)[inside], on_goal[inside])


def test_summary_returns_equal_returns_recomputed_from_rewards(collected):
    _, run, num_envs, episodes = collected
    histories, _ = load_histories(run / "histories.h5")
    summary = json.loads((run / "summary.json").read_text())
    returns = histories["reward"].astype(np.float64).reshape(TASKS * num_envs, episodes, H).sum(axis=-1)
    assert summary["episodes"] == episodes and summary["num_histories"] == TASKS * num_envs
    assert summary[f"mean_return_first_{K}_episodes"] == pytest.approx(returns[:, :K].mean(), abs=1e-6)
    assert summary[f"mean_return_last_{K}_episodes"] == pytest.approx(returns[:, -K:].mean(), abs=1e-6)


def test_episode_returns_splits_at_done_flags():
    reward = np.array([[1.0, 2.0, 3.0, 4.0, 5.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    done = np.array([[False, True, False, True, False], [True, False, False, True, True]])
    # first row: episodes [1+2, 3+4] (5 unfinished); second row: [1, 3, 1] -> both cut to 2
    np.testing.assert_array_equal(finished_episode_returns(reward, done), [[3.0, 7.0], [1.0, 3.0]])


def test_ppo_budget_too_small_for_summary_fails_before_training(tmp_path):
    from jaxrl_icl.config import ConfigError
    from jaxrl_icl.rl.ppo import PPOConfig

    config = CollectConfig(
        algo="ppo", summary_episodes=50,
        ppo=PPOConfig(num_envs=2, num_steps=40, total_timesteps=80, num_minibatches=2, record_history=True),
    )
    with pytest.raises(ConfigError, match="summary_episodes"):
        collect_histories(config)
