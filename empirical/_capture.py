"""Every layer's value in any JAX forward pass, found in its jaxpr (private to empirical.diagnosis).

:func:`trace` turns a forward function into a :class:`Traced` program; :func:`run`
evaluates it equation by equation (the jaxpr interpreter pattern of JAX's
``jax.core.eval_jaxpr``), recording the value of each *layer* as it is
computed, with an optional shift added to each (to differentiate with
respect to a layer's value). The layers, in the order of computation:

- ``dense`` / ``conv``: a ``dot_general`` / ``conv_general_dilated`` with one
  operand computed from the input ``x`` and one not (a weight), together
  with what follows it and does not mix in other input-dependent values
  (bias additions, scalings by parameters, reshapes): the pre-activation.
- ``residual``: an ``add`` of two input-dependent arrays of the same shape
  that come from different layers (``x + f(x)``); an ``add`` of two
  functions of one layer (inside an activation, say) is not one.
- module outputs: values the caller names in ``marks`` (each Flax submodule
  call's output, so normalisations and attention appear with their paths).

Attention weights are recorded apart, not as layers: every softmax of an
input-dependent array, found as ``jax.nn.softmax`` and Flax write it, an
``exp`` divided by its own ``reduce_sum`` (after a ``broadcast_in_dim`` or
``reshape``); ``recorder.attention`` holds ``(weights, axes)`` with the
axes the weights sum to 1 over.

Each layer's *post-activation* is the output of the first elementwise
nonlinearity applied to it alone (``tanh``, ``logistic``, ``erf``, ``max``
with a constant (ReLU), or a call of a unary function such as
``jax.nn.relu`` / ``jax.nn.gelu``), if any.

``pjit`` calls are inlined; ``scan`` is unrolled, so each iteration's layers
are layers (a network scanned over depth shows each of its layers).
Everything else is evaluated as it is. The decisions are made on static
information (which values depend on ``x``, and on which layers), so every
evaluation of one traced program records the same layers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend import core as jcore

Array = jax.Array

_AFFINE = {"dot_general": "dense", "conv_general_dilated": "conv"}
# Operations that continue a pending affine value with a parameter or shape change.
_CONTINUE = {"add", "add_any", "sub", "mul", "div", "reshape", "convert_element_type",
             "squeeze", "expand_dims"}
_SHAPE_ONLY = {"reshape", "convert_element_type", "squeeze", "expand_dims"}
_ACTIVATIONS = {"tanh", "logistic", "erf", "max", "custom_jvp_call", "custom_vjp_call",
                "pjit", "jit", "sin", "exp", "abs"}
_CALLS = {"pjit", "jit", "closed_call", "core_call"}
_MATMULS = set(_AFFINE)


@dataclasses.dataclass(frozen=True)
class Layer:
  """One recorded layer: its name, kind, shape and its post-activation's asymptotes.

  Attributes:
    name: a module path (``"blocks.0.ln"``) or ``kind`` + a counter (``"dense3"``).
    kind: ``"dense"``, ``"conv"``, ``"residual"``, or ``"module"`` for a module's
      output that is none of those (a normalisation, an attention).
    module: the class name of the module whose output it is, or ``""``.
    shape: the value's shape, dtype ``dtype``.
    activation: ``None`` (no nonlinearity follows it), else the name of the
      primitive or function applied.
    levels: the finite asymptotes ``phi(+-inf)`` of that nonlinearity (empty
      if unknown or none).
    batch_axis: the axis of ``shape`` over the inputs (set by the caller).
  """

  name: str
  kind: str
  shape: tuple[int, ...]
  dtype: Any
  module: str = ""
  activation: str | None = None
  batch_axis: int = 0
  levels: tuple[float, ...] = ()


@dataclasses.dataclass(frozen=True)
class Traced:
  """A forward pass as a jaxpr: ``jaxpr`` of ``(params, x)`` flattened, with
  ``marks`` (outvar position, name, module class) and the output's tree."""

  jaxpr: Any
  n_params: int
  n_out: int
  marks: tuple[tuple[int, str, str], ...]
  out_tree: Any


