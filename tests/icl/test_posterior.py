"""The exact-posterior DPT policy on Dark Room.

Oracles: a brute-force posterior that checks every goal against every transition of the
context, labels from brute-force shortest paths, and the closed-form optimal return.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs.darkroom import optimal_return
from jaxrl_icl.icl import dpt, posterior
from jaxrl_icl.icl.evaluate import ContextTransition, evaluate, prefill

SIZE = 5
MOVES = {0: (0, 0), 1: (0, 1), 2: (0, -1), 3: (-1, 0), 4: (1, 0)}  # stay, up, down, left, right


def _step(pos, action):
    dx, dy = MOVES[action]
    return min(max(pos[0] + dx, 0), SIZE - 1), min(max(pos[1] + dy, 0), SIZE - 1)


def _labels(pos, goal, random_ties):
    """Brute force: the moves that shorten the Manhattan distance (stay on the goal)."""
    if pos == goal:
        return {0: 1.0}
    dist = lambda p: abs(p[0] - goal[0]) + abs(p[1] - goal[1])  # noqa: E731
    best = [a for a in range(1, 5) if dist(_step(pos, a)) < dist(pos)]
    if not random_ties:
        x_moves = [a for a in best if a in (3, 4)]
        return {(x_moves or best)[0]: 1.0}
    return {a: 1.0 / len(best) for a in best}


def _brute_force(context, pos, prior_cells, random_ties):
    """P(a | pos, context) by enumerating goals consistent with every (next cell, reward)."""
    weights = {g: 1.0 for g in prior_cells
               if all((nxt == g) == (r > 0) for nxt, r in context)}
    total = sum(weights.values())
    probs = np.zeros(5)
    for g, w in weights.items():
        for a, p in _labels(pos, g, random_ties).items():
            probs[a] += w / total * p
    return probs


# jitted (compiled once per context size): each eager op would be one more XLA compile
_empty_evidence = jax.jit(posterior.empty_evidence, static_argnums=0)
_add_transition = jax.jit(posterior.add_transition, static_argnums=3)
_action_probs = jax.jit(posterior.action_probs, static_argnums=(3, 4))


def _evidence(context, n):
    ev = _empty_evidence(n)
    for nxt, r in context:
        ev = _add_transition(ev, jnp.array(nxt), r, SIZE)
    return ev


@pytest.mark.parametrize("random_ties", [False, True])
def test_action_probs_match_brute_force_enumeration(random_ties):
    rng = np.random.default_rng(0)
    cells = list(itertools.product(range(SIZE), range(SIZE)))
    for trial in range(30):
        prior_cells = [cells[i] for i in rng.choice(len(cells), 12, replace=False)]
        goal = prior_cells[rng.integers(len(prior_cells))]
        visited = [cells[i] for i in rng.integers(0, len(cells), rng.integers(0, 8))]
        if trial % 3 == 0:
            visited.append(goal)  # a context that found the goal
        context = [(c, float(c == goal)) for c in visited]
        pos = cells[rng.integers(len(cells))]
        prior = np.zeros(SIZE * SIZE)
        prior[[x * SIZE + y for x, y in prior_cells]] = 1.0
        got = _action_probs(_evidence(context, 16), jnp.array(pos), jnp.asarray(prior), SIZE, random_ties)
        np.testing.assert_allclose(got, _brute_force(context, pos, prior_cells, random_ties), atol=1e-6)


def test_a_reward_outside_the_prior_still_identifies_the_goal():
    prior = jnp.zeros(SIZE * SIZE).at[0].set(1.0)
    ev = _evidence([((3, 4), 0.0), ((4, 4), 1.0)], 4)
    np.testing.assert_allclose(posterior.goal_posterior(ev, prior), np.eye(SIZE * SIZE)[4 * SIZE + 4])


def test_when_the_prior_is_excluded_the_unreached_cells_share_the_mass():
    prior = jnp.zeros(SIZE * SIZE).at[0].set(1.0)
    ev = _evidence([((0, 0), 0.0), ((0, 1), 0.0)], 4)
    expected = np.full(SIZE * SIZE, 1.0 / (SIZE * SIZE - 2))
    expected[[0, 1]] = 0.0
    np.testing.assert_allclose(posterior.goal_posterior(ev, prior), expected, atol=1e-7)


def test_the_window_forgets_the_oldest_transition():
    prior = jnp.ones(SIZE * SIZE)
    ev = _evidence([((0, 0), 0.0), ((0, 1), 0.0), ((0, 2), 0.0)], 2)
    post = np.asarray(posterior.goal_posterior(ev, prior))
    assert post[0] > 0 and post[1] == 0 and post[2] == 0


def test_with_the_goal_in_its_context_the_agent_is_optimal():
    env, base = envs.make("darkroom-10x10")
    goals = jnp.array([[7, 3], [0, 9], [9, 9]], jnp.int32)
    one = lambda g: ContextTransition(g[None], jnp.zeros(1, jnp.int32), jnp.ones(1), g[None], jnp.zeros(1, bool))  # noqa: E731

    @jax.jit  # one compiled program: the agent's prior, the prefilled contexts, the rollouts, the optimum
    def returns_and_optimum(key):
        agent = posterior.make_posterior_agent(10, goals, context_len=100, random_ties=True)
        contexts = jax.vmap(lambda g: prefill(agent, None, one(g)))(goals)
        tasks = jax.vmap(lambda g: base.replace(goal=g))(goals)
        out = evaluate(env, tasks, agent, None, key, num_steps=100, num_seeds=3, contexts=contexts)
        return out["reward"].sum(-1), jax.vmap(lambda g: optimal_return(g, jnp.zeros(2, jnp.int32), 100))(goals)

    returns, optimum = returns_and_optimum(jax.random.key(0))
    np.testing.assert_allclose(returns, np.broadcast_to(np.asarray(optimum)[:, None], (3, 3)))


@pytest.mark.slow
@pytest.mark.parametrize("random_ties", [False, True])
def test_loss_floor_without_context_is_the_prior_predictives_entropy(random_ties):
    """With no context the floor is the mean over query cells of the entropy of the label's
    prior predictive (brute force); a context can only lower it."""
    cells = list(itertools.product(range(SIZE), range(SIZE)))
    prior_cells = [cells[i] for i in (0, 3, 7, 12, 18, 24)]
    entropies = []
    for pos in cells:
        p = _brute_force([], pos, prior_cells, random_ties)
        entropies.append(-np.sum(p[p > 0] * np.log(p[p > 0])))
    goals = jnp.array(prior_cells, jnp.int32)
    mean, err = posterior.loss_floor(jax.random.key(0), goals, SIZE, 0, random_ties=random_ties, num_samples=20_000)
    assert abs(mean - np.mean(entropies)) < 5 * err + 1e-6
    with_context, _ = posterior.loss_floor(jax.random.key(1), goals, SIZE, 20, random_ties=random_ties,
                                           num_samples=2_000)
    assert with_context < mean - 0.05


@pytest.mark.parametrize("mix", [pytest.param(0.0, marks=pytest.mark.slow), 0.5,
                                 pytest.param(1.0, marks=pytest.mark.slow)])
def test_goal_posterior_is_bayes_under_the_rewarded_mix(mix):
    """Sample (goal, context) pairs from ``dpt.darkroom_sample`` with ``rewarded_mix`` on a 2x2
    grid with 2-transition contexts and count how often each goal comes with each context
    (its two (next cell, reward) pairs): those frequencies, ``P(goal | context)``, must equal
    ``goal_posterior`` of the context, for every context and every prefix of it."""
    size, goals = 2, jnp.array([[0, 0], [0, 1], [1, 1]], jnp.int32)  # cell (1, 0) is never a goal
    n = 400_000
    samples = jax.jit(jax.vmap(lambda k: dpt.darkroom_sample(k, goals, size, 2, rewarded_mix=mix)))(
        jax.random.split(jax.random.key(0), n))
    cell = np.asarray(posterior.flat_cells(samples.next_state, size))  # [n, 2]
    reward = np.asarray(samples.reward, int)
    goal = np.asarray(posterior.flat_cells(samples.task, size))
    prior = posterior.uniform_prior(goals, size)

    def evidence_of(c, r):
        ev = posterior.empty_evidence(2)
        for ci, ri in zip(c, r):
            ev = posterior.add_transition(ev, jnp.array([ci // size, ci % size]), ri, size)
        return ev

    checked = 0
    for length in (1, 2):  # every prefix, as DPT is trained on every prefix
        contexts, which = np.unique(np.concatenate([cell[:, :length], reward[:, :length]], axis=1), axis=0,
                                    return_inverse=True)
        for c, k in enumerate(contexts):
            rows = which.ravel() == c
            if rows.sum() < 4000:
                continue
            counts = np.bincount(goal[rows], minlength=size * size) / rows.sum()
            expected = np.asarray(posterior.goal_posterior(evidence_of(k[:length], k[length:]), prior))
            se = np.sqrt(expected * (1 - expected) / rows.sum())
            np.testing.assert_array_less(np.abs(counts - expected), 5 * se + 1e-9, err_msg=str(tuple(k)))
            checked += 1
    assert checked >= 12
    if mix:  # the mix adds rewarded transitions: more than uniform contexts hold
        assert reward.mean() > 0.2 * mix
