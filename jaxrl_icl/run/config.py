"""Experiment configs: frozen dataclasses, validation helpers, a generated CLI, dict round trip.

Each experiment defines one frozen dataclass whose fields are ``int``, ``float``, ``str``,
``bool``, ``Literal[...]``, tuples of those (``tuple[int, ...]`` or fixed length such as
``tuple[float, float]``), or nested config dataclasses. ``__post_init__`` validates with the
``require_*`` helpers, which raise :class:`ConfigError` with a message starting with the
field name::

    @dataclasses.dataclass(frozen=True)
    class PPOConfig:
        \"\"\"PPO on one environment.

        Attributes:
          lr: Adam learning rate.
        \"\"\"

        lr: float = 2.5e-4
        num_envs: int = 8
        num_minibatches: int = field(4, help="minibatches per epoch")

        def __post_init__(self):
            require_positive(self, "lr")
            require_divides(self, "num_minibatches", "num_envs")

    config, options = parse_cli(PPOConfig)  # --lr 1e-3 --num-envs 16 --resume DIR ...

:func:`config_to_dict` / :func:`config_from_dict` are the JSON form that
:mod:`jaxrl_icl.run.rundir` stores in ``config.json`` and ``--resume`` reads back.
"""

from __future__ import annotations

import argparse
import dataclasses
import decimal
import math
import re
import sys
import typing
from pathlib import Path
from typing import Any, Literal

_SCALARS = (int, float, str, bool)
_RUN_FLAGS = ("run_dir", "resume", "progress", "no_progress", "help")


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


def require_types(cfg: Any) -> None:
    """Every field of ``cfg`` matches its annotation (int is not bool, Literal members, tuples).

    Call from ``__post_init__`` so configs built in code are checked like CLI/JSON ones.
    """
    hints = _type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        _convert(hints[f.name], getattr(cfg, f.name), f.name, strict=True)


# ----------------------------------------------------------------------------- types


def _type_hints(cls: type) -> dict[str, Any]:
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
    hints = _type_hints(cls)
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


# ----------------------------------------------------------------------------- CLI


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """Run-level options shared by every experiment (not part of the config).

    Attributes:
      run_dir: where to write; None means ``runs/<experiment>/<timestamp>/``.
      resume: directory of a stopped run to continue (its ``config.json`` is the config;
        the run keeps writing there).
      progress: show a progress bar.
    """

    run_dir: Path | None = None
    resume: Path | None = None
    progress: bool = True


@dataclasses.dataclass(frozen=True)
class _Flag:
    path: tuple[str, ...]  # field names from the top config down to this field
    tp: Any
    default: Any  # dataclasses.MISSING when required
    help: str

    @property
    def name(self) -> str:
        return ".".join(self.path)

    @property
    def option(self) -> str:
        return "--" + ".".join(p.replace("_", "-") for p in self.path)


def _docstring_help(cls: type) -> dict[str, str]:
    """``name: text`` entries of a Google-style ``Attributes:`` docstring section."""
    help_text: dict[str, str] = {}
    lines = (cls.__doc__ or "").expandtabs().splitlines()
    header = next((i for i, line in enumerate(lines) if line.strip() == "Attributes:"), None)
    if header is None:
        return help_text
    section_indent = len(lines[header]) - len(lines[header].lstrip())
    entry_indent = current = None
    for line in lines[header + 1 :]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= section_indent:
            break
        match = re.match(r"\s*(\w+)(?:\s*\(.*?\))?:\s*(.*)$", line)
        if match and indent == (entry_indent or indent):
            entry_indent, current = indent, match.group(1)
            help_text[current] = match.group(2)
        elif current is not None:
            help_text[current] += " " + line.strip()
    return help_text