def trace(fn: Callable, params, x: Array) -> Traced:
  """Trace ``fn(params, x) -> (out, [(name, module, value), ...])`` to a :class:`Traced`.

  Where one value is the output of several modules, the last one listed names it.
  """
  box = {}

  def flat(params, x):
    out, marked = fn(params, x)
    leaves, box["tree"] = jax.tree.flatten(out)
    box["names"] = [(n, k) for n, k, _ in marked]
    return leaves + [v for _, _, v in marked]

  closed = jax.make_jaxpr(flat)(params, x)
  n_out = box["tree"].num_leaves
  marks = tuple((n_out + i, n, k) for i, (n, k) in enumerate(box["names"]))
  return Traced(closed, len(jax.tree.leaves(params)), n_out, marks, box["tree"])


class _Recorder:
  """Layer values of one evaluation (and, on the first, their descriptions)."""

  def __init__(self, shifts: Sequence[Array] | None):
    self.shifts = shifts
    self.values: list[Array] = []
    self.posts: dict[int, Array] = {}
    self.layers: list[Layer] = []
    self.counts: dict[str, int] = {}
    self.attention: list[tuple[Array, tuple[int, ...]]] = []

  def record(self, value: Array, kind: str, name: str | None = None,
             module: str = "") -> tuple[Array, int]:
    k = len(self.values)
    if name is None:
      self.counts[kind] = self.counts.get(kind, 0) + 1
      name = f"{kind}{self.counts[kind]}"
    if self.shifts is not None:
      value = value + self.shifts[k]
    self.values.append(value)
    self.layers.append(Layer(name, kind, tuple(jnp.shape(value)), jnp.result_type(value),
                             module))
    return value, k

  def rename(self, k: int, name: str, module: str) -> None:
    """Give layer ``k`` a module's name (the innermost module whose output it is)."""
    if not self.layers[k].module:
      self.layers[k] = dataclasses.replace(self.layers[k], name=name, module=module)

  def post(self, k: int, value: Array, activation: str, levels: tuple[float, ...]) -> None:
    self.posts[k] = value
    self.layers[k] = dataclasses.replace(self.layers[k], activation=activation, levels=levels)


@dataclasses.dataclass
class _Env:
  """Values and static facts of one jaxpr's variables while it is evaluated."""

  values: dict
  xdep: dict          # var -> frozenset of layer ids it comes from (None: not from x)
  pending: dict       # var -> affine kind, for values not yet recorded
  layer: dict         # var -> layer id
  exps: set = dataclasses.field(default_factory=set)      # outputs of exp
  sums: dict = dataclasses.field(default_factory=dict)    # var -> (exp var, axes) it sums

  def read(self, v):
    return v.val if isinstance(v, jcore.Literal) else self.values[v]

  def dep(self, v):
    return None if isinstance(v, jcore.Literal) else self.xdep.get(v)


def _bind(eqn, args):
  with eqn.ctx.manager:
    out = eqn.primitive.bind(*args, **eqn.primitive.get_bind_params(eqn.params))
  return list(out) if eqn.primitive.multiple_results else [out]


def _union(deps):
  deps = [d for d in deps if d is not None]
  return frozenset().union(*deps) if deps else None


def _has_matmul(jaxpr) -> bool:
  for eqn in jaxpr.eqns:
    if eqn.primitive.name in _MATMULS:
      return True
    for sub in jcore.jaxprs_in_params(eqn.params):
      if _has_matmul(sub):
        return True
  return False


def _activation_name(eqn) -> str | None:
  """The nonlinearity's name if ``eqn`` is elementwise-unary-looking, else None."""
  name = eqn.primitive.name
  if name not in _ACTIVATIONS or len(eqn.outvars) != 1:
    return None
  out = eqn.outvars[0].aval
  if name in _CALLS or name in ("custom_jvp_call", "custom_vjp_call"):
    inner = eqn.params["jaxpr" if name in _CALLS else "call_jaxpr"].jaxpr
    if _has_matmul(inner):
      return None
    name = eqn.params.get("name") or "+".join(_call_name(e) for e in inner.eqns) or name
  if any(getattr(v.aval, "shape", None) not in ((), out.shape) for v in eqn.invars):
    return None
  return str(name)


def _call_name(eqn) -> str:
  return str(eqn.params.get("name") or eqn.primitive.name)


