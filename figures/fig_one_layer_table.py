"""One hidden layer on a 1000 x 1000 Gaussian input: statistics per init, and why zero init cannot learn (the symmetry problem).

The everyday check: ``X`` is ``1000`` inputs of ``1000`` standard Gaussian
features, one hidden layer of ``1000`` units, ``h = X W + b``,
``a = phi(h)``, a linear readout ``f = a w_out + b_out`` and the loss
``L = mean_a (f(x_a) - y_a)^2 / 2`` against targets ``y_a ~ N(0, 1)``. Both
weight matrices come from the same scheme: ``zeros``, a small
``normal(0.0001)``, a large ``normal(1.0)``, Xavier normal and He normal
(plus ``constant(0.01)`` to show that the problem is equal weights, not zero
weights); biases are zero. The network is :class:`empirical.models.MLP` with
``depth=1, out_features=1``.

``one_layer_table.md`` and ``.csv``: the mean and standard deviation (over
all inputs and units) of the pre-activations ``h``, the activations ``a``
and the entries of the gradient ``dL/dW`` of the hidden layer, and the
number of *distinct* neuron gradients (columns ``dL/dW_{:, j}``, compared
to a relative ``1e-5``) with their relative spread across neurons
(``mean_i std_j dL/dW_ij`` over ``mean_i |mean_j dL/dW_ij|``; nan where
all are zero).

``one_layer_table.png``: the symmetry problem. A corner of ``dL/dW``
(inputs by neurons): random inits give every neuron its own gradient; with
zeros every neuron's gradient is the same (here exactly zero: ``a = 0`` and
``w_out = 0``, so no signal reaches ``W``), and with any constant init the
neurons compute the same function, get the same gradient (identical
columns) and stay identical after every update: the layer behaves as a
single neuron however wide it is. Random initialization breaks this
symmetry.
"""

from __future__ import annotations

import csv
import io
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from flax import nnx

import empirical
import empirical.models
from figures import _common

N_INPUTS = 1000
IN_FEATURES = 1000
WIDTH = 1000
ACTIVATIONS = ("tanh", "relu")
#: label -> scheme; the last is the extra symmetry demonstration.
SCHEMES = {"zero": "zeros", "small (std 1e-4)": "normal(0.0001)", "large (std 1.0)": "normal(1)",
           "Xavier": "xavier_normal", "He": "he_normal", "constant 0.01": "constant(0.01)"}
#: Size of the corner of dL/dW that is drawn.
CORNER = 32
#: Columns closer than this (relative to the largest gradient) count as the same.
SAME = 1e-5
STATS = {
    "pre_mean": "mean of h", "pre_std": "std of h",
    "post_mean": "mean of a", "post_std": "std of a",
    "grad_mean": "mean of dL/dW", "grad_std": "std of dL/dW",
    "distinct_neuron_grads": "distinct neuron gradients",
    "neuron_grad_spread": "spread across neurons",
}


def _distinct_columns(g: np.ndarray) -> int:
  """Number of distinct columns of ``g`` up to ``SAME`` times ``max|g|``."""
  scale = float(np.max(np.abs(g)))
  if scale == 0.0:
    return 1
  return len(np.unique(np.round(g.T / (SAME * scale)), axis=0))


def _one(key, x, y, activation: str, scheme: str, *, width: int):
  model = empirical.models.MLP(x.shape[1], width, 1, activation=activation, init=scheme,
                        sigma_w2=None, out_features=1, rngs=nnx.Rngs(key))

  def loss(m):
    return 0.5 * jnp.mean(jnp.square(m(x)[:, 0] - y))

  grads = nnx.grad(loss)(model)
  _, (h, a) = model(x, probe=lambda h, a, a_in: (h[0], a[0]))
  g = np.asarray(grads["w_in"][...], np.float64)            # (in_features, width)
  h, a = np.asarray(h[0], np.float64), np.asarray(a[0], np.float64)
  col_mean = np.mean(g, axis=1)
  with np.errstate(invalid="ignore", divide="ignore"):
    spread = float(np.mean(np.std(g, axis=1)) / np.mean(np.abs(col_mean)))
  stats = dict(pre_mean=h.mean(), pre_std=h.std(), post_mean=a.mean(), post_std=a.std(),
               grad_mean=g.mean(), grad_std=g.std(), distinct_neuron_grads=_distinct_columns(g),
               neuron_grad_spread=spread)
  return stats, g[:CORNER, :CORNER]


def compute(*, n_inputs: int = N_INPUTS, in_features: int = IN_FEATURES,
            width: int = WIDTH) -> xr.Dataset:
  """The table (dims ``activation, init``) and a corner (32 x 32) of each ``dL/dW``."""
  kx, ky, kw = jax.random.split(jax.random.key(5), 3)
  x = jax.random.normal(kx, (n_inputs, in_features))
  y = jax.random.normal(ky, (n_inputs,))
  table = {name: np.zeros((len(ACTIVATIONS), len(SCHEMES))) for name in STATS}
  k = min(CORNER, in_features, width)
  corners = np.zeros((len(ACTIVATIONS), len(SCHEMES), k, k))
  for i, act in enumerate(ACTIVATIONS):
    for j, scheme in enumerate(SCHEMES.values()):
      stats, corner = _one(kw, x, y, act, scheme, width=width)
      for name, value in stats.items():
        table[name][i, j] = value
      corners[i, j] = corner[:k, :k]
  dims = ("activation", "init")
  ds = xr.Dataset({name: (dims, v, {"description": STATS[name]}) for name, v in table.items()},
                  coords={"activation": list(ACTIVATIONS), "init": list(SCHEMES),
                          "scheme": ("init", list(SCHEMES.values()))})
  ds["distinct_neuron_grads"] = ds.distinct_neuron_grads.astype(np.int32)
  ds["grad_corner"] = (dims + ("input", "neuron"), corners,
                       {"description": "a corner dL/dW[:32, :32] of the hidden layer's gradient"})
  ds.attrs = {"n_inputs": n_inputs, "in_features": in_features, "width": width,
              "loss": "mean (f(x) - y)^2 / 2, y ~ N(0, 1), readout from the same scheme",
              "same_tolerance": SAME}
  return ds


