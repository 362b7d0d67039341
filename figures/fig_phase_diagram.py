"""Order-to-chaos phase diagram of tanh networks: chi_1 and c* over (sigma_w2, sigma_b2).

After Poole et al. 2016 (Fig. 2) and Schoenholz et al. 2017 (Fig. 1): the
slope ``chi_1`` of the c-map at c = 1 is below 1 in the ordered phase (all
inputs flow to the same point, c* = 1) and above 1 in the chaotic phase
(nearby inputs decorrelate, c* < 1); the critical line ``chi_1 = 1`` from
:func:`meanfield.critical_sigma_w2` separates them. Computed in 64-bit with
:func:`meanfield.phase_diagram`.
"""

from __future__ import annotations

import pathlib

import jax
import matplotlib.colors
import numpy as np
import xarray as xr

import meanfield
from figures import _common

ACTIVATION = "tanh"
SIGMA_W2_RANGE = (0.25, 4.0)
SIGMA_B2_RANGE = (0.0, 0.3)
#: The published check point: tanh is critical at sigma_w2 = 1.76 for sigma_b2 = 0.05.
SCHOENHOLZ_POINT = (1.76, 0.05)


def compute(*, n_w: int, n_b: int) -> xr.Dataset:
  """The phase diagram on an ``n_w x n_b`` grid (it holds the critical line along ``sigma_b2``)."""
  sigma_w2 = np.linspace(*SIGMA_W2_RANGE, n_w)
  sigma_b2 = np.linspace(*SIGMA_B2_RANGE, n_b)
  net = meanfield.Network(activation=ACTIVATION, sigma_w2=sigma_w2, sigma_b2=sigma_b2)
  with jax.enable_x64(True):
    ds = meanfield.phase_diagram(net)          # the outer product of the two 1-d axes
    # The line leaves (1, 0) steeply; draw it on a grid that is geometric near sigma_b2 = 0.
    line_b2 = np.concatenate([[0.0], np.geomspace(1e-7, SIGMA_B2_RANGE[1], 200)])
    line_w2 = meanfield.critical_sigma_w2(net.replace(sigma_b2=line_b2))
  return ds.assign(critical_line_sigma_w2=(("line_sigma_b2",), np.asarray(line_w2))).assign_coords(
      line_sigma_b2=line_b2).assign_attrs(activation=ACTIVATION)


def _chi_norm(chi: np.ndarray) -> matplotlib.colors.Normalize:
  """Diverging about chi_1 = 1 (white = critical), each side spanning its own range."""
  finite = chi[np.isfinite(chi)]
  return matplotlib.colors.TwoSlopeNorm(vcenter=1.0, vmin=min(float(finite.min()), 0.99),
                                        vmax=max(float(finite.max()), 1.01))


def draw(ds: xr.Dataset):
  fig, (ax_chi, ax_c) = _common.subplots(1, 2, figsize=(9.6, 3.9))
  w, b = ds["sigma_w2"].values, ds["sigma_b2"].values
  chi = ds["chi_1"].values.T  # (sigma_b2, sigma_w2) for pcolormesh
  mesh = ax_chi.pcolormesh(w, b, chi, cmap="RdBu_r", norm=_chi_norm(chi), shading="nearest",
                           rasterized=True)
  bar = fig.colorbar(mesh, ax=ax_chi)
  bar.set_label(_common.LABELS["chi_1"])
  c_star = ds["c_star"].values.T
  mesh_c = ax_c.pcolormesh(w, b, c_star, cmap="viridis", vmin=np.nanmin(c_star), vmax=1.0,
                           shading="nearest", rasterized=True)
  fig.colorbar(mesh_c, ax=ax_c).set_label(_common.LABELS["c_star"])

  for ax in (ax_chi, ax_c):
    ax.plot(ds["critical_line_sigma_w2"], ds["line_sigma_b2"], color=_common.PHASE_COLORS["critical"], lw=2,
            label=r"critical line $\chi_1 = 1$")
    ax.set_xlim(w[0], w[-1])
    ax.set_ylim(b[0], b[-1])
    ax.set_xlabel(_common.LABELS["sigma_w2"])
    ax.set_ylabel(_common.LABELS["sigma_b2"])
  text = dict(fontsize=12, fontweight="bold", ha="center", va="center",
              bbox=dict(boxstyle="round", fc="w", ec="none", alpha=0.75))
  ax_chi.text(0.16, 0.5, "ordered\n" r"$\chi_1 < 1$", transform=ax_chi.transAxes,
              color=_common.PHASE_COLORS["ordered"], **text)
  ax_chi.text(0.78, 0.6, "chaotic\n" r"$\chi_1 > 1$", transform=ax_chi.transAxes,
              color=_common.PHASE_COLORS["chaotic"], **text)
  ax_c.text(0.16, 0.5, "ordered\n" r"$c^* = 1$", transform=ax_c.transAxes,
            color=_common.PHASE_COLORS["ordered"], **text)
  ax_c.text(0.78, 0.6, "chaotic\n" r"$c^* < 1$", transform=ax_c.transAxes,
            color=_common.PHASE_COLORS["chaotic"], **text)
  ax_chi.plot(*SCHOENHOLZ_POINT, "o", mfc="none", mec="k", ms=7,
              label=r"$\sigma_w^2 = 1.76$ at $\sigma_b^2 = 0.05$ (Schoenholz et al. 2017)")
  ax_chi.legend(loc="upper left", frameon=True, framealpha=0.85, edgecolor="none", fontsize=8)
  ax_chi.set_title(r"$\chi_1$: slope of the $c$-map at $c = 1$ (tanh)")
  ax_c.set_title(r"$c^*$: correlation fixed point (tanh)")
  return fig


SECONDS = 18   # measured: default settings, 2-core CPU, one figure at a time


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  """Write ``phase_diagram.png`` and ``phase_diagram.nc`` (the grid and the critical line)."""
  ds = compute(n_w=256, n_b=256) if paper else compute(n_w=121, n_b=81)
  return _common.save(draw(ds), ds, pathlib.Path(outdir) / "phase_diagram")
