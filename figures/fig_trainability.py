"""Trainability of deep tanh networks on digits: test accuracy over depth and sigma_w2, with 6 xi_c.

After Schoenholz et al. 2017 (Fig. 5/6): networks of ``depth`` tanh layers at
bias variance ``sigma_b2 = 0.05`` and weight variance ``sigma_w2`` are trained
with SGD on scikit-learn's digits (:func:`empirical.train`), all
``sigma_w2`` and seeds of a depth together, and the colour is the test
accuracy after a fixed number of steps. Theory on top: ``6 xi_c``
(:func:`meanfield.depth_scales`), the depth up to which correlations between
inputs survive and the network is predicted to train, and the critical line
(:func:`meanfield.critical_sigma_w2`), where ``xi_c`` diverges. Default: width
32, 400 steps; ``--paper``: width 128, more depths, 3 seeds, 2000 steps.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import xarray as xr

import empirical
import meanfield
from figures import _common

ACTIVATION = "tanh"
SIGMA_B2 = 0.05


def compute(*, depths, sigma_w2, width: int, n_seeds: int, n_steps: int,
            progress: bool = True) -> xr.Dataset:
  """Final test accuracy over depth x sigma_w2 (mean over seeds), with the theory."""
  ds = empirical.train(jax.random.key(0), data="digits", activation=ACTIVATION, width=width,
                       depth=list(depths), sigma_w2=list(sigma_w2), sigma_b2=SIGMA_B2,
                       n_seeds=n_seeds, optimizer="sgd", learning_rate=0.05, n_steps=n_steps,
                       batch_size=32, record_steps=[0, n_steps], probe_size=64,
                       progress=progress)
  with jax.enable_x64(True):
    fine = np.linspace(min(sigma_w2), max(sigma_w2), 400)
    xi_c = np.asarray(meanfield.depth_scales(sigma_w2=fine, sigma_b2=SIGMA_B2,
                                             activation=ACTIVATION).xi_c)
    critical = float(meanfield.critical_sigma_w2(sigma_b2=SIGMA_B2, activation=ACTIVATION))
  final = ds.sel(step=n_steps)
  return xr.Dataset(
      {
          "test_accuracy": final.test_accuracy.mean("seed"),
          "test_accuracy_seeds": final.test_accuracy,
          "train_loss": final.train_loss.mean("seed"),
          "diverged": final.diverged.any("seed"),
          "xi_c": (("sigma_w2_fine",), xi_c),
      },
      coords={"sigma_w2_fine": fine},
      attrs={"activation": ACTIVATION, "sigma_b2": SIGMA_B2, "critical_sigma_w2": critical,
             "width": width, "n_steps": n_steps, "n_seeds": n_seeds, "optimizer": "sgd",
             "learning_rate": 0.05, "batch_size": 32, "data": "digits",
             "chance": float(1.0 / ds.attrs["n_classes"])},
  )


def _edges(values: np.ndarray) -> np.ndarray:
  """Cell edges around (possibly uneven) grid values."""
  mid = (values[1:] + values[:-1]) / 2
  return np.concatenate([[values[0] - (mid[0] - values[0])], mid,
                         [values[-1] + (values[-1] - mid[-1])]])


def draw(ds: xr.Dataset):
  fig, ax = _common.subplots(figsize=(6.2, 4.4))
  w = ds.sigma_w2.values
  d = ds.depth.values
  acc = ds.test_accuracy.transpose("depth", "sigma_w2").values
  mesh = ax.pcolormesh(_edges(w), _edges(d.astype(float)), acc, cmap="viridis", vmin=0.0,
                       vmax=1.0, shading="flat")
  fig.colorbar(mesh, ax=ax, label=f"test accuracy after {ds.attrs['n_steps']} steps")
  xi = ds.xi_c.values
  top = _edges(d.astype(float))[-1]
  ax.plot(ds.sigma_w2_fine, np.minimum(6 * xi, 10 * top), color="white", lw=2,
          ls="--", label=r"$6\,\xi_c$")
  ax.axvline(ds.attrs["critical_sigma_w2"], color=_common.PHASE_COLORS["critical"], lw=1.4,
             label=fr"critical $\sigma_w^2$ = {ds.attrs['critical_sigma_w2']:.3f}")
  ax.set_ylim(_edges(d.astype(float))[0], top)
  ax.set_yticks(d)   # the trained depths, at the centres of their rows
  ax.set_xlim(_edges(w)[0], _edges(w)[-1])
  ax.set_xlabel(_common.LABELS["sigma_w2"])
  ax.set_ylabel(_common.LABELS["depth"])
  ax.set_title(fr"tanh, $\sigma_b^2$ = {ds.attrs['sigma_b2']}, width {ds.attrs['width']}, "
               f"SGD on digits (chance 0.1)")
  ax.legend(loc="upper right", frameon=True, framealpha=0.85)
  return fig


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  """Write ``trainability.png`` and ``trainability.nc``."""
  if paper:
    ds = compute(depths=[5, 10, 20, 30, 40, 60, 80, 100, 150, 200],
                 sigma_w2=np.linspace(0.5, 4.0, 22), width=128, n_seeds=3, n_steps=2000, progress=progress)
  else:
    ds = compute(depths=[4, 12, 24, 48], sigma_w2=np.linspace(0.5, 4.0, 15), width=32,
                 n_seeds=1, n_steps=400, progress=progress)
  return _common.save(draw(ds), ds, pathlib.Path(outdir) / "trainability")
