"""Offline RL: one dataset type with D4RL HDF5 and Minari IO, jittable sampling, D4RL
normalised scores, and the standard algorithms as pure trainers over a dataset argument:
:mod:`bc`, :mod:`td3_bc`, :mod:`iql`, :mod:`cql` (continuous and discrete) and :mod:`rebrac`;
:mod:`lcb`: LCB pessimism (bandits, contextual bandits, tabular MDPs) from count tables.

    from jaxrl_icl.offline import load_d4rl, sample_transitions, normalized_score
    dataset, metadata = load_d4rl("hopper-medium-v2.hdf5")
    batch = sample_transitions(key, dataset, 256)      # inside jit; dataset is an argument

    config = td3_bc.TD3BCConfig()
    trainer = td3_bc.make_train(config, obs_dim, action_dim)
    state, metrics = jax.jit(jax.vmap(trainer, in_axes=(0, None)))(seed_keys, dataset)

    # a policy trained on a real D4RL MuJoCo file, evaluated in gymnasium's Hopper-v5 on the host
    evaluate = HostEvaluator(gymnasium_env_id("hopper-medium-v2"), td3_bc.policy(config, 3), num_episodes=10,
                             normalizer=observation_stats(dataset))
    returns = evaluate.evaluate_seeds(seed_keys, state.actor)  # mean return per seed, float32 [S]
"""

from jaxrl_icl.offline import bc, cql, iql, lcb, rebrac, td3_bc
from jaxrl_icl.offline.d4rl_io import load_d4rl, save_d4rl
from jaxrl_icl.offline.dataset import (
    KEYS,
    Dataset,
    DatasetError,
    ObsNormalizer,
    concat_datasets,
    episode_bounds,
    episode_returns,
    make_dataset,
    normalize_observations,
    observation_stats,
    qlearning_transitions,
    sample_segments,
    sample_transitions,
    scale_rewards_by_return_range,
    select_episodes,
    split_episodes,
)
from jaxrl_icl.offline.host_evaluate import HostEvaluator, gymnasium_env_id
from jaxrl_icl.offline.minari_io import load_minari, save_minari
from jaxrl_icl.offline.scores import D4RL_REFERENCE_RETURNS, normalized_score, reference_returns

__all__ = [
    "D4RL_REFERENCE_RETURNS", "Dataset", "DatasetError", "HostEvaluator", "KEYS", "ObsNormalizer", "bc",
    "concat_datasets", "cql", "episode_bounds", "episode_returns", "gymnasium_env_id", "iql", "lcb", "load_d4rl",
    "load_minari", "make_dataset", "normalize_observations", "normalized_score", "observation_stats",
    "qlearning_transitions", "rebrac", "reference_returns", "sample_segments", "sample_transitions", "save_d4rl",
    "save_minari", "scale_rewards_by_return_range", "select_episodes", "split_episodes", "td3_bc",
]
