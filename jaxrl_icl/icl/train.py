"""Supervised training of in-context models as a :class:`~jaxrl_icl.trainer.Trainer`.

AD and DPT are both "sample a batch, cross-entropy, AdamW step". This module gives them
one optimiser recipe (AdamW with linear warmup then cosine decay, global-norm gradient
clipping, optional bfloat16 compute with float32 master weights) and wraps a loss into a
``Trainer`` whose training data is an argument of the step (never a compiled-in constant),
so :func:`jaxrl_icl.run.loop.train_in_chunks` runs it in jitted chunks with a progress bar,
orbax checkpoints and bitwise resume, and ``jax.vmap`` trains many seeds.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl_icl.config import require_in, require_nonnegative, require_positive, require_types
from jaxrl_icl.icl.moe import ema_update
from jaxrl_icl.icl.transformer import aux_loss
from jaxrl_icl.trainer import Trainer


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Optimiser and schedule of supervised in-context pretraining.

    Attributes:
      num_updates: gradient steps.
      batch_size: sequences per gradient step.
      lr: peak learning rate (reached after the warmup, then cosine-decayed).
      final_lr_fraction: the cosine ends at ``lr * final_lr_fraction``.
      warmup_updates: linear warmup from 0 over this many steps.
      weight_decay: AdamW decoupled weight decay.
      max_grad_norm: clip gradients to this global norm.
      bf16: run the forward and backward pass in bfloat16 (weights and optimiser stay
        float32); meant for GPUs and TPUs, on CPU it is usually slower.
    """

    num_updates: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    final_lr_fraction: float = 0.1
    warmup_updates: int = 100
    weight_decay: float = 1e-4
    max_grad_norm: float = 1.0
    bf16: bool = False

    def __post_init__(self) -> None:
        require_types(self)
        for name in ("num_updates", "batch_size", "lr", "max_grad_norm"):
            require_positive(self, name)
        for name in ("warmup_updates", "weight_decay"):
            require_nonnegative(self, name)
        require_in(self, "final_lr_fraction", 0.0, 1.0)

    @property
    def compute_dtype(self) -> jnp.dtype:
        return jnp.bfloat16 if self.bf16 else jnp.float32


def learning_rate(config: OptimConfig) -> optax.Schedule:
    """Linear warmup to ``lr`` over ``warmup_updates``, cosine to ``lr * final_lr_fraction`` at the end."""
    warmup = min(config.warmup_updates, config.num_updates - 1)
    return optax.warmup_cosine_decay_schedule(
        0.0, config.lr, warmup, max(config.num_updates, warmup + 1), end_value=config.lr * config.final_lr_fraction
    )


def make_optimizer(config: OptimConfig) -> optax.GradientTransformation:
    """Global-norm clipping, then AdamW on the :func:`learning_rate` schedule."""
    return optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm),
        optax.adamw(learning_rate(config), weight_decay=config.weight_decay),
    )


def cast_floating(tree: Any, dtype: jnp.dtype) -> Any:
    """``tree`` with every floating leaf cast to ``dtype`` (integer leaves untouched)."""
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


@struct.dataclass
class SupervisedState:
    """Float32 parameters, optimiser state, the key the next batch is drawn from and the
    number of updates done (int32)."""

    params: Any
    opt_state: Any
    key: jax.Array
    step: jax.Array


LossFn = Callable[[Any, jax.Array, jnp.dtype, Any], tuple[jax.Array, dict[str, jax.Array]]]


def make_supervised_trainer(
    config: OptimConfig, init_params: Callable[[jax.Array], Any], loss: LossFn, *, ema_rate: float = 0.0
) -> Trainer:
    """A :class:`Trainer` of ``config.num_updates`` AdamW steps on ``loss``.

    Args:
      config: optimiser settings.
      init_params: ``key -> params`` (float32 pytree).
      loss: ``(params, key, compute_dtype, data) -> (scalar loss, metrics)``; draws its own
        batch of ``config.batch_size`` from ``key`` (out of ``data``, the trainer's second
        argument, or generated) and must cast its inputs to ``compute_dtype`` (``params``
        already are) and its logits back to float32.
      ema_rate: after every step the variables' EMA ``"target"`` collection (T2MIR's target
        routers; :func:`jaxrl_icl.icl.moe.ema_update`) moves this fraction towards the online
        parameters; the optimiser's own change to it is discarded (its gradient is zero).

    ``trainer(key, data)`` (or ``train_in_chunks(trainer, keys, data, ...)``) trains; ``data``
    (a pytree of arrays, or None for a loss that generates its batches) reaches ``loss`` as
    an argument of every jitted update, so it is neither compiled into the program nor
    copied into the state. Metrics per update: ``loss``, ``grad_norm``, ``lr`` and whatever
    ``loss`` reports.
    """
    optimizer = make_optimizer(config)
    schedule = learning_rate(config)

    def init(key: jax.Array, _data: Any = None) -> SupervisedState:
        params_key, data_key = jax.random.split(key)
        params = init_params(params_key)
        return SupervisedState(params=params, opt_state=optimizer.init(params), key=data_key, step=jnp.int32(0))

    def update(state: SupervisedState, data: Any) -> tuple[SupervisedState, dict[str, jax.Array]]:
        key, batch_key = jax.random.split(state.key)

        def objective(params):
            return loss(cast_floating(params, config.compute_dtype), batch_key, config.compute_dtype, data)

        (value, metrics), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = ema_update(state.params, optax.apply_updates(state.params, updates), ema_rate)
        metrics = {"loss": value.astype(jnp.float32), "grad_norm": optax.global_norm(grads),
                   "lr": schedule(state.step), **metrics}
        return SupervisedState(params=params, opt_state=opt_state, key=key, step=state.step + 1), metrics

    return Trainer(init=init, update=update, num_updates=config.num_updates, env_steps_per_update=0)


def with_aux(loss: jax.Array, metrics: dict[str, jax.Array], aux: dict[str, jax.Array]):
    """``(loss + aux_loss(aux), metrics)`` with the backbone's auxiliary scalars logged: each
    ``aux`` entry under its own name and the plain ``loss`` as ``task_loss``. With no ``aux``
    (a dense backbone) ``(loss, metrics)`` unchanged."""
    if not aux:
        return loss, metrics
    return loss + aux_loss(aux), {**metrics, "task_loss": loss, **aux}


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy of ``logits [..., A]`` (any float dtype, computed in float32)
    against int ``labels [...]``."""
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels).mean()


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of positions whose argmax logit is the label."""
    return jnp.mean(jnp.argmax(logits, axis=-1) == labels)
