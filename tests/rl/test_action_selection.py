"""random_argmax and epsilon_greedy: frequencies against their exact probabilities."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from jaxrl_icl.rl.action_selection import epsilon_greedy, random_argmax

N = 20_000


def _chi2_pvalue(counts, probs):
    return scipy.stats.chisquare(counts, N * np.asarray(probs)).pvalue


def _freq(actions, num_actions):
    return np.bincount(np.asarray(actions).ravel(), minlength=num_actions)


def test_random_argmax_is_uniform_over_ties_and_never_off_the_max():
    values = jnp.array([1.0, 3.0, -2.0, 3.0, 3.0, 0.0])
    picks = jax.vmap(random_argmax, in_axes=(0, None))(jax.random.split(jax.random.key(0), N), values)
    counts = _freq(picks, 6)
    assert counts[[0, 2, 5]].sum() == 0
    assert _chi2_pvalue(counts[[1, 3, 4]], [1 / 3] * 3) > 1e-3
    # +inf ties (untried arms) and a single maximum.
    inf_picks = jax.vmap(random_argmax, in_axes=(0, None))(jax.random.split(jax.random.key(1), N),
                                                           jnp.array([jnp.inf, 0.0, jnp.inf]))
    assert _chi2_pvalue(_freq(inf_picks, 3)[[0, 2]], [0.5, 0.5]) > 1e-3 and _freq(inf_picks, 3)[1] == 0
    assert int(random_argmax(jax.random.key(2), jnp.array([0.0, 5.0, 1.0]))) == 1


def test_random_argmax_breaks_ties_per_row():
    values = jnp.zeros((N, 4))
    picks = random_argmax(jax.random.key(3), values)
    assert picks.shape == (N,) and picks.dtype == jnp.int32
    assert _chi2_pvalue(_freq(picks, 4), [0.25] * 4) > 1e-3


@pytest.mark.parametrize("epsilon", [0.0, 0.3, 1.0])
def test_epsilon_greedy_probabilities(epsilon):
    scores = jnp.array([0.0, 2.0, 2.0, 1.0])
    keys = jax.random.split(jax.random.key(4), (N, 3))
    # Ties to the first maximum: greedy is action 1.
    first = jax.vmap(lambda k: epsilon_greedy(k[0], k[1], scores, epsilon))(keys)
    want = epsilon / 4 + (1 - epsilon) * np.array([0, 1, 0, 0])
    _check(first, want)
    # Random ties: greedy is 1 or 2, each half of the time.
    rand = jax.vmap(lambda k: epsilon_greedy(k[0], k[1], scores, epsilon, k[2]))(keys)
    _check(rand, epsilon / 4 + (1 - epsilon) * np.array([0, 0.5, 0.5, 0]))


def _check(actions, want):
    counts = _freq(actions, 4)
    assert np.all(counts[want == 0] == 0)
    if np.sum(want > 0) > 1:
        assert _chi2_pvalue(counts[want > 0], want[want > 0]) > 1e-3


def test_epsilon_greedy_batched_rows_explore_independently():
    scores = jnp.tile(jnp.array([0.0, 1.0]), (N, 1))
    action = epsilon_greedy(jax.random.key(5), jax.random.key(6), scores, 0.5)
    assert action.shape == (N,) and action.dtype == jnp.int32
    assert _chi2_pvalue(_freq(action, 2), [0.25, 0.75]) > 1e-3
