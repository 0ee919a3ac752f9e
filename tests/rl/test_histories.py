"""Tests for learning-history datasets (``jaxrl_icl.rl.histories``)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from jaxrl_icl.rl.histories import (
    HISTORY_KEYS,
    compact_histories,
    histories_from_metrics,
    load_histories,
    nbytes,
    save_histories,
)


def _dataset(n=3, t=40, seed=0):
    rng = np.random.default_rng(seed)
    histories = {
        "obs": rng.integers(0, 9, (n, t, 2)).astype(np.int8),
        "action": rng.integers(0, 5, (n, t)).astype(np.int8),
        "reward": (rng.random((n, t)) < 0.2).astype(np.float16),
        "terminated": np.zeros((n, t), bool),
        "truncated": (np.arange(t) % 20 == 19)[None].repeat(n, 0),
    }
    meta = {
        "env": "darkroom-9x9", "algorithm": "q_learning", "config": {"lr": 0.1, "tags": [1, 2]},
        "seed": 7, "params": {"goal": rng.integers(0, 9, (n, 2)).astype(np.int32),
                              "max_steps_in_episode": np.full((n,), 20, np.int32)},
    }
    return histories, meta


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        np.testing.assert_array_equal(a[k], b[k])


def test_round_trip_is_exact(tmp_path):
    histories, meta = _dataset()
    histories["reward"] = np.random.default_rng(1).normal(size=(3, 40)).astype(np.float32)
    path = save_histories(tmp_path / "h.h5", histories, meta)
    loaded, loaded_meta = load_histories(path)
    _assert_same(loaded, histories)
    _assert_same(loaded_meta.pop("params"), meta["params"])
    assert loaded_meta == {k: v for k, v in meta.items() if k != "params"}
    assert [p.name for p in tmp_path.iterdir()] == ["h.h5"]  # no temporary file left behind


def test_compact_histories_narrows_exactly():
    histories, _ = _dataset()
    wide = {
        "obs": histories["obs"].astype(np.int64) + 200,  # 200..208 needs int16
        "action": histories["action"].astype(np.int32),
        "reward": histories["reward"].astype(np.float32),  # 0/1: exact in float16
        "terminated": histories["terminated"],
        "truncated": histories["truncated"],
        "noisy": np.full((3, 40), 0.1, np.float32),  # 0.1 is not a float16: stays float32
    }
    compact = compact_histories(wide)
    dtypes = {k: v.dtype for k, v in compact.items()}
    assert dtypes == {"obs": np.int16, "action": np.int8, "reward": np.float16,
                      "terminated": np.bool_, "truncated": np.bool_, "noisy": np.float32}
    for k in wide:
        np.testing.assert_array_equal(compact[k].astype(wide[k].dtype), wide[k])
    assert nbytes(compact) < nbytes(wide)
    assert nbytes(compact) == sum(v.size * v.dtype.itemsize for v in compact.values())


def _write_raw(path, histories, n, t, **attrs):
    with h5py.File(path, "w") as f:
        f.attrs.update(format="jaxrl-icl-histories", version=1, env="e", algorithm="a", config="{}",
                       seed=0, num_histories=n, num_steps=t, **attrs)
        g = f.create_group("histories")
        for k, v in histories.items():
            g.create_dataset(k, data=v)
        f.create_group("params").create_dataset("goal", data=np.zeros((n, 2), np.int32))


def test_load_rejects_missing_keys_bad_shapes_and_empty_files(tmp_path):
    histories, _ = _dataset()
    missing = tmp_path / "missing.h5"
    _write_raw(missing, {k: v for k, v in histories.items() if k != "reward"}, 3, 40)
    with pytest.raises(ValueError, match=r"missing\.h5.*missing history key.*reward"):
        load_histories(missing)

    bad_shape = tmp_path / "shape.h5"
    _write_raw(bad_shape, {**histories, "action": histories["action"][:, :30]}, 3, 40)
    with pytest.raises(ValueError, match=r"shape\.h5.*action has shape"):
        load_histories(bad_shape)

    wrong_count = tmp_path / "count.h5"
    _write_raw(wrong_count, histories, 4, 40)
    with pytest.raises(ValueError, match=r"count\.h5.*attributes say"):
        load_histories(wrong_count)

    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.h5.*not a readable HDF5"):
        load_histories(empty)

    no_rows = tmp_path / "no_rows.h5"
    _write_raw(no_rows, {k: v[:, :0] for k, v in histories.items()}, 3, 0)
    with pytest.raises(ValueError, match=r"no_rows\.h5.*non-empty"):
        load_histories(no_rows)

    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_histories(tmp_path / "nowhere.h5")


def test_save_rejects_bad_input_before_writing(tmp_path):
    histories, meta = _dataset()
    path = tmp_path / "h.h5"
    with pytest.raises(ValueError, match="terminated must be bool"):
        save_histories(path, {**histories, "terminated": histories["terminated"].astype(np.int8)}, meta)
    with pytest.raises(ValueError, match="params/goal has shape"):
        save_histories(path, histories, {**meta, "params": {"goal": np.zeros((2, 2))}})
    with pytest.raises(ValueError, match="missing meta key"):
        save_histories(path, histories, {k: v for k, v in meta.items() if k != "seed"})
    with pytest.raises(ValueError, match="non-finite"):
        save_histories(path, {**histories, "reward": np.full((3, 40), np.nan, np.float32)}, meta)
    assert list(tmp_path.iterdir()) == []


def test_histories_from_metrics_orders_runs_envs_and_time():
    b, u, s, e = 2, 3, 4, 5
    code = np.arange(b * u * s * e).reshape(b, u, s, e)  # encodes (run, update, step, env)
    metrics = {f"history/{k}": code for k in HISTORY_KEYS}
    metrics["history/obs"] = np.stack([code, -code], axis=-1)
    out = histories_from_metrics(metrics)
    assert out["reward"].shape == (b * e, u * s) and out["obs"].shape == (b * e, u * s, 2)
    for run in range(b):
        for env in range(e):
            row = out["action"][run * e + env]
            np.testing.assert_array_equal(row, code[run, :, :, env].ravel())
    np.testing.assert_array_equal(out["obs"][..., 1], -out["obs"][..., 0])
    with pytest.raises(KeyError, match="history/reward"):
        histories_from_metrics({k: v for k, v in metrics.items() if k != "history/reward"})


def _saved(tmp_path, name="h.h5"):
    histories, meta = _dataset()
    return save_histories(tmp_path / name, histories, meta)


@pytest.mark.parametrize("key", ["histories/reward", "histories/obs", "params/goal"])
def test_load_names_file_and_key_of_a_corrupted_compressed_chunk(tmp_path, key):
    path = _saved(tmp_path)
    with h5py.File(path, "r") as f:
        chunk = f[key].id.get_chunk_info(0)
    with open(path, "r+b") as raw:  # overwrite the middle of the compressed chunk
        raw.seek(chunk.byte_offset + chunk.size // 3)
        raw.write(b"\xff" * max(1, chunk.size // 3))
    with pytest.raises(ValueError, match=rf"h\.h5.*{key}.*(damaged|cannot be read)"):
        load_histories(path)


def test_load_names_file_and_key_of_a_corrupted_contiguous_dataset(tmp_path):
    histories, _ = _dataset()
    path = tmp_path / "raw.h5"
    _write_raw(path, histories, 3, 40)  # contiguous, uncompressed: damage changes values, not reads
    with h5py.File(path, "r") as f:
        offset = f["histories/reward"].id.get_offset()
    with open(path, "r+b") as raw:
        raw.seek(offset)
        raw.write(b"\xff\xff")  # a float16 NaN
    with pytest.raises(ValueError, match=r"raw\.h5.*reward.*non-finite"):
        load_histories(path)


@pytest.mark.parametrize("key", ["histories/action", "params/goal"])
def test_load_names_file_and_key_replaced_by_a_group(tmp_path, key):
    path = _saved(tmp_path)
    with h5py.File(path, "r+") as f:
        del f[key]
        f.create_group(key)
    with pytest.raises(ValueError, match=rf"h\.h5.*{key}.*group"):
        load_histories(path)


def test_load_and_save_reject_rewards_stored_as_bytes(tmp_path):
    histories, meta = _dataset()
    as_bytes = histories["reward"].astype(np.int8).astype("S1")  # b"0" / b"1"
    path = tmp_path / "bytes.h5"
    _write_raw(path, {**histories, "reward": as_bytes}, 3, 40)
    with pytest.raises(ValueError, match=r"bytes\.h5.*reward.*numeric.*S1"):
        load_histories(path)
    with pytest.raises(ValueError, match=r"reward.*numeric"):
        save_histories(tmp_path / "out.h5", {**histories, "reward": as_bytes}, meta)
    assert not (tmp_path / "out.h5").exists()


def test_load_checks_observations_and_actions_against_the_spaces(tmp_path):
    import envs

    env, params = envs.make("darkroom-9x9")
    obs_space, action_space = env.observation_space(params), env.action_space(params)
    histories, meta = _dataset()
    path = save_histories(tmp_path / "ok.h5", histories, meta)
    loaded, _ = load_histories(path, observation_space=obs_space, action_space=action_space)
    _assert_same(loaded, histories)

    off_grid = {**histories, "obs": histories["obs"].copy()}
    off_grid["obs"][1, 7, 0] = 9  # one step off the 9x9 grid (positions 0..8)
    path = save_histories(tmp_path / "off.h5", off_grid, meta)
    assert load_histories(path)[0]["obs"][1, 7, 0] == 9  # without a space, values are not checked
    with pytest.raises(ValueError, match=r"off\.h5.*obs.*\[1, 7, 0\].*9.*\[0, 8\]"):
        load_histories(path, observation_space=obs_space)

    between = {**histories, "obs": histories["obs"].astype(np.float32)}
    between["obs"][0, 3, 1] = 2.5  # inside the box but not a grid point of the int32 space
    path = save_histories(tmp_path / "between.h5", between, meta)
    with pytest.raises(ValueError, match=r"between\.h5.*obs.*\[0, 3, 1\].*2\.5.*integer"):
        load_histories(path, observation_space=obs_space)

    bad_action = {**histories, "action": histories["action"].copy()}
    bad_action["action"][2, 0] = 5
    path = save_histories(tmp_path / "action.h5", bad_action, meta)
    with pytest.raises(ValueError, match=r"action\.h5.*action.*\[2, 0\].*5.*\[0, 4\]"):
        load_histories(path, action_space=action_space)

    wrong_shape = {**histories, "obs": histories["obs"][..., :1]}
    path = save_histories(tmp_path / "shape.h5", wrong_shape, meta)
    with pytest.raises(ValueError, match=r"shape\.h5.*obs.*shape.*\[1\].*\[2\]"):
        load_histories(path, observation_space=obs_space)
