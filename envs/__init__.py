"""Pure-JAX environments with the gymnax >= 1.0 API.

Every environment subclasses ``gymnax.environments.environment.Environment``:
``reset(key, params) -> (obs, state)`` and
``step(key, state, action, params) -> (obs, state, reward, terminated, truncated, info)``
with auto-reset inside ``step``. A task is an ``EnvParams`` value, so ``jax.vmap`` over
params runs many tasks at once; each family's ``sample_params(key)`` draws a task.

``make(name, **overrides) -> (env, params)`` builds any registered environment::

    env, params = envs.make("darkroom-9x9", goal=jnp.array([2, 7]))
    env, params = envs.make("gymnax:CartPole-v1")
    env, params = envs.make("brax:inverted_pendulum")
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

__all__ = ["make", "registered_envs", "register"]

# name -> zero-argument factory returning (env, default_params). Imports are lazy so that
# `import envs` stays cheap (Brax pulls in MuJoCo).
_REGISTRY: dict[str, Callable[[], tuple[Any, Any]]] = {}


def register(name: str, factory: Callable[[], tuple[Any, Any]]) -> None:
    """Register ``factory() -> (env, default_params)`` under ``name``."""
    _REGISTRY[name] = factory


def registered_envs() -> list[str]:
    """Names accepted by :func:`make` (prefix families ``gymnax:<id>`` and ``brax:<name>`` too)."""
    return sorted(_REGISTRY) + ["gymnax:<id>", "brax:<name>"]


def _apply_overrides(name: str, params: Any, overrides: dict[str, Any]) -> Any:
    if not overrides:
        return params
    fields = {f.name for f in dataclasses.fields(params)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(
            f"make({name!r}): unknown override(s) {unknown}; "
            f"{type(params).__name__} fields are {sorted(fields)}"
        )
    return params.replace(**overrides)


def make(name: str, **overrides: Any) -> tuple[Any, Any]:
    """Build environment ``name`` and its default params with ``overrides`` applied.

    Raises ``ValueError`` naming the known environments for an unknown name, naming the
    field for an override that the params dataclass does not have, and naming the field
    for a value the environment rejects (``env.validate_params``, where it has one: a goal
    outside the grid, probabilities that do not sum to one, ...).
    """
    if name.startswith("gymnax:"):
        from envs.gymnax_adapter import make_gymnax

        env, params = make_gymnax(name.removeprefix("gymnax:"))
    elif name.startswith("brax:"):
        try:  # Brax (and MuJoCo) are imported only here: the optional `brax` extra
            from envs.brax_adapter import make_brax
        except ModuleNotFoundError as err:
            raise ModuleNotFoundError(f"make({name!r}): Brax environments need brax ({err}): "
                                      "pip install -e '.[brax]'", name=err.name) from err

        env, params = make_brax(name.removeprefix("brax:"))
    elif name in _REGISTRY:
        env, params = _REGISTRY[name]()
    else:
        raise ValueError(f"unknown environment {name!r}; known: {', '.join(registered_envs())}")
    params = _apply_overrides(name, params, overrides)
    validate = getattr(env, "validate_params", None)
    if validate is not None:
        try:
            validate(params)
        except ValueError as err:
            raise ValueError(f"make({name!r}): {err}") from None
    return env, params


def _lazy(module: str, factory: str, *args: Any, **kwargs: Any) -> Callable[[], tuple[Any, Any]]:
    def build() -> tuple[Any, Any]:
        import importlib

        return getattr(importlib.import_module(module), factory)(*args, **kwargs)

    return build


register("darkroom-9x9", _lazy("envs.darkroom", "make_darkroom", "9x9"))
register("darkroom-10x10", _lazy("envs.darkroom", "make_darkroom", "10x10"))
register("key-to-door-9x9", _lazy("envs.darkroom", "make_key_to_door"))
register("bandit-bernoulli", _lazy("envs.bandits", "make_bandit", "bernoulli"))
register("bandit-gaussian", _lazy("envs.bandits", "make_bandit", "gaussian"))
register("bandit-linear", _lazy("envs.bandits", "make_linear_bandit"))
register("tabular-random", _lazy("envs.tabular", "make_random_mdp"))
register("cliffwalk", _lazy("envs.cliffwalk", "make_cliffwalk"))
register("cartpole-task-pool", _lazy("envs.task_pool_cartpole", "make_task_pool_cartpole"))
register("cartpole-task-pool-fixed-length", _lazy("envs.task_pool_cartpole", "make_task_pool_cartpole", True))
