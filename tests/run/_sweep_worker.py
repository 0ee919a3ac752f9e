"""Subprocess for tests/run/test_sweep.py: one 8-seed sweep; results and facts saved to .npz.

Usage: ``python tests/run/_sweep_worker.py OUT.npz``. The device count comes from
``XLA_FLAGS``; multi-process runs set the ``JAXRL_*`` variables read by
:func:`jaxrl_icl.run.sweep.init_distributed`. The test asserts on what this writes.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np

import jaxrl_icl.run.sweep as sw

NUM_SEEDS = 8
TRUE_W = (1.0, -2.0, 0.5)
LR = 0.05


def noisy_fit(key: jax.Array, true_w: jax.Array, lr: float) -> dict[str, jax.Array]:
    """A random walk plus minibatch SGD on a random linear-regression problem.

    ``true_w``: float32 [3]; ``lr``: SGD step size.
    Returns ``walk`` float32 [20] and ``w`` float32 [3].
    """
    walk_key, data_key, sgd_key = jax.random.split(key, 3)
    walk = jnp.cumsum(0.1 + jax.random.normal(walk_key, (20,)))
    x = jax.random.normal(data_key, (64, 3))
    y = x @ true_w + 0.1 * jax.random.normal(jax.random.fold_in(data_key, 1), (64,))

    def sgd_step(w, k):
        idx = jax.random.choice(k, 64, (8,), replace=False)
        grad = jax.grad(lambda w_: jnp.mean((x[idx] @ w_ - y[idx]) ** 2))(w)
        return w - lr * grad, None

    w, _ = jax.lax.scan(sgd_step, jnp.zeros(3), jax.random.split(sgd_key, 30))
    return {"walk": walk, "w": w}


def main(out_path: str) -> None:
    joined = sw.init_distributed()
    keys = sw.seed_keys(0, NUM_SEEDS)
    true_w = jnp.array(TRUE_W)
    out = sw.sweep_seeds(noisy_fit, keys, true_w, LR, to_host=False)
    host = sw.gather_seeds(out)
    again = sw.sweep_seeds(noisy_fit, keys, true_w, LR)
    resharded = sw.shard_seed_axis(out)
    reshard_is_noop = all(a is b for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(resharded)))
    host_resharded_rows, typed_key_rows, typed_key_data_equal, indivisible = [], [], True, ""
    if jax.device_count() > 1:
        from_host = sw.shard_seed_axis(host)
        host_resharded_rows = [s.data.shape[0] for s in from_host["walk"].addressable_shards]
        typed_keys = jax.random.split(jax.random.key(0), NUM_SEEDS)
        placed = sw.shard_seed_axis(typed_keys)
        typed_key_rows = [s.data.shape[0] for s in placed.addressable_shards]
        typed_key_data_equal = np.array_equal(
            sw.gather_seeds(jax.random.key_data(placed)), jax.random.key_data(typed_keys)
        )
        try:
            sw.sweep_seeds(noisy_fit, sw.seed_keys(0, jax.device_count() + 2), true_w, LR)
        except ValueError as err:
            indivisible = str(err)
    np.savez(
        out_path,
        joined=joined,
        process_count=jax.process_count(),
        device_count=jax.device_count(),
        local_device_count=jax.local_device_count(),
        out_devices=len(out["walk"].sharding.device_set),
        shard_rows=[shard.data.shape[0] for shard in out["walk"].addressable_shards],
        host_is_numpy=all(isinstance(v, np.ndarray) for v in jax.tree.leaves((host, again))),
        repeat_equal=all(np.array_equal(host[k], again[k]) for k in host),
        reshard_is_noop=reshard_is_noop,
        host_resharded_rows=host_resharded_rows,
        typed_key_rows=typed_key_rows,
        typed_key_data_equal=typed_key_data_equal,
        indivisible=indivisible,
        **host,
    )


if __name__ == "__main__":
    main(sys.argv[1])
