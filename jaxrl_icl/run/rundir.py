"""The directory a run writes: ``runs/<experiment>/<timestamp>/``.

Layout::

    config.json      {"experiment": str, "config_class": str, "config": config_to_dict(cfg)}
    versions.json    library versions, backend, devices, git commit (see :func:`versions`)
    metrics.jsonl    see :mod:`jaxrl_icl.run.metrics`
    checkpoints/     see :mod:`jaxrl_icl.run.checkpoint`
    <name>.png       plots
    .lock            pid and host of the process driving the run (see :func:`lock_run`)

Every file here is written to a temporary file in the same directory and renamed into
place (:func:`write_atomic`), so a reader never sees half a file; files and folders get the
modes the umask gives (0644 and 0755 under umask 022), so teammates can read a shared run.
A write that fails (disk full, read-only file system) raises :class:`RunWriteError` saying
which file, why, and whether the run can be resumed. Only process 0 writes when several
JAX processes share a run.

While a process creates, trains or resumes a run it holds an exclusive lock on
``<run>/.lock`` (:func:`lock_run`; the file names the holder's pid and host), so a second
process driving the same directory fails at once with :class:`RunInUseError`.
"""

from __future__ import annotations

import dataclasses
import datetime
import fcntl
import importlib.metadata
import json
import math
import os
import platform
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxrl_icl.config import ConfigError, config_from_dict, config_to_dict

_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")
LOCK_NAME = ".lock"


class RunInUseError(RuntimeError):
    """Another process holds the lock of a run directory."""


class RunWriteError(OSError):
    """A file or folder of a run could not be written (disk full, read-only file system, ...).

    The message names it and the reason and, when it lies in a run directory, says whether
    that run can be continued with ``--resume`` (it can once it holds a checkpoint). That
    part is worked out when the message is shown, so checkpoints still being written when
    the error was raised count. ``errno`` is the underlying error's, when there is one.

    Attributes:
      path: absolute path of what could not be written.
      reason: why, e.g. ``"No space left on device"``.
    """

    def __init__(self, path: str | os.PathLike, reason: str, errno: int | None = None):
        super().__init__(f"could not write {path}: {reason}")
        self.path, self.reason, self.errno = Path(path).absolute(), reason, errno

    def __str__(self) -> str:
        message = f"could not write {self.path}: {self.reason}"
        run = next((p for p in self.path.parents if (p / "config.json").is_file()), None)
        if run is None:
            return message
        try:
            saved = [int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit()]
        except OSError:
            saved = []
        if saved:
            return (f"{message}. The run is saved up to update {max(saved)}: once the disk has room "
                    f"(or is writable), continue it with --resume {run}")
        return f"{message}. No checkpoint of the run in {run} was written, so it cannot be resumed: start it again"


