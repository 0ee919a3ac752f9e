"""D4RL normalised scores: ``100 * (return - random) / (expert - random)``.

The MuJoCo tasks use D4RL's published reference returns (its ``infos.py``), so a real D4RL
file scores as in the papers. They belong to the gym MuJoCo robots and do not carry over to
Brax versions of the same robots: datasets made here store their own measured random and
expert returns in their metadata (``ref_min_score``, ``ref_max_score``), which
:func:`normalized_score` uses when given the metadata.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

# (random, expert) returns of the D4RL MuJoCo locomotion tasks, every dataset quality of each.
D4RL_REFERENCE_RETURNS: dict[str, tuple[float, float]] = {
    "halfcheetah": (-280.178953, 12135.0),
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
}


def reference_returns(env_name: str, metadata: Mapping[str, Any] | None = None) -> tuple[float, float]:
    """``(random, expert)`` returns for ``env_name``.

    A dataset's own ``ref_min_score`` / ``ref_max_score`` in ``metadata`` win; otherwise
    ``env_name`` must be a D4RL MuJoCo task: ``hopper``, ``halfcheetah``, ``walker2d``, a D4RL
    dataset name such as ``hopper-medium-v2``, a Minari id such as ``mujoco/hopper/medium-v0``
    or a gymnasium id such as ``Hopper-v5``.
    """
    if metadata is not None and "ref_min_score" in metadata and "ref_max_score" in metadata:
        low, high = float(metadata["ref_min_score"]), float(metadata["ref_max_score"])
    else:
        robot = env_name.lower().removeprefix("mujoco/").split("/")[0].split("-")[0]  # also Minari's mujoco/<robot>/..
        if robot not in D4RL_REFERENCE_RETURNS:
            raise KeyError(
                f"{env_name!r}: no reference returns; D4RL knows {sorted(D4RL_REFERENCE_RETURNS)}, "
                "and a generated dataset stores ref_min_score / ref_max_score in its metadata"
            )
        low, high = D4RL_REFERENCE_RETURNS[robot]
    if not high > low:
        raise ValueError(f"{env_name!r}: expert reference return {high} must exceed the random one {low}")
    return low, high


def normalized_score(env_name: str, returns: Any, metadata: Mapping[str, Any] | None = None) -> np.ndarray:
    """D4RL normalised score of undiscounted episode ``returns`` (any shape), float64."""
    low, high = reference_returns(env_name, metadata)
    return 100.0 * (np.asarray(returns, np.float64) - low) / (high - low)
