"""Products of a network's layer factors ``D^l (W^l)^T``, kept in range by powers of two.

The one-network functions of :mod:`empirical.jacobian` and the driver of
:mod:`empirical.spectra` share these: the forward pass with ``phi'(h^l)``,
the Jacobian accumulated layer by layer (and its SVD at several depths), and
``J v`` and ``J^T u`` without forming ``J``. Parameters are stacked as
``weights`` ``(depth, N, N)`` (``h = x @ W``, Flax's ``(fan_in, fan_out)``
layout) and ``biases`` ``(depth, N)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from empirical import _checks
from meanfield.activations import Activation

Array = jax.Array


def check_params(weights, biases, x) -> tuple[int, int]:
  """``(depth, width)`` of stacked parameters; ValueError on bad shapes."""
  w_shape, b_shape, x_shape = jnp.shape(weights), jnp.shape(biases), jnp.shape(x)
  if len(w_shape) != 3 or w_shape[0] < 1 or w_shape[1] != w_shape[2] or w_shape[1] < 1:
    raise ValueError(
        f"`weights` must have shape (depth, N, N) with depth >= 1, got {w_shape}")
  depth, width = w_shape[0], w_shape[1]
  if b_shape != (depth, width):
    raise ValueError(
        f"`biases` must have shape (depth, N) = {(depth, width)} to match `weights`, got {b_shape}")
  if x_shape != (width,):
    raise ValueError(f"`x` must have shape (N,) = {(width,)} to match `weights`, got {x_shape}")
  return depth, width


def check_depths(depths, depth: int) -> tuple[int, ...]:
  if isinstance(depths, (int, np.integer)):
    depths = (depths,)
  depths = tuple(depths)
  if not depths:
    raise ValueError("`depths` must be a non-empty increasing sequence of integers, got ()")
  for d in depths:
    _checks.check_int("depths", d, 1)
  if any(b <= a for a, b in zip(depths, depths[1:])) or depths[-1] > depth:
    raise ValueError(
        f"`depths` must increase strictly and not exceed the network's depth {depth}, "
        f"got {depths}")
  return tuple(int(d) for d in depths)


def value_and_derivative(phi: Activation, h: Array) -> tuple[Array, Array]:
  """``(phi(h), phi'(h))`` elementwise, by one forward-mode pass."""
  return jax.jvp(phi.fn, (h,), (jnp.ones_like(h),))


# Products of many layer factors leave the float range long before the
# quantities measured from them do (a float32 Jacobian of ReLU networks with
# sigma_w2 = 256 reaches 1e32 at depth 30; its Gram matrix J J^T 1e64). The
# products below carry a power-of-two exponent: whenever a factor's largest
# entry leaves [2^-RESCALE, 2^RESCALE] it is scaled back to [0.5, 1) (exact,
# a power of two) and the exponent kept, and results are scaled back with
# ldexp at the end, so they are inf or nan only where their values are out
# of range. Inside that window nothing is rescaled, and results are exactly
# those of the plain products.
RESCALE = 32


def rescale(v: Array, axis=None) -> tuple[Array, Array]:
  """``(v 2^-e, e)`` with ``e`` int32 over ``axis`` (kept): 0 unless ``max |v|`` is
  outside ``[2^-RESCALE, 2^RESCALE]``, else the exponent of ``max |v|``."""
  m = jnp.max(jnp.abs(v), axis=axis, keepdims=True)
  usable = jnp.isfinite(m) & (m > 0)
  e = jnp.frexp(jnp.where(usable, m, jnp.ones_like(m)))[1]
  limit = jnp.finfo(v.dtype).maxexp - 2
  e = jnp.where(usable & (jnp.abs(e) > RESCALE), jnp.clip(e, -limit, limit), 0)
  return v * jnp.ldexp(jnp.ones_like(e, v.dtype), -e), e


def first_nonfinite(h_finite: Array) -> Array:
  """First layer (1-based) whose ``h`` is not finite, along axis 0; 0 if none."""
  bad = ~h_finite
  return jnp.where(jnp.any(bad, axis=0), jnp.argmax(bad, axis=0) + 1, 0).astype(jnp.int32)


def forward(phi: Activation, weights, biases, x):
  """``(x^L, d, finite)``: :func:`empirical.jacobian.output_and_derivatives`'s results and
  whether each ``h^l`` is finite."""
  def layer(x, wb):
    w, b = wb
    h = x @ w + b
    y, d = value_and_derivative(phi, h)
    return y, (d, jnp.all(jnp.isfinite(h)))

  out, (d, finite) = jax.lax.scan(layer, x, (weights, biases))
  return out, d, finite


def jacobian_segments(phi: Activation, weights, biases, x, depths: tuple[int, ...]):
  """``(J^T 2^-e, e, first)`` after each depth in ``depths``, one pass.

  Accumulates ``J^T <- J^T W^l D^l``, which keeps the weights in their
  ``(fan_in, fan_out)`` layout (no transposed matmul per layer), rescaled by
  powers of two (see ``RESCALE``): ``J^T`` is the first of the triple
  times ``2^e`` (``e`` int32). ``first`` is the first layer whose ``h^l`` is
  not finite (0: none up to that depth).
  """
  h = x @ weights[0] + biases[0]
  x, d = value_and_derivative(phi, h)
  jac_t, e = rescale(weights[0] * d[None, :])
  e = e[0, 0]
  first = jnp.where(jnp.all(jnp.isfinite(h)), 0, 1).astype(jnp.int32)

  def layer(carry, wbl):
    x, jac_t, e, first = carry
    w, b, l = wbl
    h = x @ w + b
    y, d = value_and_derivative(phi, h)
    jac_t, de = rescale((jac_t @ w) * d[None, :])
    first = jnp.where((first == 0) & ~jnp.all(jnp.isfinite(h)), l, first)
    return (y, jac_t, e + de[0, 0], first), None

  out, start = [], 1
  carry = (x, jac_t, e, first)
  for stop in depths:
    if stop > start:
      carry, _ = jax.lax.scan(layer, carry, (weights[start:stop], biases[start:stop],
                                             jnp.arange(start + 1, stop + 1, dtype=jnp.int32)))
    out.append(carry[1:])
    start = stop
  return out


def apply_jacobian(weights: Array, derivs: Array, v: Array) -> tuple[Array, Array]:
  """``J v`` for ``v`` of shape ``(N, P)``: ``v <- D^l (W^l)^T v`` for l = 1..L.

  Returns ``(u, e)``: ``J v = u 2^e`` per column (``e`` int32 ``(P,)``, see ``RESCALE``).
  """
  def layer(carry, wd):
    v, e = carry
    w, d = wd
    v, de = rescale(d[:, None] * (w.T @ v), axis=0)
    return (v, e + de[0]), None
  return jax.lax.scan(layer, (v, jnp.zeros(v.shape[1:], jnp.int32)), (weights, derivs))[0]


def apply_jacobian_t(weights: Array, derivs: Array, u: Array) -> tuple[Array, Array]:
  """``J^T u`` for ``u`` of shape ``(N, P)``: ``u <- W^l D^l u`` for l = L..1; as
  :func:`apply_jacobian`, ``(v, e)`` with ``J^T u = v 2^e`` per column."""
  def layer(carry, wd):
    u, e = carry
    w, d = wd
    u, de = rescale(w @ (d[:, None] * u), axis=0)
    return (u, e + de[0]), None
  return jax.lax.scan(layer, (u, jnp.zeros(u.shape[1:], jnp.int32)), (weights, derivs),
                      reverse=True)[0]


def svd_at_depths(act, weights, biases, x, depths, max_order: int = 0):
  """``(singular values, moments, first_nonfinite)`` of ``J`` at each depth.

  The SVD runs on the rescaled ``J`` and the singular values and moments
  ``mean(sigma^(2k))``, ``k = 1..max_order``, are scaled back at the end,
  so they are inf only where their values are beyond the dtype's range.
  """
  svs, moments, firsts = [], [], []
  for jac_t, e, first in jacobian_segments(act, weights, biases, x, depths):
    sv = jnp.linalg.svd(jac_t, compute_uv=False)
    lam = sv * sv
    svs.append(jnp.ldexp(sv, e))
    moments.append(jnp.stack([jnp.ldexp(jnp.mean(lam ** k, axis=-1), 2 * k * e)
                              for k in range(1, max_order + 1)], -1) if max_order else lam[:0])
    firsts.append(first)
  return jnp.stack(svs), jnp.stack(moments), jnp.stack(firsts)
