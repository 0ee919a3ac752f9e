"""envs.spaces: duck-typed space kinds, exact dtypes and encoders, against numpy oracles."""

import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces

from envs.spaces import exact_dtype, feature_encoder, is_box, is_discrete, smallest_int_dtype, state_encoder

_INTS = (np.int8, np.int16, np.int32, np.int64)


def _holds(dtype, low, high) -> bool:
    """Oracle: both ends survive a round trip through ``dtype`` (as Python ints, exactly)."""
    return all(int(np.array(v, dtype=object).astype(dtype)) == v for v in (low, high)) and all(
        np.iinfo(dtype).min <= v <= np.iinfo(dtype).max for v in (low, high)
    )


def test_space_kinds_by_duck_typing():
    assert is_discrete(spaces.Discrete(3)) and not is_box(spaces.Discrete(3))
    box = spaces.Box(0, 1, (2,), jnp.float32)
    assert is_box(box) and not is_discrete(box)
    other = spaces.Dict({"a": spaces.Discrete(2)})
    assert not is_box(other) and not is_discrete(other)


def test_smallest_int_dtype_every_boundary():
    # Every value within 2 of an int8/16/32/64 limit, as low = high and paired with 0.
    edges = sorted({e + d for t in _INTS for e in (np.iinfo(t).min, np.iinfo(t).max) for d in (-2, -1, 0, 1, 2)})
    for v in edges:
        for low, high in ((v, v), (min(v, 0), max(v, 0))):
            fits = [t for t in _INTS if np.iinfo(t).min <= low and high <= np.iinfo(t).max]
            if not fits:
                with pytest.raises(ValueError, match="no integer dtype"):
                    smallest_int_dtype(low, high)
                assert smallest_int_dtype(low, high, fallback=np.float64) == np.float64
                continue
            got = smallest_int_dtype(low, high)
            assert got == np.dtype(fits[0]) and _holds(got, low, high), (low, high, got)


def test_smallest_int_dtype_exhaustive_small_range():
    # Every [low, high] with ends in [-300, 300] (step 7): int8 iff both ends fit int8, else int16.
    values = np.arange(-300, 301, 7)
    for low in values:
        for high in values[values >= low]:
            want = np.int8 if -128 <= low and high <= 127 else np.int16
            assert smallest_int_dtype(low, high) == want
    # Arrays use their min and max; infinite bounds fall back.
    assert smallest_int_dtype(np.array([0, -129]), np.array([3, 5])) == np.int16
    assert smallest_int_dtype(-np.inf, 0, fallback=np.int32) == np.int32


@pytest.mark.parametrize(
    "space, want",
    [
        (spaces.Discrete(128), np.int8),
        (spaces.Discrete(129), np.int16),
        (spaces.Box(0, 8, (2,), jnp.int32), np.int8),
        (spaces.Box(-1000, 40000, (3,), jnp.int32), np.int32),
        (spaces.Box(0.0, 1.0, (2,), jnp.float32), np.float32),
    ],
)
def test_exact_dtype(space, want):
    assert exact_dtype(space) == want


def test_feature_encoder_one_hot_and_flatten():
    dim, encode = feature_encoder(spaces.Discrete(4))
    assert dim == 4
    np.testing.assert_array_equal(encode(jnp.array([2, 0])), np.eye(4)[[2, 0]])
    dim, encode = feature_encoder(spaces.Box(0, 9, (2, 3), jnp.int32))
    x = np.arange(24).reshape(4, 2, 3)
    got = encode(jnp.asarray(x))
    assert dim == 6 and got.dtype == jnp.float32
    np.testing.assert_array_equal(got, x.reshape(4, 6).astype(np.float32))
    assert feature_encoder(spaces.Dict({"a": spaces.Discrete(2)})) is None


def test_state_encoder_is_row_major_on_a_shifted_grid():
    encode, n, dtype = state_encoder(spaces.Box(np.array([-1, 2]), np.array([1, 5]), (2,), jnp.int32))
    assert n == 3 * 4 and dtype == np.int8
    cells = [(x, y) for x in range(-1, 2) for y in range(2, 6)]
    np.testing.assert_array_equal([int(encode(jnp.array(c))) for c in cells], np.arange(12))
    encode, n, dtype = state_encoder(spaces.Discrete(300))
    assert n == 300 and dtype == np.int16 and int(encode(jnp.int32(299))) == 299
    with pytest.raises(ValueError, match="observation_space"):
        state_encoder(spaces.Box(0.0, 1.0, (2,), jnp.float32))
