"""Config dataclasses without the run layer: :class:`ConfigError`, validators, field helpers,
type checks and the dict round trip.

Library modules validate their configs with these (``require_positive(self, "lr")`` in
``__post_init__``), so importing a loss function never loads the CLI, orbax or matplotlib.
Only the standard library is imported here. The CLI generated from these dataclasses lives in
:mod:`jaxrl_icl.run.config`; run directories store :func:`config_to_dict` in ``config.json``.

Each config is a frozen dataclass whose fields are ``int``, ``float``, ``str``, ``bool``,
``Literal[...]``, tuples of those (``tuple[int, ...]`` or fixed length such as
``tuple[float, float]``), or nested config dataclasses. ``__post_init__`` validates with the
``require_*`` helpers, which raise :class:`ConfigError` with a message starting with the
field name.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Sequence
from typing import Any, Literal


class ConfigError(ValueError):
    """Invalid config value; ``str(err)`` starts with the field name, e.g. ``"lr: must be > 0"``."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field_name = field_name
        self.message = message


def field(default: Any, *, help: str) -> Any:  # noqa: A002 - mirrors argparse's keyword
    """A dataclass field with a default and CLI help text (``metadata={"help": help}``)."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("config defaults must be immutable: use a tuple")
    return dataclasses.field(default=default, metadata={"help": help})


# ----------------------------------------------------------------------------- validation


def require_positive(cfg: Any, name: str) -> None:
    """``cfg.<name> > 0`` or ConfigError."""
    value = getattr(cfg, name)
    if not value > 0:
        raise ConfigError(name, f"must be > 0, got {value!r}")


def require_nonnegative(cfg: Any, name: str) -> None:
    """``cfg.<name> >= 0`` or ConfigError."""
    value = getattr(cfg, name)
    if not value >= 0:
        raise ConfigError(name, f"must be >= 0, got {value!r}")


def require_in(cfg: Any, name: str, low: float, high: float) -> None:
    """``low <= cfg.<name> <= high`` (closed interval) or ConfigError."""
    value = getattr(cfg, name)
    if not low <= value <= high:
        raise ConfigError(name, f"must be in [{low}, {high}], got {value!r}")


def require_divides(cfg: Any, name: str, dividend: str | int) -> None:
    """``cfg.<name>`` divides ``dividend`` (another field's name, or an int) or ConfigError."""
    divisor = getattr(cfg, name)
    total = getattr(cfg, dividend) if isinstance(dividend, str) else dividend
    label = f"{dividend}={total}" if isinstance(dividend, str) else str(total)
    if divisor <= 0 or total % divisor:
        raise ConfigError(name, f"must be a positive divisor of {label}, got {divisor!r}")


def require_choices(cfg: Any, name: str, allowed: Sequence[str]) -> None:
    """``cfg.<name>`` is a non-empty tuple of distinct entries of ``allowed``, or ConfigError."""
    chosen = tuple(getattr(cfg, name))
    unknown = [c for c in chosen if c not in allowed]
    if not chosen or unknown or len(set(chosen)) != len(chosen):
        why = f"unknown {unknown}" if unknown else "empty" if not chosen else "repeats an entry"
        raise ConfigError(name, f"must name distinct entries of {', '.join(allowed)}; got {list(chosen)} ({why})")


def require_types(cfg: Any) -> None:
    """Every field of ``cfg`` matches its annotation (int is not bool, Literal members, tuples).

    Call from ``__post_init__`` so configs built in code are checked like CLI/JSON ones.
    """
    hints = config_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        _convert(hints[f.name], getattr(cfg, f.name), f.name, strict=True)


# ----------------------------------------------------------------------------- types


def config_type_hints(cls: type) -> dict[str, Any]:
    """Resolved field annotations of a config dataclass type (TypeError for anything else)."""
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        raise TypeError(f"{cls!r} is not a dataclass type")
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a tuple of {_type_name(args[0])}"
        return f"a tuple of {len(args)} ({', '.join(_type_name(a) for a in args)})"
    return {int: "an integer", float: "a number", str: "a string", bool: "a bool"}.get(tp, str(tp))


def _tuple_items(tp: Any, n: int) -> list[Any] | None:
    """Element types of a tuple annotation for ``n`` items (None if ``n`` does not fit)."""
    args = typing.get_args(tp)
    if len(args) == 2 and args[1] is Ellipsis:
        return [args[0]] * n
    return list(args) if len(args) == n else None


def _convert(tp: Any, value: Any, name: str, *, strict: bool) -> Any:
    """Check/convert a JSON-like ``value`` to annotation ``tp``; ConfigError naming ``name``.

    ``strict`` (objects built in code) wants tuples and nested dataclass instances;
    otherwise (JSON) lists and dicts are accepted and converted.
    """
    origin = typing.get_origin(tp)
    bad = ConfigError(name, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if not any(value == a and type(value) is type(a) for a in typing.get_args(tp)):
            raise bad
        return value
    if origin is tuple:
        if not isinstance(value, tuple if strict else (tuple, list)):
            raise bad
        items = _tuple_items(tp, len(value))
        if items is None:
            raise bad
        return tuple(
            _convert(t, v, f"{name}[{i}]", strict=strict)
            for i, (t, v) in enumerate(zip(items, value))
        )
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if strict or not isinstance(value, dict):
            raise bad
        return _from_dict(tp, value, prefix=f"{name}.")
    if tp is bool or tp is str:
        if type(value) is not tp:
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if not math.isfinite(value):
            raise ConfigError(name, f"must be finite, got {value!r}")
        return value if strict else float(value)
    raise TypeError(f"{name}: unsupported config field type {tp!r}")


# ----------------------------------------------------------------------------- dict / JSON


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """JSON-able dict of a config (tuples become lists, nested configs become dicts)."""

    def encode(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple):
            return [encode(v) for v in value]
        return value

    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise TypeError(f"expected a config dataclass instance, got {cfg!r}")
    return encode(cfg)


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Inverse of :func:`config_to_dict`; exact round trip.

    Raises ConfigError naming unknown or missing keys and values of the wrong type, and
    whatever the config's own validation raises.
    """
    return _from_dict(cls, data, prefix="")


def _from_dict(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        name = prefix.rstrip(".") or cls.__name__
        raise ConfigError(name, f"expected a JSON object, got {data!r}")
    hints = config_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in hints]
    missing = [k for k in names if k not in data]
    if unknown:
        raise ConfigError(", ".join(prefix + k for k in unknown), f"unknown key for {cls.__name__}")
    if missing:
        raise ConfigError(", ".join(prefix + k for k in missing), f"missing key for {cls.__name__}")
    values = {k: _convert(hints[k], data[k], prefix + k, strict=False) for k in names}
    try:
        return cls(**values)
    except ConfigError as err:
        raise ConfigError(prefix + err.field_name, err.message) from None
