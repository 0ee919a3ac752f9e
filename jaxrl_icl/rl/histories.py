"""Learning-history datasets for Algorithm Distillation: one HDF5 file per dataset.

In memory a dataset is a dict of numpy arrays, one learning history per row, steps in the
order they happened (all episodes of training back to back):

- ``obs`` ``[N, T, *obs_shape]``: the observation the agent acted on;
- ``action`` ``[N, T, *action_shape]``: the action taken there;
- ``reward`` ``[N, T]``, ``terminated`` ``[N, T]`` bool, ``truncated`` ``[N, T]`` bool:
  its outcome.

The metadata ``meta`` is a dict with ``env`` (str), ``algorithm`` (str), ``config`` (a
JSON-able dict), ``seed`` (int) and ``params`` (dict name -> array ``[N, ...]``: the task of
each history, e.g. ``goal`` ``[N, 2]``). :func:`compact_histories` narrows dtypes where
that is exact (integers to the narrowest signed type holding their range, floats to float16
when every value survives the round trip, e.g. 0/1 rewards). :func:`save_histories` writes
the arrays as given (gzip-compressed) to a temporary file renamed into place, and
:func:`load_histories` returns exactly what was saved, dtypes included.

File layout: datasets ``/histories/<key>`` and ``/params/<name>``; root attributes
``format`` (``"jaxrl-icl-histories"``), ``version`` (1), ``env``, ``algorithm``, ``config``
(JSON text), ``seed``, ``num_histories`` (N) and ``num_steps`` (T).

A damaged or malformed file fails in :func:`load_histories` with a ValueError naming the
file and the key (``histories/reward``, ``params/goal``, ...): an unreadable (e.g. corrupted
compressed) chunk, a group where a dataset belongs, non-numeric values (rewards stored as
bytes), and, given the env's spaces, observations or actions outside them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np

from envs.spaces import is_discrete, smallest_int_dtype
from jaxrl_icl.hdf5 import HDF5KeyError, read_array, write_atomically

__all__ = [
    "HISTORY_KEYS",
    "check_in_space",
    "compact_histories",
    "histories_from_metrics",
    "load_histories",
    "nbytes",
    "save_histories",
]

HISTORY_KEYS = ("obs", "action", "reward", "terminated", "truncated")
_FLAG_KEYS = ("terminated", "truncated")
_FORMAT, _VERSION = "jaxrl-icl-histories", 1
_META_KEYS = ("env", "algorithm", "config", "seed", "params")
# key -> (allowed numpy dtype kinds, their names): no bytes, strings, objects or complex numbers
_NUMERIC = {"obs": ("biuf", "bool, int or float"), "action": ("biuf", "bool, int or float"),
            "reward": ("iuf", "int or float")}


def _narrow_int(x: np.ndarray) -> np.ndarray:
    if x.size == 0:
        return x
    return x.astype(smallest_int_dtype(x.min(), x.max(), fallback=x.dtype))


def _narrow_float(x: np.ndarray) -> np.ndarray:
    if x.dtype.itemsize <= 2:
        return x
    with np.errstate(over="ignore"):
        half = x.astype(np.float16)
    return half if np.array_equal(half.astype(x.dtype), x) else x


def compact_histories(histories: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A copy with each array in the narrowest dtype that holds its values exactly.

    Integers -> narrowest signed int of their value range; floats -> float16 if every value
    round-trips exactly (else unchanged); bools stay bool.
    """
    out = {}
    for name, value in histories.items():
        x = np.asarray(value)
        if np.issubdtype(x.dtype, np.integer):
            x = _narrow_int(x)
        elif np.issubdtype(x.dtype, np.floating):
            x = _narrow_float(x)
        out[name] = x
    return out


