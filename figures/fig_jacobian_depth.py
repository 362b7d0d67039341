"""Largest singular value and spectral variance of the Jacobian against depth: theory against random networks.

After Pennington, Schoenholz & Ganguli 2017 (Fig. 3) and 2018. For
{tanh, ReLU} x {orthogonal, Gaussian} weights at criticality (tanh:
``sigma_b2 = 0.05``, ``sigma_w2`` on the critical line, ``q = q*``; ReLU:
``sigma_w2 = 2``, ``sigma_b2 = 0``, input length ``q = 1``, which the ReLU
spectrum does not depend on), 256 networks of width ``N = 64`` per point
(the networks of :mod:`figures._jacobian`, shared with
``jacobian_spectra``; float64 SVD), two panels against depth ``L`` on
log-log axes:

- the largest singular value ``sigma_max`` of ``J = dx^L/dx^0``. Lines:
  the infinite-width edge ``sqrt(lambda_max)``
  (:func:`meanfield.jacobian_spectrum_edge`); dotted, the expected
  ``sigma_max`` at width ``N``, ``sqrt(lambda_max + E[TW_1] / (gamma
  N^{2/3}))`` with ``gamma`` the theory density's edge coefficient
  (Tracy-Widom soft-edge scaling; :func:`figures._jacobian.sigma_max_expected`,
  docs/jacobian_edge.md), drawn up to ``L = N/4`` (beyond, the leading
  order fails: ReLU, Gaussian, ``L = N/2``, predicts half the measured
  value). Where the density is not a square root at its edge (orthogonal
  weights at depth 1, orthogonal ReLU at depth 2) there is no dotted point.
- the variance ``Var[lambda] = m_2 - m_1^2`` of the eigenvalues of
  ``J J^T``: theory in closed form (:func:`meanfield.jacobian_moments`:
  ``L (mu_2/mu_1^2 - 1 - s_1)`` at ``chi_1 = 1``), and the variance of each
  network's own spectrum.

Markers are the mean over networks, bands their 10-90% range. The theory
variance grows linearly in ``L`` in every case, and ``sigma_max`` like ``sqrt(L)``
for Gaussian weights and for ReLU; orthogonal tanh grows slowest (only
through the spread of ``phi'(h)^2``, which vanishes as ``q* -> 0``: see the
``isometry_q`` figure).

The measured ``sigma_max`` falls below the infinite-width edge by a gap
that grows with ``L / N``: the density thins towards its edge as ``L``
grows (``gamma`` falls), so the largest of ``N`` eigenvalues sits further
inside it. For products of Gaussian matrices (linear network) the
expectation is ``sigma_max / edge = sqrt(1 - 1.21 L^{4/3} / ((2L(L+1))^{1/3}
N^{2/3}))``, about ``sqrt(1 - 0.96 (L/N)^{2/3})``: a function of ``L / N``
alone, as the ``jacobian_edge_width`` figure finds for tanh. Measured
against expected (tanh, Gaussian): ``L = 8``: edge 5.52, expected 4.68,
networks 4.54 +- 0.06; ``L = 16``: 7.72, 5.71, 5.51 +- 0.11.

The networks' mean spectral variance rises above the infinite-width value
with ``L / N`` (Gaussian tanh: +21% at ``L = 8``, +47% at ``L = 16``;
orthogonal tanh +11%, +30%), a finite-width correction to ``E[m_2]`` that
is not computed here; the per-network variance is skewed (it is dominated
by the few largest eigenvalues), so the median lies below the mean. The
shaded region ``L > N/4`` is where both panels depart far from infinite
width.
"""

from __future__ import annotations

import pathlib

import jax
import matplotlib.lines
import numpy as np
import xarray as xr

import meanfield
from figures import _common
from figures import _jacobian

SECONDS = 29   # measured: default settings, 2-core CPU, one figure at a time
WEIGHTS = _jacobian.WEIGHTS
CASES = ("tanh", "relu")
LINESTYLES = {"orthogonal": "-", "gaussian": "--"}
MARKERS = {"orthogonal": "o", "gaussian": "s"}
QUANTILES = (0.1, 0.9)


def _theory(name: str, depths: np.ndarray, theory_depths: np.ndarray, q: float, width: int
            ) -> dict[str, dict[str, np.ndarray]]:
  """``{weights: {edge, expected, variance}}``: edge and expected on ``depths``, variance on
  ``theory_depths``."""
  kwargs = _jacobian.theory_kwargs(name, q)
  out = {}
  for weights in WEIGHTS:
    edge, expected = _jacobian.sigma_max_expected(name, weights, depths, width, q)
    expected = np.where(depths <= _jacobian.MAX_DEPTH_RATIO * width, expected, np.nan)
    moments = meanfield.jacobian_moments(init=weights, depth=theory_depths, **kwargs)
    out[weights] = dict(edge=edge, expected=expected, variance=np.asarray(moments.variance))
  return out


def _spectral_variance(moment: xr.DataArray) -> xr.DataArray:
  """``m_2 - m_1^2`` of each network's eigenvalues of ``J J^T``."""
  return moment.sel(order=2, drop=True) - moment.sel(order=1, drop=True) ** 2