def write_error(path: str | os.PathLike, err: BaseException) -> RunWriteError:
    """The :class:`RunWriteError` for ``err``, raised by a write of ``path``."""
    reason = err.strerror if isinstance(err, OSError) and err.strerror else f"{type(err).__name__}: {err}"
    return RunWriteError(path, reason, getattr(err, "errno", None))


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
    """Write ``data`` to ``path`` via a temporary file in the same directory and a rename.

    The file gets the mode a plain ``open(path, "w")`` would give (``0o666`` less the
    umask: 0644 under the usual umask 022), so teammates can read a shared run. A failed
    write raises :class:`RunWriteError` (see :func:`write_error`) and leaves ``path`` as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as err:
        raise write_error(path, err) from err
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(err, OSError):
            raise write_error(path, err) from err
        raise


def _nulls_for_non_finite(obj: Any) -> Any:
    """``obj`` with every NaN or +-inf float (numpy scalars included) replaced by None,
    through nested dicts, lists and tuples."""
    if isinstance(obj, dict):
        return {key: _nulls_for_non_finite(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nulls_for_non_finite(value) for value in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """``obj`` as indented JSON, written atomically; NaN and +-inf are written as ``null``
    (JSON has no such numbers), numpy scalars as Python numbers."""
    text = json.dumps(_nulls_for_non_finite(obj), indent=2, allow_nan=False)
    write_atomic(path, (text + "\n").encode())


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


# Run directory (resolved) -> descriptor of its locked lock file, for the runs this process holds.
_held_locks: dict[Path, int] = {}


def _lock_holder(lock_path: Path) -> str:
    try:
        holder = json.loads(lock_path.read_text())
        return f"process {int(holder['pid'])} on host {holder['host']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (it has not written its pid yet)"


def lock_run(path: str | os.PathLike) -> None:
    """Lock the run directory ``path`` for this process until it exits.

    Takes an exclusive ``flock`` on ``<path>/.lock`` (created with the umask's mode) and
    writes ``{"pid", "host"}`` of this process into it. The kernel drops the lock when the
    process ends, however it ends, so a lock left by a dead process never blocks. Locking a
    directory this process already holds does nothing.

    Raises:
      RunInUseError: another process holds the lock; the message names the directory and
        the holder's pid and host.
      RunWriteError: the lock file cannot be created (e.g. a read-only file system).
    """
    run_path = Path(path).resolve()
    if run_path in _held_locks:
        return
    lock_path = run_path / LOCK_NAME
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise write_error(lock_path, err) from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunInUseError(
            f"{path}: this run directory is in use by {_lock_holder(lock_path)} (lock {lock_path}); "
            "wait for that run to finish or stop it, then --resume it"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n").encode(), 0)
    except OSError as err:
        os.close(fd)
        raise write_error(lock_path, err) from err
    _held_locks[run_path] = fd


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

        Process 0 locks the directory (:func:`lock_run`) before writing into it.
        """
        if not experiment or Path(experiment).name != experiment:
            raise ValueError(f"experiment must be a plain name, got {experiment!r}")
        config_dict = config_to_dict(config)
        if path is not None:
            run_path = Path(path)
            if (run_path / "config.json").exists():
                raise ValueError(f"{run_path}: already holds a run (config.json exists); resume it instead")
            if jax.process_index() == 0:
                try:
                    run_path.mkdir(parents=True, exist_ok=True)
                except OSError as err:
                    raise write_error(run_path, err) from err
                lock_run(run_path)
                if (run_path / "config.json").exists():  # made by another process meanwhile
                    raise ValueError(f"{run_path}: already holds a run (config.json exists); resume it instead")
        elif jax.process_count() > 1:
            raise ValueError("path: an explicit run directory is required with several JAX processes")
        else:
            run_path = _new_timestamped_dir(Path(root) / experiment)
            lock_run(run_path)
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
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_error(parent, err) from err
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    for k in range(1000):
        candidate = parent / (stamp if k == 0 else f"{stamp}-{k}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as err:
            raise write_error(candidate, err) from err
        return candidate
    raise FileExistsError(f"{parent}: no free run directory name for timestamp {stamp}")


def _brief_run_errors() -> None:
    """From now on an uncaught :class:`RunWriteError` or :class:`RunInUseError` prints
    ``error: <message>`` (the message says what to do) instead of a traceback; the process
    still exits with status 1. Other exceptions go to the previous ``sys.excepthook``."""
    previous = sys.excepthook
    if getattr(previous, "brief_run_errors", False):
        return

    def hook(kind: type[BaseException], value: BaseException, traceback: Any) -> None:
        if issubclass(kind, (RunWriteError, RunInUseError)):
            print(f"error: {value}", file=sys.stderr)
        else:
            previous(kind, value, traceback)

    hook.brief_run_errors = True
    sys.excepthook = hook


def open_run(experiment: str, config: Any, options: RunOptions, *, resumable: bool = False) -> RunDir:
    """The run directory an experiment's CLI asked for (call it after validating inputs).

    ``--resume DIR`` reopens ``DIR`` (only when the experiment is ``resumable``: one that
    checkpoints; otherwise it exits with status 2 and a message); else a new directory is
    made at ``--run-dir`` or ``runs/<experiment>/<timestamp>/``. Either way process 0 holds
    the directory's lock until it exits; a directory another process holds, or one that
    cannot be written, exits with status 1 and a message naming it (and the holder). A file
    of the run that cannot be written later (disk full mid-run) ends the program the same
    way, with the message of :class:`RunWriteError` rather than a traceback.
    """
    _brief_run_errors()
    try:
        if options.resume is not None:
            if not resumable:
                raise SystemExit(f"--resume: {experiment} runs in one call and has nothing to resume; run it again")
            run, _ = RunDir.open(options.resume, type(config))
            if jax.process_index() == 0:
                lock_run(run.path)
            return run
        return RunDir.create(experiment, config, path=options.run_dir)
    except (RunInUseError, RunWriteError) as err:
        raise SystemExit(f"error: {err}") from None
