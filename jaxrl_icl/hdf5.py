"""HDF5 files written atomically and arrays read with errors that name the key.

Shared by the learning-history files (:mod:`jaxrl_icl.rl.histories`) and the offline datasets
(:mod:`jaxrl_icl.offline.d4rl_io`), which each add their own file format on top.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np


class HDF5KeyError(ValueError):
    """``key`` of an open file is missing, a group, or unreadable; ``reason`` says which."""

    def __init__(self, key: str, reason: str):
        super().__init__(f"{key} {reason}")
        self.key, self.reason = key, reason


@contextlib.contextmanager
def write_atomically(path: str | os.PathLike) -> Iterator[h5py.File]:
    """An HDF5 file open for writing under a temporary name beside ``path`` (created with the
    umask's mode), renamed to ``path`` when the block ends; on any error it is removed and
    ``path`` is left as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_array(f: h5py.Group, key: str) -> np.ndarray:
    """The dataset ``key`` of ``f`` as an array.

    Raises :class:`HDF5KeyError` when ``key`` is missing, is a group rather than a dataset, or
    cannot be read (a corrupted compressed chunk, an unreadable filter or dtype).
    """
    node = f.get(key)
    if node is None:
        raise HDF5KeyError(key, "missing")
    if not isinstance(node, h5py.Dataset):
        raise HDF5KeyError(key, f"is a {type(node).__name__.lower()}, expected a dataset")
    try:
        return node[()]
    except (OSError, TypeError, ValueError) as err:
        raise HDF5KeyError(key, f"cannot be read, the file is damaged ({err})") from None
