"""Benchmarks: one module per timing; ``python -m benchmarks`` runs them all.

Adding a benchmark
------------------
Write a module ``benchmarks/bench_<name>.py`` (the benchmark is then called
``<name>``). Its docstring's first line is a one-line title; the rest says
what is compared and how. It defines::

    def run(*, quick: bool = False) -> benchmarks._common.Report:
      ...

``run`` builds a :class:`benchmarks._common.Report` with the helpers there:
``report.time_jitted(fn, *args, name=...)`` (compile timed apart, warm-up,
``block_until_ready``, ``timeit.repeat``; min / median / max per call),
``report.time_call(fn, name=...)`` for plain Python, ``report.compare(name,
slower, faster)`` for a ratio of two timings from the same run, and
``report.metric(name, value)`` for accuracies and sizes; ``report.params``
holds the problem size. ``quick=True`` must finish in seconds (CI smoke
test: tiny sizes, few repeats); its numbers are not meant to be quoted.
Benchmarks are scripts, never timed tests.

Running benchmarks
------------------
``python -m benchmarks`` runs every ``bench_*`` module and writes
``benchmarks/results/<device>-results.json`` and ``<device>-results.md``
(device, library versions, date, CPU count, and each benchmark's numbers);
results of benchmarks not run this time are kept. ``--only NAME`` runs a
subset, ``--quick`` the smoke-test sizes (written to
``<device>-results-quick.*`` so they never replace real numbers), ``--out
DIR`` writes elsewhere. The runner lives in :mod:`benchmarks.__main__`; this
package imports nothing on purpose.
"""
