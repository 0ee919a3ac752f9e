"""``metrics.jsonl``: one JSON object per (update, seed) with the scalar metrics of that update.

Each line is ``{"step": int, "update": int, "seed": int, "<metric>": number | null, ...}``:
``update`` counts updates done (1-based), ``step`` the env steps one seed has consumed by
then, ``seed`` the index on the seed axis. Lines are ordered by update, then seed; metric
keys are sorted, so the same values always give the same bytes. NaN and +-inf are
written as ``null``.

Lines are appended one chunk at a time (a single write, then flush and fsync). A torn
last line from a crash mid-write is dropped by :meth:`MetricsWriter.truncate_after`,
which a resumed run calls to cut the file back to its checkpoint; it refuses a file that
lacks any update the checkpoint covers (deleted, emptied or cut short), since resuming
would leave a log with a silent hole. A failed write raises
:class:`~jaxrl_icl.run.rundir.RunWriteError`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Mapping

import numpy as np

from jaxrl_icl.run.rundir import write_atomic, write_error

_RESERVED = ("step", "update", "seed")


_NON_FINITE = frozenset({"NaN", "Infinity", "-Infinity"})


def _json_tokens(values: np.ndarray) -> list[str]:
    """The JSON text ``json.dumps`` gives each element of ``values`` (C order), non-finite
    floats as ``null``; one ``json.dumps`` call for the whole array."""
    if not values.size:
        return []
    tokens = json.dumps(values.ravel().tolist())[1:-1].split(", ")
    if values.dtype.kind == "f":
        tokens = ["null" if t in _NON_FINITE else t for t in tokens]
    return tokens


class MetricsWriter:
    """Appends per-update scalar metrics to a ``metrics.jsonl`` file (created if missing)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self.path.touch()
        except OSError as err:
            raise write_error(self.path, err) from err

    def write(self, updates: np.ndarray, steps: np.ndarray, values: Mapping[str, np.ndarray]) -> None:
        """Append ``len(updates) * num_seeds`` lines.

        Args:
          updates: int ``[P]``, update counts (1-based) of the logged points.
          steps: int ``[P]``, env steps per seed at those points.
          values: metric name -> ``[num_seeds, P]`` array of int, float or bool.
        """
        updates, steps = np.asarray(updates), np.asarray(steps)
        if updates.ndim != 1 or steps.shape != updates.shape:
            raise ValueError(f"updates and steps must be equal-length 1-D, got {updates.shape}, {steps.shape}")
        names = sorted(values)
        for name in names:
            if name in _RESERVED:
                raise ValueError(f"metric name {name!r} clashes with a reserved key {_RESERVED}")
        columns = {name: np.asarray(values[name]) for name in names}
        num_seeds = columns[names[0]].shape[0] if names else 0
        for name, col in columns.items():
            if col.shape != (num_seeds, updates.size):
                raise ValueError(f"metric {name!r}: expected shape {(num_seeds, updates.size)}, got {col.shape}")
        # Column by column (one json.dumps each), then one %-format per line: the bytes of
        # json.dumps(row) per (update, seed), without building a dict per line.
        fields = ["step", "update", "seed", *names]
        template = "{" + ", ".join(json.dumps(f).replace("%", "%%") + ": %s" for f in fields) + "}\n"
        tokens = [
            _json_tokens(np.repeat(steps, num_seeds)),
            _json_tokens(np.repeat(updates, num_seeds)),
            _json_tokens(np.tile(np.arange(num_seeds), updates.size)),
            *(_json_tokens(columns[name].T) for name in names),  # update-major, seed-minor
        ]
        text = "".join(map(template.__mod__, zip(*tokens)))
        try:
            with open(self.path, "a") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as err:
            raise write_error(self.path, err) from err

    def truncate_after(self, update: int) -> None:
        """Drop every line logged after ``update`` (and a torn, newline-less last line).

        The kept lines are rewritten atomically. Raises ValueError naming the file if a
        complete line is malformed, or if the kept lines do not log every update
        ``1..update`` (the file was deleted, emptied or cut short: resuming would leave a
        log without the points the checkpoint covers).
        """
        text = self.path.read_text()
        lines = text.splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            lines.pop()
        kept: list[str] = []
        logged: set[int] = set()
        for lineno, line in enumerate(lines, start=1):
            row_update = _parse_line(self.path, lineno, line)["update"]
            if row_update > update:
                break
            kept.append(line)
            logged.add(row_update)
        missing = sorted(set(range(1, update + 1)) - logged)
        if missing:
            if not logged:
                what = "holds no metrics"
            elif missing[0] > max(logged):
                what = f"logged only up to update {max(logged)}"
            else:
                what = f"lacks {len(missing)} of updates 1..{update} (first {missing[0]})"
            raise ValueError(
                f"{self.path}: {what}, but the checkpoint is at update {update}; resuming would leave "
                "a log without those updates. Put the original file back, or start a new run"
            )
        write_atomic(self.path, "".join(kept).encode())


def _parse_line(path: Path, lineno: int, line: str) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{lineno}: malformed JSON: {err}") from None
    if not isinstance(row, dict) or not all(isinstance(row.get(k), int) for k in _RESERVED):
        raise ValueError(f"{path}:{lineno}: expected an object with integer {', '.join(_RESERVED)}")
    return row


@dataclasses.dataclass(frozen=True)
class MetricsLog:
    """Contents of a ``metrics.jsonl``.

    Attributes:
      updates: int64 ``[P]``, sorted distinct update counts.
      steps: int64 ``[P]``, env steps per seed at those updates.
      values: metric name -> float64 ``[num_seeds, P]``; NaN where null or not logged.
    """

    updates: np.ndarray
    steps: np.ndarray
    values: dict[str, np.ndarray]


def read_metrics(path: str | os.PathLike) -> MetricsLog:
    """Read a ``metrics.jsonl`` back; errors name the file (and line)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no metrics file") from None
    rows = [
        _parse_line(path, lineno, line) for lineno, line in enumerate(text.splitlines(), start=1) if line.strip()
    ]
    step_of: dict[int, int] = {}
    for row in rows:
        if step_of.setdefault(row["update"], row["step"]) != row["step"]:
            raise ValueError(f"{path}: update {row['update']} logged with two different steps")
    updates = np.array(sorted(step_of), dtype=np.int64)
    steps = np.array([step_of[u] for u in updates.tolist()], dtype=np.int64)
    column = {u: i for i, u in enumerate(updates.tolist())}
    num_seeds = max((row["seed"] for row in rows), default=-1) + 1
    names = sorted({k for row in rows for k in row} - set(_RESERVED))
    values = {name: np.full((num_seeds, updates.size), np.nan) for name in names}
    for row in rows:
        for name in names:
            value = row.get(name)
            if value is not None:
                values[name][row["seed"], column[row["update"]]] = value
    return MetricsLog(updates, steps, values)
