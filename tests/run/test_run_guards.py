"""What a run directory guarantees around the training itself: file modes follow the umask,
summaries with NaN still serialise, one process per run directory, clear errors for a full
or read-only disk, and no resume over a metrics log with a hole."""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import re
import socket
import stat
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxrl_icl.run import metrics as metrics_module
from jaxrl_icl.run import rundir as rundir_module
from jaxrl_icl.run.loop import train_in_chunks
from jaxrl_icl.run.metrics import MetricsWriter
from jaxrl_icl.run.plots import plot_curves
from jaxrl_icl.run.rundir import (
    RunDir,
    RunInUseError,
    RunOptions,
    RunWriteError,
    lock_run,
    open_run,
    write_json,
)
from jaxrl_icl.run.sweep import seed_keys
from jaxrl_icl.trainer import Trainer

REPO = Path(__file__).resolve().parents[2]
NUM_SEEDS = 2


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    """Config of the toy trainer (only written to config.json)."""

    num_updates: int = 9


def _toy_update(state, data):
    key, sub = jax.random.split(state["key"])
    w = state["w"] + 0.1 * jax.random.normal(sub, state["w"].shape) - 0.05 * state["w"]
    return {"w": w, "key": key}, {"loss": jnp.sum(w**2)}


TRAINER = Trainer(lambda key, data: {"w": jnp.zeros(3), "key": key}, _toy_update, 9, 4)


def train(run: RunDir, *, resume: bool = False, **kwargs):
    return train_in_chunks(TRAINER, seed_keys(0, NUM_SEEDS), None, chunk_updates=3, run=run, resume=resume,
                           progress=False, **kwargs)


# ----------------------------------------------------------------------------- modes


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_every_file_and_folder_follows_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        run = RunDir.create("toy", ToyConfig(), path=tmp_path / "run")
        train(run)
        MetricsWriter(run.metrics_path).truncate_after(9)  # what a resume does: an atomic rewrite
        write_json(run.path / "summary.json", {"x": 1.0})
        plot_curves({"a": (np.arange(3), np.ones((2, 3)))}, run.plot_path("curve"), "x", "y")
    finally:
        os.umask(old)
    entries = [run.path, *run.path.rglob("*")]
    assert {p.name for p in entries} >= {"config.json", "versions.json", "metrics.jsonl", ".lock",
                                          "summary.json", "curve.png", "checkpoints", "9"}
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in entries}
    wanted = {name: (0o777 if (tmp_path / name).is_dir() else 0o666) & ~mask for name in modes}
    assert modes == wanted


def test_learning_histories_follow_the_umask(tmp_path):
    from jaxrl_icl.rl.histories import save_histories
    from tests.rl.test_histories import _dataset

    old = os.umask(0o027)
    try:
        path = save_histories(tmp_path / "h.h5", *_dataset())
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


# ----------------------------------------------------------------------------- one model on many devices

_ONE_MODEL_ON_EIGHT_DEVICES = """
import sys
from typing import NamedTuple
import jax
from jaxrl_icl.run.models import train_one_model
from jaxrl_icl.run.rundir import RunDir, RunOptions
from jaxrl_icl.trainer import Trainer
from tests.run.test_run_guards import TRAINER, ToyConfig

class State(NamedTuple):
    params: dict

def update(state, data):
    params, metrics = TRAINER.update(state.params, data)
    return State(params), metrics

trainer = Trainer(lambda key, data: State(TRAINER.init(key, data)), update, 9, 4)
assert jax.device_count() == 8
run = RunDir.create("toy", ToyConfig(), path=sys.argv[1])
params = train_one_model(trainer, 0, run, RunOptions(progress=False), chunk_updates=3, checkpoint_every_chunks=1)
assert params["w"].shape == (3,)
print(sorted(int(p.name) for p in run.checkpoints.iterdir()))
"""


