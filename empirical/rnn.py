"""The experiment mirror of :class:`meanfield.RNN`: many random vanilla RNNs, measured step by step.

The network of :mod:`meanfield.rnn`, in Flax's kernel layout (``h = x @ W``):

.. math::

  h_t = \\phi(h_{t-1}) W + x_t U + b, \\qquad t = 1, \\dots, T, \\qquad h_0 = 0,

with the recurrent ``W`` (``N x N``) drawn once from an :mod:`empirical.inits`
scheme by variance (``"gaussian"``, ``"orthogonal"``, ``"uniform"``,
``"truncated_normal"``: ``standard(key) * scale(sigma_w2)``) and tied over
time (``RNN(tied=False)`` draws a fresh ``W`` at every step, the approximation
the theory of the Jacobian spectrum makes), ``U ~ N(0, sigma_u2 / N_in)``
(``N_in = width``), ``b ~ N(0, sigma_b2)``. A network is a pure function of
its parameters, run by ``lax.scan`` over time and ``vmap`` over seeds;
network ``i`` uses ``k = fold_in(key, i)``, split in five (sweep: ``W, U, b``,
inputs, readout) or four (Jacobian: ``W, U, b``, input); the untied ``W`` of
step ``t`` comes from ``fold_in(k_W, t)``.

Two drivers reach it through ``arch=meanfield.RNN(...)``, both on the
experiment engine (:mod:`empirical.engine`: chunks of seeds, a store that
resumes, one progress bar), one configuration per (activation, init, width,
depth, sigma_w2, sigma_b2):

- :func:`empirical.sweep`: per-step ``q``, ``c``, ``grad_h2``, ``c_time``
  (:data:`SWEEP_DOCS`) over ``seed`` and ``layer`` (the time step ``t``).
  Inputs: ``n_inputs // 2`` pairs of sequences; at every step the two inputs
  of a pair have ``|x_t|^2 / N_in = q_input`` exactly and cosine ``c_input``
  exactly (a random orthonormal pair of directions, fresh at every step and for
  every pair), so the theory's ``q_input`` and ``c_input`` hold without
  sampling error.
- :func:`empirical.jacobian_spectra`: the moments ``m_k = tr (J J^T)^k / N``
  (``k = 1, 2``) of the time-step Jacobian ``J = dh_T / dh_{T-depth}``, each
  network run for ``T = warmup + 1 + max(depth)`` steps on one sequence.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from empirical import _checks
from empirical import _grid
from empirical import architectures
from empirical import description
from empirical import engine
from meanfield.maps import propagate
from meanfield.network import Network
from meanfield.rnn import RNN

__all__ = ["RNNMirror", "SWEEP_DOCS", "JACOBIAN_DOCS"]

Array = jax.Array

#: The variables of an RNN sweep, over (grid..., seed, layer = time step t).
SWEEP_DOCS = {
    "q": "<(h_t)_i^2> over units and the n_inputs sequences",
    "c": "cosine of the two sequences' h_t in a pair, mean over the pairs",
    "grad_h2": "mean over sequences a of |dL_a/dh_t^a|^2, L_a = r . h_T^a (r a random unit "
               "vector per network, so 1 at t = T); the square, not grad_h's root",
    "c_time": "cosine of h_t and h_{t-1} of one sequence, mean over sequences (nan at t = 1)",
}
JACOBIAN_DOCS = {
    "moment": "m_k = tr((J J^T)^k) / N of the time-step Jacobian J = dh_T/dh_{T-depth}",
}


def _pair_inputs(key, steps, pairs, width, q_input, c_input, dtype):
  """``(steps, 2 pairs, width)`` inputs: each pair exactly of length and cosine as asked."""
  z = jax.random.normal(key, (steps, pairs, 2, width), dtype)
  e1 = z[..., 0, :] / jnp.linalg.norm(z[..., 0, :], axis=-1, keepdims=True)
  v = z[..., 1, :] - jnp.sum(z[..., 1, :] * e1, axis=-1, keepdims=True) * e1
  e2 = v / jnp.linalg.norm(v, axis=-1, keepdims=True)
  r = jnp.sqrt(q_input * width)
  xa = r * e1
  xb = r * (c_input * e1 + jnp.sqrt(1 - c_input ** 2) * e2)
  return jnp.stack([xa, xb], axis=2).reshape(steps, 2 * pairs, width)


def _recurrent(scheme, key, t, width, sigma_w2, dtype, tied):
  k = key if tied else jax.random.fold_in(key, t)
  return scheme.standard(k, (width, width), dtype) * scheme.scale(sigma_w2, width, width)


def _network(act, scheme, steps, width, pairs, tied, key, sigma_w2, sigma_u2, sigma_b2,
             q_input, c_input):
  """One network's statistics: ``(q, c, grad_h2, c_time)``, each of shape ``(steps,)``."""
  dtype = sigma_w2.dtype
  k_w, k_u, k_b, k_x, k_r = jax.random.split(key, 5)
  u = jax.random.normal(k_u, (width, width), dtype) * jnp.sqrt(sigma_u2 / width)
  b = jax.random.normal(k_b, (width,), dtype) * jnp.sqrt(sigma_b2)
  x = _pair_inputs(k_x, steps, pairs, width, q_input, c_input, dtype)
  r = jax.random.normal(k_r, (width,), dtype)
  r = r / jnp.linalg.norm(r)
  w_tied = _recurrent(scheme, k_w, 0, width, sigma_w2, dtype, True) if tied else None
  drive = x @ u + b[None, None, :]                        # (steps, B, N)

  def run(shift):
    def step(h, inputs):
      t, drive_t, shift_t = inputs
      w = w_tied if tied else _recurrent(scheme, k_w, t, width, sigma_w2, dtype, False)
      h = act.fn(h) @ w + drive_t + shift_t
      return h, h

    h0 = jnp.zeros(drive.shape[1:], dtype)
    _, hs = jax.lax.scan(step, h0, (jnp.arange(steps), drive, shift))
    return jnp.sum(hs[-1] @ r), hs

  shift = jnp.zeros_like(drive)
  grads, hs = jax.grad(run, has_aux=True)(shift)
  q = jnp.mean(hs * hs, axis=(1, 2))
  cosine = lambda a, b: jnp.sum(a * b, -1) / jnp.sqrt(jnp.sum(a * a, -1) * jnp.sum(b * b, -1))
  c = jnp.mean(cosine(hs[:, 0::2], hs[:, 1::2]), axis=1)
  c_time = jnp.mean(cosine(hs[1:], hs[:-1]), axis=1)
  c_time = jnp.concatenate([jnp.full((1,), jnp.nan, dtype), c_time])
  return {"q": q, "c": c, "grad_h2": jnp.mean(jnp.sum(grads * grads, -1), axis=1),
          "c_time": c_time}


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4, 5))
def _sweep_chunk(act, scheme, steps, width, pairs, tied, key, sigma_w2, sigma_u2, sigma_b2,
                 q_input, c_input, idx):
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(idx)
  one = functools.partial(_network, act, scheme, steps, width, pairs, tied)
  return jax.vmap(lambda k: one(k, sigma_w2, sigma_u2, sigma_b2, q_input, c_input))(keys)


