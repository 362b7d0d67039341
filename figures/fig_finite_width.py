"""Finite width: the spread of q^L across networks against depth/width, theory and measurement.

For one input and random MLPs of widths 16 to 1024 (ReLU with He weights
and no biases; tanh at the critical point ``sigma_w2 = 1.7610``,
``sigma_b2 = 0.05``), against ``beta = l / N`` (layer over width):

- top: ``Var[log q^l]`` across networks. Mean-field theory says 0 (every
  network has ``q^l`` equal to the map's value); the finite-width theory
  (:func:`meanfield.finite_width_q`, lines) says it grows like ``5 beta``
  for ReLU (Hanin & Nica 2019; exact log moments here) and saturates for
  tanh, whose length map forgets fluctuations (its slope at ``q*`` is below
  1). Points: measured with :func:`empirical.sweep` (error bars: one
  standard error of a sample variance, ``sqrt((k - 1) / n)`` with the
  measured kurtosis ``k``).
- bottom: the median over networks of ``q^l`` divided by mean-field's
  ``q^l``: the finite-width median (log-normal,
  :func:`meanfield.finite_width.finite_width_quantiles`) against the measured one. A
  median-of-seeds plot leaves mean-field theory once ``beta`` is a few
  per cent (ReLU: median about ``exp(-5 beta / 2)`` of the mean).

For ReLU the curves of all widths fall on one line in ``beta``: depth over
width, not depth, sets the size of finite-width effects.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import xarray as xr

import empirical
import meanfield
from meanfield.finite_width import finite_width_quantiles
from figures import _common

#: width -> (largest depth swept, seeds); one sweep per width gives every layer.
PLAN = {16: (32, 256), 64: (64, 192), 256: (96, 96), 1024: (24, 24)}
PAPER_PLAN = {16: (32, 2048), 64: (64, 1024), 256: (256, 512), 1024: (256, 128)}
SETTINGS = {"relu": (2.0, 0.0), "tanh": (1.761, 0.05)}
COLORS = {16: "#b2182b", 64: "#ef8a62", 256: "#67a9cf", 1024: "#2166ac"}


def compute(plan: dict[int, tuple[int, int]] = PLAN, progress: bool = False) -> xr.Dataset:
  """Measured and predicted ``Var[log q^l]`` and median ratio, dims ``activation, width, layer``."""
  acts, widths = list(SETTINGS), list(plan)
  n_layers = max(d for d, _ in plan.values())
  shape = (len(acts), len(widths), n_layers)
  out = {k: np.full(shape, np.nan) for k in ("var_log_q", "var_log_q_error", "median_ratio",
                                            "theory_var_log_q", "theory_median_ratio")}
  for i, act in enumerate(acts):
    sw, sb = SETTINGS[act]
    for j, width in enumerate(widths):
      depth, seeds = plan[width]
      net = meanfield.Network(activation=act, sigma_w2=sw, sigma_b2=sb, width=width,
                              depth=depth)
      ds = empirical.sweep(jax.random.key(width), network=net, n_seeds=seeds, n_inputs=1,
                           in_features=width, q_input=1.0, progress=progress)
      q = ds.q.transpose("seed", "layer").values.astype(np.float64)
      # a ReLU network whose units all switch off (probability 2^-N per layer) is dead,
      # q = 0 from there on; the theory conditions on living networks, so do we
      alive = np.all(np.isfinite(q) & (q > 0), axis=1)
      logq = np.log(q[alive])
      var = logq.var(0, ddof=1)
      kurt = np.mean((logq - logq.mean(0)) ** 4, 0) / logq.var(0) ** 2
      seeds = int(alive.sum())
      with jax.enable_x64(True):
        fw = meanfield.finite_width_q(net, q_input=float(ds.q_input))
        median = np.asarray(finite_width_quantiles(fw, 0.5)[0])
        mean_field = np.asarray(fw.mean_field)
      out["var_log_q"][i, j, :depth] = var
      out["var_log_q_error"][i, j, :depth] = var * np.sqrt((kurt - 1) / seeds)
      out["median_ratio"][i, j, :depth] = np.exp(np.median(logq, 0)) / mean_field
      out["theory_var_log_q"][i, j, :depth] = np.asarray(fw.log_var)
      out["theory_median_ratio"][i, j, :depth] = median / mean_field
  dims = ("activation", "width", "layer")
  ds = xr.Dataset({k: (dims, v) for k, v in out.items()},
                  coords={"activation": acts, "width": widths,
                          "layer": np.arange(1, n_layers + 1)})
  ds["seeds"] = ("width", [plan[w][1] for w in widths])
  ds.attrs = {"settings": str(SETTINGS), "input": "one input, q_input = 1"}
  return ds


def _points(n_layers: int) -> np.ndarray:
  """Layer indices (0-based) spaced evenly on a log axis, to keep the points readable."""
  return np.unique(np.geomspace(1, n_layers, 10).round().astype(int)) - 1


def draw(ds: xr.Dataset):
  fig, axes = _common.subplots(2, 2, figsize=(9.5, 7.2), sharex=True, height_ratios=(1.3, 1.0))
  for j, act in enumerate(ds.activation.values):
    top, bottom = axes[0, j], axes[1, j]
    top.set_xscale("log")
    top.set_yscale("log")
    for width in ds.width.values:
      sel = ds.sel(activation=act, width=width)
      ok = np.isfinite(sel.theory_var_log_q.values)
      beta = ds.layer.values[ok] / width
      color = COLORS.get(int(width), "k")
      top.plot(beta, sel.theory_var_log_q.values[ok], color=color, lw=1.4,
               label=f"N = {width}")
      bottom.plot(beta, sel.theory_median_ratio.values[ok], color=color, lw=1.4)
      idx = _points(int(ok.sum()))
      top.errorbar(beta[idx], sel.var_log_q.values[ok][idx],
                   yerr=sel.var_log_q_error.values[ok][idx], fmt="o", ms=3.5, color=color,
                   elinewidth=0.8, capsize=0)
      bottom.plot(beta[idx], sel.median_ratio.values[ok][idx], "o", ms=3.5, color=color)
    if act == "relu":
      grid = np.geomspace(1 / 1024, 2, 50)
      top.plot(grid, 5 * grid, color="0.4", ls=":", lw=1.1, label=r"$5\beta$ (Hanin & Nica)")
    bottom.axhline(1.0, color="0.3", ls="--", lw=1.1, label="mean-field (infinite width)")
    top.set_title(f"{act}, " + r"$\sigma_w^2 = $" + f"{SETTINGS[act][0]:g}, "
                  + r"$\sigma_b^2 = $" + f"{SETTINGS[act][1]:g}",
                  color=_common.ACTIVATION_COLORS.get(act, "k"))
    top.set_ylabel(r"$\mathrm{Var}[\log q^l]$ across networks")
    bottom.set_ylabel(r"median $q^l$ / mean-field $q^l$")
    bottom.set_xlabel(r"$\beta = l / N$ (layer / width)")
    top.legend(fontsize=8, loc="upper left")
  axes[1, 0].legend(fontsize=8, loc="lower left")
  fig.suptitle("Finite width: lines finite-width theory (meanfield.finite_width_q), "
               "points measured networks", fontsize=11)
  return fig


SECONDS = 49   # measured: default settings, 2-core CPU, one figure at a time


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  """Write ``finite_width.png`` and ``finite_width.nc``."""
  ds = compute(PAPER_PLAN if paper else PLAN, progress=progress)
  return _common.save(draw(ds), ds, pathlib.Path(outdir) / "finite_width")
