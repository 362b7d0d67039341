"""What is measured at every layer of a network, reduced on the device.

:func:`measure` runs one network (or ``S`` hyperparameter settings of it that
share standard weights, see :func:`empirical.models.forward`) on a batch of
``B`` inputs, forward and backward, and returns per-layer statistics of shape
``(L, S)``; full activations never leave the computation. Layer ``l = 1..L``,
pre-activation ``h^l`` (``(B, N)``), post-activation ``a^l = phi(nu(h^l))``
(``nu`` the optional normalisation, identity by default). Averages
``<.>`` run over the ``B`` inputs and ``N`` units together.

Forward (Poole et al. 2016 for ``q`` and ``c``):

- ``q``: ``<(h_i^l)^2>``, the length of the pre-activations.
- ``pre_mean``, ``pre_var``: ``<h>`` and ``<(h - <h>)^2>``.
- ``post_mean``, ``post_var``: the same for ``a^l``.
- ``zero``: the fraction of ``a_i^l`` exactly 0 (ReLU below its kink).
- ``dead``: the fraction of units whose ``a_i^l`` is 0 for every input of the
  batch (dead ReLUs).
- ``saturated``: the fraction of ``a_i^l`` within 1% of a finite asymptote
  of ``phi``: ``|a - phi(+-inf)| < 0.01 max|phi(+-inf)|`` over the finite
  limits ``phi(+-inf)`` (tanh, erf, hard-tanh: ``|a| > 0.99``; sigmoid:
  ``a > 0.99`` or ``a < 0.01``; ELU: ``a < -0.99``). Activations whose only
  finite limit is 0 (ReLU, softplus, GELU, SiLU) or that have none never
  saturate; their floors show in ``zero`` and ``dead``.
- ``c``: the correlation ``h_{2k} . h_{2k+1} / (|h_{2k}| |h_{2k+1}|)`` of
  the pre-activations of inputs ``2k`` and ``2k+1``, averaged over the
  ``floor(B/2)`` pairs (nan for ``B < 2``; an odd last input is unpaired).

Backward (Schoenholz et al. 2017, Sec. 5). The scalar loss of input ``a`` is
a fixed random projection of the last layer's post-activation,

.. math::

  \\mathcal{L}_a = r \\cdot a^L_a, \\qquad r \\text{ a random unit vector in } R^N,

one ``r`` per network (:func:`readout`). It is linear, so its gradients do not
depend on the output's size, and per input, so no cross-input terms enter:

- ``grad_h``: ``sqrt(mean_a |dL_a/dh^l_a|^2)``, the backpropagated signal
  ``delta^l``; also the norm of the bias gradient ``dL_a/db^l``.
- ``grad_w``: ``sqrt(mean_a |dL_a/dW^l|_F^2)`` with
  ``|dL_a/dW^l|_F = |a^{l-1}_a| |delta^l_a|`` (``a^0 = x``), the weight
  gradient of the effective weights ``W^l`` (after scaling).

Theory for both is in :mod:`empirical.overlay`. With BatchNorm the inputs of
a batch interact, and the gradients are those of ``sum_a L_a``.

Overflow is data: ``first_nonfinite`` is the first layer ``l`` whose ``q^l`` is
not finite (0 if none): the pre-activations overflowed, or their mean square
is beyond the dtype's range. Every statistic is reduced from vectors scaled
by a power of two (``x 2^-e``, ``e`` the exponent of ``max |x|``) and scaled
back at the end wherever the plain sums of squares leave the normal range,
so it is inf or nan only where its value is out of range (or its inputs
already are), never because squares of representable numbers overflow or
underflow on the way; elsewhere the results are those of the plain formulas,
bit for bit. Nothing raises.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from empirical import models as _models
from meanfield.activations import Activation, activation as _activation

__all__ = ["Stats", "measure", "layer_stats", "readout", "saturation_levels", "scaled_norm",
           "STAT_DOCS"]

Array = jax.Array
SATURATION = 0.01

#: Description of each statistic (used as the ``description`` attribute of a sweep).
STAT_DOCS = {
    "q": "mean squared pre-activation <(h^l)^2> over units and inputs",
    "c": "correlation of the pre-activations of inputs 2k and 2k+1, mean over pairs",
    "pre_mean": "mean of the pre-activations h^l",
    "pre_var": "variance of the pre-activations h^l over units and inputs",
    "post_mean": "mean of the post-activations a^l = phi(h^l)",
    "post_var": "variance of the post-activations a^l over units and inputs",
    "zero": "fraction of post-activations exactly zero",
    "dead": "fraction of units zero for every input of the batch",
    "saturated": "fraction of post-activations within 1% of a finite asymptote of phi",
    "grad_h": "sqrt(mean over inputs of |dL_a/dh^l|^2), L_a = r . a^L (r random unit vector); "
              "equals the bias-gradient norm",
    "grad_w": "sqrt(mean over inputs of |dL_a/dW^l|_F^2) = |a^(l-1)| |dL_a/dh^l|",
    "first_nonfinite": "first layer whose q^l is not finite: the pre-activations or their "
                       "mean square beyond the dtype's range (0: none)",
}


class Stats(NamedTuple):
  """Per-layer statistics of one network; fields ``(L, S)`` (``first_nonfinite``: ``(S,)``).

  See the module docstring (and :data:`STAT_DOCS`) for the definitions.
  """

  q: Array
  c: Array
  pre_mean: Array
  pre_var: Array
  post_mean: Array
  post_var: Array
  zero: Array
  dead: Array
  saturated: Array
  grad_h: Array
  grad_w: Array
  first_nonfinite: Array


@functools.lru_cache(maxsize=None)
def saturation_levels(act: Activation) -> tuple[tuple[float, ...], float]:
  """``(asymptotes, tolerance)``: the finite limits ``phi(+-inf)`` and ``0.01 max|limit|``.

  ``tolerance`` is 0 (nothing saturates) when every finite limit is 0.
  """
  with jax.ensure_compile_time_eval():
    ends = [float(act.fn(jnp.asarray(v, jnp.float32))) for v in (-1e30, 1e30)]
  levels = tuple(v for v in ends if abs(v) < 1e6)
  return levels, SATURATION * max((abs(v) for v in levels), default=0.0)


def readout(key: Array, width: int, dtype=None) -> Array:
  """The loss projection ``r``: a random unit vector of shape ``(width,)``."""
  r = jax.random.normal(key, (width,), dtype or jnp.float32)
  return r / jnp.linalg.norm(r)


def _exponent(v: Array, axis) -> Array:
  """``e`` (int32) with ``max |v| 2^-e`` in ``[0.5, 1)`` over ``axis`` (kept), clipped so
  that ``2^-e`` is a normal number; 0 where that maximum is 0 or not finite."""
  m = jnp.max(jnp.abs(v), axis=axis, keepdims=True)
  ok = jnp.isfinite(m) & (m > 0)
  e = jnp.frexp(jnp.where(ok, m, jnp.ones_like(m)))[1]
  limit = jnp.finfo(v.dtype).maxexp - 2
  return jnp.where(ok, jnp.clip(e, -limit, limit), 0)


def _scaled(v: Array, axis) -> tuple[Array, Array]:
  """``(v 2^-e, e)``, ``e`` from :func:`_exponent` (exact: a power of two).

  ``v`` passes an optimisation barrier first, so that XLA does not fuse the
  scaled reductions with the plain ones of the same ``v``, which would change
  the plain ones' summation order (the last bit of the results).
  """
  v = jax.lax.optimization_barrier(v)
  e = _exponent(v, axis)
  return v * jnp.ldexp(jnp.ones_like(e, v.dtype), -e), e


def _in_range(square: Array) -> Array:
  """Where a plain sum of squares is trustworthy: finite and a normal number (or 0
  from exact zeros is left to the scaled formula, which gives 0 too)."""
  return jnp.isfinite(square) & (square >= jnp.finfo(square.dtype).tiny)


def _mean_var(v: Array) -> tuple[Array, Array]:
  # The plain formulas where they are in range (so results there are exactly
  # the plain ones), the scaled ones elsewhere.
  mean = jnp.mean(v, axis=(-2, -1))
  var = jnp.mean(jnp.square(v - mean[:, None, None]), axis=(-2, -1))
  vs, e = _scaled(v, (-2, -1))
  e = e[:, 0, 0]
  mean_s = jnp.mean(vs, axis=(-2, -1))
  var_s = jnp.mean(jnp.square(vs - mean_s[:, None, None]), axis=(-2, -1))
  return (jnp.where(jnp.isfinite(mean), mean, jnp.ldexp(mean_s, e)),
          jnp.where(_in_range(var), var, jnp.ldexp(var_s, 2 * e)))


def _mean_square(v: Array) -> Array:
  plain = jnp.mean(jnp.square(v), axis=(-2, -1))
  vs, e = _scaled(v, (-2, -1))
  scaled = jnp.ldexp(jnp.mean(jnp.square(vs), axis=(-2, -1)), 2 * e[:, 0, 0])
  return jnp.where(_in_range(plain), plain, scaled)


def _pair_correlation(h: Array) -> Array:
  s, batch, n = h.shape
  pairs = batch // 2
  if pairs == 0:
    return jnp.full((s,), jnp.nan, h.dtype)
  # Each vector scaled by its own power of two: the scales cancel exactly, and
  # the cosine is finite whenever both vectors are finite and nonzero.
  h1, h2 = h[:, 0:2 * pairs:2], h[:, 1:2 * pairs:2]
  cos = jnp.sum(h1 * h2, -1) / jnp.sqrt(jnp.sum(h1 * h1, -1) * jnp.sum(h2 * h2, -1))
  hb = jax.lax.optimization_barrier(h)
  (s1, e1), (s2, e2) = _scaled(hb[:, 0:2 * pairs:2], -1), _scaled(hb[:, 1:2 * pairs:2], -1)
  cos_s = jnp.sum(s1 * s2, -1) / jnp.sqrt(jnp.sum(s1 * s1, -1) * jnp.sum(s2 * s2, -1))
  # The plain formula is exact where the product of two sums of squares stays
  # in the normal range: |h| between about 2^(minexp/4) and 2^(maxexp/4) / n^(1/4).
  info = jnp.finfo(h.dtype)
  lo, hi = info.minexp // 4 + 2, (info.maxexp - 2 - math.ceil(math.log2(n))) // 4
  e = jnp.concatenate([e1, e2], axis=-1)
  plain = jnp.all((e >= lo) & (e <= hi), axis=(-2, -1))
  return jnp.where(plain, jnp.mean(cos, axis=-1), jnp.mean(cos_s, axis=-1))


def scaled_norm(v: Array, axis=None) -> Array:
  """The Euclidean norm of ``v`` over ``axis`` (all by default), scaled so that it is
  inf only where its value is beyond the dtype's range."""
  axis = tuple(range(v.ndim)) if axis is None else axis
  plain = jnp.sum(jnp.square(v), axis=axis)
  vs, e = _scaled(v, axis)
  scaled = jnp.ldexp(jnp.sqrt(jnp.sum(jnp.square(vs), axis=axis)), jnp.squeeze(e, axis))
  return jnp.where(_in_range(plain), jnp.sqrt(plain), scaled)


