"""Tests for the bandit baselines (``jaxrl_icl.rl.bandit_algorithms``)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.stats

import envs
from jaxrl_icl.rl.bandit_algorithms import (
    ArmStats,
    epsilon_greedy_bandit,
    greedy,
    run_bandit,
    thompson_bernoulli,
    thompson_gaussian,
    ucb,
    ucb_index,
)

NUM_INSTANCES, HORIZON = 1000, 500
ALGOS = {
    "ucb": ucb(1.0),
    "thompson": thompson_gaussian(noise_std=0.3),
    "greedy": greedy(),
    "epsilon_greedy": epsilon_greedy_bandit(0.1),
}


def _run_many(algo, env, params, seed, horizon=HORIZON):
    keys = jax.random.split(jax.random.key(seed), params.means.shape[0])
    run = jax.jit(jax.vmap(lambda k, p: run_bandit(algo, k, env, p, horizon)))
    return tuple(np.asarray(x) for x in run(keys, params))


@pytest.fixture(scope="module")
def gaussian_runs():
    """Every algorithm on the same 1000 DPT Gaussian bandit tasks (5 arms, noise 0.3, T = 500)."""
    env, _ = envs.make("bandit-gaussian")
    params = jax.vmap(env.sample_params)(jax.random.split(jax.random.key(0), NUM_INSTANCES))
    means = np.asarray(params.means)
    return means, {name: _run_many(algo, env, params, seed=1) for name, algo in ALGOS.items()}


@pytest.mark.parametrize("name", list(ALGOS))
def test_regret_is_cumulative_gap_and_nondecreasing(gaussian_runs, name):
    means, runs = gaussian_runs
    actions, rewards, regret = runs[name]
    assert actions.shape == rewards.shape == regret.shape == (NUM_INSTANCES, HORIZON)
    gaps = means.max(axis=1, keepdims=True) - np.take_along_axis(means, actions, axis=1)
    np.testing.assert_allclose(regret, np.cumsum(gaps.astype(np.float64), axis=1), rtol=1e-4, atol=1e-4)
    assert np.all(np.diff(regret, axis=1) >= 0)
    # Every algorithm tries all 5 arms first.
    np.testing.assert_array_equal(np.sort(actions[:, :5], axis=1), np.broadcast_to(np.arange(5), (NUM_INSTANCES, 5)))
    # Rewards are the pulled arm's mean plus N(0, 0.3^2) noise.
    noise = rewards - np.take_along_axis(means, actions, axis=1)
    assert abs(noise.mean()) < 4 * 0.3 / math.sqrt(noise.size)
    assert noise.std() == pytest.approx(0.3, rel=0.01)


@pytest.mark.parametrize("name", ["ucb", "thompson"])
def test_ucb_and_thompson_regret_well_below_greedy(gaussian_runs, name):
    _, runs = gaussian_runs
    final = runs[name][2][:, -1]
    greedy_final = runs["greedy"][2][:, -1]
    diff = greedy_final - final  # paired: same tasks
    assert final.mean() < 0.8 * greedy_final.mean()
    assert diff.mean() > 4 * diff.std(ddof=1) / math.sqrt(diff.size)


@pytest.mark.slow
def test_thompson_bernoulli_learns_on_bernoulli_arms():
    """Regret far below a uniformly random policy's expected T * (max mean - mean of means)."""
    env, _ = envs.make("bandit-bernoulli")
    horizon = 200
    params = jax.vmap(env.sample_params)(jax.random.split(jax.random.key(5), 100))
    actions, rewards, regret = _run_many(thompson_bernoulli(), env, params, seed=6, horizon=horizon)
    assert set(np.unique(rewards)) <= {0.0, 1.0}
    means = np.asarray(params.means)
    random_regret = horizon * (means.max(axis=1) - means.mean(axis=1))
    assert regret[:, -1].mean() < 0.25 * random_regret.mean()
    # Sublinear: the second half of the horizon costs less than the first.
    half = horizon // 2
    assert (regret[:, -1] - regret[:, half - 1]).mean() < 0.5 * regret[:, half - 1].mean()


