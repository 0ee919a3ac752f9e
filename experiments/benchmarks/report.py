"""The one result format of every benchmark suite: rows, the Markdown table, skipped suites.

A row is a flat dict with exactly the keys of :data:`ROW_KEYS`::

    {"suite": "ppo", "case": "16 seeds x 99,840 steps: training", "ours": 1.9e6,
     "reference": 1.8e6, "ratio": 1.05, "unit": "steps/s", "device": "cpu (cpu)"}

``ratio > 1`` always means ours is better: ``ours / reference`` for throughputs (higher is
better), ``reference / ours`` for times (``lower_is_better``, units such as ``"s"``).
``reference`` and ``ratio`` are None where a measurement has nothing to compare with (a
compile time of ours alone); a skipped suite is one row whose case says why and whose
numbers are all None; a value that is not finite is None too (the case says what it was).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import jax

from jaxrl_icl.run.rundir import write_atomic, write_json

ROW_KEYS = ("suite", "case", "ours", "reference", "ratio", "unit", "device")


class Skipped(Exception):
    """Raised by a suite that cannot run here (no GPU, an optional package missing); the
    message says why and how to run it."""


def device() -> str:
    """The device JAX computes on, e.g. ``"NVIDIA H100 80GB HBM3 (gpu)"`` or ``"cpu (cpu)"``."""
    return f"{jax.devices()[0].device_kind} ({jax.default_backend()})"


def row(suite: str, case: str, ours: float, reference: float | None, unit: str, *,
        lower_is_better: bool = False) -> dict:
    """One result row; ``ratio`` is ours over reference (throughputs) or reference over ours
    (``lower_is_better``: times), so that > 1 means ours is better, and None where the
    divisor is 0. A value that is not finite (JSON has no NaN) is None, and the case says so."""
    values = {"ours": ours, "reference": reference}
    for name, value in values.items():
        if value is not None:
            values[name] = float(value)
            if not math.isfinite(values[name]):
                case += f" ({name}: {values[name]})"
                values[name] = None
    ours, reference = values["ours"], values["reference"]
    ratio = None
    if ours is not None and reference is not None:
        top, bottom = (reference, ours) if lower_is_better else (ours, reference)
        ratio = top / bottom if bottom else None
    return {"suite": suite, "case": case, "ours": ours, "reference": reference, "ratio": ratio, "unit": unit,
            "device": device()}


def note_row(suite: str, note: str) -> dict:
    """A row without numbers whose case is ``note``: ``"skipped: <why>"``, ``"failed: <error>"``."""
    return {"suite": suite, "case": note, "ours": None, "reference": None, "ratio": None, "unit": "",
            "device": device()}


def _number(x: float | None) -> str:
    if x is None:
        return "-"
    if not math.isfinite(x):
        return str(x)
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def markdown_table(rows: Iterable[Mapping]) -> str:
    """The rows as a GitHub Markdown table (numbers to 3 significant digits, ratios as ``1.23x``)."""
    lines = ["| suite | case | ours | reference | ratio | unit | device |", "|---|---|--:|--:|--:|---|---|"]
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        cells = (r["suite"], r["case"].replace("|", "/"), _number(r["ours"]), _number(r["reference"]), ratio,
                 r["unit"], r["device"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compared(rows: Iterable[Mapping], unit: str) -> dict[str, tuple[float, float]]:
    """``case -> (ours, reference)`` of the rows in ``unit`` that have a reference (for paired bars)."""
    return {r["case"]: (r["ours"], r["reference"]) for r in rows if r["unit"] == unit and r["reference"] is not None}


def write_report(rows: list[dict], run_dir: str | os.PathLike, title: str) -> str:
    """Write ``bench.json`` (the rows) and ``bench.md`` (``title`` and the table) to ``run_dir``,
    atomically; returns the Markdown."""
    text = f"# {title}\n\n{markdown_table(rows)}\n"
    write_json(Path(run_dir) / "bench.json", rows)
    write_atomic(Path(run_dir) / "bench.md", text.encode())
    return text
