"""One network of a user's model, for :func:`empirical.diagnose`: its program, its
layers, and the statistics measured on it.

:func:`program` turns any accepted model (an ``nnx`` factory, a Linen module, an
``(init, apply)`` pair) into ``build(key) -> params`` and ``apply(params, x) ->
(out, marked)``, the submodule outputs named; :func:`first_layers` and
:func:`batch_axes` find its layers (:mod:`empirical._capture`) and each one's
inputs' axis; :func:`measure_one` measures every statistic of one network (the
variables of :data:`empirical.diagnosis.DIAGNOSE_DOCS`). The chunks, the store
and the Dataset are :mod:`empirical.diagnosis`'s.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from empirical import _capture
from empirical import probes as _probes
from empirical import streams as _streams

Array = jax.Array


# --- the models ------------------------------------------------------------------

def _path_name(path) -> str:
  parts = [str(p) for p in path if p != "__call__"]
  return ".".join(parts) if parts else "__call__"


def _nnx_program(factory: Callable[[nnx.Rngs], nnx.Module]):
  """``(build, apply)`` for an nnx factory; ``apply`` names every submodule output."""
  box = {}

  def build(k):
    try:
      module = factory(nnx.Rngs(k))
    except Exception as e:
      raise ValueError(
          f"`model` must be a factory taking nnx.Rngs and returning an nnx.Module (e.g. "
          f"lambda rngs: MyNet(..., rngs=rngs)); calling it with nnx.Rngs raised "
          f"{type(e).__name__}: {e}") from e
    if not isinstance(module, nnx.Module):
      raise ValueError(f"`model` must return an nnx.Module when called with nnx.Rngs, got "
                       f"{type(module).__name__}")
    graphdef, state = nnx.split(module)
    box["graphdef"] = graphdef
    return state

  def apply(state, x):
    model = nnx.merge(box["graphdef"], state)
    classes = {p: type(m).__name__ for p, m in nnx.iter_modules(model)}
    out, inter = nnx.capture(model, nnx.Intermediate, method_outputs=nnx.Intermediate)(x)
    marked = []
    for path, var in sorted(nnx.to_flat_state(inter), key=lambda pv: len(pv[0])):
      if len(path) < 2:
        continue                                   # the model's own output
      for value in jax.tree.leaves(var.get_value()):
        marked.append((_path_name(path), classes.get(tuple(path[:-1]), ""), value))
    return out, marked

  return build, apply


def _linen_program(module):
  """``(build, apply)`` for a Linen module, naming outputs by ``capture_intermediates``."""
  def build(k, x):
    return module.init(k, x)

  def apply(variables, x):
    out, state = module.apply(variables, x, capture_intermediates=True,
                              mutable=["intermediates"])
    marked = []
    flat = jax.tree_util.tree_flatten_with_path(state.get("intermediates", {}))[0]
    for path, value in sorted(flat, key=lambda pv: len(pv[0])):
      keys = [getattr(p, "key", getattr(p, "idx", "")) for p in path]
      names = [str(k) for k in keys if isinstance(k, str)]
      if len(names) < 2:
        continue
      marked.append((_path_name(names[:-1]), "", value))
    return out, marked

  return build, apply


def program(model, x):
  """``(build(k) -> params, apply(params, x) -> (out, marked))`` for any accepted model."""
  import flax.linen as linen
  if isinstance(model, linen.Module):
    build, apply = _linen_program(model)
    return (lambda k: build(k, x)), apply
  if isinstance(model, tuple) and len(model) == 2 and all(map(callable, model)):
    init, fn = model
    return (lambda k: init(k, x)), (lambda p, x: (fn(p, x), []))
  if callable(model) and not isinstance(model, nnx.Module):
    return _nnx_program(model)
  raise ValueError(
      f"`model` must be a callable taking nnx.Rngs and returning an nnx.Module, a "
      f"flax.linen.Module, or an (init, apply) pair of callables, got {type(model).__name__}")


# --- one network -------------------------------------------------------------------

def _flat_units(v: Array, batch: int, axis: int = 0) -> Array:
  """``(batch, units)``: the inputs' axis first (a merged ``batch * m`` axis split batch-major)."""
  return jnp.moveaxis(v, axis, 0).reshape(batch, -1)


