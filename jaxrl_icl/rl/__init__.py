"""Source RL algorithms that record learning histories.

Each algorithm module has ``make_train(config, env, env_params=None) -> Trainer`` (see
:mod:`jaxrl_icl.trainer`); they are exported here under the algorithm's name::

    from jaxrl_icl.rl import PPOConfig, make_ppo_train
    train = make_ppo_train(PPOConfig(), env, params)
    final_state, metrics = jax.jit(jax.vmap(train, in_axes=(0, None)))(keys, params)
"""

from jaxrl_icl.rl.action_selection import epsilon_greedy, random_argmax
from jaxrl_icl.rl.bandit_algorithms import (
    ArmStats,
    BanditAlgorithm,
    epsilon_greedy_bandit,
    greedy,
    run_bandit,
    thompson_bernoulli,
    thompson_gaussian,
    ucb,
    ucb_index,
)
from jaxrl_icl.rl.collect import CollectConfig, collect_histories, finished_episode_returns
from jaxrl_icl.rl.dqn import DQNConfig, ReplayTransition, linear_epsilon, q_loss, td_targets
from jaxrl_icl.rl.dqn import make_train as make_dqn_train
from jaxrl_icl.rl.evaluate import greedy_episode_return, greedy_returns, tabular_scores
from jaxrl_icl.rl.histories import (
    HISTORY_KEYS,
    compact_histories,
    histories_from_metrics,
    load_histories,
    nbytes,
    save_histories,
)
from jaxrl_icl.rl.ppo import PPOBatch, PPOConfig, gae_advantages, ppo_loss
from jaxrl_icl.rl.ppo import make_train as make_ppo_train
from jaxrl_icl.rl.q_learning import QLearningConfig
from jaxrl_icl.rl.q_learning import make_train as make_q_learning_train
from jaxrl_icl.rl.replay import ReplayBuffer, replay_add, replay_init, replay_sample

__all__ = [
    "ArmStats", "BanditAlgorithm", "CollectConfig", "DQNConfig", "HISTORY_KEYS", "PPOBatch", "PPOConfig",
    "QLearningConfig", "ReplayBuffer", "ReplayTransition", "collect_histories", "compact_histories",
    "epsilon_greedy", "epsilon_greedy_bandit", "finished_episode_returns", "gae_advantages", "greedy",
    "greedy_episode_return", "greedy_returns", "histories_from_metrics", "linear_epsilon", "load_histories",
    "make_dqn_train", "make_ppo_train", "make_q_learning_train", "nbytes", "ppo_loss", "q_loss",
    "random_argmax", "replay_add", "replay_init", "replay_sample", "run_bandit", "save_histories",
    "tabular_scores", "td_targets", "thompson_bernoulli", "thompson_gaussian", "ucb", "ucb_index",
]
