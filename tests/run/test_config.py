"""Config dataclasses: generated CLI, validation messages, JSON round trip, resume."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxrl_icl.config import (
    ConfigError,
    config_from_dict,
    config_to_dict,
    field,
    require_choices,
    require_divides,
    require_in,
    require_nonnegative,
    require_positive,
    require_types,
)
from jaxrl_icl.run.config import parse_cli
from jaxrl_icl.run.rundir import RunDir, RunOptions


@dataclasses.dataclass(frozen=True)
class Optim:
    """Optimiser settings.

    Attributes:
      lr: Adam step size.
    """

    lr: float = 1e-3

    def __post_init__(self):
        require_types(self)
        require_positive(self, "lr")


@dataclasses.dataclass(frozen=True)
class Demo:
    """Demo experiment for the tests.

    Attributes:
      total_steps: environment steps in
        total, over all seeds.
      gamma: discount factor.
    """

    total_steps: int = 1000
    gamma: float = 0.99
    lr: float = 3e-4
    env_name: str = "darkroom"
    normalize_obs: bool = True
    algo: Literal["ppo", "dqn"] = "ppo"
    hidden_sizes: tuple[int, ...] = (64, 64)
    reward_range: tuple[float, float] = (0.0, 1.0)
    num_envs: int = 8
    num_minibatches: int = field(4, help="minibatches per epoch")
    warmup: int = 0
    optim: Optim = Optim()

    def __post_init__(self):
        require_types(self)
        require_positive(self, "lr")
        require_in(self, "gamma", 0.0, 1.0)
        require_nonnegative(self, "warmup")
        require_divides(self, "num_minibatches", "num_envs")


def _cli_error(argv, capsys, cls=Demo) -> str:
    """Run parse_cli expecting a clean usage error; returns stderr."""
    with pytest.raises(SystemExit) as exc:
        parse_cli(cls, argv, prog="demo")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "usage: demo" in err
    return err


# ----------------------------------------------------------------------------- CLI types


def test_no_flags_gives_defaults():
    cfg, options = parse_cli(Demo, [])
    assert cfg == Demo()
    assert options == RunOptions(run_dir=None, resume=None, progress=True)


def test_every_field_type_parses():
    argv = [
        "--total-steps", "2000",
        "--gamma", "0.5",
        "--lr", "1e-2",
        "--env-name", "bandit",
        "--no-normalize-obs",
        "--algo", "dqn",
        "--hidden-sizes", "32", "16", "8",
        "--reward-range", "-1.5", "2",
        "--num-envs", "12",
        "--num-minibatches", "3",
        "--warmup", "7",
        "--optim.lr", "0.25",
        "--run-dir", "out/x",
        "--no-progress",
    ]  # fmt: skip
    cfg, options = parse_cli(Demo, argv)
    assert cfg == Demo(
        total_steps=2000,
        gamma=0.5,
        lr=0.01,
        env_name="bandit",
        normalize_obs=False,
        algo="dqn",
        hidden_sizes=(32, 16, 8),
        reward_range=(-1.5, 2.0),
        num_envs=12,
        num_minibatches=3,
        warmup=7,
        optim=Optim(lr=0.25),
    )
    assert type(cfg.total_steps) is int and type(cfg.reward_range[1]) is float
    assert options == RunOptions(run_dir=Path("out/x"), resume=None, progress=False)


def test_bool_flag_both_ways_and_empty_tuple():
    assert parse_cli(Demo, ["--normalize-obs"])[0].normalize_obs is True
    assert parse_cli(Demo, ["--no-normalize-obs"])[0].normalize_obs is False
    assert parse_cli(Demo, ["--hidden-sizes"])[0].hidden_sizes == ()


@pytest.mark.parametrize(
    "text, value",
    [("1e6", 1_000_000), ("5e5", 500_000), ("1_000", 1000), ("2.5e3", 2500), ("1E2", 100),
     ("3.0", 3), ("42", 42)],
)  # fmt: skip
def test_int_accepts_integral_scientific_notation(text, value):
    cfg, _ = parse_cli(Demo, ["--total-steps", text])
    assert cfg.total_steps == value and type(cfg.total_steps) is int


@pytest.mark.parametrize("text", ["1.5", "1e-1", "abc", "1__0", "0x10", "inf", "nan", ""])
def test_int_rejects_non_integral_naming_field(text, capsys):
    err = _cli_error(["--total-steps", text], capsys)
    assert "--total-steps" in err and "total_steps: expected an integer" in err


def test_float_rejects_non_finite_and_text(capsys):
    assert "argument --gamma: gamma: must be finite" in _cli_error(["--gamma", "nan"], capsys)
    assert "argument --lr: lr: must be finite" in _cli_error(["--lr", "inf"], capsys)
    assert "argument --lr: lr:" in _cli_error(["--lr", "fast"], capsys)


def test_literal_choices_enforced(capsys):
    err = _cli_error(["--algo", "sac"], capsys)
    assert "--algo" in err and "invalid choice: 'sac'" in err


def test_fixed_length_tuple_needs_exact_count(capsys):
    assert "--reward-range: expected 2 arguments" in _cli_error(["--reward-range", "1"], capsys)


def test_help_lists_flags_help_text_and_defaults(capsys):
    with pytest.raises(SystemExit) as exc:
        parse_cli(Demo, ["--help"], prog="demo")
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping
    assert "Demo experiment for the tests." in out
    assert "--total-steps INT environment steps in total, over all seeds. (default: 1000)" in out
    assert "--num-minibatches INT minibatches per epoch (default: 4)" in out
    assert "--normalize-obs, --no-normalize-obs (default: True)" in out
    assert "--algo {ppo,dqn} (default: ppo)" in out
    assert "--hidden-sizes [INT ...] (default: 64 64)" in out
    assert "--optim.lr FLOAT Adam step size. (default: 0.001)" in out
    for flag in ("--run-dir PATH", "--resume DIR", "--no-progress"):
        assert flag in out


def test_help_shows_the_enclosing_configs_nested_default(capsys):
    """A nested config given a non-default instance shows that instance's values, as parsing uses."""

    @dataclasses.dataclass(frozen=True)
    class Outer:
        optim: Optim = Optim(lr=0.5)

    assert parse_cli(Outer, [])[0].optim.lr == 0.5
    with pytest.raises(SystemExit):
        parse_cli(Outer, ["--help"], prog="demo")
    out = " ".join(capsys.readouterr().out.split())
    assert "--optim.lr FLOAT Adam step size. (default: 0.5)" in out


