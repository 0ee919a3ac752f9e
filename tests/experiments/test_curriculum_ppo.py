"""experiments.curriculum_ppo at a tiny budget: run directory, summary, plots; the task-pool env."""

import json

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import curriculum_ppo


def test_task_pool_env_plays_cartpole_with_the_drawn_task():
    env = curriculum_ppo.TaskPoolCartPole()
    cartpole = gymnax.environments.CartPole()
    tasks = jnp.array([[0.2, 3.0], [0.9, 12.0]], jnp.float32)
    params = curriculum_ppo.TaskPoolParams(tasks, 50)
    key = jax.random.key(1)
    obs, state = env.reset_env(key, params)
    assert any(np.array_equal(state.task, t) for t in np.asarray(tasks))
    inner_params = cartpole.default_params.replace(length=state.task[0], force_mag=state.task[1],
                                                   polemass_length=0.1 * state.task[0])
    # the same step as gymnax CartPole with the task's physics
    ref = cartpole.step_env(key, state.inner, 1, inner_params)
    got = env.step_env(key, state, 1, params)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-6)
    np.testing.assert_array_equal(got[1].task, state.task)  # the episode keeps its task
    state = state.replace(inner=state.inner.replace(time=50))
    assert bool(env.is_truncated(state, params))


def test_experiment_writes_summary_and_plots(tmp_path, capsys):
    run_dir = tmp_path / "run"
    # one teacher keeps the compile short; the random teacher shares every code path but the teacher
    curriculum_ppo.main(["--teachers", "alp-gmm", "--num-seeds", "2", "--num-rounds", "2", "--eval-every", "1", "--grid-size", "2",
                         "--tasks-per-round", "4", "--fit-rate", "4", "--max-k", "2", "--max-steps", "30",
                         "--ppo.num-envs", "4", "--ppo.num-steps", "16", "--run-dir", str(run_dir),
                         "--no-progress"])
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = summary["final_grid_competence"]
    assert set(rows) == {"alp-gmm"}
    for row in rows.values():
        assert len(row["per_seed"]) == 2 and all(0 <= x <= 1 for x in row["per_seed"])
        assert row["mean"] == pytest.approx(np.mean(row["per_seed"]))
    assert summary["env_steps_per_seed"] == 2 * 2 * 4 * 16
    assert (run_dir / "competence.png").stat().st_size > 0 and (run_dir / "grid.png").stat().st_size > 0
    assert str(run_dir) in capsys.readouterr().out


def test_bad_config_fails_before_compute(tmp_path, capsys):
    for flags in (["--teachers", "riac"], ["--length-range", "1.0", "0.5"], ["--eval-every", "7"]):
        with pytest.raises(SystemExit):
            curriculum_ppo.main([*flags, "--run-dir", str(tmp_path / "bad")])
        assert not (tmp_path / "bad").exists()
