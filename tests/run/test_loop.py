"""Chunked training loop: equals the one-scan trainer, resumes bitwise, validates inputs."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrl_icl.run.checkpoint import CheckpointError
from jaxrl_icl.run.loop import chunk_program, train_in_chunks
from jaxrl_icl.run.metrics import read_metrics
from jaxrl_icl.run.rundir import RunDir
from jaxrl_icl.run.sweep import seed_keys
from jaxrl_icl.trainer import Trainer

NUM_SEEDS = 3


@dataclasses.dataclass(frozen=True)
class RegressionConfig:
    """Config of the toy trainer (only used to write config.json)."""

    dim: int = 3
    num_updates: int = 12


def make_trainer(dim: int = 3, batch: int = 8, num_updates: int = 12) -> Trainer:
    """Adam fitting a noisy linear regression on fresh random minibatches each update.

    State: ``{"w": [dim], "opt": adam state, "key": PRNG key}``; the data ``{"w_true": [dim]}``
    is the second argument of ``init`` and ``update`` (so every test also checks that it reaches
    each update, shared or per seed); every update draws new inputs from the state's key, so
    results depend on every update and on RNG.
    Metrics: scalar ``loss`` and ``grad_norm``, and a ``residuals [batch]`` history.
    """
    opt = optax.adam(0.05)

    def init(key, env_params):
        k_w, k_run = jax.random.split(key)
        w = 0.1 * jax.random.normal(k_w, (dim,))
        return {"w": w, "opt": opt.init(w), "key": k_run}

    def update(state, env_params):
        key, k_x, k_noise = jax.random.split(state["key"], 3)
        x = jax.random.normal(k_x, (batch, dim))
        y = x @ env_params["w_true"] + 0.1 * jax.random.normal(k_noise, (batch,))
        loss, grad = jax.value_and_grad(lambda w: jnp.mean((x @ w - y) ** 2))(state["w"])
        updates, opt_state = opt.update(grad, state["opt"])
        w = optax.apply_updates(state["w"], updates)
        metrics = {"loss": loss, "grad_norm": jnp.linalg.norm(grad), "residuals": x @ w - y}
        return dict(state, w=w, opt=opt_state, key=key), metrics

    return Trainer(init, update, num_updates, batch)


def env_params(dim: int = 3) -> dict:
    return {"w_true": jnp.arange(1.0, dim + 1.0)}


# One trainer (and one seed count) shared by the tests, so jit caches are reused across them.
TRAINER = make_trainer(num_updates=12)


def with_updates(num_updates: int) -> Trainer:
    return dataclasses.replace(TRAINER, num_updates=num_updates)


def assert_trees_equal(a, b) -> None:
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b):
        x, y = np.asarray(jax.device_get(x)), np.asarray(jax.device_get(y))
        assert x.dtype == y.dtype and np.array_equal(x, y)


def new_run(tmp_path, name: str) -> RunDir:
    return RunDir.create("toy", RegressionConfig(), path=tmp_path / name)


def test_matches_one_scan_trainer_bitwise():
    trainer, keys = TRAINER, seed_keys(0, NUM_SEEDS)
    # 12 = 5 + 5 + 2: exercises the shorter last chunk.
    state, metrics = train_in_chunks(trainer, keys, env_params(), chunk_updates=5, progress=False)
    # The one-scan path as sweeps run it (jitted; eager op-by-op init may round differently).
    ref_state, ref_metrics = jax.jit(jax.vmap(trainer, in_axes=(0, None)))(keys, env_params())
    assert_trees_equal(state, ref_state)
    assert set(metrics) == {"loss", "grad_norm", "residuals"}
    assert metrics["residuals"].shape == (NUM_SEEDS, 12, 8)
    for name, value in metrics.items():
        assert isinstance(value, np.ndarray)
        np.testing.assert_array_equal(value, np.asarray(ref_metrics[name]))
    assert not np.array_equal(state["w"][0], state["w"][1])  # seeds really differ


def test_one_seed_matches_the_unbatched_trainer_bitwise():
    trainer, keys = with_updates(7), seed_keys(3, 1)
    state, metrics = train_in_chunks(trainer, keys, env_params(), chunk_updates=3, progress=False)
    ref_state, ref_metrics = jax.jit(trainer)(keys[0], env_params())
    assert_trees_equal(jax.tree.map(lambda x: x[0], state), ref_state)
    for name, value in metrics.items():
        assert value.shape[:2] == (1, 7)
        np.testing.assert_array_equal(value[0], np.asarray(ref_metrics[name]))


def test_sequential_seeds_match_each_seed_unbatched_bitwise():
    trainer, keys = with_updates(7), seed_keys(4, NUM_SEEDS)
    params = {"w_true": jnp.arange(NUM_SEEDS * 3.0).reshape(NUM_SEEDS, 3)}
    for per_seed, env in ((False, env_params()), (True, params)):
        state, metrics = train_in_chunks(trainer, keys, env, chunk_updates=3, progress=False,
                                         params_per_seed=per_seed, sequential_seeds=True)
        for i in range(NUM_SEEDS):
            seed_env = jax.tree.map(lambda x, i=i: x[i], env) if per_seed else env
            ref_state, ref_metrics = jax.jit(trainer)(keys[i], seed_env)
            assert_trees_equal(jax.tree.map(lambda x, i=i: x[i], state), ref_state)
            for name, value in metrics.items():
                np.testing.assert_array_equal(value[i], np.asarray(ref_metrics[name]))


def test_params_per_seed_matches_vmap():
    trainer, keys = with_updates(6), seed_keys(1, NUM_SEEDS)
    params = {"w_true": jnp.arange(NUM_SEEDS * 3.0).reshape(NUM_SEEDS, 3)}
    state, metrics = train_in_chunks(trainer, keys, params, chunk_updates=3, params_per_seed=True, progress=False)
    ref_state, ref_metrics = jax.jit(jax.vmap(trainer))(keys, params)
    assert_trees_equal(state, ref_state)
    np.testing.assert_array_equal(metrics["loss"], np.asarray(ref_metrics["loss"]))


def test_metrics_file_holds_scalar_metrics(tmp_path):
    trainer, keys = with_updates(6), seed_keys(2, NUM_SEEDS)
    run = new_run(tmp_path, "run")
    _, metrics = train_in_chunks(trainer, keys, env_params(), chunk_updates=3, run=run, progress=False)
    log = read_metrics(run.metrics_path)
    np.testing.assert_array_equal(log.updates, np.arange(1, 7))
    np.testing.assert_array_equal(log.steps, np.arange(1, 7) * trainer.env_steps_per_update)
    assert set(log.values) == {"loss", "grad_norm"}  # the [batch] history is returned, not logged
    for name in ("loss", "grad_norm"):
        np.testing.assert_array_equal(log.values[name], metrics[name].astype(np.float64))
    rows = [json.loads(line) for line in run.metrics_path.read_text().splitlines()]
    assert [(r["update"], r["seed"]) for r in rows] == [(u, s) for u in range(1, 7) for s in range(NUM_SEEDS)]


def test_log_metrics_transform(tmp_path):
    trainer, keys = with_updates(6), seed_keys(3, NUM_SEEDS)
    run = new_run(tmp_path, "run")
    _, metrics = train_in_chunks(
        trainer, keys, env_params(), chunk_updates=3, run=run, progress=False,
        log_metrics=lambda m: {"max_abs_residual": np.abs(m["residuals"]).max(axis=-1)},
    )
    log = read_metrics(run.metrics_path)
    assert set(log.values) == {"max_abs_residual"}
    np.testing.assert_array_equal(log.values["max_abs_residual"], np.abs(metrics["residuals"]).max(-1).astype(float))


def test_host_metrics_of_each_chunks_final_state_land_on_its_last_update(tmp_path):
    trainer, keys = with_updates(6), seed_keys(3, NUM_SEEDS)
    run = new_run(tmp_path, "run")
    seen = {}

    def host_metrics(state, update):  # a host-side function of the chunk's final state
        seen[update] = np.linalg.norm(np.asarray(state["w"]), axis=-1)
        return {"w_norm": seen[update]}

    final_state, metrics = train_in_chunks(trainer, keys, env_params(), chunk_updates=4, run=run, progress=False,
                                           host_metrics=host_metrics)
    assert list(seen) == [4, 6]
    np.testing.assert_array_equal(seen[6], np.linalg.norm(np.asarray(final_state["w"]), axis=-1))
    expected = np.full((NUM_SEEDS, 6), np.nan)
    expected[:, 3], expected[:, 5] = seen[4], seen[6]
    np.testing.assert_allclose(metrics["w_norm"], expected, rtol=1e-6)
    np.testing.assert_allclose(read_metrics(run.metrics_path).values["w_norm"], expected, rtol=1e-6)


def test_resume_after_stop_is_bitwise_identical(tmp_path):
    trainer, keys, params = TRAINER, seed_keys(4, NUM_SEEDS), env_params()
    full_run = new_run(tmp_path, "full")
    full_state, full_metrics = train_in_chunks(trainer, keys, params, chunk_updates=3, run=full_run, progress=False)

    stopped = new_run(tmp_path, "stopped")
    first_chunk = with_updates(3)
    train_in_chunks(first_chunk, keys, params, chunk_updates=3, run=stopped, progress=False)
    # Everything in memory is discarded: reopen from disk only.
    run, _ = RunDir.open(stopped.path, RegressionConfig)
    state, metrics = train_in_chunks(trainer, keys, params, chunk_updates=3, run=run, resume=True, progress=False)

    assert_trees_equal(state, full_state)
    assert run.metrics_path.read_bytes() == full_run.metrics_path.read_bytes()
    # Only the updates run by the resumed call come back.
    assert metrics["loss"].shape == (NUM_SEEDS, 9)
    np.testing.assert_array_equal(metrics["loss"], full_metrics["loss"][:, 3:])


def test_resume_after_crash_between_checkpoints(tmp_path):
    """Crash after chunk 3 was logged but before its checkpoint, with a torn line on top."""
    trainer, keys, params = TRAINER, seed_keys(5, NUM_SEEDS), env_params()
    full_run = new_run(tmp_path, "full")
    full_state, _ = train_in_chunks(trainer, keys, params, chunk_updates=3, run=full_run, progress=False)

    calls = []

    def crash_on_fourth_chunk(metrics):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return {k: v for k, v in metrics.items() if v.ndim == 2}

    crashed = new_run(tmp_path, "crashed")
    with pytest.raises(KeyboardInterrupt):
        train_in_chunks(
            trainer, keys, params, chunk_updates=3, run=crashed, checkpoint_every_chunks=2,
            log_metrics=crash_on_fourth_chunk, progress=False,
        )
    assert sorted(p.name for p in crashed.checkpoints.iterdir()) == ["6"]
    assert len(crashed.metrics_path.read_text().splitlines()) == 9 * NUM_SEEDS
    with open(crashed.metrics_path, "a") as fh:
        fh.write('{"step": 80, "upd')  # torn write

    run, _ = RunDir.open(crashed.path, RegressionConfig)
    state, _ = train_in_chunks(trainer, keys, params, chunk_updates=3, run=run, resume=True, progress=False)
    assert_trees_equal(state, full_state)
    assert run.metrics_path.read_bytes() == full_run.metrics_path.read_bytes()


def test_resume_of_finished_run_runs_nothing(tmp_path):
    trainer, keys, params = with_updates(3), seed_keys(6, NUM_SEEDS), env_params()
    run = new_run(tmp_path, "run")
    state, _ = train_in_chunks(trainer, keys, params, chunk_updates=3, run=run, progress=False)
    before = run.metrics_path.read_bytes()
    resumed, metrics = train_in_chunks(trainer, keys, params, chunk_updates=3, run=run, resume=True, progress=False)
    assert_trees_equal(resumed, state)
    assert run.metrics_path.read_bytes() == before
    assert metrics["loss"].shape == (NUM_SEEDS, 0) and metrics["residuals"].shape == (NUM_SEEDS, 0, 8)


def test_resume_errors(tmp_path):
    trainer, keys, params = with_updates(6), seed_keys(7, NUM_SEEDS), env_params()
    empty = new_run(tmp_path, "empty")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train_in_chunks(trainer, keys, params, chunk_updates=3, run=empty, resume=True, progress=False)

    run = new_run(tmp_path, "run")
    train_in_chunks(trainer, keys, params, chunk_updates=3, run=run, progress=False)
    with pytest.raises(ValueError, match="already holds checkpoints"):
        train_in_chunks(trainer, keys, params, chunk_updates=3, run=run, progress=False)
    # A different config (dim 4) must not silently restart or load the dim-3 state.
    with pytest.raises(CheckpointError, match=r"leaf \[.*is float32\(3, 3\) in the checkpoint but float32\(3, 4\)"):
        train_in_chunks(make_trainer(dim=4, num_updates=6), keys, env_params(4), chunk_updates=3, run=run,
                        resume=True, progress=False)
    with pytest.raises(ValueError, match="past num_updates"):
        train_in_chunks(with_updates(3), keys, params, chunk_updates=3, run=run, resume=True, progress=False)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"chunk_updates": 0}, "chunk_updates"),
        ({"chunk_updates": 3, "checkpoint_every_chunks": 0}, "checkpoint_every_chunks"),
        ({"chunk_updates": 3, "checkpoint_every_s": 0}, "checkpoint_every_s"),
        ({"chunk_updates": 3, "resume": True}, "resume"),
        # Leading axis 2 is not the 3 seeds.
        ({"chunk_updates": 3, "params_per_seed": True, "env_params": {"w_true": jnp.ones((2, 3))}},
         r"env_params\['w_true'\].*\(2, 3\)"),
        ({"chunk_updates": 3, "log_metrics": lambda m: {"loss": m["loss"][:, :1]}}, "log_metrics"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    run = new_run(tmp_path, "run") if "log_metrics" in kwargs else None
    kwargs = dict(kwargs)
    params = kwargs.pop("env_params", env_params())
    with pytest.raises(ValueError, match=match):
        train_in_chunks(with_updates(3), seed_keys(0, NUM_SEEDS), params, run=run, progress=False, **kwargs)


def test_progress_bar_counts_env_steps(capsys):
    train_in_chunks(with_updates(6), seed_keys(0, NUM_SEEDS), env_params(), chunk_updates=3, progress=True)
    err = capsys.readouterr().err
    # 3 seeds * 6 updates * 8 steps; tqdm's unit_scale may print "144" as "144.0".
    assert re.search(r"144(\.0)?/144(\.0)?", err) and "step/s" in err


_MULTI_DEVICE_SCRIPT = """
import dataclasses, sys
from pathlib import Path
import jax, numpy as np
from tests.run.test_loop import RegressionConfig, env_params, make_trainer
from jaxrl_icl.run.loop import train_in_chunks
from jaxrl_icl.run.rundir import RunDir
from jaxrl_icl.run.sweep import seed_keys, sweep_seeds

