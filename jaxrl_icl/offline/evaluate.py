"""Evaluating offline policies in JAX envs, inside jit, and training with periodic evaluation.

An offline policy maps normalised observations to actions in ``[-1, 1]`` (or int actions);
:func:`make_evaluator` runs it deterministically for ``num_episodes`` episodes and returns
their mean undiscounted return. :func:`with_evaluation`
turns a trainer into one whose update is ``eval_every`` gradient steps followed by one
evaluation, so the chunked runner logs a score curve with no host round trip of its own.
Envs that are not JAX (gymnasium's MuJoCo tasks) are evaluated on the host between chunks of
:func:`repeat_updates` instead (:mod:`jaxrl_icl.offline.host_evaluate`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxrl_icl.offline.dataset import ObsNormalizer
from jaxrl_icl.rl.evaluate import policy_returns
from jaxrl_icl.trainer import Trainer


def env_policy(policy: Callable[[Any, jax.Array], jax.Array], normalizer: ObsNormalizer | None = None,
               action_scale: Any = 1.0) -> Callable[[Any, jax.Array], jax.Array]:
    """``act(params, obs) -> env action``: a trained ``policy(params, obs [obs]) -> action`` on
    the env's own observations (flattened to float32 [obs], normalised by ``normalizer``) with
    continuous actions multiplied by ``action_scale`` (the dataset stores actions divided by it);
    integer actions pass as they are."""

    def act(params: Any, obs: jax.Array) -> jax.Array:
        x = obs.reshape(-1).astype(jnp.float32)
        action = policy(params, x if normalizer is None else normalizer(x))
        return action * action_scale if jnp.issubdtype(action.dtype, jnp.floating) else action

    return act


def make_evaluator(env: Any, env_params: Any, policy: Callable[[Any, jax.Array], jax.Array], *,
                   num_episodes: int, max_episode_steps: int, normalizer: ObsNormalizer | None = None,
                   action_scale: Any = 1.0) -> Callable[[jax.Array, Any], jax.Array]:
    """``evaluate(key, policy_params) -> mean return`` (float32 scalar), jittable and vmappable.

    ``policy(params, obs [obs]) -> action`` acts through :func:`env_policy` (``normalizer``,
    ``action_scale``). The mean is over ``num_episodes`` first episodes, each run for
    ``max_episode_steps`` steps (:func:`jaxrl_icl.rl.evaluate.policy_returns`).
    """
    act = env_policy(policy, normalizer, action_scale)

    def evaluate(key: jax.Array, params: Any) -> jax.Array:
        return jnp.mean(policy_returns(key, env, env_params, lambda obs: act(params, obs), num_episodes,
                                       max_episode_steps))

    return evaluate


def with_evaluation(trainer: Trainer, evaluate: Callable[[jax.Array, Any], jax.Array],
                    policy_params: Callable[[Any], Any], eval_every: int,
                    score: Callable[[jax.Array], jax.Array] | None = None) -> Trainer:
    """``trainer`` with ``eval_every`` of its updates per update, each followed by
    ``evaluate(key, policy_params(state))``.

    The new update's metrics are the last inner update's plus ``eval_return`` (and
    ``score(eval_return)`` as ``normalized_score`` when ``score`` is given). The evaluation
    key is folded from the state's key without advancing it, so the trainer's own random
    stream is untouched: the trained parameters equal those of ``trainer`` run for as many
    updates.
    """
    if eval_every < 1:
        raise ValueError(f"eval_every must be >= 1, got {eval_every}")
    repeated = repeat_updates(trainer, eval_every)

    def update(state: Any, data: Any) -> tuple[Any, dict[str, jax.Array]]:
        state, metrics = repeated.update(state, data)
        eval_key = jax.random.fold_in(state.key, 0x5EED)  # seed-dependent; the trainer key is left as it was
        ret = evaluate(eval_key, policy_params(state))
        metrics["eval_return"] = ret
        if score is not None:
            metrics["normalized_score"] = score(ret)
        return state, metrics

    return dataclasses.replace(repeated, update=update)


def repeat_updates(trainer: Trainer, times: int) -> Trainer:
    """``trainer`` with ``times`` of its updates (one ``lax.scan``) per update, reporting the
    last one's metrics; ``num_updates`` shrinks by the factor ``times`` (rounded down)."""
    if times < 1:
        raise ValueError(f"times must be >= 1, got {times}")

    def update(state: Any, data: Any) -> tuple[Any, dict[str, jax.Array]]:
        state, metrics = jax.lax.scan(lambda s, _: trainer.update(s, data), state, None, times)
        return state, {k: v[-1] for k, v in metrics.items()}

    return Trainer(init=trainer.init, update=update, num_updates=trainer.num_updates // times, env_steps_per_update=0)