# ----------------------------------------------------------------------------- validation


def test_negative_lr_names_flag(capsys):
    err = _cli_error(["--lr", "-0.001"], capsys)
    assert "argument --lr: lr: must be > 0, got -0.001" in err


def test_nested_validation_names_dotted_flag(capsys):
    err = _cli_error(["--optim.lr", "-2.0"], capsys)
    assert "argument --optim.lr: optim.lr: must be > 0, got -2.0" in err


def test_num_minibatches_not_dividing_names_both_fields(capsys):
    err = _cli_error(["--num-envs", "10", "--num-minibatches", "4"], capsys)
    assert "argument --num-minibatches: num_minibatches:" in err and "num_envs=10" in err


def test_unknown_flag(capsys):
    assert "unrecognized arguments: --bogus 3" in _cli_error(["--bogus", "3"], capsys)


def test_no_prefix_abbreviation(capsys):
    assert "unrecognized arguments: --total 5" in _cli_error(["--total", "5"], capsys)


@pytest.mark.parametrize(
    "kwargs, field_name",
    [({"lr": -1e-3}, "lr"), ({"gamma": 1.5}, "gamma"), ({"warmup": -1}, "warmup"),
     ({"num_minibatches": 3}, "num_minibatches"), ({"num_minibatches": 0}, "num_minibatches"),
     ({"total_steps": True}, "total_steps"), ({"total_steps": 2.0}, "total_steps"),
     ({"algo": "sac"}, "algo"), ({"hidden_sizes": [64]}, "hidden_sizes"),
     ({"hidden_sizes": (64, "a")}, "hidden_sizes[1]"), ({"reward_range": (0.0,)}, "reward_range"),
     ({"env_name": 3}, "env_name"), ({"optim": {"lr": 0.1}}, "optim")],
)  # fmt: skip
def test_config_error_message_starts_with_field(kwargs, field_name):
    with pytest.raises(ConfigError) as exc:
        Demo(**kwargs)
    assert str(exc.value).startswith(f"{field_name}: ")
    assert isinstance(exc.value, ValueError)


