"""Dynamical isometry needs small q*: orthogonal tanh along the critical line.

After Pennington, Schoenholz & Ganguli 2017 (Fig. 2, Sec. 4). Orthogonal
weights, tanh, on the order-to-chaos line (``sigma_w2 =
meanfield.critical_sigma_w2(sigma_b2)``, so ``chi_1 = 1`` and the mean
eigenvalue of ``J J^T`` is 1 at every depth) for bias variances
``sigma_b2`` from ``1e-9`` to ``0.5``, which put the fixed point
``q* = meanfield.q_star(...)`` between about ``1e-3`` and 2:

- left: the density of the singular values ``sigma`` of ``J`` at depth
  ``L = 32`` (:func:`meanfield.jacobian_spectrum`; per unit ``log10
  sigma``, log scale), with histograms of random networks
  (:func:`empirical.jacobian_spectra`, float64 SVD) at the smallest and
  the largest ``q*``. At small ``q*`` the pre-activations stay in tanh's
  linear region, ``phi'(h)^2`` is close to 1 and the spectrum stays
  concentrated at ``sigma = 1`` (dynamical isometry); at large ``q*`` it
  spreads over decades.
- right: the variance ``Var[lambda]`` of the eigenvalues of ``J J^T``
  against depth ``L`` (:func:`meanfield.jacobian_moments`, closed form:
  ``L (mu_2/mu_1^2 - 1)`` with ``mu_k = E[phi'(sqrt(q*) z)^{2k}]``), and
  each network's own spectral variance at the two ``q*`` of the left panel.
  The variance is linear in ``L`` for every ``q*`` but its slope vanishes
  like ``q*^2`` (``phi'(h)^2 = 1 - 2h^2 + ...``, so ``mu_2/mu_1^2 - 1 =
  8 q*^2 + O(q*^3)``): a network of depth ``L`` stays isometric when ``L
  q*^2`` is small.

Self-check, shown in the inset: at the smallest ``q*`` (9e-4) the spectrum
is nearly a point mass at 1 (``Var[lambda] = 2.1e-4`` at ``L = 32``), the
hardest case for the theory density, whose law of ``phi'(h)^2`` piles up at
1. The inset prints the variance of the theory density over the window
against the closed form of :func:`meanfield.jacobian_moments`; it reads
0.999 since each segment of that law carries its own conditional mean and
variance (an earlier, uniform-between-end-values law read 2-4 here). The
networks (width 128 here) sit around it with their finite-width spread.
"""

from __future__ import annotations

import pathlib

import jax
import matplotlib as mpl
import numpy as np
import xarray as xr

import empirical
import meanfield
from figures import _common

ACTIVATION = "tanh"
WEIGHTS = "orthogonal"
#: Bias variances on the critical line; q* from about 1e-3 to 2.
SIGMA_B2 = (1e-9, 1e-6, 1e-3, 0.05, 0.5)
#: Indices into SIGMA_B2 measured on random networks.
MEASURED = (0, 4)
DEPTH = 32
THEORY_DEPTHS = np.unique(np.r_[np.round(np.geomspace(1, 256, 30)), DEPTH].astype(np.int64))
LOG10_SIGMA = np.linspace(-4.0, 1.5, 450)
#: Linear window around sigma = 1 for the inset that resolves the smallest q*.
INSET_SIGMA = np.linspace(0.95, 1.05, 161)


def _settings(paper: bool) -> dict:
  if paper:
    return dict(width=1000, n_seeds=4, depths=(1, 2, 4, 8, 16, 32, 64, 128))
  return dict(width=128, n_seeds=2, depths=(1, 2, 4, 8, 16, 32))


def _colors(n: int) -> list:
  cmap = mpl.colormaps["viridis"]
  return [cmap(0.9 * i / max(n - 1, 1)) for i in range(n)]


SECONDS = 33   # measured: default settings, 2-core CPU, one figure at a time


