"""Largest singular value and spectral variance of the Jacobian against depth: theory against random networks.

After Pennington, Schoenholz & Ganguli 2017 (Fig. 3) and 2018. For
{tanh, ReLU} x {orthogonal, Gaussian} weights at criticality (tanh:
``sigma_b2 = 0.05``, ``sigma_w2`` on the critical line, ``q = q*``; ReLU:
``sigma_w2 = 2``, ``sigma_b2 = 0``, input length ``q = 1``, which the ReLU
spectrum does not depend on), two panels against depth ``L`` on log-log
axes:

- the largest singular value ``sigma_max`` of ``J = dx^L/dx^0``: theory
  ``sqrt(lambda_max)`` (:func:`meanfield.jacobian_spectrum_edge`, the edge
  of the density at infinite width), and the largest singular value of each
  random network (:func:`empirical.jacobian_spectra`, float64 SVD);
- the variance ``Var[lambda] = m_2 - m_1^2`` of the eigenvalues of
  ``J J^T``: theory in closed form (:func:`meanfield.jacobian_moments`:
  ``L (mu_2/mu_1^2 - 1 - s_1)`` at ``chi_1 = 1``), and the variance of each
  network's own spectrum.

Markers are the median over networks, bands their range. The variance grows
linearly in ``L`` in every case, and ``sigma_max`` like ``sqrt(L)`` for
Gaussian weights and for ReLU; orthogonal tanh grows slowest (only through
the spread of ``phi'(h)^2``, which vanishes as ``q* -> 0``: see the
``isometry_q`` figure). The theory is the limit of infinite width at fixed
depth; at finite width ``N`` the networks fall below it once ``L`` is a
sizeable fraction of ``N`` (the shaded region ``L > N/4``), where the
spectrum of one network no longer self-averages. The largest singular
value of a network falls below the theory's edge earlier: the density thins
out towards its edge as ``L`` grows, so the largest of ``N`` singular values
sits near the ``1 - 1/N`` quantile, not at the edge (tanh, Gaussian, ``L =
16``: edge 7.7, ``1 - 1/256`` quantile 6.2, networks of width 128 about
6.5); ``sqrt(lambda_max)`` is reached only as ``N -> infinity``.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import xarray as xr

import empirical
import meanfield
from figures import _common

WEIGHTS = ("orthogonal", "gaussian")
TANH_SIGMA_B2 = 0.05
# (activation, sigma_w2, sigma_b2, q): q None means q*; ReLU at criticality
# has no finite q* and its spectrum does not depend on q.
CASES = {
    "tanh": ("tanh", None, TANH_SIGMA_B2, None),
    "relu": ("relu", 2.0, 0.0, 1.0),
}
LINESTYLES = {"orthogonal": "-", "gaussian": "--"}
MARKERS = {"orthogonal": "o", "gaussian": "s"}


def _settings(paper: bool) -> dict:
  if paper:
    return dict(width=512, n_seeds=6, depths=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128))
  return dict(width=128, n_seeds=2, depths=(1, 2, 4, 8, 16, 32))


def _sigma_w2(name: str) -> float:
  activation, sigma_w2, sigma_b2, _ = CASES[name]
  if sigma_w2 is None:
    sigma_w2 = float(meanfield.critical_sigma_w2(sigma_b2=sigma_b2, activation=activation))
  return sigma_w2


def _theory(name: str, theory_depths: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """``{weights: (sigma_max, variance)}`` on ``theory_depths``."""
  activation, _, sigma_b2, q = CASES[name]
  kwargs = dict(activation=activation, sigma_w2=np.float64(_sigma_w2(name)),
                sigma_b2=np.float64(sigma_b2), depth=theory_depths,
                q=None if q is None else np.float64(q))
  out = {}
  for weights in WEIGHTS:
    moments = meanfield.jacobian_moments(init=weights, **kwargs)
    edge = meanfield.jacobian_spectrum_edge(init=weights, **kwargs)
    out[weights] = (np.sqrt(np.asarray(edge)), np.asarray(moments.variance))
  return out


def _networks(name: str, *, width: int, n_seeds: int, depths, key) -> xr.Dataset:
  activation, _, sigma_b2, q = CASES[name]
  return empirical.jacobian_spectra(key, activation=activation, width=width, depth=list(depths),
                                    sigma_w2=_sigma_w2(name), sigma_b2=sigma_b2, q=q,
                                    init=list(WEIGHTS), n_seeds=n_seeds, progress=False,
                                    dtype=np.float64)


def _spectral_variance(moment: xr.DataArray) -> xr.DataArray:
  """``m_2 - m_1^2`` of each network's eigenvalues of ``J J^T``."""
  return moment.sel(order=2, drop=True) - moment.sel(order=1, drop=True) ** 2


