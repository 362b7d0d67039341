"""Phase diagram of a circular tanh CNN with the depth scales of its spatial Fourier modes.

After Xiao et al. 2018 (Sec. 2.4). A CNN's covariance across positions has
the MLP's fixed point, but near it the map decouples into Fourier modes
``f`` along the diagonals of the covariance (docs/conv.md): mode ``f``
shrinks by ``chi_c lambda_f`` per layer, ``lambda_f`` the Fourier transform
of the kernel's footprint (uniform over ``k = 3`` taps: the Dirichlet kernel
``sin(pi f k/n) / (k sin(pi f/n))``, ``n = 16`` positions). So
``1/xi_{c,f} = 1/xi_c - log|lambda_f|``: mode 0 carries the MLP's
``xi_c``, which diverges on the critical line, while every other mode keeps
a finite depth scale there (left: mode 0, middle: mode 1). Right: the
depth scales along ``sigma_b2 = 0.05`` for each mode (solid: Gaussian kernels,
the uniform footprint), measured from iterating the full covariance map of
:meth:`meanfield.Conv.covariance_map` (dots: the per-layer shrink of a small
perturbation in mode f at lag 1); a delta-orthogonal kernel (``lambda_f = 1``) gives
every mode the MLP's ``xi_c`` (dashed); ``f = 8`` has ``lambda = -1/3``,
the same depth scale as ``f = 4``, alternating in sign (dotted). Theory only, 64-bit
(:func:`meanfield.phase_diagram` of one ``Network`` with ``arch=meanfield.Conv(...)``
whose variances are the grid's two axes).
"""

from __future__ import annotations

import pathlib

import jax
import matplotlib.colors
import numpy as np
import xarray as xr

import meanfield
from meanfield.conv import spatial_modes
from figures import _common

ACTIVATION = "tanh"
KERNEL_SIZE, SPATIAL_SIZE = 3, 16
SIGMA_B2_LINE = 0.05
ARCH = meanfield.Conv(kernel_size=KERNEL_SIZE, spatial_size=SPATIAL_SIZE)
MODES = (0, 1, 2, 4, 8)


def _settings(paper: bool) -> dict:
  return dict(n_w=351, n_b=121, n_check=12) if paper else dict(n_w=71, n_b=31, n_check=4)


def _iterated_slopes(line: meanfield.Network):
  """The shrink in one step of the full map of a 1e-7 perturbation in off-diagonal mode f (lag 1).

  ``line``: the CNN with a 1-d ``sigma_w2``. Returns ``(len(line.sigma_w2), len(MODES))``;
  one batched call of the map.
  """
  fp = meanfield.fixed_point(line)
  star = np.asarray(fp.extra["covariance"])[:, None]                       # (w, 1, n, n)
  a = np.arange(SPATIAL_SIZE)
  pert = np.zeros((len(MODES), SPATIAL_SIZE, SPATIAL_SIZE))
  for i, f in enumerate(MODES):
    # lowers the correlations (c <= 1 where c* = 1): a uniform shift plus mode f
    pert[i, a, (a + 1) % SPATIAL_SIZE] = -(1 + 0.5 * np.cos(2 * np.pi * f * a / SPATIAL_SIZE))
  pert = 1e-7 * np.asarray(fp.q_star)[:, None, None, None] * (pert + np.swapaxes(pert, -1, -2))
  after = line.arch.covariance_map(star + pert, sigma_w2=line.sigma_w2[:, None],
                                   sigma_b2=line.sigma_b2, activation=line.activation)
  modes = np.asarray(MODES)
  m0 = np.asarray(spatial_modes(pert))[:, np.arange(len(MODES)), modes, 1].real
  m1 = np.asarray(spatial_modes(np.asarray(after) - star))
  return m1[:, np.arange(len(MODES)), modes, 1].real / m0


