"""Sweeps: a grid of hyperparameters x many seeds of random networks, measured.

:func:`sweep` runs every network of a Cartesian grid through
:func:`empirical.probes.measure` and returns an ``xarray.Dataset``. How the
work is laid out:

- The *discrete* hyperparameters (``activation``, ``init``, ``width``,
  ``depth``) change shapes or functions: each combination is one compiled
  program, run in an outer loop.
- The *continuous* ones (``sigma_w2``, ``sigma_b2``) and the seeds never
  loop in Python. Network ``i`` draws its standard weights once, from
  ``jax.random.fold_in(key, i)`` (:func:`empirical.models.network_key`),
  and every ``(sigma_w2, sigma_b2)`` setting rescales them (common random
  numbers): the settings of one seed share one matrix product per layer,
  the scale applied after it, and seeds go through ``vmap``.
- Work is cut into chunks of a fixed number of seeds (and, for very large
  grids, of settings) sized to ``memory_budget``; the last chunk is padded
  to the same shape, so each program compiles once. Within a chunk, groups
  of networks (1 on the CPU, 8 on accelerators) are vmapped together and a
  loop runs over the groups, so
  every network is computed by the same code whatever the chunk size:
  results are bitwise identical across ``chunk_size`` and
  ``memory_budget``, as long as the settings of one seed are not split
  (they are split only when ``chunk_size`` is below the number of
  ``(sigma_w2, sigma_b2)`` settings or one group's settings exceed the
  budget; then results agree to float rounding).
- With ``store=PATH`` each finished chunk is written atomically (temporary
  file, then ``os.replace``); a rerun with the same arguments loads the
  chunks that exist and computes only the missing ones, so a sweep killed at
  any moment ends, when rerun, with exactly the result of an uninterrupted
  one. :func:`empirical.engine.run_chunked` is this machinery for any
  per-item computation.

The inputs are shared by every network: given as ``inputs`` ``(B,
in_features)``, or drawn from ``jax.random.split(key)[1]`` as ``n_inputs``
standard Gaussian vectors, or as pairs ``(2k, 2k+1)`` with exactly
``|x|^2 / in_features = q_input`` and cosine ``c_input`` (so that
``meanfield.propagate(q_input=..., c_input=...)`` predicts them exactly).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from empirical import _checks
from empirical import _grid
from empirical._grid_sweep import input_statistics
from empirical import architectures
from empirical import description
from empirical import devices as _devices
from empirical import engine
from empirical import models as _models
from empirical import probes as _probes
from empirical import streams
from empirical.engine import DEFAULT_MEMORY_BUDGET, SWEPT
from meanfield.network import MLP, Architecture, check_architecture

__all__ = ["sweep", "make_inputs", "input_statistics", "SWEPT"]

Array = jax.Array
# Arrays held per (network, setting) per layer per input and unit while measuring
# (pre- and post-activations, the copies saved for the backward pass, the
# backward signal and temporaries): an estimate, on the generous side.
_ACTIVATION_COPIES = 10
# Networks vmapped together inside a chunk (chunks loop over such groups); None:
# 1 on the CPU, where XLA runs batched matmuls on one core (a loop of plain
# matmuls was 2.4x faster on the 512-network benchmark), else 8.
_GROUP: int | None = None


def _group_size() -> int:
  if _GROUP is not None:
    return _GROUP
  return 1 if jax.default_backend() == "cpu" else 8


# --- inputs ------------------------------------------------------------------------

def make_inputs(key: Array, *, n_inputs: int, in_features: int, q_input: float | None = None,
                c_input: float | None = None, dtype=None) -> Array:
  """``(n_inputs, in_features)`` inputs for a sweep.

  Without ``q_input`` and ``c_input``: iid ``N(0, 1)`` entries (``q`` about 1,
  cosines about 0). With them: inputs ``2k`` and ``2k+1`` are built from two
  Gaussian vectors by Gram-Schmidt, so that exactly
  ``|x|^2 / in_features = q_input`` (default 1) and their cosine is
  ``c_input`` (default: no constraint); an odd last input only gets the length.
  """
  n_inputs = _checks.check_int("n_inputs", n_inputs, 1)
  in_features = _checks.check_int("in_features", in_features, 1)
  dtype = _checks.float_dtype(dtype)
  z = jax.random.normal(key, (n_inputs, in_features), dtype)
  if q_input is None and c_input is None:
    return z
  q = 1.0 if q_input is None else float(q_input)
  length = jnp.asarray(math.sqrt(q * in_features), dtype)
  u = z / jnp.linalg.norm(z, axis=1, keepdims=True)
  if c_input is None or n_inputs < 2:
    return u * length
  if in_features < 2:
    raise ValueError(f"`in_features` must be >= 2 for c_input, got {in_features}")
  pairs = n_inputs // 2
  u1, z2 = u[0:2 * pairs:2], z[1:2 * pairs:2]
  v = z2 - jnp.sum(z2 * u1, axis=1, keepdims=True) * u1
  u2 = v / jnp.linalg.norm(v, axis=1, keepdims=True)
  c = jnp.asarray(c_input, dtype)
  second = c * u1 + jnp.sqrt(1 - c * c) * u2
  x = jnp.stack([u1, second], axis=1).reshape(2 * pairs, in_features)
  if n_inputs % 2:
    x = jnp.concatenate([x, u[-1:]])
  return x * length


# --- the sweep -----------------------------------------------------------------

def _network_bytes(*, width: int, depth: int, batch: int, in_features: int,
                   itemsize: int) -> tuple[int, int]:
  """``(weights, per setting)``: bytes one network holds while measured."""
  weights = itemsize * (depth * width * width + in_features * width) * 2
  per_setting = itemsize * _ACTIVATION_COPIES * depth * batch * (width + in_features)
  return weights, per_setting


def _check_plan_fits(*, width: int, depth: int, batch: int, in_features: int, itemsize: int,
                     memory_budget: int) -> None:
  """ValueError, saying the largest depth that fits, if one network at one setting
  exceeds its share of the budget (``memory_budget`` over the vmapped group)."""
  group = _group_size()

  def group_bytes(d):
    return sum(_network_bytes(width=width, depth=d, batch=batch, in_features=in_features,
                              itemsize=itemsize)) * group

  what = f"network of width {width} and depth {depth} (batch {batch})"
  if group > 1:
    what += f", times the {group} networks run at once on this backend"
  engine.check_fits(what, group_bytes, depth, memory_budget, width=width)


def _plan(n_settings: int, *, width: int, depth: int, batch: int, in_features: int,
          itemsize: int, chunk_size: int | None, memory_budget: int) -> tuple[int, int]:
  """``(settings per block, items per chunk)``."""
  if chunk_size is not None:
    if chunk_size >= n_settings:
      return n_settings, chunk_size // n_settings
    return chunk_size, 1
  weights, per_setting = _network_bytes(width=width, depth=depth, batch=batch,
                                        in_features=in_features, itemsize=itemsize)
  group_budget = memory_budget // _group_size()
  if weights + n_settings * per_setting <= group_budget:
    return n_settings, engine.items_per_chunk(memory_budget, weights + n_settings * per_setting)
  return max(1, (group_budget - weights) // per_setting), 1


#: The variant fields of a meanfield.MLP that sweep runs (not alpha != 1).
_RUNS = ("residual", "norm", "keep_prob")


@description.takes_network(supports=_RUNS)
def sweep(key: Array, *, network=None, arch: Architecture = MLP(), activation="tanh", width=256,
          depth=10, sigma_w2=None, sigma_b2=0.0, init="gaussian", n_seeds: int = 1, inputs=None,
          n_inputs: int | None = None, in_features: int | None = None,
          q_input: float | None = None, c_input: float | None = None,
          chunk_size: int | None = None,
          memory_budget: int = DEFAULT_MEMORY_BUDGET, store: str | os.PathLike | None = None,
          progress: bool = True, dtype=None, devices: _devices.Devices = None) -> xr.Dataset:
  """Measure random networks over a grid of hyperparameters x ``n_seeds`` seeds.

  Any of ``activation``, ``init``, ``width``, ``depth``, ``sigma_w2`` and
  ``sigma_b2`` may be a list (or 1-D array): the grid is their Cartesian
  product. A list makes a dimension of the result (even of length one); a
  single value makes a scalar coordinate.

  Args:
    key: PRNG key; network ``i`` uses ``fold_in(key, i)`` whatever the grid.
    network: a :class:`meanfield.Network` (one grid point) whose fields fill
      ``activation``, ``width``, ``depth``, ``init``, ``sigma_w2`` (for
      schemes by variance), ``sigma_b2`` and ``arch``
      (:mod:`empirical.description`); those must then not be given too.
    arch: the architecture value. :class:`meanfield.MLP` (default ``MLP()``,
      the plain MLP) runs :mod:`empirical.models`' MLP with its variant:
      ``residual`` (a skip connection around layers ``2..L``), ``norm``
      (``None``, ``"layer"`` or ``"batch"``) and ``keep_prob``: dropout at
      initialisation, the keep probability ``p`` in ``(0, 1]`` (a number,
      not swept): for ``p < 1`` the post-activations entering layers
      ``2..L`` are masked and scaled by ``1/p``
      (:func:`empirical.models.forward`), network ``i``'s masks drawn from
      ``fold_in(fold_in(key, i), streams.DROPOUT)``, independently per input
      and unit and shared by the ``(sigma_w2, sigma_b2)`` settings of one
      seed; the gradients pass the same masks. ``p = 1`` runs the same
      program as without dropout: results are bitwise those of the plain
      MLP's sweep, and the stores of such sweeps resume. ``alpha`` must be 1
      (the experiment's residual branch is unscaled). Another architecture
      (``meanfield.Conv(kernel_size=3)``; also a network's ``arch``): the
      sweep of its experiment mirror (:mod:`empirical.architectures`; by
      default its ``draw`` and ``forward`` hooks on the engine, with
      ``store`` and resume, returning the variables below except
      ``grad_w`` and ``layer_sigma_w2``). For ``Conv`` that is the circular CNNs of :mod:`empirical.conv`:
      ``inputs`` is one input ``(n, C_0)`` (``n`` positions) shared by every
      network, ``init`` names kernel schemes
      (:func:`empirical.conv.kernel_init_names`), and the Dataset has
      ``covariance`` (over ``position, position_b``), ``q`` and ``grad_h``
      (:data:`empirical.conv.SWEEP_DOCS`). For ``meanfield.RNN`` the random
      RNNs of :mod:`empirical.rnn`: ``depth`` time steps, ``inputs`` None
      (each network draws ``n_inputs`` sequences, pairs of exact length
      ``q_input`` and cosine ``c_input``, default 2, 1, 0; ``dtype`` as
      here), and the Dataset has ``q``, ``c``, ``grad_h2``, ``c_time`` over
      ``seed`` and ``layer`` (the step ``t``; :data:`empirical.rnn.SWEEP_DOCS`).
      The MLP's keywords that the mirror does not read (of ``n_inputs``,
      ``in_features``, ``q_input``, ``c_input``, ``dtype``, ``devices``)
      must then keep their defaults (``ValueError`` naming them).
    activation: names from ``meanfield.activation``'s table, Activations or
      elementwise ``jax.numpy`` callables (checked by tracing once; callables
      of one name get labels ``name``, ``name#2``, ...).
    width: units per layer ``N``. depth: layers ``L >= 1``; one network must
      fit ``memory_budget`` (the error says the largest depth that does).
    sigma_w2: weight variance (``W_ij`` variance ``sigma_w2 / fan_in``) for
      the schemes by variance (``gaussian``, ``uniform``,
      ``truncated_normal``, ``orthogonal``); must be ``None`` (no
      ``sigma_w2`` axis) when every ``init`` fixes the variance itself
      (presets, ``normal(std)``, ``zeros``); mixing the two kinds raises.
    sigma_b2: bias variance (``b_i ~ N(0, sigma_b2)``).
    init: scheme names or :class:`empirical.inits.Init` (``"normal(0.01)"``).
    n_seeds: networks per grid point.
    inputs: ``(B, in_features)`` inputs shared by all networks; or give
      ``n_inputs`` and ``in_features`` to draw them (see
      :func:`make_inputs`, also for ``q_input`` and ``c_input``;
      ``q_input = 0`` makes zero inputs, which have no angle: ``c_input``
      must then be None or 1).
    chunk_size: networks (seed x setting) per compiled call; default from
      ``memory_budget`` (bytes per device, default 1 GiB).
    store: directory to write finished chunks to and resume from. Its spec
      names activations and inits by content (registry names, exact
      parameters, or for a callable a digest of its values at fixed float64
      inputs, the same in every process), so a different callable never
      reuses another's results; a callable that cannot be evaluated at
      float64 inputs is refused here (run it without ``store``).
    progress: show a tqdm bar.
    dtype: float dtype (default float32, float64 under x64).
    devices: where to run: ``None`` (default) this process's devices
      (``jax.local_devices()``: all local GPUs; on the CPU the first only,
      as one program already uses every core), an integer ``n`` for the
      first ``n``, or a sequence of ``jax.Device``. Each chunk is split
      evenly over them along a mesh axis over networks
      (:mod:`empirical.devices`); results are bitwise those of a one-device
      run (``devices=1``). Under ``jax.distributed`` each process computes
      its own chunks and the processes share them through ``store``, which
      they must all see (:func:`empirical.engine.run_chunked`; a sequence
      spanning processes, ``jax.devices()``, runs one program over all).

  Returns:
    An ``xarray.Dataset`` with dims, in order, the swept ones of
    ``activation, init, width, depth, sigma_w2, sigma_b2``, then ``seed``
    (0..n_seeds-1) and ``layer`` (1..max depth; layers beyond a network's
    depth are nan). Data variables: the :class:`empirical.probes.Stats`
    (``q``, ``c``, ``pre_mean``, ``pre_var``, ``post_mean``, ``post_var``,
    ``zero``, ``dead``, ``saturated``, ``grad_h``, ``grad_w`` over all dims;
    ``first_nonfinite`` without ``layer``); ``layer_sigma_w2``, each layer's
    variance in the theory's terms (``fan_in E[W_ij^2]``, over the swept
    ``init, width, depth, sigma_w2`` and ``layer``); ``q_input`` and
    ``c_input`` measured from the inputs (0-d). Attributes describe the
    inputs, architecture and loss. Save with ``ds.to_netcdf``.

  Raises:
    ValueError: before any work, for a bad argument (naming it, its value
      and what is allowed).
    NotImplementedError: an ``arch`` without an experiment mirror.
  """
  description.check_runs("empirical.sweep", arch, _RUNS)
  if not isinstance(arch, MLP):
    mirror = architectures.mirror(arch, "empirical.sweep")
    given = dict(n_inputs=n_inputs, in_features=in_features, q_input=q_input, c_input=c_input,
                 dtype=dtype, devices=devices)
    check_architecture("empirical.sweep", arch, _MLP_ONLY,
                       **{k: v for k, v in given.items() if k not in mirror.sweep_keywords})
    return mirror.sweep(key, arch, mirror.sweep_inputs(arch, inputs), activation=activation,
                        width=width, depth=depth, init=init, sigma_w2=sigma_w2,
                        sigma_b2=sigma_b2, n_seeds=n_seeds, chunk_size=chunk_size,
                        memory_budget=memory_budget, store=store, progress=progress,
                        **{k: given[k] for k in mirror.sweep_keywords})
  residual, norm, keep_prob = arch.residual, arch.norm, _check_keep_prob(arch.keep_prob)
  grid = _grid.network_grid(key=key, activation=activation, init=init, width=width,
                            depth=depth, n_seeds=n_seeds, sigma_w2=sigma_w2,
                            sigma_b2=sigma_b2, residual=residual, norm=norm, verb="sweep",
                            store=store)
  memory_budget = int(_checks.check_number("memory_budget", memory_budget, minimum=0,
                                           strict=True))
  if chunk_size is not None:
    chunk_size = _checks.check_int("chunk_size", chunk_size, 1)
  dtype = _checks.float_dtype(dtype)
  devs = _devices.resolve(devices)
  x = _inputs(key, inputs=inputs, n_inputs=n_inputs, in_features=in_features,
              q_input=q_input, c_input=c_input, dtype=dtype)
  batch, in_features = x.shape
  for w, d in itertools.product(grid.widths, grid.depths):
    _check_plan_fits(width=w, depth=d, batch=batch, in_features=in_features,
                     itemsize=np.dtype(dtype).itemsize, memory_budget=memory_budget)
  settings = list(itertools.product(grid.sigma_w2, grid.sigma_b2))
  configs = list(itertools.product(grid.activations, grid.inits, grid.widths, grid.depths))
  spec = {**engine.base_spec(grid, dtype),
          "inputs": hashlib.sha256(np.ascontiguousarray(np.asarray(x))).hexdigest(),
          "residual": residual, "norm": norm}
  if keep_prob != 1:                    # absent at 1: stores of older sweeps still resume
    spec["keep_prob"] = keep_prob
  run = functools.partial(_run_config, key=key, x=x, grid=grid, settings=settings, spec=spec,
                          residual=residual, norm=norm, keep_prob=keep_prob,
                          chunk_size=chunk_size,
                          memory_budget=memory_budget, devs=devs, dtype=dtype)
  results = engine.run_configs(configs, run, total=len(configs) * grid.n_seeds * len(settings),
                               desc="sweep", progress=progress)
  swept = engine.swept(SWEPT, (activation, init, width, depth, sigma_w2, sigma_b2))
  return _dataset(results, grid, swept, x=x, residual=residual, norm=norm,
                  keep_prob=keep_prob, dtype=dtype)


# The MLP's keywords of `sweep` with their defaults: another architecture's sweep takes
# none of them unless its mirror reads them (`Mirror.sweep_keywords`).
_MLP_ONLY = {"n_inputs": None, "in_features": None, "q_input": None, "c_input": None,
             "dtype": None, "devices": None}


def _check_keep_prob(keep_prob) -> float:
  """``arch.keep_prob`` as a float in ``(0, 1]`` (one number: it is not swept), or
  ValueError naming it."""
  if (isinstance(keep_prob, bool) or not _checks.is_number(keep_prob)
      or not 0 < keep_prob <= 1):
    raise ValueError(f"`arch.keep_prob` must be a number in (0, 1] for `empirical.sweep` "
                     f"(dropout's keep probability, not swept; 1 for no dropout), got "
                     f"{keep_prob!r}")
  return float(keep_prob)


def _inputs(key, *, inputs, n_inputs, in_features, q_input, c_input, dtype) -> Array:
  """The sweep's inputs ``(B, in_features)``: ``inputs`` checked, or drawn."""
  if inputs is not None:
    if n_inputs is not None or q_input is not None or c_input is not None:
      raise ValueError("`inputs` must not be given with `n_inputs`, `q_input` or `c_input`")
    x = np.asarray(inputs)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
      raise ValueError(f"`inputs` must have shape (batch, in_features), got {x.shape}")
    if in_features is not None and in_features != x.shape[1]:
      raise ValueError(f"`in_features` must equal inputs.shape[1] = {x.shape[1]}, got {in_features}")
    if not np.all(np.isfinite(x)):
      raise ValueError("`inputs` must be finite")
    return jnp.asarray(x, dtype)
  if n_inputs is None or in_features is None:
    raise ValueError("give `inputs`, or `n_inputs` and `in_features` to draw them")
  _checks.check_int("n_inputs", n_inputs, 1)
  _checks.check_int("in_features", in_features, 1)
  if q_input is not None:
    _checks.check_variances("q_input", [q_input])
  if c_input is not None and not (_checks.is_number(c_input) and -1 <= c_input <= 1):
    raise ValueError(f"`c_input` must be a number in [-1, 1], got {c_input!r}")
  if q_input is not None and q_input == 0 and c_input is not None and c_input != 1:
    raise ValueError(
        f"`q_input` must be > 0 when `c_input` != 1 is asked for (zero inputs have no "
        f"angle between them), got q_input={q_input!r} with c_input={c_input!r}")
  return make_inputs(jax.random.split(key)[streams.SWEEP_INPUTS], n_inputs=n_inputs,
                     in_features=in_features, q_input=q_input, c_input=c_input, dtype=dtype)


def _run_config(k, config, bar, *, key, x, grid, settings, spec, residual, norm, keep_prob,
                chunk_size,
                memory_budget, devs, dtype) -> dict[str, np.ndarray]:
  """Configuration ``k`` (activation, init, width, depth): every setting and seed,
  as arrays ``(settings, seed[, layer])``."""
  act, scheme, w, d = config
  batch, in_features = x.shape
  n_settings, n_seeds = len(settings), grid.n_seeds
  p, items = _plan(n_settings, width=w, depth=d, batch=batch, in_features=in_features,
                   itemsize=np.dtype(dtype).itemsize, chunk_size=chunk_size,
                   memory_budget=memory_budget)
  n_blocks = -(-n_settings // p)
  padded = [settings[min(i, n_settings - 1)] for i in range(n_blocks * p)]
  sw = None if grid.sigma_w2 == [None] else jnp.asarray([s[0] for s in padded], dtype)
  ws, bs = _models.layer_scales(scheme, sw, jnp.asarray([s[1] for s in padded], dtype),
                                in_features=in_features, width=w, depth=d, dtype=dtype)
  ws = ws.reshape(d, n_blocks, p).transpose(1, 0, 2)   # (blocks, L, P)
  bs = bs.reshape(d, n_blocks, p).transpose(1, 0, 2)
  n_items = n_seeds * n_blocks
  group = min(_group_size(), n_items)
  items = -(-items // group) * group * (len(devs) if chunk_size is None else 1)
  program = _network_program(act, scheme, w, d, residual, norm, keep_prob, n_blocks, group,
                             in_features, np.dtype(dtype))
  out = engine.run_chunked(
      program, n_items, chunk_size=items, multiple=group, shared=(key, x, ws, bs),
      devices=devs, store=engine.config_store(grid.store, k),
      spec={**spec, "config": k, "settings_per_block": p}, progress=bar, units_per_item=p)
  return _unblock(out, n_seeds, n_blocks, p, n_settings, d, max(grid.depths))


@functools.lru_cache(maxsize=64)
def _network_program(act, scheme, width, depth, residual, norm, keep_prob, n_blocks, group,
                     in_features, dtype):
  """The jitted per-chunk computation ``(key, x, ws, bs, idx) -> Stats``.

  Item ``i`` is seed ``i // n_blocks`` with settings block ``i % n_blocks``;
  ``len(idx)`` must be a multiple of ``group``. Cached per static
  configuration, so repeated sweeps compile once.
  """

  def item(key, x, ws, bs, seed, block):
    k = _models.network_key(key, seed)
    std = _models.standard_params(k, in_features=in_features, width=width, depth=depth,
                                  init=scheme, norm=norm, dtype=dtype)
    r = _probes.readout(jax.random.fold_in(k, streams.READOUT), width, dtype)
    dropout = {}
    if keep_prob < 1:                   # at 1 the program is the one without dropout
      dropout = dict(keep_prob=keep_prob, dropout_key=jax.random.fold_in(k, streams.DROPOUT))
    return _probes.measure(std, x, r, activation=act, residual=residual, norm=norm,
                           w_scale=ws[block], b_scale=bs[block], **dropout)

  @jax.jit
  def compute(key, x, ws, bs, idx):
    # Fixed-size groups of items in a loop, vmapped within a group: every
    # item is computed by the same code whatever the chunk size, so results
    # are bitwise independent of it (XLA's kernels depend on batch sizes).
    groups = idx.reshape(-1, group)
    out = jax.lax.map(lambda g: jax.vmap(item, in_axes=(None, None, None, None, 0, 0))(
        key, x, ws, bs, g // n_blocks, g % n_blocks), groups)
    return jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), out)

  return compute


def _unblock(out, n_seeds, n_blocks, p, n_settings, depth, max_depth):
  """Items ``(seed, block)`` with ``(L, P)`` -> ``(settings, seed, layer)``."""
  arrays = {}
  for name, a in out.items():
    layered = a.ndim == 3
    a = a.reshape(n_seeds, n_blocks, *a.shape[1:])
    if layered:                                         # (seed, block, L, P)
      a = np.moveaxis(a, 2, -1)                         # (seed, block, P, L)
      if depth < max_depth:
        a = np.concatenate([a, np.full((*a.shape[:-1], max_depth - depth), np.nan, a.dtype)], -1)
    a = a.reshape(n_seeds, n_blocks * p, *a.shape[3:])[:, :n_settings]
    arrays[name] = np.moveaxis(a, 0, 1)                 # (settings, seed[, layer])
  return arrays


def _layer_sigma_w2(grid, in_features: int, swept: dict[str, bool]) -> xr.Variable:
  """Each layer's weight variance in the theory's terms, over (init, width, depth, sigma_w2)."""
  max_depth = max(grid.depths)
  lw = np.full((len(grid.inits), len(grid.widths), len(grid.depths), len(grid.sigma_w2),
                max_depth), np.nan)
  for (i, s), (j, w), (k, d), (m, v) in itertools.product(
      enumerate(grid.inits), enumerate(grid.widths), enumerate(grid.depths),
      enumerate(grid.sigma_w2)):
    lw[i, j, k, m, 0] = s.sigma_w2_effective(v, in_features, w)
    lw[i, j, k, m, 1:d] = s.sigma_w2_effective(v, w, w)
  return engine.grid_variable(
      lw, ("init", "width", "depth", "sigma_w2"), swept, ["layer"],
      "each layer's weight variance in the theory's terms, fan_in E[W_ij^2]")


def _dataset(results, grid, swept, *, x, residual, norm, keep_prob, dtype) -> xr.Dataset:
  """The sweep's result schema: probes over (grid, seed[, layer]) and the inputs' statistics."""
  axes = grid.axes()
  lengths = [len(v) for v in axes.values()]
  data_vars = {}
  for name in results[0]:
    full = engine.stack(results, name, lengths)      # (*grid, seed[, layer])
    trailing = ["seed"] + (["layer"] if full.ndim > len(lengths) + 1 else [])
    data_vars[name] = engine.grid_variable(full, SWEPT, swept, trailing,
                                           _probes.STAT_DOCS[name])
  batch, in_features = x.shape
  data_vars["layer_sigma_w2"] = _layer_sigma_w2(grid, in_features, swept)
  q_in, c_in = input_statistics(x)
  data_vars["q_input"] = xr.Variable((), q_in, {"description": "mean |x|^2 / in_features of the inputs"})
  data_vars["c_input"] = xr.Variable((), c_in, {"description": "mean cosine of input pairs (2k, 2k+1)"})
  coords = {"seed": np.arange(grid.n_seeds), "layer": np.arange(1, max(grid.depths) + 1),
            **engine.grid_coords(axes, swept)}
  attrs = {
      "in_features": in_features, "n_inputs": batch, "residual": int(residual),
      "norm": "none" if norm is None else norm, "keep_prob": keep_prob,
      **engine.provenance(grid, dtype),
      "loss": "L_a = r . a^L, r a random unit vector per network (empirical.probes)",
  }
  return xr.Dataset(data_vars, coords=coords, attrs=attrs)
