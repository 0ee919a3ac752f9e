"""Orbax checkpoints: exact round trip, retention, and loud errors for missing/corrupt/mismatched ones."""

from __future__ import annotations

import contextlib
import gc
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_icl.run.checkpoint import CheckpointError, Checkpoints, restore_latest
from jaxrl_icl.run.sweep import seed_keys
from tests.run.test_loop import env_params, make_trainer


def trainer_state(dim: int = 3, seed: int = 0):
    """A real initial training state (adam moments, int32 step count, PRNG keys) for 2 seeds."""
    trainer = make_trainer(dim=dim)
    return jax.jit(jax.vmap(trainer.init, in_axes=(0, None)))(seed_keys(seed, 2), env_params(dim))


@pytest.fixture
def collect_orbax_garbage():
    """A failed orbax read leaves coroutines for the garbage collector, which warns when it
    finds them; collect them in this test's teardown, where ``quiet_orbax`` silences that."""
    yield
    gc.collect()


def quiet_orbax(test):
    """Silence what a deliberately failed orbax read leaves behind: unraisable exceptions and,
    from orbax's reader threads, "coroutine 'Store._get_array_metadatas' was never awaited"."""
    for rule in ("ignore::pytest.PytestUnraisableExceptionWarning",
                 "ignore:coroutine .* was never awaited:RuntimeWarning"):
        test = pytest.mark.filterwarnings(rule)(test)
    return test


def mixed_state():
    """Leaves of every dtype family a training state may hold, including a typed key."""
    return {
        "f32": jax.random.normal(jax.random.PRNGKey(1), (40, 50)),
        "bf16": jnp.linspace(-1, 1, 7, dtype=jnp.bfloat16),
        "i8": jnp.arange(-5, 5, dtype=jnp.int8),
        "flags": jnp.array([True, False, True]),
        "typed_key": jax.random.split(jax.random.key(3), 4),
        "raw_key": jax.random.PRNGKey(4),
        "scalar": jnp.int32(7),
    }


def bits(x) -> np.ndarray:
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.asarray(x)


def assert_same_bits(a, b) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(bits(x), bits(y))


def save(directory: Path, *states) -> None:
    """Save ``states`` as updates 1, 2, ... in ``directory``."""
    with Checkpoints(directory) as checkpoints:
        for update, state in enumerate(states, start=1):
            checkpoints.save(update, state)


def data_files(step_dir: Path) -> list[Path]:
    """The orbax array data files of a checkpoint's state item, largest first."""
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    return sorted(files, key=lambda p: p.stat().st_size, reverse=True)


def test_round_trip_is_exact_and_latest_wins(tmp_path):
    states = [jax.tree.map(lambda x, k=k: x if x.dtype == jnp.bool_ or not jnp.issubdtype(x.dtype, jnp.number)
                           else x + k, mixed_state()) for k in range(3)]
    save(tmp_path, *states)
    update, restored = restore_latest(tmp_path, mixed_state())
    assert update == 3
    assert_same_bits(restored, states[2])
    with Checkpoints(tmp_path) as checkpoints:
        assert_same_bits(checkpoints.restore(2, mixed_state()), states[1])


def test_restore_into_abstract_target(tmp_path):
    state = trainer_state()
    save(tmp_path, state)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
    _, restored = restore_latest(tmp_path, abstract)
    assert_same_bits(restored, state)


def test_keeps_only_the_newest(tmp_path):
    state = {"x": jnp.zeros(3)}
    with Checkpoints(tmp_path, max_to_keep=2) as checkpoints:
        for update in (5, 10, 15, 20):
            checkpoints.save(update, state)
        assert checkpoints.latest_update() == 20
    assert sorted(int(p.name) for p in tmp_path.iterdir() if p.name.isdigit()) == [15, 20]


def test_no_checkpoint_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint directory"):
        restore_latest(tmp_path / "missing", {"x": jnp.zeros(3)})
    with pytest.raises(CheckpointError, match=f"{tmp_path}: no checkpoint"):
        restore_latest(tmp_path, {"x": jnp.zeros(3)})