assert jax.device_count() == 4
root = Path(sys.argv[1])
trainer, keys, params = make_trainer(num_updates=6), seed_keys(0, 8), env_params()
full = RunDir.create("toy", RegressionConfig(), path=root / "full")
state, _ = train_in_chunks(trainer, keys, params, chunk_updates=2, run=full, progress=False)
assert state["w"].sharding.spec == jax.sharding.PartitionSpec("seeds")
ref, _ = sweep_seeds(trainer, keys, params)
leaves = jax.tree.leaves
same = lambda x, y: all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(leaves(x), leaves(y)))
assert same(state, ref)
stopped = RunDir.create("toy", RegressionConfig(), path=root / "stopped")
train_in_chunks(dataclasses.replace(trainer, num_updates=2), keys, params, chunk_updates=2, run=stopped, progress=False)
resumed, _ = train_in_chunks(trainer, keys, params, chunk_updates=2, run=stopped, resume=True, progress=False)
assert same(state, resumed)
assert full.metrics_path.read_bytes() == stopped.metrics_path.read_bytes()
print("OK")
"""


def test_sharded_over_four_cpu_devices(tmp_path):
    """Seeds sharded over 4 devices: same bits as the one-scan sweep, and bitwise resume."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    done = subprocess.run(
        [sys.executable, "-c", _MULTI_DEVICE_SCRIPT, str(tmp_path)],
        cwd=Path(__file__).resolve().parents[2], env=env, capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0 and done.stdout.strip() == "OK", done.stderr[-3000:]


