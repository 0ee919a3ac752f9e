"""The directory a run writes: ``runs/<experiment>/<timestamp>/``.

Layout::

    config.json      {"experiment": str, "config_class": str, "config": config_to_dict(cfg)}
    versions.json    library versions, backend, devices, git commit (see :func:`versions`)
    metrics.jsonl    see :mod:`jaxrl_icl.run.metrics`
    checkpoints/     see :mod:`jaxrl_icl.run.checkpoint`
    <name>.png       plots

Every file here is written to a temporary file in the same directory and renamed into
place (:func:`write_atomic`), so a reader never sees half a file. Only process 0 writes
when several JAX processes share a run.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import jax

from jaxrl_icl.config import ConfigError, config_from_dict, config_to_dict

_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """Run-level options shared by every experiment (not part of the config).

    Attributes:
      run_dir: where to write; None means ``runs/<experiment>/<timestamp>/``.
      resume: directory of a stopped run to continue (its ``config.json`` is the config;
        the run keeps writing there).
      progress: show a progress bar.
    """

    run_dir: Path | None = None
    resume: Path | None = None
    progress: bool = True


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """``obj`` as indented JSON (NaN/inf rejected), written atomically."""
    write_atomic(path, (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode())


def read_json(path: Path) -> Any:
    """Parse a JSON file; a missing or malformed file raises ValueError naming it."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found (not a run directory?)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable JSON: {err}") from None