def _jacobian_network(act, scheme, steps, warmup, width, tied, key, sigma_w2, sigma_u2,
                      sigma_b2, q_input):
  """``(m_1, m_2)`` of ``J_k J_k^T``, ``J_k = dh_T/dh_{T-k}``, ``k = 1..steps``, one network."""
  dtype = sigma_w2.dtype
  total = warmup + steps
  k_w, k_u, k_b, k_x = jax.random.split(key, 4)
  u = jax.random.normal(k_u, (width, width), dtype) * jnp.sqrt(sigma_u2 / width)
  b = jax.random.normal(k_b, (width,), dtype) * jnp.sqrt(sigma_b2)
  x = _pair_inputs(k_x, total, 1, width, q_input, 0.0, dtype)[:, 0]
  drive = x @ u + b[None, :]
  w_of = lambda t: _recurrent(scheme, k_w, t, width, sigma_w2, dtype, tied)

  def step(h, inputs):
    t, drive_t = inputs
    h = act.fn(h) @ w_of(t) + drive_t
    return h, h

  _, hs = jax.lax.scan(step, jnp.zeros((width,), dtype), (jnp.arange(total), drive))
  # Row-vector layout: dh_{s+1} = dh_s diag(phi'(h_s)) W_{s+1}; J_k maps dh_{T-k} to dh_T.
  def back(j, s):                 # j = d h_T / d h_{s+1} as (N, N) acting on row vectors
    j = (act.derivative(hs[s])[:, None] * w_of(s + 1)) @ j
    jj = j @ j.T
    return j, (jnp.trace(jj) / width, jnp.sum(jj * jj) / width)

  last = total - 1
  _, (m1, m2) = jax.lax.scan(back, jnp.eye(width, dtype=dtype),
                             jnp.arange(last - 1, last - 1 - steps, -1))
  return {"m1": m1, "m2": m2}


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4, 5))
def _jacobian_chunk(act, scheme, steps, warmup, width, tied, key, sigma_w2, sigma_u2, sigma_b2,
                    q_input, idx):
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(idx)
  one = functools.partial(_jacobian_network, act, scheme, steps, warmup, width, tied)
  return jax.vmap(lambda k: one(k, sigma_w2, sigma_u2, sigma_b2, q_input))(keys)


