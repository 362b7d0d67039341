"""Trained accuracy over (sigma_w2, depth) against the NTK's depth scales xi_1 and xi_*.

After Xiao, Pennington & Schoenholz 2020 (Fig. 1): the test accuracy of
trained tanh networks on digits, the map of :mod:`figures.fig_trainability`
(the same training, recomputed: SGD, learning rate ``1/L``, a fixed budget),
with the trainability scale ``xi_1 = -1/log chi_1`` on the ordered side and
the generalisation scale ``xi_* = -1/(log chi_c* - log chi_1)`` on the chaotic
side (:func:`meanfield.depth_scales`). The measured boundary (the depth where
the accuracy falls half-way from its best to chance) is fitted as ``k xi_1``
over the ordered columns and ``k xi_*`` over the chaotic ones
(:func:`figures.fig_trainability.fit_multiple`); Xiao et al. draw ``6 xi``
(dashed). On the ordered side ``xi_1 = xi_c`` (there ``chi_c = chi_1``); on the
chaotic side ``xi_*`` is shorter than ``xi_c``.
"""

from __future__ import annotations

import pathlib

import jax
from matplotlib import patheffects
import numpy as np
import xarray as xr

import meanfield
from figures import _common, fig_trainability

MULTIPLE = 6.0


def compute(*, depths, sigma_w2, width: int, n_seeds: int, n_steps: int,
            progress: bool = True) -> xr.Dataset:
  """fig_trainability's accuracy map, with xi_1, xi_* and the boundary's multiples of them."""
  ds = fig_trainability.compute(depths=depths, sigma_w2=sigma_w2, width=width,
                                n_seeds=n_seeds, n_steps=n_steps, progress=progress)
  fine, grid = ds.sigma_w2_fine.values, ds.sigma_w2.values
  with jax.enable_x64(True):
    scales = meanfield.depth_scales(sigma_w2=np.concatenate([fine, grid]),
                                    sigma_b2=fig_trainability.SIGMA_B2,
                                    activation=fig_trainability.ACTIVATION)
  xi_1, xi_star = np.asarray(scales.xi_1), np.asarray(scales.xi_star)
  critical = ds.attrs["critical_sigma_w2"]
  boundary = ds.boundary_depth.values
  fits = {}
  for phase, xi, side in (("ordered", xi_1[fine.size:], grid < critical),
                          ("chaotic", xi_star[fine.size:], grid > critical)):
    k, se, n = fig_trainability.fit_multiple(np.where(side, boundary, np.nan), xi)
    fits.update({f"k_{phase}_ntk": k, f"k_{phase}_ntk_se": se, f"n_{phase}_ntk": n})
  return ds.assign(xi_1=(("sigma_w2_fine",), xi_1[:fine.size]),
                   xi_star=(("sigma_w2_fine",), xi_star[:fine.size])).assign_attrs(fits)


def draw(ds: xr.Dataset):
  fig, ax = _common.subplots(figsize=(6.4, 5.0))
  w, d = ds.sigma_w2.values, ds.depth.values.astype(float)
  y_edges = fig_trainability.edges(d, log=True)
  mesh = ax.pcolormesh(fig_trainability.edges(w), y_edges,
                       ds.test_accuracy.transpose("depth", "sigma_w2").values,
                       cmap="viridis", vmin=0.0, vmax=1.0, shading="flat")
  fig.colorbar(mesh, ax=ax, label=f"test accuracy (mean of {ds.attrs['n_seeds']} seeds)")
  fine, top, a = ds.sigma_w2_fine.values, y_edges[-1], ds.attrs
  outline = [patheffects.withStroke(linewidth=3.2, foreground="0.2")]
  for name, label, color in (("xi_1", r"\xi_1", "white"), ("xi_star", r"\xi_*", "#fdae61")):
    xi = ds[name].values
    ax.plot(fine, np.minimum(MULTIPLE * xi, 10 * top), color=color, lw=1.6, ls="--",
            path_effects=outline, label=fr"${MULTIPLE:g}\,{label}$ (Xiao et al. 2020)")
  for phase, name, label in (("ordered", "xi_1", r"\xi_1"), ("chaotic", "xi_star", r"\xi_*")):
    k, err = a[f"k_{phase}_ntk"], a[f"k_{phase}_ntk_se"]
    if np.isfinite(k):
      ax.plot(fine, np.minimum(k * ds[name].values, 10 * top), color="#e7298a", lw=2,
              label=fr"fit, {phase}: $({k:.1f} \pm {err:.1f})\,{label}$")
  ax.plot(w, ds.boundary_depth.values, "o", color="#e7298a", mec="white", mew=1.2, ms=6,
          label="measured: accuracy half-way\nfrom its best to chance")
  ax.axvline(a["critical_sigma_w2"], color=_common.PHASE_COLORS["critical"], lw=1.2,
             label=fr"critical $\sigma_w^2$ = {a['critical_sigma_w2']:.3f}")
  ax.set_yscale("log")
  ax.set_ylim(y_edges[0], top)
  ax.set_yticks(d)
  ax.set_yticklabels([f"{v:g}" for v in d])
  ax.minorticks_off()
  ax.set_xlim(fig_trainability.edges(w)[0], fig_trainability.edges(w)[-1])
  ax.set_xlabel(_common.LABELS["sigma_w2"])
  ax.set_ylabel(_common.LABELS["depth"])
  ax.set_title(fr"tanh, $\sigma_b^2$ = {a['sigma_b2']}, digits: trained accuracy against "
               fr"$\xi_1$ and $\xi_*$" f"\nwidth {a['width']}, {a['n_seeds']} seeds, "
               f"{a['n_steps']} SGD steps, learning rate {a['eta']:g}/L")
  fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2,
             frameon=False)
  return fig


SECONDS = 105   # measured (fig_trainability's training again, then the scales): default settings, 2-core CPU, one figure at a time


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  """Write ``ntk_trainability.png`` and ``ntk_trainability.nc`` (fig_trainability's budgets)."""
  ds = compute(**fig_trainability.settings(paper), progress=progress)
  return _common.save(draw(ds), ds, pathlib.Path(outdir) / "ntk_trainability")
