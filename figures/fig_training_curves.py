"""Training curves under different initializations: He vs Xavier, Gaussian vs orthogonal, constant.

Test accuracy against SGD step on scikit-learn's digits (:func:`empirical.train`),
mean over seeds with the range of the seeds shaded. Left: deep ReLU networks
with He (``sigma_w2 = 2``, critical for ReLU: ``chi_1 = sigma_w2 / 2``) and
Xavier (``sigma_w2 = 1`` for square layers: signals shrink by half a layer,
``q^L ~ 2^-L``) initialization, and a constant init (every weight 0.05),
whose hidden units all stay equal (one symmetric unit per layer: the
symmetry is never broken by gradient descent). Right: tanh networks at the
critical point (``sigma_w2 = 1.761``, ``sigma_b2 = 0.05``) with Gaussian and
with orthogonal weights of the same variance.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import xarray as xr

import empirical
import meanfield
from figures import _common

SECONDS = 33   # measured: default settings, 2-core CPU, one figure at a time

RELU_INITS = ("he_normal", "xavier_normal", "constant(0.05)")
TANH_INITS = ("gaussian", "orthogonal")
CRITICAL_TANH = 1.761   # meanfield.critical_sigma_w2(sigma_b2=0.05, activation="tanh")
COLORS = {"he_normal": "#1b9e77", "xavier_normal": "#d95f02", "constant(0.05)": "#7570b3",
          "gaussian": "#1b9e77", "orthogonal": "#e7298a"}
LABELS = {"he_normal": r"He ($\sigma_w^2 = 2$)", "xavier_normal": r"Xavier ($\sigma_w^2 = 1$)",
          "constant(0.05)": r"constant ($W_{ij} = 0.05$)",
          "gaussian": "Gaussian", "orthogonal": "orthogonal"}


def compute(*, relu_depth: int, tanh_depth: int, width: int, n_seeds: int, n_steps: int,
            progress: bool = True) -> xr.Dataset:
  # One Network per panel. Each trains under a list of inits in one call, so its other
  # fields go in as keywords; the ReLU schemes fix sigma_w2 themselves (sigma_w2=None).
  relu_net = meanfield.Network(activation="relu", sigma_b2=0.0, depth=relu_depth, width=width)
  tanh_net = meanfield.Network(activation="tanh", sigma_w2=CRITICAL_TANH, sigma_b2=0.05,
                               depth=tanh_depth, width=width)
  common = dict(data="digits", n_seeds=n_seeds, optimizer="sgd",
                n_steps=n_steps, batch_size=32, record_every=max(n_steps // 20, 1),
                probe_size=64, progress=progress)
  relu = empirical.train(jax.random.key(0), activation=relu_net.activation,
                         depth=relu_net.depth, width=relu_net.width, init=list(RELU_INITS),
                         sigma_w2=None, sigma_b2=relu_net.sigma_b2, learning_rate=0.01,
                         **common)
  tanh = empirical.train(jax.random.key(1), activation=tanh_net.activation,
                         depth=tanh_net.depth, width=tanh_net.width, init=list(TANH_INITS),
                         sigma_w2=tanh_net.sigma_w2, sigma_b2=tanh_net.sigma_b2,
                         learning_rate=0.05, **common)
  return xr.Dataset(
      {
          "relu_test_accuracy": relu.test_accuracy.rename(init="relu_init").reset_coords(drop=True),
          "relu_train_loss": relu.train_loss.rename(init="relu_init").reset_coords(drop=True),
          "relu_q_last": relu.q.sel(step=0).isel(layer=-1).rename(init="relu_init").reset_coords(drop=True),
          "tanh_test_accuracy": tanh.test_accuracy.rename(init="tanh_init").reset_coords(drop=True),
          "tanh_train_loss": tanh.train_loss.rename(init="tanh_init").reset_coords(drop=True),
      },
      attrs={"relu_depth": relu_depth, "tanh_depth": tanh_depth, "width": width,
             "n_seeds": n_seeds, "n_steps": n_steps, "relu_learning_rate": 0.01,
             "tanh_learning_rate": 0.05, "tanh_sigma_w2": CRITICAL_TANH, "tanh_sigma_b2": 0.05,
             "optimizer": "sgd", "batch_size": 32, "data": "digits"},
  )


def _band(ax, steps, values, color, label, ls="-"):
  """Mean over seeds (first axis) with the seeds' range shaded."""
  ax.plot(steps, np.nanmean(values, axis=0), color=color, label=label, ls=ls)
  ax.fill_between(steps, np.nanmin(values, axis=0), np.nanmax(values, axis=0), color=color,
                  alpha=0.2, lw=0)


def draw(ds: xr.Dataset):
  fig, (ax_r, ax_t) = _common.subplots(1, 2, figsize=(9.6, 3.8), sharey=True)
  steps = ds.step.values
  for init in ds.relu_init.values:
    # Dashed for the constant init, so that a curve beneath it stays visible.
    _band(ax_r, steps, ds.relu_test_accuracy.sel(relu_init=init).values, COLORS[init],
          LABELS[init], ls="--" if init.startswith("constant") else "-")
  for init in ds.tanh_init.values:
    _band(ax_t, steps, ds.tanh_test_accuracy.sel(tanh_init=init).values, COLORS[init],
          LABELS[init])
  ax_r.set_title(f"ReLU, depth {ds.attrs['relu_depth']}, width {ds.attrs['width']}")
  ax_t.set_title(fr"tanh at criticality ($\sigma_w^2$ = {ds.attrs['tanh_sigma_w2']}, "
                 fr"$\sigma_b^2$ = {ds.attrs['tanh_sigma_b2']}), depth {ds.attrs['tanh_depth']}")
  for ax in (ax_r, ax_t):
    ax.axhline(0.1, color="0.6", lw=0.8, ls=":")
    ax.set_xlabel("SGD step")
    ax.set_ylim(0, 1)
  # ReLU: the curves fill the lower right (Xavier and constant stay at chance), the upper left
  # is empty; tanh: the curves rise at once to the top, the lower right is empty.
  ax_r.legend(loc="upper left")
  ax_t.legend(loc="lower right")
  ax_r.set_ylabel(f"test accuracy (mean, range of {ds.attrs['n_seeds']} seeds)")
  # Below the chance line at the right end, where no curve dips below chance.
  ax_r.text(0.98, 0.085, "chance", transform=ax_r.get_yaxis_transform(), color="0.5",
            fontsize=8, ha="right", va="top")
  return fig


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  """Write ``training_curves.png`` and ``training_curves.nc``."""
  if paper:
    ds = compute(relu_depth=50, tanh_depth=50, width=256, n_seeds=8, n_steps=3000, progress=progress)
  else:
    ds = compute(relu_depth=30, tanh_depth=30, width=64, n_seeds=3, n_steps=600, progress=progress)
  return _common.save(draw(ds), ds, pathlib.Path(outdir) / "training_curves")