def histories_from_metrics(metrics: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Histories ``[N, T, ...]`` from a trainer's ``history/*`` metrics.

    ``metrics["history/<key>"]`` has shape ``[B, U, S, E, ...]``: a batch ``B`` of runs
    (tasks or seeds), ``U`` updates, ``S`` steps per update, ``E`` parallel envs. Each
    (run, env) pair is one history: ``N = B * E``, ordered run-major (history ``b * E + e``),
    and its ``T = U * S`` steps are in time order.
    """
    out = {}
    for key in HISTORY_KEYS:
        name = f"history/{key}"
        if name not in metrics:
            raise KeyError(f"{name}: missing from the metrics (train with record_history=True)")
        x = np.asarray(metrics[name])
        if x.ndim < 4:
            raise ValueError(f"{name}: expected [runs, updates, steps, envs, ...], got shape {x.shape}")
        b, u, s, e = x.shape[:4]
        out[key] = np.moveaxis(x, 3, 1).reshape(b * e, u * s, *x.shape[4:])
    return out


def nbytes(histories: Mapping[str, Any]) -> int:
    """Bytes the arrays take in memory (sum of ``ndarray.nbytes``)."""
    return int(sum(np.asarray(v).nbytes for v in histories.values()))


def _check_histories(histories: Mapping[str, np.ndarray], where: str) -> tuple[int, int]:
    """``(N, T)`` of a well-formed dataset; ValueError starting with ``where`` otherwise."""
    missing = [k for k in HISTORY_KEYS if k not in histories]
    if missing:
        raise ValueError(f"{where}: missing history key(s) {missing}")
    unknown = sorted(set(histories) - set(HISTORY_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown history key(s) {unknown}; expected {list(HISTORY_KEYS)}")
    reward = histories["reward"]
    if reward.ndim != 2 or 0 in reward.shape:
        raise ValueError(f"{where}: reward must be a non-empty [N, T] array, got shape {reward.shape}")
    n, t = reward.shape
    for key in HISTORY_KEYS:
        shape = histories[key].shape
        if shape[:2] != (n, t) or (key in _FLAG_KEYS and len(shape) != 2):
            raise ValueError(f"{where}: {key} has shape {shape}, expected [N, T, ...] = [{n}, {t}, ...]")
    for key in _FLAG_KEYS:
        if histories[key].dtype != np.bool_:
            raise ValueError(f"{where}: {key} must be bool, got {histories[key].dtype}")
    for key, (kinds, names) in _NUMERIC.items():
        x = histories[key]
        if x.dtype.kind not in kinds:
            raise ValueError(f"{where}: {key} must be numeric ({names}), got dtype {x.dtype}")
        if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
            raise ValueError(f"{where}: {key} has non-finite values")
    return n, t


def check_in_space(x: np.ndarray, space: Any, where: str) -> None:
    """ValueError starting with ``where`` unless ``x`` ``[N, T, *space.shape]`` lies in ``space``.

    ``space`` is a gymnax ``Discrete(n)`` (values ``0 .. n - 1``) or ``Box`` (``low <= x <=
    high`` elementwise); values of an integer space must be integers. The message names the
    first offending index and value.
    """
    discrete = is_discrete(space)
    shape = () if discrete else tuple(space.shape)
    if x.shape[2:] != shape:
        raise ValueError(f"{where}: per-step shape {list(x.shape[2:])} does not match the space's {list(shape)} "
                         f"({space})")
    low, high = (0, space.n - 1) if discrete else (np.asarray(space.low), np.asarray(space.high))
    integer = discrete or np.issubdtype(np.dtype(space.dtype), np.integer)
    problems = (
        ((x < low) | (x > high), f"outside [{_bound(low)}, {_bound(high)}]"),
        ((x != np.round(x)) if integer and x.dtype.kind == "f" else np.zeros(x.shape, bool),
         f"not an integer, but the space {space} holds integers"),
    )
    for bad, what in problems:
        if np.any(bad):
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{where}: the value at {list(index)}, {x[index]}, is {what}")


def _bound(b: Any) -> str:
    b = np.asarray(b)
    return f"{b.item():g}" if b.size == 1 or np.all(b == b.flat[0]) else f"{b.tolist()}"


def _check_meta(meta: Mapping[str, Any], n: int, where: str) -> None:
    missing = [k for k in _META_KEYS if k not in meta]
    if missing:
        raise ValueError(f"{where}: missing meta key(s) {missing}")
    for key in ("env", "algorithm"):
        if not isinstance(meta[key], str) or not meta[key]:
            raise ValueError(f"{where}: meta[{key!r}] must be a non-empty str, got {meta[key]!r}")
    seed = meta["seed"]
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"{where}: meta['seed'] must be an int, got {seed!r}")
    if not isinstance(meta["config"], dict):
        raise ValueError(f"{where}: meta['config'] must be a dict, got {type(meta['config']).__name__}")
    if not isinstance(meta["params"], Mapping) or not meta["params"]:
        raise ValueError(f"{where}: meta['params'] must be a non-empty dict of arrays [N, ...]")
    for name, value in meta["params"].items():
        shape = np.shape(value)
        if not shape or shape[0] != n:
            raise ValueError(f"{where}: params/{name} has shape {shape}, expected a leading axis N = {n}")


def save_histories(path: str | os.PathLike, histories: Mapping[str, Any], meta: Mapping[str, Any]) -> Path:
    """Write a dataset to one HDF5 file at ``path`` (temporary file, then renamed into place).

    Args:
      path: output file (parent directory must exist).
      histories: arrays ``obs, action, reward, terminated, truncated`` ``[N, T, ...]``,
        stored with their dtypes as given (see :func:`compact_histories`).
      meta: ``env``, ``algorithm``, ``config`` (JSON-able dict), ``seed``, ``params``.

    Raises:
      ValueError naming the problem for missing keys, mismatched shapes, empty arrays,
      non-bool flags, non-finite values or bad metadata, before anything is written.
    """
    path = Path(path)
    data = {k: np.asarray(v) for k, v in histories.items()}
    n, t = _check_histories(data, f"histories for {path}")
    _check_meta(meta, n, f"meta for {path}")
    config_json = json.dumps(meta["config"], allow_nan=False, sort_keys=True)
    with write_atomically(path) as f:
        f.attrs.update(
            format=_FORMAT, version=_VERSION, env=meta["env"], algorithm=meta["algorithm"],
            config=config_json, seed=int(meta["seed"]), num_histories=n, num_steps=t,
        )
        for group, arrays in (("histories", data), ("params", meta["params"])):
            g = f.create_group(group)
            for name, value in arrays.items():
                value = np.asarray(value)
                opts = {"compression": "gzip", "shuffle": True} if value.ndim else {}
                g.create_dataset(name, data=value, **opts)
    return path


def load_histories(
    path: str | os.PathLike, *, observation_space: Any = None, action_space: Any = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a dataset written by :func:`save_histories`: ``(histories, meta)``, exactly as saved.

    Args:
      path: the HDF5 file.
      observation_space, action_space: the env's gymnax spaces; when given, every ``obs`` /
        ``action`` value must lie in them (:func:`check_in_space`).

    Raises:
      FileNotFoundError / ValueError naming the file (and the key) and the problem: not an
      HDF5 file, not a histories file, missing keys or attributes, a key that is a group or
      cannot be read (a corrupted chunk), non-numeric values, shapes that disagree, empty
      arrays, values outside the given spaces.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path}: not a readable HDF5 file ({err})") from None
    with f:
        attrs = dict(f.attrs)
        if attrs.get("format") != _FORMAT:
            raise ValueError(f"{path}: not a learning-histories file (attribute format={attrs.get('format')!r})")
        missing = [k for k in ("env", "algorithm", "config", "seed", "num_histories", "num_steps") if k not in attrs]
        if missing:
            raise ValueError(f"{path}: missing attribute(s) {missing}")
        for group in ("histories", "params"):
            if group not in f or not isinstance(f[group], h5py.Group):
                raise ValueError(f"{path}: missing group /{group}")
        histories = {k: _read(f, f"histories/{k}", path) for k in f["histories"]}
        params = {k: _read(f, f"params/{k}", path) for k in f["params"]}
    try:
        config = json.loads(attrs["config"])
    except (TypeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: attribute config is not JSON ({err})") from None
    meta = {
        "env": str(attrs["env"]), "algorithm": str(attrs["algorithm"]), "config": config,
        "seed": int(attrs["seed"]), "params": params,
    }
    n, t = _check_histories(histories, str(path))
    if (n, t) != (int(attrs["num_histories"]), int(attrs["num_steps"])):
        raise ValueError(
            f"{path}: arrays are [N, T] = [{n}, {t}] but the attributes say "
            f"[{int(attrs['num_histories'])}, {int(attrs['num_steps'])}]"
        )
    _check_meta(meta, n, str(path))
    for key, space in (("obs", observation_space), ("action", action_space)):
        if space is not None:
            check_in_space(histories[key], space, f"{path}: histories/{key}")
    return histories, meta


def _read(f: h5py.File, key: str, path: Path) -> np.ndarray:
    """The dataset ``key`` of ``f`` as an array; ValueError naming ``path`` and ``key`` otherwise."""
    try:
        return read_array(f, key)
    except HDF5KeyError as err:
        raise ValueError(f"{path}: {err}") from None
