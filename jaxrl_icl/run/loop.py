"""Chunked training: scan a few updates at a time over all seeds, log, checkpoint, resume.

:func:`train_in_chunks` runs a :class:`~jaxrl_icl.trainer.Trainer` for all seeds at
once (seeds are the leading axis, placed with ``shard_seed_axis``). Each chunk is one
jitted loop of ``jax.vmap(trainer.update)`` (one compiled program for every chunk length;
one seed runs unbatched, and ``sequential_seeds`` runs them one after another, :func:`chunk_program`)
with the state buffers donated and the trainer's data (env params, histories) an argument,
not a compiled-in constant; between chunks the host gathers the metrics, advances the
progress bar, appends to ``metrics.jsonl`` and checkpoints. The result is bitwise the same as the one-scan
``jax.jit(jax.vmap(trainer))`` (for one seed: as ``jax.jit(trainer)``) and as a run stopped and resumed from any of its
checkpoints (same device kind; un-jitted eager execution may round differently).
"""

from __future__ import annotations

import functools
import time
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxrl_icl.run.checkpoint import Checkpoints
from jaxrl_icl.run.metrics import MetricsWriter
from jaxrl_icl.run.rundir import RunDir
from jaxrl_icl.run.sweep import gather_seeds, shard_seed_axis
from jaxrl_icl.trainer import Trainer

MetricsFn = Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]]
HostMetricsFn = Callable[[Any, int], Mapping[str, np.ndarray]]


