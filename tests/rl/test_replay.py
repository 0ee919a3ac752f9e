"""Tests for the pytree ring buffer (``jaxrl_icl.rl.replay``) against a plain-Python deque."""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_icl.rl.replay import replay_add, replay_init, replay_sample


def _example():
    return {"obs": jnp.zeros((3,), jnp.float32), "action": jnp.int32(0), "done": jnp.bool_(False)}


def _items(start: int, n: int):
    """Items numbered start .. start + n - 1, each leaf encoding its number."""
    ids = np.arange(start, start + n)
    return {
        "obs": jnp.asarray(np.stack([ids, -ids, 2 * ids], axis=1), jnp.float32),
        "action": jnp.asarray(ids, jnp.int32),
        "done": jnp.asarray(ids % 3 == 0),
    }


def _ids_in_buffer(buffer) -> list[int]:
    """Item numbers of the valid entries, oldest first."""
    size, pos = int(buffer.size), int(buffer.position)
    actions = np.asarray(buffer.data["action"])
    order = range(size) if size < buffer.capacity else [(pos + i) % buffer.capacity for i in range(size)]
    return [int(actions[i]) for i in order]


@pytest.mark.parametrize("capacity, chunks", [(7, [3, 3, 3, 5, 7, 1, 2]), (5, [5, 5, 1]), (10, [1, 2, 3])])
def test_contents_match_a_deque_after_wrap_around(capacity, chunks):
    buffer = replay_init(_example(), capacity)
    add = jax.jit(replay_add)
    oracle = collections.deque(maxlen=capacity)
    start = 0
    for n in chunks:
        buffer = add(buffer, _items(start, n))
        oracle.extend(range(start, start + n))
        start += n
        assert int(buffer.size) == len(oracle)
        assert _ids_in_buffer(buffer) == list(oracle)
    # every leaf of each stored entry still belongs to the same item
    ids = np.asarray(buffer.data["action"])[: int(buffer.size)]
    np.testing.assert_array_equal(np.asarray(buffer.data["obs"])[: int(buffer.size)],
                                  np.stack([ids, -ids, 2 * ids], axis=1))
    np.testing.assert_array_equal(np.asarray(buffer.data["done"])[: int(buffer.size)], ids % 3 == 0)


def test_sampling_draws_only_valid_entries_uniformly():
    capacity = 50
    buffer = replay_init(_example(), capacity)
    buffer = replay_add(buffer, _items(100, 8))  # 8 valid entries, 42 zero-filled ones
    draws = jax.jit(replay_sample, static_argnums=2)(buffer, jax.random.PRNGKey(0), 16_000)
    ids = np.asarray(draws["action"])
    assert set(ids.tolist()) == set(range(100, 108))
    # leaves of a drawn entry come from the same item
    np.testing.assert_array_equal(np.asarray(draws["obs"]), np.stack([ids, -ids, 2 * ids], axis=1))
    # uniform: each of 8 ids has p = 1/8; 4.5 binomial standard deviations (~40 each)
    counts = np.bincount(ids - 100, minlength=8)
    assert np.all(np.abs(counts - 2000) < 4.5 * np.sqrt(16_000 * (1 / 8) * (7 / 8))), counts


def test_sampling_after_wrap_around_sees_exactly_the_deque():
    capacity = 6
    buffer = replay_init(_example(), capacity)
    oracle = collections.deque(maxlen=capacity)
    for start, n in [(0, 4), (4, 4), (8, 3)]:
        buffer = replay_add(buffer, _items(start, n))
        oracle.extend(range(start, start + n))
    ids = np.asarray(replay_sample(buffer, jax.random.PRNGKey(1), 3_000)["action"])
    assert set(ids.tolist()) == set(oracle)


def test_vmapped_buffers_are_independent():
    buffers = jax.vmap(lambda _: replay_init(_example(), 4))(jnp.arange(2))
    items = jax.tree.map(lambda a, b: jnp.stack([a, b]), _items(0, 3), _items(10, 3))
    buffers = jax.vmap(replay_add)(buffers, items)
    np.testing.assert_array_equal(np.asarray(buffers.data["action"]), [[0, 1, 2, 0], [10, 11, 12, 0]])
    np.testing.assert_array_equal(np.asarray(buffers.size), [3, 3])


def test_bad_items_name_the_leaf():
    buffer = replay_init(_example(), 4)
    bad_dtype = {**_items(0, 2), "action": jnp.zeros((2,), jnp.float32)}
    with pytest.raises(ValueError, match=r"items\['action'\]"):
        replay_add(buffer, bad_dtype)
    bad_shape = {**_items(0, 2), "obs": jnp.zeros((2, 4), jnp.float32)}
    with pytest.raises(ValueError, match=r"items\['obs'\]"):
        replay_add(buffer, bad_shape)
    with pytest.raises(ValueError, match="capacity=4"):
        replay_add(buffer, _items(0, 5))
    with pytest.raises(ValueError, match="tree structure"):
        replay_add(buffer, {"obs": jnp.zeros((1, 3))})
    with pytest.raises(ValueError, match="capacity"):
        replay_init(_example(), 0)
    with pytest.raises(ValueError, match="batch_size"):
        replay_sample(buffer, jax.random.PRNGKey(0), 0)