def _rows(ds: xr.Dataset):
  for act in ds.activation.values:
    for init in ds.init.values:
      r = ds.sel(activation=act, init=init)
      yield [str(act), str(init), str(r.scheme.item())] + [r[n].item() for n in STATS]


def to_csv(ds: xr.Dataset) -> str:
  out = io.StringIO()
  w = csv.writer(out, lineterminator="\n")
  w.writerow(["activation", "init", "scheme", *STATS])
  for row in _rows(ds):
    w.writerow(row[:3] + [repr(float(v)) if isinstance(v, float) else v for v in row[3:]])
  return out.getvalue()


def _fmt(v) -> str:
  if isinstance(v, (int, np.integer)):
    return str(v)
  if not np.isfinite(v):
    return "nan"
  return "0" if v == 0 else f"{v:.3g}"


def to_markdown(ds: xr.Dataset) -> str:
  n = ds.attrs["width"]
  head = ["activation", "init", *STATS.values()]
  lines = [
      f"# One hidden layer on a {ds.attrs['n_inputs']} x {ds.attrs['in_features']} Gaussian input",
      "",
      f"Width {n}; `h = X W + b`, `a = phi(h)`, readout `f = a w_out` from the same scheme, "
      "biases zero; loss `mean (f - y)^2 / 2` with `y ~ N(0, 1)`. Means and standard deviations "
      "run over all inputs and units (for `dL/dW`: all entries of the hidden layer's gradient). "
      f"*Distinct neuron gradients*: how many of the {n} columns `dL/dW[:, j]` differ "
      f"(relative tolerance {ds.attrs['same_tolerance']:g}); *spread across neurons*: "
      "`mean_i std_j dL/dW_ij / mean_i |mean_j dL/dW_ij|`.",
      "",
      "| " + " | ".join(head) + " |",
      "| " + " | ".join(["---"] * 2 + ["---:"] * len(STATS)) + " |",
  ]
  for row in _rows(ds):
    lines.append("| " + " | ".join(row[:2] + [_fmt(v) for v in row[3:]]) + " |")
  lines += [
      "",
      "**The symmetry problem.** With zero weights every hidden unit computes the same "
      "value (here `a = phi(0) = 0`) and, since the readout is zero too, no gradient reaches "
      "the hidden layer: every neuron's gradient is the same (zero), so one distinct neuron "
      "gradient. A constant init shows it is equal weights, not zero weights, that do it: "
      "the units compute the same function, receive identical gradients (spread 0) and so "
      "remain identical after every update; the layer has the capacity of one neuron. "
      "Random inits give every neuron its own gradient. The small init (std 1e-4) is random "
      "but its gradients are tiny (the signal is scaled by the readout's 1e-4); the large "
      "one (std 1.0) saturates tanh (std of `h` about 32) and makes ReLU outputs and "
      "gradients about 10^4 times larger than Xavier or He.",
      "",
  ]
  return "\n".join(lines)


def draw(ds: xr.Dataset):
  shown = ["Xavier", "zero", "constant 0.01"]
  fig, axes = _common.subplots(len(ds.activation), len(shown), figsize=(11.0, 7.0))
  n = ds.attrs["width"]
  for i, act in enumerate(ds.activation.values):
    for j, init in enumerate(shown):
      r = ds.sel(activation=act, init=init)
      g = r.grad_corner.values
      vmax = float(np.max(np.abs(g)))
      ax = axes[i, j]
      im = ax.imshow(g, cmap="RdBu_r", vmin=-(vmax or 1.0), vmax=vmax or 1.0,
                     interpolation="nearest")
      ax.set_title(f"{act}, {init}\n{int(r.distinct_neuron_grads)} distinct neuron gradients "
                   f"of {n}", fontsize=9)
      if vmax == 0.0:
        ax.text((g.shape[1] - 1) / 2, (g.shape[0] - 1) / 2, "all exactly 0", ha="center", va="center", fontsize=11)
      ax.set_xlabel(r"neuron $j$")
      ax.set_ylabel(r"input feature $i$")
      if vmax > 0.0:
        fig.colorbar(im, ax=ax, shrink=0.8, label=r"$\partial L / \partial W_{ij}$")
  fig.suptitle("The symmetry problem: with equal initial weights every neuron gets the same "
               rf"gradient ($\partial L/\partial W$, a {CORNER} x {CORNER} corner: identical columns)")
  return fig


SECONDS = 8   # measured: default settings, 2-core CPU, one figure at a time


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  """Write ``one_layer_table.png``/``.nc``/``.md``/``.csv``."""
  del paper  # the experiment is small: the same settings either way
  ds = compute()
  outdir = pathlib.Path(outdir)
  paths = _common.save(draw(ds), ds, outdir / "one_layer_table")
  for suffix, text in ((".md", to_markdown(ds)), (".csv", to_csv(ds))):
    path = outdir / f"one_layer_table{suffix}"
    _common._write_atomic(path, lambda p, text=text: p.write_text(text))
    paths.append(path)
  return paths