def _forward_stats(h: Array, a: Array, a_in: Array, act: Activation) -> dict[str, Array]:
  levels, tol = saturation_levels(act)
  pre_mean, pre_var = _mean_var(h)
  post_mean, post_var = _mean_var(a)
  is_zero = a == 0
  saturated = jnp.zeros(a.shape, bool)
  for level in levels:
    if tol > 0:
      saturated = saturated | (jnp.abs(a - jnp.asarray(level, a.dtype)) < tol)
  return dict(
      q=_mean_square(h),
      c=_pair_correlation(h),
      pre_mean=pre_mean, pre_var=pre_var, post_mean=post_mean, post_var=post_var,
      zero=jnp.mean(is_zero, axis=(-2, -1), dtype=h.dtype),
      dead=jnp.mean(jnp.all(is_zero, axis=-2), axis=-1, dtype=h.dtype),
      saturated=jnp.mean(saturated, axis=(-2, -1), dtype=h.dtype),
      in_sq=_squares(a_in))


def layer_stats(h: Array, act: Activation) -> dict[str, Array]:
  """The forward statistics of :class:`Stats` from pre-activations alone, per leading index.

  Args:
    h: pre-activations ``(L, B, N)`` (layers, inputs, units) of any architecture, with
      ``a^l = phi(h^l)`` its post-activations.
    act: the resolved activation ``phi``.

  Returns:
    ``q, c, pre_mean, pre_var, post_mean, post_var, zero, dead, saturated``, each
    ``(L,)`` in ``h``'s dtype, by the formulas of :func:`measure` (module docstring).
  """
  a = act.fn(h)
  stats = _forward_stats(h, a, a, act)
  del stats["in_sq"]
  return stats


