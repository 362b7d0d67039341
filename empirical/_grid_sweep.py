"""The sweep of an architecture's mirror on the experiment engine: one skeleton for every ``arch``.

:func:`run` is what :func:`empirical.sweep` runs for ``arch=`` (through the
mirror, :mod:`empirical.architectures`): a grid of networks x seeds, one
compiled program per ``(activation, init, width, depth)``, its networks
(the ``(sigma_w2, sigma_b2)`` settings x seeds, setting-major) vmapped in
chunks sized to the memory budget (:func:`empirical.engine.run_chunked`:
store, resume, progress), and the Dataset assembled over the swept axes,
``seed`` and the variables' own trailing dims. The mirror gives the per-item
program and the result schema; this module knows no architecture.

Also :func:`input_statistics`, the inputs' ``q_input`` and ``c_input`` that
the MLP sweep and the default mirror sweep record.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np
import xarray as xr

from empirical import _checks
from empirical import _grid
from empirical import engine

__all__ = ["run", "input_statistics"]


def input_statistics(x) -> tuple[float, float]:
  """``(q_input, c_input)`` of inputs ``(B, N0)``, in float64.

  ``q_input`` is the mean of ``|x_a|^2 / N0``, ``c_input`` the mean cosine of
  the pairs ``(2k, 2k+1)`` (nan for ``B < 2``).
  """
  x = np.asarray(x, np.float64)
  q = float(np.mean(np.sum(x * x, axis=1)) / x.shape[1])
  pairs = x.shape[0] // 2
  if pairs == 0:
    return q, float("nan")
  a, b = x[0:2 * pairs:2], x[1:2 * pairs:2]
  cos = np.sum(a * b, 1) / np.sqrt(np.sum(a * a, 1) * np.sum(b * b, 1))
  return q, float(np.mean(cos))


def run(key, x, grid: _grid.NetworkGrid, schemes: list, *, program: Callable,
        item_bytes: Callable[[int, int], int], given: tuple, spec: dict[str, Any],
        variables: dict[str, tuple[list[str], str]], coords: dict[str, Any],
        attrs: dict[str, Any], chunk_size: int | None, memory_budget: int,
        progress: bool) -> xr.Dataset:
  """The grid ``grid`` x seeds on the engine, as a Dataset.

  Args:
    key: the sweep's PRNG key; x: the checked inputs, shared by every network.
    grid: the validated grid; schemes: the init scheme of each ``grid`` init
      (what ``program`` draws with: an :class:`empirical.Init`, or a kernel scheme).
    program: ``(act, scheme, width, depth, n_seeds) -> compute``, cached by
      the caller; ``compute(key, x, settings, idx)`` maps the item indices
      ``idx`` ``(m,)`` int32 to a dict of arrays ``(m, ...)``: item ``i`` is
      setting ``i // n_seeds`` (row ``(sigma_w2, sigma_b2)`` of ``settings``
      ``(S, 2)``, in ``x``'s dtype, ``sigma_w2`` 0 for schemes that fix it)
      and seed ``i % n_seeds``.
    item_bytes: ``(width, depth) -> bytes`` one item holds (the memory plan).
    given: the grid arguments as given (``activation, init, width, depth,
      sigma_w2, sigma_b2``): a list makes a dimension.
    spec: the store's spec beyond :func:`empirical.engine.base_spec` (what
      else the results depend on: the inputs' digest, the architecture).
    variables: ``name -> (dims after seed, description)`` of every array
      ``compute`` returns; a variable whose first such dim is ``"layer"`` is
      nan-padded to the deepest network.
    coords, attrs: the Dataset's coordinates beyond the grid's, ``seed`` and
      ``layer``, and its attributes beyond :func:`empirical.engine.provenance`
      (a ``seed_key`` entry there replaces provenance's).
  """
  memory_budget = _checks.check_int("memory_budget", memory_budget, 1)
  if chunk_size is not None:
    chunk_size = _checks.check_int("chunk_size", chunk_size, 1)
  settings = np.asarray([(np.nan if w is None else w, b)
                         for w, b in itertools.product(grid.sigma_w2, grid.sigma_b2)])
  settings = jnp.asarray(np.nan_to_num(settings), x.dtype)   # presets ignore sigma_w2
  configs = list(itertools.product(range(len(grid.activations)), range(len(schemes)),
                                   grid.widths, grid.depths))
  spec = {**engine.base_spec(grid, x.dtype), **spec}
  layered = [name for name, (dims, _) in variables.items() if dims[:1] == ["layer"]]
  one = functools.partial(_config, key=key, x=x, grid=grid, schemes=schemes,
                          settings=settings, program=program, item_bytes=item_bytes, spec=spec,
                          layered=layered, chunk_size=chunk_size, memory_budget=memory_budget)
  results = engine.run_configs(configs, one, total=len(configs) * len(settings) * grid.n_seeds,
                               desc="sweep", progress=progress)
  return _dataset(results, grid, given, variables=variables, coords=coords, attrs=attrs,
                  dtype=x.dtype)


def _config(k, config, bar, *, key, x, grid, schemes, settings, program, item_bytes, spec,
            layered, chunk_size, memory_budget) -> dict[str, np.ndarray]:
  """Configuration ``k``: arrays ``(settings * seed, ...)``, layers nan-padded to the deepest."""
  a, s, width, depth = config
  n_items = len(settings) * grid.n_seeds
  size = chunk_size or engine.items_per_chunk(memory_budget, item_bytes(width, depth))
  compute = program(grid.activations[a], schemes[s], width, depth, grid.n_seeds)
  out = engine.run_chunked(
      compute, n_items, chunk_size=min(size, n_items), shared=(key, x, settings),
      store=engine.config_store(grid.store, k),
      spec={**spec, "activation": grid.schemes.activation_keys[a],
            "init": grid.schemes.init_keys[s], "width": width, "depth": depth},
      progress=bar)
  pad = max(grid.depths) - depth
  return {name: (np.pad(v, [(0, 0), (0, pad)] + [(0, 0)] * (v.ndim - 2),
                        constant_values=np.nan) if name in layered else v)
          for name, v in out.items()}


def _dataset(results, grid, given, *, variables, coords, attrs, dtype) -> xr.Dataset:
  """The result schema: ``(grid, seed, *dims)`` per variable."""
  swept = engine.swept(engine.SWEPT, given)
  axes = grid.axes()
  lengths = [len(v) for v in axes.values()] + [grid.n_seeds]
  data_vars = {name: engine.grid_variable(engine.stack(results, name, lengths), engine.SWEPT,
                                          swept, ["seed", *dims], doc)
               for name, (dims, doc) in variables.items()}
  coords = {"seed": np.arange(grid.n_seeds), "layer": np.arange(1, max(grid.depths) + 1),
            **coords, **engine.grid_coords(axes, swept)}
  seed_key = {"seed_key": attrs["seed_key"]} if "seed_key" in attrs else {}
  attrs = {**{k: v for k, v in attrs.items() if k != "seed_key"},
           **engine.provenance(grid, dtype, **seed_key)}
  return xr.Dataset(data_vars, coords=coords, attrs=attrs)
