"""Reference implementations used only by the benchmarks in :mod:`experiments.benchmarks`."""