def _squares(v: Array) -> tuple[Array, Array, Array]:
  """``(|v_a|^2, |v_a|^2 4^-e, e)`` per input ``a`` of ``v`` ``(S, B, n)``, one ``e`` per
  setting: plain, and of ``v`` scaled by :func:`_scaled`."""
  vs, e = _scaled(v, (-2, -1))
  return (jnp.sum(jnp.square(v), axis=-1), jnp.sum(jnp.square(vs), axis=-1), e[:, 0, 0])


def measure(params: _models.Params, x: Array, r: Array, *,
            activation: str | Activation | Callable, residual: bool = False,
            norm: _models.Norm = None, w_scale: Array | None = None,
            b_scale: Array | None = None, keep_prob: float = 1.0,
            dropout_key: Array | None = None) -> Stats:
  """Per-layer statistics of one network (``S`` settings of it) on ``x``.

  Args:
    params: :class:`empirical.models.Params` (any readout is ignored: the
      loss reads ``a^L``).
    x: inputs ``(B, in_features)`` shared by all settings, or ``(S, B, in_features)``.
    r: the loss projection, ``(width,)`` (:func:`readout`).
    activation, residual, norm, keep_prob, dropout_key: as in
      :func:`empirical.models.forward` (the masks are fixed while
      differentiating, so the gradients pass the same masks).
    w_scale, b_scale: ``(L, S)`` per-layer factors of standard parameters
      (:func:`empirical.models.layer_scales`), or ``None`` for ``S = 1``.

  Returns:
    :class:`Stats`, fields of shape ``(L, S)`` and ``first_nonfinite`` ``(S,)``
    (int32), in the dtype of ``params``.
  """
  act = _activation(activation)
  params = params._replace(w_out=None, b_out=None)
  n_settings = 1 if w_scale is None else w_scale.shape[1]
  if x.ndim == 2:
    x = jnp.broadcast_to(x[None], (n_settings, *x.shape))
  depth, (_, batch, _) = params.depth, x.shape

  def probe(h, a, a_in):
    return _forward_stats(h, a, a_in, act)

  def loss(shift):
    out, measured = _models.forward(params, x, activation=act, residual=residual, norm=norm,
                                    w_scale=w_scale, b_scale=b_scale, h_shift=shift,
                                    probe=probe, keep_prob=keep_prob, dropout_key=dropout_key)
    return jnp.sum(out @ r), measured

  shift = jnp.zeros((depth, n_settings, batch, params.width), params.w.dtype)
  delta, fwd = jax.grad(loss, has_aux=True)(shift)
  delta2 = jnp.sum(jnp.square(delta), axis=-1)                    # (L, S, B)
  in_sq, in_sq_s, e_in = fwd.pop("in_sq")                         # (L, S, B), .., (L, S)
  grad_h2 = jnp.mean(delta2, axis=-1)
  grad_w2 = jnp.mean(in_sq * delta2, axis=-1)
  # Where those are out of range: from the scaled vectors (see the module
  # docstring), |delta_a|^2 = delta2_s 4^e_d, |a_in|^2 = in_sq_s 4^e_in.
  delta_s, e_d = _scaled(delta, (-2, -1))
  delta2_s, e_d = jnp.sum(jnp.square(delta_s), axis=-1), e_d[..., 0, 0]
  grad_h = jnp.where(_in_range(grad_h2), jnp.sqrt(grad_h2),
                     jnp.ldexp(jnp.sqrt(jnp.mean(delta2_s, axis=-1)), e_d))
  grad_w = jnp.where(_in_range(grad_w2), jnp.sqrt(grad_w2),
                     jnp.ldexp(jnp.sqrt(jnp.mean(in_sq_s * delta2_s, axis=-1)), e_d + e_in))
  not_finite = ~jnp.isfinite(fwd["q"])
  first = jnp.where(jnp.any(not_finite, axis=0), jnp.argmax(not_finite, axis=0) + 1, 0)
  return Stats(**fwd, grad_h=grad_h, grad_w=grad_w, first_nonfinite=first.astype(jnp.int32))
