"""Dark Room datasets from the exact optimal policy: uniform, epsilon-optimal and optimal,
checked against the closed-form optimal return, an exact dynamic programme for the uniform
walk, and the binomial / chi-square laws of the behaviour policy's actions."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs.darkroom import optimal_action, optimal_return
from jaxrl_icl.offline import load_d4rl
from jaxrl_icl.offline.collect import episode_returns
from jaxrl_icl.offline.generate import GRID_QUALITIES, generate_grid_qualities

CHI2_4DOF_P001 = 18.467  # chi-square quantile, 4 degrees of freedom, p = 0.001


ENV, PARAMS = envs.make("darkroom-9x9")  # one env object: its compiled rollouts serve every goal


def _generate(goal=None):
    params = PARAMS if goal is None else PARAMS.replace(goal=jnp.array(goal, jnp.int32))
    datasets, meta = generate_grid_qualities(jax.random.PRNGKey(0), ENV, params, "darkroom-9x9",
                                             num_transitions=20_000, num_envs=50, epsilon=0.3)
    return ENV, params, datasets, meta


@pytest.fixture(scope="module")
def default_goal():
    return _generate()


def _uniform_walk_return(env, params) -> float:
    """Exact expected return of uniform random actions: propagate the position distribution
    (stay, up, down, left, right, clipped at the walls; reward on reaching the goal)."""
    size, horizon = env.size, int(params.max_steps_in_episode)
    p = np.zeros((size, size))
    p[env.start] = 1.0
    total = 0.0
    for _ in range(horizon):
        nxt = p / 5  # stay
        for axis, step in ((1, 1), (1, -1), (0, -1), (0, 1)):
            moved = np.roll(p, step, axis=axis)
            edge = [slice(None)] * 2
            edge[axis] = 0 if step == 1 else -1  # what rolled over the wall stays on the wall cell
            wall = [slice(None)] * 2
            wall[axis] = -1 if step == 1 else 0
            moved[tuple(edge)] = 0.0
            moved[tuple(wall)] += p[tuple(wall)]
            nxt = nxt + moved / 5
        p = nxt
        total += p[tuple(np.asarray(params.goal))]
    return total


@pytest.mark.parametrize("goal", [None, (1, 6), (4, 4)])
def test_optimal_dataset_return_is_the_closed_form_shortest_path_return(goal):
    env, params, datasets, meta = _generate(goal)
    expected = float(optimal_return(params.goal, jnp.array(env.start), params.max_steps_in_episode))
    returns = episode_returns(datasets["optimal"], int(params.max_steps_in_episode))
    assert returns.size == 20_000 // 20 and np.all(returns == expected)
    assert meta["optimal"]["ref_max_score"] == expected and meta["optimal"]["mean_episode_return"] == expected
    assert (meta["optimal"]["goal_x"], meta["optimal"]["goal_y"]) == tuple(np.asarray(params.goal).tolist())
    obs, actions = datasets["optimal"]["observations"].astype(np.int32), datasets["optimal"]["actions"]
    assert actions.dtype == np.int32 and actions.ndim == 1
    np.testing.assert_array_equal(actions, jax.vmap(optimal_action, in_axes=(0, None))(obs, params.goal))


def test_uniform_actions_are_uniform_and_its_return_is_the_random_walks(default_goal):
    env, params, datasets, meta = default_goal
    actions = datasets["uniform"]["actions"]
    counts = np.bincount(actions, minlength=5)
    expected = len(actions) / 5
    assert np.sum((counts - expected) ** 2 / expected) < CHI2_4DOF_P001
    returns = episode_returns(datasets["uniform"], int(params.max_steps_in_episode))
    exact = _uniform_walk_return(env, params)
    assert abs(returns.mean() - exact) < 5 * returns.std() / np.sqrt(returns.size) + 1e-9
    assert meta["uniform"]["epsilon"] == 1.0 and meta["uniform"]["ref_min_score"] == pytest.approx(returns.mean())


def test_epsilon_optimal_takes_the_optimal_action_at_the_binomial_rate(default_goal):
    _, params, datasets, meta = default_goal
    obs, actions = datasets["epsilon-optimal"]["observations"].astype(np.int32), datasets["epsilon-optimal"]["actions"]
    hits = np.asarray(actions == jax.vmap(optimal_action, in_axes=(0, None))(obs, params.goal))
    rate = 1 - 0.3 + 0.3 / 5  # the optimal action, or a uniform draw that happens to be it
    assert abs(hits.mean() - rate) < 5 * np.sqrt(rate * (1 - rate) / hits.size)
    assert meta["epsilon-optimal"]["epsilon"] == pytest.approx(0.3)
    means = [meta[q]["mean_episode_return"] for q in GRID_QUALITIES]
    assert means == sorted(means)  # uniform < epsilon-optimal < optimal


@pytest.mark.slow  # about 40 s here: one collect run and two offline runs, each compiling
def test_collect_then_discrete_bc_and_cql_end_to_end_on_another_goal(tmp_path):
    from experiments import collect_offline, offline

    summary = collect_offline.main(["--envs", "darkroom-9x9", "--goal", "2", "7", "--num-transitions", "2000",
                                    "--num-envs", "10", "--epsilon", "0.5", "--no-progress",
                                    "--run-dir", str(tmp_path / "collect")])
    entry = summary["darkroom-9x9"]
    best = 20 - (2 + 3) + 1  # the closed form from the start (4, 4) to the goal (2, 7)
    assert set(entry["datasets"]) == set(GRID_QUALITIES) and entry["ref_max_score"] == best
    folder = tmp_path / "collect" / "datasets"
    dataset, meta = load_d4rl(folder / "darkroom-9x9-epsilon-optimal.hdf5", action_bounds=(0, 4))
    assert dataset.discrete_actions and meta["epsilon"] == 0.5 and meta["num_actions"] == 5
    assert (meta["goal_x"], meta["goal_y"]) == (2, 7)
    common = ["--dataset", "darkroom-9x9-optimal", "--datasets-dir", str(folder), "--num-seeds", "2",
              "--eval-episodes", "2", "--final-evals", "1", "--no-progress"]
    runs = {"bc": ["--num-updates", "400", "--eval-every", "200", "--bc.hidden", "32", "--bc.batch-size", "64"],
            "cql": ["--num-updates", "40", "--eval-every", "20", "--cql.hidden", "16", "--cql.batch-size", "8"]}
    for algo, flags in runs.items():
        result = offline.main(["--algo", algo, *common, *flags, "--run-dir", str(tmp_path / algo)])
        rows = [json.loads(line) for line in (tmp_path / algo / "metrics.jsonl").read_text().splitlines()]
        assert len(rows) == 4 and len(result["final_score_per_seed"]) == 2
        for r in rows:  # a deterministic grid: returns are whole numbers up to the optimum
            assert 0 <= r["eval_return"] <= best and r["eval_return"] == int(r["eval_return"])
            assert r["normalized_score"] == pytest.approx(
                100 * (r["eval_return"] - meta["ref_min_score"]) / (best - meta["ref_min_score"]), rel=1e-5)
    # behaviour cloning of the optimal data reaches (in a seed) the optimum of (2, 7), 16, where the
    # default goal (8, 8) allows at most 13: the evaluation runs on the dataset's own goal
    bc_rows = [json.loads(line) for line in (tmp_path / "bc" / "metrics.jsonl").read_text().splitlines()]
    assert max(r["eval_return"] for r in bc_rows) == best


def test_bad_goal_and_too_short_recordings_fail_before_compute(tmp_path):
    from experiments import collect_offline

    with pytest.raises(SystemExit, match="--goal: .*goal must lie inside the 9x9 grid"):
        collect_offline.main(["--envs", "darkroom-9x9", "--goal", "9", "1", "--run-dir", str(tmp_path / "r")])
    assert not (tmp_path / "r").exists()
    with pytest.raises(ValueError, match="fewer steps than one episode"):
        generate_grid_qualities(jax.random.PRNGKey(0), ENV, PARAMS, "darkroom-9x9", num_transitions=100, num_envs=10,
                                epsilon=0.3)