def _draw(ax, depths, theory_depths, empirical_values, theory_values, *, color, weights, label):
  med = np.median(empirical_values, axis=-1)
  ax.plot(theory_depths, theory_values, color=color, ls=LINESTYLES[weights], lw=1.4,
          label=f"{label}, theory")
  ax.fill_between(depths, empirical_values.min(axis=-1), empirical_values.max(axis=-1),
                  color=color, alpha=0.15, lw=0)
  ax.plot(depths, med, ls="none", marker=MARKERS[weights], ms=4.5, color=color,
          mfc="white" if weights == "gaussian" else color, label=f"{label}, networks")


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  settings = _settings(paper)
  width, depths = settings["width"], np.array(settings["depths"])
  theory_depths = np.unique(np.round(np.geomspace(1, depths.max(), 20)).astype(np.int64))
  fig, (ax_max, ax_var) = _common.subplots(1, 2, figsize=(10.5, 4.6))
  data = {}
  with jax.enable_x64(True):
    for c, name in enumerate(CASES):
      ds = _networks(name, width=width, n_seeds=settings["n_seeds"], depths=depths,
                     key=jax.random.key(c))
      theory = _theory(name, theory_depths)
      color = _common.ACTIVATION_COLORS[name]
      variance = _spectral_variance(ds.moment)
      for weights in WEIGHTS:
        label = f"{name} {weights}"
        sigma_max = ds.sigma_max.sel(init=weights).transpose("depth", "seed").values
        var = variance.sel(init=weights).transpose("depth", "seed").values
        _draw(ax_max, depths, theory_depths, sigma_max, theory[weights][0], color=color,
              weights=weights, label=label)
        _draw(ax_var, depths, theory_depths, var, theory[weights][1], color=color,
              weights=weights, label=label)
        data[f"{name}_{weights}_sigma_max"] = xr.DataArray(sigma_max, dims=("depth", "seed"))
        data[f"{name}_{weights}_variance"] = xr.DataArray(var, dims=("depth", "seed"))
        data[f"{name}_{weights}_theory_sigma_max"] = xr.DataArray(
            theory[weights][0], dims=("theory_depth",))
        data[f"{name}_{weights}_theory_variance"] = xr.DataArray(
            theory[weights][1], dims=("theory_depth",))
      data[f"{name}_sigma_w2"] = xr.DataArray(_sigma_w2(name))
      data[f"{name}_q"] = xr.DataArray(float(ds.q))
  for ax in (ax_max, ax_var):
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(_common.LABELS["depth"])
    ax.axvspan(width / 4, depths.max() * 1.15, color="0.92", lw=0, zorder=0)
    ax.text(width / 4 * 1.08, 0.03, f"$L > N/4$", transform=ax.get_xaxis_transform(),
            fontsize=8, color="0.35")
    ax.set_xlim(0.85, depths.max() * 1.15)
  ax_max.set_ylabel(r"largest singular value $\sigma_{\max}$ of $J$")
  ax_max.set_title(r"$\sigma_{\max}$: theory $\sqrt{\lambda_{\max}}$ (edge of the density)")
  ax_var.set_ylabel(r"$\mathrm{Var}[\lambda]$ of the eigenvalues $\lambda$ of $JJ^T$")
  ax_var.set_title(r"$\mathrm{Var}[\lambda] = m_2 - m_1^2$")
  ax_var.legend(loc="upper left", fontsize=7.5, ncol=2)
  fig.suptitle(
      f"tanh: $\\sigma_w^2 = {_sigma_w2('tanh'):.4g}$, $\\sigma_b^2 = {TANH_SIGMA_B2:g}$, "
      f"$q^* = {float(data['tanh_q']):.3g}$;  ReLU: $\\sigma_w^2 = 2$, $\\sigma_b^2 = 0$;  "
      f"width $N = {width}$, {settings['n_seeds']} networks per point (median, range)")
  dataset = xr.Dataset(data, coords={"depth": depths, "theory_depth": theory_depths,
                                     "seed": np.arange(settings["n_seeds"]),
                                     "width": width})
  return _common.save(fig, dataset, pathlib.Path(outdir) / "jacobian_depth")