def _default(f: dataclasses.Field) -> Any:
    """A field's default value, or ``dataclasses.MISSING``."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _flags(cls: type, prefix: tuple[str, ...] = (), base: Any = None) -> list[_Flag]:
    """The CLI flags of ``cls``; defaults come from ``base`` (the enclosing config's default
    instance of ``cls``, so ``optim: OptimConfig = OptimConfig(num_updates=4000)`` shows 4000)."""
    hints = _type_hints(cls)
    doc = _docstring_help(cls)
    flags: list[_Flag] = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        default = getattr(base, f.name) if base is not None else _default(f)
        if dataclasses.is_dataclass(tp):
            sub_base = default if default is not dataclasses.MISSING else None
            flags.extend(_flags(tp, prefix + (f.name,), sub_base))
            continue
        if not prefix and f.name in _RUN_FLAGS:
            raise TypeError(f"{f.name}: config field name clashes with a run-level flag")
        _check_cli_type(tp, f.name)
        help_text = f.metadata.get("help", doc.get(f.name, ""))
        flags.append(_Flag(prefix + (f.name,), tp, default, help_text))
    return flags


def _check_cli_type(tp: Any, name: str) -> None:
    origin = typing.get_origin(tp)
    if origin is Literal:
        kinds = {type(a) for a in typing.get_args(tp)}
        if len(kinds) != 1 or not kinds <= {int, str}:
            raise TypeError(f"{name}: Literal choices must all be str or all be int, got {tp!r}")
    elif origin is tuple:
        items = set(typing.get_args(tp)) - {Ellipsis}
        if len(items) != 1 or not items <= {int, float, str}:
            raise TypeError(f"{name}: tuple items must be all int, float or str, got {tp!r}")
    elif tp not in _SCALARS:
        raise TypeError(f"{name}: unsupported config field type {tp!r}")


def _parse_int(text: str) -> int:
    """``"1e6"``, ``"5e5"``, ``"1_000"``, ``"-3"`` -> int; non-integral values are rejected."""
    try:
        return int(text, 10)
    except ValueError:
        pass
    number = None
    if re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text):
        number = decimal.Decimal(text)
    if number is None or number != number.to_integral_value():
        raise ValueError(f"expected an integer, got {text!r}")
    return int(number)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"must be finite, got {text!r}")
    return value


_PARSERS = {int: _parse_int, float: _parse_float, str: str}


def _arg_type(parse: Any, name: str) -> Any:
    """argparse ``type=`` callable whose errors name the config field."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"{name}: {err}") from None

    convert.__name__ = name  # argparse shows this in "invalid <name> value" messages
    return convert


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value) or "(empty)"
    return str(value)


def _add_flag(parser: argparse.ArgumentParser, flag: _Flag) -> None:
    origin = typing.get_origin(flag.tp)
    kwargs: dict[str, Any] = {"dest": flag.name, "default": argparse.SUPPRESS}
    if flag.tp is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif origin is Literal:
        choices = typing.get_args(flag.tp)
        kwargs.update(type=_arg_type(_PARSERS[type(choices[0])], flag.name), choices=choices)
    elif origin is tuple:
        args = typing.get_args(flag.tp)
        variadic = len(args) == 2 and args[1] is Ellipsis
        kwargs["type"] = _arg_type(_PARSERS[args[0]], flag.name)
        kwargs["nargs"] = "*" if variadic else len(args)
        kwargs["metavar"] = args[0].__name__.upper()
    else:
        kwargs["type"] = _arg_type(_PARSERS[flag.tp], flag.name)
        kwargs["metavar"] = flag.tp.__name__.upper()
    shown = "required" if flag.default is dataclasses.MISSING else f"default: {_show(flag.default)}"
    kwargs["help"] = f"{flag.help} ({shown})".strip().replace("%", "%%")
    parser.add_argument(flag.option, **kwargs)


def _build(values: dict[str, Any], cls: type, prefix: tuple[str, ...], base: Any) -> Any:
    """Construct ``cls`` from CLI ``values`` (keyed by dotted name) over ``base`` (or defaults)."""
    hints = _type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        name = ".".join(prefix + (f.name,))
        if dataclasses.is_dataclass(hints[f.name]):
            sub_base = getattr(base, f.name) if base is not None else _default(f)
            if sub_base is dataclasses.MISSING:
                sub_base = None
            kwargs[f.name] = _build(values, hints[f.name], prefix + (f.name,), sub_base)
        elif name in values:
            kwargs[f.name] = tuple(values[name]) if isinstance(values[name], list) else values[name]
        elif base is not None:
            kwargs[f.name] = getattr(base, f.name)
        elif _default(f) is dataclasses.MISSING:
            raise ConfigError(name, "required, no default")
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise ConfigError(".".join(prefix + (err.field_name,)), err.message) from None


