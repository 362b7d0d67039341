"""Jacobian spectra of many random networks as a Dataset, and their distance from a density.

:func:`jacobian_spectra` draws a grid of square MLPs at the fixed point
``q*`` and measures the singular values of each input-output Jacobian
(exactly by SVD, or by the matrix-free estimates of
:mod:`empirical.jacobian`), on the experiment engine (chunks, store and
resume, devices). :func:`density_l1` compares the law of measured singular
values with a theory density such as :func:`meanfield.jacobian_spectrum`'s.
"""

from __future__ import annotations

import functools
import itertools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from empirical import _checks
from empirical import _grid
from empirical import _input_length
from empirical import _products
from empirical import architectures
from empirical import description
from empirical import devices as _devices
from empirical import engine
from empirical import models as _models
from empirical import streams
from empirical.engine import DEFAULT_MEMORY_BUDGET, SWEPT
from empirical.jacobian import extreme_singular_values, moment_estimates
from meanfield.network import MLP, Architecture

__all__ = ["jacobian_spectra", "density_l1", "SWEPT"]

Array = jax.Array

METHODS = ("svd", "projection")


def _stacked(params: _models.Params) -> tuple[Array, Array]:
  """``(weights (L, N, N), biases (L, N))`` of a square MLP's :class:`Params`."""
  return (jnp.concatenate([params.w_in[None], params.w]),
          jnp.concatenate([params.b_in[None], params.b]))


@functools.partial(jax.jit, static_argnames=(
    "act", "scheme", "width", "depths", "method", "max_order", "n_probes",
    "num_iterations", "batch_size"))
def _compute(idx, key, ws, bs, qs, *, act, scheme, width, depths, method, max_order,
             n_probes, num_iterations, batch_size):
  """Networks ``idx`` of one (activation, init, width): all settings, all depths.

  Item ``i`` is network ``i`` (key ``fold_in(key, i)``); its standard draw is
  shared by every ``(sigma_w2, sigma_b2)`` setting (common random numbers).
  ``ws``, ``bs``: ``(settings, L)`` layer scales; ``qs``: ``(settings,)``.
  Module-level and jitted on static arguments, so repeated calls reuse the
  compiled program.
  """
  depth = depths[-1]
  dtype = ws.dtype

  def one_setting(std, z, k, w_scale, b_scale, q):
    weights, biases = _stacked(_models.scale_params(std, w_scale, b_scale))
    x = act(jnp.sqrt(q) * z)
    if method == "svd":
      sv, powers, first = _products.svd_at_depths(act, weights, biases, x, depths, max_order)
      return {"singular_values": sv, "moment": powers, "sigma_max": sv[:, 0],
              "first_nonfinite": first}
    finite = _products.forward(act, weights, biases, x)[2]
    out = {"moment": [], "moment_error": [], "sigma_max": [], "sigma_max_error": [],
           "sigma_min": [], "sigma_min_error": [],
           "first_nonfinite": [_products.first_nonfinite(finite[:d]) for d in depths]}
    for d in depths:
      m, e = moment_estimates(weights[:d], biases[:d], x, activation=act,
                              key=jax.random.fold_in(k, streams.HUTCHINSON), n_probes=n_probes,
                              max_order=max_order)
      s, se = extreme_singular_values(weights[:d], biases[:d], x, activation=act,
                                      key=jax.random.fold_in(k, streams.LANCZOS),
                                      num_iterations=num_iterations)
      for name, v in (("moment", m), ("moment_error", e), ("sigma_max", s[0]),
                      ("sigma_max_error", se[0]), ("sigma_min", s[1]),
                      ("sigma_min_error", se[1])):
        out[name].append(v)
    return {name: jnp.stack(v) for name, v in out.items()}

  def item(seed):
    k = _models.network_key(key, seed)
    std = _models.standard_params(k, in_features=width, width=width, depth=depth,
                                  init=scheme, dtype=dtype)
    z = jax.random.normal(jax.random.fold_in(k, streams.JACOBIAN_INPUT), (width,), dtype)
    return jax.lax.map(lambda a: one_setting(std, z, k, *a), (ws, bs, qs))

  return jax.lax.map(item, idx, batch_size=batch_size)


