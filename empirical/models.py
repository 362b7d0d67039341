"""The networks: a deep MLP with stacked layers, scanned over depth.

Layer ``l = 1..L`` of width ``N`` (notation of DESIGN.md, Poole et al. 2016):

.. math::

  h^1 = x W^1 + b^1, \\qquad
  h^l = [h^{l-1}]_\\mathrm{res} + \\phi(\\nu(h^{l-1})) W^l + b^l \\quad (l \\ge 2),

with ``x`` of shape ``(batch, in_features)``, ``W^1`` of shape
``(in_features, N)``, ``W^l`` of shape ``(N, N)`` (Flax layout, ``h = a @ W``),
``[h^{l-1}]_res`` present only in the residual variant (Yang & Schoenholz
2017), and ``nu`` an optional normalisation of the pre-activations:

- ``norm=None``: identity;
- ``norm="layer"``: LayerNorm over the ``N`` units of each input, with a
  learnable scale (init 1) and bias (init 0), epsilon ``1e-6``;
- ``norm="batch"``: BatchNorm of each unit over the batch, always with the
  statistics of the batch at hand (training mode; no running averages are
  kept), learnable scale and bias, epsilon ``1e-5``.

The post-activation of layer ``l`` is ``a^l = phi(nu(h^l))``; the network's
output is ``a^L``, or ``a^L W^out + b^out`` with ``out_features``.

Everything is built on one pure function, :func:`forward`, of a parameter
pytree :class:`Params`. The hidden layers ``2..L`` are stacked as arrays of
shape ``(L - 1, N, N)`` and applied with ``jax.lax.scan``, so compile time does
not grow with depth. :class:`MLP` is the Flax ``nnx`` module around it, to
train (``nnx.Optimizer``) and inspect.

Random numbers (the seed-key convention shared by the whole ``empirical``
package): network ``i`` of a sweep with key ``key`` has key
``network_key(key, i) = fold_in(key, i)``; within it, the standard weights
of layer ``l`` come from ``fold_in(fold_in(k, WEIGHTS), l)``, the standard
biases from ``fold_in(fold_in(k, BIASES), l)`` and the readout (if any) from
``fold_in(fold_in(k, WEIGHTS), L + 1)``; the other streams are measurements'
and dropout's (``fold_in(k, DROPOUT)``, the root of a network's dropout masks:
pass it to :func:`forward` as ``dropout_key``; layer ``l``'s mask comes from
``fold_in(dropout_key, l)``).
Every stream is named in one table, :mod:`empirical.streams`.

Common random numbers: :func:`standard_params` draws the unit sample and
:func:`layer_scales` gives per-layer factors; :func:`forward` takes the
scales separately (``w_scale``, ``b_scale`` of shape ``(L, S)``) to run ``S``
hyperparameter settings of one network with one matrix product per layer,
the scale applied after it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from empirical import _checks
from empirical import inits as _inits
from empirical import streams
from meanfield.activations import Activation, activation as _activation

__all__ = [
    "Params", "MLP", "forward", "standard_params", "layer_scales",
    "scale_params", "network_key", "check_architecture", "NORMS", "DROPOUT_STREAM",
]

Array = jax.Array
Norm = Literal["layer", "batch"] | None
NORMS = (None, "layer", "batch")
_EPS = {"layer": 1e-6, "batch": 1e-5}
#: ``fold_in(network_key, DROPOUT_STREAM)`` is the root of a network's dropout masks.
DROPOUT_STREAM = streams.DROPOUT


class Params(NamedTuple):
  """Parameters of an MLP of depth ``L``, width ``N`` (a pytree).

  Attributes:
    w_in: ``(in_features, N)``, the first layer's weights.
    b_in: ``(N,)``.
    w: ``(L - 1, N, N)``, the hidden layers ``2..L`` stacked.
    b: ``(L - 1, N)``.
    norm_scale, norm_bias: ``(L, N)`` for ``norm`` in ``("layer", "batch")``,
      else ``None``.
    w_out, b_out: ``(N, out_features)``, ``(out_features,)`` readout, or ``None``.
  """

  w_in: Array
  b_in: Array
  w: Array
  b: Array
  norm_scale: Array | None = None
  norm_bias: Array | None = None
  w_out: Array | None = None
  b_out: Array | None = None

  @property
  def depth(self) -> int:
    """Number of layers ``L`` (the hidden stack ``w`` holds ``L - 1``)."""
    return self.w.shape[-3] + 1

  @property
  def width(self) -> int:
    """Units per layer ``N``, ``w_in.shape[-1]``."""
    return self.w_in.shape[-1]


def check_architecture(*, in_features=None, width=None, depth=None, norm=None,
                       out_features=None) -> None:
  """Raise ``ValueError`` for a bad architecture argument (those given)."""
  if in_features is not None:
    _checks.check_int("in_features", in_features, 1)
  if width is not None:
    _checks.check_int("width", width, 1)
  if depth is not None:
    _checks.check_int("depth", depth, 1)
  if out_features is not None:
    _checks.check_int("out_features", out_features, 1)
  if norm not in NORMS:
    raise ValueError(f"`norm` must be one of None, 'layer', 'batch', got {norm!r}")


def network_key(key: Array, seed) -> Array:
  """The key of network ``seed`` of a sweep: ``jax.random.fold_in(key, seed)``."""
  return jax.random.fold_in(key, seed)


def standard_params(key: Array, *, in_features: int, width: int, depth: int,
                    init: str | _inits.Init = "gaussian", norm: Norm = None,
                    out_features: int | None = None, dtype=None) -> Params:
  """The unit draw of a network's parameters (see the module's key convention).

  Weights are ``init.standard`` (e.g. variance ``1/fan_in`` for ``gaussian``),
  biases ``N(0, 1)``; multiply by :func:`layer_scales` (or pass those to
  :func:`forward`) to get the network at given ``sigma_w2``, ``sigma_b2``.
  Norm scales are ones and norm biases zeros. Traceable in ``key`` (vmap over
  seeds). Arrays are in ``dtype`` (default float32, float64 under x64).
  """
  scheme = _inits.init(init)
  check_architecture(in_features=in_features, width=width, depth=depth, norm=norm,
                     out_features=out_features)
  return _draw_standard(key, in_features, width, depth, scheme, norm, out_features,
                        _checks.float_dtype(dtype))


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5, 6, 7))
def _draw_standard(key, in_features, width, depth, scheme, norm, out_features, dtype):
  kw, kb = jax.random.fold_in(key, streams.WEIGHTS), jax.random.fold_in(key, streams.BIASES)
  weight = lambda l, fan_in: scheme.standard(jax.random.fold_in(kw, l), (fan_in, width), dtype)
  bias = lambda l: jax.random.normal(jax.random.fold_in(kb, l), (width,), dtype)
  layers = jnp.arange(2, depth + 1)
  w_in = weight(1, in_features)
  # A layer at a time (lax.map, the same numbers as a vmap): drawing random
  # numbers, most of the work, ran 1.3x faster so than batched on the CPU.
  w = jax.lax.map(lambda l: weight(l, width), layers)
  b_in = bias(1)
  b = jax.vmap(bias)(layers)
  params = Params(w_in, b_in, w.reshape(depth - 1, width, width), b.reshape(depth - 1, width))
  if norm is not None:
    params = params._replace(norm_scale=jnp.ones((depth, width), dtype),
                             norm_bias=jnp.zeros((depth, width), dtype))
  if out_features is not None:
    params = params._replace(
        w_out=scheme.standard(jax.random.fold_in(kw, depth + 1), (width, out_features), dtype),
        b_out=jnp.zeros((out_features,), dtype))
  return params


def layer_scales(init: str | _inits.Init, sigma_w2, sigma_b2, *, in_features: int,
                 width: int, depth: int, dtype=None) -> tuple[Array, Array]:
  """Per-layer factors of the standard weights and biases.

  Args:
    init: the weight scheme.
    sigma_w2: ``None`` for schemes that fix the variance, else a number or
      an array of shape ``(S,)`` (traceable).
    sigma_b2: a number or an array of shape ``(S,)``.

  Returns:
    ``(w_scale, b_scale)``, each of shape ``(L,)`` for scalar arguments or
    ``(L, S)`` for arrays: ``W^l = w_scale[l-1] * standard W^l`` and
    ``b^l = b_scale[l-1] * standard b^l`` (``b_scale = sqrt(sigma_b2)``).
  """
  scheme = _inits.init(init)
  dtype = _checks.float_dtype(dtype)
  shape = jnp.broadcast_shapes(jnp.shape(sigma_w2) if sigma_w2 is not None else (),
                               jnp.shape(sigma_b2))
  first = jnp.broadcast_to(jnp.asarray(scheme.scale(sigma_w2, in_features, width), dtype), shape)
  hidden = jnp.broadcast_to(jnp.asarray(scheme.scale(sigma_w2, width, width), dtype), shape)
  w_scale = jnp.concatenate([first[None], jnp.broadcast_to(hidden, (depth - 1, *shape))])
  b_scale = jnp.broadcast_to(jnp.sqrt(jnp.asarray(sigma_b2, dtype)), (depth, *shape))
  return w_scale, b_scale


def scale_params(std: Params, w_scale: Array, b_scale: Array) -> Params:
  """The network of one setting: ``std`` with :func:`layer_scales` of shape ``(L,)`` applied.

  Norm parameters and the readout (if any) are left as they are.
  """
  return std._replace(
      w_in=std.w_in * w_scale[0], b_in=std.b_in * b_scale[0],
      w=std.w * w_scale[1:, None, None], b=std.b * b_scale[1:, None])


def _normalise(h: Array, scale: Array | None, bias: Array | None, norm: Norm) -> Array:
  """``nu(h)`` for ``h`` of shape ``(S, B, N)``; scale, bias of shape ``(N,)``."""
  if norm is None:
    return h
  axis = -1 if norm == "layer" else -2
  mean = jnp.mean(h, axis=axis, keepdims=True)
  var = jnp.mean(jnp.square(h - mean), axis=axis, keepdims=True)
  out = (h - mean) * jax.lax.rsqrt(var + jnp.asarray(_EPS[norm], h.dtype))
  return out * scale[None, None, :] + bias[None, None, :]


def _affine(a: Array, w: Array, b: Array, ws: Array | None, bs: Array | None) -> Array:
  """``(a @ w) * ws + b * bs`` for ``a`` ``(S, B, n)``, ``ws``, ``bs`` ``(S,)``.

  The ``S`` settings share one matrix product (common random numbers).
  """
  s, batch, n = a.shape
  z = (a.reshape(s * batch, n) @ w).reshape(s, batch, w.shape[-1])
  if ws is None:
    return z + b[None, None, :]
  return z * ws[:, None, None] + b[None, None, :] * bs[:, None, None]


Probe = Callable[[Array, Array, Array], Any]


def forward(params: Params, x: Array, *, activation: str | Activation | Callable,
            residual: bool = False, norm: Norm = None, w_scale: Array | None = None,
            b_scale: Array | None = None, h_shift: Array | None = None,
            probe: Probe | None = None, keep_prob: float = 1.0,
            dropout_key: Array | None = None) -> tuple[Array, Any]:
  """The network's output and per-layer measurements, for one network.

  Args:
    params: a :class:`Params` (``norm_*`` present iff ``norm`` is given).
    x: inputs ``(B, in_features)``, or ``(S, B, in_features)`` for ``S``
      hyperparameter settings run together.
    activation: a name from ``meanfield.activation``'s table, an
      ``Activation`` or a callable.
    residual: add the skip connection ``h^{l-1}`` for ``l >= 2``.
    norm: ``None``, ``"layer"`` or ``"batch"`` (see the module docstring).
    w_scale, b_scale: ``None`` (``params`` are the network itself), or
      arrays of shape ``(L, S)`` multiplying layer ``l``'s weights and biases
      per setting, applied after the shared matrix product.
    h_shift: ``None`` or ``(L, S, B, N)`` added to each ``h^l``; differentiate
      with respect to it (at zero) to get ``dLoss/dh^l``.
    probe: ``None`` or ``probe(h, a, a_in) -> pytree`` called at every layer
      with ``h = h^l``, ``a = a^l`` (both ``(S, B, N)``) and ``a_in`` the
      layer's input (``x`` or ``a^{l-1}``); its results are stacked along a
      new leading axis of length ``L``.
    keep_prob: dropout's keep probability ``p`` in ``(0, 1]`` (a number):
      for ``p < 1`` the post-activation entering layer ``l >= 2`` is
      ``a^{l-1} * m^l / p``, ``m^l`` a Bernoulli(``p``) mask of shape
      ``(B, N)`` (one per input and unit, shared by the ``S`` settings)
      drawn from ``fold_in(dropout_key, l)`` (Schoenholz et al. 2017, Sec. 6).
      The input ``x`` and the output ``a^L`` are not dropped.
    dropout_key: the masks' key, needed for ``p < 1``; by the package's
      convention ``fold_in(network_key, DROPOUT_STREAM)``.

  Returns:
    ``(out, measured)``: ``out`` of shape ``(B, n_out)`` or ``(S, B, n_out)``
    (``n_out = N``, or ``out_features`` with a readout); ``measured`` the
    stacked probe results, or ``None``.
  """
  act = _activation(activation).fn
  in_features = params.w_in.shape[-2]
  if x.ndim not in (2, 3) or x.shape[-1] != in_features:
    raise ValueError(
        f"`x` must have shape (B, in_features) or (S, B, in_features) with in_features = "
        f"{in_features} (the network's input width), got shape {tuple(x.shape)}")
  squeeze = x.ndim == 2
  x = x[None] if squeeze else x
  depth = params.depth
  if (w_scale is None) != (b_scale is None):
    raise ValueError("`w_scale` and `b_scale` must be given together")
  if w_scale is not None and w_scale.shape != (depth, x.shape[0]):
    raise ValueError(f"`w_scale` must have shape (depth, S) = {(depth, x.shape[0])}, "
                     f"got {w_scale.shape}")
  if isinstance(keep_prob, bool) or not isinstance(keep_prob, int | float) or not (
      0 < keep_prob <= 1):
    raise ValueError(f"`keep_prob` must be a number in (0, 1], got {keep_prob!r}")
  if keep_prob < 1 and dropout_key is None:
    raise ValueError("`dropout_key` must be a PRNG key when keep_prob < 1, got None")
  norm_scale = params.norm_scale if norm is not None else None
  norm_bias = params.norm_bias if norm is not None else None
  if norm is not None and norm_scale is None:
    raise ValueError(f"`params` has no norm parameters for norm={norm!r}")

  def post(h, l):
    return act(_normalise(h, None if norm is None else norm_scale[l],
                          None if norm is None else norm_bias[l], norm))

  def scale_at(l):
    return (None, None) if w_scale is None else (w_scale[l], b_scale[l])

  h1 = _affine(x, params.w_in, params.b_in, *scale_at(0))
  if h_shift is not None:
    h1 = h1 + h_shift[0]
  a1 = post(h1, 0)
  first = probe(h1, a1, x) if probe is not None else None

  def step(carry, layer):
    h, a = carry
    l, w, b, ws, bs, shift = layer
    if keep_prob < 1:
      mask = jax.random.bernoulli(jax.random.fold_in(dropout_key, l + 1), keep_prob,
                                  a.shape[1:])
      a = jnp.where(mask[None], a / jnp.asarray(keep_prob, a.dtype), jnp.zeros((), a.dtype))
    h_new = _affine(a, w, b, ws, bs)
    if residual:
      h_new = h_new + h
    if shift is not None:
      h_new = h_new + shift
    a_new = post(h_new, l)
    return (h_new, a_new), (probe(h_new, a_new, a) if probe is not None else None)

  ws_rest = None if w_scale is None else w_scale[1:]
  bs_rest = None if b_scale is None else b_scale[1:]
  shift_rest = None if h_shift is None else h_shift[1:]
  (_, a_last), rest = jax.lax.scan(
      step, (h1, a1), (jnp.arange(1, depth), params.w, params.b, ws_rest, bs_rest, shift_rest))
  measured = None
  if probe is not None:
    measured = jax.tree.map(lambda f, r: jnp.concatenate([f[None], r]), first, rest)
  out = a_last
  if params.w_out is not None:
    out = _affine(out, params.w_out, params.b_out, None, None)
  return (out[0] if squeeze else out), measured


class MLP(nnx.Module):
  """A deep MLP at initialization, as a Flax ``nnx`` module.

  ``MLP(in_features, width, depth, activation="tanh", init="gaussian",
  sigma_w2=1.0, sigma_b2=0.0, rngs=nnx.Rngs(0))`` draws
  ``W^l_ij ~ sigma_w2/fan_in``-scaled weights of the scheme ``init`` (see
  :mod:`empirical.inits`; presets need ``sigma_w2=None``) and
  ``b^l_i ~ N(0, sigma_b2)`` from the key ``rngs.params()`` (layout and
  key convention in the module docstring). Calling it on ``(B, in_features)``
  returns ``(B, width)`` (``a^L``) or ``(B, out_features)``.

  Parameters are ``nnx.Param`` attributes with the shapes of
  :class:`Params` (``w`` stacked ``(depth - 1, width, width)``);
  :meth:`params` returns them as a :class:`Params` pytree for
  :func:`forward` and probes. Train it like any nnx module::

    opt = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    grads = nnx.grad(loss_fn)(model); opt.update(model, grads)
  """

  def __init__(self, in_features: int, width: int, depth: int, *,
               activation: str | Activation | Callable = "tanh",
               init: str | _inits.Init = "gaussian", sigma_w2: float | None = 1.0,
               sigma_b2: float = 0.0, residual: bool = False, norm: Norm = None,
               out_features: int | None = None, dtype=None,
               rngs: nnx.Rngs | None = None, params: Params | None = None):
    check_architecture(in_features=in_features, width=width, depth=depth, norm=norm,
                       out_features=out_features)
    scheme = _inits.init(init)
    scheme.check_sigma_w2(sigma_w2)
    _checks.check_variance("sigma_b2", sigma_b2)
    self.activation = _activation(activation)
    self.init_name = scheme.name
    self.sigma_w2 = sigma_w2
    self.sigma_b2 = sigma_b2
    self.residual = residual
    self.norm = norm
    if params is None:
      if rngs is None:
        raise ValueError("`rngs` must be an nnx.Rngs (or give `params`), got None")
      std = standard_params(rngs.params(), in_features=in_features, width=width, depth=depth,
                            init=scheme, norm=norm, out_features=out_features, dtype=dtype)
      ws, bs = layer_scales(scheme, sigma_w2, sigma_b2, in_features=in_features,
                            width=width, depth=depth, dtype=dtype)
      params = scale_params(std, ws, bs)
      if out_features is not None:
        params = params._replace(w_out=params.w_out * jnp.asarray(
            scheme.scale(sigma_w2, width, out_features), params.w_out.dtype))
    for name, value in params._asdict().items():
      setattr(self, name, None if value is None else nnx.Param(value))

  @classmethod
  def from_params(cls, params: Params, *, activation="tanh", residual: bool = False,
                  norm: Norm = None, **kwargs) -> MLP:
    """An MLP holding ``params`` (e.g. ``scale_params(standard_params(...), ...)``)."""
    out = params.w_out.shape[-1] if params.w_out is not None else None
    return cls(params.w_in.shape[0], params.width, params.depth, activation=activation,
               residual=residual, norm=norm, out_features=out, params=params, **kwargs)

  def params(self) -> Params:
    """The current parameter values as a :class:`Params` pytree."""
    return Params(*(None if getattr(self, f) is None else getattr(self, f)[...]
                    for f in Params._fields))

  def __call__(self, x: Array, *, probe: Probe | None = None):
    """``a^L`` (or the readout) for ``x`` of shape ``(B, in_features)``.

    With ``probe``, returns ``(out, measured)`` as :func:`forward` does.
    """
    out, measured = forward(self.params(), x, activation=self.activation,
                            residual=self.residual, norm=self.norm, probe=probe)
    return out if probe is None else (out, measured)
