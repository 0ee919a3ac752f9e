"""Seed sweeps: per-seed results independent of vmap, device count and process count.

The multi-device and multi-host cases run ``tests/run/_sweep_worker.py`` in subprocesses
(8 forced host CPU devices; two processes x 4 devices joined by ``jax.distributed`` over
loopback with gloo collectives) and compare their results bitwise with a 1-device run.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrl_icl.run.sweep as sw
from tests.run._sweep_worker import LR, NUM_SEEDS, TRUE_W, noisy_fit

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("_sweep_worker.py")
TIMEOUT_S = 240


def _env(num_devices: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAXRL_", "XLA_", "JAX_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["JAX_PLATFORMS"] = "cpu"
    if num_devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={num_devices}"
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Launch all worker processes at once; ``{name: (returncode, log, npz-or-None)}``.

    One deadline for all of them: a hang (e.g. a process that never joins) fails the tests.
    """
    out = tmp_path_factory.mktemp("sweep")
    coordinator = f"127.0.0.1:{_free_port()}"
    host = {"JAXRL_COORDINATOR": coordinator, "JAXRL_NUM_PROCESSES": "2"}
    envs = {
        "single": _env(1),
        "eight": _env(8),
        "host0": _env(4, JAXRL_PROCESS_ID="0", **host),
        "host1": _env(4, JAXRL_PROCESS_ID="1", **host),
    }
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(WORKER), str(out / f"{name}.npz")],
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, env in envs.items()
    }
    results = {}
    deadline = time.monotonic() + TIMEOUT_S
    try:
        for name, proc in procs.items():
            try:
                log, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                log = proc.communicate()[0] + f"\n[killed after {TIMEOUT_S}s]"
            path = out / f"{name}.npz"
            data = dict(np.load(path)) if proc.returncode == 0 and path.exists() else None
            results[name] = (proc.returncode, log, data)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def _result(runs, name):
    returncode, log, data = runs[name]
    assert returncode == 0 and data is not None, f"{name} worker failed ({returncode}):\n{log}"
    return data


def _assert_same_results(data, reference):
    for key in ("walk", "w"):
        assert data[key].shape == reference[key].shape
        np.testing.assert_array_equal(data[key], reference[key])


def test_seed_keys_shape_and_independence():
    keys = sw.seed_keys(3, 5)
    assert keys.shape == (5, 2) and keys.dtype == jnp.uint32
    assert len({tuple(map(int, k)) for k in keys}) == 5
    np.testing.assert_array_equal(keys, sw.seed_keys(3, 5))
    assert not np.array_equal(keys, sw.seed_keys(4, 5))
    with pytest.raises(ValueError, match="num_seeds"):
        sw.seed_keys(0, 0)


def test_sweep_matches_per_seed_loop():
    """vmapping must not change a seed's random stream: compare with one jit call per key."""
    keys = sw.seed_keys(0, NUM_SEEDS)
    true_w = jnp.array(TRUE_W)
    out = sw.sweep_seeds(noisy_fit, keys, true_w, LR)
    single = jax.jit(noisy_fit)
    for i in range(NUM_SEEDS):
        expected = single(keys[i], true_w, LR)
        for name in ("walk", "w"):
            assert isinstance(out[name], np.ndarray)
            np.testing.assert_array_equal(out[name][i], np.asarray(expected[name]))
    # Seeds differ, and the fit actually learns the weights.
    assert len({tuple(row) for row in out["walk"]}) == NUM_SEEDS
    np.testing.assert_allclose(out["w"].mean(0), TRUE_W, atol=0.4)


def test_one_device_shard_is_noop_and_gather_is_numpy():
    tree = {"a": jnp.arange(6.0).reshape(3, 2)}
    assert sw.shard_seed_axis(tree) is tree
    gathered = sw.gather_seeds(tree)
    assert isinstance(gathered["a"], np.ndarray)
    np.testing.assert_array_equal(gathered["a"], np.arange(6.0).reshape(3, 2))


def test_init_distributed_env_handling(monkeypatch):
    for name in ("JAXRL_COORDINATOR", "JAXRL_NUM_PROCESSES", "JAXRL_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    assert sw.init_distributed() is False
    monkeypatch.setenv("JAXRL_COORDINATOR", "127.0.0.1:1234")
    with pytest.raises(ValueError, match="JAXRL_NUM_PROCESSES, JAXRL_PROCESS_ID"):
        sw.init_distributed()
    monkeypatch.setenv("JAXRL_NUM_PROCESSES", "2")
    monkeypatch.setenv("JAXRL_PROCESS_ID", "2")
    with pytest.raises(ValueError, match="JAXRL_PROCESS_ID"):
        sw.init_distributed()
    monkeypatch.setenv("JAXRL_PROCESS_ID", "0")
    monkeypatch.setenv("JAXRL_COORDINATOR", "no-port")
    with pytest.raises(ValueError, match="JAXRL_COORDINATOR"):
        sw.init_distributed()


@pytest.mark.slow
def test_single_device_subprocess_matches_in_process(runs):
    single = _result(runs, "single")
    assert single["device_count"] == 1 and single["process_count"] == 1
    assert not single["joined"]
    expected = sw.sweep_seeds(noisy_fit, sw.seed_keys(0, NUM_SEEDS), jnp.array(TRUE_W), LR)
    _assert_same_results(single, expected)


@pytest.mark.slow
def test_eight_devices_sharded_and_bitwise_equal(runs):
    eight = _result(runs, "eight")
    assert eight["device_count"] == 8 and eight["process_count"] == 1
    assert eight["out_devices"] == 8
    assert list(eight["shard_rows"]) == [1] * 8
    assert list(eight["host_resharded_rows"]) == [1] * 8  # host numpy state placed per seed
    assert eight["reshard_is_noop"]  # a state already on the seed mesh is not moved
    assert list(eight["typed_key_rows"]) == [1] * 8 and eight["typed_key_data_equal"]
    assert eight["host_is_numpy"] and eight["repeat_equal"]
    _assert_same_results(eight, _result(runs, "single"))


@pytest.mark.slow
def test_indivisible_num_seeds_names_seeds_and_devices(runs):
    for name in ("eight", "host0"):
        message = str(_result(runs, name)["indivisible"])
        assert "num_seeds (10)" in message and "device count (8)" in message, message


@pytest.mark.slow
def test_two_processes_share_one_sweep(runs):
    single = _result(runs, "single")
    for name in ("host0", "host1"):
        host = _result(runs, name)
        assert host["joined"]
        assert host["process_count"] == 2
        assert host["device_count"] == 8 and host["local_device_count"] == 4
        assert host["out_devices"] == 8
        assert list(host["shard_rows"]) == [1] * 4  # each process computes 4 of the 8 seeds
        assert list(host["host_resharded_rows"]) == [1] * 4 and host["reshard_is_noop"]
        assert list(host["typed_key_rows"]) == [1] * 4 and host["typed_key_data_equal"]
        assert host["host_is_numpy"] and host["repeat_equal"]
        _assert_same_results(host, single)
