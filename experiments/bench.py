"""Benchmarks: ``python -m experiments.bench <suite> [flags]``.

Every speed target of the project is shown by one suite here, which measures our code and
its reference side by side in the same process and prints the ratios. Each run writes a
run directory (``config.json``, ``versions.json``, ``results.json`` and a bar chart) and
prints where it is.

Suites:
  envs   random-policy steps/s of every own environment vs gymnax CartPole-v1
  ppo    PPO training steps/s on CartPole-v1, 1/16/256 seeds, vs a PureJaxRL-design reference
  dp     distributional value iteration it/s vs vectorised NumPy; a batch of 64 MDPs (lax.map on CPU); stock-grid cost
  curriculum  ALP-GMM teacher updates/s, 1 and 64 seeds, vs a scikit-learn host implementation
  icl-torch   AD training tokens/s and evaluation env steps/s vs eager PyTorch (needs torch: .[bench-ref])
"""

from __future__ import annotations

import importlib
import sys

from jaxrl_icl.run.config import parse_cli
from jaxrl_icl.run.rundir import RunDir, write_json

# suite -> (module under experiments.benchmarks, config class name)
SUITES = {
    "envs": ("envs", "EnvBenchConfig"),
    "ppo": ("ppo", "PPOBenchConfig"),
    "icl": ("icl", "ICLBenchConfig"),
    "dp": ("dp", "DPBenchConfig"),
    "curriculum": ("curriculum", "CurriculumBenchConfig"),
    "icl-torch": ("icl_torch", "ICLTorchBenchConfig"),
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in SUITES:
        given = repr(argv[0]) if argv else "nothing"
        sys.exit(f"usage: python -m experiments.bench {{{','.join(SUITES)}}} [flags]; got {given}")
    suite, rest = argv[0], argv[1:]
    module_name, config_name = SUITES[suite]
    module = importlib.import_module(f"experiments.benchmarks.{module_name}")
    config, options = parse_cli(getattr(module, config_name), rest, prog=f"python -m experiments.bench {suite}")
    if options.resume is not None:
        sys.exit("--resume: benchmarks are not resumable; run them again")
    run = RunDir.create(f"bench-{suite}", config, path=options.run_dir)
    rows, table = module.run(config)
    print(table)
    write_json(run.path / "results.json", rows)
    module.plot(rows, run.plot_path(suite))
    print(f"run directory: {run.path}")


if __name__ == "__main__":
    main()
