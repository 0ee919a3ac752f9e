"""experiments.darkroom_dpt and experiments.bandit_dpt end to end at tiny budgets.

Oracles: the optimum in the Dark Room summary is the closed form over the 20 held-out
goals, and the expert contexts are optimal episodes (their return is the closed form).
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.darkroom import dpt_goal_split, optimal_return
from experiments import bandit_dpt, darkroom_dpt
from jaxrl_icl.icl import transformer as tr
from jaxrl_icl.run.config import parse_cli, with_scale


@pytest.mark.slow
def test_darkroom_dpt_writes_summary_and_plot(tmp_path):
    run = tmp_path / "dr"
    darkroom_dpt.main(["--optim.num-updates", "20", "--chunk-updates", "10", "--trials", "1",
                       "--online-episodes", "2", "--dpt.context-len", "8", "--dpt.backbone.num-layers", "1",
                       "--run-dir", str(run), "--no-progress"])
    summary = json.loads((run / "summary.json").read_text())
    _, test = dpt_goal_split()
    optimum = float(jnp.mean(jax.vmap(lambda g: optimal_return(g, jnp.zeros(2, jnp.int32), 100))(test)))
    assert summary["optimal_return"] == pytest.approx(optimum) and summary["held_out_goals"] == 20
    for key in ("offline_random_context", "offline_expert_context", "online_first_episode", "online_last_episode"):
        assert 0.0 <= summary[key] <= 100.0
    for name in ("online", "online_episodic", "posterior_online", "posterior_online_episodic"):
        assert 0.0 <= summary[f"{name}_goal_reached_last_episode"] <= 1.0
    assert 0.0 < summary["pretraining_loss_floor"] < np.log(5)
    for name in ("online_return.png", "loss.png"):
        assert (run / name).stat().st_size > 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 20
    # the restored params reproduce the summary's offline numbers
    config, _, params = darkroom_dpt.load_trained(run)
    assert config.dpt.context_len == 8 and config.trials == 1
    result = darkroom_dpt.evaluate_dpt(config, params, test)
    assert result["offline_random"].mean() == pytest.approx(summary["offline_random_context"], rel=1e-6)
    assert result["offline_expert"].mean() == pytest.approx(summary["offline_expert_context"], rel=1e-6)
    # without the posterior's rollouts the model's own results are the same
    alone = darkroom_dpt.evaluate_dpt(config, params, test, with_posterior=False)
    assert set(result) - set(alone) == {"posterior_online", "posterior_online_episodic"}
    for name, value in alone.items():
        np.testing.assert_array_equal(value, result[name])


def test_goal_reached_stats_condition_on_the_previous_episode():
    returns = np.array([[0.0, 50.0, 0.0], [10.0, 0.0, 80.0]])
    stats = darkroom_dpt.goal_reached_stats(returns)
    # last episodes: 0 (missed) and 80 (reached); pairs (prev, next): (0,50) (50,0) (10,0) (0,80)
    assert stats == {"goal_reached_last_episode": 0.5, "return_after_goal_reached": 0.0,
                     "return_after_goal_missed": 65.0}
    never = darkroom_dpt.goal_reached_stats(np.zeros((3, 2)))
    assert never["return_after_goal_reached"] is None and never["return_after_goal_missed"] == 0.0


def test_expert_transitions_are_an_optimal_episode():
    goal, start = jnp.array([7, 3], jnp.int32), jnp.array([0, 0], jnp.int32)
    t = darkroom_dpt.expert_transitions(goal, start, 10, 100)
    assert float(t.reward.sum()) == float(optimal_return(goal, start, 100))
    np.testing.assert_array_equal(t.next_obs[:-1], t.obs[1:])


@pytest.mark.slow
def test_bandit_dpt_writes_regret_of_dpt_and_baselines(tmp_path):
    run = tmp_path / "b"
    bandit_dpt.main(["--optim.num-updates", "10", "--chunk-updates", "10", "--num-instances", "8",
                     "--dpt.context-len", "12", "--dpt.backbone.num-layers", "1", "--run-dir", str(run),
                     "--no-progress"])
    summary = json.loads((run / "summary.json").read_text())
    online = summary["online_regret_at_horizon"]
    assert set(online) == {"DPT (online)", "UCB (c=1)", "Thompson (Gaussian)", "greedy"}
    assert all(row["mean"] >= 0 for row in online.values())
    offline = summary["offline_suboptimality_at_horizon"]
    assert 0.0 <= offline["DPT (offline)"] <= 1.0 and 0.0 <= offline["empirical mean"] <= 1.0
    for name in ("online_regret.png", "offline_suboptimality.png", "loss.png"):
        assert (run / name).stat().st_size > 0
    # the restored params reproduce DPT's offline suboptimality; fresh ones are a different model
    config, model, params = bandit_dpt.load_trained(run)
    env, tasks = bandit_dpt.evaluation_tasks(config)
    restored = bandit_dpt.offline_suboptimality(config, params, env, tasks)["DPT (offline)"][:, -1].mean()
    assert restored == pytest.approx(offline["DPT (offline)"], rel=1e-6)
    fresh = tr.init(model, jax.random.key(1))
    assert not np.array_equal(jax.tree.leaves(fresh)[0], jax.tree.leaves(params)[0])


def test_unknown_scale_is_a_cli_error(capsys):
    with pytest.raises(SystemExit) as err:
        bandit_dpt.main(["--scale", "huge"])
    assert err.value.code == 2 and "--scale" in capsys.readouterr().err


@pytest.mark.parametrize("module, cls, expected", [
    (darkroom_dpt, darkroom_dpt.DarkroomDPTConfig,
     {"optim.num_updates": 100_000, "optim.batch_size": 128, "online_episodes": 40, "label_ties": "x_first"}),
    (bandit_dpt, bandit_dpt.BanditDPTConfig,
     {"dpt.context_len": 500, "optim.num_updates": 50_000, "optim.lr": 1e-4}),
])
def test_paper_presets_parse_and_later_flags_override_them(module, cls, expected):
    """The paper presets (run on a GPU only) stay valid configs with the paper's sizes."""
    config, _ = parse_cli(cls, with_scale(["--scale", "paper", "--seed", "3"], module.PRESETS))
    for name, value in expected.items():
        got = config
        for part in name.split("."):
            got = getattr(got, part)
        assert got == value, name
    assert config.scale == "paper" and config.seed == 3
    overridden, _ = parse_cli(cls, with_scale(["--scale", "paper", "--optim.num-updates", "7"], module.PRESETS))
    assert overridden.optim.num_updates == 7
