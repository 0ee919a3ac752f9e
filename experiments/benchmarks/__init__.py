"""Benchmark suites run by ``python -m experiments.bench <suite>``."""