def scalar_metrics(metrics: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The default ``log_metrics``: the metrics with one value per seed and update (``ndim == 2``)."""
    return {name: value for name, value in metrics.items() if value.ndim == 2}


@functools.lru_cache(maxsize=16)
def _init_fn(init: Callable[[jax.Array, Any], Any], params_per_seed: bool) -> Callable[[jax.Array, Any], Any]:
    """Jitted ``(keys[S], env_params) -> state[S, ...]`` (cached so repeated runs reuse compilations)."""
    return jax.jit(jax.vmap(init, in_axes=(0, 0 if params_per_seed else None)))


@functools.lru_cache(maxsize=16)
def chunk_program(
    update: Callable[[Any, Any], tuple[Any, dict]], params_per_seed: bool = False, sequential_seeds: bool = False
) -> Callable[[Any, Any, int, int], tuple[Any, dict]]:
    """Jitted ``(state[S, ...], env_params, length, max_length) -> (state, metrics[S, max_length, ...])``,
    state donated (cached): one chunk of :func:`train_in_chunks`.

    ``length <= max_length`` updates run; ``length`` is traced, so every chunk of a run (the
    shorter last one, the first after a resume) runs one compiled program, and the metrics
    past ``length`` are zeros. The loop is the one ``lax.scan`` lowers to (a while loop
    writing each update's metrics into a buffer), so results equal the scan's bitwise.

    Seeds: ``jax.vmap(update)`` inside the loop; with ``sequential_seeds`` a ``lax.map`` over
    the seeds, each running the whole loop unbatched (on a CPU the faster form for networks
    of 256-unit layers: ``python -m experiments.bench offline``); one seed always runs
    unbatched (the seed axis is dropped outside the loop, not at every update).
    """
    def loop(fn: Callable, state: Any, env_params: Any, length: jax.Array, max_length: int, axis: int):
        shapes = jax.eval_shape(fn, state, env_params)[1]
        buffers = jax.tree.map(lambda s: jnp.zeros((*s.shape[:axis], max_length, *s.shape[axis:]), s.dtype), shapes)

        def step(i: jax.Array, carry: tuple[Any, dict]) -> tuple[Any, dict]:
            state, buffers = carry
            state, metrics = fn(state, env_params)
            put = lambda b, m: jax.lax.dynamic_update_index_in_dim(b, m, i, axis=axis)  # noqa: E731
            return state, jax.tree.map(put, buffers, metrics)

        return jax.lax.fori_loop(0, length, step, (state, buffers))

    def chunk(state: Any, env_params: Any, length: jax.Array, max_length: int) -> tuple[Any, dict]:
        num_seeds = jax.tree.leaves(state)[0].shape[0]
        if num_seeds > 1 and not sequential_seeds:
            batched = jax.vmap(update, in_axes=(0, 0 if params_per_seed else None))
            return loop(batched, state, env_params, length, max_length, axis=1)

        def one(args: tuple[Any, Any]) -> tuple[Any, dict]:
            seed_state, seed_params = args
            return loop(update, seed_state, seed_params if params_per_seed else env_params, length, max_length, 0)

        per_seed = env_params if params_per_seed else None
        if num_seeds == 1:
            first = lambda tree: jax.tree.map(lambda x: x[0], tree)  # noqa: E731
            return jax.tree.map(lambda x: x[None], one((first(state), first(per_seed))))
        return jax.lax.map(one, (state, per_seed))

    return jax.jit(chunk, static_argnums=3, donate_argnums=0)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_inputs(
    trainer: Trainer, keys: Any, env_params: Any, chunk_updates: int, checkpoint_every_chunks: int,
    run: RunDir | None, resume: bool, params_per_seed: bool,
) -> int:
    """Validate the arguments before any compute; returns the number of seeds."""
    if not _is_int(trainer.num_updates) or trainer.num_updates < 1:
        raise ValueError(f"trainer.num_updates must be a positive int, got {trainer.num_updates!r}")
    if not _is_int(trainer.env_steps_per_update) or trainer.env_steps_per_update < 0:
        raise ValueError(f"trainer.env_steps_per_update must be an int >= 0, got {trainer.env_steps_per_update!r}")
    if not _is_int(chunk_updates) or chunk_updates < 1:
        raise ValueError(f"chunk_updates must be a positive int, got {chunk_updates!r}")
    if not _is_int(checkpoint_every_chunks) or checkpoint_every_chunks < 1:
        raise ValueError(f"checkpoint_every_chunks must be a positive int, got {checkpoint_every_chunks!r}")
    if getattr(keys, "ndim", 0) < 1 or keys.shape[0] < 1:
        raise ValueError(f"keys must have a leading seed axis, got shape {getattr(keys, 'shape', None)}")
    num_seeds = keys.shape[0]
    if params_per_seed:
        for path, leaf in jax.tree_util.tree_flatten_with_path(env_params)[0]:
            if np.ndim(leaf) < 1 or np.shape(leaf)[0] != num_seeds:
                raise ValueError(
                    f"env_params{jax.tree_util.keystr(path)}: with params_per_seed the leading axis "
                    f"must be the {num_seeds} seeds, got shape {np.shape(leaf)}"
                )
    if resume and run is None:
        raise ValueError("resume=True needs the run directory to resume (run=...)")
    return num_seeds


def train_in_chunks(
    trainer: Trainer,
    keys: jax.Array,
    env_params: Any,
    *,
    chunk_updates: int,
    run: RunDir | None = None,
    checkpoint_every_chunks: int = 1,
    checkpoint_every_s: float | None = None,
    resume: bool = False,
    progress: bool = True,
    params_per_seed: bool = False,
    log_metrics: MetricsFn | None = None,
    host_metrics: HostMetricsFn | None = None,
    sequential_seeds: bool = False,
) -> tuple[Any, dict[str, np.ndarray]]:
    """Run ``trainer`` for every seed in chunks of ``chunk_updates`` updates.

    Args:
      trainer: the algorithm; ``trainer.num_updates`` need not be a multiple of
        ``chunk_updates``: the last chunk is shorter (same compiled program).
      keys: ``[num_seeds, ...]`` PRNG keys, one run per key.
      env_params: the trainer's data (the second argument of ``init`` and ``update``: env
        params, or a supervised trainer's histories), shared by all seeds, or with a leading
        ``[num_seeds]`` axis on every leaf when ``params_per_seed``.
      chunk_updates: updates per jitted chunk (one host round trip per chunk).
      run: where to log ``metrics.jsonl`` and checkpoint; None runs in memory only.
      checkpoint_every_chunks: checkpoint when the update count is a multiple of
        ``chunk_updates * checkpoint_every_chunks``, and after the last update.
      checkpoint_every_s: also checkpoint after a chunk that ends this many seconds or more
        after the previous checkpoint (or the start of this call); None: by count only.
      resume: continue ``run`` from its newest checkpoint: ``metrics.jsonl`` is cut back
        to that update and the remaining updates run. Raises CheckpointError if there is
        no usable checkpoint. Without ``resume``, a ``run`` that already holds checkpoints
        or metrics is refused.
      progress: show a tqdm bar over env steps summed over seeds (its rate is the total
        throughput); over updates when ``trainer.env_steps_per_update == 0``.
      params_per_seed: see ``env_params``.
      log_metrics: maps one chunk's host metrics (name -> ``[num_seeds, chunk, ...]``) to
        the ``[num_seeds, chunk]`` arrays written to ``metrics.jsonl``; default
        :func:`scalar_metrics`.
      host_metrics: ``(state, update) -> {name: [num_seeds]}``, computed on the host after each
        chunk from its final state (e.g. a policy evaluated in a non-JAX env), reported as
        metrics of the chunk's last update (NaN for its earlier ones) and logged with the others.
      sequential_seeds: run the seeds one after another inside each chunk's program instead of
        vmapped (:func:`chunk_program`; ignored with several devices, where seeds are sharded).
        Same numbers up to float rounding; pass ``jaxrl_icl.batching.sequential_on_cpu()``
        where that is faster on a CPU.

    Returns:
      ``(final_state, metrics)``: the state pytree with a leading seed axis (device
      arrays), and every metric of the updates run by *this call* as host numpy
      ``[num_seeds, updates_run, ...]``. After a resume that is the updates after the
      checkpoint only; the logged scalars of the earlier ones are in ``metrics.jsonl``
      (:func:`jaxrl_icl.run.metrics.read_metrics`).
    """
    num_seeds = _check_inputs(
        trainer, keys, env_params, chunk_updates, checkpoint_every_chunks, run, resume, params_per_seed
    )
    if checkpoint_every_s is not None and not (
        isinstance(checkpoint_every_s, (int, float)) and not isinstance(checkpoint_every_s, bool)
        and checkpoint_every_s > 0
    ):
        raise ValueError(f"checkpoint_every_s must be a positive number or None, got {checkpoint_every_s!r}")
    select = log_metrics or scalar_metrics
    num_updates, chunk_updates = int(trainer.num_updates), int(chunk_updates)
    steps_per_update = int(trainer.env_steps_per_update)
    writes_files = run is not None and jax.process_index() == 0
    checkpoints = None if run is None else Checkpoints(run.checkpoints)
    try:
        if checkpoints is not None and not resume:
            if checkpoints.latest_update() is not None:
                raise ValueError(f"{run.checkpoints}: already holds checkpoints; pass resume=True to continue")
            if run.metrics_path.exists() and run.metrics_path.stat().st_size:
                raise ValueError(f"{run.metrics_path}: already holds metrics; pass resume=True to continue")
        writer = MetricsWriter(run.metrics_path) if writes_files else None

        if params_per_seed:
            env_params = shard_seed_axis(env_params)
        state = shard_seed_axis(_init_fn(trainer.init, params_per_seed)(shard_seed_axis(keys), env_params))
        start = 0
        if resume:
            start, state = checkpoints.restore_latest(state)
            if start > num_updates:
                raise ValueError(f"{run.checkpoints}: checkpoint at update {start} is past num_updates={num_updates}")
            if writer is not None:
                writer.truncate_after(start)

        chunk = chunk_program(trainer.update, params_per_seed, sequential_seeds and jax.device_count() == 1)
        max_length = min(chunk_updates, num_updates)
        every = chunk_updates * int(checkpoint_every_chunks)
        step_unit = num_seeds * steps_per_update or 1
        collected: list[dict[str, np.ndarray]] = []
        with tqdm(
            total=num_updates * step_unit, initial=start * step_unit, disable=not progress,
            unit="step" if steps_per_update else "update", unit_scale=True, dynamic_ncols=True,
        ) as bar:
            done, last_save = start, time.monotonic()
            while done < num_updates:
                length = min(chunk_updates, num_updates - done)
                state, metrics = chunk(state, env_params, length, max_length)
                metrics = jax.tree.map(lambda m, n=length: m[:, :n], gather_seeds(metrics))
                if host_metrics is not None:
                    metrics.update(_at_last_update(host_metrics(state, done + length), num_seeds, length))
                collected.append(metrics)
                updates = np.arange(done + 1, done + length + 1)
                if writer is not None:
                    logged = _check_logged(select(metrics), num_seeds, length)
                    writer.write(updates, updates * steps_per_update, logged)
                done += length
                bar.update(length * step_unit)
                due = checkpoint_every_s is not None and time.monotonic() - last_save >= checkpoint_every_s
                if checkpoints is not None and (done % every == 0 or done == num_updates or due):
                    checkpoints.save(done, state)
                    last_save = time.monotonic()
    finally:
        if checkpoints is not None:
            checkpoints.close()
    if collected:
        return state, {name: np.concatenate([m[name] for m in collected], axis=1) for name in collected[0]}
    batched = jax.vmap(trainer.update, in_axes=(0, 0 if params_per_seed else None))
    shapes = jax.eval_shape(batched, state, env_params)[1]
    return state, {name: np.zeros((num_seeds, 0, *s.shape[1:]), s.dtype) for name, s in shapes.items()}


def _at_last_update(values: Mapping[str, Any], num_seeds: int, length: int) -> dict[str, np.ndarray]:
    """``[num_seeds]`` values as ``[num_seeds, length]`` float64 metrics: NaN, then the values last."""
    out = {}
    for name, value in values.items():
        value = np.asarray(value, np.float64)
        if value.shape != (num_seeds,):
            raise ValueError(f"host_metrics: metric {name!r} must have shape {(num_seeds,)}, got {value.shape}")
        out[name] = np.full((num_seeds, length), np.nan)
        out[name][:, -1] = value
    return out


def _check_logged(logged: Mapping[str, np.ndarray], num_seeds: int, length: int) -> dict[str, np.ndarray]:
    out = {name: np.asarray(value) for name, value in logged.items()}
    for name, value in out.items():
        if value.shape != (num_seeds, length):
            raise ValueError(f"log_metrics: metric {name!r} must have shape {(num_seeds, length)}, got {value.shape}")
    return out