# --- checks ------------------------------------------------------------------------


def _grid_of(arch, *, key, activation, init, width, depth, n_seeds, sigma_w2, sigma_b2, verb,
             store):
  if not isinstance(arch, RNN):
    raise ValueError(f"`arch` must be a meanfield.RNN, got {arch!r}")
  sigma_u2 = arch.sigma_u2
  if not _checks.is_number(sigma_u2):
    raise ValueError(f"`sigma_u2` of the RNN must be one number for an experiment (make one "
                     f"run per value), got {sigma_u2!r}")
  grid = _grid.network_grid(key=key, activation=activation, init=init, width=width, depth=depth,
                            n_seeds=n_seeds, sigma_w2=sigma_w2, sigma_b2=sigma_b2, verb=verb,
                            store=store, by_variance_only=verb == "jacobian_spectra")
  if not all(s.uses_sigma_w2 for s in grid.inits):
    raise ValueError(f"`init` must be schemes by variance (gaussian, uniform, truncated_normal, "
                     f"orthogonal) for an RNN, got {[s.name for s in grid.inits]}")
  if min(grid.widths) < 2:
    raise ValueError(f"`width` must be >= 2 for an RNN (two input directions), got {width!r}")
  return grid, _checks.check_variance("sigma_u2", sigma_u2)


def _check_drive(q_input, c_input):
  q_input = _checks.check_variance("q_input", 1.0 if q_input is None else q_input)
  c_input = 0.0 if c_input is None else c_input
  if not (_checks.is_number(c_input) or isinstance(c_input, np.ndarray | jax.Array)) \
      or np.ndim(c_input) != 0 or not -1 <= float(c_input) <= 1:
    raise ValueError(f"`c_input` must be a number in [-1, 1], got {c_input!r}")
  return q_input, float(c_input)


def _chunk_size(chunk_size, memory_budget, item_bytes):
  memory_budget = _checks.check_int("memory_budget", memory_budget, 1)
  if chunk_size is not None:
    return _checks.check_int("chunk_size", chunk_size, 1)
  return engine.items_per_chunk(memory_budget, item_bytes)


def _configs(grid):
  """``(act, init, width, depth, sigma_w2, sigma_b2)`` in the order of the grid axes."""
  return list(itertools.product(grid.activations, grid.inits, grid.widths, grid.depths,
                                grid.sigma_w2, grid.sigma_b2))


def _assemble(results, grid, given, names, trailing, docs, coords, attrs) -> xr.Dataset:
  swept = engine.swept(engine.SWEPT, given)
  axes = grid.axes()
  lengths = [len(v) for v in axes.values()] + [grid.n_seeds]
  data_vars = {name: engine.grid_variable(engine.stack(results, name, lengths), engine.SWEPT,
                                          swept, trailing, docs[name]) for name in names}
  return xr.Dataset(data_vars, coords={**coords, **engine.grid_coords(axes, swept)},
                    attrs=attrs)


def _attrs(arch, grid, dtype, **more):
  return {"architecture": RNNMirror.name, "sigma_u2": float(arch.sigma_u2),
          "tied": int(arch.tied), **more,
          **engine.provenance(grid, dtype, seed_key="network i uses jax.random.fold_in(key, i), "
                              "split in 5 (sweep: W, U, b, inputs, readout) or 4 (Jacobian)")}


# --- the mirror ----------------------------------------------------------------------