@description.takes_network()
def jacobian_spectra(key: Array, *, network=None, arch: Architecture = MLP(), activation="tanh",
                     width=256, depth=10, sigma_w2=None,
                     sigma_b2=0.0, init="gaussian", n_seeds: int = 1, q=None,
                     method: str = "svd", max_order: int = 2, n_probes: int = 32,
                     num_iterations: int = 48, chunk_size: int | None = None,
                     batch_size: int | None = None,
                     memory_budget: int = DEFAULT_MEMORY_BUDGET,
                     store: str | os.PathLike | None = None, progress: bool = True,
                     dtype=None, devices: _devices.Devices = None, q_input: float | None = None,
                     warmup: int | None = None) -> xr.Dataset:
  """Input-output Jacobian spectra of many random networks, as a labelled Dataset.

  Networks are square MLPs (:mod:`empirical.models`, ``in_features = width``,
  no readout) with input ``x^0 = phi(sqrt(q) z)``: with ``q = q*`` every
  layer is at the fixed point, as in the theory
  (:func:`meanfield.jacobian_spectrum`).

  Any of ``activation``, ``init``, ``width``, ``depth``, ``sigma_w2`` and
  ``sigma_b2`` may be a list; the grid is their Cartesian product, a list
  makes a dimension (as in :func:`empirical.sweep`). Seeds, settings and
  depths never loop in Python:

  - network ``i`` has key ``fold_in(key, i)`` and the parameters of
    :func:`empirical.models.standard_params` (layer ``l``'s weights depend on
    ``(i, l)`` only); its input noise ``z`` comes from ``fold_in(k_i, JACOBIAN_INPUT)``,
    its probes from ``fold_in(k_i, HUTCHINSON)`` and ``fold_in(k_i, LANCZOS)``
    (:mod:`empirical.streams`);
  - every ``(sigma_w2, sigma_b2)`` rescales the same standard draw (common
    random numbers);
  - the network of depth ``L`` is the first ``L`` layers of the deepest one,
    so all depths come from one pass (``J`` is taken after each).

  Results do not depend on ``chunk_size`` or ``batch_size``. With ``store``,
  each finished chunk is written atomically and a rerun resumes
  (:func:`empirical.engine.run_chunked`).

  Args:
    key: PRNG key.
    network: a :class:`meanfield.Network` (one grid point) whose fields fill
      ``activation``, ``width``, ``depth``, ``init``, ``sigma_w2`` and
      ``sigma_b2`` (:mod:`empirical.description`); those must then not be
      given too; plain MLPs, or a network whose ``arch`` has an experiment mirror.
    arch: the plain :class:`meanfield.MLP` (default ``MLP()``; no variant:
      ``ValueError``), or another architecture value whose mirror
      (:mod:`empirical.architectures`) answers. ``meanfield.RNN(...)``: the
      time-step Jacobian ``J = dh_T / dh_{T-k}`` of random RNNs at the lag
      ``k = depth`` (one integer or an increasing list, all from one run),
      after ``warmup`` steps (default 20) on one sequence of inputs of length
      ``q_input`` (default 1); ``moment`` for ``max_order <= 2`` only, exact
      traces (:mod:`empirical.rnn`); ``q``, ``method``, ``batch_size`` and
      ``devices`` keep their defaults. ``meanfield.Conv(kernel_size,
      spatial_size)``: the ``n C`` square Jacobian ``J = d phi(h^L) / d x^0``
      of random circular CNNs (``C_0 = width``, ``n = spatial_size``) at
      input length ``q`` (default as for the MLP: ``q*``, ``Q_LIMIT`` where
      it is 0), its singular values by SVD, one network at a
      time (:func:`empirical.conv.run_jacobian_spectra`); ``singular_values``
      over ``index < n C``, ``moment``, ``sigma_max`` and ``q``; ``init``
      names kernel schemes (``"delta_orthogonal"``); ``method``,
      ``batch_size`` and ``devices`` keep their defaults.
    activation: names from ``meanfield.activation``'s table (or Activations).
    width: ``N``. depth: ``L >= 1``.
    sigma_w2, sigma_b2: weight variance (``fan_in E[W_ij^2]``, for the
      schemes by variance) and bias variance.
    init: weight schemes of :mod:`empirical.inits` (``"gaussian"``,
      ``"orthogonal"``, ...); the theory reads their law (``Init.law``,
      :func:`meanfield.network.weight_law`).
    n_seeds: networks per grid point.
    q: input length; ``None`` uses ``meanfield.q_star`` of each setting
      (``Q_LIMIT = 1e-6``, the limit ``q -> 0+``, where it is 0; a
      ``ValueError`` where it is infinite: give ``q`` there;
      :func:`empirical._input_length.fixed_point_q`, the CNN's rule too).
    method: ``"svd"``: exact singular values (``O(L N^3)`` per network);
      ``"projection"``: :func:`moment_estimates` with ``n_probes`` probes
      and :func:`extreme_singular_values` with ``num_iterations`` Lanczos
      steps (``O(L N^2)`` per probe or step), for widths where the SVD is
      too dear.
    max_order: moments ``m_k = tr (J J^T)^k / N`` for ``k = 1..max_order``.
    chunk_size: networks per compiled call and per stored chunk; default
      from ``memory_budget`` (bytes).
    batch_size: networks vmapped together inside a chunk (``lax.map``'s
      ``batch_size``); default 1 on the CPU, where it measured fastest, else
      the whole chunk.
    store: directory for finished chunks (resume).
    progress: tqdm progress bar.
    dtype: float dtype (default float32, float64 under x64); use float64
      for the small end of deep spectra.
    devices: where to run, as in :func:`empirical.sweep`: ``None`` (default)
      this process's devices (the first only on the CPU), ``1`` the default
      device, an integer ``n`` the
      first ``n``, or a sequence of devices; each chunk of networks is split
      evenly over them (:mod:`empirical.devices`), with results those of a
      one-device run. Under ``jax.distributed`` the processes share the
      chunks through ``store`` (:func:`empirical.engine.run_chunked`).

  Returns:
    ``xarray.Dataset`` with the swept dims of ``activation, init, width,
    depth, sigma_w2, sigma_b2`` (in that order), then ``seed``, then
    ``index`` (singular values, descending) or ``order`` (``k``). Variables:
    ``moment`` (``..., seed, order``); ``sigma_max`` (``..., seed``);
    for ``svd`` ``singular_values`` (``..., seed, index``; nan beyond a
    network's width); for ``projection`` ``moment_error``, the standard
    errors, and ``sigma_max_error``, ``sigma_min``, ``sigma_min_error``
    (Lanczos bounds). ``first_nonfinite`` (``..., seed``): the first layer
    whose pre-activations overflowed (0: none up to that depth), as in a
    sweep; spectra from there on are nan. Products of layers are rescaled
    by powers of two on the way, so the other values are inf only where
    they are beyond the dtype's range (a float32 ``sigma_max`` of 4e32 is
    returned as such; its moments ``m_k``, above 1e38, as inf). ``q``
    holds the input length used per setting.

    q_input, warmup: the RNN's (``arch``); None for the MLP.

  Raises:
    ValueError: before any work, for a bad argument.
    NotImplementedError: an ``arch`` without an experiment mirror for it.
  """
  description.check_runs("empirical.jacobian_spectra", arch, ())
  if not isinstance(arch, MLP):
    mirror = architectures.mirror(arch, "empirical.jacobian_spectra")
    fixed = dict(q=(q, None), method=(method, "svd"), batch_size=(batch_size, None),
                 devices=(devices, None))
    bad = {k: v for k, (v, plain) in fixed.items()
           if k not in mirror.spectra_keywords and v is not plain and v != plain}
    if bad:
      raise ValueError(f"{', '.join(f'`{k}`' for k in bad)} must keep the default with "
                       f"arch={arch!r}, got " + ", ".join(f"{k}={v!r}" for k, v in bad.items()))
    return mirror.jacobian_spectra(
        key, arch, activation=activation, width=width, depth=depth, init=init,
        sigma_w2=sigma_w2, sigma_b2=sigma_b2, n_seeds=n_seeds, chunk_size=chunk_size,
        memory_budget=memory_budget, store=store, progress=progress, max_order=max_order,
        q_input=q_input, warmup=warmup, dtype=dtype,
        **{k: v for k, (v, _) in fixed.items() if k in mirror.spectra_keywords})
  for name, value in (("q_input", q_input), ("warmup", warmup)):
    if value is not None:
      raise ValueError(f"`{name}` must be None for the MLP (it is the RNN's, arch="
                       f"meanfield.RNN(...)), got {value!r}")
  grid = _grid.network_grid(key=key, activation=activation, init=init, width=width,
                            depth=depth, n_seeds=n_seeds, sigma_w2=sigma_w2,
                            sigma_b2=sigma_b2, verb="jacobian_spectra", store=store,
                            by_variance_only=True)
  depths = grid.depths
  if any(b <= a for a, b in zip(depths, depths[1:])):
    raise ValueError(f"`depth` must be one integer or an increasing list, got {depth!r}")
  if method not in METHODS:
    raise ValueError(f"`method` must be one of {', '.join(METHODS)}, got {method!r}")
  max_order = _checks.check_int("max_order", max_order, 1)
  n_probes = _checks.check_int("n_probes", n_probes, 2)
  num_iterations = _checks.check_int("num_iterations", num_iterations, 1)
  if method == "projection" and num_iterations > min(grid.widths):
    raise ValueError(
        f"`num_iterations` must be at most the width {min(grid.widths)}, got {num_iterations}")
  if q is not None:
    q = _checks.check_variances("q", [q])[0]
  if chunk_size is not None:
    chunk_size = _checks.check_int("chunk_size", chunk_size, 1)
  if batch_size is not None:
    batch_size = _checks.check_int("batch_size", batch_size, 1)
  memory_budget = int(_checks.check_number("memory_budget", memory_budget, minimum=0,
                                           strict=True))
  dtype = _checks.float_dtype(dtype)
  devs = _devices.resolve(devices)
  _check_plan_fits(grid, np.dtype(dtype).itemsize, batch_size, memory_budget)
  settings = list(itertools.product(grid.sigma_w2, grid.sigma_b2))
  sw2, sb2 = np.array(settings, np.float64).T
  qs = np.array([np.full(len(settings), q) if q is not None else
                 _input_length.fixed_point_q(a, sw2, sb2)
                 for a in grid.activations])                         # (acts, settings)
  if batch_size is None:
    batch_size = 1 if jax.default_backend() == "cpu" else None
  configs = list(itertools.product(range(len(grid.activations)), grid.inits, grid.widths))
  spec = {**engine.base_spec(grid, dtype), "q": qs.tolist(), "method": method,
          "max_order": max_order, "num_probes": n_probes,   # the stores' name of n_probes
          "num_iterations": num_iterations}
  run = functools.partial(
      _run_config, key=key, grid=grid, settings=settings, qs=qs, spec=spec,
      options=dict(method=method, max_order=max_order, n_probes=n_probes,
                   num_iterations=num_iterations, batch_size=batch_size),
      chunk_size=chunk_size, memory_budget=memory_budget, devs=devs, dtype=dtype)
  results = engine.run_configs(configs, run, total=len(configs) * grid.n_seeds * len(settings),
                               desc="jacobian", progress=progress)
  swept = engine.swept(SWEPT, (activation, init, width, depth, sigma_w2, sigma_b2))
  return _dataset(results, grid, qs, swept, method=method, max_order=max_order, dtype=dtype)