def test_require_divides_accepts_plain_int():
    @dataclasses.dataclass(frozen=True)
    class Batch:
        batch: int = 6

        def __post_init__(self):
            require_divides(self, "batch", 24)

    assert Batch(batch=8).batch == 8
    with pytest.raises(ConfigError, match=r"^batch: must be a positive divisor of 24, got 5$"):
        Batch(batch=5)


@pytest.mark.parametrize("teachers, why", [
    ((), "empty"), (("random", "riac", "random"), "repeats an entry"), (("random", "alp"), "unknown ['alp']"),
])
def test_require_choices_names_field_and_problem(teachers, why):
    @dataclasses.dataclass(frozen=True)
    class Sweep:
        teachers: tuple[str, ...] = ("random",)

        def __post_init__(self):
            require_choices(self, "teachers", ("random", "riac"))

    assert Sweep(teachers=("riac", "random")).teachers == ("riac", "random")
    with pytest.raises(ConfigError) as exc:
        Sweep(teachers=teachers)
    assert str(exc.value) == (f"teachers: must name distinct entries of random, riac; "
                              f"got {list(teachers)} ({why})")


def test_field_name_clashing_with_run_flag_is_rejected():
    @dataclasses.dataclass(frozen=True)
    class Clash:
        resume: int = 0

    with pytest.raises(TypeError, match="resume"):
        parse_cli(Clash, [])


def test_required_field_without_flag(capsys):
    @dataclasses.dataclass(frozen=True)
    class Needs:
        env_name: str

    assert parse_cli(Needs, ["--env-name", "x"])[0] == Needs("x")
    assert "argument --env-name: env_name: required" in _cli_error([], capsys, cls=Needs)


# ----------------------------------------------------------------------------- dict / JSON

_finite = st.floats(allow_nan=False, allow_infinity=False)
demo_configs = st.builds(
    Demo,
    total_steps=st.integers(-(2**70), 2**70),
    gamma=st.floats(0.0, 1.0),
    lr=st.floats(min_value=0.0, exclude_min=True, allow_infinity=False),
    env_name=st.text(),
    normalize_obs=st.booleans(),
    algo=st.sampled_from(["ppo", "dqn"]),
    hidden_sizes=st.lists(st.integers(1, 4096), max_size=4).map(tuple),
    reward_range=st.tuples(_finite, _finite),
    num_envs=st.just(12),
    num_minibatches=st.sampled_from([1, 2, 3, 4, 6, 12]),
    warmup=st.integers(0, 10**9),
    optim=st.builds(Optim, lr=st.floats(min_value=1e-300, max_value=1e300)),
)


@settings(max_examples=60, deadline=None)
@given(demo_configs)
def test_dict_json_round_trip_is_exact(cfg):
    data = json.loads(json.dumps(config_to_dict(cfg)))
    back = config_from_dict(Demo, data)
    assert back == cfg
    assert [type(getattr(back, f.name)) for f in dataclasses.fields(Demo)] == [
        type(getattr(cfg, f.name)) for f in dataclasses.fields(Demo)
    ]


def test_to_dict_is_plain_json():
    data = config_to_dict(Demo(hidden_sizes=(3,)))
    assert data["hidden_sizes"] == [3] and data["optim"] == {"lr": 1e-3}
    assert list(data) == [f.name for f in dataclasses.fields(Demo)]


