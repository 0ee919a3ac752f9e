"""Seed sweeps: run ``fn(key, ...)`` over N seeds in one ``jax.vmap``, sharded over all devices.

Seeds are a leading batch axis. With one device, :func:`sweep_seeds` is
``jax.jit(jax.vmap(fn))(keys, *args)``. With several devices (local, or across processes
joined by :func:`init_distributed`) the seed axis is sharded over a 1-D mesh of all global
devices with axis name ``"seeds"``; extra arguments are replicated. The per-seed
computation is the same program either way and jax's threefry PRNG is partitionable (the
default, ``jax_threefry_partitionable=True``, since jax 0.5), so per-seed results do not
depend on the device count.

Multi-process: every process calls the same functions with the same full ``keys`` array
(same seed everywhere); each one supplies its addressable shards of the global arrays and
:func:`gather_seeds` returns all seeds on every process.
"""

from __future__ import annotations

import functools
import ipaddress
import os
from typing import Any, Callable

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

SEED_AXIS = "seeds"


def seed_keys(seed: int, num_seeds: int) -> jax.Array:
    """``num_seeds`` independent PRNG keys from one integer seed: uint32 ``[num_seeds, 2]``."""
    if isinstance(num_seeds, bool) or not isinstance(num_seeds, int) or num_seeds < 1:
        raise ValueError(f"num_seeds: must be a positive int, got {num_seeds!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed: must be an int, got {seed!r}")
    return jax.random.split(jax.random.PRNGKey(seed), num_seeds)


def check_seed_count(num_seeds: int) -> None:
    """ValueError unless ``num_seeds`` splits evenly over ``jax.device_count()`` devices.

    Every sharded seed axis goes through this check; experiments call it (through
    :func:`jaxrl_icl.run.config.check_num_seeds`) before making a run directory.
    """
    devices = jax.device_count()
    if num_seeds % devices:
        raise ValueError(
            f"num_seeds ({num_seeds}) is not a multiple of the device count ({devices}); the seeds "
            f"are split evenly over the devices, so use a multiple of {devices}"
        )


def seed_mesh() -> Mesh:
    """1-D mesh over all global devices (``jax.devices()``), axis name ``"seeds"``."""
    return Mesh(np.asarray(jax.devices()), (SEED_AXIS,))


def seed_sharding() -> NamedSharding:
    """Sharding that splits a leading seed axis across :func:`seed_mesh`."""
    return NamedSharding(seed_mesh(), PartitionSpec(SEED_AXIS))


def _replicated_sharding() -> NamedSharding:
    return NamedSharding(seed_mesh(), PartitionSpec())


def _place(leaf: Any, sharding: NamedSharding) -> jax.Array:
    """Put one array onto ``sharding``; host values must be identical on every process."""
    if isinstance(leaf, jax.Array) and leaf.sharding == sharding:
        return leaf
    if jax.process_count() == 1 or (isinstance(leaf, jax.Array) and not leaf.is_fully_addressable):
        return jax.device_put(leaf, sharding)
    if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        data = _place(jax.random.key_data(leaf), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
    host = np.asarray(leaf)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _num_seeds(tree: Any) -> int:
    """The common leading-axis size of all leaves; ValueError when missing or inconsistent."""
    sizes = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in jax.tree.leaves(tree)}
    if None in sizes:
        raise ValueError("every leaf needs a leading seed axis; got a scalar leaf")
    if len(sizes) != 1:
        raise ValueError(f"leaves disagree on the seed-axis size: {sorted(sizes)}")
    return sizes.pop()


def shard_seed_axis(tree: Any) -> Any:
    """Place every leaf's leading (seed) axis onto :func:`seed_sharding`.

    No-op with one device, and for a single seed in a single process (one model, as the
    in-context experiments train, runs on the default device). Leaves already placed this way
    (e.g. a training state returned by a jitted chunk with that output sharding) are returned
    unchanged. Raises ValueError when ``num_seeds`` (the leading-axis size) is not a multiple
    of ``jax.device_count()``.
    """
    if jax.device_count() == 1:
        return tree
    num_seeds = _num_seeds(tree)
    if num_seeds == 1 and jax.process_count() == 1:
        return tree
    check_seed_count(num_seeds)
    sharding = seed_sharding()
    return jax.tree.map(lambda leaf: _place(leaf, sharding), tree)


