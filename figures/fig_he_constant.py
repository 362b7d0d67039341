"""The He constant: ReLU weights of variance c / fan_in keep q^l steady over depth only at c = 2.

He et al. (2015) chose ``Var[W_ij] = 2 / fan_in`` for ReLU because the
ReLU halves the second moment, ``E[relu(h)^2] = q / 2``; with zero biases
the mean-field map is exactly ``q^{l+1} = (c / 2) q^l`` (dashed lines), so
``q^l`` shrinks or grows geometrically for any other ``c``. Left: ``q^l``
against the layer for ``c = sigma_w2`` from 0.5 to 4 (Gaussian weights;
median over seeds and 10-90% band). Middle and right: at ``c = 2``, Gaussian,
uniform, truncated normal (and, with ``--paper``, orthogonal) weights of the same variance. The
mean-field prediction depends on the variance only, and all four follow it
on average (middle: ``q^l / q^l_theory``); their seed-to-seed spread (right,
the standard deviation over seeds of ``log q^l``) grows with depth like a
random walk, ``sqrt(l)``, and is smallest for orthogonal weights, which
preserve the length of every vector they multiply (only the ReLU's random
halving remains). The dotted line is the prediction for a single input of
Hanin & Rolnick (2018); ``q^l`` here averages over a few inputs, which
lowers the spread a little. The median falls below the mean-field value as
the spread grows (a log-normal's median is ``exp(-Var[log q] / 2)`` times
its mean): theory predicts the mean.

Defaults: width 128, 40 layers, 48 seeds, without the orthogonal scheme,
whose draws (a QR decomposition per layer and seed) take minutes on a CPU;
``--paper`` adds it, with 128 seeds. All settings of one scheme run as one sweep over ``sigma_w2`` with common
random numbers: with zero biases a ReLU network is positively homogeneous,
so the bands of the left panel are the same curves rescaled by ``(c/2)^l``.
"""

from __future__ import annotations

import pathlib

import jax
import matplotlib
import numpy as np
import xarray as xr

import empirical
import meanfield
from figures import _common, _seeds

ACTIVATION = "relu"
CONSTANTS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)
SCHEMES = ("gaussian", "uniform", "truncated_normal", "orthogonal")
SCHEME_COLORS = {"gaussian": "#1a1a1a", "uniform": "#e66101", "truncated_normal": "#5e3c99",
                 "orthogonal": "#1b9e77"}


def compute(*, width: int, depth: int, n_seeds: int, n_inputs: int,
            schemes: tuple[str, ...] = SCHEMES, progress: bool = False) -> xr.Dataset:
  """``q`` over (init, sigma_w2, seed, layer) with ``theory_q`` beside it."""
  # One Network, the constants its sigma_w2 axis; one sweep runs it under every scheme
  # (one compiled program), so its other fields go in as keywords.
  grid = meanfield.Network(activation=ACTIVATION, sigma_w2=CONSTANTS, sigma_b2=0.0,
                           depth=depth, width=width)
  ds = empirical.sweep(jax.random.key(2), init=list(schemes),
                       **_common.network_keywords(grid, "init"), n_seeds=n_seeds,
                       n_inputs=n_inputs, in_features=width, progress=progress)
  with jax.enable_x64(True):
    th = empirical.overlay.theory(ds)
  out = ds[["q", "first_nonfinite"]]
  out["theory_q"] = th.q
  out.attrs = {k: v for k, v in ds.attrs.items() if k != "key"}
  out.attrs["band"] = "median over seeds and 10-90% quantiles"
  return out


def draw(ds: xr.Dataset):
  fig, axes = _common.subplots(1, 3, figsize=(13.5, 4.3))
  layer = ds.layer.values
  cmap = matplotlib.colormaps["RdBu_r"]
  ax = axes[0]
  ax.set_yscale("log")
  g = ds.sel(init="gaussian")
  for c in CONSTANTS:
    color = "k" if c == 2.0 else cmap(0.5 + 0.45 * np.tanh(np.log(c / 2.0) / np.log(2.0)))
    sel = g.sel(sigma_w2=c)
    _seeds.band(ax, layer, sel.q.transpose("seed", "layer").values, color=color,
                label=f"c = {c:g}", lw=2.4 if c == 2.0 else 1.4)
    ax.plot(layer, sel.theory_q.values, color=color, ls="--", lw=1.0)
  ax.set_xlabel(_common.LABELS["layer"])
  ax.set_ylabel(_common.LABELS["q"])
  ax.set_title(r"ReLU, $\mathrm{Var}[W_{ij}] = c\,/\,\mathrm{fan_{in}}$ (dashed: $(c/2)^{l-1} q^1$)")
  ax.legend(ncol=2, fontsize=8, loc="upper left")

  at2 = ds.sel(sigma_w2=2.0)
  for init in ds.init.values:
    sel = at2.sel(init=init)
    q = sel.q.transpose("seed", "layer").values.astype(np.float64)
    # Bands only for the two extremes, so the panel stays readable.
    _seeds.band(axes[1], layer, q / sel.theory_q.values, color=SCHEME_COLORS[init],
                label=init.replace("_", " "),
                alpha=0.15 if init in ("gaussian", "orthogonal") else 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
      spread = np.std(np.log(q), axis=0)
    axes[2].plot(layer, spread, color=SCHEME_COLORS[init], label=init.replace("_", " "))
  axes[1].axhline(1.0, color="0.3", ls="--", lw=1.0)
  axes[1].set_yscale("log")
  axes[1].set_ylim(0.1, 10.0)
  axes[1].set_xlabel(_common.LABELS["layer"])
  axes[1].set_ylabel(r"$q^l$ / theory")
  axes[1].set_title(r"$c = 2$: weight distributions of the same variance")
  axes[1].legend(fontsize=8, loc="upper left")
  n = ds.width.item()
  axes[2].plot(layer, np.sqrt(5.0 * layer / n), color="0.5", ls=":", lw=1.2,
               label=r"$\sqrt{5 l / N}$, one input (Hanin & Rolnick 2018)")
  axes[2].set_xlabel(_common.LABELS["layer"])
  axes[2].set_ylabel(r"std over seeds of $\log q^l$")
  axes[2].set_title("seed-to-seed spread at $c = 2$")
  axes[2].set_ylim(bottom=0.0)
  axes[2].legend(fontsize=8, loc="lower right")
  fig.suptitle(f"The He constant: width {n}, {ds.depth.item()} layers, "
               f"{ds.sizes['seed']} seeds, Gaussian inputs (median, 10-90% band)")
  return fig


SECONDS = 18   # measured: default settings, 2-core CPU, one figure at a time


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  """Write ``he_constant.png`` and ``he_constant.nc``."""
  # Orthogonal draws (a QR per layer and seed, about 0.1 s of CPU each for
  # 128 x 128 inside a sweep with jax 0.10) would take minutes: paper only.
  if paper:
    ds = compute(width=128, depth=40, n_seeds=128, n_inputs=16, schemes=SCHEMES, progress=progress)
  else:
    ds = compute(width=128, depth=40, n_seeds=48, n_inputs=8, schemes=SCHEMES[:3], progress=progress)
  return _common.save(draw(ds), ds, pathlib.Path(outdir) / "he_constant")
