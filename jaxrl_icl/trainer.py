"""The shape every training algorithm takes: an ``init`` and a one-update ``update``.

``make_train(config, env)`` in each algorithm returns a :class:`Trainer`. Calling it,
``trainer(key, data) -> (final_state, outputs)``, runs the whole training as one
``lax.scan`` (jittable, vmappable over seeds and tasks). The chunked runner in
:func:`jaxrl_icl.run.loop.train_in_chunks` uses ``init`` and ``update`` directly to scan a few updates at
a time, report progress and checkpoint in between, with bitwise the same result.

``data`` is what a run trains on, passed to ``init`` and to every ``update``: the env params
of an RL task (or of a batch of tasks), the learning histories or dataset of supervised and
offline training (None when a trainer draws its data inside the step, as DPT does). Training
data is always this argument, never a constant closed over by ``make_train``: a closed-over
array is embedded in the compiled program (gigabytes of constants and long compiles at
paper scale), whereas an argument stays one device buffer shared by all seeds and is not
copied into the state or its checkpoints. RL trainers copy their (small) env params into the
state at ``init`` and read them there, so a curriculum can swap the tasks in the state.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax


@dataclasses.dataclass(frozen=True)
class Trainer:
    """A training algorithm as pure functions.

    Attributes:
      init: ``(key, data) -> state``; ``state`` is a pytree holding everything that
        changes during training (network params, optimiser state, env state, RNG key).
      update: ``(state, data) -> (state, metrics)``; one update, ``metrics`` a dict of
        arrays (scalars per update, or arrays such as per-step learning histories).
      num_updates: how many ``update`` calls make a full run.
      env_steps_per_update: environment steps consumed by one ``update`` (for x-axes
        and steps/s).
    """

    init: Callable[[jax.Array, Any], Any]
    update: Callable[[Any, Any], tuple[Any, dict[str, jax.Array]]]
    num_updates: int
    env_steps_per_update: int

    def __call__(self, key: jax.Array, data: Any) -> tuple[Any, dict[str, jax.Array]]:
        """Run all updates in one scan: ``(final_state, metrics[num_updates, ...])``."""
        state = self.init(key, data)
        return jax.lax.scan(lambda s, _: self.update(s, data), state, None, self.num_updates)
