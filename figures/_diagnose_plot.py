"""The figure of :func:`empirical.diagnose` results: ``q``, ``J^{l0,l}`` with the
verdict's fit, ``|dL/dh|`` and the input-output singular values, by layer.

Plotting lives here, out of the measurement package: :mod:`empirical` imports
no matplotlib. :func:`diagnose_figure` draws into a new ``Figure`` (no pyplot
state) or into four given Axes (as :mod:`figures.fig_diagnose` does).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr

from empirical.diagnosis import verdict

_COLORS = ("#1a1a1a", "#b2182b", "#2166ac", "#1b9e77", "#7570b3")
_MARKERS = {"dense": "o", "conv": "s", "residual": "D", "module": "^"}


def diagnose_figure(results: xr.Dataset | Mapping[str, xr.Dataset], *, axes=None,
                    title: str | None = None):
  """A ``matplotlib.figure.Figure`` of :func:`empirical.diagnose` results (no pyplot state).

  Args:
    results: one Dataset, or ``{label: Dataset}`` to overlay (say one model at
      two initialisations), each in its own colour.
    axes: four matplotlib Axes to draw into (a new figure if None).
    title: the figure's title (default: the verdict of a single result).

  Panels: ``q^l`` and ``|dL/dh^l|`` against the layer (order of computation),
  the partial Jacobian ``J^{l0,l}`` with the verdict's fit (dashed), and a
  histogram of the input-output singular values (or ``c^l`` where they were
  not computed). Faint lines: seeds; bold: geometric mean over seeds;
  markers: the layer's kind.
  """
  from matplotlib.figure import Figure

  if isinstance(results, xr.Dataset):
    results = {"": results}
  if axes is None:
    fig = Figure(figsize=(10, 6.6), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
  axes = list(np.ravel(axes))
  fig = axes[0].figure
  has_sv = all("singular_values" in ds for ds in results.values())
  if has_sv:  # one set of bins for every result, so their histograms compare
    logs = {label: _log_singular_values(ds) for label, ds in results.items()}
    every = np.concatenate(list(logs.values()))
    edges = np.histogram_bin_edges(every, bins=30) if every.size else 30
  for (label, ds), color in zip(results.items(), _COLORS):
    _layer_panel(axes[0], ds, "q", color, label, log=True)
    _layer_panel(axes[1], ds, "partial_jacobian", color, label, log=True)
    _fit_line(axes[1], ds, color)
    _layer_panel(axes[2], ds, "grad_h", color, label, log=True)
    if has_sv:
      axes[3].hist(logs[label], bins=edges, color=color, alpha=0.35, histtype="stepfilled",
                   edgecolor=color, label=label or None)
    else:
      _layer_panel(axes[3], ds, "c", color, label, log=False)
  labels = [r"$q^l = \langle (h_i^l)^2 \rangle$",
            r"$\mathcal{J}^{l_0,l} = \frac{1}{N_l}\,\|\partial h^l/\partial h^{l_0}\|_F^2$",
            r"$\|\partial \mathcal{L}_a/\partial h^l_a\|$ (rms over inputs)", r"$c^l$"]
  first = next(iter(results.values()))
  # Layer names as ticks only where every result has the same layers (one model).
  same = all(np.array_equal(ds["name"].values, first["name"].values) for ds in results.values())
  for ax, label in zip(axes, labels):
    ax.set_ylabel(label)
    ax.set_xlabel(r"layer $l$ (order of computation)")
    if same and len(first["layer"]) <= 24 and not (has_sv and ax is axes[3]):
      ax.set_xticks(first["layer"].values, first["name"].values, rotation=70, fontsize=6)
  if has_sv:
    axes[3].set_xlabel(r"$\log_{10} \sigma$, singular values of $\partial y_0/\partial x_0$")
    axes[3].set_ylabel("count (all seeds)")
  kinds = dict.fromkeys(k for ds in results.values() for k in ds["kind"].values)
  _kind_legend(axes[0], list(kinds))
  # One legend for the models and the kinds of layers, below the panels (colours are
  # the same in every panel), and the fits' legend in their own panel.
  handles, names = axes[0].get_legend_handles_labels()
  fig.legend(handles, names, loc="outside lower center", ncol=min(len(names), 4), fontsize=7,
             frameon=False)
  if axes[1].get_legend_handles_labels()[0]:
    axes[1].legend(fontsize=7, loc="best")
  if title is None and len(results) == 1:
    title = first.attrs.get("verdict", "")
  if title:
    fig.suptitle(title, fontsize=9)
  return fig


def _log_singular_values(ds) -> np.ndarray:
  """log10 of the finite positive singular values of one result, flattened."""
  sv = ds["singular_values"].values
  return np.log10(sv[np.isfinite(sv) & (sv > 0)])


def _layer_panel(ax, ds, name, color, label, *, log):
  """One line per kind of layer (the residual stream, the dense layers, ...), so that
  layers of one kind are compared along the depth; seeds faint, their mean bold."""
  values = ds[name].values
  layer = ds["layer"].values
  kinds = ds["kind"].values
  mean = _seed_mean(values, log)
  for i, kind in enumerate(dict.fromkeys(kinds)):
    sel = kinds == kind
    for row in values[:, sel]:
      ax.plot(layer[sel], row, color=color, lw=0.5, alpha=0.3)
    ax.plot(layer[sel], mean[sel], color=color, lw=1.3, marker=_MARKERS.get(kind, "v"),
            ms=3.5, mfc="white", label=(label or None) if i == 0 else None)
  if log:
    ax.set_yscale("log")


def _kind_legend(ax, kinds) -> None:
  """Legend entries (grey markers) for the kinds of layers."""
  for k in kinds:
    ax.plot([], [], _MARKERS.get(k, "v"), color="#777777", mfc="white", ls="none", label=k)


def _seed_mean(values: np.ndarray, log: bool) -> np.ndarray:
  """Mean over seeds (geometric if ``log``) of the finite values; nan where there are none."""
  with np.errstate(divide="ignore", invalid="ignore"):
    v = np.log(values) if log else values
    ok = np.isfinite(v)
    mean = np.where(ok, v, 0.0).sum(0) / ok.sum(0)
  return np.exp(mean) if log else mean


def _fit_line(ax, ds, color):
  v = verdict(ds)
  if not np.isfinite(v.slope):
    return
  fit = ds["in_fit"].values
  layer = ds["layer"].values[fit]
  with np.errstate(divide="ignore", invalid="ignore"):
    logj = np.log(ds["partial_jacobian"].values[:, fit])
  u = np.arange(len(layer), dtype=float)
  b, name = v.slope, rf"$\chi_J$ = {v.chi_J:.3g}/layer, $\xi$ = {v.depth_scale:.3g}"
  if v.law == "power":
    u, b, name = np.log1p(u), v.exponent, rf"$\propto (d+1)^{{\zeta}}$, $\zeta$ = {v.exponent:.3g}"
  a = np.nanmean(logj) - b * np.mean(u)
  ax.plot(layer, np.exp(a + b * u), "--", color=color, lw=1, label=f"{v.phase}: {name}")
