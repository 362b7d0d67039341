"""Mean-field theory of a convolutional network with circular padding (Xiao et al. 2018).

One input of ``n`` spatial positions (1-D, circular), ``C`` channels per
layer (the width), odd kernel size ``k`` with taps at offsets
``beta = -(k-1)/2 .. (k-1)/2``:

.. math::

  h^{l+1}_{a,i} = \\sum_\\beta \\sum_j W^{l+1}_{\\beta,i j}\\, \\phi(h^l_{a+\\beta,j}) + b_i,
  \\qquad W_{\\beta,ij} \\sim N(0, \\sigma_w^2 v_\\beta / C),

with a *footprint* ``v`` (``v_beta >= 0``, ``sum v = 1``, symmetric):
``"uniform"`` (``v_beta = 1/k``, i.i.d. Gaussian kernels of fan-in ``k C``)
or ``"delta"`` (all variance on the centre tap: Xiao et al.'s
delta-orthogonal kernels, whose centre tap is a scaled orthogonal matrix).
At infinite width the covariance across positions
``Sigma_ab = E[h_{a,i} h_{b,i}]`` follows (Xiao et al. 2018, Eq. 2.5)

.. math::

  \\Sigma^{l+1} = \\sigma_w^2\\, \\mathcal{A}\\bigl(K(\\Sigma^l)\\bigr) + \\sigma_b^2,
  \\qquad K_{ab} = E[\\phi(u_a)\\phi(u_b)],\\ u \\sim N(0, \\Sigma^l),
  \\qquad \\mathcal{A}(K)_{ab} = \\sum_\\beta v_\\beta K_{a+\\beta, b+\\beta}.

The diagonal follows the MLP's q-map when the input's per-position lengths
are equal; the off-diagonal is the MLP's c-map followed by an average along
the diagonals of the matrix. Near the fixed point ``Sigma* = q* (c* 11^T +
(1 - c*) I)`` the linearised map decouples into Fourier modes ``f`` along
the diagonals (docs/conv.md): the off-diagonal mode ``f`` is multiplied by
``chi_c lambda_f`` per layer and the diagonal (length) mode by
``q_map'(q*) lambda_f``, with ``lambda_f = sum_beta v_beta cos(2 pi f beta /
n)``. So ``xi_{c,f} = -1 / log|chi_c lambda_f|``, or
``1/xi_{c,f} = 1/xi_c - log|lambda_f|``: mode 0 has the MLP's ``xi_c``, the
others decay faster, even at criticality; a delta footprint (``lambda_f = 1``)
mixes no positions and every mode keeps ``xi_c``.

Orthogonal and Gaussian weights give the same forward covariance at
infinite width, so the weight law does not enter here. Functions take a
:class:`meanfield.Network` first (its ``activation``, ``sigma_w2``,
``sigma_b2``, ``depth``); ``kernel_size``, ``spatial_size`` and
``footprint`` are keywords of their own.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from meanfield import _checks
from meanfield._fixed_points import c_root, q_root
from meanfield._integrals import as_arrays, float_dtype, length_map_slope, second_moments
from meanfield.activations import Activation, activation as _activation
from meanfield.depth import depth_scale
from meanfield.fixed_points import q_star
from meanfield.gaussian import bivariate_expectation
from meanfield.network import accepts_network
from meanfield.phase import phase_diagram

__all__ = ["FOOTPRINTS", "footprint_weights", "mode_eigenvalues", "spatial_modes",
           "conv_covariance_map", "ConvPropagation", "conv_propagate", "ConvFixedPoint", "conv_fixed_point",
           "ConvDepthScales", "conv_depth_scales", "conv_phase_diagram"]

Array = jax.Array
ArrayLike = Any

FOOTPRINTS = ("uniform", "delta")


# --- geometry: footprint, shifts, modes ------------------------------------------


def _odd_size(name: str, value: Any) -> int:
  k = _checks.check_positive_int(name, value)
  if k % 2 == 0:
    raise ValueError(f"`{name}` must be odd (taps centred on each position), got {value!r}")
  return k


def footprint_weights(*, kernel_size: int, footprint: str | ArrayLike = "uniform") -> np.ndarray:
  """The footprint ``v_beta`` of the kernel: the share of ``sigma_w2`` on each tap.

  Args:
    kernel_size: odd ``k >= 1``.
    footprint: ``"uniform"`` (``1/k`` each: i.i.d. kernels of fan-in ``k C``),
      ``"delta"`` (1 on the centre tap: delta-orthogonal kernels), or an
      array of ``k`` non-negative weights summing to 1, symmetric about the centre.

  Returns:
    float64 NumPy array of shape ``(k,)``, tap ``j`` at offset ``j - (k-1)/2``.
  """
  k = _odd_size("kernel_size", kernel_size)
  if isinstance(footprint, str):
    if footprint == "uniform":
      return np.full(k, 1.0 / k)
    if footprint == "delta":
      return np.eye(k)[k // 2]
    raise ValueError(f"`footprint` must be one of {', '.join(map(repr, FOOTPRINTS))} or an "
                     f"array of {k} weights, got {footprint!r}")
  v = np.asarray(_checks.real("footprint", footprint), float)
  if v.shape != (k,) or np.any(v < 0) or not np.isclose(v.sum(), 1) or not np.allclose(v, v[::-1]):
    raise ValueError(f"`footprint` must be {k} non-negative weights summing to 1, symmetric "
                     f"about the centre tap (kernel_size={k}), got {footprint!r}")
  return v


def _spatial_size(value: Any) -> int:
  return _checks.check_positive_int("spatial_size", value)


def mode_eigenvalues(*, kernel_size: int, spatial_size: int,
                     footprint: str | ArrayLike = "uniform") -> np.ndarray:
  """``lambda_f = sum_beta v_beta cos(2 pi f beta / n)``, ``f = 0..n-1``: the eigenvalues of the shift average.

  For the uniform footprint with ``k <= n`` this is the Dirichlet kernel
  ``sin(pi f k / n) / (k sin(pi f / n))`` (``lambda_0 = 1``); taps beyond
  ``n`` wrap around. float64 NumPy array of shape ``(n,)``.
  """
  v = footprint_weights(kernel_size=kernel_size, footprint=footprint)
  n = _spatial_size(spatial_size)
  beta = np.arange(v.size) - v.size // 2
  f = np.arange(n)
  return np.cos(2 * np.pi * np.outer(f, beta) / n) @ v


def _shift_average(v: Array, m: Array) -> Array:
  """``A(M)_ab = sum_j v_j M[a + beta_j, b + beta_j]`` (indices mod n) for ``m`` of shape ``(..., n, n)``."""
  k = v.shape[0]
  out = jnp.zeros_like(m)
  for j in range(k):                       # k is small and static
    beta = j - k // 2
    out = out + v[j] * jnp.roll(m, (-beta, -beta), axis=(-2, -1))
  return out


def _diagonals(m: Array) -> Array:
  """``D[..., a, d] = m[..., a, (a + d) mod n]``."""
  n = m.shape[-1]
  a = np.arange(n)
  return m[..., a[:, None], (a[:, None] + a[None, :]) % n]


def spatial_modes(matrix: ArrayLike) -> Array:
  """The Fourier modes of a covariance (or correlation) matrix along its diagonals.

  .. math:: \\hat M_{f,d} = \\frac{1}{n} \\sum_a e^{-2\\pi i f a / n} M_{a, a+d}

  (indices mod n): ``d`` the lag, ``f`` the frequency in the position ``a``.
  ``d = 0`` holds the per-position lengths, ``f = 0`` the translation
  average. Near the fixed point the convolutional map multiplies
  ``\\hat M_{f,d}`` (``d != 0``) by ``chi_c lambda_f`` per layer (module
  docstring). A stationary matrix (``M_ab`` a function of ``b - a``) has
  only ``f = 0``.

  Args:
    matrix: ``(..., n, n)``.

  Returns:
    Complex array ``(..., n_f, n_d)``, both of size ``n``.
  """
  m = jnp.asarray(matrix)
  if m.ndim < 2 or m.shape[-1] != m.shape[-2]:
    raise ValueError(f"`matrix` must have shape (..., n, n), got {m.shape}")
  return jnp.fft.fft(_diagonals(m), axis=-2) / m.shape[-1]


# --- propagation ------------------------------------------------------------------


def _flat_batch(covariance, sigma_w2, sigma_b2):
  """``(batch, n, dtype, cov, sw2, sb2)``: the arguments broadcast and flattened to one
  batch axis, ``cov`` of shape ``(B, n, n)``, ``sw2`` and ``sb2`` of shape ``(B,)``."""
  dtype = float_dtype(covariance, sigma_w2, sigma_b2)
  covariance = jnp.asarray(covariance, dtype)
  batch = jnp.broadcast_shapes(covariance.shape[:-2], jnp.shape(sigma_w2), jnp.shape(sigma_b2))
  n = covariance.shape[-1]
  cov = jnp.broadcast_to(covariance, batch + (n, n)).reshape((-1, n, n))
  sw2 = jnp.broadcast_to(jnp.asarray(sigma_w2, dtype), batch).reshape(-1)
  sb2 = jnp.broadcast_to(jnp.asarray(sigma_b2, dtype), batch).reshape(-1)
  return batch, n, dtype, cov, sw2, sb2


@functools.partial(jax.jit, static_argnames=("act",))
def _conv_covariance_map(act, covariance, sigma_w2, sigma_b2, v):
  batch, n, dtype, cov, sw2, sb2 = _flat_batch(covariance, sigma_w2, sigma_b2)
  one = lambda s, w, b: _layer(act, jnp.asarray(v, dtype), s, w, b)
  return jax.vmap(one)(cov, sw2, sb2).reshape(batch + (n, n))


def _layer(act, v, sigma, w, b):
  return w * _shift_average(v, _pair_cross_moments(act, sigma)) + b


def _check_covariance(covariance, *, semidefinite: bool = False):
  cov = _checks.real("covariance", covariance)
  a = _checks.concrete(cov)
  if a is not None:
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
      raise ValueError(f"`covariance` must have shape (..., n, n), got {a.shape}")
    if not np.allclose(a, np.swapaxes(a, -1, -2)) or np.any(np.diagonal(a, 0, -2, -1) < 0):
      raise ValueError("`covariance` must be symmetric with a non-negative diagonal")
    if semidefinite:
      _check_semidefinite(a)
  return cov


def _check_semidefinite(a: np.ndarray) -> None:
  """Raise unless every finite ``(n, n)`` matrix of ``a`` is positive semi-definite to
  rounding (eigenvalues ``>= -100 n eps max|eigenvalue|``); nan entries pass as data."""
  m = a.reshape((-1,) + a.shape[-2:])
  m = m[np.all(np.isfinite(m), axis=(-2, -1))]
  if m.size == 0:
    return
  eps = np.finfo(a.dtype).eps if a.dtype.kind == "f" else np.finfo(float).eps
  eig = np.linalg.eigvalsh(m.astype(float))
  scale = np.max(np.abs(eig), axis=-1)
  bad = eig[:, 0] < -100 * a.shape[-1] * eps * scale
  if np.any(bad):
    worst = m[np.argmax(bad)].astype(float)
    root = np.sqrt(np.diagonal(worst))
    with np.errstate(divide="ignore", invalid="ignore"):
      corr = np.abs(worst / np.outer(root, root))
    raise ValueError(
        f"`covariance` must be positive semi-definite (a covariance across positions), got a "
        f"matrix with eigenvalue {eig[np.argmax(bad), 0]:.4g} and correlations up to "
        f"{np.nanmax(corr):.4g}")


@accepts_network
def conv_covariance_map(covariance: ArrayLike, *, sigma_w2: ArrayLike, sigma_b2: ArrayLike,
                        activation: Any, kernel_size: int,
                        footprint: str | ArrayLike = "uniform") -> Array:
  """One layer of the CNN covariance map, ``Sigma -> sigma_w2 A(K(Sigma)) + sigma_b2`` (Xiao et al. 2018, Eq. 2.5).

  The CNN's counterpart of :func:`meanfield.q_map` and :func:`meanfield.c_map`
  together: ``covariance`` is the pre-activation covariance across positions
  ``(..., n, n)`` of layer ``l``, the result that of layer ``l + 1`` (batch
  shape broadcast with ``sigma_w2``, ``sigma_b2``). Arguments as
  :func:`conv_propagate`, except that ``covariance`` need only be symmetric
  with a non-negative diagonal (so a fixed point plus a small perturbation
  of either sign can be mapped; :func:`conv_propagate` requires it to be
  positive semi-definite).

  Example::

    fp = meanfield.conv_fixed_point(sigma_w2=1.5, sigma_b2=0.05, activation="tanh", spatial_size=8)
    meanfield.conv_covariance_map(fp.covariance, sigma_w2=1.5, sigma_b2=0.05,
                                  activation="tanh", kernel_size=3)   # == fp.covariance
  """
  act = _activation(activation)
  sigma_w2, sigma_b2 = _checks.hyperparameters(sigma_w2, sigma_b2)
  v = footprint_weights(kernel_size=kernel_size, footprint=footprint)
  return _conv_covariance_map(act, _check_covariance(covariance), sigma_w2, sigma_b2, v)


class ConvPropagation(NamedTuple):
  """Layer-by-layer covariance across positions; index ``l - 1`` of the layer axis is layer ``l``.

  Attributes:
    covariance: ``Sigma^l``, shape ``batch + (depth, n, n)``.
    q: its diagonal, the per-position lengths, ``batch + (depth, n)``.
    c: the correlations ``Sigma_ab / sqrt(Sigma_aa Sigma_bb)``, ``batch + (depth, n, n)``.
  """

  covariance: Array
  q: Array
  c: Array


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _cross_moment(act: Activation, q1: Array, q2: Array, q12: Array) -> Array:
  """``E[phi(u1) phi(u2)]`` for ``(u1, u2)`` with variances ``q1, q2`` and covariance ``q12``."""
  forms = act.closed_forms
  if "cross_moment" in forms:
    return forms["cross_moment"](q1, q2, q12)
  return bivariate_expectation(lambda u1, u2: act.fn(u1) * act.fn(u2), q1, q2, q12,
                               kinks=act.kinks)


@_cross_moment.defjvp
def _cross_moment_jvp(act, primals, tangents):
  """Derivatives by Price's theorem, finite at correlation +-1 (where the
  quadrature's ``sqrt(1 - c^2)`` has none): ``dK/dq12 = E[phi'(u1) phi'(u2)]``
  and ``dK/dq1 = E[phi''(u1) phi(u2)] / 2 = (E[u1 phi'(u1) phi(u2)] - q12
  E[phi'(u1) phi'(u2)]) / (2 q1)`` (Gaussian integration by parts), so only
  ``phi'`` is needed; one 2-D quadrature for the three expectations."""
  q1, q2, q12 = primals
  t1, t2, t12 = tangents
  d = act.derivative
  m1, m2, dd = bivariate_expectation(
      lambda u1, u2: (u1 * d(u1) * act.fn(u2), act.fn(u1) * u2 * d(u2), d(u1) * d(u2)),
      q1, q2, q12, kinks=act.kinks)
  if "derivative_cross_moment" in act.closed_forms:
    dd = act.closed_forms["derivative_cross_moment"](q1, q2, q12)
  tangent = dd * t12 + (m1 - q12 * dd) / (2 * q1) * t1 + (m2 - q12 * dd) / (2 * q2) * t2
  return _cross_moment(act, q1, q2, q12), tangent


def _pair_cross_moments(act: Activation, sigma: Array) -> Array:
  """``K_ab = E[phi(u_a) phi(u_b)]`` for ``u ~ N(0, sigma)``, ``sigma`` of shape ``(n, n)``."""
  q = jnp.diagonal(sigma)
  q1, q2 = jnp.broadcast_arrays(q[:, None], q[None, :])
  k = _cross_moment(act, q1, q2, sigma)
  n = sigma.shape[-1]
  eye = jnp.eye(n, dtype=bool)
  return jnp.where(eye, second_moments(act, q)[0][:, None], k)


@functools.partial(jax.jit, static_argnames=("act", "depth"))
def _conv_propagate(act, depth, covariance, sigma_w2, sigma_b2, v):
  batch, n, dtype, cov, sw2, sb2 = _flat_batch(covariance, sigma_w2, sigma_b2)
  v = jnp.asarray(v, dtype)

  def one(cov0, w, b):
    first = w * _shift_average(v, cov0) + b

    def layer(sigma, _):
      nxt = _layer(act, v, sigma, w, b)
      return nxt, nxt

    _, rest = jax.lax.scan(layer, first, None, length=depth - 1)
    return jnp.concatenate([first[None], rest], axis=0)

  sig = jax.vmap(one)(cov, sw2, sb2).reshape(batch + (depth, n, n))
  q = jnp.diagonal(sig, axis1=-2, axis2=-1)
  root = jnp.sqrt(q)
  c = sig / (root[..., :, None] * root[..., None, :])
  return ConvPropagation(covariance=sig, q=q, c=c)


@accepts_network
def conv_propagate(*, covariance: ArrayLike, depth: int, sigma_w2: ArrayLike,
                   sigma_b2: ArrayLike, activation: Any, kernel_size: int,
                   footprint: str | ArrayLike = "uniform") -> ConvPropagation:
  """Iterate the covariance map of a circular CNN through ``depth`` layers (Xiao et al. 2018, Eq. 2.5).

  Layer 1 is affine in the input, ``Sigma^1 = sigma_w2 A(Sigma^0) + sigma_b2``
  with ``Sigma^0_ab = x_a . x_b / C_0`` (``x_a`` the input's ``C_0``
  channels at position ``a``); then ``Sigma^{l+1} = sigma_w2 A(K(Sigma^l)) +
  sigma_b2`` (module docstring). ``K`` comes from the activation's closed
  forms where it has them, else from 2-D quadrature with unequal variances
  (:func:`meanfield.gaussian.bivariate_expectation`); its diagonal from the 1-D
  integrals of the q-map. One ``lax.scan`` over depth, compiled once per
  activation, depth and shape.

  Args:
    covariance: the input covariance ``Sigma^0``, ``(..., n, n)``, symmetric
      positive semi-definite.
    depth: number of layers ``>= 1``.
    sigma_w2, sigma_b2: variances ``>= 0``, broadcast against ``covariance.shape[:-2]``.
    activation: a name, an Activation or a callable.
    kernel_size, footprint: as in :func:`footprint_weights`.

  Returns:
    :class:`ConvPropagation` with batch shape the broadcast of
    ``covariance.shape[:-2]``, ``sigma_w2`` and ``sigma_b2``.

  Example::

    x = jax.random.normal(key, (16, 3)); cov = x @ x.T / 3
    meanfield.conv_propagate(covariance=cov, depth=20, sigma_w2=1.5, sigma_b2=0.05,
                             activation="tanh", kernel_size=3).c[-1]
  """
  act = _activation(activation)
  depth = _checks.check_positive_int("depth", depth)
  sigma_w2, sigma_b2 = _checks.hyperparameters(sigma_w2, sigma_b2)
  v = footprint_weights(kernel_size=kernel_size, footprint=footprint)
  return _conv_propagate(act, depth, _check_covariance(covariance, semidefinite=True),
                         sigma_w2, sigma_b2, v)


# --- fixed point and depth scales --------------------------------------------------


class ConvFixedPoint(NamedTuple):
  """The translation-invariant fixed point ``Sigma* = q* (c* 11^T + (1 - c*) I)``.

  Attributes:
    q_star, c_star: the MLP's fixed points, broadcast shape of the hyperparameters.
    covariance: ``Sigma*``, that shape ``+ (n, n)``.
    converged: whether the solvers of ``q*`` and ``c*`` both met their tolerance
      (:func:`meanfield.fixed_point`'s ``converged``), that shape.
  """

  q_star: Array
  c_star: Array
  covariance: Array
  converged: Array


# the largest covariance (batch x n x n entries) conv_fixed_point builds: 1 GiB in float64
_MAX_COVARIANCE_ENTRIES = 2 ** 27


@accepts_network
def conv_fixed_point(*, sigma_w2: ArrayLike, sigma_b2: ArrayLike, activation: Any,
                     spatial_size: int) -> ConvFixedPoint:
  """The stable fixed point of the CNN covariance map, for every footprint.

  The shift average maps ``alpha I + beta 11^T`` to itself (each shift does,
  and ``sum v = 1``), so the MLP's ``(q*, c*)`` give the CNN's fixed point
  (Xiao et al. 2018, Sec. 2.3); it is stable where the MLP's is, with the
  per-mode slopes of :func:`conv_depth_scales`. ``q_star`` is inf and
  ``c_star`` nan where the length diverges.

  Raises:
    ValueError: ``spatial_size`` would make ``covariance`` (broadcast shape
      ``+ (n, n)``) larger than ``2**27`` entries; ``q_star`` and ``c_star``
      do not depend on ``spatial_size``.
  """
  act = _activation(activation)
  sigma_w2, sigma_b2 = _checks.hyperparameters(sigma_w2, sigma_b2)
  n = _spatial_size(spatial_size)
  entries = int(np.prod(np.broadcast_shapes(np.shape(sigma_w2), np.shape(sigma_b2)))) * n * n
  if entries > _MAX_COVARIANCE_ENTRIES:
    raise ValueError(
        f"`spatial_size` must make the covariance (grid x n x n) at most "
        f"{_MAX_COVARIANCE_ENTRIES} entries (2**27), got spatial_size={n!r}: {entries} entries; "
        f"q_star and c_star do not depend on spatial_size (Sigma* = q* (c* 11^T + (1 - c*) I))")
  q_fp = q_root(act, sigma_w2, sigma_b2)
  q = q_fp.value
  # no fixed length (q* = inf): no c* either (nan)
  finite_q = jnp.where(jnp.isinf(q), jnp.nan, q)
  fp, _ = c_root(act, sigma_w2, sigma_b2, finite_q)
  c = fp.value
  eye = jnp.eye(n, dtype=c.dtype).reshape((1,) * c.ndim + (n, n))
  cq, cc = q[..., None, None], c[..., None, None]
  cov = cq * (cc + (1 - cc) * eye)
  return ConvFixedPoint(q_star=q, c_star=c, covariance=cov,
                        converged=q_fp.converged & fp.converged)


class ConvDepthScales(NamedTuple):
  """Per-mode slopes and depth scales at the fixed point; mode axis last (``f = 0..n-1``).

  Attributes:
    eigenvalue: ``lambda_f``, shape ``(n,)``.
    slope_q, slope_c: ``q_map'(q*) lambda_f`` and ``chi_c lambda_f``,
      shape ``batch + (n,)``: the factor per layer of the length mode and of
      the off-diagonal (correlation) mode ``f``.
    xi_q, xi_c: ``-1 / log|slope|`` (layers; inf where ``|slope| >= 1``,
      0 where the slope is 0); a negative slope alternates in sign as it decays.
  """

  eigenvalue: Array
  slope_q: Array
  slope_c: Array
  xi_q: Array
  xi_c: Array


@functools.partial(jax.jit, static_argnames=("act",))
def _q_slope(act, sigma_w2, q):
  sigma_w2, q = as_arrays(sigma_w2, q)
  return length_map_slope(act, sigma_w2, q)


@accepts_network
def conv_depth_scales(*, sigma_w2: ArrayLike, sigma_b2: ArrayLike, activation: Any,
                      kernel_size: int, spatial_size: int,
                      footprint: str | ArrayLike = "uniform") -> ConvDepthScales:
  """Depth scales of the Fourier modes of the CNN covariance (docs/conv.md; Xiao et al. 2018, Sec. 2.4).

  ``slope_c = chi_c lambda_f``, ``xi_c = -1/log|chi_c lambda_f|``: mode 0 is
  the MLP's ``xi_c`` (:func:`meanfield.depth_scales`); every mode with
  ``|lambda_f| < 1`` stays finite at criticality. The same for the
  length modes with the q-map's slope.

  Example::

    meanfield.conv_depth_scales(sigma_w2=1.05, sigma_b2=2.01e-5, activation="tanh",
                                kernel_size=3, spatial_size=16).xi_c   # shape (16,)
  """
  act = _activation(activation)
  sigma_w2, sigma_b2 = _checks.hyperparameters(sigma_w2, sigma_b2)
  lam = mode_eigenvalues(kernel_size=kernel_size, spatial_size=spatial_size,
                         footprint=footprint)
  q = q_star(sigma_w2=sigma_w2, sigma_b2=sigma_b2, activation=act)
  _, chi_c = c_root(act, sigma_w2, sigma_b2, jnp.where(jnp.isinf(q), jnp.nan, q))
  slope_q = _q_slope(act, sigma_w2, q)
  lam_j = jnp.asarray(lam, chi_c.dtype)
  lam_b = lam_j.reshape((1,) * chi_c.ndim + lam_j.shape)
  sq = slope_q[..., None] * lam_b
  sc = chi_c[..., None] * lam_b
  return ConvDepthScales(eigenvalue=lam_j, slope_q=sq, slope_c=sc,
                         xi_q=depth_scale(jnp.abs(sq)), xi_c=depth_scale(jnp.abs(sc)))


@accepts_network
def conv_phase_diagram(*, sigma_w2: ArrayLike, sigma_b2: ArrayLike, activation: Any,
                       kernel_size: int, spatial_size: int,
                       footprint: str | ArrayLike = "uniform",
                       critical_tol: float = 1e-3) -> xr.Dataset:
  """:func:`meanfield.phase_diagram` with per-mode depth scales of a circular CNN.

  Adds, over dims ``("sigma_w2", "sigma_b2", "frequency")``, ``xi_q_mode``
  and ``xi_c_mode`` (``-1/log|slope lambda_f|``), and ``eigenvalue``
  (``lambda_f``) over ``frequency`` (``f = 0..n-1``). The phase boundary is
  the MLP's: mode 0 carries it.
  """
  lam = mode_eigenvalues(kernel_size=kernel_size, spatial_size=spatial_size,
                         footprint=footprint)
  ds = phase_diagram(sigma_w2=sigma_w2, sigma_b2=sigma_b2, activation=activation,
                     critical_tol=critical_tol)
  # 1/xi_f = 1/xi - log|lambda_f|: the rates add (module docstring)
  with np.errstate(divide="ignore"):
    log_lam = np.log(np.abs(lam))
    rates = {name: 1.0 / ds[name].values[..., None] - log_lam
             for name in ("xi_q", "xi_c")}
    modes = {name: np.where(np.isnan(r), np.nan, 1.0 / r) for name, r in rates.items()}
  dims = ("sigma_w2", "sigma_b2", "frequency")
  return ds.assign(
      eigenvalue=(("frequency",), lam, {"long_name": "lambda_f",
                                         "description": "eigenvalue of the shift average"}),
      xi_q_mode=(dims, modes["xi_q"].astype(ds.xi_q.dtype),
                 {"long_name": "xi_q,f", "units": "layers"}),
      xi_c_mode=(dims, modes["xi_c"].astype(ds.xi_c.dtype),
                 {"long_name": "xi_c,f", "units": "layers"}),
  ).assign_coords(frequency=np.arange(lam.size)).assign_attrs(
      kernel_size=int(kernel_size), spatial_size=int(spatial_size),
      footprint=footprint if isinstance(footprint, str) else "custom")
