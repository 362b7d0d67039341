"""Per-layer statistics over training: activation variance, gradient norm, weight variance and spectrum, good vs bad init.

Deep tanh networks (``sigma_b2 = 0.05``) trained with SGD on scikit-learn's
digits (:func:`empirical.train`); each curve is one recorded step (colour:
step, dark = early), against the layer ``l``, mean over seeds. Top row: a
good init at the critical point (``sigma_w2 = 1.761``, ``chi_1 = 1``);
bottom: a bad one deep in the ordered phase (``sigma_w2 = 0.5``,
``chi_1 = 0.43``, ``6 xi_c = 7`` layers), whose signal collapses and whose
gradients vanish towards the input. Columns: variance of the
post-activations ``phi(h^l)`` on a probe batch; norm of the training loss's
gradient ``dLoss/dW^l``; each layer's weight variance in the theory's terms
``fan_in mean(W_ij^2)`` with its 10-90% quantile band (as the weights'
spread); the largest singular value of ``W^l``.
"""

from __future__ import annotations

import pathlib

import jax
import matplotlib
import numpy as np
import xarray as xr

import empirical
import meanfield
from figures import _common

ACTIVATION = "tanh"
SIGMA_B2 = 0.05
GOOD, BAD = 1.761, 0.5   # critical (meanfield.critical_sigma_w2) and far in the ordered phase


def compute(*, depth: int, width: int, n_seeds: int, n_steps: int,
            progress: bool = True) -> xr.Dataset:
  record = sorted({0, *np.geomspace(1, max(n_steps, 1), 6).astype(int).tolist()})
  # One Network, the critical and the ordered sigma_w2 its one axis: train runs both.
  net = meanfield.Network(activation=ACTIVATION, sigma_w2=[GOOD, BAD], sigma_b2=SIGMA_B2,
                          depth=depth, width=width)
  ds = empirical.train(jax.random.key(0), network=net, data="digits", n_seeds=n_seeds,
                       optimizer="sgd", learning_rate=0.05, n_steps=n_steps, batch_size=32,
                       record_steps=[s for s in record if s <= n_steps], probe_size=128,
                       weight_quantile=(0.1, 0.5, 0.9), progress=progress)
  keep = ["post_var", "loss_grad_w", "layer_sigma_w2", "weight_quantiles", "sv_max",
          "test_accuracy", "train_loss"]
  out = ds[keep]
  out.attrs = {"activation": ACTIVATION, "sigma_b2": SIGMA_B2, "depth": depth, "width": width,
               "n_seeds": n_seeds, "n_steps": n_steps, "learning_rate": 0.05,
               "optimizer": "sgd", "batch_size": 32, "data": "digits", "good_sigma_w2": GOOD,
               "bad_sigma_w2": BAD,
               "in_features": ds.attrs["n_features"]}
  return out


def draw(ds: xr.Dataset):
  fig, axes = _common.subplots(2, 4, figsize=(14.0, 6.4), sharex=True)
  steps = ds.step.values
  cmap = matplotlib.colormaps["viridis"]
  colors = [cmap(i / max(len(steps) - 1, 1)) for i in range(len(steps))]
  layers = ds.layer.values
  width = ds.attrs["width"]
  fan_in = np.r_[ds.attrs["in_features"], np.full(len(layers) - 1, width)]
  for row, (sigma_w2, name) in enumerate(((ds.attrs["good_sigma_w2"], "critical"),
                                          (ds.attrs["bad_sigma_w2"], "ordered"))):
    net = ds.sel(sigma_w2=sigma_w2).mean("seed")
    for s, step in enumerate(steps):
      at = net.sel(step=step)
      acc = float(at.test_accuracy)
      label = f"step {step} (test acc. {acc:.2f})"
      axes[row, 0].plot(layers, at.post_var, color=colors[s], label=label)
      axes[row, 1].plot(layers, at.loss_grad_w, color=colors[s])
      # The weights' spread: the 10-90% quantile range as a Gaussian-equivalent
      # variance, fan_in ((w_90 - w_10) / (2 z_90))^2 with z_90 = 1.2816 (dotted);
      # it equals fan_in mean(W^2) (solid) while the distribution stays Gaussian.
      spread = fan_in * ((at.weight_quantiles.sel(weight_quantile=0.9)
                          - at.weight_quantiles.sel(weight_quantile=0.1)) / (2 * 1.2816)) ** 2
      axes[row, 2].plot(layers, at.layer_sigma_w2, color=colors[s])
      axes[row, 2].plot(layers, spread, color=colors[s], ls=":", lw=1.2)
      axes[row, 3].plot(layers, at.sv_max, color=colors[s])
    axes[row, 0].set_ylabel(f"{name}\n" + fr"$\sigma_w^2$ = {sigma_w2:g}" + "\n"
                            + r"Var $\phi(h^l)$")
    axes[row, 0].legend(fontsize=7, loc="best")
    axes[row, 1].set_yscale("log")
    axes[row, 1].set_ylabel(r"$\|\partial \mathcal{L} / \partial W^l\|_F$")
    axes[row, 2].set_ylabel(r"$N_{l-1}\,\overline{W_{ij}^2}$ (dotted: from quantiles)")
    axes[row, 3].set_ylabel(r"largest singular value of $W^l$")
  for ax in axes[1]:
    ax.set_xlabel(_common.LABELS["layer"])
  fig.suptitle(fr"tanh, depth {ds.attrs['depth']}, width {width}, $\sigma_b^2$ = "
               f"{ds.attrs['sigma_b2']}, SGD (lr {ds.attrs['learning_rate']}) on digits; "
               f"mean of {ds.attrs['n_seeds']} seeds")
  return fig


SECONDS = 8   # measured: default settings, 2-core CPU, one figure at a time


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  """Write ``training_dynamics.png`` and ``training_dynamics.nc``."""
  if paper:
    ds = compute(depth=50, width=256, n_seeds=8, n_steps=3000, progress=progress)
  else:
    ds = compute(depth=20, width=64, n_seeds=2, n_steps=600, progress=progress)
  return _common.save(draw(ds), ds, pathlib.Path(outdir) / "training_dynamics")