def _levels(eqn, args, i: int) -> tuple[float, ...]:
  """Finite limits of the nonlinearity at operand ``i`` (others held), if computable."""
  others = [a for j, a in enumerate(args) if j != i]
  if any(isinstance(a, jax.core.Tracer) for a in others):
    return ()
  aval = eqn.invars[i].aval
  big = float(jnp.finfo(aval.dtype).max) ** 0.25
  ends = []
  with jax.ensure_compile_time_eval():
    for sign in (-1.0, 1.0):
      a = list(args)
      a[i] = jnp.full(aval.shape, sign * big, aval.dtype)
      v = _bind(eqn, a)[0]
      ends.append(float(jnp.ravel(v)[0]) if jnp.size(v) else float("nan"))
  return tuple(e for e in ends if abs(e) < big ** 0.5)


def run(traced: Traced, params: Sequence[Array], x: Array,
        shifts: Sequence[Array] | None = None) -> tuple[Any, _Recorder]:
  """Evaluate ``traced`` on flat ``params`` and ``x``; returns ``(out, recorder)``.

  ``recorder.values[k]`` is layer ``k``'s value (plus ``shifts[k]``),
  ``recorder.posts`` its post-activation, ``recorder.layers`` the descriptions.
  """
  rec = _Recorder(shifts)
  closed = traced.jaxpr
  marks = {closed.jaxpr.outvars[i]: (n, k) for i, n, k in traced.marks}
  args = list(params) + [x]
  deps = [None] * len(params) + [frozenset([-1])]
  outs, _ = _eval(closed.jaxpr, closed.consts, args, deps, rec, marks)
  return jax.tree.unflatten(traced.out_tree, outs[:traced.n_out]), rec


def _eval(jaxpr, consts, args, deps, rec: _Recorder, marks: dict | None = None):
  env = _Env({}, {}, {}, {})
  for v, c in zip(jaxpr.constvars, consts):
    env.values[v] = c
  for v, a, d in zip(jaxpr.invars, args, deps):
    env.values[v], env.xdep[v] = a, d
  for eqn in jaxpr.eqns:
    _step(eqn, env, rec)
    if len(eqn.outvars) == 1:
      _note_softmax(eqn, env, rec)
    for v in eqn.outvars:
      if marks and v in marks and env.dep(v) is not None:
        _mark(v, env, rec, *marks[v])
  for v in jaxpr.outvars:
    if not isinstance(v, jcore.Literal) and v in env.pending:
      _flush(v, env, rec)
  return [env.read(v) for v in jaxpr.outvars], [env.dep(v) for v in jaxpr.outvars]


def _flush(v, env: _Env, rec: _Recorder, name: str | None = None, module: str = "") -> int:
  kind = env.pending.pop(v)
  env.values[v], k = rec.record(env.values[v], kind, name, module)
  env.xdep[v] = frozenset([k])
  env.layer[v] = k
  return k


def _mark(v, env: _Env, rec: _Recorder, name: str, module: str) -> None:
  if v in env.pending:
    _flush(v, env, rec, name, module)
  elif v in env.layer:
    rec.rename(env.layer[v], name, module)
  else:
    env.values[v], k = rec.record(env.values[v], "module", name, module)
    env.xdep[v], env.layer[v] = frozenset([k]), k


