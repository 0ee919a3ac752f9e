"""Benchmark suites run by ``python -m experiments.bench <suite>`` (and all of them by ``all``).

A suite is a module here with a frozen config dataclass (its CLI), ``run(config) -> rows``
(:func:`experiments.benchmarks.report.row` for each measurement; raise
:class:`~experiments.benchmarks.report.Skipped` where it cannot run) and ``plot(rows, path)``.
Adding one (the offline algorithms' next): import it in :mod:`experiments.bench`, add it to
``SUITES`` and its config as a field of ``BenchAllConfig`` (named as the suite, ``-`` as ``_``).
"""