def test_one_model_trains_on_a_machine_with_eight_devices(tmp_path):
    """The AD/DPT experiments train one model (one seed): it must not need 8 seeds to shard."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", _ONE_MODEL_ON_EIGHT_DEVICES, str(tmp_path / "run")], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-1] == "[3, 6, 9]"


# ----------------------------------------------------------------------------- NaN in summaries


def test_write_json_writes_non_finite_numbers_as_null(tmp_path):
    path = tmp_path / "summary.json"
    write_json(path, {"mean": math.nan, "per_seed": [1.5, math.inf, np.float32("nan"), np.float64(2.0)],
                      "nested": {"low": -math.inf, "n": np.int64(3), "ok": True}, "pair": (math.nan, 1)})
    text = path.read_text()
    assert json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in {text}")) == {
        "mean": None, "per_seed": [1.5, None, None, 2.0], "nested": {"low": None, "n": 3, "ok": True},
        "pair": [None, 1],
    }


@pytest.mark.slow  # two PPO compilations: about 2 minutes on 2 busy CPU cores
def test_ppo_run_in_which_no_episode_finishes_completes_and_resumes(tmp_path, capsys):
    """MountainCar episodes last 200 steps; 2 updates of 4 envs x 16 steps finish none."""
    from experiments import ppo

    flags = ["--env", "gymnax:MountainCar-v0", "--num-seeds", "2", "--chunk-updates", "1", "--no-progress",
             "--ppo.total-timesteps", "128", "--ppo.num-envs", "4", "--ppo.num-steps", "16",
             "--ppo.num-minibatches", "2", "--ppo.update-epochs", "1"]
    run = ppo.main([*flags, "--run-dir", str(tmp_path / "run")])
    summary = json.loads((run.path / "summary.json").read_text())
    assert summary["final_return_mean"] is None and summary["final_return_per_seed"] == [None, None]
    assert "no episode finished" in capsys.readouterr().out
    (run.path / "summary.json").unlink()
    ppo.main(["--resume", str(run.path), "--no-progress"])
    assert json.loads((run.path / "summary.json").read_text()) == summary


# ----------------------------------------------------------------------------- one process per run

_HOLD_LOCK = """
import sys
from jaxrl_icl.run.rundir import lock_run
lock_run(sys.argv[1])
print("locked", flush=True)
sys.stdin.read()
"""


def test_a_second_process_cannot_drive_a_locked_run(tmp_path):
    run = RunDir.create("toy", ToyConfig(), path=tmp_path / "run")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(theirs)], cwd=REPO, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked", holder.stderr.read()
        held_by = rf"in use by process {holder.pid} on host {re.escape(socket.gethostname())}"
        with pytest.raises(RunInUseError, match=re.escape(str(theirs)) + ": .*" + held_by):
            lock_run(theirs)
        with pytest.raises(SystemExit, match=held_by):  # a new run in that directory
            open_run("toy", ToyConfig(), RunOptions(run_dir=theirs))
        assert sorted(p.name for p in theirs.iterdir()) == [".lock"]
        # A --resume while the run is going exits at once with that message.
        write_json(theirs / "config.json", json.loads((run.path / "config.json").read_text()))
        with pytest.raises(SystemExit, match=held_by):
            open_run("toy", ToyConfig(), RunOptions(resume=theirs), resumable=True)
    finally:
        holder.stdin.close()
        assert holder.wait(timeout=60) == 0
    # The holder is gone (its lock file stays behind): the run is free again.
    assert json.loads((theirs / ".lock").read_text())["pid"] == holder.pid
    assert open_run("toy", ToyConfig(), RunOptions(resume=theirs), resumable=True).path == theirs
    lock_run(run.path)  # this process holds it already: no error


def test_lock_is_held_by_a_killed_process_only_while_it_lives(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(tmp_path)], cwd=REPO,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(RunInUseError):
        lock_run(tmp_path)
    holder.kill()
    holder.wait(timeout=60)
    lock_run(tmp_path)
    assert json.loads((tmp_path / ".lock").read_text()) == {"pid": os.getpid(), "host": socket.gethostname()}


# ----------------------------------------------------------------------------- full or read-only disk


def test_full_disk_mid_run_names_the_file_and_how_to_resume(tmp_path, monkeypatch):
    full = RunDir.create("toy", ToyConfig(), path=tmp_path / "full")
    full_state, _ = train(full)

    run = RunDir.create("toy", ToyConfig(), path=tmp_path / "run")
    writes = []

    def open_until_full(path, *args, **kwargs):
        if Path(path) == run.metrics_path and args[:1] == ("a",):
            writes.append(path)
            if len(writes) == 3:  # updates 7..9
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return open(path, *args, **kwargs)

    monkeypatch.setattr(metrics_module, "open", open_until_full, raising=False)
    with pytest.raises(RunWriteError) as failure:
        train(run)
    message = str(failure.value)
    assert failure.value.errno == errno.ENOSPC
    assert message.startswith(f"could not write {run.metrics_path.absolute()}: No space left on device")
    assert "saved up to update 6" in message and f"--resume {run.path.absolute()}" in message

    monkeypatch.undo()
    state, _ = train(RunDir.open(run.path, ToyConfig)[0], resume=True)
    assert run.metrics_path.read_bytes() == full.metrics_path.read_bytes()
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(full_state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_failed_checkpoint_names_it_and_the_last_good_one(tmp_path, monkeypatch):
    run = RunDir.create("toy", ToyConfig(), path=tmp_path / "run")
    save = ocp.CheckpointManager.save

    def save_until_full(self, step, *args, **kwargs):
        if step == 6:
            raise ValueError("RESOURCE_EXHAUSTED: Failed to write: No space left on device [os_error_code='28']")
        return save(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", save_until_full)
    with pytest.raises(RunWriteError, match=re.escape(f"could not write {run.checkpoints.absolute() / '6'}: ")
                       + r"ValueError: RESOURCE_EXHAUSTED.*saved up to update 3.*--resume"):
        train(run)


def test_read_only_run_directory(tmp_path, monkeypatch):
    run = RunDir.create("toy", ToyConfig(), path=tmp_path / "run")

    def read_only(*args):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(rundir_module.os, "replace", read_only)
    with pytest.raises(RunWriteError, match=re.escape(f"could not write {run.path / 'summary.json'}: "
                                                      "Read-only file system. No checkpoint")):
        write_json(run.path / "summary.json", {"a": 1})
    assert sorted(p.name for p in run.path.iterdir()) == [".lock", "config.json", "versions.json"]


def test_run_dir_that_cannot_be_made_exits_with_a_message(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit, match=re.escape(f"error: could not write {tmp_path / 'file' / 'run'}")):
        open_run("toy", ToyConfig(), RunOptions(run_dir=tmp_path / "file" / "run"))


_FULL_DISK_IN_A_CLI = """
import dataclasses, errno, os, sys
from jaxrl_icl.run.rundir import RunOptions, open_run, write_error