def _layer_stats(h: Array, a: Array | None, g: Array, layer, batch: int) -> dict[str, Array]:
  levels = layer.levels
  h, g = _flat_units(h, batch, layer.batch_axis), _flat_units(g, batch, layer.batch_axis)
  pairs = h.shape[0] // 2
  if pairs:
    h1, h2 = h[0:2 * pairs:2], h[1:2 * pairs:2]
    c = jnp.mean(jnp.sum(h1 * h2, -1) / jnp.sqrt(jnp.sum(h1 * h1, -1) * jnp.sum(h2 * h2, -1)))
  else:
    c = jnp.asarray(jnp.nan, h.dtype)
  nan = jnp.asarray(jnp.nan, h.dtype)
  out = dict(q=jnp.mean(jnp.square(h)), mean=jnp.mean(h), c=c,
             grad_h=jnp.sqrt(jnp.mean(jnp.sum(jnp.square(g), -1))),
             zero=nan, dead=nan, saturated=nan)
  if a is not None:
    a = _flat_units(a, batch, layer.batch_axis).astype(h.dtype)
    tol = _probes.SATURATION * max((abs(v) for v in levels), default=0.0)
    sat = jnp.zeros(a.shape, bool)
    for level in levels if tol > 0 else ():
      sat = sat | (jnp.abs(a - jnp.asarray(level, a.dtype)) < tol)
    out.update(zero=jnp.mean(a == 0, dtype=h.dtype),
               dead=jnp.mean(jnp.all(a == 0, axis=0), dtype=h.dtype),
               saturated=jnp.mean(sat, dtype=h.dtype))
  return out


#: How far the tokens of the angle exponent's inputs are from their mean, relative to
#: those of ``x``: ``x_aligned = m + ALIGN (x - m)``, ``m`` the mean over tokens.
ALIGN = 1e-3


def _token_stats(h: Array, layer, batch: int) -> dict[str, Array]:
  """Token correlation ``c``, its gap ``1 - c`` and the stable rank of ``h``'s token
  matrices (axis 1 after the inputs' axis; the rest are features), means over inputs;
  nan where the layer has fewer than two tokens.

  ``1 - c = sum_i |u_i - ubar|^2 / (T - 1)`` for the unit tokens ``u_i`` (the mean
  pairwise ``1 - cos``), which keeps its relative precision as ``c -> 1``."""
  v = jnp.moveaxis(h, layer.batch_axis, 0)
  if v.ndim < 3 or v.shape[1] < 2:
    nan = jnp.asarray(jnp.nan, h.dtype)
    return {"token_c": nan, "token_gap": nan, "stable_rank": nan}
  x = v.reshape(batch, v.shape[1], -1)
  tokens = x.shape[1]
  norms2 = jnp.sum(x * x, -1)
  u = x * jax.lax.rsqrt(jnp.where(norms2 > 0, norms2, 1.0))[..., None]
  gap = jnp.sum(jnp.square(u - jnp.mean(u, 1, keepdims=True)), (1, 2)) / (tokens - 1)
  top = jnp.linalg.eigvalsh(jnp.einsum("btd,bsd->bts", x, x))[:, -1]
  return {"token_c": jnp.mean(1 - gap), "token_gap": jnp.mean(gap),
          "stable_rank": jnp.mean(jnp.sum(norms2, -1) / top)}


def _entropy(a: Array, axes: tuple[int, ...]) -> Array:
  """Mean over queries (and inputs, heads) of ``-sum_j A_j log A_j`` over ``axes``."""
  terms = jnp.where(a > 0, a * jnp.log(jnp.where(a > 0, a, 1)), 0)
  return -jnp.mean(jnp.sum(terms, axis=axes))


def _attention_stats(traced, layers, params, x, batch, weights) -> dict[str, Array]:
  """Per layer ``token_c``, ``stable_rank`` and ``aligned_gap`` (``1 - c`` on the
  nearly aligned inputs ``m + ALIGN (x - m)``), and each softmax's entropy."""
  m = jnp.mean(x, axis=1, keepdims=True)
  aligned = _capture.run(traced, params, m + ALIGN * (x - m))[1].values
  now = [_token_stats(h, layer, batch) for h, layer in zip(weights[0], layers)]
  near = [_token_stats(h, layer, batch) for h, layer in zip(aligned, layers)]
  return {"token_c": jnp.stack([s["token_c"] for s in now]),
          "stable_rank": jnp.stack([s["stable_rank"] for s in now]),
          "aligned_gap": jnp.stack([s["token_gap"] for s in near]),
          "attention_entropy": jnp.stack([_entropy(a, ax) for a, ax in weights[1]])}


