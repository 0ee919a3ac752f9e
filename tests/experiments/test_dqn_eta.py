"""experiments.dqn_eta end to end at a tiny budget: run directory, summary consistency, and the
tabulated stock-policy evaluation against rollouts of the agent itself in the environment."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.cliffwalk import START
from experiments import dqn_eta
from jaxrl_icl.distributional.dqn import make_agent
from jaxrl_icl.run.config import parse_cli

ARGS = ["--num-seeds", "2", "--num-episodes", "4000", "--max-steps", "30", "--stock-min", "-300",
        "--eta.dqn.total-timesteps", "1600", "--eta.dqn.steps-per-update", "800",
        "--eta.dqn.learning-starts", "200", "--eta.dqn.buffer-size", "1000",
        "--eta.dqn.epsilon-anneal-steps", "800", "--eta.num-c0", "11"]


@pytest.mark.slow
def test_tiny_run_writes_consistent_outputs(tmp_path, capsys):
    run = dqn_eta.main(ARGS + ["--run-dir", str(tmp_path / "run")])
    summary = json.loads((run / "summary.json").read_text())
    for png in ("return_histograms.png", "episode_return.png"):
        assert (run / png).stat().st_size > 5_000
    agents = summary["agents"]
    assert set(agents) == {"DQN", "DηN"}
    for row in agents.values():
        means, cvars = row["mean_return"]["per_seed"], row["cvar_0.1"]["per_seed"]
        assert len(means) == 2
        # CVaR is the mean of the lowest 10%: never above the mean, never below the worst
        # possible 30-step return (a fall, -41, every two steps)
        assert all(-15 * 41 <= c <= m + 1e-4 for m, c in zip(means, cvars))
        assert all(0.0 <= p <= 1.0 for p in row["threshold_prob"]["per_seed"])
        assert row["cvar_0.1"]["mean"] == pytest.approx(np.mean(cvars))
    success = agents["DηN"]["cvar_0.1"]["mean"] > agents["DQN"]["cvar_0.1"]["mean"]
    assert summary["success_eta_cvar_beats_dqn"] == success
    assert all(0.0 <= c <= 100.0 for c in summary["eta_c0_per_seed"])
    assert "criterion" in capsys.readouterr().out


def _env_rollouts(config, agent, params, env, env_params, c0, key, n):
    """Undiscounted returns of ``n`` episodes of the agent acting greedily on (cell, stock) in
    the environment itself (not the tabular model), stock exact, ``max_steps`` steps."""

    def episode(key):
        obs, state = env.reset(key, env_params)

        def step(carry, k):
            obs, state, c, g, alive = carry
            a = agent.act(params, obs, c)
            obs, state, r, term, trunc, _ = env.step(k, state, a, env_params)
            return (obs, state, c + r, g + alive * r, alive * (1.0 - term)), None

        carry = (obs, state, jnp.float32(c0), jnp.float32(0.0), jnp.float32(1.0))
        (_, _, _, g, _), _ = jax.lax.scan(step, carry, jax.random.split(key, config.max_steps))
        return g

    return jax.jit(jax.vmap(episode))(jax.random.split(key, n))


@pytest.mark.slow
def test_tabulated_stock_policy_matches_rollouts_in_the_env():
    # one seed: the check is per seed, and a second one only doubles the training and rollouts
    config, _ = parse_cli(dqn_eta.DQNEtaExperimentConfig, ARGS + ["--num-seeds", "1"])
    trained, env, env_params = dqn_eta.train(config, ("DηN",))  # DQN's training is not checked here
    eta_state = trained["DηN"][0]
    returns, c0 = dqn_eta.evaluate(config, {"DηN": eta_state}, env, env_params)
    agent = make_agent(config.eta, env, env_params)
    env_params = env_params.replace(max_steps_in_episode=10 * config.max_steps)  # no auto-reset
    for s in range(config.num_seeds):
        params = jax.tree.map(lambda x, s=s: x[s], eta_state.params)
        assert float(c0[s]) == float(agent.initial_stock(params, jnp.array([START]))[0])
        direct = np.asarray(_env_rollouts(config, agent, params, env, env_params, c0[s],
                                          jax.random.key(s), config.num_episodes))
        ours = returns["DηN"][s]
        se = np.sqrt(ours.var() / ours.size + direct.var() / direct.size)
        assert abs(ours.mean() - direct.mean()) <= 4 * se + 1e-3, (s, ours.mean(), direct.mean())


def test_unknown_algorithm_is_named_before_training():
    config, _ = parse_cli(dqn_eta.DQNEtaExperimentConfig, ARGS)
    with pytest.raises(ValueError, match=r"algorithms: unknown \['PPO'\]"):
        dqn_eta.train(config, ("DηN", "PPO"))


def test_bad_flags_exit_before_running(tmp_path):
    with pytest.raises(SystemExit):
        dqn_eta.main(["--eta.objective", "expectation", "--run-dir", str(tmp_path / "bad")])
    with pytest.raises(SystemExit):
        dqn_eta.main(["--dqn-loss", "l1", "--run-dir", str(tmp_path / "bad2")])
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad2").exists()
