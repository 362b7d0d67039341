"""Deep networks on digits: Flax's default initialisation against ``critical_init`` and TAT.

Test accuracy against SGD step on scikit-learn's digits (:func:`empirical.train`;
mean over seeds, range shaded), depth 50, width 64. Left: ReLU networks with
Flax's default kernel initialisation (``lecun_normal``: truncated normal of
variance ``1/fan_in``, zero biases; ``chi_1 = 1/2``, so signals shrink by
``2^-L``) stay at chance; ``meanfield.critical_init("relu", sigma_b2=0)``
(``sigma_w2 = 2``) trains, and the Tailored ReLU of TAT
(``meanfield.tat_transform("relu", depth=L, eta=0.9)``, a leaky ReLU with
``sigma_w2 = 1``) trains fastest. Right: tanh networks with the default init,
``(sigma_w2, sigma_b2) = (1, 0)``, which is itself the end point of tanh's
critical line (``q* = 0``: the network drifts to its linear regime), and with
``critical_init("tanh", sigma_b2=0.05)``: with Gaussian weights both train
slowly at this depth; with orthogonal weights at the same point (the
Jacobian's spectrum concentrated, Pennington et al. 2017) the network trains
at once.
"""

from __future__ import annotations

import functools
import pathlib

import jax
import numpy as np
import xarray as xr

import empirical
import meanfield
from figures import _common

COLORS = {"default": "#d95f02", "critical": "#1b9e77", "tat": "#7570b3",
          "critical_orthogonal": "#e7298a"}
LABELS = {"default": r"Flax default (lecun_normal, $\sigma_w^2 = 1$, $\sigma_b^2 = 0$)",
          "critical": "critical_init, Gaussian", "tat": r"TAT Tailored ReLU ($\eta = 0.9$)",
          "critical_orthogonal": "critical_init, orthogonal"}


def _run(key, net: meanfield.Network, *, learning_rate, common):
  ds = empirical.train(key, network=net, learning_rate=learning_rate, **common)
  return ds.test_accuracy.reset_coords(drop=True)


def compute(*, depth: int, width: int, n_seeds: int, n_steps: int,
            progress: bool = True) -> xr.Dataset:
  common = dict(data="digits", n_seeds=n_seeds, optimizer="sgd",
                n_steps=n_steps, batch_size=32, record_every=max(n_steps // 20, 1),
                probe_size=64, probes=False, progress=progress)
  relu = meanfield.critical_init("relu", sigma_b2=0.0)
  tat = meanfield.tat_transform("relu", depth=depth, eta=0.9)
  tanh = meanfield.critical_init("tanh", sigma_b2=0.05)
  flax_default = empirical.init("truncated_normal")   # lecun_normal: sigma_w2 = 1
  net = functools.partial(meanfield.Network, depth=depth, width=width)   # one per curve
  runs = {
      ("relu", "default"): net(activation="relu", init=flax_default, sigma_w2=1.0),
      ("relu", "critical"): net(activation="relu", sigma_w2=relu.sigma_w2,
                                sigma_b2=relu.sigma_b2),
      ("relu", "tat"): net(activation=tat.activation, sigma_w2=1.0),
      ("tanh", "default"): net(activation="tanh", init=flax_default, sigma_w2=1.0),
      ("tanh", "critical"): net(activation="tanh", sigma_w2=tanh.sigma_w2,
                                sigma_b2=tanh.sigma_b2),
      ("tanh", "critical_orthogonal"): net(activation="tanh", init="orthogonal",
                                           sigma_w2=tanh.sigma_w2, sigma_b2=tanh.sigma_b2),
  }
  rates = {"relu": 0.01, "tanh": 0.05}
  out = {}
  for i, ((family, name), network) in enumerate(runs.items()):
    out[f"{family}_{name}"] = _run(jax.random.key(i), network, learning_rate=rates[family],
                                   common=common)
  return xr.Dataset(
      out, attrs={"depth": depth, "width": width, "n_seeds": n_seeds, "n_steps": n_steps,
                  "relu_learning_rate": rates["relu"], "tanh_learning_rate": rates["tanh"],
                  "tat_negative_slope": tat.negative_slope, "tat_eta": 0.9,
                  "tanh_sigma_w2": tanh.sigma_w2, "tanh_sigma_b2": tanh.sigma_b2,
                  "optimizer": "sgd", "batch_size": 32, "data": "digits"})


def _band(ax, steps, values, color, label):
  ax.plot(steps, np.nanmean(values, axis=0), color=color, label=label)
  ax.fill_between(steps, np.nanmin(values, axis=0), np.nanmax(values, axis=0), color=color,
                  alpha=0.2, lw=0)


def draw(ds: xr.Dataset):
  fig, axes = _common.subplots(1, 2, figsize=(9.6, 4.6), sharey=True)
  for ax, family in zip(axes, ("relu", "tanh")):
    for name in COLORS:
      var = f"{family}_{name}"
      if var in ds:
        _band(ax, ds.step.values, ds[var].values, COLORS[name], LABELS[name])
    ax.axhline(0.1, color="0.6", lw=0.8, ls=":")
    ax.set_xlabel("SGD step")
    ax.set_ylim(0, 1)
    ax.text(ax.get_xlim()[1], 0.1, "chance ", color="0.4", ha="right", va="bottom", fontsize=8)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.17), frameon=False)
  axes[0].set_title(f"ReLU, depth {ds.attrs['depth']}, width {ds.attrs['width']}")
  axes[1].set_title(fr"tanh, depth {ds.attrs['depth']} (critical: $\sigma_w^2$ = "
                    fr"{ds.attrs['tanh_sigma_w2']:.3f}, $\sigma_b^2$ = {ds.attrs['tanh_sigma_b2']})")
  axes[0].set_ylabel(f"test accuracy (mean, range of {ds.attrs['n_seeds']} seeds)")
  return fig


SECONDS = 33   # measured: default settings, 2-core CPU, one figure at a time


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  """Write ``critical_init.png`` and ``critical_init.nc``."""
  if paper:
    ds = compute(depth=100, width=256, n_seeds=8, n_steps=3000, progress=progress)
  else:
    ds = compute(depth=50, width=64, n_seeds=3, n_steps=600, progress=progress)
  return _common.save(draw(ds), ds, pathlib.Path(outdir) / "critical_init")
