"""What every figure shares: the Agg backend, the house style, notation, saving.

Figures are built on :class:`matplotlib.figure.Figure` objects made by
:func:`subplots` (no pyplot state, so nothing leaks between figures), drawn
inside :func:`style`, and written with :func:`save`, which puts the PNG and
the data it shows side by side (same stem) and writes both atomically: a
reader never sees a half-written file, and an interrupted run leaves the
previous version in place.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import Iterator, Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window

import matplotlib.figure  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from empirical import engine  # noqa: E402

__all__ = [
    "LABELS", "PHASE_COLORS", "ACTIVATION_COLORS", "STYLE", "style",
    "subplots", "save", "NETWORK_FIELDS", "network_keywords",
]

#: The fields of a meanfield.Network that the experiments take as keywords of the same names.
NETWORK_FIELDS = ("activation", "init", "width", "depth", "sigma_w2", "sigma_b2")


def network_keywords(net: Any, *swept: str) -> dict[str, Any]:
  """``net``'s :data:`NETWORK_FIELDS` as an experiment's keywords, less the ``swept`` ones.

  For a figure that runs one Network across lists of activations, inits or
  depths in one call (one compiled program): a Network holds one value of
  each, and an experiment's ``network=`` refuses a field given again as a
  keyword, so the figure passes the lists itself and the Network's other
  fields through this.
  """
  unknown = [k for k in swept if k not in NETWORK_FIELDS]
  if unknown:
    raise ValueError(f"`swept` must name fields of {NETWORK_FIELDS}, got {unknown}")
  return {k: getattr(net, k) for k in NETWORK_FIELDS if k not in swept}

#: Axis labels in the notation of docs/theory.md ("Names in code"), keyed by the code name.
LABELS: dict[str, str] = {
    "sigma_w2": r"$\sigma_w^2$",
    "sigma_b2": r"$\sigma_b^2$",
    "q": r"$q^{l}$",
    "q_next": r"$q^{l+1}$",
    "c": r"$c^{l}$",
    "c_next": r"$c^{l+1}$",
    "q_star": r"$q^*$",
    "c_star": r"$c^*$",
    "chi_1": r"$\chi_1$",
    "chi_c": r"$\chi_c$",
    "xi_q": r"$\xi_q$ [layers]",
    "xi_c": r"$\xi_c$ [layers]",
    "layer": r"layer $l$",
    "depth": r"depth $L$",
    "width": r"width $N$",
}

#: One colour per regime, matching the diverging colormap of chi_1
#: (blue below 1 = ordered, red above 1 = chaotic).
PHASE_COLORS: dict[str, str] = {
    "ordered": "#2166ac",
    "critical": "#1a1a1a",
    "chaotic": "#b2182b",
}

#: One colour per activation, so an activation looks the same in every figure.
ACTIVATION_COLORS: dict[str, str] = {
    "tanh": "#1b9e77",
    "erf": "#d95f02",
    "relu": "#7570b3",
    "hard_tanh": "#e7298a",
    "linear": "#666666",
    "leaky_relu": "#66a61e",
    "gelu": "#e6ab02",
    "silu": "#a6761d",
    "selu": "#1f78b4",
    "elu": "#b15928",
    "sigmoid": "#6a3d9a",
    "softplus": "#fb9a99",
}

#: The house style (matplotlib rcParams), applied by :func:`style`.
STYLE: dict[str, Any] = {
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 11,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "lines.linewidth": 1.6,
    "image.cmap": "RdBu_r",
    "mathtext.fontset": "cm",
}


@contextlib.contextmanager
def style() -> Iterator[None]:
  """Context in which figures are made and drawn in the house style."""
  with matplotlib.rc_context(STYLE):
    yield


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None,
             **kwargs: Any) -> tuple[matplotlib.figure.Figure, Any]:
  """A new figure with a grid of axes, like ``plt.subplots`` but without pyplot.

  Uses the constrained layout; ``figsize`` defaults to 4.2 x 3.4 inches per
  panel. Extra keyword arguments go to :meth:`Figure.subplots` (``sharex``,
  ``squeeze``, ...). Returns ``(fig, axes)``.
  """
  if figsize is None:
    figsize = (4.2 * ncols, 3.4 * nrows)
  fig = matplotlib.figure.Figure(figsize=figsize, layout="constrained")
  return fig, fig.subplots(nrows, ncols, **kwargs)


def _data_suffix(data: Any) -> str:
  if isinstance(data, (xr.Dataset, xr.DataArray)):
    return ".nc"
  if isinstance(data, Mapping):
    return ".npz"
  raise ValueError(
      "`data` must be an xarray.Dataset, an xarray.DataArray or a mapping of "
      f"name -> array, got {type(data).__name__}")


def _write_atomic(final: pathlib.Path, write) -> None:
  """Run ``write(tmp_path)`` then rename onto ``final`` (:func:`empirical.engine.atomic_path`)."""
  with engine.atomic_path(final) as tmp:
    write(pathlib.Path(tmp))


def _write_data(data: Any, path: pathlib.Path) -> None:
  if isinstance(data, xr.DataArray):
    data = data.to_dataset(name=data.name or "data")
  if isinstance(data, xr.Dataset):
    # netCDF3 (scipy engine: no extra dependency); readable by xr.open_dataset.
    data.to_netcdf(path, engine="scipy", format="NETCDF3_64BIT")
  else:
    with open(path, "wb") as f:
      np.savez(f, **{k: np.asarray(v) for k, v in data.items()})


def save(fig: matplotlib.figure.Figure, data: Any, path: str | os.PathLike) -> list[pathlib.Path]:
  """Write ``fig`` as ``<path>.png`` and ``data`` beside it, atomically.

  Args:
    fig: the finished figure.
    data: what the figure shows: an ``xarray.Dataset`` (or ``DataArray``),
      written as netCDF ``<stem>.nc``; or a mapping of name -> array, written
      as ``<stem>.npz``.
    path: where to write, with or without the ``.png`` suffix; parent
      directories are created.

  Returns:
    ``[png_path, data_path]``.
  """
  path = pathlib.Path(path)
  if path.suffix == ".png":
    path = path.with_suffix("")
  data_path = path.with_name(path.name + _data_suffix(data))
  png_path = path.with_name(path.name + ".png")
  path.parent.mkdir(parents=True, exist_ok=True)
  _write_atomic(data_path, lambda p: _write_data(data, p))
  with style():
    # No "Software" stamp, so re-running unchanged code leaves the PNG unchanged.
    _write_atomic(png_path, lambda p: fig.savefig(p, format="png", metadata={"Software": None}))
  return [png_path, data_path]
