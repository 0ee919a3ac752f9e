"""Behaviour cloning: regress the dataset's actions from its observations.

Continuous actions (in ``[-1, 1]``): a deterministic tanh actor and mean squared error.
Discrete actions: an MLP of logits and cross-entropy; the policy takes the argmax.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl_icl.config import require_positive, require_types
from jaxrl_icl.offline.dataset import Dataset, sample_transitions
from jaxrl_icl.offline.networks import MLP, DeterministicActor
from jaxrl_icl.trainer import Trainer


@dataclasses.dataclass(frozen=True)
class BCConfig:
    """Behaviour cloning.

    Attributes:
      num_updates: gradient steps.
      batch_size: transitions per step.
      lr: Adam learning rate.
      hidden: hidden layer widths.
    """

    num_updates: int = 500_000
    batch_size: int = 256
    lr: float = 3e-4
    hidden: tuple[int, ...] = (256, 256)

    def __post_init__(self) -> None:
        require_types(self)
        for name in ("num_updates", "batch_size", "lr"):
            require_positive(self, name)


@struct.dataclass
class BCState:
    params: Any
    opt: Any
    key: jax.Array
    step: jax.Array


def bc_loss(prediction: jax.Array, data_action: jax.Array) -> jax.Array:
    """Mean squared error over batch and action dimensions for continuous actions
    (``prediction [B, act]``, ``data_action [B, act]``); mean cross-entropy for discrete ones
    (``prediction`` logits [B, A], ``data_action`` int [B])."""
    if jnp.issubdtype(data_action.dtype, jnp.integer):
        return optax.softmax_cross_entropy_with_integer_labels(prediction, data_action).mean()
    return jnp.mean((prediction - data_action) ** 2)


def _network(config: BCConfig, action_dim: int, discrete: bool):
    return MLP(config.hidden, action_dim) if discrete else DeterministicActor(action_dim, config.hidden)


def make_train(config: BCConfig, obs_dim: int, action_dim: int, *, discrete: bool = False) -> Trainer:
    """Behaviour cloning as a :class:`~jaxrl_icl.trainer.Trainer` over a dataset argument.

    ``action_dim`` is the action vector's size, or the number of actions when ``discrete``.
    Metrics per update: ``loss``.
    """
    net = _network(config, action_dim, discrete)
    tx = optax.adam(config.lr)

    def init(key: jax.Array, dataset: Dataset) -> BCState:
        del dataset
        key, k_init = jax.random.split(key)
        params = net.init(k_init, jnp.zeros((1, obs_dim)))
        return BCState(params=params, opt=tx.init(params), key=key, step=jnp.int32(0))

    def update(state: BCState, dataset: Dataset) -> tuple[BCState, dict[str, jax.Array]]:
        key, k_batch = jax.random.split(state.key)
        batch = sample_transitions(k_batch, dataset, config.batch_size)
        loss, grads = jax.value_and_grad(lambda p: bc_loss(net.apply(p, batch["observations"]), batch["actions"]))(
            state.params)
        updates, opt = tx.update(grads, state.opt, state.params)
        return BCState(params=optax.apply_updates(state.params, updates), opt=opt, key=key,
                       step=state.step + 1), {"loss": loss}

    return Trainer(init=init, update=update, num_updates=config.num_updates, env_steps_per_update=0)


def policy(config: BCConfig, action_dim: int, *, discrete: bool = False):
    """``(params, obs [..., obs]) -> action`` (``[..., act]``, or int ``[...]`` when discrete)."""
    net = _network(config, action_dim, discrete)
    if discrete:
        return lambda params, obs: jnp.argmax(net.apply(params, obs), axis=-1)
    return net.apply
