"""Source RL algorithms that record learning histories.

Each algorithm module has ``make_train(config, env, env_params=None) -> Trainer`` (see
:mod:`jaxrl_icl.trainer`); they are exported here under the algorithm's name::

    from jaxrl_icl.rl import PPOConfig, make_ppo_train
    train = make_ppo_train(PPOConfig(), env, params)
    final_state, metrics = jax.jit(jax.vmap(train, in_axes=(0, None)))(keys, params)
"""

from jaxrl_icl.rl.bandit_algorithms import (
    ArmStats,
    BanditAlgorithm,
    epsilon_greedy,
    greedy,
    run_bandit,
    thompson_bernoulli,
    thompson_gaussian,
    ucb,
    ucb_index,
)
from jaxrl_icl.rl.dqn import DQNConfig, linear_epsilon, q_loss, td_targets
from jaxrl_icl.rl.dqn import make_train as make_dqn_train
from jaxrl_icl.rl.histories import (
    HISTORY_KEYS,
    compact_histories,
    histories_from_metrics,
    load_histories,
    nbytes,
    save_histories,
)
from jaxrl_icl.rl.ppo import PPOConfig, gae_advantages
from jaxrl_icl.rl.ppo import make_train as make_ppo_train
from jaxrl_icl.rl.q_learning import QLearningConfig
from jaxrl_icl.rl.q_learning import make_train as make_q_learning_train
from jaxrl_icl.rl.replay import ReplayBuffer, replay_add, replay_init, replay_sample

__all__ = [
    "ArmStats", "BanditAlgorithm", "DQNConfig", "HISTORY_KEYS", "PPOConfig", "QLearningConfig",
    "ReplayBuffer", "compact_histories", "epsilon_greedy", "gae_advantages", "greedy",
    "histories_from_metrics", "linear_epsilon", "load_histories", "make_dqn_train",
    "make_ppo_train", "make_q_learning_train", "nbytes", "q_loss", "replay_add", "replay_init",
    "replay_sample", "run_bandit", "save_histories", "td_targets", "thompson_bernoulli",
    "thompson_gaussian", "ucb", "ucb_index",
]