def _git_state() -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the git checkout holding this code, ``(None, None)`` if none.

    Read-only git commands only (``--no-optional-locks`` so ``status`` never touches the
    index). ``commit`` is None in a checkout without commits.
    """
    source = Path(__file__).resolve().parent

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["git", "--no-optional-locks", "-C", str(source), *args],
            capture_output=True, text=True, timeout=10, check=False,
        )

    try:
        if git("rev-parse", "--is-inside-work-tree").stdout.strip() != "true":
            return None, None
        head = git("rev-parse", "--verify", "--quiet", "HEAD")
        status = git("status", "--porcelain")
    except (OSError, subprocess.SubprocessError):
        return None, None
    commit = head.stdout.strip() if head.returncode == 0 else None
    dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    return commit, dirty


def versions() -> dict[str, Any]:
    """What produced a run: versions, backend, devices and git state (no machine paths).

    Keys: ``python``, one per package in ``jax, jaxlib, flax, optax, orbax-checkpoint,
    numpy`` (None if not installed), ``backend``, ``device_kind``, ``device_count``
    (global), ``local_device_count``, ``process_count``, ``git_commit`` (str or None),
    ``git_dirty`` (bool, or None outside a git checkout).
    """
    info: dict[str, Any] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            info[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            info[name] = None
    commit, dirty = _git_state()
    info.update(
        backend=jax.default_backend(),
        device_kind=jax.devices()[0].device_kind,
        device_count=jax.device_count(),
        local_device_count=jax.local_device_count(),
        process_count=jax.process_count(),
        git_commit=commit,
        git_dirty=dirty,
    )
    return info


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@dataclasses.dataclass(frozen=True)
class RunDir:
    """A run's output directory.

    Attributes:
      path: the directory.
      experiment: experiment name (as stored in ``config.json``).
    """

    path: Path
    experiment: str

    @property
    def checkpoints(self) -> Path:
        """Orbax checkpoint directory ``<run>/checkpoints``."""
        return self.path / "checkpoints"

    @property
    def metrics_path(self) -> Path:
        """``<run>/metrics.jsonl``."""
        return self.path / "metrics.jsonl"

    def plot_path(self, name: str) -> Path:
        """``<run>/<name>.png``; ``name`` must be a plain file stem (no path separators)."""
        if not name or Path(name).name != name or name in (".", ".."):
            raise ValueError(f"plot name must be a plain file name, got {name!r}")
        return self.path / f"{name}.png"

    @classmethod
    def create(
        cls,
        experiment: str,
        config: Any,
        root: str | os.PathLike = "runs",
        path: str | os.PathLike | None = None,
    ) -> RunDir:
        """Make a new run directory and write ``config.json`` and ``versions.json``.

        Args:
          experiment: experiment name; the directory is ``<root>/<experiment>/<timestamp>``
            (``YYYYmmdd-HHMMSS``, suffixed ``-1``, ``-2``, ... if taken) unless ``path`` is given.
          config: the experiment's config dataclass instance.
          root: parent of the experiment folders.
          path: explicit directory (created if missing; must not already hold a run).
            Required with several JAX processes, whose clocks may give different timestamps.
        """
        if not experiment or Path(experiment).name != experiment:
            raise ValueError(f"experiment must be a plain name, got {experiment!r}")
        config_dict = config_to_dict(config)
        if path is not None:
            run_path = Path(path)
            if (run_path / "config.json").exists():
                raise ValueError(f"{run_path}: already holds a run (config.json exists); resume it instead")
            if jax.process_index() == 0:
                run_path.mkdir(parents=True, exist_ok=True)
        elif jax.process_count() > 1:
            raise ValueError("path: an explicit run directory is required with several JAX processes")
        else:
            run_path = _new_timestamped_dir(Path(root) / experiment)
        if jax.process_index() == 0:
            write_json(
                run_path / "config.json",
                {"experiment": experiment, "config_class": _class_name(type(config)), "config": config_dict},
            )
            write_json(run_path / "versions.json", versions())
        return cls(run_path, experiment)

    @classmethod
    def open(cls, path: str | os.PathLike, config_cls: type | None = None) -> tuple[RunDir, Any]:
        """Open an existing run (e.g. to resume): ``(RunDir, config)``.

        ``config`` is a ``config_cls`` instance rebuilt from ``config.json``, or the raw
        config dict when ``config_cls`` is None. A missing or unreadable ``config.json``, or
        one written for another config class, raises an error naming the file.
        """
        run_path = Path(path)
        config_path = run_path / "config.json"
        stored = read_json(config_path)
        if not isinstance(stored, dict) or not {"experiment", "config_class", "config"} <= stored.keys():
            raise ValueError(f"{config_path}: expected keys experiment, config_class, config")
        run = cls(run_path, stored["experiment"])
        if config_cls is None:
            return run, stored["config"]
        # Compare without the module: ``python -m`` runs name it ``__main__``.
        if not str(stored["config_class"]).endswith("." + config_cls.__qualname__):
            raise ValueError(
                f"{config_path}: written for config class {stored['config_class']}, "
                f"not {_class_name(config_cls)}"
            )
        try:
            return run, config_from_dict(config_cls, stored["config"])
        except ConfigError as err:
            raise ConfigError(err.field_name, f"{err.message} (in {config_path})") from None


def _new_timestamped_dir(parent: Path) -> Path:
    """Create and return ``parent/<YYYYmmdd-HHMMSS>[-k]``, a directory that did not exist."""
    parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for k in range(1000):
        candidate = parent / (stamp if k == 0 else f"{stamp}-{k}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"{parent}: no free run directory name for timestamp {stamp}")


def open_run(experiment: str, config: Any, options: RunOptions, *, resumable: bool = False) -> RunDir:
    """The run directory an experiment's CLI asked for (call it after validating inputs).

    ``--resume DIR`` reopens ``DIR`` (only when the experiment is ``resumable``: one that
    checkpoints; otherwise it exits with status 2 and a message); else a new directory is
    made at ``--run-dir`` or ``runs/<experiment>/<timestamp>/``.
    """
    if options.resume is not None:
        if not resumable:
            raise SystemExit(f"--resume: {experiment} runs in one call and has nothing to resume; run it again")
        run, _ = RunDir.open(options.resume, type(config))
        return run
    return RunDir.create(experiment, config, path=options.run_dir)
