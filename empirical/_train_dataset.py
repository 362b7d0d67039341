"""The result schema of :func:`empirical.train`: records over (grid, seed, step, layer, ...).

Every recorded variable has a ``description``; the Dataset's attributes
record the data set, the optimizer, the architecture and the provenance of
the random numbers.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from empirical import engine
from empirical import probes as _probes
from empirical import streams
from empirical._train_options import Options

#: The arguments :func:`empirical.train` takes a list of, in the order of the Dataset's dims.
SWEPT = engine.SWEPT + ("learning_rate",)

#: Description of each recorded variable besides the probes' (``probes.STAT_DOCS``).
RECORD_DOCS = {
    "train_loss": "mean softmax cross-entropy on the whole training split",
    "train_accuracy": "fraction of the training split classified correctly",
    "test_loss": "mean softmax cross-entropy on the whole test split",
    "test_accuracy": "fraction of the test split classified correctly",
    "loss_grad_w": "Frobenius norm of dLoss/dW^l, training loss on the probe batch",
    "layer_sigma_w2": "each layer's weight variance in the theory's terms, fan_in mean(W_ij^2)",
    "weight_quantiles": "quantiles of the entries of W^l",
    "sv_max": "largest singular value of W^l",
    "sv_min": "smallest singular value of W^l",
    "sv_quantiles": "quantiles of the singular values of W^l",
    "diverged_step": "first step whose minibatch loss was not finite (-1: none)",
    "diverged": "the minibatch loss was not finite at some step",
}
#: What a CNN's description says differently (``arch=meanfield.Conv(...)``).
CONV_DOCS = {
    "q": "mean squared pre-activation <(h^l_{a,i})^2> over the probe batch, positions a and "
         "channels i",
    "loss_grad_w": "Frobenius norm of dLoss/dW^l (the whole kernel), training loss on the "
                   "probe batch",
    "layer_sigma_w2": "each layer's kernel variance in the theory's terms, taps C_in mean(W^2)",
    "weight_quantiles": "quantiles of the entries of the kernel W^l (all taps)",
}


def attrs(grid, split, opts: Options, *, residual, norm, dtype, arch=None) -> dict:
  conv = {} if arch is None else {
      "kernel_size": arch["kernel_size"], "input_shape": list(arch["input_shape"]),
      "loss": "mean softmax cross-entropy of a linear readout of the positions' mean of "
              "phi(h^L) (empirical.conv.conv_logits)"}
  return {"architecture": "mlp" if arch is None else "conv", **_common_attrs(
      grid, split, opts, residual=residual, norm=norm, dtype=dtype), **conv}


def _common_attrs(grid, split, opts: Options, *, residual, norm, dtype) -> dict:
  return {
      "data": split.name, "n_train": split.n_train, "n_test": split.n_test,
      "n_features": split.n_features, "n_classes": split.n_classes,
      "optimizer": opts.optimizer, "momentum": opts.momentum,
      "clip_norm": "none" if opts.clip_norm is None else opts.clip_norm,
      "n_steps": opts.n_steps, "batch_size": opts.batch_size, "probe_size": opts.probe_size,
      "probes": int(opts.probes),
      "residual": int(residual), "norm": "none" if norm is None else norm,
      **engine.provenance(
          grid, dtype,
          seed_key="network i uses jax.random.fold_in(key, i); minibatch of step t from "
                   f"fold_in(fold_in(fold_in(key, i), {streams.BATCHES}), t)"),
      "loss": "mean softmax cross-entropy of a linear readout of a^L; probes' grad_h and "
              "grad_w use L_a = r . a^L (empirical.probes)",
  }


_LAYER_AXIS = 2   # of a per-network array (network, step, layer, ...)


def pad_layers(out: dict[str, np.ndarray], depth: int, max_depth: int) -> dict[str, np.ndarray]:
  padded = {}
  for name, a in out.items():
    if a.ndim > _LAYER_AXIS and depth < max_depth:
      pad = [(0, 0)] * a.ndim
      pad[_LAYER_AXIS] = (0, max_depth - depth)
      a = np.pad(a.astype(np.result_type(a.dtype, np.float32)), pad, constant_values=np.nan)
    padded[name] = a
  return padded


def dataset(results, grid, opts: Options, swept, attrs, conv: bool = False) -> xr.Dataset:
  """The training run's result schema: records over (grid, seed, step[, layer[, quantile]])."""
  axes = {**grid.axes(), "learning_rate": opts.rates}
  lengths = [len(v) for v in axes.values()] + [grid.n_seeds]
  docs = {**_probes.STAT_DOCS, **RECORD_DOCS, **(CONV_DOCS if conv else {})}
  data_vars = {}
  for name in results[0]:
    full = engine.stack(results, name, lengths)   # (*grid, seed, step, ...)
    trailing = ["step", "layer", "weight_quantile" if name == "weight_quantiles"
                else "sv_quantile"][:full.ndim - len(lengths)]
    data_vars[name] = engine.grid_variable(full, SWEPT, swept, ["seed"] + trailing, docs[name])
  data_vars["diverged"] = xr.Variable(data_vars["diverged_step"].dims,
                                      data_vars["diverged_step"].values >= 0,
                                      {"description": docs["diverged"]})
  coords = {"seed": np.arange(grid.n_seeds), "step": np.asarray(opts.steps),
            "layer": np.arange(1, max(grid.depths) + 1),
            "weight_quantile": np.asarray(opts.weight_quantiles),
            "sv_quantile": np.asarray(opts.sv_quantiles), **engine.grid_coords(axes, swept)}
  return xr.Dataset(data_vars, coords=coords, attrs=attrs)