@dataclasses.dataclass(frozen=True)
class Config:
    x: int = 1

run = open_run("toy", Config(), RunOptions(run_dir=sys.argv[1]))
(run.checkpoints / "40").mkdir(parents=True)
raise write_error(run.metrics_path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
"""


def test_a_command_that_fills_the_disk_ends_with_one_line_saying_how_to_resume(tmp_path):
    done = subprocess.run([sys.executable, "-c", _FULL_DISK_IN_A_CLI, str(tmp_path / "run")], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: could not write {tmp_path / 'run' / 'metrics.jsonl'}: No space left on device. The run is "
        f"saved up to update 40: once the disk has room (or is writable), continue it with --resume "
        f"{tmp_path / 'run'}"
    )
    assert "Traceback" not in done.stderr


# ----------------------------------------------------------------------------- metrics log with a hole


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda path: path.unlink(), "holds no metrics, but the checkpoint is at update 9"),
        (lambda path: path.write_text(""), "holds no metrics"),
        # The first update's lines cut off.
        (lambda path: path.write_text("".join(path.read_text().splitlines(keepends=True)[NUM_SEEDS:])),
         r"lacks 1 of updates 1\.\.9 \(first 1\)"),
        # Cut back to update 4 (then a torn line).
        (lambda path: path.write_text("".join(path.read_text().splitlines(keepends=True)[: 4 * NUM_SEEDS]) + '{"st'),
         "logged only up to update 4, but the checkpoint is at update 9"),
    ],
)
def test_resume_refuses_a_metrics_log_missing_updates(tmp_path, damage, match):
    run = RunDir.create("toy", ToyConfig(), path=tmp_path / "run")
    train(run)
    damage(run.metrics_path)
    contents = lambda: run.metrics_path.read_bytes() if run.metrics_path.exists() else b""  # noqa: E731
    before = contents()
    with pytest.raises(ValueError, match=re.escape(str(run.metrics_path)) + ": " + match):
        train(run, resume=True)
    assert contents() == before  # nothing appended or cut