class RNNMirror(architectures.Mirror):
  """:class:`meanfield.RNN`: the random RNNs of this module, on the experiment engine."""

  name = "rnn"
  sweep_keywords = ("n_inputs", "q_input", "c_input", "dtype")

  def sweep_inputs(self, arch: RNN, inputs: Any) -> None:
    if inputs is not None:
      raise ValueError(f"`inputs` must be None for arch={arch!r}: each network draws its "
                       f"own input sequences (give n_inputs, q_input, c_input), got an input")
    return None

  def sweep(self, key, arch: RNN, x, *, activation, width, depth, init, sigma_w2, sigma_b2,
            n_seeds, chunk_size, memory_budget, store, progress, n_inputs=None, q_input=None,
            c_input=None, dtype=None) -> xr.Dataset:
    """:func:`empirical.sweep` with ``arch=RNN(...)``: per-step statistics, ``depth`` steps.

    ``n_inputs``: sequences per network, even ``>= 2`` (default 2: one pair);
    ``q_input`` (default 1) and ``c_input`` (default 0) as in
    :func:`meanfield.propagate`. Returns a Dataset over the swept axes,
    ``seed`` and ``layer`` (``t = 1..max depth``; nan beyond a network's
    depth) with :data:`SWEEP_DOCS`'s variables.
    """
    grid, sigma_u2 = _grid_of(arch, key=key, activation=activation, init=init, width=width,
                              depth=depth, n_seeds=n_seeds, sigma_w2=sigma_w2,
                              sigma_b2=sigma_b2, verb="sweep", store=store)
    n_inputs = 2 if n_inputs is None else _checks.check_int("n_inputs", n_inputs, 2)
    if n_inputs % 2:
      raise ValueError(f"`n_inputs` must be even for an RNN (pairs of sequences), got {n_inputs}")
    q_input, c_input = _check_drive(q_input, c_input)
    dtype = _checks.float_dtype(dtype)
    pairs, steps_max, size = n_inputs // 2, max(grid.depths), np.dtype(dtype).itemsize
    items = _chunk_size(chunk_size, memory_budget, size * (
        2 * max(grid.widths) ** 2 + 8 * steps_max * n_inputs * max(grid.widths)))
    spec = {**engine.base_spec(grid, dtype), "architecture": self.name, "sigma_u2": sigma_u2,
            "tied": arch.tied, "n_inputs": n_inputs, "q_input": q_input, "c_input": c_input}

    def run(k, config, bar):
      act, scheme, w, d, sw2, sb2 = config
      hyper = tuple(jnp.asarray(v, dtype) for v in (sw2, sigma_u2, sb2, q_input, c_input))
      compute = functools.partial(_sweep_chunk, act, scheme, d, w, pairs, arch.tied)
      out = engine.run_chunked(compute, grid.n_seeds, chunk_size=items, shared=(key, *hyper),
                               store=engine.config_store(grid.store, k),
                               spec={**spec, "config": k}, progress=bar)
      pad = ((0, 0), (0, steps_max - d))
      return {n: np.pad(a, pad, constant_values=np.nan) for n, a in out.items()}

    configs = _configs(grid)
    results = engine.run_configs(configs, run, total=len(configs) * grid.n_seeds, desc="sweep",
                                 progress=progress)
    return _assemble(
        results, grid, (activation, init, width, depth, sigma_w2, sigma_b2), list(SWEEP_DOCS),
        ["seed", "layer"], SWEEP_DOCS,
        {"seed": np.arange(grid.n_seeds), "layer": np.arange(1, steps_max + 1)},
        _attrs(arch, grid, dtype, n_inputs=n_inputs, q_input=q_input, c_input=c_input))

  def jacobian_spectra(self, key, arch: RNN, *, activation, width, depth, init, sigma_w2,
                       sigma_b2, n_seeds, chunk_size, memory_budget, store, progress,
                       max_order=2, q_input=None, warmup=None, dtype=None) -> xr.Dataset:
    """:func:`empirical.jacobian_spectra` with ``arch=RNN(...)``: see the module docstring.

    ``depth``: the lag ``k`` of ``J = dh_T/dh_{T-k}``, one integer or an
    increasing list (all from one run of ``warmup + 1 + max(depth)`` steps);
    ``warmup`` (default 20) steps bring ``q_t`` near ``q*`` first; ``q_input``
    (default 1) the inputs' length; ``max_order`` 1 or 2. Returns a Dataset
    with ``moment`` over the swept axes, ``seed`` and ``order``.
    """
    grid, sigma_u2 = _grid_of(arch, key=key, activation=activation, init=init, width=width,
                              depth=depth, n_seeds=n_seeds, sigma_w2=sigma_w2,
                              sigma_b2=sigma_b2, verb="jacobian_spectra", store=store)
    if any(b <= a for a, b in zip(grid.depths, grid.depths[1:])):
      raise ValueError(f"`depth` must be one integer or an increasing list, got {depth!r}")
    max_order = _checks.check_int("max_order", max_order, 1)
    if max_order > 2:
      raise ValueError(f"`max_order` must be 1 or 2 for an RNN (its moments are exact traces), "
                       f"got {max_order}")
    warmup = 20 if warmup is None else _checks.check_int("warmup", warmup, 0)
    q_input, _ = _check_drive(q_input, None)
    dtype = _checks.float_dtype(dtype)
    lags, size = max(grid.depths), np.dtype(dtype).itemsize
    items = _chunk_size(chunk_size, memory_budget, size * (
        6 * max(grid.widths) ** 2 + 3 * (warmup + 1 + lags) * max(grid.widths)))
    spec = {**engine.base_spec(grid, dtype), "architecture": self.name, "sigma_u2": sigma_u2,
            "tied": arch.tied, "q_input": q_input, "warmup": warmup}
    configs = [c for c in _configs(grid) if c[3] == grid.depths[0]]   # depths: one run
    at = np.asarray(grid.depths) - 1

    def run(k, config, bar):
      act, scheme, w, _, sw2, sb2 = config
      hyper = tuple(jnp.asarray(v, dtype) for v in (sw2, sigma_u2, sb2, q_input))
      compute = functools.partial(_jacobian_chunk, act, scheme, lags, warmup + 1, w, arch.tied)
      out = engine.run_chunked(compute, grid.n_seeds, chunk_size=items, shared=(key, *hyper),
                               store=engine.config_store(grid.store, k),
                               spec={**spec, "config": k}, progress=bar,
                               units_per_item=len(at))
      moment = np.stack([out["m1"], out["m2"]][:max_order], axis=-1)[:, at]  # (seed, depth, k)
      return {"moment": np.moveaxis(moment, 1, 0)}                          # (depth, seed, k)

    results = engine.run_configs(configs, run, total=len(configs) * grid.n_seeds * len(at),
                                 desc="jacobian_spectra", progress=progress)
    # the depth axis came out of each run: move it to its place among the grid axes
    results = [{"moment": m} for r in results for m in r["moment"]]
    order = _reorder(grid, len(at))
    return _assemble(
        [results[i] for i in order], grid, (activation, init, width, depth, sigma_w2, sigma_b2),
        ["moment"], ["seed", "order"], JACOBIAN_DOCS,
        {"seed": np.arange(grid.n_seeds), "order": np.arange(1, max_order + 1)},
        _attrs(arch, grid, dtype, q_input=q_input, warmup=warmup, max_order=max_order))

  def network(self, ds: xr.Dataset, point: dict[str, Any], activation: Any) -> Network:
    arch = RNN(sigma_u2=float(ds.attrs["sigma_u2"]), tied=bool(ds.attrs["tied"]))
    return Network(activation=activation, sigma_w2=float(point["sigma_w2"]),
                   sigma_b2=float(point["sigma_b2"]), depth=int(point["depth"]),
                   width=int(point["width"]), init=self.matrix_init(str(point["init"])),
                   arch=arch)

  def theory(self, ds: xr.Dataset, activation: Any) -> xr.Dataset:
    """``q``, ``c``, ``chi_1``, ``grad_h2`` of :func:`meanfield.propagate` per grid point
    of an RNN sweep, over its dims less ``seed`` (nan beyond a network's depth)."""
    if "layer" not in ds.dims:
      raise NotImplementedError(
          "`empirical.theory` has an overlay for an RNN sweep's Dataset (empirical.sweep), "
          "not for its Jacobian moments: compute meanfield.jacobian_moments(net, q_input=...) "
          "for each net of empirical.networks(ds) (its depth is the lag)")
    nets = description.networks(ds, activation=activation)
    n_layers = ds.sizes["layer"]
    names = ("q", "c", "chi_1", "grad_h2")
    out = {n: np.full(nets.shape + (n_layers,), np.nan) for n in names}
    for index in np.ndindex(nets.shape):
      prop = propagate(nets.values[index], q_input=ds.attrs["q_input"],
                       c_input=ds.attrs["c_input"])
      values = dict(zip(names, (prop.q, prop.c, prop.chi_1, prop.extra["grad_h2"])))
      for n in names:
        out[n][index + (slice(0, np.shape(values[n])[-1]),)] = np.asarray(values[n])
    dims = nets.dims + ("layer",)
    return xr.Dataset({n: (dims, a) for n, a in out.items()},
                      coords={**{k: v for k, v in ds.coords.items() if "seed" not in v.dims}},
                      attrs={"architecture": self.name})


def _reorder(grid, n_depths):
  """Indices of the per-(config, depth) results in the order of the grid axes: the runs are
  over (activation, init, width, sigma_w2, sigma_b2) with depth inside each run."""
  shape = (len(grid.activations), len(grid.inits), len(grid.widths), len(grid.sigma_w2),
           len(grid.sigma_b2), n_depths)
  flat = np.arange(int(np.prod(shape))).reshape(shape)
  return np.moveaxis(flat, 5, 3).ravel()


architectures.register(RNN, RNNMirror())
