"""Depth scales xi_c and xi_q of tanh networks against sigma_w2: xi_c diverges at the order-chaos transition.

After Schoenholz et al. 2017 (Fig. 3 and Eq. 9-10): ``1/xi_c = -log chi_c``
(``chi_c = chi_1`` in the ordered phase) is the number of layers over which
the correlation of two inputs approaches its fixed point; it diverges where
``chi_1 = 1`` (dotted line, :func:`meanfield.critical_sigma_w2`). ``xi_q``,
the depth scale of the length, stays finite there. Computed in 64-bit with
:func:`meanfield.depth_scales` on a grid that is refined around the
critical point, at several bias variances.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

import meanfield
from figures import _common

ACTIVATION = "tanh"
SIGMA_B2 = (0.01, 0.05, 0.2)
MAIN_SIGMA_B2 = 0.05  # the bias variance of Schoenholz et al. 2017 (critical sigma_w2 = 1.76)
SIGMA_W2_RANGE = (0.5, 4.0)
COLORS = ("#fdae61", "#d7191c", "#5e3c99")  # one per sigma_b2


def _grid(n: int, critical: np.ndarray) -> np.ndarray:
  """A uniform grid plus points that close in geometrically on each critical sigma_w2."""
  uniform = np.linspace(*SIGMA_W2_RANGE, n)
  offsets = np.geomspace(1e-6, 0.3, n // 5)
  near = np.concatenate([c + s * offsets for c in critical[np.isfinite(critical)] for s in (-1, 1)])
  grid = np.concatenate([uniform, near])
  return np.unique(grid[(grid >= SIGMA_W2_RANGE[0]) & (grid <= SIGMA_W2_RANGE[1])])


def compute(*, n: int) -> xr.Dataset:
  """xi_q and xi_c on a sigma_w2 grid (refined near criticality) for each sigma_b2."""
  sigma_b2 = np.asarray(SIGMA_B2)
  with jax.enable_x64(True):
    critical = np.asarray(meanfield.critical_sigma_w2(sigma_b2=jnp.asarray(sigma_b2),
                                                      activation=ACTIVATION))
    sigma_w2 = _grid(n, critical)
    grid = meanfield.Network(activation=ACTIVATION, sigma_w2=sigma_w2[:, None],
                             sigma_b2=sigma_b2[None, :])
    # One jitted program for the whole grid (much faster than eager op-by-op dispatch).
    scales = jax.jit(meanfield.depth_scales)(grid)
    xi_q, xi_c = scales.xi_q, scales.xi_c
  dims = ("sigma_w2", "sigma_b2")
  return xr.Dataset(
      {
          "xi_q": (dims, np.asarray(xi_q)),
          "xi_c": (dims, np.asarray(xi_c)),
          "critical_sigma_w2": (("sigma_b2",), critical),
      },
      coords={"sigma_w2": sigma_w2, "sigma_b2": sigma_b2},
      attrs={"activation": ACTIVATION},
  )


def draw(ds: xr.Dataset):
  fig, ax = _common.subplots(figsize=(6.4, 4.4))
  w = ds["sigma_w2"].values
  for b, color in zip(ds["sigma_b2"].values, COLORS):
    r = ds.sel(sigma_b2=b)
    main = bool(np.isclose(b, MAIN_SIGMA_B2))
    lw = 2.2 if main else 1.3
    ax.plot(w, r["xi_c"], color=color, lw=lw, label=rf"$\xi_c$, $\sigma_b^2 = {b:g}$")
    ax.plot(w, r["xi_q"], color=color, lw=lw, ls="--", label=rf"$\xi_q$, $\sigma_b^2 = {b:g}$")
    ax.axvline(float(r["critical_sigma_w2"]), color=color, ls=":", lw=1.0)
  ax.plot([], [], color="0.3", ls=":", lw=1.0, label=r"critical $\sigma_w^2$ ($\chi_1 = 1$)")
  ax.set_yscale("log")
  finite = ds["xi_c"].values[np.isfinite(ds["xi_c"].values)]
  ax.set_ylim(0.3, min(float(finite.max()) * 2, 1e4) if finite.size else 1e3)
  ax.set_xlim(*SIGMA_W2_RANGE)
  ax.set_xlabel(_common.LABELS["sigma_w2"])
  ax.set_ylabel(r"depth scale $\xi$ [layers]")
  ax.set_title(r"tanh: $\xi_c$ diverges at the order-chaos transition, $\xi_q$ does not")
  ax.legend(ncol=2, loc="upper right", fontsize=8)
  return fig


SECONDS = 13   # measured: default settings, 2-core CPU, one figure at a time


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  """Write ``depth_scales.png`` and ``depth_scales.nc``."""
  ds = compute(n=801 if paper else 161)
  return _common.save(draw(ds), ds, pathlib.Path(outdir) / "depth_scales")