def _replicate(tree: Any) -> Any:
    """Replicate every array leaf on all devices; Python scalars stay as they are."""
    if jax.device_count() == 1:
        return tree
    sharding = _replicated_sharding()
    python_scalar = (bool, int, float, complex)
    return jax.tree.map(
        lambda leaf: leaf if isinstance(leaf, python_scalar) else _place(leaf, sharding), tree
    )


def gather_seeds(tree: Any) -> Any:
    """Host numpy copies of a seed-leading pytree, all seeds on every process."""

    def gather(leaf: Any) -> np.ndarray:
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return np.asarray(jax.device_get(leaf))

    return jax.tree.map(gather, tree)


@functools.lru_cache(maxsize=64)
def _batched(fn: Callable[..., Any], num_args: int, sharded: bool) -> Callable[..., Any]:
    batched = jax.vmap(fn, in_axes=(0,) + (None,) * num_args)
    return jax.jit(batched, out_shardings=seed_sharding() if sharded else None)


def sweep_seeds(fn: Callable[..., Any], keys: jax.Array, *args: Any, to_host: bool = True) -> Any:
    """Run ``fn(key, *args)`` for every key in one jitted ``jax.vmap``.

    Args:
      fn: pure function ``(key, *args) -> pytree of arrays``.
      keys: ``[num_seeds, ...]`` PRNG keys, e.g. from :func:`seed_keys`; in multi-process
        runs the same full array on every process.
      *args: shared by all seeds (not vmapped); replicated on every device.
      to_host: return host numpy (all seeds on every process, via :func:`gather_seeds`);
        False returns the ``jax.Array`` outputs, seed axis sharded over all devices.

    Returns:
      ``fn``'s output pytree with a leading ``[num_seeds]`` axis on every leaf.

    Raises:
      ValueError: ``num_seeds`` is not a multiple of ``jax.device_count()``.
    """
    sharded = jax.device_count() > 1
    out = _batched(fn, len(args), sharded)(shard_seed_axis(keys), *_replicate(args))
    return gather_seeds(out) if to_host else out


def _env_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}: must be an integer, got {value!r}") from None


def init_distributed() -> bool:
    """Join the processes of a multi-host run into one global device mesh.

    Reads three environment variables, all or none of which must be set:

    - ``JAXRL_COORDINATOR``: ``host:port`` of process 0's coordinator service. When the
      host is a loopback address (``localhost``, ``127.x.x.x``, ``::1``) the coordinator
      binds to that address only; otherwise it listens on all interfaces.
    - ``JAXRL_NUM_PROCESSES``: total number of processes.
    - ``JAXRL_PROCESS_ID``: this process's index in ``[0, JAXRL_NUM_PROCESSES)``.

    With none set this does nothing and returns False (single process). Otherwise it calls
    ``jax.distributed.initialize`` (CPU collectives through gloo) and returns True. Call it
    before any other jax computation; calling it again once joined is a no-op.
    """
    names = ("JAXRL_COORDINATOR", "JAXRL_NUM_PROCESSES", "JAXRL_PROCESS_ID")
    present = [name for name in names if os.environ.get(name)]
    if not present:
        return False
    if len(present) != len(names):
        missing = ", ".join(name for name in names if name not in present)
        raise ValueError(f"{missing}: must be set together with {', '.join(present)}")
    if jax.distributed.is_initialized():
        return True
    coordinator = os.environ["JAXRL_COORDINATOR"]
    host, sep, port = coordinator.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"JAXRL_COORDINATOR: expected host:port, got {coordinator!r}")
    num_processes = _env_int("JAXRL_NUM_PROCESSES")
    process_id = _env_int("JAXRL_PROCESS_ID")
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ValueError(
            f"JAXRL_PROCESS_ID: must be in [0, JAXRL_NUM_PROCESSES={num_processes}), "
            f"got {process_id}"
        )
    if jax.config.jax_cpu_collectives_implementation is None:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=num_processes,
        process_id=process_id,
        coordinator_bind_address=coordinator if _is_loopback(host) else None,
    )
    return True


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
