"""Rescues for bad initializations: BatchNorm under std 0.01 and 1.0 weights; gradient clipping under an exploding init.

Deep ReLU networks trained with SGD on scikit-learn's digits
(:func:`empirical.train`); test accuracy against step, mean over seeds
with their range shaded, and a cross where networks diverged (nan loss).
Left: weights ``N(0, std^2)`` with std 0.01 (``sigma_w2 = N std^2``, far
below ReLU's critical 2: the signal vanishes layer by layer) and std 1.0
(``sigma_w2 = N``: it explodes), without and with BatchNorm of every
layer's pre-activations (batch statistics, learnable scale and shift).
Right: Gaussian weights with ``sigma_w2 = 3`` (``chi_1 = 1.5``: the forward
signal and the gradients grow by 1.5 per layer), plain SGD and SGD with the
gradient clipped to global norm 1 (``optax.clip_by_global_norm``).
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import xarray as xr

import empirical
import meanfield
from figures import _common

STD_INITS = ("normal(0.01)", "normal(1)")
NORMS = ("none", "batch")
CLIPS = (None, 1.0)
EXPLODING_SIGMA_W2 = 3.0


def compute(*, depth: int, width: int, n_seeds: int, n_steps: int,
            progress: bool = True) -> xr.Dataset:
  common = dict(data="digits", activation="relu", width=width, depth=depth, n_seeds=n_seeds,
                optimizer="sgd", learning_rate=0.01, n_steps=n_steps, batch_size=32,
                record_every=max(n_steps // 20, 1), probe_size=64, probes=False,
                progress=progress)
  bn = [empirical.train(jax.random.key(0), init=list(STD_INITS), sigma_w2=None,
                        arch=meanfield.MLP(norm=None if norm == "none" else norm), **common)
        for norm in NORMS]
  clip = [empirical.train(jax.random.key(1), init="gaussian", sigma_w2=EXPLODING_SIGMA_W2,
                          clip_norm=c, **common)
          for c in CLIPS]
  bn = xr.concat(bn, dim=xr.DataArray(list(NORMS), dims="norm"), coords="minimal",
                 compat="override")
  clip = xr.concat(clip, dim=xr.DataArray(["none", "1"], dims="clip_norm"), coords="minimal",
                   compat="override")
  return xr.Dataset(
      {
          "bn_test_accuracy": bn.test_accuracy.reset_coords(drop=True),
          "bn_train_loss": bn.train_loss.reset_coords(drop=True),
          "bn_diverged_step": bn.diverged_step.reset_coords(drop=True),
          "clip_test_accuracy": clip.test_accuracy.reset_coords(drop=True),
          "clip_train_loss": clip.train_loss.reset_coords(drop=True),
          "clip_diverged_step": clip.diverged_step.reset_coords(drop=True),
      },
      attrs={"depth": depth, "width": width, "n_seeds": n_seeds, "n_steps": n_steps,
             "learning_rate": 0.01, "optimizer": "sgd", "batch_size": 32, "data": "digits",
             "exploding_sigma_w2": EXPLODING_SIGMA_W2},
  )


def _band(ax, steps, values, diverged_step, color, ls, label):
  """Mean over seeds (first axis) with their range; a cross at each divergence."""
  with np.errstate(all="ignore"):
    ax.plot(steps, np.nanmean(values, axis=0), color=color, ls=ls, label=label)
    ax.fill_between(steps, np.nanmin(values, axis=0), np.nanmax(values, axis=0), color=color,
                    alpha=0.15, lw=0)
  for s in np.asarray(diverged_step).ravel():
    if s >= 0:
      ax.plot([s], [0.02], marker="x", color=color, ms=8, mew=2, clip_on=False)


def draw(ds: xr.Dataset):
  fig, (ax_b, ax_c) = _common.subplots(1, 2, figsize=(9.6, 3.9), sharey=True)
  steps = ds.step.values
  colors = {"normal(0.01)": "#2166ac", "normal(1)": "#b2182b"}
  for init in ds.init.values:
    for norm, ls in zip(ds.norm.values, ("--", "-")):
      sel = dict(init=init, norm=norm)
      label = f"std {init[7:-1]}, " + ("BatchNorm" if norm == "batch" else "no norm")
      _band(ax_b, steps, ds.bn_test_accuracy.sel(sel).values,
            ds.bn_diverged_step.sel(sel).values, colors[init], ls, label)
  for clip, color in zip(ds.clip_norm.values, ("#b2182b", "#1a1a1a")):
    label = "plain SGD" if clip == "none" else f"clipped to global norm {clip}"
    _band(ax_c, steps, ds.clip_test_accuracy.sel(clip_norm=clip).values,
          ds.clip_diverged_step.sel(clip_norm=clip).values, color, "-", label)
  ax_b.set_title(f"BatchNorm, ReLU depth {ds.attrs['depth']}, width {ds.attrs['width']}")
  ax_c.set_title(fr"gradient clipping, ReLU $\sigma_w^2$ = {ds.attrs['exploding_sigma_w2']:g} "
                 f"(exploding)")
  for ax in (ax_b, ax_c):
    ax.axhline(0.1, color="0.6", lw=0.8, ls=":")
    ax.set_xlabel("SGD step")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
  ax_b.set_ylabel(f"test accuracy (mean, range of {ds.attrs['n_seeds']} seeds)")
  ax_c.text(0.98, 0.03, "x: diverged (nan loss)", transform=ax_c.transAxes, ha="right",
            fontsize=8, color="0.3")
  return fig


SECONDS = 22   # measured: default settings, 2-core CPU, one figure at a time


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  """Write ``batchnorm_clipping.png`` and ``batchnorm_clipping.nc``."""
  if paper:
    ds = compute(depth=50, width=256, n_seeds=8, n_steps=3000, progress=progress)
  else:
    ds = compute(depth=20, width=64, n_seeds=3, n_steps=600, progress=progress)
  return _common.save(draw(ds), ds, pathlib.Path(outdir) / "batchnorm_clipping")
