"""Learning histories for Algorithm Distillation: a source RL algorithm trained on every task.

Every goal cell of a Dark Room grid is one task; the source algorithm (tabular Q-learning or
PPO) trains on all of them at once (one jitted ``jax.vmap`` over tasks) and records every env
step. :func:`collect_histories` returns the histories in the compact dtypes of
:mod:`jaxrl_icl.rl.histories` with the metadata :func:`~jaxrl_icl.rl.histories.save_histories`
writes, the per-episode returns and the optimal mean return::

    histories, meta, returns, optimum = collect_histories(CollectConfig(env="darkroom-9x9"))
    save_histories("histories.h5", histories, meta)

For PPO an "episode" is one episode of one parallel env (Dark Room episodes all last
``horizon`` steps), its return recomputed from the recorded rewards; PPO's network sees Dark
Room's ``int32[2]`` position as a float32 Box vector.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import numpy as np

import envs
from jaxrl_icl.config import ConfigError, config_to_dict, require_types
from jaxrl_icl.rl import ppo, q_learning
from jaxrl_icl.rl.histories import compact_histories, histories_from_metrics
from jaxrl_icl.rl.ppo import PPOConfig
from jaxrl_icl.rl.q_learning import QLearningConfig

__all__ = ["AVAILABLE_ALGOS", "CollectConfig", "DARKROOM_PPO", "collect_histories", "finished_episode_returns"]

AVAILABLE_ALGOS = ("q_learning", "ppo")

# PPO on a 9x9 Dark Room (horizon 20): 4 envs x 100 steps (5 episodes) per update, 50 updates,
# i.e. 250 episodes of each env per task; about 1.6M env steps over the 81 tasks.
DARKROOM_PPO = PPOConfig(
    num_envs=4, num_steps=100, total_timesteps=20_000, lr=1e-3, record_history=True
)


@dataclasses.dataclass(frozen=True)
class CollectConfig:
    """Learning-history collection.

    Attributes:
      env: task family; every cell of the grid is one goal (task).
      algo: source RL algorithm that generates the histories.
      seed: PRNG seed (one key per task is split from it).
      summary_episodes: how many first / last episodes the printed means average over.
      q_learning: source algorithm settings when algo is q_learning.
      ppo: source algorithm settings when algo is ppo.
    """

    env: Literal["darkroom-9x9", "darkroom-10x10"] = "darkroom-9x9"
    algo: Literal["q_learning", "ppo"] = "q_learning"
    seed: int = 0
    summary_episodes: int = 10
    q_learning: QLearningConfig = QLearningConfig(record_history=True)
    ppo: PPOConfig = DARKROOM_PPO

    def __post_init__(self) -> None:
        require_types(self)
        if self.algo not in AVAILABLE_ALGOS:
            raise ConfigError(
                "algo", f"{self.algo!r} is not wired for history collection yet; available: "
                + ", ".join(AVAILABLE_ALGOS)
            )
        if self.summary_episodes < 1:
            raise ConfigError("summary_episodes", f"must be >= 1, got {self.summary_episodes}")
        if not getattr(self, self.algo).record_history:
            raise ConfigError(f"{self.algo}.record_history", "must be true to collect histories")
        if self.algo == "ppo" and self.ppo.normalize_reward:
            raise ConfigError("ppo.normalize_reward", "histories need raw rewards; keep it false")
        if self.algo == "q_learning" and self.summary_episodes > self.q_learning.num_episodes:
            raise ConfigError(
                "summary_episodes",
                f"must be in [1, q_learning.num_episodes={self.q_learning.num_episodes}], got {self.summary_episodes}",
            )


def finished_episode_returns(reward: np.ndarray, done: np.ndarray) -> np.ndarray:
    """Returns ``[N, E]`` of the first ``E`` complete episodes of each history.

    Args:
      reward: ``[N, T]`` rewards; done: ``[N, T]`` bool, ``terminated | truncated`` (an
        episode ends at a step where ``done``). Steps after a history's last ``done`` belong
        to an unfinished episode and are dropped.

    Returns:
      float64 ``[N, E]`` with ``E`` the smallest number of complete episodes over histories.
    """
    per_history = []
    for r, d in zip(np.asarray(reward, np.float64), np.asarray(done, bool)):
        ends = np.flatnonzero(d)
        # cut the unfinished tail so the last segment ends at the last done step
        sums = np.add.reduceat(r[: ends[-1] + 1], np.concatenate([[0], ends[:-1] + 1])) if ends.size else np.zeros(0)
        per_history.append(sums)
    num = min(len(x) for x in per_history)
    return np.stack([x[:num] for x in per_history])


def _ppo_episodes(config: CollectConfig, horizon: int) -> int:
    """Complete episodes per env of a PPO run on an env whose episodes last ``horizon`` steps."""
    return config.ppo.num_updates * config.ppo.num_steps // horizon


def collect_histories(config: CollectConfig) -> tuple[dict[str, np.ndarray], dict, np.ndarray, float]:
    """Train on every task; ``(histories, meta, returns [tasks, episodes], optimal mean return)``.

    ``histories`` are ``[tasks * num_envs, T, ...]`` (history ``b * num_envs + e`` is env
    ``e`` of task ``b``), compacted; ``meta`` holds the env, algorithm, config, seed and each
    history's ``params`` (``goal``, ``max_steps_in_episode``). For PPO, ``returns[b, i]`` is
    the mean over task ``b``'s parallel envs of their ``i``-th episode's return (recomputed
    from the recorded rewards); for Q-learning, the return of update ``i``'s first episode.

    Raises:
      ConfigError naming ``summary_episodes`` if a PPO run would finish fewer episodes per
      env than the summary averages over (checked before training).
    """
    from envs.darkroom import all_goals, optimal_return  # here: it loads gymnax, and with it matplotlib

    env, base = envs.make(config.env)
    goals = all_goals(env.size)
    params = jax.vmap(lambda g: base.replace(goal=g))(goals)
    if config.algo == "ppo":
        episodes = _ppo_episodes(config, env.horizon)
        if config.summary_episodes > episodes:
            raise ConfigError(
                "summary_episodes",
                f"must be at most the {episodes} episodes per env that ppo runs on {config.env}, "
                f"got {config.summary_episodes}",
            )
        trainer = ppo.make_train(config.ppo, env, base)
        num_envs = config.ppo.num_envs
    else:
        trainer = q_learning.make_train(config.q_learning, env)
        num_envs = config.q_learning.num_envs
    keys = jax.random.split(jax.random.key(config.seed), goals.shape[0])
    _, metrics = jax.jit(jax.vmap(trainer))(keys, params)
    histories = compact_histories(histories_from_metrics(metrics))
    per_history = {  # history b * num_envs + e belongs to task b
        name: np.repeat(np.asarray(getattr(params, name)), num_envs, axis=0)
        for name in ("goal", "max_steps_in_episode")
    }
    meta = {"env": config.env, "algorithm": config.algo, "config": config_to_dict(config),
            "seed": config.seed, "params": per_history}
    start = np.asarray(env.start, np.int32)
    optimum = float(np.mean(jax.vmap(lambda g: optimal_return(g, start, env.horizon))(goals)))
    if config.algo == "ppo":
        done = histories["terminated"] | histories["truncated"]
        returns = finished_episode_returns(histories["reward"], done)
        returns = returns.reshape(goals.shape[0], num_envs, -1).mean(axis=1)
    else:
        returns = np.asarray(metrics["episode_return"])
    return histories, meta, returns, optimum
