"""Run-layer helpers for supervised in-context models: train one model in checkpointed
chunks into a run directory, and load a trained model back from one."""

from __future__ import annotations

import os
from typing import Any, Callable

import jax

from jaxrl_icl.icl.train import OptimConfig, make_supervised_trainer
from jaxrl_icl.run.checkpoint import restore_latest
from jaxrl_icl.run.loop import train_in_chunks
from jaxrl_icl.run.sweep import gather_seeds, seed_keys
from jaxrl_icl.trainer import Trainer


def train_one_model(trainer: Trainer, seed: int, run: Any, options: Any, *, chunk_updates: int,
                    checkpoint_every_chunks: int, data: Any = None) -> Any:
    """Train one model (one seed) in checkpointed chunks into ``run``; returns its float32 params.

    ``data`` is the trainer's training data (e.g. :func:`jaxrl_icl.icl.ad.ad_data`; None for
    a trainer that generates its batches). ``options`` is the experiment's
    :class:`~jaxrl_icl.run.config.RunOptions` (``--resume`` continues the run,
    ``--no-progress`` hides the bar).
    """
    state, _ = train_in_chunks(
        trainer, seed_keys(seed, 1), data, chunk_updates=chunk_updates, run=run,
        checkpoint_every_chunks=checkpoint_every_chunks, resume=options.resume is not None,
        progress=options.progress,
    )
    return jax.tree.map(lambda x: x[0], gather_seeds(state.params))


def load_trained_params(checkpoints: str | os.PathLike, optim: OptimConfig,
                        init_params: Callable[[jax.Array], Any]) -> tuple[int, Any]:
    """``(update, float32 params)`` from the newest checkpoint that :func:`train_one_model`
    wrote in ``checkpoints`` (a run's ``checkpoints`` folder), for a model built by
    ``init_params`` (``key -> params``) and trained with ``optim``.

    Raises :class:`~jaxrl_icl.run.checkpoint.CheckpointError` naming the folder if it holds
    no checkpoint, or one of another model or optimiser.
    """
    trainer = make_supervised_trainer(optim, init_params, lambda *_: None)
    target = jax.jit(jax.vmap(trainer.init, in_axes=(0, None)))(seed_keys(0, 1), None)  # shapes and shardings
    update, state = restore_latest(checkpoints, target)
    return update, jax.tree.map(lambda x: x[0], gather_seeds(state.params))