def _compute(settings: dict, sigma: np.ndarray) -> dict:
  """The critical line's settings, the theory density and variance, and the measured networks."""
  with jax.enable_x64(True):
    # The critical line is one Network (a 1-d grid of variances) at depth DEPTH.
    line = meanfield.Network(activation=ACTIVATION, sigma_b2=np.array(SIGMA_B2, np.float64),
                             depth=DEPTH, init=WEIGHTS)
    line = line.replace(sigma_w2=np.asarray(meanfield.critical_sigma_w2(line)))
    sigma_w2, sigma_b2 = line.sigma_w2, line.sigma_b2
    q_star = np.asarray(meanfield.q_star(line))
    theory = meanfield.jacobian_spectrum(line, sigma=sigma)
    # Every depth in one call (a Network's depth is one number): its fields as keywords.
    variance = np.asarray(meanfield.jacobian_moments(
        activation=line.activation, sigma_w2=sigma_w2[:, None], sigma_b2=sigma_b2[:, None],
        depth=THEORY_DEPTHS[None, :], init=line.init).variance)
    networks = [
        empirical.jacobian_spectra(jax.random.key(0), activation=line.activation,
                                   width=settings["width"],
                                   depth=sorted({*settings["depths"], DEPTH}),
                                   sigma_w2=float(sigma_w2[i]), sigma_b2=float(sigma_b2[i]),
                                   init=line.init, n_seeds=settings["n_seeds"], progress=False,
                                   dtype=np.float64)
        for i in MEASURED]
  return dict(sigma_b2=sigma_b2, sigma_w2=sigma_w2, q_star=q_star,
              density=np.asarray(theory.singular_value_density),      # (n_b, n_sigma)
              converged=np.asarray(theory.converged), variance=variance, networks=networks)


def _plot_networks(ax_d, ax_v, inset, networks: list, colors: list) -> None:
  """Each measured q*'s singular-value histograms (panel and inset) and spectral variances."""
  for j, i in enumerate(MEASURED):
    ds = networks[j]
    sv = ds.singular_values.sel(depth=DEPTH).values.ravel()
    sv = sv[np.isfinite(sv) & (sv > 0)]
    edges = np.linspace(LOG10_SIGMA[0], LOG10_SIGMA[-1], 23)
    counts, _ = np.histogram(np.log10(sv), bins=edges)
    ax_d.stairs(counts / (sv.size * np.diff(edges)), edges, fill=True, color=colors[i],
                alpha=0.3, label="networks" if j == 0 else None)
    if j == 0:
      edges = np.linspace(INSET_SIGMA[0], INSET_SIGMA[-1], 41)
      counts, _ = np.histogram(sv, bins=edges)
      inset.stairs(counts / (sv.size * np.diff(edges)), edges, fill=True, color=colors[i],
                   alpha=0.3)
    mom = ds.moment
    var = (mom.sel(order=2) - mom.sel(order=1) ** 2).transpose("depth", "seed").values
    ax_v.fill_between(ds.depth.values, var.min(axis=1), var.max(axis=1), color=colors[i],
                      alpha=0.2, lw=0)
    ax_v.plot(ds.depth.values, np.median(var, axis=1), ls="none", marker="o", ms=4.5,
              color=colors[i], label="networks (median, range)" if j == 0 else None)


def _finish_inset(inset, sigma: np.ndarray, in_window: np.ndarray, r: dict) -> None:
  """The inset's axes, and its title: the theory density's variance against the closed form."""
  i0 = MEASURED[0]
  inset.set_xlim(INSET_SIGMA[0], INSET_SIGMA[-1])
  inset.set_xlabel(r"$\sigma$", fontsize=8, labelpad=1)
  inset.set_ylabel(r"$p(\sigma)$", fontsize=8, labelpad=1)
  inset.tick_params(labelsize=7)
  # Self-check of the theory density in the inset against the closed-form variance.
  lam, p = sigma[in_window] ** 2, np.nan_to_num(r["density"][i0][in_window])
  mass = np.trapezoid(p, sigma[in_window])
  mean = np.trapezoid(p * lam, sigma[in_window]) / mass
  ratio = (np.trapezoid(p * lam ** 2, sigma[in_window]) / mass - mean ** 2) / r["variance"][
      i0, list(THEORY_DEPTHS).index(DEPTH)]
  inset.set_title(f"$q^* = {r['q_star'][i0]:.2g}$ (linear axes): theory density's "
                  f"Var$[\\lambda]$ = {ratio:.3f} x closed form", fontsize=6.5)


