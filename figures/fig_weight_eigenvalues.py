"""Eigenvalues of the weight matrices: the circular law, the circle, and Marchenko-Pastur.

Square ``N x N`` weight matrices drawn by the toolkit's own initialisers
(:func:`empirical.inits.init`, ``"gaussian"`` and ``"orthogonal"``, at
``sigma_w2 = 2``), several matrices per panel:

- Gaussian ``W`` (entries ``N(0, sigma_w2/N)``): the eigenvalues fill the
  disk of radius ``sqrt(sigma_w2)`` uniformly (the circular law, Ginibre
  1965, Bai 1997), with an excess of about ``sqrt(2N/pi)`` exactly real
  eigenvalues per real matrix (Edelman, Kostlan & Shub 1994), visible on the
  real axis;
- the same, radially: ``|lambda|^2 / sigma_w2`` is uniform on ``[0, 1]``
  under the circular law (histogram against the flat line);
- orthogonal ``W`` (``W^T W = sigma_w2 I``): every eigenvalue lies on the
  circle of radius ``sqrt(sigma_w2)``;
- the eigenvalues of ``W^T W`` for Gaussian ``W``: the Marchenko-Pastur law
  of ratio 1 (square case), ``rho(lambda) = sqrt(lambda (4 sigma_w2 -
  lambda)) / (2 pi sigma_w2 lambda)`` on ``[0, 4 sigma_w2]`` (Marchenko &
  Pastur 1967): the depth-1 linear Jacobian spectrum of
  :func:`meanfield.jacobian_spectrum`, whose ``S_{W^T W} = 1/(sigma_w2 (1 +
  z))`` is this law's S-transform.

Eigenvalues are computed in float64 with NumPy.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

import meanfield
from empirical import inits
from figures import _common

SIGMA_W2 = 2.0


def _settings(paper: bool) -> dict:
  return dict(width=1000, n_matrices=8) if paper else dict(width=400, n_matrices=3)


def _draw(net: meanfield.Network, *, key, n_matrices: int) -> np.ndarray:
  """``(n_matrices, N, N)`` float64 weight matrices of ``net``'s layers, ``N = net.width``, drawn
  by its ``init`` at its ``sigma_w2`` (Flax layout ``(fan_in, fan_out)``)."""
  init_fn = inits.init(net.init).initializer(net.sigma_w2)
  keys = jax.random.split(key, n_matrices)
  return np.stack([np.asarray(init_fn(k, (net.width, net.width), jnp.float64)) for k in keys])


def marchenko_pastur(lam: np.ndarray, sigma_w2: float) -> np.ndarray:
  """Marchenko-Pastur density of ratio 1 and scale ``sigma_w2`` at ``lam`` (float64, shape of ``lam``)."""
  lam = np.asarray(lam, np.float64)
  inside = (lam > 0) & (lam < 4 * sigma_w2)
  safe = np.where(inside, lam, 1.0)
  return np.where(inside, np.sqrt(safe * (4 * sigma_w2 - safe)) / (2 * np.pi * sigma_w2 * safe),
                  0.0)


def _circle(ax, radius: float, **kwargs) -> None:
  t = np.linspace(0, 2 * np.pi, 400)
  ax.plot(radius * np.cos(t), radius * np.sin(t), **kwargs)


def _plane(ax, eig: np.ndarray, radius: float, *, title: str, color: str) -> None:
  _circle(ax, radius, color="k", lw=0.8, ls="--", zorder=1,
          label=f"radius $\\sqrt{{\\sigma_w^2}} = {radius:.3g}$")
  ax.scatter(eig.real, eig.imag, s=3, color=color, alpha=0.7, lw=0, zorder=2,
             label="eigenvalues")
  ax.set_aspect("equal")
  lim = 1.25 * radius
  ax.set_xlim(-lim, lim)
  ax.set_ylim(-lim, lim)
  ax.axhline(0, color="0.8", lw=0.5, zorder=0)
  ax.axvline(0, color="0.8", lw=0.5, zorder=0)
  ax.set_xlabel(r"$\mathrm{Re}\,\lambda$")
  ax.set_ylabel(r"$\mathrm{Im}\,\lambda$")
  ax.set_title(title)
  ax.legend(loc="upper right", fontsize=7.5, markerscale=3)


SECONDS = 14   # measured: default settings, 2-core CPU, one figure at a time


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  settings = _settings(paper)
  width, n_matrices = settings["width"], settings["n_matrices"]
  # A depth-1 linear network: W^T W is its Jacobian's J^T J (the Marchenko-Pastur panel).
  net = meanfield.Network(activation="linear", sigma_w2=SIGMA_W2, depth=1, width=width)
  with jax.enable_x64(True):
    gauss = _draw(net, key=jax.random.key(0), n_matrices=n_matrices)
    orth = _draw(net.replace(init="orthogonal"), key=jax.random.key(1), n_matrices=n_matrices)
  eig_gauss = np.linalg.eigvals(gauss)          # (n_matrices, width) complex128
  eig_orth = np.linalg.eigvals(orth)
  eig_wtw = np.linalg.eigvalsh(np.swapaxes(gauss, -1, -2) @ gauss)
  radius = np.sqrt(SIGMA_W2)

  fig, axes = _common.subplots(2, 2, figsize=(9.0, 8.4))
  _plane(axes[0, 0], eig_gauss.ravel(), radius, color="#2166ac",
         title="Gaussian $W$: circular law")
  _plane(axes[0, 1], eig_orth.ravel(), radius, color="#b2182b",
         title=r"orthogonal $W$ ($W^TW = \sigma_w^2 I$): circle")

  ax = axes[1, 0]
  u = np.abs(eig_gauss.ravel()) ** 2 / SIGMA_W2
  edges = np.linspace(0, 1.2, 25)
  counts, _ = np.histogram(u, bins=edges)
  ax.stairs(counts / (u.size * np.diff(edges)), edges, fill=True, color="#2166ac", alpha=0.4,
            label="Gaussian $W$")
  ax.plot([0, 1, 1, 1.2], [1, 1, 0, 0], color="k", lw=1.3, label="circular law (uniform)")
  ax.set_xlabel(r"$|\lambda|^2 / \sigma_w^2$ ($\lambda$ eigenvalue of $W$)")
  ax.set_ylabel("density")
  ax.set_title(r"radial law: $|\lambda|^2/\sigma_w^2$ uniform on $[0, 1]$")
  ax.legend(loc="lower left", fontsize=7.5)

  ax = axes[1, 1]
  lam = eig_wtw.ravel()
  edges = np.linspace(0, 4.3 * SIGMA_W2, 44)
  counts, _ = np.histogram(lam, bins=edges)
  ax.stairs(counts / (lam.size * np.diff(edges)), edges, fill=True, color="#2166ac", alpha=0.4,
            label="Gaussian $W$")
  grid = np.linspace(1e-4, 4.3 * SIGMA_W2, 800)
  ax.plot(grid, marchenko_pastur(grid, SIGMA_W2), color="k", lw=1.3, label="Marchenko-Pastur")
  ax.set_ylim(0, 1.6 / SIGMA_W2)
  ax.set_xlabel(r"eigenvalue $\lambda$ of $W^TW$")
  ax.set_ylabel(r"density $\rho(\lambda)$")
  ax.set_title(r"$W^TW$: Marchenko-Pastur on $[0, 4\sigma_w^2]$")
  ax.legend(loc="upper right", fontsize=7.5)

  fig.suptitle(f"weight matrices $N \\times N$, $N = {width}$, $\\sigma_w^2 = {SIGMA_W2:g}$, "
               f"{n_matrices} matrices per panel")
  data = xr.Dataset(
      {"eig_gaussian_real": (("matrix", "index"), eig_gauss.real),
       "eig_gaussian_imag": (("matrix", "index"), eig_gauss.imag),
       "eig_orthogonal_real": (("matrix", "index"), eig_orth.real),
       "eig_orthogonal_imag": (("matrix", "index"), eig_orth.imag),
       "eig_wtw_gaussian": (("matrix", "index"), eig_wtw),
       "mp_density": (("lam",), marchenko_pastur(grid, SIGMA_W2))},
      coords={"lam": grid},
      attrs={"sigma_w2": SIGMA_W2, "width": width})
  return _common.save(fig, data, pathlib.Path(outdir) / "weight_eigenvalues")
