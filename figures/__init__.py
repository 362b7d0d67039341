"""Figures: one module per figure; ``python -m figures`` makes them all.

Adding a figure
---------------
Write a module ``figures/fig_<name>.py`` (the figure is then called
``<name>``). Its docstring's first line is the figure's one-line title. It
defines::

    SECONDS = 40   # default settings' run time on a 2-core CPU, as measured

    def make(outdir: pathlib.Path, *, paper: bool = False,
             progress: bool = True) -> list[pathlib.Path]:
      ...

``make`` computes the figure's data, draws it, and writes a PNG with its data
beside it (same stem) into ``outdir`` with :func:`figures._common.save`, and
returns the paths it wrote. A module that writes several PNGs names their
stems in a module-level ``OUTPUTS`` tuple, so ``--only`` finds it by any of
them. ``progress`` says whether to show the figure's own progress bars (pass
it to ``empirical.sweep``/``train``/...); the runner passes ``False`` under
``--quiet``. ``SECONDS`` is the measured run time of the default settings on a
2-core CPU: the runner prints every figure's estimate before it starts and
weights its progress bar by them (``PAPER_SECONDS`` likewise for
``--paper``, if stated). All figures together must finish within 10 minutes
on a 2-core CPU; ``paper=True`` selects paper-scale settings (finer grids,
more seeds). ``make`` is pure apart from the files it writes: it flips no global
flags (use ``with jax.enable_x64(True):`` inside it for 64-bit) and builds its
figures with :func:`figures._common.subplots` (no pyplot state). The runner
calls it inside the house style (:func:`figures._common.style`).

Running figures
---------------
``python -m figures`` runs every ``fig_*`` module in this package and writes
into ``build/figures/`` (ignored by git, so the checkout stays clean);
``--gallery`` writes into ``figures/output/`` instead, the committed README
gallery, refreshed on purpose; ``--jobs N`` makes N figures at a time, each
in its own process (default: the cores, at most 2); ``--only NAME`` runs a
subset, ``--paper`` uses paper-scale settings, ``--out DIR`` writes
elsewhere. A failing figure is reported and the others still run; the exit
status is non-zero if any failed. From Python,
``figures.__main__.run(modules, outdir=...)`` does the same (the runner lives
in :mod:`figures.__main__`; this package imports nothing on purpose).
"""