def _label(fig, ax_d, ax_v, converged: np.ndarray, settings: dict) -> None:
  if not converged.all():
    ax_d.text(0.02, 0.97, "theory line left out where its solver did not converge",
              transform=ax_d.transAxes, va="top", fontsize=7.5)
  ax_d.set_yscale("log")
  ax_d.set_ylim(1e-3, None)
  ax_d.set_xlim(LOG10_SIGMA[0], LOG10_SIGMA[-1])
  ax_d.set_xlabel(r"$\log_{10} \sigma$ (singular value of $J$)")
  ax_d.set_ylabel(r"density per unit $\log_{10}\sigma$")
  ax_d.set_title(f"orthogonal tanh at criticality, depth $L = {DEPTH}$")
  ax_d.legend(loc="upper left", fontsize=7)
  ax_v.set_xscale("log")
  ax_v.set_yscale("log")
  ax_v.set_xlabel(_common.LABELS["depth"])
  ax_v.set_ylabel(r"$\mathrm{Var}[\lambda]$ of the eigenvalues $\lambda$ of $JJ^T$")
  ax_v.set_title(r"spectral variance, theory $L\,(\mu_2/\mu_1^2 - 1)$")
  ax_v.legend(loc="upper left", fontsize=7.5)
  fig.suptitle(f"dynamical isometry and $q^*$: networks of width $N = {settings['width']}$, "
               f"{settings['n_seeds']} per measured $q^*$")


def _dataset(r: dict, sigma: np.ndarray, width: int) -> xr.Dataset:
  networks = r["networks"]
  return xr.Dataset(
      {"sigma_w2": ("sigma_b2", r["sigma_w2"]), "q_star": ("sigma_b2", r["q_star"]),
       "theory_singular_value_density": (("sigma_b2", "sigma"), r["density"]),
       "theory_variance": (("sigma_b2", "theory_depth"), r["variance"]),
       "measured_sigma_b2": ("measured", r["sigma_b2"][list(MEASURED)]),
       "singular_values": (("measured", "depth", "seed", "index"),
                           np.stack([ds.singular_values.transpose("depth", "seed", "index").values
                                     for ds in networks])),
       "moment": (("measured", "depth", "seed", "order"),
                  np.stack([ds.moment.transpose("depth", "seed", "order").values
                            for ds in networks]))},
      coords={"sigma_b2": r["sigma_b2"], "sigma": sigma, "theory_depth": THEORY_DEPTHS,
              "depth": networks[0].depth.values, "order": networks[0].order.values},
      attrs={"activation": ACTIVATION, "weights": WEIGHTS, "depth_density": DEPTH,
             "width": width})


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  settings = _settings(paper)
  sigma = np.union1d(10.0 ** LOG10_SIGMA, INSET_SIGMA)
  log10_sigma = np.log10(sigma)
  r = _compute(settings, sigma)
  density, converged, variance = r["density"], r["converged"], r["variance"]

  fig, (ax_d, ax_v) = _common.subplots(1, 2, figsize=(11, 4.6))
  colors = _colors(len(SIGMA_B2))
  per_log = np.where(converged, density * sigma * np.log(10), np.nan)
  for i, q in enumerate(r["q_star"]):
    ax_d.plot(log10_sigma, per_log[i], color=colors[i], lw=1.4,
              label=f"$q^* = {q:.2g}$ ($\\sigma_b^2 = {SIGMA_B2[i]:.0e}$)")
    ax_v.plot(THEORY_DEPTHS, variance[i], color=colors[i], lw=1.4, label=f"$q^* = {q:.2g}$")
  # Inset: the smallest q* on a linear axis around sigma = 1 (per unit sigma).
  inset = ax_d.inset_axes([0.64, 0.46, 0.34, 0.42])
  i0 = MEASURED[0]
  in_window = (sigma >= INSET_SIGMA[0]) & (sigma <= INSET_SIGMA[-1])
  inset.plot(sigma[in_window], np.where(converged[i0], density[i0], np.nan)[in_window],
             color=colors[i0], lw=1.2)
  _plot_networks(ax_d, ax_v, inset, r["networks"], colors)
  _finish_inset(inset, sigma, in_window, r)
  _label(fig, ax_d, ax_v, converged, settings)
  return _common.save(fig, _dataset(r, sigma, settings["width"]),
                      pathlib.Path(outdir) / "isometry_q")
