"""Residual MLPs: q^l and c^l of wide random networks against mean-field theory, and the slow laws.

Networks ``h^l = h^{l-1} + W^l phi(h^{l-1}) + b^l``
(``empirical.sweep(arch=meanfield.MLP(residual=True))``, layer 1 plain) at
``sigma_w2 = 1``, ``sigma_b2 = 0.05``, from pairs of inputs of length 1 and
cosine 0.5; theory from :func:`meanfield.propagate` with the same ``arch``
(Yang & Schoenholz 2017). Left: the length grows without a fixed point,
geometrically for ReLU (by ``1 + sigma_w2 / 2`` per layer) and linearly for
tanh (by about ``sigma_w2 + sigma_b2``). Middle: the correlation drifts
polynomially, not exponentially: up towards 1 for ReLU, down for tanh
(THEORY.md's check value, ``c^50`` about 0.40). Right: theory alone to
3000 layers with the asymptotic laws of docs/architectures.md: ReLU's
``1 - c^l ~ 9 pi^2 (1 + a)^2 / (2 a^2 l^2)`` (``a = sigma_w2 / 2``, at
``sigma_b2 = 0``), and tanh's approach to ``c_inf``, the stable root of
``(2/pi) sigma_w2 arcsin c + sigma_b2 = (sigma_w2 + sigma_b2) c``, like
``l^{-(1 - g'(c_inf))}`` (slope drawn through the last point).

Measured: median over seeds with the 10-90% band; defaults width 256, 40
layers, 16 seeds, 8 inputs (4 pairs); ``--paper``: width 1024, 64 seeds.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import xarray as xr
from scipy.optimize import brentq

import empirical
import meanfield
from figures import _common, _seeds

ACTIVATIONS = ("tanh", "relu")
SIGMA_W2, SIGMA_B2, Q_INPUT, C_INPUT = 1.0, 0.05, 1.0, 0.5
LONG = 3000


def _c_inf(sigma_w2: float, sigma_b2: float) -> tuple[float, float]:
  """tanh's limit correlation and the exponent ``1 - g'(c_inf)`` of the approach."""
  g = lambda c: (2 / np.pi * sigma_w2 * np.arcsin(c) + sigma_b2) / (sigma_w2 + sigma_b2)
  c_inf = brentq(lambda c: g(c) - c, 0.0, 0.99)
  return c_inf, 1 - 2 / np.pi * sigma_w2 / (sigma_w2 + sigma_b2) / np.sqrt(1 - c_inf**2)


def compute(*, width: int, depth: int, n_seeds: int, n_inputs: int, long: int = LONG,
            progress: bool = False) -> xr.Dataset:
  """Measured ``q``, ``c`` over (activation, seed, layer), theory beside them, and theory
  alone to ``long`` layers (``long_relu_c``, ``long_tanh_c``)."""
  ds = empirical.sweep(jax.random.key(13), activation=list(ACTIVATIONS), width=width,
                       depth=depth, sigma_w2=SIGMA_W2, sigma_b2=SIGMA_B2, n_seeds=n_seeds,
                       n_inputs=n_inputs, in_features=width, q_input=Q_INPUT,
                       c_input=C_INPUT, arch=meanfield.MLP(residual=True), progress=progress)
  out = ds[["q", "c"]]
  long_layer = np.arange(1, long + 1)
  # The sweep's networks, one per activation (the sweep takes the activations as one list).
  net = meanfield.Network(sigma_w2=SIGMA_W2, sigma_b2=SIGMA_B2, width=width, depth=depth,
                          arch=meanfield.MLP(residual=True))
  with jax.enable_x64(True):
    th = {a: meanfield.propagate(net.replace(activation=a), q_input=Q_INPUT, c_input=C_INPUT)
          for a in ACTIVATIONS}
    # ReLU at sigma_b2 = 0 (where the law is stated); its c-map does not depend on q, so a
    # tiny input length keeps q^3000 (growing by 1.5 per layer) in range.
    relu_long = meanfield.propagate(net.replace(activation="relu", sigma_b2=0.0, depth=long),
                                    q_input=1e-300, c_input=C_INPUT)
    tanh_long = meanfield.propagate(net.replace(activation="tanh", depth=long),
                                    q_input=Q_INPUT, c_input=C_INPUT)
  for name in ("q", "c"):
    out[f"theory_{name}"] = xr.DataArray(
        np.stack([np.asarray(getattr(th[a], name)) for a in ds.activation.values]),
        dims=("activation", "layer"))
  out["long_relu_c"] = xr.DataArray(np.asarray(relu_long.c), dims=("long_layer",),
                                    coords={"long_layer": long_layer})
  out["long_tanh_c"] = xr.DataArray(np.asarray(tanh_long.c), dims=("long_layer",))
  out.attrs = {k: v for k, v in ds.attrs.items() if k != "key"}
  out.attrs["band"] = "median over seeds and 10-90% quantiles"
  return out


def draw(ds: xr.Dataset):
  fig, axes = _common.subplots(1, 3, figsize=(14, 4.3))
  layer = ds.layer.values
  for act in ds.activation.values:
    color = _common.ACTIVATION_COLORS[str(act)]
    sel = ds.sel(activation=act)
    for ax, name in zip(axes[:2], ("q", "c")):
      if name == "q":
        ax.set_yscale("log")
      _seeds.band(ax, layer, sel[name].transpose("seed", "layer").values, color=color,
                  label=f"{act}, measured", lw=0, marker="o", ms=3)
      ax.plot(layer, sel[f"theory_{name}"].values, color=color, lw=1.4, label=f"{act}, theory")
  for ax, name in zip(axes[:2], ("q", "c")):
    ax.set_xlabel(_common.LABELS["layer"])
    ax.set_ylabel(_common.LABELS[name])
    ax.legend(fontsize=8)
  axes[0].set_title("length: no fixed point")
  axes[1].set_title("correlation: polynomial drift")

  ax = axes[2]
  long_layer = ds.long_layer.values
  a = SIGMA_W2 / 2
  gap = 1 - ds.long_relu_c.values
  ax.loglog(long_layer, gap, color=_common.ACTIVATION_COLORS["relu"],
            label=r"ReLU ($\sigma_b^2 = 0$): $1 - c^l$")
  law = 9 * np.pi**2 * (1 + a) ** 2 / (2 * a**2) / long_layer.astype(float) ** 2
  ax.loglog(long_layer, law, color=_common.ACTIVATION_COLORS["relu"], ls="--", lw=1,
            label=r"$9\pi^2(1+a)^2 / (2a^2 l^2)$")
  c_inf, exponent = _c_inf(SIGMA_W2, SIGMA_B2)
  gap = ds.long_tanh_c.values - c_inf
  ax.loglog(long_layer, gap, color=_common.ACTIVATION_COLORS["tanh"],
            label=rf"tanh: $c^l - c_\infty$, $c_\infty = {c_inf:.3f}$")
  ax.loglog(long_layer, gap[-1] * (long_layer / long_layer[-1]) ** -exponent,
            color=_common.ACTIVATION_COLORS["tanh"], ls="--", lw=1,
            label=rf"$\propto l^{{-{exponent:.3f}}}$")
  ax.set_xlabel(_common.LABELS["layer"])
  ax.set_ylim(2e-5, 3)
  ax.set_title(f"theory to {long_layer[-1]} layers: power laws")
  ax.legend(fontsize=8)
  fig.suptitle(rf"Residual MLPs at $\sigma_w^2 = {SIGMA_W2:g}$, $\sigma_b^2 = {SIGMA_B2:g}$: "
               f"width {int(ds.width)}, {ds.sizes['seed']} seeds (median, 10-90% band)")
  return fig


SECONDS = 16   # measured: default settings, 2-core CPU, one figure at a time


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  """Write ``residual.png`` and its data."""
  if paper:
    ds = compute(width=1024, depth=40, n_seeds=64, n_inputs=8, progress=progress)
  else:
    ds = compute(width=256, depth=40, n_seeds=16, n_inputs=8, progress=progress)
  return _common.save(draw(ds), ds, pathlib.Path(outdir) / "residual")
