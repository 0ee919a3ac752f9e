"""D4RL-style dataset qualities from any continuous (or discrete) env of ``envs.make``.

As D4RL did with SAC, one online learner (here PPO) is trained to an expert while its
parameters are snapshotted every chunk of updates and its own rollouts are kept:

- ``random``: a uniform policy over the action space;
- ``medium``: the snapshot whose return is closest to a third of the way from the random to the
  expert return (``medium_fraction``), among those up to the first that reaches it; sampled
  stochastically;
- ``medium-replay``: every rollout of the learner up to that snapshot (its replay);
- ``expert``: the final policy, sampled stochastically;
- ``medium-expert``: the medium and expert datasets concatenated.

The random and expert policies' mean returns are the reference returns stored with each
dataset (``ref_min_score`` / ``ref_max_score``), so
:func:`~jaxrl_icl.offline.scores.normalized_score` scores policies trained on them.

Grid worlds whose optimal policy is known exactly (Dark Room: the shortest path to the goal
in ``EnvParams``) get discrete qualities from that policy instead of a learner
(:func:`generate_grid_qualities`): ``uniform`` (uniform random actions), ``epsilon-optimal``
(the optimal action, replaced with probability ``epsilon`` by a uniform one) and ``optimal``,
with the uniform and optimal policies' returns as the references.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import numpy as np
from flax import struct

from envs.darkroom import DarkRoom, optimal_action
from envs.spaces import is_discrete
from jaxrl_icl.offline.collect import (
    action_scale,
    complete_episode_returns,
    episode_returns,
    epsilon_optimal_policy,
    record_rollouts,
    reference_return,
    scale_actions,
    streams_to_arrays,
    uniform_policy,
)
from jaxrl_icl.rl.ppo import PPOConfig, make_policy, make_train

QUALITIES = ("random", "medium", "medium-replay", "expert", "medium-expert")
GRID_QUALITIES = ("uniform", "epsilon-optimal", "optimal")


@dataclasses.dataclass
class GeneratedDatasets:
    """What :func:`generate_qualities` made.

    Attributes:
      datasets: quality -> the six D4RL arrays (actions scaled into [-1, 1]).
      metadata: quality -> scalars stored with the dataset (env_name, quality, ref_min_score,
        ref_max_score, action_scale, source_update, mean_episode_return: over its complete
        episodes, NaN if it has none).
      snapshot_updates: int [K], the learner's update count at each snapshot.
      snapshot_returns: float [K], each snapshot's mean return (stochastic policy).
      train_returns: float [U], the learner's mean training episode return per update.
      medium_update: the update count of the medium snapshot.
    """

    datasets: dict[str, dict[str, np.ndarray]]
    metadata: dict[str, dict[str, Any]]
    snapshot_updates: np.ndarray
    snapshot_returns: np.ndarray
    train_returns: np.ndarray
    medium_update: int


@struct.dataclass
class _PolicySnapshot:
    """What :func:`~jaxrl_icl.rl.ppo.make_policy`'s ``act`` reads of a PPO state (not the env
    states and optimiser state, which a snapshot per update would copy for nothing)."""

    params: Any
    obs_norm: Any


def _stochastic(act: Callable) -> Callable:
    return lambda state, key, obs: act(state, key, obs, False)


def generate_qualities(key: jax.Array, env: Any, env_params: Any, env_name: str, ppo: PPOConfig, *,
                       num_transitions: int, num_envs: int, chunk_updates: int, eval_episodes: int,
                       max_episode_steps: int, medium_fraction: float = 1 / 3,
                       progress: Callable[[int, int], None] | None = None) -> GeneratedDatasets:
    """Train PPO on ``env`` and record the five :data:`QUALITIES` of ``num_transitions`` each
    (``medium-replay``: however many the learner collected before the medium snapshot;
    ``medium-expert``: twice as many).

    ``num_transitions`` must be a multiple of ``num_envs``. ``progress(done, total)`` is
    called after every chunk of ``chunk_updates`` PPO updates.
    """
    if num_transitions % num_envs:
        raise ValueError(f"num_transitions={num_transitions} must be a multiple of num_envs={num_envs}")
    k_train, k_eval, k_random, k_medium, k_expert, k_ref = jax.random.split(key, 6)
    discrete = is_discrete(env.action_space(env_params))
    scale = np.float32(1.0) if discrete else np.asarray(action_scale(env, env_params))
    if np.ptp(scale) > 0:  # the metadata, and so every evaluation, carries one scale
        raise ValueError(f"{env_name}: action bounds {scale} differ across dimensions; one action_scale is stored")
    scale = np.float32(np.max(scale))
    trainer = make_train(dataclasses.replace(ppo, record_history=True), env, env_params)
    act = _stochastic(make_policy(ppo, env, env_params))

    @jax.jit
    def chunk(state):
        return jax.lax.scan(lambda s, _: trainer.update(s, env_params), state, None, chunk_updates)

    state = jax.jit(trainer.init)(k_train, env_params)
    snapshots, histories, train_returns, updates = [], [], [], []
    num_chunks = max(1, trainer.num_updates // chunk_updates)
    for i in range(num_chunks):
        state, metrics = chunk(state)
        metrics = jax.device_get(metrics)
        snapshots.append(_PolicySnapshot(*jax.device_get((state.params, state.obs_norm))))
        histories.append({k.removeprefix("history/"): v for k, v in metrics.items() if k.startswith("history/")})
        train_returns.append(metrics["episode_return"])
        updates.append((i + 1) * chunk_updates)
        if progress is not None:
            progress(i + 1, num_chunks)

    evaluate = lambda policy, params, k: reference_return(k, env, env_params, policy, params,
                                                          num_episodes=eval_episodes,
                                                          max_episode_steps=max_episode_steps)
    snapshot_returns = np.array([evaluate(act, s, k_eval) for s in snapshots])
    random_return = evaluate(uniform_policy(env, env_params), None, k_ref)
    expert_return = float(snapshot_returns[-1])
    if not expert_return > random_return:
        raise RuntimeError(f"{env_name}: the trained policy ({expert_return:.1f}) is not better than random "
                           f"({random_return:.1f}); train longer or tune the PPO flags")
    target = random_return + medium_fraction * (expert_return - random_return)
    crossed = int(np.argmax(snapshot_returns >= target))  # the first snapshot at or past the target
    medium = int(np.argmin(np.abs(snapshot_returns[:crossed + 1] - target)))  # the closest one up to it

    steps = num_transitions // num_envs
    record = lambda k, policy, params: record_rollouts(k, env, env_params, policy, params, num_envs=num_envs,
                                                       num_steps=steps, action_scale=scale)
    datasets = {
        "random": record(k_random, uniform_policy(env, env_params), None),
        "medium": record(k_medium, act, snapshots[medium]),
        "expert": record(k_expert, act, snapshots[-1]),
    }
    replay = {k: np.concatenate([h[k].reshape(-1, *h[k].shape[2:]) for h in histories[:medium + 1]])
              for k in histories[0]}  # [updates * num_steps, num_envs, ...]: continuous env streams
    datasets["medium-replay"] = streams_to_arrays(replay["obs"], scale_actions(replay["action"], scale),
                                                  replay["reward"], replay["terminated"], replay["truncated"])
    datasets["medium-expert"] = {k: np.concatenate([datasets["medium"][k], datasets["expert"][k]])
                                 for k in datasets["medium"]}
    source = {"random": 0, "medium": updates[medium], "medium-replay": updates[medium],
              "expert": updates[-1], "medium-expert": updates[-1]}
    returns = {q: episode_returns(datasets[q], max_episode_steps) for q in QUALITIES}
    # the replay's successors are rebuilt qlearning-style (its time-limit steps dropped), so its
    # complete episodes are counted on the learner's own recording
    returns["medium-replay"] = complete_episode_returns(replay["reward"], replay["terminated"] | replay["truncated"])
    metadata = {
        q: {"env_name": env_name, "quality": q, "ref_min_score": float(random_return),
            "ref_max_score": expert_return, "action_scale": float(scale), "source_update": source[q],
            "mean_episode_return": _mean_or_nan(returns[q])}
        for q in QUALITIES
    }
    return GeneratedDatasets(
        datasets={q: datasets[q] for q in QUALITIES}, metadata=metadata, snapshot_updates=np.array(updates),
        snapshot_returns=snapshot_returns, train_returns=np.concatenate(train_returns),
        medium_update=updates[medium],
    )


def _mean_or_nan(x: np.ndarray) -> float:
    return float(np.mean(x)) if x.size else float("nan")



def exact_optimal_action(env: Any) -> Callable[[jax.Array, Any], jax.Array] | None:
    """``optimal_action(obs, env_params) -> int32 action`` for envs whose optimal policy is
    known in closed form, else None. Dark Room: the x-first shortest path to
    ``env_params.goal`` (:func:`envs.darkroom.optimal_action`), then ``STAY`` on the goal."""
    if isinstance(env, DarkRoom):
        return lambda obs, env_params: optimal_action(obs, env_params.goal)
    return None


@functools.lru_cache(maxsize=8)
def _grid_policy(env: Any, num_actions: int) -> Callable:
    """One epsilon-optimal policy object per env, so its compiled rollouts serve every call."""
    return epsilon_optimal_policy(exact_optimal_action(env), num_actions)


def generate_grid_qualities(key: jax.Array, env: Any, env_params: Any, env_name: str, *, num_transitions: int,
                            num_envs: int, epsilon: float
                            ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, Any]]]:
    """``(datasets, metadata)``: the three :data:`GRID_QUALITIES` of ``num_transitions`` each
    (a multiple of ``num_envs``, at least one episode per env) on the task ``env_params``, from
    the env's exact optimal policy (:func:`exact_optimal_action`; ValueError for an env without one).

    Actions are stored as int32 indices ``[N]``. Episodes last the env's
    ``max_steps_in_episode``. Metadata per quality: env_name, quality, epsilon (the behaviour
    policy's: 1 for uniform, 0 for optimal), num_actions, action_scale (1), goal_x / goal_y (the
    task, ``envs.make(env_name, goal=...)`` evaluates in it), mean_episode_return (over the
    dataset's complete episodes) and ref_min_score / ref_max_score: the uniform and optimal
    policies' mean returns, measured on every complete episode of their datasets.
    """
    best = exact_optimal_action(env)
    if best is None:
        raise ValueError(f"{env_name}: no exact optimal policy is known; use generate_qualities (a PPO learner)")
    if num_transitions % num_envs:
        raise ValueError(f"num_transitions={num_transitions} must be a multiple of num_envs={num_envs}")
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
    num_actions = int(env.action_space(env_params).n)
    horizon = int(env_params.max_steps_in_episode)
    if num_transitions // num_envs < horizon:
        raise ValueError(f"num_transitions={num_transitions} gives each of the {num_envs} envs fewer steps than "
                         f"one episode ({horizon})")
    policy = _grid_policy(env, num_actions)
    eps = {"uniform": 1.0, "epsilon-optimal": float(epsilon), "optimal": 0.0}
    datasets = {q: record_rollouts(k, env, env_params, policy, (env_params, np.float32(eps[q])), num_envs=num_envs,
                                   num_steps=num_transitions // num_envs)
                for q, k in zip(GRID_QUALITIES, jax.random.split(key, len(GRID_QUALITIES)))}
    returns = {q: float(np.mean(episode_returns(datasets[q], horizon))) for q in GRID_QUALITIES}
    metadata = {
        q: {"env_name": env_name, "quality": q, "epsilon": eps[q], "num_actions": num_actions, "action_scale": 1.0,
            "goal_x": int(env_params.goal[0]), "goal_y": int(env_params.goal[1]),
            "ref_min_score": returns["uniform"], "ref_max_score": returns["optimal"], "mean_episode_return": returns[q]}
        for q in GRID_QUALITIES
    }
    return datasets, metadata
