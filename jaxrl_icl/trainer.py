"""The shape every training algorithm takes: an ``init`` and a one-update ``update``.

``make_train(config, env)`` in each algorithm returns a :class:`Trainer`. Calling it,
``trainer(key, env_params) -> (final_state, outputs)``, runs the whole training as one
``lax.scan`` (jittable, vmappable over seeds and tasks). The chunked runner in
:func:`jaxrl_icl.run.loop.train_in_chunks` uses ``init`` and ``update`` directly to scan a few updates at
a time, report progress and checkpoint in between, with bitwise the same result.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax


@dataclasses.dataclass(frozen=True)
class Trainer:
    """A training algorithm as pure functions.

    Attributes:
      init: ``(key, env_params) -> state``; ``state`` is a pytree holding everything
        (network params, optimiser state, env state, RNG key).
      update: ``state -> (state, metrics)``; one update, ``metrics`` a dict of arrays
        (scalars per update, or arrays such as per-step learning histories).
      num_updates: how many ``update`` calls make a full run.
      env_steps_per_update: environment steps consumed by one ``update`` (for x-axes
        and steps/s).
    """

    init: Callable[[jax.Array, Any], Any]
    update: Callable[[Any], tuple[Any, dict[str, jax.Array]]]
    num_updates: int
    env_steps_per_update: int

    def __call__(self, key: jax.Array, env_params: Any) -> tuple[Any, dict[str, jax.Array]]:
        """Run all updates in one scan: ``(final_state, metrics[num_updates, ...])``."""
        state = self.init(key, env_params)
        return jax.lax.scan(lambda s, _: self.update(s), state, None, self.num_updates)
