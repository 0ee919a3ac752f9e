"""TD3+BC (Fujimoto & Gu 2021) and ReBRAC (Tarasov et al. 2023) as one pure trainer.

ReBRAC is TD3+BC with LayerNorm in the critics, a behaviour-cloning penalty in the critic's
target as well as in the actor, and larger batches; :func:`rebrac_config` gives its defaults.
Both train a deterministic tanh actor and twin critics on a
:class:`~jaxrl_icl.offline.dataset.Dataset` whose actions lie in ``[-1, 1]`` (normalise the
observations first: :func:`~jaxrl_icl.offline.dataset.observation_stats`).

One ``update`` is ``policy_freq`` critic steps followed by one actor step (on the last critic
step's batch, as the TD3 and TD3+BC code do) and one Polyak step of both targets, which is
TD3's delayed schedule without a conditional in the scan.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl_icl.config import require_in, require_nonnegative, require_positive, require_types
from jaxrl_icl.offline.dataset import Dataset, transitions_at
from jaxrl_icl.offline.networks import DeterministicActor, TwinCritic, compute_dtype
from jaxrl_icl.trainer import Trainer


@dataclasses.dataclass(frozen=True)
class TD3BCConfig:
    """TD3+BC hyperparameters (defaults: the paper's, with JAX-CORL's 256-256 networks).

    Attributes:
      num_updates: trainer updates; each is ``policy_freq`` critic steps and one actor step.
      batch_size: transitions per gradient step.
      actor_lr: Adam learning rate of the actor.
      critic_lr: Adam learning rate of the critics.
      gamma: discount.
      tau: Polyak step of the target networks.
      policy_noise: std of the target policy smoothing noise (actions in [-1, 1]).
      noise_clip: the smoothing noise is clipped to [-noise_clip, noise_clip].
      policy_freq: critic steps per actor step.
      alpha: weight of the normalised Q term in the actor loss (TD3+BC's alpha).
      actor_bc_weight: weight of the summed squared action error in the actor loss;
        0 means TD3+BC's mean over action dimensions (1 / action_dim).
      critic_bc_weight: ReBRAC's penalty on the squared distance between the target action
        and the dataset's next action inside the critic target (0 for TD3+BC).
      hidden: widths of the hidden layers of actor and critics.
      critic_layer_norm: LayerNorm after every hidden layer of the critics.
      actor_layer_norm: LayerNorm after every hidden layer of the actor.
      bf16: run the networks' matmuls and activations in bfloat16 (parameters, optimiser
        state, losses and targets stay float32); meant for GPUs, where it halves the bytes of
        the many-seed update's memory-bound kernels (on an H200, 16 vmapped seeds ran 23% more
        updates/s, one seed the same). On a CPU it is usually slower.
    """

    num_updates: int = 500_000
    batch_size: int = 256
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    policy_freq: int = 2
    alpha: float = 2.5
    actor_bc_weight: float = 0.0
    critic_bc_weight: float = 0.0
    hidden: tuple[int, ...] = (256, 256)
    critic_layer_norm: bool = False
    actor_layer_norm: bool = False
    bf16: bool = False

    def __post_init__(self) -> None:
        require_types(self)
        for name in ("num_updates", "batch_size", "actor_lr", "critic_lr", "policy_freq", "alpha"):
            require_positive(self, name)
        for name in ("gamma", "tau"):
            require_in(self, name, 0.0, 1.0)
        for name in ("policy_noise", "noise_clip", "actor_bc_weight", "critic_bc_weight"):
            require_nonnegative(self, name)


def rebrac_config(**overrides: Any) -> TD3BCConfig:
    """ReBRAC's defaults (Tarasov et al. 2023, locomotion): LayerNorm critics, batch 1024,
    learning rates 1e-3, actor BC weight 1e-3 on the summed squared error with the Q term
    normalised by its mean magnitude (alpha 1), critic BC weight 1e-2; ``overrides`` win."""
    defaults = dict(batch_size=1024, actor_lr=1e-3, critic_lr=1e-3, alpha=1.0, actor_bc_weight=1e-3,
                    critic_bc_weight=1e-2, critic_layer_norm=True, actor_layer_norm=True)
    return TD3BCConfig(**{**defaults, **overrides})


@struct.dataclass
class TD3BCState:
    """Everything that changes during training (one seed)."""

    actor: Any
    critic: Any
    target_actor: Any
    target_critic: Any
    actor_opt: Any
    critic_opt: Any
    key: jax.Array
    step: jax.Array


def actor_loss(q: jax.Array, action: jax.Array, data_action: jax.Array, alpha: float,
               bc_weight: float) -> tuple[jax.Array, dict[str, jax.Array]]:
    """TD3+BC's actor loss ``mean_b(bc_weight * sum_d (pi(s) - a)^2 - lambda * Q(s, pi(s)))``
    with ``lambda = alpha / mean_b |Q|`` held constant (no gradient through it).

    Args:
      q: ``Q(s, pi(s))`` [B] (the first critic).
      action: ``pi(s)`` [B, act]; data_action: dataset actions [B, act].
      alpha, bc_weight: TD3+BC uses 2.5 and ``1 / act``; ReBRAC 1 and its beta.

    Returns ``(loss, {"lambda", "bc_mse"})``.
    """
    lam = jax.lax.stop_gradient(alpha / jnp.mean(jnp.abs(q)))
    bc = jnp.sum((action - data_action) ** 2, axis=-1)
    loss = jnp.mean(bc_weight * bc - lam * q)
    return loss, {"lambda": lam, "bc_mse": jnp.mean(bc) / action.shape[-1]}


def critic_target(reward: jax.Array, terminal: jax.Array, next_q: jax.Array, next_action: jax.Array,
                  next_data_action: jax.Array, gamma: float, bc_weight: float) -> jax.Array:
    """``r + gamma * (1 - terminal) * (min_i Q'_i(s', a') - bc_weight * sum_d (a' - a'_data)^2)`` [B].

    Args:
      reward: [B]; terminal: bool [B]; next_q: target critics at the smoothed target action,
      [2, B]; next_action: that action a' [B, act]; next_data_action: the dataset's action at
      s' [B, act] (only read when ``bc_weight`` > 0, ReBRAC).
    """
    penalty = bc_weight * jnp.sum((next_action - next_data_action) ** 2, axis=-1) if bc_weight else 0.0
    return reward + gamma * (1.0 - terminal.astype(jnp.float32)) * (jnp.min(next_q, axis=0) - penalty)


def _next_actions(dataset: Dataset, idx: jax.Array) -> jax.Array:
    """The dataset's action at the successor of steps ``idx`` [B] (the step's own action at an
    episode's last step, where the successor is not in the data)."""
    nxt = jnp.where(idx + 1 < dataset.episode_end[idx], idx + 1, idx)
    return dataset.actions[nxt]


def make_train(config: TD3BCConfig, obs_dim: int, action_dim: int) -> Trainer:
    """TD3+BC (or ReBRAC) as a :class:`~jaxrl_icl.trainer.Trainer` over a dataset argument.

    ``init(key, dataset) -> TD3BCState``; ``update(state, dataset) -> (state, metrics)`` with
    float32 scalars ``critic_loss``, ``actor_loss``, ``q_mean``, ``lambda``, ``bc_mse``.
    The dataset is never closed over, so one compiled program serves any dataset of the same
    shapes, and ``jax.vmap(trainer, in_axes=(0, None))`` trains many seeds on one copy.
    """
    actor = _actor(config, action_dim)
    critic = TwinCritic(config.hidden, config.critic_layer_norm, dtype=compute_dtype(config.bf16))
    actor_tx, critic_tx = optax.adam(config.actor_lr), optax.adam(config.critic_lr)
    actor_bc_weight = config.actor_bc_weight or 1.0 / action_dim

    def init(key: jax.Array, dataset: Dataset) -> TD3BCState:
        del dataset  # shapes come from obs_dim / action_dim
        k_actor, k_critic, key = jax.random.split(key, 3)
        obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim))
        actor_params = actor.init(k_actor, obs)
        critic_params = critic.init(k_critic, obs, act)
        return TD3BCState(actor=actor_params, critic=critic_params, target_actor=actor_params,
                          target_critic=critic_params, actor_opt=actor_tx.init(actor_params),
                          critic_opt=critic_tx.init(critic_params), key=key, step=jnp.int32(0))

    def critic_step(state: TD3BCState, dataset: Dataset) -> tuple[TD3BCState, dict, dict[str, jax.Array]]:
        key, k_batch, k_noise = jax.random.split(state.key, 3)
        idx = jax.random.randint(k_batch, (config.batch_size,), 0, dataset.rewards.shape[0])
        batch = transitions_at(dataset, idx)
        noise = jnp.clip(config.policy_noise * jax.random.normal(k_noise, batch["actions"].shape),
                         -config.noise_clip, config.noise_clip)
        next_action = jnp.clip(actor.apply(state.target_actor, batch["next_observations"]) + noise, -1.0, 1.0)
        next_q = critic.apply(state.target_critic, batch["next_observations"], next_action)
        target = critic_target(batch["rewards"], batch["terminals"], next_q, next_action,
                               _next_actions(dataset, idx), config.gamma, config.critic_bc_weight)

        def loss_fn(params):
            q = critic.apply(params, batch["observations"], batch["actions"])
            return jnp.mean(jnp.sum((q - target[None]) ** 2, axis=0)), q

        (loss, q), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.critic)
        updates, critic_opt = critic_tx.update(grads, state.critic_opt, state.critic)
        state = state.replace(critic=optax.apply_updates(state.critic, updates), critic_opt=critic_opt, key=key)
        return state, batch, {"critic_loss": loss, "q_mean": jnp.mean(q)}

    def update(state: TD3BCState, dataset: Dataset) -> tuple[TD3BCState, dict[str, jax.Array]]:
        # a Python loop, not a scan: on the CPU a nested while loop cost ~10% of the speed (same numbers)
        for _ in range(config.policy_freq):
            state, batch, critic_metrics = critic_step(state, dataset)
        # the actor learns on the last critic step's batch, as in the TD3 and TD3+BC code

        def loss_fn(params):
            action = actor.apply(params, batch["observations"])
            q = critic.apply(state.critic, batch["observations"], action, first_only=True)
            return actor_loss(q, action, batch["actions"], config.alpha, actor_bc_weight)

        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.actor)
        updates, actor_opt = actor_tx.update(grads, state.actor_opt, state.actor)
        actor_params = optax.apply_updates(state.actor, updates)
        state = state.replace(
            actor=actor_params, actor_opt=actor_opt, step=state.step + 1,
            target_actor=optax.incremental_update(actor_params, state.target_actor, config.tau),
            target_critic=optax.incremental_update(state.critic, state.target_critic, config.tau),
        )
        return state, {**critic_metrics, "actor_loss": loss, **aux}

    return Trainer(init=init, update=update, num_updates=config.num_updates, env_steps_per_update=0)


def _actor(config: TD3BCConfig, action_dim: int) -> DeterministicActor:
    """The actor network of ``config`` (the trainer's and :func:`policy`'s)."""
    return DeterministicActor(action_dim, config.hidden, config.actor_layer_norm, compute_dtype(config.bf16))


def policy(config: TD3BCConfig, action_dim: int):
    """``(actor_params, obs [..., obs]) -> action [..., act]`` of a trained TD3+BC / ReBRAC."""
    return _actor(config, action_dim).apply