def measure_one(traced, layers, l0: int, n_projections: int, jacobian: bool,
                 attention: bool, params, x: Array, k: Array, *,
                 ntk: bool = False) -> dict[str, Array]:
  """Every statistic of one network (``params`` flat leaves, ``k`` its key); with
  ``attention`` the token statistics and attention entropies too; with ``ntk`` its
  empirical NTK (:func:`tangent_kernel`)."""
  batch = x.shape[0]
  zeros = [jnp.zeros(layer.shape, layer.dtype) for layer in layers]

  def loss(shifts):
    out, rec = _capture.run(traced, params, x, shifts)
    out = _flat_units(out, batch)
    r = _probes.readout(jax.random.fold_in(k, _streams.READOUT), out.shape[1], out.dtype)
    posts = [rec.posts.get(i) for i in range(len(layers))]
    return jnp.sum(out @ r), (rec.values, posts, rec.attention)

  grads, (hs, posts, weights) = jax.grad(loss, has_aux=True)(zeros)
  stats = [_layer_stats(h, a, g, layer, batch)
           for h, a, g, layer in zip(hs, posts, grads, layers)]
  out = {name: jnp.stack([s[name] for s in stats]) for name in stats[0]}
  if attention:
    out.update(_attention_stats(traced, layers, params, x, batch, (hs, weights)))

  def values_from(s0):
    shifts = zeros[:l0] + [s0] + zeros[l0 + 1:]
    return _capture.run(traced, params, x, shifts)[1].values

  def apjn(kv):
    v = jax.random.normal(kv, layers[l0].shape, layers[l0].dtype)
    _, tangents = jax.jvp(values_from, (zeros[l0],), (v,))
    return jnp.stack([jnp.mean(jnp.mean(jnp.square(_flat_units(t, batch, layer.batch_axis)), -1))
                      for t, layer in zip(tangents, layers)])

  kv = jax.random.split(jax.random.fold_in(k, _streams.TANGENTS), n_projections)
  apj = jnp.mean(jax.lax.map(apjn, kv), axis=0)
  out["partial_jacobian"] = jnp.where(jnp.arange(len(layers)) < l0, jnp.nan, apj)
  if jacobian:
    def first(x0):
      return _flat_units(_capture.run(traced, params, x.at[0].set(x0))[0], batch)[0]
    n_in = math.prod(x.shape[1:])
    n_out = math.prod(jax.eval_shape(first, x[0]).shape)
    jac = (jax.jacrev if n_out < n_in else jax.jacfwd)(first)(x[0]).reshape(n_out, n_in)
    out["singular_values"] = jnp.linalg.svd(jac, compute_uv=False)
  if ntk:
    out["ntk"] = tangent_kernel(traced, params, x, k)
  return out


def tangent_kernel(traced, params, x: Array, k: Array) -> Array:
  """``Theta_ab = grad_p f_a . grad_p f_b`` over every parameter (the model's own
  parametrisation), ``f_a = r . out_a`` with the readout ``r`` of ``grad_h``: ``(B, B)``.

  ``J`` (``B`` x parameters) is materialised by reverse mode, one pass per input: a
  user's model has no layer structure to contract (``empirical.ntk`` does that for the
  MLP)."""
  batch = x.shape[0]

  def outputs(p):
    out = _flat_units(_capture.run(traced, p, x)[0], batch)
    r = _probes.readout(jax.random.fold_in(k, _streams.READOUT), out.shape[1], out.dtype)
    return out @ r

  rows = [j.reshape(batch, -1) for j in jax.jacrev(outputs)(params)
          if jnp.issubdtype(j.dtype, jnp.floating)]
  return sum(r @ r.T for r in rows)


def attention_keys(traced, params, x) -> tuple[int, ...]:
  """The number of keys (entries summed to 1) of each softmax found in one network."""
  box = {}

  def f(p):
    out, rec = _capture.run(traced, p, x)
    box["keys"] = tuple(math.prod(a.shape[i] for i in axes) for a, axes in rec.attention)
    return out

  jax.eval_shape(f, params)
  return box["keys"]


def check_output(out_shape, x) -> None:
  if not isinstance(out_shape, jax.ShapeDtypeStruct) or not out_shape.shape \
      or out_shape.shape[0] != x.shape[0]:
    raise ValueError(f"`model`'s output must be one array with the batch first, got {out_shape}")
  if not jnp.issubdtype(out_shape.dtype, jnp.floating):
    raise ValueError(f"`model`'s output must be a float array (its gradients are measured), "
                     f"got dtype {out_shape.dtype}")


def first_layers(traced, params, x):
  """``(output shape, layers)`` of one network, from an abstract evaluation."""
  box = {}

  def f(p):
    out, rec = _capture.run(traced, p, x)
    box["layers"] = rec.layers
    return out

  out = jax.eval_shape(f, params)
  return out, box["layers"]


def batch_axes(layers, apply, one, x):
  """Each layer with its inputs' axis: the one whose size changes with one more input."""
  x1 = jnp.concatenate([x, x[:1]])
  _, more = first_layers(_capture.trace(apply, one, x1), jax.tree.leaves(one), x1)
  if [layer.name for layer in more] != [layer.name for layer in layers]:
    raise ValueError("`model` computes different layers for a batch one larger: its "
                     "layers cannot be matched to inputs")
  out = []
  for layer, other in zip(layers, more):
    axes = [i for i, (a, b) in enumerate(zip(layer.shape, other.shape)) if a != b]
    if len(axes) != 1 or len(layer.shape) != len(other.shape):
      raise ValueError(f"layer {layer.name!r} of shape {layer.shape} has no single axis "
                       f"over the inputs (batch {x.shape[0]})")
    out.append(dataclasses.replace(layer, batch_axis=axes[0]))
  return out
