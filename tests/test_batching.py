"""jaxrl_icl.batching: both forms (one at a time, vmapped) give the per-item results."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_icl import batching


def _newton_sqrt(a: jax.Array, b: jax.Array) -> jax.Array:
    """sqrt(a) + b by a data-dependent while_loop (per-item trip counts differ)."""
    def body(c):
        x, _ = c
        return 0.5 * (x + a / x), x
    x, _ = jax.lax.while_loop(lambda c: jnp.abs(c[0] - c[1]) > 1e-6, body, (a + 1.0, jnp.float32(0.0)))
    return x + b


@pytest.mark.parametrize("sequential", [True, False])
def test_map_batch_and_batch_function_match_items(monkeypatch, sequential):
    monkeypatch.setattr(batching, "sequential_on_cpu", lambda: sequential)
    a = jnp.array([0.25, 4.0, 90.0, 1e4], jnp.float32)
    b = jnp.arange(4, dtype=jnp.float32)
    expected = np.sqrt(np.asarray(a)) + np.asarray(b)
    mapped = jax.jit(lambda a, b: batching.map_batch(_newton_sqrt, a, b))(a, b)
    np.testing.assert_allclose(mapped, expected, rtol=1e-5)
    fn = batching.batch_function(_newton_sqrt)
    np.testing.assert_allclose(jax.jit(jax.vmap(fn))(a, b), expected, rtol=1e-5)
    shifted = expected - np.asarray(b) + 1.0
    np.testing.assert_allclose(jax.jit(jax.vmap(fn, in_axes=(0, None)))(a, 1.0), shifted, rtol=1e-5)