def test_from_dict_int_literal_for_float_field_becomes_float():
    data = config_to_dict(Demo())
    data["gamma"] = 1
    cfg = config_from_dict(Demo, data)
    assert cfg.gamma == 1.0 and type(cfg.gamma) is float


@pytest.mark.parametrize(
    "change, field_name",
    [(lambda d: d.update(bogus=1), "bogus"),
     (lambda d: d.pop("gamma"), "gamma"),
     (lambda d: d["optim"].update(beta=0.9), "optim.beta"),
     (lambda d: d.update(total_steps=1.5), "total_steps"),
     (lambda d: d.update(normalize_obs="yes"), "normalize_obs"),
     (lambda d: d.update(hidden_sizes=[1, 2.5]), "hidden_sizes[1]"),
     (lambda d: d.update(optim={"lr": -1.0}), "optim.lr"),
     (lambda d: d.update(optim=3), "optim"),
     (lambda d: d.update(lr=math.nan), "lr"),
     (lambda d: d.update(gamma=math.inf), "gamma"),
     (lambda d: d.update(num_minibatches=5), "num_minibatches")],
)  # fmt: skip
def test_from_dict_errors_name_the_key(change, field_name):
    data = config_to_dict(Demo())
    change(data)
    with pytest.raises(ConfigError) as exc:
        config_from_dict(Demo, data)
    assert str(exc.value).startswith(f"{field_name}: ")


# ----------------------------------------------------------------------------- resume


@pytest.fixture
def stopped_run(tmp_path):
    """A run directory written by RunDir.create, as a stopped run leaves it."""
    cfg = Demo(total_steps=5000, lr=0.01, algo="dqn", hidden_sizes=(8,))
    run_dir = tmp_path / "run"
    RunDir.create("demo", cfg, path=run_dir)
    return run_dir, cfg


def test_resume_reads_stored_config(stopped_run):
    run_dir, stored = stopped_run
    cfg, options = parse_cli(Demo, ["--resume", str(run_dir)])
    assert cfg == stored and cfg != Demo()
    assert options == RunOptions(run_dir=None, resume=run_dir, progress=True)


def test_resume_with_agreeing_flags(stopped_run):
    run_dir, stored = stopped_run
    argv = ["--resume", str(run_dir), "--total-steps", "5e3", "--algo", "dqn"]
    argv += ["--hidden-sizes", "8"]
    assert parse_cli(Demo, argv)[0] == stored


def test_resume_with_conflicting_flag_errors(stopped_run, capsys):
    run_dir, _ = stopped_run
    err = _cli_error(["--resume", str(run_dir), "--lr", "0.02"], capsys)
    assert "argument --lr: lr: 0.02 conflicts with 0.01" in err
    err = _cli_error(["--resume", str(run_dir), "--optim.lr", "0.5"], capsys)
    assert "argument --optim.lr: optim.lr: 0.5 conflicts with 0.001" in err
    err = _cli_error(["--resume", str(run_dir), "--hidden-sizes", "8", "8"], capsys)
    assert "argument --hidden-sizes: hidden_sizes: (8, 8) conflicts with (8,)" in err


def test_resume_without_config_json(tmp_path, capsys):
    err = _cli_error(["--resume", str(tmp_path)], capsys)
    assert "argument --resume:" in err and str(tmp_path / "config.json") in err


def test_resume_with_stale_config_json(stopped_run, capsys):
    run_dir, _ = stopped_run
    stored = json.loads((run_dir / "config.json").read_text())
    stored["config"]["old_field"] = 1
    (run_dir / "config.json").write_text(json.dumps(stored))
    err = _cli_error(["--resume", str(run_dir)], capsys)
    assert "argument --resume: old_field: unknown key" in err


def test_resume_and_run_dir_are_exclusive(stopped_run, capsys):
    run_dir, _ = stopped_run
    err = _cli_error(["--resume", str(run_dir), "--run-dir", "elsewhere"], capsys)
    assert "not allowed with argument" in err
