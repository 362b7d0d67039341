"""Order-chaos critical lines of tanh, erf and ReLU networks in the (sigma_w2, sigma_b2) plane.

Each line is where ``chi_1 = sigma_w2 E[phi'(sqrt(q*) z)^2] = 1``, from
:func:`meanfield.critical_sigma_w2` in 64-bit (Poole et al. 2016;
Schoenholz et al. 2017). Left of a line its networks are ordered, right of it
chaotic. Known end points at sigma_b2 = 0 (open circles): tanh at
sigma_w2 = 1 (phi'(0) = 1), erf at pi/4 (phi'(0)^2 = 4/pi), ReLU at 2 for
sigma_b2 = 0 only: there chi_1 = sigma_w2 / 2 (Cho & Saul 2009 arc-cosine
kernel), and for sigma_b2 > 0 the length q* is finite only below
sigma_w2 = 2, where chi_1 < 1, so ReLU networks are ordered or explode
(dashed: chi_1 = 1 with q* = inf). The sigma_b2 grid is geometric, since the
tanh and erf lines leave their end points steeply.
Axes are oriented as in the phase diagram (sigma_w2 across, sigma_b2 up).
"""

from __future__ import annotations

import math
import pathlib

import jax
import numpy as np
import xarray as xr

import meanfield
from figures import _common

ACTIVATIONS = ("tanh", "erf", "relu")
SIGMA_B2_RANGE = (0.0, 0.5)
#: Critical sigma_w2 at sigma_b2 = 0, from phi'(0): 1 / phi'(0)^2 (ReLU: 1 / E[phi'^2] = 2).
KNOWN_AT_ZERO_BIAS = {"tanh": 1.0, "erf": math.pi / 4, "relu": 2.0}


def compute(*, n: int) -> xr.Dataset:
  """The critical sigma_w2 of each activation on ``n`` values of sigma_b2."""
  sigma_b2 = np.concatenate([[0.0], np.geomspace(1e-7, SIGMA_B2_RANGE[1], n - 1)])
  lines = []
  with jax.enable_x64(True):
    for name in ACTIVATIONS:
      # One Network per activation, its sigma_b2 the axis; the line is its critical sigma_w2.
      net = meanfield.Network(activation=name, sigma_b2=sigma_b2)
      lines.append(np.asarray(meanfield.critical_sigma_w2(net)))
  return xr.Dataset(
      {"critical_sigma_w2": (("activation", "sigma_b2"), np.stack(lines))},
      coords={"activation": list(ACTIVATIONS), "sigma_b2": sigma_b2},
  )


def draw(ds: xr.Dataset):
  fig, ax = _common.subplots(figsize=(5.6, 4.2))
  b = ds["sigma_b2"].values
  for name in ACTIVATIONS:
    color = _common.ACTIVATION_COLORS[name]
    if name == "relu":  # a single point: the line exists only at sigma_b2 = 0
      ax.plot(ds["critical_sigma_w2"].sel(activation=name), b, "o", color=color, ms=9,
              clip_on=False, zorder=4, label=r"relu (critical only at $\sigma_b^2 = 0$)")
    else:
      ax.plot(ds["critical_sigma_w2"].sel(activation=name), b, color=color, lw=2, label=name)
    ax.plot(KNOWN_AT_ZERO_BIAS[name], 0.0, "o", mfc="w", mec=color, ms=6, clip_on=False, zorder=5)
  ax.axvline(KNOWN_AT_ZERO_BIAS["relu"], color=_common.ACTIVATION_COLORS["relu"], ls="--", lw=1.2,
             label=r"relu $\chi_1 = \sigma_w^2/2 = 1$, $q^* = \infty$")
  ax.plot([], [], "o", mfc="w", mec="0.3", label=r"known at $\sigma_b^2 = 0$")
  ax.set_xlim(0.5, 3.0)
  ax.set_ylim(*SIGMA_B2_RANGE)
  ax.set_xlabel(_common.LABELS["sigma_w2"])
  ax.set_ylabel(_common.LABELS["sigma_b2"])
  text = dict(fontsize=12, fontweight="bold", ha="center", va="center", transform=ax.transAxes)
  ax.text(0.12, 0.55, "ordered", color=_common.PHASE_COLORS["ordered"], **text)
  ax.text(0.9, 0.55, "chaotic", color=_common.PHASE_COLORS["chaotic"], **text)
  ax.set_title(r"critical lines $\chi_1 = 1$ (ordered to the left, chaotic to the right)")
  ax.legend(loc="upper left", bbox_to_anchor=(0.02, 0.98))
  return fig


SECONDS = 6   # measured: default settings, 2-core CPU, one figure at a time


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  """Write ``critical_lines.png`` and ``critical_lines.nc``."""
  ds = compute(n=401 if paper else 101)
  return _common.save(draw(ds), ds, pathlib.Path(outdir) / "critical_lines")
