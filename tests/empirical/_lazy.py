"""Sweeps run the first time a test asks for them (the default tier asks for one)."""

from __future__ import annotations

from collections.abc import Callable

import xarray as xr

import empirical


class LazySweeps(dict):
  """``sweeps[name]`` is ``(ds, empirical.theory(ds))`` for ``ds = makers[name]()``, run once."""

  def __init__(self, makers: dict[str, Callable[[], xr.Dataset]]):
    super().__init__()
    self.makers = makers

  def __missing__(self, name: str):
    ds = self.makers[name]()
    self[name] = ds, empirical.theory(ds)
    return self[name]
