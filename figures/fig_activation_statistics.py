"""Activation and gradient statistics of a 30-layer MLP at initialization: std 0.01, std 1, Xavier, He.

The everyday experiment: a deep MLP (30 layers of width 256, Gaussian inputs
of dimension 256, zero biases, no training) initialised with a small
(``normal(0.01)``) or large (``normal(1.0)``) absolute standard deviation, or
with Xavier (Glorot) or He (Kaiming) normal weights, with tanh and with ReLU.
Many seeds per setting: lines are medians over seeds, bands their 10-90%
quantiles, and dashed lines the mean-field prediction
(:func:`empirical.overlay.theory`, computed in 64-bit).

Two PNGs:

- ``activation_statistics.png``: the variance of the post-activations
  ``Var[a^l]`` (top) and the length ``q^l`` of the pre-activations (middle)
  against the layer ``l``, on a log scale, and ``q^l`` measured over theory
  per seed (bottom). Theory: ``q^l`` from :func:`meanfield.propagate`,
  ``Var[a^l] = E[phi(sqrt(q^l) z)^2] - E[phi(sqrt(q^l) z)]^2``.
- ``gradient_statistics.png``: the norm of the backpropagated signal
  ``||dL/dh^l||`` and of the weight gradient ``||dL/dW^l||_F`` per layer for
  the loss ``L_a = r . a^L`` of :mod:`empirical.probes`, with the
  chi-product prediction of :mod:`empirical.overlay`, and
  ``||dL/dh^l||`` measured over theory per seed (bottom).

What to read in the ratio rows: theory predicts the *mean* of ``q^l`` and
of ``||dL/dh^l||^2``; at finite width the per-seed values are products of
``l`` random factors, so their spread grows with depth and their median
falls below the mean (for ReLU ``Var[log q^l]`` grows like ``5 l / N``,
Hanin & Rolnick 2018, Hanin & Nica 2019: at ``l = 30``, ``N = 256``,
``Var[log q] = 0.58``, so for one input the 10-90% band is about 0.3-2.0
and the median about 0.75 of the mean; with zero biases a ReLU
network is positively homogeneous, so this ratio is the same for every
``sigma_w2``). The dotted lines in the bottom row of
``activation_statistics.png`` are that finite-width prediction at width 256
(:mod:`meanfield.finite_width`, Cornish-Fisher quantiles from the cumulants
of ``log q^l``; exact cumulants for ReLU without biases): median and 10% and
90% quantiles of one network's ``q^l`` over the mean-field value. The ReLU
median's drift from 1 to about 0.75 by layer 30 is this finite-width
effect, not a bug. The measured ``q`` averages 16 inputs that share the
weights, which narrows the band a little against the one-input
prediction. For tanh at ``sigma_w2 = 256`` most units are saturated and
only a few carry the backward signal, so the gradient norms fluctuate the
most there.

Every layer has fan-in 256, so each scheme is a Gaussian of variance
``sigma_w2 / 256`` with ``sigma_w2 = 256 std^2`` (0.0256 and 256),
``2 * 256 / 512 = 1`` (Xavier) or ``2`` (He): all four run as one sweep of
``init="gaussian"`` over ``sigma_w2`` per activation (the same distribution
as the named schemes, one compiled program, and common random numbers
across the schemes). Shaded areas are beyond float32's range: a statistic
that leaves it overflows (inf) or underflows to 0, and its line stops
(means over inputs and units are sums first, so they overflow at
``3.4e38 / (n_inputs * width)``). The
gradient norms are square roots of sums of squares, so they stop when their
*square* leaves the range (norms outside about ``[1e-19, 1.8e19]``), and a
network whose forward pass overflowed still has finite gradients up to there
(ReLU, std 1.0: ``phi'(inf) = 1``).
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import xarray as xr

import empirical
import meanfield
from figures import _common, _seeds

WIDTH = 256
DEPTH = 30
IN_FEATURES = 256
ACTIVATIONS = ("tanh", "relu")
#: label -> init scheme
SCHEMES = {"std 0.01": "normal(0.01)", "std 1.0": "normal(1)", "Xavier": "xavier_normal",
           "He": "he_normal"}
COLORS = {"std 0.01": "#2166ac", "std 1.0": "#b2182b", "Xavier": "#1b9e77", "He": "#7570b3"}


def compute(*, n_seeds: int, n_inputs: int, width: int = WIDTH, depth: int = DEPTH,
            in_features: int = IN_FEATURES, progress: bool = False) -> xr.Dataset:
  """The sweep (dims ``activation, sigma_w2, seed, layer``) with the theory beside it.

  Theory variables are prefixed ``theory_`` (no ``seed`` dim); ``scheme``
  labels each ``sigma_w2``.
  """
  if width != in_features:
    raise ValueError(f"`in_features` must equal `width` = {width} (one fan-in), got {in_features}")
  sigma_w2 = [_seeds.preset_sigma_w2(s, fan_in=width, fan_out=width) for s in SCHEMES.values()]
  # The four schemes are one Network's sigma_w2 axis; one sweep runs it for both
  # activations (one compiled program), so its other fields go in as keywords.
  grid = meanfield.Network(init="gaussian", sigma_w2=sigma_w2, sigma_b2=0.0, depth=depth,
                           width=width)
  ds = empirical.sweep(jax.random.key(0), activation=list(ACTIVATIONS),
                       **_common.network_keywords(grid, "activation"), n_seeds=n_seeds,
                       n_inputs=n_inputs, in_features=in_features, progress=progress)
  with jax.enable_x64(True):
    th = empirical.overlay.theory(ds)
  post = np.stack([_seeds.theory_post_var(th.q.sel(activation=a).values, a)
                   for a in ds.activation.values])
  keep = ["q", "post_var", "grad_h", "grad_w", "first_nonfinite", "zero", "saturated"]
  out = ds[keep]
  for name in ("q", "grad_h", "grad_w", "q_median", "q_lo", "q_hi"):
    out[f"theory_{name}"] = th[name]
  out["theory_post_var"] = (th.q.dims, post)
  out = out.assign_coords(scheme=("sigma_w2", list(SCHEMES)))
  out.attrs = {k: v for k, v in ds.attrs.items() if k not in ("key",)}
  out.attrs["band"] = "median over seeds and 10-90% quantiles"
  return out


def _shade(ax, low, high):
  """Grey out values below ``low`` and above ``high`` (after the y-limits are set)."""
  y0, y1 = ax.get_ylim()
  if high < y1:
    ax.axhspan(high, y1, color="0.88", lw=0, zorder=0)
  if low > y0:
    ax.axhspan(y0, low, color="0.88", lw=0, zorder=0)


def _panel(ax, ds, act, var, ylabel, *, representable):
  """Median and band of ``var`` per scheme, with theory dashed, on a log axis."""
  ax.set_yscale("log")
  layer = ds.layer.values
  values = []
  for label in SCHEMES:
    sel = _scheme(ds, act, label)
    sw2 = float(sel.sigma_w2)
    _seeds.band(ax, layer, sel[var].transpose("seed", "layer").values, color=COLORS[label],
                label=rf"{label} ($\sigma_w^2 = {sw2:g}$)")
    th = sel[f"theory_{var}"].values
    ax.plot(layer, th, color=COLORS[label], ls="--", lw=1.1)
    values += [th, _seeds.quantiles(sel[var].values, q=(0.5,))[0]]
  values = np.concatenate(values)
  values = values[np.isfinite(values) & (values > 0)]
  ax.set_ylim(values.min() / 30, values.max() * 30)
  _shade(ax, *representable)
  ax.set_xlim(1, layer[-1])
  ax.set_ylabel(ylabel)
  if ax.get_subplotspec().is_first_row():
    ax.set_title(f"{act}", color=_common.ACTIVATION_COLORS.get(act, "k"))


def _ratio_panel(ax, ds, act, var, ylabel, *, representable):
  """Measured / theory per seed: median and band, linear axis.

  Layers where theory comes within a factor 1e6 of the edges of
  ``representable`` are left out for every seed: there part of a sum of
  squares may have under- or overflowed already (masking seed by seed would
  bias the median by dropping the low or high ones).
  """
  low, high = representable[0] * 1e6, representable[1] / 1e6
  layer = ds.layer.values
  for label in SCHEMES:
    sel = _scheme(ds, act, label)
    with np.errstate(divide="ignore", invalid="ignore"):
      ratio = (sel[var].transpose("seed", "layer").values.astype(np.float64)
               / sel[f"theory_{var}"].values)
    th = sel[f"theory_{var}"].values
    ratio = np.where(np.isfinite(ratio) & (th > low) & (th < high), ratio, np.nan)
    _seeds.band(ax, layer, ratio, color=COLORS[label])
    if f"theory_{var}_median" in sel:          # the finite-width median and 10-90% band
      shown = (th > low) & (th < high)
      for part, lw in (("median", 1.3), ("lo", 0.8), ("hi", 0.8)):
        pred = sel[f"theory_{var}_{part}"].values / th
        ax.plot(layer, np.where(shown, pred, np.nan), color=COLORS[label], ls=":", lw=lw)
  ax.axhline(1.0, color="0.3", ls="--", lw=1.1)
  ax.set_ylim(0.0, 2.0)
  ax.set_xlim(1, layer[-1])
  ax.set_xlabel(_common.LABELS["layer"])
  ax.set_ylabel(ylabel)


def _scheme(ds, act, label):
  return ds.sel(activation=act).swap_dims(sigma_w2="scheme").sel(scheme=label)


def _legend(fig, axes, shade_label, finite_width=False):
  from matplotlib.lines import Line2D
  from matplotlib.patches import Patch
  handles, labels = axes.flat[0].get_legend_handles_labels()
  handles += [Line2D([], [], color="0.3", ls="--", lw=1.1), Patch(color="0.88")]
  labels += ["mean-field theory", shade_label]
  if finite_width:
    handles.append(Line2D([], [], color="0.3", ls=":", lw=1.3))
    labels.append("finite-width theory at this width: median, 10-90% (bottom row)")
  fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=9)


def draw_activations(ds: xr.Dataset):
  fig, axes = _common.subplots(3, 2, figsize=(9.0, 10.4), sharex=True,
                               height_ratios=(1.0, 1.0, 0.6))
  # Means over inputs and units are summed in float32 first: they overflow
  # when mean * n_inputs * width passes the largest float32.
  full = (_seeds.FLOAT32_TINY, _seeds.FLOAT32_MAX / (ds.attrs["n_inputs"] * ds.width.item()))
  for j, act in enumerate(ds.activation.values):
    _panel(axes[0, j], ds, act, "post_var", r"$\mathrm{Var}[a^l]$, $a^l = \phi(h^l)$",
           representable=full)
    _panel(axes[1, j], ds, act, "q", r"$q^l = \langle (h^l_i)^2 \rangle$", representable=full)
    _ratio_panel(axes[2, j], ds, act, "q", r"$q^l$ measured / theory", representable=full)
  fig.suptitle(f"Variance across depth: MLP width {ds.width.item()}, {ds.depth.item()} layers, "
               f"{ds.sizes['seed']} seeds (median, 10-90% band)")
  _legend(fig, axes, "overflows or underflows in float32 (the line stops)", finite_width=True)
  return fig


def draw_gradients(ds: xr.Dataset):
  fig, axes = _common.subplots(3, 2, figsize=(9.0, 10.4), sharex=True,
                               height_ratios=(1.0, 1.0, 0.6))
  # Norms are square roots of sums of squares: the squares leave float32 first.
  half = (np.sqrt(_seeds.FLOAT32_TINY), np.sqrt(_seeds.FLOAT32_MAX))
  for j, act in enumerate(ds.activation.values):
    _panel(axes[0, j], ds, act, "grad_h", r"$\|\partial L / \partial h^l\|$",
           representable=half)
    _panel(axes[1, j], ds, act, "grad_w", r"$\|\partial L / \partial W^l\|_F$",
           representable=half)
    _ratio_panel(axes[2, j], ds, act, "grad_h", r"$\|\partial L / \partial h^l\|$ meas. / theory",
                 representable=half)
  fig.suptitle(rf"Gradient norm per layer, $L = r \cdot a^L$: MLP width {ds.width.item()}, "
               f"{ds.depth.item()} layers, {ds.sizes['seed']} seeds (median, 10-90% band)")
  _legend(fig, axes, "square of the norm not representable in float32")
  return fig


#: The PNGs this module writes (``python -m figures --only`` finds either).
OUTPUTS = ("activation_statistics", "gradient_statistics")


SECONDS = 24   # measured: default settings, 2-core CPU, one figure at a time


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  """Write ``activation_statistics.png``/``.nc`` and ``gradient_statistics.png``/``.nc``."""
  ds = compute(n_seeds=512 if paper else 64, n_inputs=64 if paper else 16, progress=progress)
  outdir = pathlib.Path(outdir)
  acts = ds[["q", "post_var", "theory_q", "theory_post_var", "theory_q_median", "theory_q_lo",
             "theory_q_hi", "first_nonfinite", "zero", "saturated"]]
  grads = ds[["grad_h", "grad_w", "theory_grad_h", "theory_grad_w", "first_nonfinite"]]
  return (_common.save(draw_activations(ds), acts, outdir / "activation_statistics")
          + _common.save(draw_gradients(ds), grads, outdir / "gradient_statistics"))
