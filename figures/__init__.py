"""Figures: one module per figure; ``python -m figures`` makes them all.

Adding a figure
---------------
Write a module ``figures/fig_<name>.py`` (the figure is then called
``<name>``). Its docstring's first line is the figure's one-line title. It
defines::

    def make(outdir: pathlib.Path, *, paper: bool = False) -> list[pathlib.Path]:
      ...

``make`` computes the figure's data, draws it, and writes a PNG with its data
beside it (same stem) into ``outdir`` with :func:`figures._common.save`, and
returns the paths it wrote. A module that writes several PNGs names their
stems in a module-level ``OUTPUTS`` tuple, so ``--only`` finds it by any of
them. Defaults must finish in about a minute on a
laptop CPU; ``paper=True`` selects paper-scale settings (finer grids, more
seeds). ``make`` is pure apart from the files it writes: it flips no global
flags (use ``with jax.enable_x64(True):`` inside it for 64-bit) and builds its
figures with :func:`figures._common.subplots` (no pyplot state). The runner
calls it inside the house style (:func:`figures._common.style`).

Running figures
---------------
``python -m figures`` runs every ``fig_*`` module in this package and writes
into ``figures/output/`` (the README gallery, committed); ``--only NAME``
runs a subset, ``--paper`` uses paper-scale settings, ``--out DIR`` writes
elsewhere. A failing figure is reported and the others still run; the exit
status is non-zero if any failed. From Python,
``figures.__main__.run(modules, outdir=...)`` does the same (the runner lives
in :mod:`figures.__main__`; this package imports nothing on purpose).
"""
