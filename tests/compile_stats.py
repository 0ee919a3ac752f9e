"""Summarise ``JAXRL_TEST_COMPILE_STATS`` (see tests/conftest.py): how much of the suite's time
is JAX tracing and lowering and XLA compiling, in total, per test file and for the slowest tests.

    JAXRL_TEST_COMPILE_STATS=/tmp/stats python -m pytest -m "not slow" -n 2
    python -m tests.compile_stats /tmp/stats
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

KEYS = ("wall_s", "trace_s", "lower_s", "compile_s", "compiles")


def load(directory: Path) -> dict[str, dict[str, float]]:
    """``{test id: {key: value}}`` over every worker's file in ``directory``."""
    tests: dict[str, dict[str, float]] = {}
    for path in sorted(directory.glob("*.json")):
        tests.update(json.loads(path.read_text()))
    if not tests:
        raise SystemExit(f"{directory}: no *.json stats files (run pytest with JAXRL_TEST_COMPILE_STATS set)")
    return tests


def table(rows: dict[str, dict[str, float]], title: str, limit: int) -> str:
    """A Markdown table of the ``limit`` rows with the most wall time."""
    lines = [f"| {title} | wall s | trace s | lower s | XLA compile s | compiles |", "|---|---|---|---|---|---|"]
    for name, r in sorted(rows.items(), key=lambda kv: -kv[1]["wall_s"])[:limit]:
        lines.append(f"| {name} | " + " | ".join(f"{r.get(k, 0):.0f}" if k == "compiles" else f"{r.get(k, 0):.1f}"
                                                  for k in KEYS) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m tests.compile_stats <stats dir>")
    tests = load(Path(argv[0]))
    total: dict[str, float] = defaultdict(float)
    files: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for test_id, r in tests.items():
        for k in KEYS:
            total[k] += r.get(k, 0.0)
            files[test_id.split("::")[0]][k] += r.get(k, 0.0)
    jax_s = total["trace_s"] + total["lower_s"] + total["compile_s"]
    print(f"{len(tests)} tests, {total['wall_s']:.0f} s in all: tracing {total['trace_s']:.0f} s, lowering "
          f"{total['lower_s']:.0f} s, XLA compiling {total['compile_s']:.0f} s ({total['compiles']:.0f} programs, "
          f"{total['compile_s'] / max(total['compiles'], 1) * 1e3:.0f} ms each); "
          f"{jax_s / total['wall_s']:.0%} of the time\n")
    print(table(files, "file", 25) + "\n")
    print(table(tests, "test", 25))


if __name__ == "__main__":
    main(sys.argv[1:])
