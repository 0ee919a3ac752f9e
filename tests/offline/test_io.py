"""D4RL HDF5 and Minari round trips, corrupt files, normalised scores."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from jaxrl_icl.offline import (
    DatasetError,
    d4rl_io,
    load_d4rl,
    load_minari,
    make_dataset,
    normalized_score,
    qlearning_transitions,
    save_d4rl,
    save_minari,
)
from tests.offline.conftest import make_episodes


def dataset(seed=0, num_episodes=7):
    raw = make_episodes(seed=seed, num_episodes=num_episodes)
    keys = ("observations", "actions", "rewards", "terminals", "timeouts")
    return make_dataset({**{k: raw[k] for k in keys}, "next_observations": raw["true_next"]})


def assert_same(a, b):
    for key, value in a.arrays().items():
        other = b.arrays()[key]
        assert value.dtype == other.dtype, key
        np.testing.assert_array_equal(value, other, err_msg=key)


def test_d4rl_round_trip_is_bitwise_with_metadata(tmp_path):
    ds = dataset()
    meta = {"env_name": "pendulum", "ref_min_score": -1234.5, "ref_max_score": -150.25, "num_seeds": 3, "expert": True}
    save_d4rl(tmp_path / "d.hdf5", ds, meta)
    back, meta_back = load_d4rl(tmp_path / "d.hdf5")
    assert_same(ds, back)
    assert meta_back == meta
    assert [p.name for p in tmp_path.iterdir()] == ["d.hdf5"]  # no temporary left behind


def test_d4rl_file_without_next_observations_gets_qlearning_successors(tmp_path):
    raw = make_episodes(seed=5)
    with h5py.File(tmp_path / "raw.hdf5", "w") as f:
        for key in ("observations", "actions", "rewards", "terminals", "timeouts"):
            f.create_dataset(key, data=raw[key])
    ds, _ = load_d4rl(tmp_path / "raw.hdf5")
    expected = qlearning_transitions(raw)
    np.testing.assert_array_equal(np.asarray(ds.next_observations), expected["next_observations"])
    dropped = int(raw["timeouts"].sum()) + int(not raw["terminals"][-1] and not raw["timeouts"][-1])
    assert ds.size == len(raw["rewards"]) - dropped


def write_raw(path, **override):
    raw = make_episodes(seed=1)
    with h5py.File(path, "w") as f:
        for key in ("observations", "actions", "rewards", "terminals", "timeouts"):
            if key in override:
                if isinstance(override[key], str) and override[key] == "group":
                    f.create_group(key)
                elif override[key] is not None:
                    f.create_dataset(key, data=override[key])
            else:
                f.create_dataset(key, data=raw[key])
    return raw


def test_corrupt_files_are_rejected_naming_file_and_key(tmp_path):
    path = tmp_path / "group.hdf5"
    write_raw(path, rewards="group")
    with pytest.raises(DatasetError, match=r"group\.hdf5: rewards: is a group"):
        load_d4rl(path)
    path = tmp_path / "bytes.hdf5"
    raw = make_episodes(seed=1)
    write_raw(path, rewards=np.array([b"%f" % r for r in raw["rewards"]]))
    with pytest.raises(DatasetError, match=r"bytes\.hdf5: rewards: must be numeric"):
        load_d4rl(path)
    path = tmp_path / "missing.hdf5"
    write_raw(path, terminals=None)
    with pytest.raises(DatasetError, match=r"missing\.hdf5: terminals: missing"):
        load_d4rl(path)
    (tmp_path / "text.hdf5").write_text("not hdf5")
    with pytest.raises(DatasetError, match=r"text\.hdf5: \(file\)"):
        load_d4rl(tmp_path / "text.hdf5")


def test_corrupt_compressed_chunk_names_file_and_key(tmp_path):
    path = tmp_path / "chunk.hdf5"
    raw = make_episodes(seed=1)
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        for key in ("actions", "rewards", "terminals", "timeouts"):
            f.create_dataset(key, data=raw[key])
        obs = rng.normal(size=(len(raw["rewards"]), 3)).astype(np.float32)
        dset = f.create_dataset("observations", data=obs, compression="gzip", chunks=obs.shape)
        f.flush()
        info = dset.id.get_chunk_info(0)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset + 4)
        fh.write(b"\xff" * 16)
    with pytest.raises(DatasetError, match=r"chunk\.hdf5: observations: cannot be read"):
        load_d4rl(path)


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(d4rl_io.h5py.Group, "create_dataset", fail)
    with pytest.raises(OSError):
        save_d4rl(tmp_path / "d.hdf5", dataset())
    assert list(tmp_path.iterdir()) == []


def test_normalized_score_uses_d4rl_references_and_stored_ones():
    np.testing.assert_allclose(normalized_score("hopper-medium-v2", [-20.272305, 3234.3]), [0.0, 100.0])
    np.testing.assert_allclose(normalized_score("halfcheetah", 12135.0), 100.0)
    # halfway between walker2d's references scores 50
    np.testing.assert_allclose(normalized_score("walker2d", (1.629008 + 4592.3) / 2), 50.0)
    meta = {"ref_min_score": -1000.0, "ref_max_score": -200.0}
    np.testing.assert_allclose(normalized_score("pendulum", -600.0, meta), 50.0)
    with pytest.raises(KeyError, match="pendulum"):
        normalized_score("pendulum", 0.0)


@pytest.fixture
def minari_root(tmp_path, monkeypatch):
    pytest.importorskip("minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path


def test_minari_round_trip_and_d4rl_conversion_are_lossless(minari_root):
    ds = dataset(seed=4, num_episodes=6)
    meta = {"ref_min_score": -10.0, "ref_max_score": 5.0}
    save_minari(ds, "jaxrl/test/rt-v0", metadata=meta)
    back, meta_back = load_minari("jaxrl/test/rt-v0")
    assert_same(ds, back)
    assert meta_back["ref_min_score"] == -10.0 and meta_back["ref_max_score"] == 5.0
    # Minari -> D4RL file -> Minari -> dataset
    save_d4rl(minari_root / "conv.hdf5", back, meta_back)
    via_file, meta_file = load_d4rl(minari_root / "conv.hdf5")
    save_minari(via_file, "jaxrl/test/rt2-v0", metadata=meta_file)
    again, _ = load_minari("jaxrl/test/rt2-v0")
    assert_same(ds, again)


def test_missing_minari_dataset_is_named(minari_root):
    with pytest.raises(DatasetError, match="minari:jaxrl/none/x-v0"):
        load_minari("jaxrl/none/x-v0")
