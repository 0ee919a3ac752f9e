"""Read and write Minari datasets through the ``minari`` package (extra ``offline``:
``pip install -e ".[offline]"``).

Minari stores episodes: ``observations [T + 1, obs]`` (the final one included),
``actions [T, ...]``, ``rewards``, ``terminations`` and ``truncations [T]``. A
:class:`~jaxrl_icl.offline.dataset.Dataset` maps to it episode by episode
(``observations = obs[start:end] + [next_observations[end - 1]]``, ``terminals`` =
terminations, ``timeouts`` = truncations), so float32 data make the round trips Minari ->
D4RL file -> Minari and back bitwise. Datasets live under ``MINARI_DATASETS_PATH``
(Minari's default root otherwise); nothing here touches the network.
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping

import numpy as np

from jaxrl_icl.offline.dataset import Dataset, DatasetError, episode_bounds, make_dataset


def _minari():
    try:
        import minari
    except ImportError as err:
        raise ImportError('Minari IO needs the optional extra: pip install -e ".[offline]"') from err
    return minari


def _spaces(arrays: dict[str, np.ndarray]) -> tuple[Any, Any]:
    import gymnasium

    obs_dim = arrays["observations"].shape[1]
    observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
    actions = arrays["actions"]
    if actions.ndim == 1:
        return observation_space, gymnasium.spaces.Discrete(int(actions.max()) + 1)
    return observation_space, gymnasium.spaces.Box(-np.inf, np.inf, actions.shape[1:], np.float32)


def save_minari(dataset: Dataset, dataset_id: str, *, metadata: Mapping[str, Any] | None = None,
                observation_space: Any = None, action_space: Any = None) -> Any:
    """Write ``dataset`` as the local Minari dataset ``dataset_id`` (e.g.
    ``"jaxrl/pendulum/medium-v0"``) and return the ``MinariDataset``.

    Spaces default to unbounded float32 boxes of the data's sizes (``Discrete`` for integer
    actions). ``metadata``'s ``ref_min_score`` / ``ref_max_score`` become Minari's reference
    scores, and ``env_name`` / ``algorithm_name`` / ``description`` its fields of those names.
    """
    minari = _minari()
    from minari.data_collector import EpisodeBuffer

    arrays = dataset.arrays()
    default_obs, default_act = _spaces(arrays)
    starts, ends = episode_bounds(arrays["terminals"], arrays["timeouts"])
    buffers = []
    for i, (s, e) in enumerate(zip(starts, ends)):
        obs = np.concatenate([arrays["observations"][s:e], arrays["next_observations"][e - 1:e]])
        buffers.append(EpisodeBuffer(
            id=i, observations=obs, actions=arrays["actions"][s:e], rewards=arrays["rewards"][s:e],
            terminations=arrays["terminals"][s:e], truncations=arrays["timeouts"][s:e], infos={},
        ))
    metadata = dict(metadata or {})
    with warnings.catch_warnings():  # no gymnasium env spec, author or permalink: Minari warns about each
        warnings.simplefilter("ignore", UserWarning)
        created = minari.create_dataset_from_buffers(
            dataset_id, buffers,
            observation_space=observation_space or default_obs, action_space=action_space or default_act,
            algorithm_name=metadata.get("algorithm_name"), description=metadata.get("description"),
        )
    if "ref_min_score" in metadata and "ref_max_score" in metadata:
        # Minari computes reference scores only from a gymnasium env; ours are measured on JAX envs
        created.storage.update_metadata({k: float(metadata[k]) for k in ("ref_min_score", "ref_max_score")})
    return created


def load_minari(dataset_id: str, *, action_bounds: tuple[Any, Any] | None = None) -> tuple[Dataset, dict[str, Any]]:
    """``(dataset, metadata)`` from the local Minari dataset ``dataset_id`` (no download).

    ``metadata`` carries Minari's ``ref_min_score`` / ``ref_max_score`` when the dataset has
    them, and its ``dataset_id``. Episodes with dict or tuple observations are rejected.
    """
    minari = _minari()
    try:
        source = minari.load_dataset(dataset_id, download=False)
    except Exception as err:  # minari raises several types for a missing or broken dataset
        raise DatasetError(f"minari:{dataset_id}", "(dataset)", f"cannot be loaded ({err})") from None
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("observations", "actions", "rewards", "terminals",
                                                           "timeouts", "next_observations")}
    for episode in source.iterate_episodes():
        obs = episode.observations
        if not isinstance(obs, np.ndarray):
            raise DatasetError(f"minari:{dataset_id}", "observations",
                               f"episode {episode.id} has {type(obs).__name__} observations; only arrays are supported")
        parts["observations"].append(obs[:-1])
        parts["next_observations"].append(obs[1:])
        parts["actions"].append(np.asarray(episode.actions))
        parts["rewards"].append(np.asarray(episode.rewards))
        parts["terminals"].append(np.asarray(episode.terminations))
        parts["timeouts"].append(np.asarray(episode.truncations))
    if not parts["rewards"]:
        raise DatasetError(f"minari:{dataset_id}", "(dataset)", "has no episodes")
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    stored = source.storage.metadata
    metadata = {"dataset_id": dataset_id}
    metadata.update({k: stored[k] for k in ("ref_min_score", "ref_max_score") if stored.get(k) is not None})
    return make_dataset(arrays, source=f"minari:{dataset_id}", action_bounds=action_bounds), metadata