def test_every_chunk_length_runs_one_compiled_program():
    """7 updates in chunks of 3 run 3 + 3 + 1 updates with one compilation (a scan compiled per
    length took two), and give the one-scan trainer's bits."""
    trainer, keys = make_trainer(num_updates=7), seed_keys(2, NUM_SEEDS)  # fresh closures: a fresh jit cache
    state, metrics = train_in_chunks(trainer, keys, env_params(), chunk_updates=3, progress=False)
    assert chunk_program(trainer.update, False, False)._cache_size() == 1
    ref_state, ref_metrics = jax.jit(jax.vmap(trainer, in_axes=(0, None)))(keys, env_params())
    assert_trees_equal(state, ref_state)
    for name, value in metrics.items():
        np.testing.assert_array_equal(value, np.asarray(ref_metrics[name]))


@pytest.mark.parametrize(("every_s", "saved"), [(1e-9, [6, 9, 12]), (1e9, [12])])
def test_checkpoints_by_time(tmp_path, every_s, saved):
    """With a count that never comes due, chunks 3, 6, 9, 12 are checkpointed when the interval has
    passed (the newest 3 kept), else only the last."""
    run = new_run(tmp_path, "run")
    state, _ = train_in_chunks(TRAINER, seed_keys(0, NUM_SEEDS), env_params(), chunk_updates=3, run=run,
                               checkpoint_every_chunks=100, checkpoint_every_s=every_s, progress=False)
    assert sorted(int(p.name) for p in run.checkpoints.iterdir() if p.name.isdigit()) == saved
