"""Deep tanh CNNs at criticality: delta-orthogonal kernels train, Gaussian kernels do not (Xiao et al. 2018).

After Xiao, Bahri, Sohl-Dickstein, Schoenholz & Pennington 2018, Fig. 1
(vanilla tanh CNNs of up to 10,000 layers on MNIST and CIFAR-10), at CPU
scale. Both networks sit at Xiao et al.'s critical point ``(sigma_w2,
sigma_b2) = (1.05, 2.01e-5)`` (``chi_1 = 1``, ``q* = 0.026``), so forward
and backward signals keep their mean size through any depth; they differ
only in the kernels' law. Delta-orthogonal kernels (a scaled orthogonal
centre tap, zeros elsewhere) make the input-output Jacobian an
orthogonal-MLP Jacobian per position, nearly an isometry at small ``q*``
(dynamical isometry; ``cnn_jacobian``); i.i.d. Gaussian kernels over the
taps give a Jacobian whose singular values spread over decades as the depth
grows, and lose every non-uniform spatial mode within a few layers
(``cnn_phase``). Xiao et al.'s point has the smallest ``q*`` of their
critical line: the tanh is then nearly linear and the orthogonal spectrum
nearly a delta, the best case for the delta-orthogonal network and, for
Gaussian kernels, a product of Gaussian matrices whose spread does not
shrink with ``q*``; it is kept here (it trains at this scale).

Both are trained by :func:`empirical.train` (``arch=meanfield.Conv(kernel_size=3)``) with
the same data order, readout and optimiser. Default (CPU) scale: a 1-D
circular CNN over the 8 rows of scikit-learn's 8x8 digits (8 positions, the
8 pixels of a row as input channels; ``input_shape=(8, 8)``), kernel size
3, 16 channels, depths 20 and 100, Adam at learning rate ``3e-4``, 300
steps of batch 32, 2 seeds; right panel: ``q^l`` of each depth-100
network at initialisation. ``--paper``: the 2-D 8x8 images (``3x3``
kernels), depths 100 and 1000, 64 channels, 3000 steps, 4 seeds: hours on
a CPU, meant for an accelerator. Xiao et al.'s own scale (MNIST and
CIFAR-10, thousands of layers, 256 channels) needs ``data=<MNIST IDX
directory>`` and a GPU; it is not run here.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import xarray as xr

import empirical
import meanfield
from figures import _common

SECONDS = 27   # measured: default settings, 2-core CPU, one figure at a time
SIGMA_W2, SIGMA_B2 = 1.05, 2.01e-5   # Xiao et al. 2018, Sec. 4
INITS = ("delta_orthogonal", "gaussian")
COLORS = {"delta_orthogonal": "#e7298a", "gaussian": "#1b9e77"}
LABELS = {"delta_orthogonal": "delta-orthogonal kernels", "gaussian": "Gaussian kernels"}


def _settings(paper: bool) -> dict:
  if paper:
    return dict(depths=(100, 1000), width=64, n_steps=3000, n_seeds=4, input_shape=(8, 8, 1),
                learning_rate=3e-4)
  return dict(depths=(20, 100), width=16, n_steps=300, n_seeds=2, input_shape=(8, 8),
              learning_rate=3e-4)


def compute(*, depths, width: int, n_steps: int, n_seeds: int, input_shape, learning_rate: float,
            progress: bool = True) -> xr.Dataset:
  """Both kernel schemes at every depth, trained on the digits; the Dataset of :func:`empirical.train`."""
  # The CNN is the MLP's Network with a Conv architecture; train runs it under both kernel
  # schemes at every depth in one call, so its other fields go in as keywords.
  mlp = meanfield.Network(activation="tanh", sigma_w2=SIGMA_W2, sigma_b2=SIGMA_B2, width=width)
  cnn = mlp.replace(arch=meanfield.Conv(kernel_size=3))
  ds = empirical.train(jax.random.key(0), data="digits", arch=cnn.arch, input_shape=input_shape,
                       activation=cnn.activation, init=list(INITS), depth=list(depths),
                       width=cnn.width, sigma_w2=cnn.sigma_w2, sigma_b2=cnn.sigma_b2,
                       n_seeds=n_seeds, optimizer="adam",
                       learning_rate=learning_rate, n_steps=n_steps, batch_size=32,
                       record_every=max(n_steps // 6, 1), probe_size=64, progress=progress)
  keep = ["train_loss", "train_accuracy", "test_loss", "test_accuracy", "q", "diverged"]
  ds = ds[keep]
  ds.attrs.update(q_star=float(meanfield.q_star(mlp)),      # the CNN's q* is the MLP's
                  learning_rate=learning_rate)
  return ds


def _shape_text(ds: xr.Dataset) -> str:
  shape = list(ds.attrs["input_shape"])
  if len(shape) == 2:
    return f"1-D over the {shape[0]} rows ({shape[1]} pixel channels)"
  return f"2-D over the {shape[0]}x{shape[1]} images"


def _accuracy(ax, ds: xr.Dataset, depth: int) -> None:
  steps = ds.step.values
  for init in INITS:
    acc = ds.test_accuracy.sel(init=init, depth=depth).values     # (seed, step)
    for a in acc:
      ax.plot(steps, a, color=COLORS[init], lw=0.7, alpha=0.5)
    ax.plot(steps, acc.mean(0), "o-", ms=3, color=COLORS[init], lw=2, label=LABELS[init])
  ax.axhline(0.1, color="0.6", lw=0.8, ls=":")
  ax.set(title=f"test accuracy, depth $L$ = {depth}", xlabel="Adam step", ylim=(0, 1))
  ax.legend(loc="upper left", fontsize=8)


def _lengths(ax, ds: xr.Dataset, depth: int) -> None:
  """``q^l`` at initialisation of each seed against ``q*``: the finite-width drift."""
  layers = np.arange(1, depth + 1)
  for init in INITS:
    q = ds.q.sel(init=init, depth=depth).isel(step=0).values[:, :depth]   # (seed, layer)
    for i, qs in enumerate(q):
      ax.plot(layers, qs, color=COLORS[init], lw=1, label=LABELS[init] if i == 0 else None)
  ax.axhline(ds.attrs["q_star"], color="k", lw=0.8, ls="--", label="$q^*$ (mean field)")
  ax.set(yscale="log", xlabel=_common.LABELS["layer"], ylabel=_common.LABELS["q"],
         title=f"$q^l$ at initialisation, depth {depth}, each seed")
  ax.legend(loc="upper right", fontsize=8)


def draw(ds: xr.Dataset):
  depths = [int(d) for d in ds.depth.values]
  fig, axes = _common.subplots(1, len(depths) + 1, figsize=(4.4 * (len(depths) + 1), 3.9))
  for ax, depth in zip(axes, depths):
    _accuracy(ax, ds, depth)
  axes[0].set_ylabel(f"test accuracy (mean; thin: each of {ds.sizes['seed']} seeds)")
  axes[0].text(0.98, 0.12, "chance", transform=axes[0].get_yaxis_transform(), ha="right",
               color="0.5", fontsize=8)
  _lengths(axes[-1], ds, depths[-1])
  mantissa, exponent = f"{SIGMA_B2:.2e}".split("e")
  fig.suptitle(
      f"tanh CNN on 8x8 digits, {_shape_text(ds)}, k = {ds.attrs['kernel_size']}, "
      f"{int(ds.width)} channels, circular padding, global average pooling; at "
      f"$(\\sigma_w^2, \\sigma_b^2) = ({SIGMA_W2}, {mantissa} \\times 10^{{{int(exponent)}}})$, "
      f"$q^* = {ds.attrs['q_star']:.3f}$\n{ds.attrs['n_steps']} Adam steps (lr "
      f"{ds.attrs['learning_rate']:g}, batch {ds.attrs['batch_size']}). Paper scale (Xiao et "
      f"al. 2018): thousands of layers, 256 channels, MNIST / CIFAR-10", fontsize=9)
  return fig


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  """Write ``cnn_training.png`` and ``cnn_training.nc``."""
  ds = compute(**_settings(paper), progress=progress)
  return _common.save(draw(ds), ds, pathlib.Path(outdir) / "cnn_training")
