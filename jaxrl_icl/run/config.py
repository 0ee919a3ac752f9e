"""The command line generated from an experiment's config dataclass.

The dataclasses themselves, their validators and the dict round trip are in the
dependency-free :mod:`jaxrl_icl.config`, which library modules use.

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

``--resume DIR`` reads the config back from the run's ``config.json``
(:mod:`jaxrl_icl.run.rundir`).
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

from jaxrl_icl.config import ConfigError, config_type_hints
from jaxrl_icl.run.rundir import RunDir, RunOptions
from jaxrl_icl.run.sweep import check_seed_count

_SCALARS = (int, float, str, bool)
_RUN_FLAGS = ("run_dir", "resume", "progress", "no_progress", "help")


# ----------------------------------------------------------------------------- CLI


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
    hints = config_type_hints(cls)
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
    hints = config_type_hints(cls)
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


def check_num_seeds(prog: str, num_seeds: int) -> None:
    """Exit like a bad flag (:func:`cli_error`, naming ``--num-seeds`` and the device count)
    unless ``num_seeds`` splits evenly over the devices the seeds are sharded across.

    For experiments that shard their seed axis (``train_in_chunks``, ``sweep_seeds``): call
    it after ``init_distributed`` (which sets the device count) and before ``open_run``, so a
    bad count leaves no run directory behind and runs no compute.
    """
    try:
        check_seed_count(num_seeds)
    except ValueError as err:
        cli_error(prog, f"argument --num-seeds: {err}")


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
