"""Benchmarks: ``python -m experiments.bench {all,<suite>} [flags] [--run-dir DIR]``.

Every speed target of the project is shown by one suite here, which measures our code and
its reference side by side in the same process. Every suite reports the same rows
(:mod:`experiments.benchmarks.report`: ``suite, case, ours, reference, ratio, unit,
device``, ratio > 1 meaning ours is better), writes them to ``bench.json`` and as a Markdown
table to ``bench.md`` in its run directory (with ``config.json``, ``versions.json`` and a
chart per suite), and prints the table.

``all`` runs every suite at its default size, one after the other, into one run directory
(``--<suite>.<flag>`` sets a suite's flag, ``--suites`` picks some); a suite that fails is
reported and the others still run (exit status 1 at the end). With a GPU,
``pip install -e ".[cuda]" && python -m experiments.bench all`` is the whole device check.

Suites:
  envs        random-policy steps/s of every own environment vs gymnax CartPole-v1
  ppo         PPO training steps/s on CartPole-v1, 1/16/256 seeds, vs a PureJaxRL-design reference;
              and whole-process seconds of python -m experiments.ppo vs that design's script
  dp          distributional value iteration it/s vs vectorised NumPy; a batch of 64 MDPs; stock-grid cost
  curriculum  ALP-GMM teacher updates/s, 1 and 64 seeds, vs a scikit-learn host implementation
  icl         KV-cached in-context rollouts vs recomputing the context; training tokens/s
  icl-torch   AD training tokens/s and evaluation env steps/s vs eager PyTorch (needs torch: .[bench-ref])
  dpt-paper   DPT on Dark Room at the paper's 100k updates vs the exact posterior and the paper (GPU only)
  offline     TD3+BC and IQL updates/s, 1/16/64 seeds, vs a JAX-CORL-design reference; matmul FLOP/s vs peak

A suite that cannot run here (no GPU, PyTorch or scikit-learn missing) is skipped: its row
says why, and the run goes on.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import traceback

from experiments.benchmarks import curriculum, dp, dpt_paper, icl, icl_torch, offline, ppo, report
from experiments.benchmarks import envs as envs_suite
from jaxrl_icl.config import field, require_choices
from jaxrl_icl.run.config import parse_cli
from jaxrl_icl.run.rundir import RunDir

PROG = "python -m experiments.bench"

# suite -> (module, config class); the order of `all`
SUITES = {
    "envs": (envs_suite, envs_suite.EnvBenchConfig),
    "ppo": (ppo, ppo.PPOBenchConfig),
    "dp": (dp, dp.DPBenchConfig),
    "curriculum": (curriculum, curriculum.CurriculumBenchConfig),
    "icl": (icl, icl.ICLBenchConfig),
    "icl-torch": (icl_torch, icl_torch.ICLTorchBenchConfig),
    "dpt-paper": (dpt_paper, dpt_paper.DPTPaperBenchConfig),
    "offline": (offline, offline.OfflineBenchConfig),
}


@dataclasses.dataclass(frozen=True)
class BenchAllConfig:
    """Every benchmark suite at its default size, one table (suite flags as --<suite>.<flag>)."""

    suites: tuple[str, ...] = field(tuple(SUITES), help="suites to run, in this order")
    envs: envs_suite.EnvBenchConfig = envs_suite.EnvBenchConfig()
    ppo: ppo.PPOBenchConfig = ppo.PPOBenchConfig()
    dp: dp.DPBenchConfig = dp.DPBenchConfig()
    curriculum: curriculum.CurriculumBenchConfig = curriculum.CurriculumBenchConfig()
    icl: icl.ICLBenchConfig = icl.ICLBenchConfig()
    icl_torch: icl_torch.ICLTorchBenchConfig = icl_torch.ICLTorchBenchConfig()
    dpt_paper: dpt_paper.DPTPaperBenchConfig = dpt_paper.DPTPaperBenchConfig()
    offline: offline.OfflineBenchConfig = offline.OfflineBenchConfig()

    def __post_init__(self) -> None:
        require_choices(self, "suites", tuple(SUITES))

    def suite_config(self, suite: str):
        return getattr(self, suite.replace("-", "_"))


def run_suite(suite: str, config, run: RunDir) -> list[dict]:
    """Run one suite into ``run``'s directory: its rows (one skipped row if it cannot run here)
    and its chart ``<suite>.png`` (a chart that fails to draw is a row; the numbers are kept)."""
    module, _ = SUITES[suite]
    try:
        rows = module.run(config)
    except report.Skipped as why:
        print(f"{suite}: skipped: {why}", flush=True)
        return [report.note_row(suite, f"skipped: {why}")]
    try:
        module.plot(rows, run.plot_path(suite))
    except Exception as err:  # noqa: BLE001 - measured numbers outlive a broken chart
        traceback.print_exc()
        rows.append(report.note_row(suite, f"chart failed: {type(err).__name__}: {err}"))
    return rows


def run_all(config: BenchAllConfig, run: RunDir) -> list[str]:
    """Run ``config.suites`` one after the other, rewriting the report after each; each suite's
    rows end with its wall time. Returns the suites that failed (their error is printed and
    recorded as a row)."""
    rows, failed = [], []
    for suite in config.suites:
        print(f"--- {suite}", flush=True)
        t0 = time.perf_counter()
        try:
            suite_rows = run_suite(suite, config.suite_config(suite), run)
        except Exception as err:  # noqa: BLE001 - one broken suite must not hide the others' results
            traceback.print_exc()
            failed.append(suite)
            suite_rows = [report.note_row(suite, f"failed: {type(err).__name__}: {err}")]
        seconds = time.perf_counter() - t0
        rows += suite_rows + [report.row(suite, "whole suite: wall time", seconds, None, "s")]
        print(f"{suite}: {seconds:.0f} s", flush=True)
        report.write_report(rows, run.path, "python -m experiments.bench all")
    return failed


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return
    if not argv or argv[0] not in (*SUITES, "all"):
        given = repr(argv[0]) if argv else "nothing"
        sys.exit(f"usage: {PROG} {{all,{','.join(SUITES)}}} [flags]  (--help lists the suites); got {given}")
    suite, rest = argv[0], argv[1:]
    config_cls = BenchAllConfig if suite == "all" else SUITES[suite][1]
    config, options = parse_cli(config_cls, rest, prog=f"{PROG} {suite}")
    if options.resume is not None:
        sys.exit("--resume: benchmarks are not resumable; run them again")
    run = RunDir.create(f"bench-{suite}", config, path=options.run_dir)
    t0 = time.perf_counter()
    if suite == "all":
        failed = run_all(config, run)
    else:
        failed = []
        report.write_report(run_suite(suite, config, run), run.path, f"{PROG} {suite}")
    print((run.path / "bench.md").read_text())
    print(f"{time.perf_counter() - t0:.0f} s; run directory: {run.path}")
    if failed:
        sys.exit(f"failed suites: {', '.join(failed)} (see the errors above and bench.md)")


if __name__ == "__main__":
    main()
