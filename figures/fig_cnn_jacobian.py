"""Jacobian singular values of a critical tanh CNN: delta-orthogonal kernels against Gaussian kernels.

After Xiao et al. 2018 (Fig. 3). Tanh at their published critical point
``(sigma_w2, sigma_b2) = (1.05, 2.01e-5)``, where ``q* = 0.0259`` is small
and ``chi_1 = 1``; circular CNN with kernel size 3, ``n = 8`` positions,
``C = 32`` channels, input ``x^0 = phi(sqrt(q*) z)``; the singular values of
``J = d phi(h^L) / d x^0`` (``nC = 256`` of them per network, float64 SVD;
:func:`empirical.jacobian_spectra` with ``arch=meanfield.Conv(3, 8)``) at
depths 8, 32 and 128. A
delta-orthogonal kernel acts on each position alone, so its Jacobian is
block diagonal with one orthogonal-MLP Jacobian per position: the line is
the orthogonal MLP's free-probability density
(:func:`meanfield.jacobian_spectrum`, ``init="orthogonal"``), which stays
within a factor of a few of 1 (dynamical isometry). With Gaussian kernels the
spectrum spreads over decades with depth; the dashed line is the Gaussian
MLP's density, a reference (each layer's block-circulant kernel has, per
spatial frequency, a Gaussian ``C x C`` block, so the same law is expected at
large ``C``; it is not derived here).
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import xarray as xr

import empirical
import meanfield
from empirical import conv
from figures import _common

SIGMA_W2, SIGMA_B2 = 1.05, 2.01e-5
DEPTHS = (8, 32, 128)
INITS = ("delta_orthogonal", "gaussian")
LAWS = {"delta_orthogonal": "orthogonal", "gaussian": "gaussian"}
THEORY_SIGMA = np.logspace(-14, 2, 1200)


def _settings(paper: bool) -> dict:
  return dict(width=128, spatial_size=16, n_seeds=4) if paper else dict(
      width=32, spatial_size=8, n_seeds=2)


def compute(*, width: int, spatial_size: int, n_seeds: int) -> xr.Dataset:
  # The theory is the fully connected network's (see the module docstring); the
  # experiment is the same network as a circular CNN, one per kernel scheme and depth.
  mlp = meanfield.Network(activation="tanh", sigma_w2=SIGMA_W2, sigma_b2=SIGMA_B2, width=width)
  cnn = mlp.replace(arch=meanfield.Conv(kernel_size=3, spatial_size=spatial_size))
  with jax.enable_x64(True):
    q = float(meanfield.q_star(mlp))
    sv = np.stack([np.stack([empirical.jacobian_spectra(
        jax.random.key(10 * d + i), network=cnn.replace(depth=d, init=conv.kernel_init(init)),
        q=q, n_seeds=n_seeds, progress=False).singular_values.values.ravel() for d in DEPTHS])
        for i, init in enumerate(INITS)])
    # Every depth in one call (a Network's depth is one number), the rest from the Network.
    dens = np.stack([np.asarray(meanfield.jacobian_spectrum(
        activation=mlp.activation, sigma_w2=mlp.sigma_w2, sigma_b2=mlp.sigma_b2,
        depth=np.array(DEPTHS), init=LAWS[init], sigma=THEORY_SIGMA).singular_value_density)
        for init in INITS])
  return xr.Dataset(
      {"singular_values": (("init", "depth", "value"), sv),
       "theory_density": (("init", "depth", "sigma"), dens)},
      coords={"init": list(INITS), "depth": list(DEPTHS), "sigma": THEORY_SIGMA},
      attrs={"sigma_w2": SIGMA_W2, "sigma_b2": SIGMA_B2, "q_star": q, "width": width,
             "spatial_size": spatial_size, "n_seeds": n_seeds, "kernel_size": 3})


def draw(ds: xr.Dataset):
  fig, axes = _common.subplots(1, len(DEPTHS), figsize=(13, 3.8))
  edges = np.linspace(-12, 1, 105)
  x = np.log10(THEORY_SIGMA)
  for ax, d in zip(axes, DEPTHS):
    for i, init in enumerate(INITS):
      sv = ds.singular_values.sel(init=init, depth=d).values
      counts, _ = np.histogram(np.log10(np.maximum(sv, 1e-300)), bins=edges)
      ax.stairs(counts / (sv.size * np.diff(edges)), edges, fill=True, alpha=0.35,
                color=f"C{i}", label=f"{init} CNN")
      per_log = ds.theory_density.sel(init=init, depth=d).values * THEORY_SIGMA * np.log(10)
      ax.plot(x, per_log, color=f"C{i}", lw=1.3, ls="-" if i == 0 else "--",
              label=f"{LAWS[init]} MLP theory" + ("" if i == 0 else " (reference)"))
    ax.set_yscale("log")
    ax.set(xlim=(edges[0], edges[-1]), ylim=(1e-3, 30), title=f"depth $L = {d}$",
           xlabel=r"$\log_{10}\sigma$ (singular value of $J$)")
  axes[0].set_ylabel(r"density per unit $\log_{10}\sigma$")
  axes[0].legend(fontsize=7, loc="upper left")
  for ax, d in zip(axes, DEPTHS):
    sv = ds.singular_values.sel(init="gaussian", depth=d).values
    ax.text(0.03, 0.6, f"Gaussian: {np.mean(sv < 10.0 ** edges[0]):.2f} of the mass\n"
            f"below $10^{{{edges[0]:.0f}}}$", transform=ax.transAxes, fontsize=7)
  fig.suptitle(f"tanh CNN at $(\\sigma_w^2, \\sigma_b^2) = ({SIGMA_W2}, {SIGMA_B2})$, "
               f"$q^* = {ds.attrs['q_star']:.4f}$, $C = {ds.attrs['width']}$ channels, "
               f"$n = {ds.attrs['spatial_size']}$ positions, k = 3, "
               f"{ds.attrs['n_seeds']} networks per histogram")
  return fig


SECONDS = 41   # measured: default settings, 2-core CPU, one figure at a time


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  ds = compute(**_settings(paper))
  return _common.save(draw(ds), ds, pathlib.Path(outdir) / "cnn_jacobian")