def _check_plan_fits(grid, itemsize: int, batch_size: int | None, memory_budget: int) -> None:
  """ValueError unless one network of the deepest depth fits at every width."""
  for w in grid.widths:
    # One network in flight per device at the least (batch_size or 1 of them).
    engine.check_fits(f"network of width {w} and depth {grid.depths[-1]}",
                      lambda d, w=w: _network_bytes(itemsize, w, d, batch_size or 1),
                      grid.depths[-1], memory_budget, width=w)


def _run_config(c, config, bar, *, key, grid, settings, qs, spec, options, chunk_size,
                memory_budget, devs, dtype) -> dict[str, np.ndarray]:
  """Configuration ``c`` (activation, init, width): arrays ``(seed, settings, depths, ...)``."""
  a, scheme, w = config
  depths = grid.depths
  ws, bs = _models.layer_scales(scheme, jnp.asarray([st[0] for st in settings], dtype),
                                jnp.asarray([st[1] for st in settings], dtype),
                                in_features=w, width=w, depth=depths[-1], dtype=dtype)
  ws, bs = ws.T, bs.T                                              # (settings, L)
  per_network = _network_bytes(np.dtype(dtype).itemsize, w, depths[-1],
                               options["batch_size"] or grid.n_seeds)
  # The budget is per device: a chunk holds that many networks on each.
  items = chunk_size or max(1, min(grid.n_seeds, len(devs) * memory_budget // per_network))
  compute = functools.partial(
      _compute, key=key, ws=ws, bs=bs, qs=jnp.asarray(qs[a], dtype), act=grid.activations[a],
      scheme=scheme, width=w, depths=tuple(depths), **options)
  return engine.run_chunked(
      compute, grid.n_seeds, chunk_size=items, store=engine.config_store(grid.store, c),
      spec={**spec, "config": c}, progress=bar, units_per_item=len(settings), devices=devs)


def _network_bytes(itemsize: int, width: int, depth: int, networks: int) -> int:
  """Bytes ``networks`` networks in flight hold (weights and workspace)."""
  return itemsize * width * width * (depth + 6) * networks


def _dataset(results, grid, qs, swept, *, method, max_order, dtype) -> xr.Dataset:
  """The spectra's result schema: over (grid, seed[, index | order]) and ``q``."""
  axes = grid.axes()
  n_acts, n_inits, n_widths, n_depths, n_sw, n_sb = (len(v) for v in axes.values())
  max_width = max(grid.widths)
  data_vars = {}
  for name in results[0]:
    parts = []
    for r in results:                    # (seed, settings, depths[, index|order])
      a = r[name]
      if name == "singular_values" and a.shape[-1] < max_width:
        pad = np.full((*a.shape[:-1], max_width - a.shape[-1]), np.nan, a.dtype)
        a = np.concatenate([a, pad], -1)
      parts.append({name: a})
    a = engine.stack(parts, name, [n_acts, n_inits, n_widths, grid.n_seeds])
    a = a.reshape(*a.shape[:4], n_sw, n_sb, n_depths, *a.shape[6:])
    a = np.swapaxes(a, 3, 6)             # -> (activation, ..., sigma_b2, seed, ...)
    extra = {"singular_values": ["index"], "moment": ["order"],
             "moment_error": ["order"]}.get(name, [])
    data_vars[name] = engine.grid_variable(a, SWEPT, swept, ["seed"] + extra, _DOCS[name])
  q = qs.reshape(n_acts, 1, 1, 1, n_sw, n_sb)
  data_vars["q"] = engine.grid_variable(
      q, SWEPT, {**swept, "init": False, "width": False, "depth": False}, [],
      "input length q (q* unless given)")
  coords = {"seed": np.arange(grid.n_seeds), "order": np.arange(1, max_order + 1)}
  if method == "svd":
    coords["index"] = np.arange(max_width)
  coords.update(engine.grid_coords(axes, swept))
  attrs = {"method": method, **engine.provenance(grid, dtype),
           "input": "x^0 = phi(sqrt(q) z), z ~ N(0, I_N)",
           "depths": "the network of depth L is the first L layers of the deepest one"}
  return xr.Dataset(data_vars, coords=coords, attrs=attrs)


_DOCS = {
    "singular_values": "singular values of J = dx^L/dx^0, descending",
    "moment": "m_k = tr (J J^T)^k / N (exact for svd, Hutchinson estimate for projection)",
    "moment_error": "standard error of the Hutchinson estimate of m_k",
    "sigma_max": "largest singular value of J (Lanczos lower bound for projection)",
    "sigma_max_error": "Lanczos residual bound on sigma_max",
    "sigma_min": "Lanczos estimate of the smallest singular value (an upper bound)",
    "sigma_min_error": "Lanczos residual bound on sigma_min",
    "first_nonfinite": "first layer whose pre-activations h^l are not finite, i.e. the "
                       "forward pass overflowed (0: none up to this depth)",
}


def density_l1(samples, *, sigma, density, bins: int = 20, floor: float = 0.0,
               mass_below: float = 0.0) -> float:
  """L1 distance between the empirical law of ``samples`` and a density on a grid.

  The axis is cut into ``bins`` intervals of equal mass ``1/bins`` under the
  density (its quantiles), so the distance weighs the bulk and the tails
  alike and does not depend on the parametrisation (singular value or its
  log): ``sum_b |n_b / n - 1/bins|``, in ``[0, 2]``, where ``n_b`` counts
  the samples in interval ``b``. The density is integrated by the
  trapezoidal rule on ``sigma`` and normalised; check separately that it
  carries the mass you expect (e.g. ``JacobianSpectrum.converged``).

  Values below ``floor`` are compared as one lump (their total mass), not
  bin by bin: an SVD resolves singular values only down to about ``eps
  sigma_max`` (``1e-16`` of the largest in float64), and the smaller ones of a
  deep Gaussian network (1e-19 and below) come out as rounding noise there.

  Mass of the density below the grid (``sigma < sigma[0]``, e.g. the power-law
  tail ``p ~ sigma^(-(L-1)/(L+1))`` of a deep Gaussian network, whose mass
  below ``sigma_0`` is ``p(sigma_0) sigma_0 (L + 1)/2``) is passed as
  ``mass_below``: it joins the lump below ``floor``, and the density on the
  grid is normalised to ``1 - mass_below``.

  Args:
    samples: any shape (flattened; nan ignored).
    sigma: increasing grid ``(n,)`` covering the samples.
    density: ``(n,)``, the density per unit ``sigma`` (nan counts as 0).
    bins: number of equal-mass intervals (above ``floor``), ``>= 2``.
    floor: resolution floor on ``sigma`` (``>= 0``).
    mass_below: probability below ``sigma[0]`` under the density, in ``[0, 1)``.

  Returns:
    The distance as a Python float.
  """
  bins = _checks.check_int("bins", bins, 2)
  sigma = np.asarray(sigma, np.float64)
  density = np.nan_to_num(np.asarray(density, np.float64))
  if sigma.ndim != 1 or sigma.shape != density.shape or sigma.size < 2 or np.any(
      np.diff(sigma) <= 0):
    raise ValueError(
        f"`sigma` must be an increasing 1-D grid and `density` of the same shape, got "
        f"{sigma.shape} and {density.shape}")
  cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(sigma))])
  if not cdf[-1] > 0:
    raise ValueError("`density` must have positive mass on `sigma`")
  samples = np.asarray(samples, np.float64).ravel()
  samples = samples[~np.isnan(samples)]
  if not (math.isfinite(floor) and floor >= 0):
    raise ValueError(f"`floor` must be a finite number >= 0, got {floor!r}")
  if not (math.isfinite(mass_below) and 0 <= mass_below < 1):
    raise ValueError(f"`mass_below` must be a number in [0, 1), got {mass_below!r}")
  cdf = mass_below + (1.0 - mass_below) * cdf / cdf[-1]
  u = np.interp(samples, sigma, cdf)                # probability integral transform
  cut = max(floor, sigma[0]) if mass_below > 0 else floor
  lump = float(np.interp(cut, sigma, cdf))
  below = np.mean(samples < cut)
  counts = np.histogram(u[samples >= cut], bins=bins, range=(lump, 1.0))[0]
  return float(abs(below - lump)
               + np.sum(np.abs(counts / samples.size - (1.0 - lump) / bins)))
