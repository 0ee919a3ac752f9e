"""experiments.bench end to end at tiny sizes: run directory, bench.json rows, bench.md and chart per suite."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from experiments import bench
from experiments.benchmarks import report


def _run(suite, flags, tmp_path):
    run = tmp_path / suite
    bench.main([suite, *flags, "--run-dir", str(run)])
    rows = json.loads((run / "bench.json").read_text())
    assert json.loads((run / "config.json").read_text())["experiment"] == f"bench-{suite}"
    assert (run / "bench.md").read_text().count(f"| {suite} |") == len(rows)
    for row in rows:
        _check_row(row, suite)
    return rows


def _check_row(row, suite):
    assert tuple(row) == report.ROW_KEYS and row["suite"] == suite
    if row["unit"] == "return":  # an episode return may be 0 (DPT after 3 updates)
        assert math.isfinite(row["ours"]) and row["ours"] >= 0 and row["reference"] >= 0, row
        return
    assert _positive_finite(row["ours"]), row
    if row["reference"] is None:
        assert row["ratio"] is None
    else:  # ratio > 1 means ours is better: faster throughput, or less time
        assert _positive_finite(row["reference"]) and _positive_finite(row["ratio"])
        lower_is_better = row["unit"] in ("s", "nats", "x", "B")
        better = row["reference"] / row["ours"] if lower_is_better else row["ours"] / row["reference"]
        assert row["ratio"] == pytest.approx(better), row


def _positive_finite(x):
    return isinstance(x, float) and math.isfinite(x) and x > 0


# The PPO and curriculum suites compile a training program of ours and one of the reference's
# (45 and 28 s on 2 CPU cores): slow suite, like test_all_suites_at_tiny_sizes_without_brax
# below that runs every suite; the default suite checks the report through `bench all`.
@pytest.mark.slow
def test_ppo_suite(tmp_path, capsys):
    # 3 seeds under a 1024-step cap: per-seed steps shrink to one 512-step rollout
    rows = _run("ppo", ["--num-seeds", "3", "--total-timesteps", "1024", "--max-total-steps", "1024",
                        "--repeats", "1", "--whole-seeds", "0"], tmp_path)
    assert [(r["case"].split(":")[0], r["unit"]) for r in rows[:2]] == [("3 seeds x 512 steps", "steps/s"),
                                                                        ("3 seeds x 512 steps", "s")]
    assert "| ppo | 3 seeds x 512 steps: training" in capsys.readouterr().out
    assert (tmp_path / "ppo" / "ppo.png").stat().st_size > 0


def test_ppo_suite_rejects_bad_seed_counts(tmp_path):
    with pytest.raises(SystemExit):
        bench.main(["ppo", "--num-seeds", "0", "--run-dir", str(tmp_path / "bad")])
    assert not (tmp_path / "bad" / "bench.json").exists()


@pytest.mark.slow
def test_curriculum_suite(tmp_path):
    rows = _run("curriculum", ["--num-seeds", "1", "2", "--num-updates", "24", "--fit-rate", "12",
                               "--max-k", "3", "--repeats", "1", "--host-loop-seeds", "2"], tmp_path)
    speeds = [r for r in rows if r["unit"] == "updates/s"]
    assert [r["case"].split(" x ")[0] for r in speeds] == ["1 seeds", "2 seeds"]
    assert all("(2 refits" in r["case"] for r in speeds)
    host = [r for r in rows if r["case"].startswith("host loop, 2 seeds")]
    assert [r["unit"] for r in host] == ["s", "ms"] and all(r["ours"] > 0 for r in host)
    with pytest.raises(SystemExit):  # fewer rounds than one refit
        bench.main(["curriculum", "--num-updates", "5", "--fit-rate", "10", "--run-dir", str(tmp_path / "bad")])


@pytest.mark.slow
def test_icl_suite(tmp_path):
    rows = _run("icl", ["--context-lengths", "8", "--recompute-steps", "2", "--train-tokens", "16",
                        "--num-tasks", "1", "2", "--vmap-context", "8", "--width", "8", "--num-layers", "1",
                        "--num-heads", "1", "--repeats", "1", "--backbone-context", "8",
                        "--backbones", "sink_kv", "--attention-chunk", "3"], tmp_path)  # T2MIR compiles for
    # seconds: covered by icl tests
    chunked = "training, 2 x 8 tokens, attention in chunks of 3 rows, vs all rows at once"
    assert [r["case"] for r in rows if r["unit"] == "tokens/s"] == [
        "cached rollout, context 8, vs recomputing it every step", "training, 2 x 8 tokens",
        "cached rollout x1 tasks (vmap), context 8", "cached rollout x2 tasks (vmap), context 8, vs x1", chunked,
        *(f"backbone Sink-KV: {what}, vs dense" for what in ("training, 2 x 8 tokens", "cached rollout, context 8"))]
    backbone = [r for r in rows if r["case"].startswith("backbone") and r["unit"] == "tokens/s"]
    assert all(r["ours"] > 0 and r["reference"] > 0 for r in backbone)
    memory = next(r for r in rows if r["case"] == f"{chunked}: temporary memory")
    assert memory["unit"] == "B" and memory["ours"] > 0 and memory["reference"] > 0
    with pytest.raises(SystemExit):
        bench.main(["icl", "--backbones", "switch", "--run-dir", str(tmp_path / "bad")])


def test_dpt_paper_skips_on_cpu(tmp_path, capsys):
    rows = json.loads(json.dumps(bench.run_suite("dpt-paper", bench.SUITES["dpt-paper"][1](), None)))
    assert len(rows) == 1 and rows[0]["case"].startswith("skipped: needs a GPU") and rows[0]["ours"] is None
    assert "dpt-paper: skipped: needs a GPU" in capsys.readouterr().out


@pytest.mark.slow
def test_dpt_paper_runs_at_toy_size(tmp_path):
    rows = _run("dpt-paper", ["--num-updates", "3", "--batch-size", "2", "--trials", "1", "--online-episodes", "2",
                              "--allow-cpu"], tmp_path)
    returns = [r for r in rows if r["unit"] == "return"]
    assert len(returns) == 4 and returns[2]["reference"] == 61.5  # the paper's offline figure
    # the exact posterior's online returns do not depend on DPT's training; here it must beat 3 updates
    assert returns[0]["reference"] > returns[0]["ours"]


# Tiny sizes of every suite for `bench all`.
TINY = {
    "envs": ["--num-envs", "4", "--num-steps", "5", "--repeats", "1"],
    "ppo": ["--num-seeds", "1", "--total-timesteps", "512", "--repeats", "1", "--whole-seeds", "0"],
    "dp": ["--num-states", "6", "--num-atoms", "5", "--num-iterations", "1", "--batch-size", "2",
           "--batch-states", "3", "--stock-states", "3", "--stock-horizon", "2", "--repeats", "1"],
    "curriculum": ["--num-seeds", "1", "--num-updates", "8", "--fit-rate", "8", "--max-k", "2", "--repeats", "1",
                   "--host-loop-seeds", "0"],
    "icl": ["--context-lengths", "8", "--recompute-steps", "2", "--train-tokens", "8", "--num-tasks", "1",
            "--vmap-context", "8", "--width", "8", "--num-layers", "1", "--num-heads", "1", "--repeats", "1",
            "--backbone-context", "8", "--backbones", "sink_kv"],
    "icl-torch": ["--num-tasks", "2", "--eval-episodes", "1", "--train-updates", "1", "--repeats", "1"],
    "dpt-paper": [],
    "offline": ["--algos", "td3_bc", "dt", "--num-seeds", "1", "--dataset-size", "3000", "--max-total-updates", "8",
                "--repeats", "1", "--peak-size", "64", "--dt-episodes", "1", "--dt-steps", "5"],
}


def _bench_all_in_fresh_interpreter(suites, run_dir):
    """Run ``bench all`` on ``suites`` at tiny sizes in a new interpreter; ``(stdout, heavy modules
    it loaded)``."""
    flags = [f"--{s}.{flag[2:]}" if flag.startswith("--") else flag for s in suites for flag in TINY[s]]
    argv = ["all", "--suites", *suites, "--run-dir", str(run_dir), *flags]
    code = ("import sys\nfrom experiments import bench\n"
            f"bench.main({argv!r})\n"
            "print('LOADED', [m for m in ('brax', 'mujoco', 'mujoco_mjx', 'rlax', 'distrax') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return out, out.rsplit("LOADED", 1)[1].strip()


@pytest.mark.slow
def test_all_runs_suites_into_one_report_without_brax(tmp_path):
    """``bench all`` over the envs and dp suites (their rows checked here) and two that skip on a CPU."""
    run = tmp_path / "all"
    out, loaded = _bench_all_in_fresh_interpreter(["envs", "dp", "icl-torch", "dpt-paper"], run)
    assert loaded == "[]"  # the pure-JAX suites need neither Brax nor MuJoCo (nor rlax, distrax)
    rows = json.loads((run / "bench.json").read_text())
    suites = [r["suite"] for r in rows]
    # every suite's rows end with its wall time
    assert suites[:15] == ["envs"] * 15 and suites[15:22] == ["dp"] * 7 and suites[-1] == "dpt-paper"
    assert [rows[i]["case"] for i in (14, 21, -1)] == ["whole suite: wall time"] * 3
    for row in rows[:22]:
        _check_row(row, row["suite"])
    assert rows[-2]["case"].startswith("skipped: needs a GPU")
    # envs: steps/s and first-call seconds of every own env, CartPole the reference
    envs_rows = rows[:14]
    assert [r["unit"] for r in envs_rows[:2]] == ["steps/s", "s"] and envs_rows[0]["case"].startswith("darkroom-9x9")
    assert len({r["reference"] for r in envs_rows if r["unit"] == "steps/s"}) == 1
    # dp: value iteration against NumPy, a batch of MDPs, stock augmentation against C=8
    vi, batch, *stock = rows[15:21]
    assert vi["unit"] == "it/s" and "vs NumPy" in vi["case"]
    assert batch["unit"] == "MDP-it/s" and "2 MDPs" in batch["case"]
    assert [r["case"].split(", ")[1] for r in stock] == ["C=8", "C=16 vs C=8", "C=32 vs C=8", "C=64 vs C=8"]
    assert stock[0]["reference"] is None and {r["reference"] for r in stock[1:]} == {stock[0]["ours"]}
    if _no_torch():
        assert suites[22:] == ["icl-torch"] * 2 + ["dpt-paper"] * 2
        assert rows[22]["case"].startswith("skipped: the PyTorch")
    md = (run / "bench.md").read_text()
    assert md.count("\n| envs |") == 15 and md in out
    assert (run / "envs.png").exists() and (run / "dp.png").exists() and not (run / "dpt-paper.png").exists()
    assert json.loads((run / "config.json").read_text())["config"]["envs"]["num_envs"] == 4


@pytest.mark.slow
def test_all_suites_at_tiny_sizes_without_brax(tmp_path):
    out, loaded = _bench_all_in_fresh_interpreter(list(bench.SUITES), tmp_path / "all")
    assert loaded == "[]"
    rows = json.loads((tmp_path / "all" / "bench.json").read_text())
    assert [s for s in bench.SUITES if s not in {r["suite"] for r in rows}] == []
    assert not any(r["case"].startswith("failed") for r in rows)


def test_importing_bench_loads_no_brax():
    code = ("import sys, experiments.bench\n"
            "print([m for m in ('brax', 'mujoco', 'torch', 'sklearn', 'rlax', 'distrax') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _no_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        return True
    return False


def test_help_of_bench_and_every_suite(capsys):
    bench.main(["--help"])
    out = capsys.readouterr().out
    assert all(f"  {suite} " in out for suite in bench.SUITES)
    for suite in ("all", *bench.SUITES):
        with pytest.raises(SystemExit) as exit_info:
            bench.main([suite, "--help"])
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        assert "--run-dir" in out and ("--dpt-paper.allow-cpu" in out if suite == "all" else "--seed" in out)


def test_unknown_suite_is_a_clear_error():
    with pytest.raises(SystemExit, match="usage: python -m experiments.bench .*got 'nope'"):
        bench.main(["nope"])
    with pytest.raises(SystemExit):
        bench.main(["all", "--suites", "envs", "nope"])


def test_markdown_table_formats_rows():
    rows = [report.row("x", "a | b", 2e6, 1e6, "steps/s"), report.row("x", "t", 2.0, 1.0, "s", lower_is_better=True),
            report.note_row("y", "skipped: no GPU")]
    rows += [report.row("z", "zero", 0.0, 0.0, "return"), report.row("z", "nan", float("nan"), 2.0, "nats")]
    assert rows[3]["ratio"] is None  # 0 / 0
    assert rows[4]["case"] == "nan (ours: nan)" and rows[4]["ours"] is None and rows[4]["ratio"] is None
    json.dumps(rows, allow_nan=False)  # bench.json can hold every row
    lines = report.markdown_table(rows).splitlines()
    assert lines[2].startswith("| x | a / b | 2,000,000 | 1,000,000 | 2.00x | steps/s |")
    assert lines[3].startswith("| x | t | 2 | 1 | 0.50x | s |")
    assert lines[4].startswith("| y | skipped: no GPU | - | - | - |  |")


def test_a_broken_chart_keeps_the_rows(monkeypatch, tmp_path, capsys):
    from jaxrl_icl.run.rundir import RunDir

    module = bench.SUITES["envs"][0]
    measured = [report.row("envs", "x", 2.0, 1.0, "steps/s")]
    monkeypatch.setattr(module, "run", lambda cfg: list(measured))
    monkeypatch.setattr(module, "plot", lambda rows, path: 1 / 0)
    rows = bench.run_suite("envs", None, RunDir(tmp_path, "bench-envs"))
    assert rows[0] == measured[0] and rows[1]["case"] == "chart failed: ZeroDivisionError: division by zero"
    assert "ZeroDivisionError" in capsys.readouterr().err


def test_bench_all_config_holds_every_suites_config():
    import dataclasses

    fields = {f.name: f.type for f in dataclasses.fields(bench.BenchAllConfig)}
    assert fields.pop("suites") and set(fields) == {s.replace("-", "_") for s in bench.SUITES}
    config = bench.BenchAllConfig()
    assert all(isinstance(config.suite_config(s), cls) for s, (_, cls) in bench.SUITES.items())
