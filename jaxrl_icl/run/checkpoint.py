"""Orbax checkpoints of a training-state pytree, verified on restore.

A checkpoint ``<dir>/<update>/`` holds two orbax items: ``state`` (the pytree, saved with
``StandardSave`` from its device shardings, asynchronously after a synchronous copy to host,
so the caller may donate the buffers right after :meth:`Checkpoints.save` returns) and
``manifest`` (JSON: every leaf's path, shape, dtype and a checksum of its bits).

Orbax alone restores a garbled data file without complaint (its chunks carry no checksum),
so restoring checks the target's structure, shapes and dtypes against the manifest first
and the restored bits against the checksums after; any problem raises
:class:`CheckpointError` naming the checkpoint and the leaf. Nothing falls back to an
older checkpoint or a fresh start silently. A checkpoint that cannot be written (disk
full, read-only file system) raises :class:`~jaxrl_icl.run.rundir.RunWriteError` naming
the checkpoint and saying whether the run can be resumed from an earlier one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jaxrl_icl.run.rundir import write_error

_UINT_OF_SIZE = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, corrupt or does not match the current state."""


def _fmix32(h: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finaliser, a bijection on uint32."""
    h = h ^ (h >> 16)
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def _leaf_checksum(x: jax.Array) -> jax.Array:
    """uint32 scalar: sum over elements of ``fmix(bits ^ fmix(position))`` mod 2**32.

    Any single changed element changes it; exact integer arithmetic makes it independent
    of how the array is sharded.
    """
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
        bits = x.astype(jnp.uint32)
    else:
        bits = jax.lax.bitcast_convert_type(x, _UINT_OF_SIZE[x.dtype.itemsize]).astype(jnp.uint32)
    bits = bits.ravel()
    position = jnp.arange(bits.size, dtype=jnp.uint32) * np.uint32(0x9E3779B9) + np.uint32(1)
    return jnp.sum(_fmix32(bits ^ _fmix32(position)), dtype=jnp.uint32)


_checksums = jax.jit(lambda tree: [_leaf_checksum(x) for x in jax.tree.leaves(tree)])
_NP_UINT_OF_SIZE = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint32}


def _host_checksum(x: np.ndarray) -> int:
    """:func:`_leaf_checksum` of a host array, in NumPy (wrapping uint32 arithmetic alike)."""
    flat = np.ascontiguousarray(x).reshape(-1)
    bits = flat.astype(np.uint32) if x.dtype == np.bool_ else flat.view(_NP_UINT_OF_SIZE[x.dtype.itemsize])
    bits = bits.astype(np.uint32)
    position = np.arange(bits.size, dtype=np.uint32) * np.uint32(0x9E3779B9) + np.uint32(1)
    return int(np.sum(_fmix32(bits ^ _fmix32(position)), dtype=np.uint32))


def _tree_checksums(tree: Any) -> list[int]:
    """:func:`_leaf_checksum` of every leaf of ``tree``, in flattening order.

    On the host in NumPy when this process holds every leaf whole (no compilation: a run
    saves and verifies without compiling a checksum program), else jitted over the global
    arrays.
    """
    leaves = jax.tree.leaves(tree)
    if not all(getattr(x, "is_fully_addressable", True) for x in leaves):
        return [int(c) for c in jax.device_get(_checksums(tree))]
    leaves = [jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x for x in leaves]
    return [_host_checksum(np.asarray(x)) for x in jax.device_get(leaves)]


def _leaf_specs(tree: Any) -> dict[str, tuple[list[int], str]]:
    """Leaf path (``jax.tree_util.keystr``) -> (shape, dtype name), in flattening order."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): (list(x.shape), str(x.dtype)) for path, x in leaves}


def _manifest(state: Any) -> dict[str, Any]:
    checksums = _tree_checksums(state)
    return {
        "leaves": [
            {"path": path, "shape": shape, "dtype": dtype, "checksum": checksum}
            for (path, (shape, dtype)), checksum in zip(_leaf_specs(state).items(), checksums)
        ]
    }


def _as_abstract(tree: Any) -> Any:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


class Checkpoints:
    """Checkpoints of one run in ``directory`` (created if missing), keeping the newest ``max_to_keep``.

    Steps are update counts. Use as a context manager, or call :meth:`close`, so pending
    asynchronous writes finish.
    """

    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 3):
        if max_to_keep < 1:
            raise ValueError(f"max_to_keep must be >= 1, got {max_to_keep}")
        self.directory = Path(directory)
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True)
        self._manager = ocp.CheckpointManager(self.directory.absolute(), options=options)
        self._last_save: int | None = None  # the update of the newest save, maybe still being written

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Wait for pending writes and release the manager; a failed write raises RunWriteError."""
        try:
            self._manager.close()
        except Exception as err:  # orbax/tensorstore report a failed write as many types
            where = self.directory if self._last_save is None else self.directory / str(self._last_save)
            raise write_error(where, err) from err

    def latest_update(self) -> int | None:
        """Update count of the newest complete checkpoint, None if there is none."""
        return self._manager.latest_step()

    def save(self, update: int, state: Any) -> None:
        """Checkpoint ``state`` (a pytree of jax arrays) as update ``update``."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), manifest=ocp.args.JsonSave(_manifest(state)))
        try:
            saved = self._manager.save(update, args=args)
        except Exception as err:  # as in close(); includes the previous save's asynchronous failure
            raise write_error(self.directory / str(update), err) from err
        self._last_save = update
        if not saved:
            raise CheckpointError(f"{self.directory / str(update)}: orbax declined to save")

    def restore(self, update: int, target: Any) -> Any:
        """Restore checkpoint ``update`` into the structure, shapes, dtypes and shardings of ``target``.

        ``target`` may hold arrays or ``jax.ShapeDtypeStruct`` with shardings.
        """
        path = self.directory / str(update)
        try:
            manifest = self._manager.restore(update, args=ocp.args.Composite(manifest=ocp.args.JsonRestore()))
        except Exception as err:  # orbax/tensorstore raise many types for unreadable files
            raise CheckpointError(f"{path}: unreadable manifest: {type(err).__name__}: {err}") from err
        expected = _check_manifest(path, manifest["manifest"], target)
        try:
            restored = self._manager.restore(
                update, args=ocp.args.Composite(state=ocp.args.StandardRestore(_as_abstract(target)))
            )["state"]
        except Exception as err:  # as above
            raise CheckpointError(f"{path}: corrupt checkpoint: {type(err).__name__}: {err}") from err
        actual = _tree_checksums(restored)
        for (leaf, checksum), got in zip(expected.items(), actual):
            if int(got) != checksum:
                raise CheckpointError(f"{path}: corrupt checkpoint: leaf {leaf} fails its checksum")
        return restored

    def restore_latest(self, target: Any) -> tuple[int, Any]:
        """``(update, state)`` from the newest checkpoint; CheckpointError if there is none."""
        update = self.latest_update()
        if update is None:
            raise CheckpointError(f"{self.directory}: no checkpoint to resume from")
        return update, self.restore(update, target)