def _step(eqn, env: _Env, rec: _Recorder) -> None:
  name = eqn.primitive.name
  deps = [env.dep(v) for v in eqn.invars]
  from_x = [i for i, d in enumerate(deps) if d is not None]
  if not from_x:                          # parameters only: no layer in it
    _write(eqn, env, _bind(eqn, [env.read(v) for v in eqn.invars]), deps)
    return
  ins = [v for v in eqn.invars if not isinstance(v, jcore.Literal)]
  # An affine chain goes on: a pending value changed by parameters only.
  if (name in _CONTINUE and len(from_x) == 1 and eqn.invars[from_x[0]] in env.pending
      and (name not in _SHAPE_ONLY or len(eqn.invars) == 1)):
    v = eqn.invars[from_x[0]]
    _write(eqn, env, _bind(eqn, [env.read(u) for u in eqn.invars]), deps)
    env.pending[eqn.outvars[0]] = env.pending.pop(v)
    return
  for v in ins:
    if v in env.pending:
      _flush(v, env, rec)
  deps = [env.dep(v) for v in eqn.invars]
  args = [env.read(v) for v in eqn.invars]
  if name in _AFFINE and len(from_x) == 1:
    _write(eqn, env, _bind(eqn, args), deps)
    env.pending[eqn.outvars[0]] = _AFFINE[name]
    return
  act = _activation_name(eqn) if len(from_x) == 1 else None
  if act is not None:
    v = eqn.invars[from_x[0]]
    out = _bind(eqn, args)
    _write(eqn, env, out, deps)
    k = env.layer.get(v)
    if k is not None and k not in rec.posts:
      rec.post(k, out[0], act, _levels(eqn, args, from_x[0]))
    return
  if name in ("add", "add_any") and _is_residual(eqn, deps):
    out = _bind(eqn, args)
    env.values[eqn.outvars[0]], k = rec.record(out[0], "residual")
    env.xdep[eqn.outvars[0]], env.layer[eqn.outvars[0]] = frozenset([k]), k
    return
  if name in _CALLS:
    sub = eqn.params["jaxpr"]
    outs, out_deps = _eval(sub.jaxpr, sub.consts, args, deps, rec)
    for v, o, d in zip(eqn.outvars, outs, out_deps):
      env.values[v], env.xdep[v] = o, d
    return
  if name == "scan":
    outs, out_deps = _scan(eqn, args, deps, rec)
    for v, o, d in zip(eqn.outvars, outs, out_deps):
      env.values[v], env.xdep[v] = o, d
    return
  _write(eqn, env, _bind(eqn, args), deps)


def _note_softmax(eqn, env: _Env, rec: _Recorder) -> None:
  """Follow ``exp`` -> ``reduce_sum`` -> ``div`` after ``eqn`` ran; record a softmax's output."""
  name, ins, out = eqn.primitive.name, eqn.invars, eqn.outvars[0]
  if any(isinstance(v, jcore.Literal) for v in ins) or env.dep(out) is None:
    return
  if name == "exp":
    env.exps.add(out)
  elif name == "reduce_sum" and ins[0] in env.exps:
    env.sums[out] = (ins[0], tuple(eqn.params["axes"]))
  elif name in ("broadcast_in_dim", "reshape") and ins[0] in env.sums:
    env.sums[out] = env.sums[ins[0]]
  elif name == "div" and ins[0] in env.exps and env.sums.get(ins[1], (None,))[0] is ins[0]:
    rec.attention.append((env.values[out], tuple(int(a) for a in env.sums[ins[1]][1])))


def _write(eqn, env: _Env, outs, deps) -> None:
  d = _union(deps)
  for v, o in zip(eqn.outvars, outs):
    env.values[v], env.xdep[v] = o, d


def _is_residual(eqn, deps) -> bool:
  a, b = deps
  shape = eqn.outvars[0].aval.shape
  same = all(v.aval.shape == shape for v in eqn.invars)
  return a is not None and b is not None and same and a != b


def _scan(eqn, args, deps, rec: _Recorder):
  """A ``scan`` unrolled: the body evaluated once per step, layers recorded in each."""
  p = eqn.params
  body, n_c, n_carry, length = p["jaxpr"], p["num_consts"], p["num_carry"], p["length"]
  consts, carry, xs = args[:n_c], args[n_c:n_c + n_carry], args[n_c + n_carry:]
  c_deps, carry_deps, x_deps = deps[:n_c], deps[n_c:n_c + n_carry], deps[n_c + n_carry:]
  steps = range(length - 1, -1, -1) if p["reverse"] else range(length)
  ys, y_deps = [], None
  for i in steps:
    outs, out_deps = _eval(body.jaxpr, body.consts, consts + carry + [x[i] for x in xs],
                           c_deps + carry_deps + x_deps, rec)
    carry, carry_deps = outs[:n_carry], out_deps[:n_carry]
    ys.append(outs[n_carry:])
    y_deps = out_deps[n_carry:] if y_deps is None else [
        _union([a, b]) for a, b in zip(y_deps, out_deps[n_carry:])]
  if p["reverse"]:
    ys = ys[::-1]
  n_y = len(body.jaxpr.outvars) - n_carry
  stacked = [jnp.stack([y[j] for y in ys]) for j in range(n_y)]
  return carry + stacked, carry_deps + (y_deps or [None] * n_y)
