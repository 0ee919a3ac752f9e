"""Inverse-dynamics models for semi-supervised offline RL (Zheng et al. 2023, "Semi-Supervised
Offline Reinforcement Learning with Action-Free Trajectories").

A few trajectories carry actions, most only states and rewards. An inverse-dynamics model
(IDM) ``a_t ~ p(a | s_{t-1}, s_t, s_{t+1})`` trained on the labelled part labels the rest
("proxy labels"); any offline algorithm then trains on the union.

* :func:`labelled_split` picks the labelled episodes: a fraction of all of them at random, or
  (the paper's hardest setting) only from the lowest-return half;
* :func:`make_train` trains the IDM, a :class:`Trainer` over a labelled :class:`Dataset`,
  vmappable over seeds: for continuous actions a tanh-squashed diagonal Gaussian with separate
  mean and log-std MLPs (ReLU, dropout) fit by negative log-likelihood, for discrete actions a
  categorical fit by cross-entropy;
* :func:`label_actions` gives every step of a dataset its IDM action (the Gaussian's tanh'd
  mean, the categorical's argmax), jittable; :func:`action_error` scores them against the truth.

Inputs are ``(s_{t-1}, s_t, s_{t+1})`` (:func:`idm_inputs`): the first step of an episode
repeats ``s_t`` for ``s_{t-1}``; ``s_{t+1}`` is the step's ``next_observations``. Normalise the
observations first (:func:`jaxrl_icl.offline.normalize_observations`), as the paper does.

    labelled, unlabelled = labelled_split(dataset, 0.1, "low_return")
    trainer = make_train(config, obs_dim, action_dim)
    states, _ = jax.jit(jax.vmap(trainer, in_axes=(0, None)))(seed_keys, labelled)   # one IDM per seed
    proxy = jax.vmap(lambda p: label_actions(config, p, unlabelled, action_dim))(states.params)
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jaxrl_icl.config import ConfigError, require_in, require_positive, require_types
from jaxrl_icl.offline.dataset import Dataset, DatasetError, episode_returns, select_episodes
from jaxrl_icl.offline.networks import LOG_STD_MAX, LOG_STD_MIN, tanh_gaussian_log_prob
from jaxrl_icl.trainer import Trainer

SplitMode = Literal["low_return", "random"]


@dataclasses.dataclass(frozen=True)
class IDMConfig:
    """Inverse-dynamics model and its training (defaults: the paper's).

    Attributes:
      num_updates: gradient steps.
      batch_size: transitions per step.
      lr: Adam learning rate.
      hidden: hidden widths of each MLP (the Gaussian has one for the mean, one for the log-std).
      dropout: dropout rate after every hidden layer (training only).
    """

    num_updates: int = 20_000
    batch_size: int = 1024
    lr: float = 1e-4
    hidden: tuple[int, ...] = (1024, 1024)
    dropout: float = 0.1

    def __post_init__(self) -> None:
        require_types(self)
        for name in ("num_updates", "batch_size", "lr"):
            require_positive(self, name)
        require_in(self, "dropout", 0.0, 1.0 - 1e-9)
        if not self.hidden or min(self.hidden) < 1:
            raise ConfigError("hidden", f"must be positive widths; got {self.hidden}")


class _DropoutMLP(nn.Module):
    """ReLU layers each followed by dropout, then a linear head: ``[..., in] -> [..., out]``."""

    hidden: tuple[int, ...]
    out: int
    dropout: float

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
        for width in self.hidden:
            x = nn.Dropout(self.dropout, deterministic=deterministic)(nn.relu(nn.Dense(width)(x)))
        return nn.Dense(self.out)(x)


class GaussianIDM(nn.Module):
    """``inputs [..., 3 obs] -> (mean, log_std)`` ``[..., act]`` of a Gaussian over pre-tanh
    actions, from separate MLPs; ``log_std`` clipped to ``[LOG_STD_MIN, LOG_STD_MAX]``."""

    action_dim: int
    hidden: tuple[int, ...]
    dropout: float

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> tuple[jax.Array, jax.Array]:
        mean = _DropoutMLP(self.hidden, self.action_dim, self.dropout, name="mean")(x, deterministic)
        log_std = _DropoutMLP(self.hidden, self.action_dim, self.dropout, name="log_std")(x, deterministic)
        return mean, jnp.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)


class CategoricalIDM(nn.Module):
    """``inputs [..., 3 obs] -> logits [..., num_actions]``."""

    num_actions: int
    hidden: tuple[int, ...]
    dropout: float

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        return _DropoutMLP(self.hidden, self.num_actions, self.dropout)(x, deterministic)


def model(config: IDMConfig, action_dim: int, discrete: bool = False) -> nn.Module:
    """The IDM network (``action_dim`` = number of actions when ``discrete``)."""
    cls = CategoricalIDM if discrete else GaussianIDM
    return cls(action_dim, config.hidden, config.dropout)


def idm_inputs(dataset: Dataset, idx: jax.Array | None = None) -> jax.Array:
    """``concat(s_{t-1}, s_t, s_{t+1})`` float32 [B, 3 obs] at steps ``idx`` [B] (all steps when
    None); ``s_{t-1} = s_t`` at an episode's first step. Jittable."""
    if idx is None:
        idx = jnp.arange(dataset.rewards.shape[0])
    obs = dataset.observations[idx]
    prev = jnp.where((dataset.timesteps[idx] > 0)[:, None], dataset.observations[jnp.maximum(idx - 1, 0)], obs)
    return jnp.concatenate([prev, obs, dataset.next_observations[idx]], axis=-1)


def gaussian_nll(mean: jax.Array, log_std: jax.Array, actions: jax.Array) -> jax.Array:
    """Mean negative log-likelihood (scalar) of ``actions [B, act]`` in ``[-1, 1]`` under the
    tanh-squashed Gaussians ``(mean, log_std) [B, act]``."""
    return -jnp.mean(tanh_gaussian_log_prob(mean, log_std, actions))


def categorical_nll(logits: jax.Array, actions: jax.Array) -> jax.Array:
    """Mean cross-entropy (scalar) of integer ``actions [B]`` under ``logits [B, num_actions]``."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, actions))


@struct.dataclass
class IDMState:
    """Training state of one IDM: ``params``, Adam's ``opt_state`` and the PRNG ``key``."""

    params: dict
    opt_state: optax.OptState
    key: jax.Array


def make_train(config: IDMConfig, obs_dim: int, action_dim: int, *, discrete: bool = False) -> Trainer:
    """The IDM's trainer over a labelled :class:`Dataset` (its data argument): each update is
    one Adam step on a batch drawn uniformly with replacement; metrics ``{"idm_loss"}``."""
    net = model(config, action_dim, discrete)
    tx = optax.adam(config.lr)

    def init(key: jax.Array, data: Dataset) -> IDMState:
        del data
        key, k_init = jax.random.split(key)
        params = net.init(k_init, jnp.zeros((1, 3 * obs_dim)))
        return IDMState(params=params, opt_state=tx.init(params), key=key)

    def loss_fn(params, inputs, actions, dropout_key):
        out = net.apply(params, inputs, deterministic=False, rngs={"dropout": dropout_key})
        return categorical_nll(out, actions) if discrete else gaussian_nll(*out, actions)

    def update(state: IDMState, data: Dataset) -> tuple[IDMState, dict]:
        key, k_batch, k_drop = jax.random.split(state.key, 3)
        idx = jax.random.randint(k_batch, (config.batch_size,), 0, data.rewards.shape[0])
        loss, grads = jax.value_and_grad(loss_fn)(state.params, idm_inputs(data, idx), data.actions[idx], k_drop)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        return IDMState(optax.apply_updates(state.params, updates), opt_state, key), {"idm_loss": loss}

    return Trainer(init=init, update=update, num_updates=config.num_updates, env_steps_per_update=0)


def label_actions(config: IDMConfig, params: dict, dataset: Dataset, action_dim: int, *, discrete: bool = False,
                  chunk: int = 8192) -> jax.Array:
    """The IDM's action for every step of ``dataset``: float32 [N, act] (the tanh of the
    Gaussian's mean) or int32 [N] (the argmax), computed ``chunk`` steps at a time. Jittable
    (``chunk`` static)."""
    net = model(config, action_dim, discrete)
    n = dataset.rewards.shape[0]
    idx = jnp.minimum(jnp.arange(-(-n // chunk) * chunk).reshape(-1, chunk), n - 1)

    def one(rows):
        out = net.apply(params, idm_inputs(dataset, rows))
        return jnp.argmax(out, -1).astype(jnp.int32) if discrete else jnp.tanh(out[0])

    actions = jax.lax.map(one, idx)
    return actions.reshape((-1,) + actions.shape[2:])[:n]


def action_error(predicted: jax.Array, actions: jax.Array) -> jax.Array:
    """Mean squared error over steps and action dimensions (continuous, [N, act]) or the
    fraction of wrong actions (discrete, [N])."""
    if actions.ndim == 1:
        return jnp.mean(predicted != actions)
    return jnp.mean((predicted - actions) ** 2)


def labelled_split(dataset: Dataset, fraction: float, mode: SplitMode = "low_return",
                   seed: int = 0) -> tuple[Dataset, Dataset | None]:
    """``(labelled, unlabelled)`` whole episodes: ``round(fraction * episodes)`` (at least one)
    labelled, drawn at random from all episodes (``mode="random"``) or from the lowest-return
    half only (``"low_return"``, the paper's hardest setting; with ``fraction > 1/2`` the whole
    low half plus random others). ``unlabelled`` is None when every episode is labelled.
    Host-side; depends only on ``seed``."""
    if not 0 < fraction <= 1:
        raise DatasetError("labelled_split", "fraction", f"must be in (0, 1], got {fraction}")
    if mode not in ("low_return", "random"):
        raise DatasetError("labelled_split", "mode", f"must be low_return or random, got {mode!r}")
    returns = episode_returns(dataset)
    num = len(returns)
    k = min(num, max(1, round(fraction * num)))
    rng = np.random.default_rng(seed)
    if mode == "random":
        chosen = rng.permutation(num)[:k]
    else:
        order = np.argsort(returns, kind="stable")
        low, high = order[: num // 2 or 1], order[num // 2 or 1:]
        chosen = np.concatenate([rng.permutation(low), rng.permutation(high)])[:k]
    labelled = np.sort(chosen)
    rest = np.setdiff1d(np.arange(num), labelled)
    return select_episodes(dataset, labelled), (select_episodes(dataset, rest) if rest.size else None)
