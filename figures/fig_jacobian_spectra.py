"""Singular-value densities of the input-output Jacobian at criticality: theory against random networks.

After Pennington, Schoenholz & Ganguli 2017 (Figs. 1-2). For tanh at
criticality (``sigma_b2 = 0.05``, ``sigma_w2`` on the critical line, q*
from :func:`meanfield.q_star`), ReLU (``sigma_w2 = 2``, ``sigma_b2 = 0``)
and a linear network (``sigma_w2 = 1``), with orthogonal (top row) and
Gaussian (bottom row) weights, at depths 2, 8, 32 and 128: the density of
the singular values ``sigma`` of ``J = dx^L/dx^0`` from free probability
(:func:`meanfield.jacobian_spectrum`, line) over histograms of the exact
singular values of random networks (:func:`empirical.jacobian_spectra`,
float64 SVD). The axis is ``log10 sigma`` and the densities are per unit
``log10 sigma`` (``p(sigma) sigma ln 10``), so a spectrum spread over
decades stays readable. Gaussian weights spread the spectrum over more
decades than orthogonal ones at every depth; at this q* (0.57) even
orthogonal tanh spreads with depth (dynamical isometry needs small q*,
Pennington et al. 2017), and a linear orthogonal network is exactly
isometric. Atoms are written in the panel (ReLU: mass
1/2 at ``sigma = 0``; linear orthogonal: all mass at ``sigma = 1``), and so
is the mass below the left edge of the axis; where the theory's solver
reports non-convergence (``JacobianSpectrum.converged``) its line is left
out and the panel says so.

One PNG per activation: ``jacobian_spectra_<activation>.png``.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import xarray as xr

import empirical
import meanfield
from figures import _common

DEPTHS = (2, 8, 32, 128)
WEIGHTS = ("orthogonal", "gaussian")
TANH_SIGMA_B2 = 0.05
# (activation, sigma_w2, sigma_b2, q): q None means q*; ReLU and linear
# networks at criticality have no finite q*, and their spectra do not depend on q.
CASES = {
    "tanh": ("tanh", None, TANH_SIGMA_B2, None),
    "relu": ("relu", 2.0, 0.0, 1.0),
    "linear": ("linear", 1.0, 0.0, 1.0),
}
#: The PNGs this module writes (``python -m figures --only`` finds any of them).
OUTPUTS = tuple(f"jacobian_spectra_{name}" for name in CASES)
LOG10_MIN = -10.0          # left edge of the axis, in log10 sigma
THEORY_SIGMA = np.logspace(-40, 3, 1500)


def _settings(paper: bool) -> dict:
  return dict(width=1000 if paper else 128, n_seeds=4 if paper else 2)


def _case(name, *, width, n_seeds, key):
  activation, sigma_w2, sigma_b2, q = CASES[name]
  if sigma_w2 is None:
    sigma_w2 = float(meanfield.critical_sigma_w2(sigma_b2=sigma_b2, activation=activation))
  ds = empirical.jacobian_spectra(key, activation=activation, width=width, depth=list(DEPTHS),
                                  sigma_w2=sigma_w2, sigma_b2=sigma_b2, q=q,
                                  init=list(WEIGHTS), n_seeds=n_seeds, progress=False,
                                  dtype=np.float64)
  theory = {}
  for weights in WEIGHTS:
    th = meanfield.jacobian_spectrum(activation=activation, sigma_w2=np.float64(sigma_w2),
                                     sigma_b2=np.float64(sigma_b2), depth=np.array(DEPTHS),
                                     init=weights, q=None if q is None else np.float64(q),
                                     sigma=THEORY_SIGMA)
    theory[weights] = th
  return ds, theory, sigma_w2, sigma_b2


def _panel(ax, sv, th, i, *, depth, weights, color):
  sv = np.asarray(sv).ravel()
  sv = sv[np.isfinite(sv)]
  n = sv.size
  top = max(np.log10(sv.max()) + 0.3, 0.5,
            0.5 * np.log10(max(float(th.lambda_max[i]), 1e-300)) + 0.2)
  edges = np.linspace(LOG10_MIN, top, 51)
  counts, _ = np.histogram(np.log10(np.maximum(sv, 1e-300)), bins=edges)
  ax.stairs(counts / (n * np.diff(edges)), edges, fill=True, color=color, alpha=0.35,
            label="networks")
  dens = np.nan_to_num(np.asarray(th.singular_value_density[i]))
  converged = np.asarray(th.converged[i])
  # Where the theory's solver did not converge the line is left out (a gap, not 0).
  per_log = np.where(converged, dens * THEORY_SIGMA * np.log(10), np.nan)
  keep = (np.log10(THEORY_SIGMA) >= LOG10_MIN) & (np.log10(THEORY_SIGMA) <= top)
  ax.plot(np.log10(THEORY_SIGMA[keep]), per_log[keep], color="k", lw=1.3, label="theory")
  lines = []
  zero = float(th.zero_mass[i])
  atom = float(th.atom_mass[i])
  if zero > 1e-6:
    lines.append(f"atom at $\\sigma=0$: {zero:.2f}")
  if atom > 1e-6:
    loc = np.sqrt(float(th.atom_lambda[i]))
    ax.axvline(np.log10(loc), color="k", lw=1.3, ls=":")
    lines.append(f"atom at $\\sigma={loc:.3g}$: {atom:.2f}")
  # Mass below the axis (the SVD's floor and any atom at 0 land there).
  cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(THEORY_SIGMA))])
  below_theory = float(np.interp(10 ** LOG10_MIN, THEORY_SIGMA, cdf)) + zero
  below_emp = float(np.mean(sv < 10 ** LOG10_MIN))
  unconverged = THEORY_SIGMA[~converged & (THEORY_SIGMA < 10 ** top)]
  if unconverged.size:
    lines.append(f"theory unconverged for $\\sigma < 10^{{{np.log10(unconverged.max()):.1f}}}$")
  elif max(below_theory, below_emp) > 0.005:
    lines.append(f"$\\sigma<10^{{{LOG10_MIN:.0f}}}$: {below_emp:.2f} (theory {below_theory:.2f})")
  if lines:
    ax.text(0.03, 0.97, "\n".join(lines), transform=ax.transAxes, va="top", fontsize=8)
  ax.set_xlim(LOG10_MIN, top)
  ax.set_title(f"{weights}, $L = {depth}$")


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  settings = _settings(paper)
  written = []
  with jax.enable_x64(True):
    for c, name in enumerate(CASES):
      ds, theory, sigma_w2, sigma_b2 = _case(name, key=jax.random.key(c), **settings)
      fig, axes = _common.subplots(len(WEIGHTS), len(DEPTHS), figsize=(13, 5.6))
      color = _common.ACTIVATION_COLORS.get(name, "C0")
      for r, weights in enumerate(WEIGHTS):
        for j, depth in enumerate(DEPTHS):
          ax = axes[r, j]
          _panel(ax, ds.singular_values.sel(init=weights, depth=depth), theory[weights], j,
                 depth=depth, weights=weights, color=color)
          if r == len(WEIGHTS) - 1:
            ax.set_xlabel(r"$\log_{10} \sigma$ (singular value of $J$)")
          if j == 0:
            ax.set_ylabel(r"density per unit $\log_{10}\sigma$")
      axes[0, 0].legend(loc="upper right")
      fig.suptitle(
          f"{name}: $\\sigma_w^2 = {sigma_w2:.4g}$, $\\sigma_b^2 = {sigma_b2:g}$, "
          f"width $N = {settings['width']}$, {settings['n_seeds']} networks per panel")
      data = xr.Dataset({
          "singular_values": ds.singular_values,
          "theory_singular_value_density": xr.DataArray(
              np.stack([np.asarray(theory[w].singular_value_density) for w in WEIGHTS]),
              dims=("init", "depth", "sigma"),
              coords={"init": list(WEIGHTS), "depth": list(DEPTHS), "sigma": THEORY_SIGMA}),
          "theory_zero_mass": xr.DataArray(
              np.stack([np.asarray(theory[w].zero_mass) for w in WEIGHTS]), dims=("init", "depth")),
          "theory_atom_mass": xr.DataArray(
              np.stack([np.asarray(theory[w].atom_mass) for w in WEIGHTS]), dims=("init", "depth")),
      }, attrs={"activation": name, "sigma_w2": sigma_w2, "sigma_b2": sigma_b2})
      written += _common.save(fig, data, pathlib.Path(outdir) / f"jacobian_spectra_{name}")
  return written