def cli_error(prog: str, message: str) -> typing.NoReturn:
    """Exit like argparse does on a bad flag: ``<prog>: error: <message>`` on stderr, status 2.

    For checks that need more than the config (an environment an algorithm cannot run on),
    made after :func:`parse_cli` but before any compute or file is written.
    """
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def parse_cli(
    config_cls: type, argv: list[str] | None = None, *, prog: str | None = None
) -> tuple[Any, RunOptions]:
    """Parse command-line flags into ``(config, RunOptions)``.

    Every config field ``some_field`` becomes ``--some-field`` (nested config ``ppo.lr``
    becomes ``--ppo.lr``); bools are ``--flag/--no-flag``; ints accept ``1e6`` and
    ``1_000``; tuples take space-separated values. Run-level flags: ``--run-dir PATH``,
    ``--resume DIR`` (the config is read from ``DIR/config.json``; config flags given as well
    must agree with it) and ``--no-progress``.

    Any invalid value, unknown flag, validation failure or resume conflict prints an
    argparse-style message naming the flag and exits with status 2 (``SystemExit``).
    """
    doc = (config_cls.__doc__ or "").strip().split("\n\n")[0]
    parser = argparse.ArgumentParser(prog=prog, description=doc, allow_abbrev=False)
    flags = _flags(config_cls)
    run = parser.add_argument_group("run options")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--run-dir", type=Path, metavar="PATH", help="output directory "
                       "(default: runs/<experiment>/<timestamp>/)")
    where.add_argument("--resume", type=Path, metavar="DIR", help="continue the stopped run in DIR")
    run.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    group = parser.add_argument_group("config")
    for flag in flags:
        _add_flag(group, flag)
    namespace = vars(parser.parse_args(argv))
    options = RunOptions(
        namespace.pop("run_dir"), namespace.pop("resume"), namespace.pop("progress")
    )
    by_name = {flag.name: flag for flag in flags}
    if options.resume is None:
        try:
            return _build(namespace, config_cls, (), None), options
        except ConfigError as err:
            flag = by_name.get(err.field_name)
            parser.error(f"argument {flag.option}: {err}" if flag else str(err))
    from jaxrl_icl.run.rundir import RunDir  # deferred: rundir imports this module

    try:
        _, stored = RunDir.open(options.resume, config_cls)
    except (OSError, ValueError) as err:  # ConfigError included
        parser.error(f"argument --resume: {err}")
    for name, value in namespace.items():
        given = tuple(value) if isinstance(value, list) else value
        old = stored
        for part in name.split("."):
            old = getattr(old, part)
        if given != old:
            parser.error(
                f"argument {by_name[name].option}: {name}: {given!r} conflicts with {old!r} "
                f"in {options.resume / 'config.json'} of the resumed run"
            )
    return stored, options


def flag_value(argv: list[str], flag: str) -> str | None:
    """The value ``argv`` gives ``flag`` (``"--scale"``; the last one wins), or None."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument(flag, dest="value")
    return pre.parse_known_args(argv)[0].value


def with_scale(argv: list[str] | None, presets: dict[str, list[str]]) -> list[str]:
    """``argv`` with the flags of the ``--scale NAME`` preset put in front of the user's own
    (argparse keeps the last value, so explicit flags still win); unchanged when ``NAME``
    has no preset. ``--scale`` itself stays in ``argv``: the experiment config has a
    ``scale`` field (a ``Literal``, so an unknown name is a CLI error naming ``--scale``),
    and ``config.json`` records it.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    return [*presets.get(flag_value(argv, "--scale"), []), *argv]
