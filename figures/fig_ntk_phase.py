"""Trainability and generalisation over (sigma_w2, depth) from the NTK: condition number and the predictor's data dependence, with xi_1 and xi_*.

After Xiao, Pennington & Schoenholz 2020 (Fig. 1, theory): for erf networks
(``sigma_b2 = 0.05``) on ``M`` digits, the condition number of the
infinite-width NTK of the training inputs (left) passes any bound beyond a
few ``xi_1 = -1/log chi_1`` layers in the ordered phase; in the chaotic phase
the mean predictor of infinite-width gradient descent forgets the inputs
(right: the spread of its rows over the test inputs, relative to its size)
beyond a few ``xi_* = -1/(log chi_c* - log chi_1)``. Lines: ``6 xi_1`` and
``6 xi_*`` (:func:`meanfield.depth_scales`). The whole grid is one
:func:`meanfield.ntk` call (one compiled program over sigma_w2 and depth).
White: condition number beyond float64's resolution.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import xarray as xr

import empirical
import meanfield
from figures import _common

ACTIVATION = "erf"   # closed-form pair integrals: the grid takes seconds (tanh's 2-D rule, minutes)
SIGMA_B2 = 0.05
SIGMA_W2_RANGE = (0.5, 5.0)
LINE = 6.0          # depth = LINE * xi drawn on the diagram


def _data_dependence(predictor: np.ndarray) -> np.ndarray:
  """Spread of the predictor's rows over the test inputs, relative to their size: ``(..., L)``."""
  mean = predictor.mean(axis=-2, keepdims=True)
  spread = np.abs(predictor - mean).sum(-1).mean(-1)
  return spread / np.abs(mean).sum(-1)[..., 0]


def compute(*, n_sigma: int, depth: int, n_train: int, n_test: int) -> xr.Dataset:
  """log10 condition number and predictor data dependence on (sigma_w2, layer)."""
  sigma_w2 = np.linspace(*SIGMA_W2_RANGE, n_sigma)
  with jax.enable_x64(True):
    data = empirical.load_digits(key=jax.random.PRNGKey(0), dtype=np.float64)
    x = np.asarray(data.x_train[:n_train + n_test], np.float64)
    k = meanfield.ntk(gram=x @ x.T / x.shape[1], depth=depth, activation=ACTIVATION,
                      sigma_w2=sigma_w2, sigma_b2=SIGMA_B2, n_train=n_train)
    cond, pred = np.asarray(k.ntk_condition), np.asarray(k.predictor)
    scales = meanfield.depth_scales(sigma_w2=sigma_w2, sigma_b2=SIGMA_B2, activation=ACTIVATION)
    crit = float(meanfield.critical_sigma_w2(sigma_b2=SIGMA_B2, activation=ACTIVATION))
  dims = ("sigma_w2", "layer")
  return xr.Dataset(
      {"log10_condition": (dims, np.log10(cond)),
       "log10_data_dependence": (dims, np.log10(_data_dependence(pred))),
       "xi_1": (("sigma_w2",), np.asarray(scales.xi_1)),
       "xi_star": (("sigma_w2",), np.asarray(scales.xi_star)),
       "critical_sigma_w2": ((), crit)},
      coords={"sigma_w2": sigma_w2, "layer": np.arange(1, depth + 1)},
      attrs={"activation": ACTIVATION, "sigma_b2": SIGMA_B2, "n_train": n_train,
             "n_test": n_test, "inputs": "digits (standardised), training split"})


def draw(ds: xr.Dataset):
  fig, axes = _common.subplots(1, 2, figsize=(11.0, 4.4))
  w, layer = ds.sigma_w2.values, ds.layer.values
  panels = (("log10_condition", r"$\log_{10}$ NTK condition number", "xi_1", r"$\xi_1$"),
            ("log10_data_dependence", r"$\log_{10}$ predictor's data dependence", "xi_star",
             r"$\xi_*$"))
  for ax, (name, label, xi, xi_label) in zip(axes, panels):
    z = ds[name].values.T
    finite = z[np.isfinite(z)]
    mesh = ax.pcolormesh(w, layer, z, shading="nearest", cmap="viridis",
                         vmin=float(finite.min()), vmax=float(finite.max()))
    fig.colorbar(mesh, ax=ax, label=label)
    ax.plot(w, LINE * ds[xi].values, color="w", lw=1.8, label=rf"${LINE:g}\,${xi_label}")
    ax.axvline(float(ds.critical_sigma_w2), color="w", ls=":", lw=1.0, label="critical")
    ax.set_ylim(layer[0], layer[-1])
    ax.set_xlabel(_common.LABELS["sigma_w2"])
    ax.set_ylabel(r"depth $l$ (layers)")
    ax.legend(loc="upper right", fontsize=8, facecolor="0.3", labelcolor="w")
  axes[0].set_title("trainability: conditioning (ordered side)")
  axes[1].set_title("generalisation: data dependence (chaotic side)")
  fig.suptitle(rf"{ds.attrs['activation']}, $\sigma_b^2 = {ds.attrs['sigma_b2']:g}$, "
               f"{ds.attrs['n_train']} training digits (theory, infinite width); "
               "white: condition number beyond float64's resolution")
  return fig


SECONDS = 21   # measured: default settings, 2-core CPU, one figure at a time


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  """Write ``ntk_phase.png`` and ``ntk_phase.nc``."""
  if paper:
    ds = compute(n_sigma=141, depth=300, n_train=12, n_test=4)
  else:
    ds = compute(n_sigma=57, depth=100, n_train=6, n_test=3)
  return _common.save(draw(ds), ds, pathlib.Path(outdir) / "ntk_phase")