def _check_manifest(path: Path, manifest: Any, target: Any) -> dict[str, int]:
    """Leaf path -> checksum from ``manifest``, after checking it describes ``target`` exactly."""
    try:
        stored = {
            leaf["path"]: (list(leaf["shape"]), str(leaf["dtype"]), int(leaf["checksum"]))
            for leaf in manifest["leaves"]
        }
    except (TypeError, KeyError, ValueError) as err:
        raise CheckpointError(f"{path}: malformed manifest: {err!r}") from None
    wanted = _leaf_specs(target)
    missing = [p for p in wanted if p not in stored]
    extra = [p for p in stored if p not in wanted]
    if missing or extra:
        raise CheckpointError(
            f"{path}: checkpoint does not match the current state's tree structure "
            f"(leaves missing from the checkpoint: {missing or 'none'}; "
            f"leaves only in the checkpoint: {extra or 'none'})"
        )
    for leaf, (shape, dtype) in wanted.items():
        stored_shape, stored_dtype, _ = stored[leaf]
        if (stored_shape, stored_dtype) != (shape, dtype):
            raise CheckpointError(
                f"{path}: leaf {leaf} is {stored_dtype}{tuple(stored_shape)} in the checkpoint "
                f"but {dtype}{tuple(shape)} in the current state (different config?)"
            )
    return {leaf: stored[leaf][2] for leaf in wanted}


def restore_latest(directory: str | os.PathLike, target_state: Any) -> tuple[int, Any]:
    """``(update, state)`` from the newest checkpoint in ``directory``, restored like ``target_state``.

    Raises CheckpointError if ``directory`` is missing or holds no checkpoint, or the
    checkpoint is corrupt or does not match ``target_state``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no checkpoint directory to resume from")
    with Checkpoints(directory) as checkpoints:
        return checkpoints.restore_latest(target_state)