def compute(*, n_w: int, n_b: int, n_check: int) -> xr.Dataset:
  grid = meanfield.Network(activation=ACTIVATION, sigma_w2=np.linspace(0.5, 4.0, n_w),
                           sigma_b2=np.linspace(0.0, 0.3, n_b), arch=ARCH)
  check_w2 = np.linspace(0.9, 3.5, n_check)
  b_line = np.concatenate([[0.0], np.geomspace(1e-6, 0.3, 120)])
  with jax.enable_x64(True):
    ds = meanfield.phase_diagram(grid)          # the outer product of the two 1-d axes
    checks = _iterated_slopes(grid.replace(sigma_w2=check_w2, sigma_b2=SIGMA_B2_LINE))
    # The CNN's critical line is the MLP's (mode 0 carries the MLP's chi_1).
    crit = meanfield.critical_sigma_w2(grid.replace(sigma_b2=b_line, arch=meanfield.MLP()))
  return ds.assign(
      check_slope_c=(("check_sigma_w2", "mode"), checks),
      critical_line_sigma_w2=(("line_sigma_b2",), np.asarray(crit)),
  ).assign_coords(check_sigma_w2=check_w2, mode=list(MODES),
                  line_sigma_b2=b_line).assign_attrs(activation=ACTIVATION,
                                                     sigma_b2_line=SIGMA_B2_LINE)


def _map(ax, fig, ds, values, title):
  w, b = ds.sigma_w2.values, ds.sigma_b2.values
  v = np.where(np.isfinite(values), values, np.nan).T
  mesh = ax.pcolormesh(w, b, v, norm=matplotlib.colors.LogNorm(vmin=0.5, vmax=200),
                       cmap="magma", shading="nearest", rasterized=True)
  ax.plot(ds.critical_line_sigma_w2, ds.line_sigma_b2, color="w", lw=1.2, ls="--",
          label=r"critical line $\chi_1 = 1$")
  ax.axhline(SIGMA_B2_LINE, color="0.6", lw=0.8, ls=":")
  ax.set(xlabel=_common.LABELS.get("sigma_w2", r"$\sigma_w^2$"),
         ylabel=_common.LABELS.get("sigma_b2", r"$\sigma_b^2$"), title=title,
         xlim=(w[0], w[-1]), ylim=(b[0], b[-1]))
  fig.colorbar(mesh, ax=ax).set_label("depth scale (layers)")


def draw(ds: xr.Dataset):
  fig, axes = _common.subplots(1, 3, figsize=(14.5, 4.0))
  _map(axes[0], fig, ds, ds.xi_c_mode.sel(frequency=0).values,
       r"$\xi_{c,0}$ (= MLP's $\xi_c$): diverges at criticality")
  _map(axes[1], fig, ds, ds.xi_c_mode.sel(frequency=1).values,
       rf"$\xi_{{c,1}}$: finite ($\lambda_1 = {float(ds.eigenvalue[1]):.3f}$)")
  axes[0].legend(loc="upper left", fontsize=8)
  ax = axes[2]
  w = ds.sigma_w2.values
  line = ds.xi_c_mode.sel(sigma_b2=SIGMA_B2_LINE, method="nearest")
  lam = ds.eigenvalue.values
  for i, f in enumerate(MODES):
    color = f"C{i}"
    ax.semilogy(w, line.sel(frequency=f), color=color, ls=":" if f == SPATIAL_SIZE // 2 else "-",
                label=rf"$f = {f}$, $\lambda_f = {lam[f]:.2f}$")
    slopes = ds.check_slope_c.sel(mode=f).values
    with np.errstate(divide="ignore"):
      ax.semilogy(ds.check_sigma_w2, -1 / np.log(np.abs(slopes)), "o", color=color, ms=4)
  ax.semilogy(w, line.sel(frequency=0), color="k", ls="--", lw=1,
              label="delta-orthogonal: every $f$")
  ax.set(xlabel=r"$\sigma_w^2$", ylabel=r"$\xi_{c,f}$ (layers)", ylim=(0.2, 500),
         title=rf"modes along $\sigma_b^2 = {SIGMA_B2_LINE}$ (dots: iterated map)")
  ax.legend(fontsize=7, loc="upper right")
  fig.suptitle(f"tanh CNN, circular padding, kernel size {KERNEL_SIZE}, {SPATIAL_SIZE} positions: "
               r"$1/\xi_{c,f} = 1/\xi_c - \log|\lambda_f|$")
  return fig


SECONDS = 32   # measured: default settings, 2-core CPU, one figure at a time


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  ds = compute(**_settings(paper))
  return _common.save(draw(ds), ds, pathlib.Path(outdir) / "cnn_phase")
