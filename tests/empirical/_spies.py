"""Monkeypatched spies the store and resume tests share: a run killed after some chunks,
and the number of networks each measurement of ``diagnose`` runs."""

from __future__ import annotations

import empirical
from empirical import engine


def interrupting_writes(monkeypatch, after: int) -> None:
  """Make the engine's chunk writer raise once ``after`` chunks are written (a killed run)."""
  write, written = engine._write_chunk, []

  def dying(store, path, arrays):
    if len(written) == after:
      raise KeyboardInterrupt("killed")
    write(store, path, arrays)
    written.append(path)
  monkeypatch.setattr(engine, "_write_chunk", dying)


def count_measured(monkeypatch) -> list[int]:
  """Record the number of networks of every ``diagnose`` measurement from now on."""
  sizes = []
  program = empirical.diagnosis._measure_program

  def spy(*args):
    run = program(*args)
    return lambda leaves, x, keys: sizes.append(len(keys)) or run(leaves, x, keys)

  monkeypatch.setattr(empirical.diagnosis, "_measure_program", spy)
  return sizes
