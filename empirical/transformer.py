"""The experiment mirror of :class:`meanfield.Transformer`: random Flax nnx transformer blocks.

A network is ``depth`` blocks of :mod:`meanfield.transformer`'s form, written
in Flax nnx (:class:`_Block`: multi-head self-attention, then an MLP, each a
residual branch, with the LayerNorm before each branch, after each sum, or
none; the LayerNorm has no gain or bias, as both are 1 and 0 at
initialisation). Every weight is a standard normal drawn once and scaled in
the forward pass (``W_Q, W_K`` by ``1/sqrt(d)``, ``W_V`` by
``sqrt(sigma_v2/d)``, ``W_O`` by ``sqrt(sigma_o2/d)``, the MLP's ``W_1, W_2``
by ``sqrt(sigma_w2/d)`` and biases by ``sqrt(sigma_b2)``), so the settings
of one seed share their random numbers. The blocks' parameters are stacked
(``nnx.split`` under ``jax.vmap``) and applied with ``lax.scan``, so the
compile time does not grow with depth; seeds are ``vmap``-ed on the
experiment engine (:mod:`empirical.engine`: chunks, store and resume,
progress), one program per activation, width and depth.

Network ``seed`` has key ``k = fold_in(key, seed)``: block ``l`` from
``fold_in(fold_in(k, WEIGHTS), l)``, the loss readout ``r`` from ``fold_in(k,
READOUT)`` (:mod:`empirical.streams`). The ``T = arch.tokens`` input tokens
are shared by every network, from ``jax.random.split(key)[SWEEP_INPUTS]``:
``x_i = sqrt(q_input d) (sqrt(c_input) e_0 + sqrt(1 - c_input) e_i)`` for
orthonormal ``e_0 .. e_T``, so every token has ``|x_i|^2 / d = q_input``
and every pair cosine ``c_input`` exactly (``width >= T + 1``).

:func:`empirical.sweep` with ``arch=meanfield.Transformer(...)`` measures
after every block (:data:`SWEEP_DOCS`) and :func:`empirical.theory` puts
``meanfield.propagate`` beside it.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from flax import nnx

from empirical import _checks
from empirical import _grid
from empirical import architectures
from empirical import description
from empirical import engine
from empirical import streams
from meanfield.maps import propagate
from meanfield.network import Network
from meanfield.transformer import Transformer

__all__ = ["TransformerMirror", "SWEEP_DOCS"]

Array = jax.Array
_EPS = 1e-6

#: The variables of a transformer sweep, over (grid..., seed, layer = block l).
SWEEP_DOCS = {
    "q": "mean over tokens of |x_i|^2 / d after block l",
    "c": "mean over token pairs i != j of the cosine of x_i and x_j after block l",
    "p": "mean over token pairs i != j of x_i . x_j / d after block l",
    "stable_rank": "|X|_F^2 / |X|_2^2 of the T x d token matrix after block l",
    "entropy": "attention entropy -sum_j A_ij log A_ij of block l, mean over queries and heads "
               "(log T for uniform attention)",
    "grad_x2": "mean over tokens i of |dL/dx_i^l|^2, L = sum_i r . x_i^L (r a random unit "
               "vector per network, so 1 at l = L)",
}


class _Numbers(NamedTuple):
  """The numeric fields of a :class:`meanfield.Transformer`, as arrays (traced in the program)."""

  beta: Array
  sigma_v2: Array
  sigma_o2: Array
  alpha_sa: Array
  alpha_mlp: Array


def _layer_norm(x):
  """LayerNorm over features, no gain or bias: ``(x - mean) / sqrt(var + 1e-6)``."""
  x = x - jnp.mean(x, axis=-1, keepdims=True)
  return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + _EPS)


class _Attention(nnx.Module):
  """Multi-head self-attention of standard-normal weights, scaled when called."""

  def __init__(self, key, width: int, heads: int, dtype):
    kq, kk, kv, ko = jax.random.split(key, 4)
    shape = (heads, width, width // heads)
    self.query = nnx.Param(jax.random.normal(kq, shape, dtype))
    self.key = nnx.Param(jax.random.normal(kk, shape, dtype))
    self.value = nnx.Param(jax.random.normal(kv, shape, dtype))
    self.out = nnx.Param(jax.random.normal(ko, (width, width), dtype))

  def __call__(self, x, arch: Transformer, nums: _Numbers):
    """``(Attn(x), entropy)`` for tokens ``x`` ``(T, d)``."""
    tokens, width = x.shape
    heads, _, dh = self.query.shape
    scale = 1 / math.sqrt(width)
    q = jnp.einsum("td,hde->hte", x, self.query[...]) * scale
    k = jnp.einsum("td,hde->hte", x, self.key[...]) * scale
    s = nums.beta * math.sqrt(math.log(tokens) / dh) * jnp.einsum("hte,hse->hts", q, k)
    if arch.causal:
      s = jnp.where(jnp.tril(jnp.ones((tokens, tokens), bool))[None], s, -jnp.inf)
    a = jax.nn.softmax(s, axis=-1)
    entropy = -jnp.mean(jnp.sum(jnp.where(a > 0, a * jnp.log(jnp.where(a > 0, a, 1)), 0), -1))
    v = jnp.einsum("td,hde->hte", x, self.value[...]) * (jnp.sqrt(nums.sigma_v2) * scale)
    o = jnp.einsum("hts,hse->the", a, v).reshape(tokens, width)
    return o @ self.out[...] * (jnp.sqrt(nums.sigma_o2) * scale), entropy


class _MLP(nnx.Module):
  """``W_2 phi(W_1 x + b_1) + b_2`` of standard-normal weights and biases, scaled when called."""

  def __init__(self, key, width: int, dtype):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    self.w1 = nnx.Param(jax.random.normal(k1, (width, width), dtype))
    self.b1 = nnx.Param(jax.random.normal(k2, (width,), dtype))
    self.w2 = nnx.Param(jax.random.normal(k3, (width, width), dtype))
    self.b2 = nnx.Param(jax.random.normal(k4, (width,), dtype))

  def __call__(self, x, phi, w_scale, b_scale):
    h = x @ self.w1[...] * w_scale + (self.b1[...] * b_scale)[None, :]
    return phi.fn(h) @ self.w2[...] * w_scale + (self.b2[...] * b_scale)[None, :]


class _Block(nnx.Module):
  """One transformer block (module docstring)."""

  def __init__(self, key, width: int, heads: int, dtype):
    ka, km = jax.random.split(key)
    self.attention = _Attention(ka, width, heads, dtype)
    self.mlp = _MLP(km, width, dtype)

  def __call__(self, x, arch: Transformer, nums: _Numbers, phi, w_scale, b_scale):
    """``(x', entropy)`` for tokens ``x`` ``(T, d)``."""
    pre = _layer_norm if arch.norm == "pre" else (lambda y: y)
    post = _layer_norm if arch.norm == "post" else (lambda y: y)
    a, entropy = self.attention(pre(x), arch, nums)
    x = post(x + nums.alpha_sa * a)
    x = post(x + nums.alpha_mlp * self.mlp(pre(x), phi, w_scale, b_scale))
    return x, entropy


def _stack(key, arch: Transformer, width: int, depth: int, dtype):
  """``(graphdef, state)``: the ``depth`` blocks' parameters stacked on a leading axis."""
  graphdefs = []

  def one(l):
    graphdef, state = nnx.split(_Block(jax.random.fold_in(key, l), width, arch.heads, dtype))
    graphdefs.append(graphdef)
    return state

  state = jax.vmap(one)(jnp.arange(depth))
  return graphdefs[0], state


def _statistics(xs):
  """Per block: ``q``, ``c``, ``p`` and the stable rank of ``xs`` ``(L, T, d)``."""
  tokens, width = xs.shape[1:]
  gram = jnp.einsum("ltd,lsd->lts", xs, xs) / width
  diag = jnp.diagonal(gram, axis1=1, axis2=2)
  off = ~jnp.eye(tokens, dtype=bool)
  norms = jnp.sqrt(diag)
  cosine = gram / (norms[:, :, None] * norms[:, None, :])
  pairs = tokens * (tokens - 1)
  top = jnp.linalg.eigvalsh(gram)[:, -1]
  return {"q": jnp.mean(diag, -1), "c": jnp.sum(jnp.where(off, cosine, 0), (1, 2)) / pairs,
          "p": jnp.sum(jnp.where(off, gram, 0), (1, 2)) / pairs,
          "stable_rank": jnp.sum(diag, -1) / top}


def _network(arch, act, width, depth, key, x, nums, sigma_w2, sigma_b2):
  """One network's statistics (:data:`SWEEP_DOCS`), each ``(depth,)``."""
  dtype = x.dtype
  graphdef, state = _stack(jax.random.fold_in(key, streams.WEIGHTS), arch, width, depth, dtype)
  r = jax.random.normal(jax.random.fold_in(key, streams.READOUT), (width,), dtype)
  r = r / jnp.linalg.norm(r)
  w_scale, b_scale = jnp.sqrt(sigma_w2 / width), jnp.sqrt(sigma_b2)

  def run(shift):
    def body(h, inputs):
      block_state, shift_l = inputs
      h, entropy = nnx.merge(graphdef, block_state)(h, arch, nums, act, w_scale, b_scale)
      h = h + shift_l
      return h, (h, entropy)

    _, (xs, entropy) = jax.lax.scan(body, x, (state, shift))
    return jnp.sum(xs[-1] @ r), (xs, entropy)

  shift = jnp.zeros((depth,) + x.shape, dtype)
  grads, (xs, entropy) = jax.grad(run, has_aux=True)(shift)
  return {**_statistics(xs), "entropy": entropy,
          "grad_x2": jnp.mean(jnp.sum(grads * grads, -1), -1)}


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _sweep_chunk(arch, act, width, depth, key, x, nums, sigma_w2, sigma_b2, idx):
  """Networks ``idx``; ``arch`` the static structure (:func:`_structure`), ``nums`` its numbers."""
  one = functools.partial(_network, arch, act, width, depth)
  return jax.vmap(lambda i: one(jax.random.fold_in(key, i), x, nums, sigma_w2, sigma_b2))(idx)


def _structure(arch: Transformer) -> tuple[Transformer, _Numbers]:
  """``arch`` split into its structure (numbers at their defaults: the compiled program's key,
  so one program serves every beta, variance and strength) and its numbers."""
  nums = {f: getattr(arch, f) for f in _Numbers._fields}
  return arch.replace(**{f: getattr(Transformer, f) for f in _Numbers._fields}), nums


def _tokens(key, tokens: int, width: int, q_input: float, c_input: float, dtype) -> Array:
  """``(T, d)`` tokens of length ``q_input`` and pairwise cosine ``c_input`` exactly."""
  e, _ = jnp.linalg.qr(jax.random.normal(key, (width, tokens + 1), dtype))
  common = jnp.broadcast_to(e[:, 0][None, :], (tokens, width))
  return math.sqrt(q_input * width) * (math.sqrt(c_input) * common
                                       + math.sqrt(1 - c_input) * e[:, 1:].T)


def _fields(arch: Transformer) -> str:
  """The architecture's fields as JSON (a Dataset's ``arch`` attribute)."""
  return json.dumps(dataclasses.asdict(arch), sort_keys=True)


def _check(arch: Transformer, grid, q_input, c_input):
  if not all(s.name == "gaussian" for s in grid.inits):
    raise ValueError(f"`init` must be 'gaussian' for a Transformer (its weights are i.i.d. "
                     f"normal, scaled by the variances), got {[s.name for s in grid.inits]}")
  for w in grid.widths:
    if w < arch.tokens + 1 or w % arch.heads:
      raise ValueError(f"`width` must be >= tokens + 1 = {arch.tokens + 1} (orthogonal input "
                       f"tokens) and a multiple of heads = {arch.heads}, got {w}")
  q_input = _checks.check_variance("q_input", 1.0 if q_input is None else q_input)
  c_input = 0.0 if c_input is None else c_input
  if not _checks.is_number(c_input) or not 0 <= float(c_input) <= 1:
    raise ValueError(f"`c_input` must be a number in [0, 1] for a Transformer's experiment "
                     f"(tokens sqrt(c) e_0 + sqrt(1 - c) e_i), got {c_input!r}")
  return q_input, float(c_input)


class TransformerMirror(architectures.Mirror):
  """:class:`meanfield.Transformer`: the random nnx blocks of this module, on the engine."""

  name = "transformer"
  sweep_keywords = ("q_input", "c_input", "dtype")

  def sweep_inputs(self, arch: Transformer, inputs: Any) -> None:
    if inputs is not None:
      raise ValueError(f"`inputs` must be None for arch={arch!r}: the sweep makes its own "
                       f"tokens (give q_input, c_input), got an input")
    return None

  def sweep(self, key, arch: Transformer, x, *, activation, width, depth, init, sigma_w2,
            sigma_b2, n_seeds, chunk_size, memory_budget, store, progress, q_input=None,
            c_input=None, dtype=None) -> xr.Dataset:
    """:func:`empirical.sweep` with ``arch=Transformer(...)``: per-block statistics.

    ``q_input`` (default 1) and ``c_input`` (default 0, in ``[0, 1]``) are the
    tokens' length and pairwise cosine; ``init`` must be ``"gaussian"``. Returns a
    Dataset over the swept axes, ``seed`` and ``layer`` (block ``l = 1..max
    depth``; nan beyond a network's depth) with :data:`SWEEP_DOCS`'s variables.
    """
    grid = _grid.network_grid(key=key, activation=activation, init=init, width=width,
                              depth=depth, n_seeds=n_seeds, sigma_w2=sigma_w2,
                              sigma_b2=sigma_b2, verb="sweep", store=store)
    q_input, c_input = _check(arch, grid, q_input, c_input)
    dtype = _checks.float_dtype(dtype)
    memory_budget = _checks.check_int("memory_budget", memory_budget, 1)
    w_max, d_max, size = max(grid.widths), max(grid.depths), np.dtype(dtype).itemsize
    items = (_checks.check_int("chunk_size", chunk_size, 1) if chunk_size is not None else
             engine.items_per_chunk(memory_budget, size * d_max * (
                 12 * w_max * w_max + 16 * arch.tokens * (w_max + arch.tokens))))
    spec = {**engine.base_spec(grid, dtype), "architecture": self.name,
            "arch": _fields(arch), "q_input": q_input, "c_input": c_input}
    k_tokens = jax.random.split(key)[streams.SWEEP_INPUTS]

    def run(k, config, bar):
      act, _, w, d, sw2, sb2 = config
      x = _tokens(k_tokens, arch.tokens, w, q_input, c_input, dtype)
      structure, nums = _structure(arch)
      compute = functools.partial(_sweep_chunk, structure, act, w, d)
      nums = _Numbers(**{f: jnp.asarray(v, dtype) for f, v in nums.items()})
      out = engine.run_chunked(compute, grid.n_seeds, chunk_size=items,
                               shared=(key, x, nums, jnp.asarray(sw2, dtype),
                                       jnp.asarray(sb2, dtype)),
                               store=engine.config_store(grid.store, k),
                               spec={**spec, "config": k}, progress=bar)
      pad = ((0, 0), (0, d_max - d))
      return {n: np.pad(a, pad, constant_values=np.nan) for n, a in out.items()}

    configs = list(itertools.product(grid.activations, grid.inits, grid.widths, grid.depths,
                                     grid.sigma_w2, grid.sigma_b2))
    results = engine.run_configs(configs, run, total=len(configs) * grid.n_seeds, desc="sweep",
                                 progress=progress)
    swept = engine.swept(engine.SWEPT, (activation, init, width, depth, sigma_w2, sigma_b2))
    lengths = [len(v) for v in grid.axes().values()] + [grid.n_seeds]
    data = {n: engine.grid_variable(engine.stack(results, n, lengths), engine.SWEPT, swept,
                                    ["seed", "layer"], doc) for n, doc in SWEEP_DOCS.items()}
    coords = {"seed": np.arange(grid.n_seeds), "layer": np.arange(1, d_max + 1),
              **engine.grid_coords(grid.axes(), swept)}
    attrs = {"architecture": self.name, "arch": _fields(arch),
             "q_input": q_input, "c_input": c_input,
             **engine.provenance(grid, dtype, seed_key="network i uses jax.random.fold_in(key, "
                                 "i); block l from fold_in(fold_in(., WEIGHTS), l)")}
    return xr.Dataset(data, coords=coords, attrs=attrs)

  def network(self, ds: xr.Dataset, point: dict[str, Any], activation: Any) -> Network:
    return Network(activation=activation, sigma_w2=float(point["sigma_w2"]),
                   sigma_b2=float(point["sigma_b2"]), depth=int(point["depth"]),
                   width=int(point["width"]), arch=Transformer(**json.loads(ds.attrs["arch"])))

  def theory(self, ds: xr.Dataset, activation: Any) -> xr.Dataset:
    """``q``, ``c``, ``p``, ``rate`` and ``beta_c`` of :func:`meanfield.propagate` per grid point of a
    transformer sweep, over its dims less ``seed`` (nan beyond a network's depth)."""
    nets = description.networks(ds, activation=activation)
    n_layers = ds.sizes["layer"]
    names = ("q", "c", "p", "rate", "beta_c")
    out = {n: np.full(nets.shape + (n_layers,), np.nan) for n in names}
    for index in np.ndindex(nets.shape):
      with jax.enable_x64(True):
        prop = propagate(nets.values[index], q_input=ds.attrs["q_input"],
                         c_input=ds.attrs["c_input"])
      values = {"q": prop.q, "c": prop.c, **prop.extra}
      for n in names:
        out[n][index + (slice(0, np.shape(values[n])[-1]),)] = np.asarray(values[n])
    dims = nets.dims + ("layer",)
    return xr.Dataset({n: (dims, a) for n, a in out.items()},
                      coords={k: v for k, v in ds.coords.items() if "seed" not in v.dims},
                      attrs={"architecture": self.name})


architectures.register(Transformer, TransformerMirror())