def _points(ax, depths, values, *, color, weights):
  """Mean marker over networks, 10-90% band; ``values``: ``(depth, seed)``."""
  lo, hi = np.quantile(values, QUANTILES, axis=-1)
  ax.fill_between(depths, lo, hi, color=color, alpha=0.15, lw=0)
  ax.plot(depths, values.mean(axis=-1), ls="none", marker=MARKERS[weights], ms=5, color=color,
          mfc="white" if weights == "gaussian" else color, zorder=3)


def _legend(fig, width):
  handles = []
  for name in CASES:
    color = _common.ACTIVATION_COLORS[name]
    for weights in WEIGHTS:
      handles.append(matplotlib.lines.Line2D(
          [], [], color=color, ls=LINESTYLES[weights], marker=MARKERS[weights], ms=5,
          mfc="white" if weights == "gaussian" else color, label=f"{name}, {weights}"))
  handles += [
      matplotlib.lines.Line2D([], [], color="0.3", lw=1.4, label=r"theory, $N = \infty$"),
      matplotlib.lines.Line2D([], [], color="0.3", lw=1.2, ls=":", marker=".",
                              label=f"expected $\\sigma_{{\\max}}$ at $N = {width}$ (Tracy-Widom)"),
      matplotlib.lines.Line2D([], [], color="0.3", ls="none", marker="o",
                              label="networks: mean, 10-90% band"),
  ]
  fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=8.5)


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  settings = _jacobian.settings(paper)
  width, n_seeds, depths = settings["width"], settings["n_seeds"], np.array(settings["depths"])
  theory_depths = np.union1d(np.round(np.geomspace(1, depths.max(), 24)).astype(np.int64), depths)
  fig, (ax_max, ax_var) = _common.subplots(1, 2, figsize=(11, 5.4))
  data = {}
  with jax.enable_x64(True):
    for name in CASES:
      ds = _jacobian.networks(name, progress=progress, **settings)
      theory = _theory(name, depths, theory_depths, float(ds.q), width)
      color = _common.ACTIVATION_COLORS[name]
      variance = _spectral_variance(ds.moment)
      for weights in WEIGHTS:
        th = theory[weights]
        sigma_max = ds.sigma_max.sel(init=weights).transpose("depth", "seed").values
        var = variance.sel(init=weights).transpose("depth", "seed").values
        ax_max.plot(depths, th["edge"], color=color, ls=LINESTYLES[weights], lw=1.4)
        ax_max.plot(depths, th["expected"], color=color, ls=":", lw=1.2, marker=".")
        _points(ax_max, depths, sigma_max, color=color, weights=weights)
        ax_var.plot(theory_depths, th["variance"], color=color, ls=LINESTYLES[weights], lw=1.4)
        _points(ax_var, depths, var, color=color, weights=weights)
        prefix = f"{name}_{weights}"
        data[f"{prefix}_sigma_max"] = xr.DataArray(sigma_max, dims=("depth", "seed"))
        data[f"{prefix}_variance"] = xr.DataArray(var, dims=("depth", "seed"))
        data[f"{prefix}_theory_edge"] = xr.DataArray(th["edge"], dims=("depth",))
        data[f"{prefix}_expected_sigma_max"] = xr.DataArray(th["expected"], dims=("depth",))
        data[f"{prefix}_theory_variance"] = xr.DataArray(th["variance"], dims=("theory_depth",))
      data[f"{name}_sigma_w2"] = xr.DataArray(_jacobian.network(name).sigma_w2)
      data[f"{name}_q"] = xr.DataArray(float(ds.q))
  for ax in (ax_max, ax_var):
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(_common.LABELS["depth"])
    ax.axvspan(width / 4, depths.max() * 1.15, color="0.92", lw=0, zorder=0)
    ax.text(width / 4 * 1.06, 0.97, "$L > N/4$", transform=ax.get_xaxis_transform(),
            fontsize=8, color="0.35", va="top")
    ax.set_xlim(0.85, depths.max() * 1.15)
  ax_max.set_ylabel(r"largest singular value $\sigma_{\max}$ of $J$")
  ax_max.set_title(r"$\sigma_{\max}$: edge $\sqrt{\lambda_{\max}}$ and its finite-$N$ expectation")
  ax_var.set_ylabel(r"$\mathrm{Var}[\lambda]$ of the eigenvalues $\lambda$ of $JJ^T$")
  ax_var.set_title(r"$\mathrm{Var}[\lambda] = m_2 - m_1^2$")
  _legend(fig, width)
  fig.suptitle(
      f"tanh: $\\sigma_w^2 = {_jacobian.network('tanh').sigma_w2:.4g}$, "
      f"$\\sigma_b^2 = {_jacobian.TANH_SIGMA_B2:g}$, $q^* = {float(data['tanh_q']):.3g}$;  "
      f"ReLU: $\\sigma_w^2 = 2$, $\\sigma_b^2 = 0$;  width $N = {width}$, "
      f"{n_seeds} networks per point")
  dataset = xr.Dataset(data, coords={"depth": depths, "theory_depth": theory_depths,
                                     "seed": np.arange(n_seeds), "width": width})
  return _common.save(fig, dataset, pathlib.Path(outdir) / "jacobian_depth")