def test_ucb_index_closed_form():
    stats = ArmStats(counts=jnp.array([2.0, 0.0, 5.0]), sums=jnp.array([1.0, 0.0, 4.0]))
    got = np.asarray(ucb_index(stats, 0.7))
    np.testing.assert_allclose(got[[0, 2]], [0.5 + 0.7 / math.sqrt(2), 0.8 + 0.7 / math.sqrt(5)], rtol=1e-6)
    assert got[1] == np.inf
    # An untried arm is pulled first; once all are tried, the largest index wins.
    key = jax.random.key(0)
    assert int(ucb(0.7).act(key, stats, 7)) == 1
    tried = ArmStats(counts=jnp.array([2.0, 1.0, 5.0]), sums=jnp.array([1.0, 0.2, 4.0]))
    # indices: 0.5 + 0.495 = 0.995, 0.2 + 0.7 = 0.9, 0.8 + 0.313 = 1.113
    assert int(ucb(0.7).act(key, tried, 8)) == 2
    assert int(ucb(0.0).act(key, tried, 8)) == 2


def _choice_frequencies(algo, stats, n=20000):
    arms = jax.jit(jax.vmap(lambda k: algo.act(k, stats, 10)))(jax.random.split(jax.random.key(7), n))
    return np.bincount(np.asarray(arms), minlength=stats.counts.shape[0]) / n


def test_gaussian_thompson_choice_probability():
    counts, sums, noise, mu0, s0 = np.array([3.0, 5.0]), np.array([1.2, 2.6]), 0.3, 0.5, 1.0
    # Conjugate posterior in the form mean = (noise^2 mu0 + s0^2 S) / (noise^2 + n s0^2).
    denom = noise**2 + counts * s0**2
    post_mean = (noise**2 * mu0 + s0**2 * sums) / denom
    post_var = noise**2 * s0**2 / denom
    p0 = scipy.stats.norm.cdf((post_mean[0] - post_mean[1]) / math.sqrt(post_var.sum()))
    freq = _choice_frequencies(thompson_gaussian(noise, mu0, s0), ArmStats(jnp.asarray(counts), jnp.asarray(sums)))
    assert abs(freq[0] - p0) < 4 * math.sqrt(p0 * (1 - p0) / 20000)


def test_beta_thompson_choice_probability():
    counts, sums = np.array([4.0, 6.0]), np.array([3.0, 2.0])
    a = scipy.stats.beta(1 + sums[0], 1 + counts[0] - sums[0])
    b = scipy.stats.beta(1 + sums[1], 1 + counts[1] - sums[1])
    p0 = scipy.integrate.quad(lambda x: a.pdf(x) * b.cdf(x), 0, 1)[0]  # P(A > B)
    freq = _choice_frequencies(thompson_bernoulli(), ArmStats(jnp.asarray(counts), jnp.asarray(sums)))
    assert abs(freq[0] - p0) < 4 * math.sqrt(p0 * (1 - p0) / 20000)


def test_epsilon_greedy_and_greedy_choice_probabilities():
    stats = ArmStats(counts=jnp.array([2.0, 2.0, 2.0, 2.0]), sums=jnp.array([0.2, 1.6, 0.4, 0.0]))
    freq = _choice_frequencies(epsilon_greedy_bandit(0.2), stats)
    want = np.array([0.05, 0.85, 0.05, 0.05])
    assert np.all(np.abs(freq - want) < 4 * np.sqrt(want * (1 - want) / 20000))
    np.testing.assert_array_equal(_choice_frequencies(greedy(), stats, n=100), [0, 1, 0, 0])
    # Untried arms tie at +inf and are chosen uniformly.
    fresh = greedy().init(4)
    freq = _choice_frequencies(greedy(), fresh)
    assert np.all(np.abs(freq - 0.25) < 4 * math.sqrt(0.25 * 0.75 / 20000))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="^c "):
        ucb(-1.0)
    with pytest.raises(ValueError, match="^epsilon "):
        epsilon_greedy_bandit(1.5)
    with pytest.raises(ValueError, match="^noise_std "):
        thompson_gaussian(noise_std=0.0)
    with pytest.raises(ValueError, match="^num_arms "):
        greedy().init(0)
    env, params = envs.make("bandit-gaussian")
    with pytest.raises(ValueError, match="^horizon "):
        run_bandit(greedy(), jax.random.key(0), env, params, 0)


@pytest.mark.slow
def test_bandits_experiment_writes_summary(tmp_path, capsys):
    import json

    from experiments import bandits

    run = tmp_path / "run"
    bandits.main(["--num-instances", "16", "--horizon", "30", "--run-dir", str(run)])
    assert str(run) in capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["horizon"] == 30 and len(summary["regret_at_horizon"]) == 4
    for row in summary["regret_at_horizon"].values():
        assert 0 <= row["ci95_low"] <= row["mean"] <= row["ci95_high"]
    assert (run / "regret.png").stat().st_size > 0
