""":func:`empirical.train` on the engine: configurations, chunk programs, memory plan, store keys.

Each combination of the discrete axes (activation, init, width, depth) is
one :class:`~empirical._train_step.Config`, run by
:func:`empirical.engine.run_chunked` over its networks (settings x seeds) in
chunks: a chunk is initialised, stepped between the recorded steps and
measured at each of them by the programs of :mod:`empirical._train_step`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from empirical import data as _data
from empirical import devices as _devices
from empirical import engine
from empirical import models as _models
from empirical._train_data import fingerprint, probe_batch
from empirical._train_dataset import pad_layers
from empirical._train_options import Options
from empirical._train_step import (Config, advance, init_chunk, measure_chunk,
                                   singular_values_chunk)

Array = jax.Array

_FORMAT = 1


def configs(grid, split, *, residual, norm, opts: Options, dtype, arch=None) -> list:
  """``(activation index, init index, Config)`` of every discrete combination."""
  conv = {} if arch is None else dict(kernel_size=arch["kernel_size"],
                                      input_shape=arch["input_shape"])
  return [(a, s, Config(
      activation=grid.activations[a], init=grid.inits[s], width=w, depth=d,
      in_features=split.n_features, n_classes=split.n_classes, residual=residual, norm=norm,
      optimizer=opts.optimizer, momentum=opts.momentum, clip_norm=opts.clip_norm,
      batch_size=opts.batch_size, weight_quantiles=opts.weight_quantiles,
      sv_quantiles=opts.sv_quantiles, dtype=dtype, probes=opts.probes,
      conv=None if arch is None else arch["kernels"][s], **conv))
      for a, s, w, d in itertools.product(range(len(grid.activations)), range(len(grid.inits)),
                                          grid.widths, grid.depths)]


def _settings(grid, opts: Options) -> np.ndarray:
  """Rows ``(sigma_w2, sigma_b2, learning_rate)`` of every setting (presets: sigma_w2 0)."""
  settings = np.asarray([(np.nan if w is None else w, b, r)
                         for w, b, r in itertools.product(grid.sigma_w2, grid.sigma_b2,
                                                          opts.rates)])
  settings[:, 0] = np.nan_to_num(settings[:, 0])   # presets ignore sigma_w2
  return settings


def spec(grid, split, opts: Options, *, residual, norm, dtype, arch=None) -> dict:
  conv = {} if arch is None else {"architecture": "conv", "kernel_size": arch["kernel_size"],
                                  "input_shape": list(arch["input_shape"])}
  return {**conv, **engine.base_spec(grid, dtype), "format": _FORMAT, "learning_rate": opts.rates,
          "residual": residual, "norm": norm, "optimizer": opts.optimizer,
          "momentum": opts.momentum, "clip_norm": opts.clip_norm, "steps": list(opts.steps),
          "batch_size": opts.batch_size, "probe_size": opts.probe_size,
          "weight_quantile": list(opts.weight_quantiles),
          "sv_quantile": list(opts.sv_quantiles),
          "data": [split.name, fingerprint(split)],
          **({} if opts.probes else {"probes": False})}   # stores made before keep their key


def run_config(k, config, bar, *, key, grid, split, opts, spec, chunk_size,
               memory_budget, devs) -> dict[str, np.ndarray]:
  """Configuration ``k``: every setting and seed trained, arrays ``(settings * seed, step, ...)``."""
  a, s, cfg = config
  settings = _settings(grid, opts)
  n_items = len(settings) * grid.n_seeds
  n_eval = max(split.n_train, split.n_test)
  size = chunk_size or len(devs) * _plan_chunk(cfg, n_eval, opts.probe_size, memory_budget)
  compute = _devices.split_over(
      _chunk_program(key, cfg, settings, grid.n_seeds, split, opts.probe_size, opts.steps,
                     bar), devs)
  out = engine.run_chunked(
      compute, n_items, chunk_size=min(size, n_items), multiple=len(devs),
      store=engine.config_store(grid.store, k),
      spec={**spec, "activation": grid.schemes.activation_keys[a],
            "init": grid.schemes.init_keys[s], "width": cfg.width, "depth": cfg.depth},
      progress=bar)
  return pad_layers(out, cfg.depth, max(grid.depths))


def _chunk_program(key: Array, cfg: Config, settings: np.ndarray, n_seeds: int,
                   split: _data.DataSplit, probe_size: int, steps: tuple[int, ...],
                   bar: tqdm) -> Callable[[Array], dict[str, np.ndarray]]:
  """``compute(indices)`` for :func:`empirical.engine.run_chunked`: network ``i`` is
  setting ``i // n_seeds`` (a row of ``settings``: sigma_w2, sigma_b2, learning_rate)
  with seed ``i % n_seeds``; returns arrays ``(chunk, n_records, ...)``."""
  settings = jnp.asarray(settings, cfg.dtype)
  x_probe, y_probe = probe_batch(split, probe_size)

  def compute(idx):
    keys = jax.vmap(lambda s: _models.network_key(key, s))(idx % n_seeds)
    row = settings[idx // n_seeds]
    state = init_chunk(keys, row[:, 0], row[:, 1], row[:, 2], cfg=cfg)
    records, done = [], 0
    for t in steps:
      if t > done:
        bar.set_postfix_str(f"depth {cfg.depth}, step {t}", refresh=False)
        state = advance(state, done, t, split.x_train, split.y_train, cfg=cfg)
        done = t
      record = jax.device_get(measure_chunk(
          state, split.x_train, split.y_train, split.x_test, split.y_test, x_probe, y_probe,
          cfg=cfg))
      # a kernel's singular values are per spatial frequency: not recorded for a CNN
      if cfg.probes and cfg.conv is None:
        record.update(jax.device_get(singular_values_chunk(state, cfg=cfg)))
      records.append(record)
    out = {k: np.stack([r[k] for r in records], axis=1) for k in records[0]}
    out["diverged_step"] = np.asarray(jax.device_get(state.diverged_step))
    return out

  return compute


def network_bytes(cfg: Config, n_eval: int, probe_size: int) -> int:
  """A rough count of the bytes one network holds while trained and measured."""
  if cfg.conv is not None:
    return _conv_bytes(cfg, n_eval, probe_size)
  n, depth = cfg.width, cfg.depth
  n_params = cfg.in_features * n + (depth - 1) * n * n + n * cfg.n_classes + 3 * depth * n
  slots = {"sgd": 0, "momentum": 1, "adam": 2}[cfg.optimizer]
  words = (n_params * (3 + slots)                               # params, grads, updates, slots
           + 10 * depth * n * max(cfg.batch_size, probe_size)   # saved activations (probes)
           + 4 * n_eval * max(n, cfg.in_features)               # evaluation on a split
           + 4 * n * n)                                         # an SVD's workspace
  return words * np.dtype(cfg.dtype).itemsize


def _conv_bytes(cfg: Config, n_eval: int, probe_size: int) -> int:
  """:func:`_network_bytes` of a CNN: ``P`` positions, ``T`` taps, ``C`` channels."""
  c, depth = cfg.width, cfg.depth
  positions = int(np.prod(cfg.input_shape[:-1]))
  taps = cfg.kernel_size ** (len(cfg.input_shape) - 1)
  n_params = taps * c * (cfg.input_shape[-1] + (depth - 1) * c) + c * cfg.n_classes + depth * c
  slots = {"sgd": 0, "momentum": 1, "adam": 2}[cfg.optimizer]
  words = (n_params * (3 + slots)
           + 4 * depth * positions * c * max(cfg.batch_size, probe_size)   # saved activations
           + 2 * (taps + 2) * n_eval * positions * c)                       # one layer of a split
  return words * np.dtype(cfg.dtype).itemsize


def _plan_chunk(cfg: Config, n_eval: int, probe_size: int, memory_budget: int) -> int:
  """Networks per chunk: a rough count of the bytes one network holds, against the budget."""
  return engine.items_per_chunk(memory_budget, network_bytes(cfg, n_eval, probe_size))
