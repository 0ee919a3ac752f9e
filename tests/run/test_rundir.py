"""Run directories (config.json, versions.json, atomic writes) and metrics.jsonl."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from jaxrl_icl.config import ConfigError
from jaxrl_icl.run import rundir as rundir_module
from jaxrl_icl.run.metrics import MetricsWriter, read_metrics
from jaxrl_icl.run.rundir import RunDir, write_json


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.999)


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    name: str = "darkroom"
    num_seeds: int = 4
    total_steps: int = 1_000_000
    normalize: bool = True
    hidden: tuple[int, ...] = (64, 64)
    optim: OptimConfig = OptimConfig()


@dataclasses.dataclass(frozen=True)
class OtherConfig:
    x: int = 1


def listing(path: Path) -> list[str]:
    """Every entry under ``path`` (relative), hidden temporaries included."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_create_layout_and_config_round_trip(tmp_path):
    config = ExperimentConfig(num_seeds=8, hidden=(32,), optim=OptimConfig(lr=0.1, betas=(0.5, 0.6)))
    run = RunDir.create("darkroom_ad", config, root=tmp_path)
    assert run.path.parent == tmp_path / "darkroom_ad"
    assert re.fullmatch(r"\d{8}-\d{6}", run.path.name)
    assert listing(run.path) == [".lock", "config.json", "versions.json"]  # no temporaries left
    assert run.checkpoints == run.path / "checkpoints"
    assert run.metrics_path == run.path / "metrics.jsonl"
    assert run.plot_path("return") == run.path / "return.png"

    stored = json.loads((run.path / "config.json").read_text())
    assert stored["experiment"] == "darkroom_ad"
    assert stored["config_class"].endswith(".ExperimentConfig")
    assert stored["config"]["optim"] == {"lr": 0.1, "betas": [0.5, 0.6]}

    reopened, loaded = RunDir.open(run.path, ExperimentConfig)
    assert loaded == config
    assert reopened == run


def test_same_second_runs_get_distinct_dirs(tmp_path, monkeypatch):
    class FrozenClock(rundir_module.datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2024, 5, 6, 7, 8, 9)

    monkeypatch.setattr(rundir_module.datetime, "datetime", FrozenClock)
    paths = [RunDir.create("exp", OtherConfig(), root=tmp_path).path.name for _ in range(3)]
    assert paths == ["20240506-070809", "20240506-070809-1", "20240506-070809-2"]


def test_explicit_path(tmp_path):
    run = RunDir.create("exp", OtherConfig(), path=tmp_path / "a" / "b")
    assert run.path == tmp_path / "a" / "b" and (run.path / "config.json").is_file()
    with pytest.raises(ValueError, match=f"{run.path}: already holds a run"):
        RunDir.create("exp", OtherConfig(), path=run.path)


def test_versions_json(tmp_path):
    run = RunDir.create("exp", OtherConfig(), root=tmp_path)
    info = json.loads((run.path / "versions.json").read_text())
    expected_keys = {
        "python", "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "backend", "device_kind",
        "device_count", "local_device_count", "process_count", "git_commit", "git_dirty",
    }
    assert set(info) == expected_keys
    import jax
    import numpy

    assert info["jax"] == jax.__version__ and info["numpy"] == numpy.__version__
    assert info["backend"] == jax.default_backend() and info["device_count"] == jax.device_count()
    # Git state, checked against git itself.
    repo = Path(rundir_module.__file__).parent
    inside = subprocess.run(["git", "-C", str(repo), "rev-parse", "--is-inside-work-tree"],
                            capture_output=True, text=True, check=False)
    if inside.stdout.strip() != "true":
        assert info["git_commit"] is None and info["git_dirty"] is None
    else:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", "HEAD"],
                              capture_output=True, text=True, check=False)
        assert info["git_commit"] == (head.stdout.strip() or None)
        assert isinstance(info["git_dirty"], bool)
    # No absolute path of this machine anywhere.
    for name in ("versions.json", "config.json"):
        text = (run.path / name).read_text()
        for secret in (str(tmp_path), str(Path.home()), str(repo), os.getcwd()):
            assert secret not in text