def _flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x20
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        # Orbax itself restores a garbled data chunk silently: the checksum must catch it.
        (lambda step: _flip_middle_byte(data_files(step)[0]), r"leaf \['f32'\] fails its checksum"),
        (lambda step: _truncate(data_files(step)[0]), "corrupt checkpoint"),
        (lambda step: _truncate(step / "manifest" / "metadata"), "unreadable manifest"),
        (lambda step: (step / "state" / "_METADATA").write_text("{garbage"), "corrupt checkpoint"),
    ],
    ids=["garbled-data", "truncated-data", "truncated-manifest", "garbled-metadata"],
)
@quiet_orbax
def test_corrupt_checkpoint_is_an_error(tmp_path, damage, match, collect_orbax_garbage):
    state = mixed_state()
    save(tmp_path, state)
    step = tmp_path / "1"
    damage(step)
    with pytest.raises(CheckpointError, match=match) as info:
        restore_latest(tmp_path, state)
    assert str(step) in str(info.value)


@quiet_orbax
def test_no_bit_flip_restores_silently(tmp_path, collect_orbax_garbage):
    """Brute force over bytes of every checkpoint file: each flip errors or changes nothing."""
    state = {"w": jax.random.normal(jax.random.PRNGKey(0), (40, 50))}
    save(tmp_path, state)
    step = tmp_path / "1"
    files = sorted((p for p in step.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    caught_in_largest = 0
    for path in files:
        original = path.read_bytes()
        for i in range(0, len(original), max(1, len(original) // 6)):
            damaged = bytearray(original)
            damaged[i] ^= 0x01
            path.write_bytes(bytes(damaged))
            try:
                _, restored = restore_latest(tmp_path, state)
            except CheckpointError as err:
                assert str(step) in str(err)
                caught_in_largest += path == files[-1]
            else:
                assert np.array_equal(restored["w"], state["w"]), f"silent corruption via {path}[{i}]"
        path.write_bytes(original)
    assert caught_in_largest >= 3  # the array data itself is checked
    assert_same_bits(restore_latest(tmp_path, state)[1], state)


def test_state_from_another_config_is_an_error(tmp_path):
    save(tmp_path, trainer_state(dim=3))
    with pytest.raises(CheckpointError, match=r"leaf \['opt'\]\[0\]\.mu is float32\(2, 3\) in the checkpoint "
                                              r"but float32\(2, 4\)") as info:
        restore_latest(tmp_path, trainer_state(dim=4))
    assert str(tmp_path / "1") in str(info.value)


def test_dtype_and_structure_mismatch_are_errors(tmp_path):
    state = {"a": jnp.zeros(3), "b": jnp.ones(2, jnp.int32)}
    save(tmp_path, state)
    with pytest.raises(CheckpointError, match=r"leaf \['b'\] is int32\(2,\) in the checkpoint but float32\(2,\)"):
        restore_latest(tmp_path, {"a": jnp.zeros(3), "b": jnp.ones(2)})
    with pytest.raises(CheckpointError, match=r"missing from the checkpoint: \[\"\['c'\]\"\]"):
        restore_latest(tmp_path, dict(state, c=jnp.zeros(1)))
    with pytest.raises(CheckpointError, match=r"only in the checkpoint: \[\"\['b'\]\"\]"):
        restore_latest(tmp_path, {"a": jnp.zeros(3)})


def test_manifest_records_every_leaf(tmp_path):
    state = mixed_state()
    save(tmp_path, state)
    manifest = json.loads((tmp_path / "1" / "manifest" / "metadata").read_text())
    paths = [leaf["path"] for leaf in manifest["leaves"]]
    assert paths == [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(state)[0]]
    assert {leaf["path"]: leaf["dtype"] for leaf in manifest["leaves"]}["['typed_key']"] == "key<fry>"


@contextlib.contextmanager
def backend_compiles():
    """The list of XLA compilations that happen inside the block (filled as they happen)."""
    seen = []

    def listener(event: str, duration: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            seen.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield seen
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def test_host_checksums_equal_the_jitted_ones():
    from jaxrl_icl.run.checkpoint import _checksums, _tree_checksums

    state = mixed_state()
    with jax.enable_x64(True):
        state.update(f64=jnp.linspace(-3.0, 3.0, 5, dtype=jnp.float64), i64=jnp.arange(-2, 3, dtype=jnp.int64))
        assert _tree_checksums(state) == [int(c) for c in jax.device_get(_checksums(state))]


def test_saving_and_restoring_compile_nothing(tmp_path):
    """Checksums are computed on the host, so checkpoints add no compilation to a run."""
    state = {"w": jax.random.normal(jax.random.PRNGKey(5), (13, 17)), "n": jnp.arange(11)}  # shapes no other test saves
    with backend_compiles() as compiles:
        save(tmp_path, state)
        _, restored = restore_latest(tmp_path, state)
    assert compiles == []
    assert_same_bits(restored, state)
