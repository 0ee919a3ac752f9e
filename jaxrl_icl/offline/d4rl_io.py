"""Read and write D4RL-layout HDF5 files.

A D4RL file holds ``observations [N, obs]``, ``actions [N, act]``, ``rewards [N]``,
``terminals [N]`` and usually ``timeouts [N]`` and ``next_observations [N, obs]`` at its
root, and scalars under ``metadata/``. Files without ``next_observations`` get them as
``d4rl.qlearning_dataset`` builds them (:func:`~jaxrl_icl.offline.dataset.qlearning_transitions`).
Other groups (``infos/``) are ignored.

Metadata values are scalars (str, int, float, bool); :mod:`jaxrl_icl.offline.scores` reads
``ref_min_score`` / ``ref_max_score`` / ``env_name`` from them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from jaxrl_icl.hdf5 import HDF5KeyError, read_array, write_atomically
from jaxrl_icl.offline.dataset import Dataset, DatasetError, make_dataset, qlearning_transitions

_REQUIRED = ("observations", "actions", "rewards", "terminals")


def _read_key(f: h5py.File, path: str, key: str) -> np.ndarray:
    try:
        return read_array(f, key)
    except HDF5KeyError as err:
        raise DatasetError(path, key, err.reason) from None


def _metadata_value(path: str, key: str, node: Any) -> Any:
    if not isinstance(node, h5py.Dataset) or node.shape != ():
        return None  # only scalars are metadata we interpret
    try:
        value = node[()]
    except (OSError, ValueError, TypeError) as err:
        raise DatasetError(path, f"metadata/{key}", f"cannot be read ({err})") from None
    if isinstance(value, bytes):
        return value.decode()
    return value.item() if isinstance(value, np.generic) else value


def load_d4rl(path: str | os.PathLike, *,
              action_bounds: tuple[Any, Any] | None = None) -> tuple[Dataset, dict[str, Any]]:
    """``(dataset, metadata)`` from a D4RL-layout HDF5 file.

    ``action_bounds`` (``(low, high)``, e.g. the env's action space) rejects actions outside
    them. Raises :class:`~jaxrl_icl.offline.dataset.DatasetError` naming the file and the key
    for anything :func:`~jaxrl_icl.offline.dataset.make_dataset` rejects, a key that is a
    group, a chunk that cannot be decompressed, and a file that is not HDF5.
    """
    path = Path(path)
    source = str(path)
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as err:
        raise DatasetError(source, "(file)", f"cannot be opened as HDF5 ({err})") from None
    with f:
        arrays = {key: _read_key(f, source, key) for key in _REQUIRED}
        for key in ("timeouts", "next_observations"):
            if key in f:
                arrays[key] = _read_key(f, source, key)
        metadata = {}
        group = f.get("metadata")
        if isinstance(group, h5py.Group):
            for key, node in group.items():
                value = _metadata_value(source, key, node)
                if value is not None:
                    metadata[key] = value
    if "next_observations" not in arrays:
        arrays = qlearning_transitions(arrays, source=source)
    return make_dataset(arrays, source=source, action_bounds=action_bounds), metadata


def save_d4rl(path: str | os.PathLike, dataset: Dataset, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``dataset`` (and scalar ``metadata``) as a D4RL-layout HDF5 file at ``path``.

    The file is written under a temporary name in the same folder and renamed into place, so a
    failed write leaves no partial file at ``path``. Arrays are stored with their dtypes
    (float32, int32 discrete actions, bool flags), so loading gives back bitwise the same
    dataset. Returns ``path``.
    """
    path = Path(path)
    for key, value in (metadata or {}).items():
        if not isinstance(value, (str, int, float, bool, np.generic)):
            raise DatasetError(str(path), f"metadata/{key}",
                               f"must be a scalar (str, int, float, bool), got {type(value).__name__}")
    with write_atomically(path) as f:
        for key, array in dataset.arrays().items():
            f.create_dataset(key, data=array, compression="gzip" if array.size > 4096 else None)
        group = f.create_group("metadata")
        for key, value in (metadata or {}).items():
            group.create_dataset(key, data=value)
    return path