def test_open_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "config.json"))):
        RunDir.open(tmp_path, OtherConfig)
    (tmp_path / "config.json").write_text('{"experiment": "x", ')
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "config.json")) + ": unreadable JSON"):
        RunDir.open(tmp_path, OtherConfig)

    run = RunDir.create("exp", OtherConfig(), path=tmp_path / "run")
    with pytest.raises(ValueError, match="written for config class .*OtherConfig"):
        RunDir.open(run.path, ExperimentConfig)
    stored = json.loads((run.path / "config.json").read_text())
    stored["config"]["x"] = "one"
    write_json(run.path / "config.json", stored)
    with pytest.raises(ConfigError, match=r"^x: .*config\.json"):
        RunDir.open(run.path, OtherConfig)


def test_atomic_write_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "file.json"
    write_json(target, {"a": 1})

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(rundir_module.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_json(target, {"a": 2})
    assert listing(tmp_path) == ["file.json"]
    assert json.loads(target.read_text()) == {"a": 1}
    monkeypatch.undo()
    write_json(target, {"a": math.nan})  # JSON has no NaN: written as null
    assert json.loads(target.read_text()) == {"a": None}
    assert listing(tmp_path) == ["file.json"]


def test_bad_names():
    with pytest.raises(ValueError, match="experiment"):
        RunDir.create("a/b", OtherConfig())
    with pytest.raises(ValueError, match="plot name"):
        RunDir(Path("x"), "e").plot_path("../evil")


# ----------------------------------------------------------------------------- metrics.jsonl


def write_points(path: Path, values: dict[str, np.ndarray], first_update: int = 1, steps_per_update: int = 10):
    num_points = next(iter(values.values())).shape[1]
    updates = np.arange(first_update, first_update + num_points)
    MetricsWriter(path).write(updates, updates * steps_per_update, values)


def test_metrics_round_trip_and_nan_as_null(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rng = np.random.default_rng(0)
    loss = rng.normal(size=(3, 5)).astype(np.float32)
    loss[1, 2], loss[2, 4], loss[0, 0] = np.nan, np.inf, -np.inf
    count = rng.integers(0, 100, size=(3, 5))
    write_points(path, {"loss": loss[:, :2], "count": count[:, :2]})
    write_points(path, {"loss": loss[:, 2:], "count": count[:, 2:]}, first_update=3)

    lines = path.read_text().splitlines()
    assert len(lines) == 15
    rows = [json.loads(line) for line in lines]  # strict JSON: no NaN/Infinity tokens
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()
    assert rows[0] == {"step": 10, "update": 1, "seed": 0, "count": int(count[0, 0]), "loss": None}
    assert rows[1 * 3 + 2]["loss"] == float(loss[2, 1])

    log = read_metrics(path)
    np.testing.assert_array_equal(log.updates, np.arange(1, 6))
    np.testing.assert_array_equal(log.steps, np.arange(1, 6) * 10)
    expected = np.where(np.isfinite(loss), loss, np.nan).astype(np.float64)
    np.testing.assert_array_equal(log.values["loss"], expected)
    np.testing.assert_array_equal(log.values["count"], count.astype(np.float64))


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_points(path, {"x": np.zeros((2, 2))})
    with open(path, "a") as fh:
        fh.write("{not json}\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:5: malformed JSON")):
        read_metrics(path)
    path.write_text('{"step": 1, "seed": 0, "x": 1}\n')
    with pytest.raises(ValueError, match=re.escape(f"{path}:1: expected an object with integer")):
        read_metrics(path)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope.jsonl"))):
        read_metrics(tmp_path / "nope.jsonl")


def test_truncate_after(tmp_path):
    path = tmp_path / "metrics.jsonl"
    values = {"x": np.arange(8.0).reshape(2, 4)}
    write_points(path, {"x": values["x"][:, :2]})
    prefix = path.read_bytes()
    write_points(path, {"x": values["x"][:, 2:]}, first_update=3)
    with open(path, "a") as fh:
        fh.write('{"step": 50, "upd')  # torn last write
    writer = MetricsWriter(path)
    writer.truncate_after(2)
    assert path.read_bytes() == prefix
    assert listing(tmp_path) == ["metrics.jsonl"]
    with pytest.raises(ValueError, match="logged only up to update 2, but the checkpoint is at update 3"):
        writer.truncate_after(3)


def test_writer_rejects_bad_input(tmp_path):
    writer = MetricsWriter(tmp_path / "m.jsonl")
    with pytest.raises(ValueError, match="reserved"):
        writer.write(np.array([1]), np.array([1]), {"step": np.zeros((1, 1))})
    with pytest.raises(ValueError, match="'b'"):
        writer.write(np.array([1, 2]), np.array([1, 2]), {"a": np.zeros((2, 2)), "b": np.zeros((2, 3))})
    assert (tmp_path / "m.jsonl").read_text() == ""
