"""metrics.jsonl writing: the column-wise writer gives the bytes of one json.dumps per row."""

from __future__ import annotations

import json
import math

import numpy as np

from jaxrl_icl.run.metrics import MetricsWriter, read_metrics


def rows_oracle(updates, steps, values) -> str:
    """The file format written row by row: one ``json.dumps`` of a dict per (update, seed)."""
    names = sorted(values)
    num_seeds = values[names[0]].shape[0]
    lines = []
    for i, (update, step) in enumerate(zip(updates.tolist(), steps.tolist())):
        for seed in range(num_seeds):
            row = {"step": step, "update": update, "seed": seed}
            for name in names:
                x = values[name][seed, i].item()
                row[name] = None if isinstance(x, float) and not math.isfinite(x) else x
            lines.append(json.dumps(row, allow_nan=False) + "\n")
    return "".join(lines)


def test_write_gives_the_bytes_of_one_json_dumps_per_row(tmp_path):
    rng = np.random.default_rng(0)
    seeds, points = 3, 5
    loss = rng.normal(size=(seeds, points)).astype(np.float32) * 10.0 ** rng.integers(-30, 30, (seeds, points))
    loss[0, 1], loss[1, 2], loss[2, 3], loss[2, 4] = np.nan, np.inf, -np.inf, -0.0
    values = {
        "loss": loss,
        "kl": rng.normal(size=(seeds, points)),  # float64
        "length": rng.integers(-3, 500, (seeds, points)).astype(np.int32),
        "done": rng.random((seeds, points)) < 0.5,
        'odd "name" 100%': rng.normal(size=(seeds, points)),
    }
    updates = np.arange(7, 7 + points)
    steps = updates * 512
    writer = MetricsWriter(tmp_path / "metrics.jsonl")
    writer.write(updates[:2], steps[:2], {k: v[:, :2] for k, v in values.items()})
    writer.write(updates[2:], steps[2:], {k: v[:, 2:] for k, v in values.items()})
    assert (tmp_path / "metrics.jsonl").read_text() == rows_oracle(updates, steps, values)
    log = read_metrics(tmp_path / "metrics.jsonl")
    np.testing.assert_array_equal(log.updates, updates)
    finite = np.where(np.isfinite(loss), loss, np.nan).astype(np.float64)
    np.testing.assert_array_equal(log.values["loss"], finite)
    np.testing.assert_array_equal(log.values["done"], values["done"])
