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
infinite width, so the weight law does not enter here. The theory is the
architecture value :class:`Conv` (``kernel_size``, ``spatial_size``,
``footprint``): a :class:`meanfield.Network` field ``arch`` or the keyword
``arch`` of the generic functions, which call its hooks::

  net = meanfield.Network(activation="tanh", sigma_w2=1.5, sigma_b2=0.05, depth=20,
                          arch=meanfield.Conv(kernel_size=3, spatial_size=16))
  meanfield.propagate(net, covariance=cov)     # Sigma^l: .extra["covariance"]
  meanfield.depth_scales(net).xi_c             # per mode, shape (16,)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from meanfield import _checks
from meanfield._fixed_points import c_root, chi_1_at, depth_scale, q_root, q_star, xi_q
from meanfield._integrals import as_arrays, float_dtype, length_map_slope, second_moments
from meanfield.activations import Activation, activation as _activation
from meanfield.depth import DepthScales
from meanfield.fixed_points import FixedPoint
from meanfield.gaussian import bivariate_expectation
from meanfield.maps import Propagation
from meanfield.network import Architecture

__all__ = ["Conv", "FOOTPRINTS", "footprint_weights", "mode_eigenvalues", "spatial_modes"]

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
  return sig, q, c


# --- fixed point and depth scales --------------------------------------------------


# the largest covariance (batch x n x n entries) fixed_point builds: 1 GiB in float64
_MAX_COVARIANCE_ENTRIES = 2 ** 27


def _fixed_covariance(act, sigma_w2, sigma_b2, n):
  """``(q*, c*, Sigma*, converged)``: the MLP's ``q*`` and ``c*`` and ``Sigma* = q* (c* 11^T
  + (1 - c*) I)`` of shape ``batch + (n, n)``; ``c*`` is nan where ``q* = inf``."""
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
  fp, chi_c = c_root(act, sigma_w2, sigma_b2, finite_q)
  c = fp.value
  eye = jnp.eye(n, dtype=c.dtype).reshape((1,) * c.ndim + (n, n))
  cq, cc = q[..., None, None], c[..., None, None]
  cov = cq * (cc + (1 - cc) * eye)
  return q, c, chi_c, cov, q_fp.converged & fp.converged


@functools.partial(jax.jit, static_argnames=("act",))
def _q_slope(act, sigma_w2, q):
  sigma_w2, q = as_arrays(sigma_w2, q)
  return length_map_slope(act, sigma_w2, q)


def _mode_slopes(act, sigma_w2, sigma_b2, lam):
  """``(lambda_f, slope_q, slope_c)``: the per-mode slopes, mode axis last."""
  q = q_star(sigma_w2=sigma_w2, sigma_b2=sigma_b2, activation=act)
  _, chi_c = c_root(act, sigma_w2, sigma_b2, jnp.where(jnp.isinf(q), jnp.nan, q))
  slope_q = _q_slope(act, sigma_w2, q)
  lam_j = jnp.asarray(lam, chi_c.dtype)
  lam_b = lam_j.reshape((1,) * chi_c.ndim + lam_j.shape)
  return lam_j, slope_q[..., None] * lam_b, chi_c[..., None] * lam_b


def _mode_phase_diagram(ds: xr.Dataset, lam: np.ndarray) -> dict:
  """The per-mode depth scales of a phase diagram: ``1/xi_f = 1/xi - log|lambda_f|``."""
  # 1/xi_f = 1/xi - log|lambda_f|: the rates add (module docstring)
  with np.errstate(divide="ignore"):
    log_lam = np.log(np.abs(lam))
    rates = {name: 1.0 / ds[name].values[..., None] - log_lam
             for name in ("xi_q", "xi_c")}
    modes = {name: np.where(np.isnan(r), np.nan, 1.0 / r) for name, r in rates.items()}
  dims = ("sigma_w2", "sigma_b2", "frequency")
  return dict(
      eigenvalue=(("frequency",), lam, {"long_name": "lambda_f",
                                         "description": "eigenvalue of the shift average"}),
      xi_q_mode=(dims, modes["xi_q"].astype(ds.xi_q.dtype),
                 {"long_name": "xi_q,f", "units": "layers"}),
      xi_c_mode=(dims, modes["xi_c"].astype(ds.xi_c.dtype),
                 {"long_name": "xi_c,f", "units": "layers"}))


# --- the architecture ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Conv(Architecture):
  """A circular CNN (Xiao et al. 2018): the architecture value of :class:`meanfield.Network`.

  ``Network(..., arch=Conv(kernel_size=3))``, or the keyword ``arch=`` of
  :func:`meanfield.propagate`, :func:`meanfield.fixed_point`,
  :func:`meanfield.depth_scales` and :func:`meanfield.phase_diagram`, gives
  the CNN theory of the module docstring. Validated on construction
  (``ValueError`` naming the field).

  Attributes:
    kernel_size: odd ``k >= 1``.
    spatial_size: the number of positions ``n``; needed by ``fixed_point``,
      ``depth_scales`` and ``phase_diagram``. ``propagate`` reads ``n`` from
      its ``covariance`` (and checks it against ``spatial_size`` when given).
    footprint: ``"uniform"``, ``"delta"`` or ``k`` weights
      (:func:`footprint_weights`; stored as a tuple of floats, so the value
      stays hashable). ``None``: a Network's kernel scheme's footprint
      (``net.init.footprint``) where it has one, else ``"uniform"``.

  Results (``batch`` the broadcast shape of the variances, and of the
  covariance's batch axes for ``propagate``):

  - ``propagate(covariance=Sigma^0)``: a :class:`meanfield.Propagation`
    with ``q`` per position ``batch + (depth, n)``, ``c`` the correlations
    ``batch + (depth, n, n)``, ``chi_1`` per position ``batch + (depth, n)``
    (``sigma_w2 E[phi'(sqrt(q_a) z)^2]``) and ``extra={"covariance":
    Sigma^l}`` of shape ``batch + (depth, n, n)``.
  - ``fixed_point``: a :class:`meanfield.FixedPoint` whose fields are the
    MLP's (mode 0), with ``extra={"covariance": Sigma*}``, ``batch + (n, n)``.
  - ``depth_scales``: a :class:`meanfield.DepthScales` per mode, mode axis
    last (``batch + (n,)``), with ``extra={"eigenvalue": lambda_f (n,),
    "slope_q": q_map'(q*) lambda_f, "slope_c": chi_c lambda_f}``.
  - ``phase_diagram``: the MLP's Dataset plus ``eigenvalue`` over
    ``frequency`` and ``xi_q_mode``, ``xi_c_mode`` over ``("sigma_w2",
    "sigma_b2", "frequency")``.
  """

  kernel_size: int
  spatial_size: int | None = None
  footprint: str | tuple[float, ...] | None = None

  inputs = ("covariance",)

  def __post_init__(self):
    set_ = functools.partial(object.__setattr__, self)
    set_("kernel_size", _odd_size("kernel_size", self.kernel_size))
    if self.spatial_size is not None:
      set_("spatial_size", _spatial_size(self.spatial_size))
    if self.footprint is not None:
      v = footprint_weights(kernel_size=self.kernel_size, footprint=self.footprint)
      if not isinstance(self.footprint, str):
        set_("footprint", tuple(float(x) for x in v))

  @property
  def weights(self) -> np.ndarray:
    """The footprint ``v_beta`` (:func:`footprint_weights`; ``"uniform"`` where unset)."""
    return footprint_weights(kernel_size=self.kernel_size, footprint=self._footprint)

  @property
  def _footprint(self) -> str | tuple[float, ...]:
    return "uniform" if self.footprint is None else self.footprint

  def _size(self, fn: str) -> int:
    if self.spatial_size is None:
      raise ValueError(f"`spatial_size` of Conv must be given for `{fn}` (an integer >= 1, "
                       f"the number of positions), got None in {self!r}")
    return self.spatial_size

  def bind(self, network) -> Conv:
    """This Conv with the footprint of ``network.init`` (a kernel scheme) where its own is unset.

    Raises ``ValueError`` where both are set and differ (no silent override).
    """
    footprint = getattr(network.init, "footprint", None)
    if footprint is None:
      return self
    if self.footprint is None:
      return dataclasses.replace(self, footprint=footprint)
    if not np.array_equal(self.weights, footprint_weights(kernel_size=self.kernel_size,
                                                          footprint=footprint)):
      raise ValueError(
          f"`footprint` must agree with the network's kernel scheme ({footprint!r}) or be left "
          f"None, got {self.footprint!r} in {self!r}")
    return self

  def covariance_map(self, covariance: ArrayLike, *, sigma_w2: ArrayLike, sigma_b2: ArrayLike,
                     activation: Any) -> Array:
    """One layer of the CNN covariance map, ``Sigma -> sigma_w2 A(K(Sigma)) + sigma_b2`` (Xiao et al. 2018, Eq. 2.5).

    The CNN's counterpart of :func:`meanfield.q_map` and :func:`meanfield.c_map`
    together: ``covariance`` is the pre-activation covariance across positions
    ``(..., n, n)`` of layer ``l``, the result that of layer ``l + 1`` (batch
    shape broadcast with ``sigma_w2``, ``sigma_b2``; their floating dtype).
    ``covariance`` need only be symmetric with a non-negative diagonal (so a
    fixed point plus a small perturbation of either sign can be mapped;
    :func:`meanfield.propagate` requires it to be positive semi-definite).

    Example::

      arch = meanfield.Conv(kernel_size=3, spatial_size=8)
      fp = meanfield.fixed_point(sigma_w2=1.5, sigma_b2=0.05, activation="tanh", arch=arch)
      arch.covariance_map(fp.extra["covariance"], sigma_w2=1.5, sigma_b2=0.05,
                          activation="tanh")   # == fp.extra["covariance"]
    """
    act = _activation(activation)
    sigma_w2, sigma_b2 = _checks.hyperparameters(sigma_w2, sigma_b2)
    return _conv_covariance_map(act, _check_covariance(covariance), sigma_w2, sigma_b2,
                                self.weights)

  def propagate(self, act, depth, sigma_w2, sigma_b2, *, covariance):
    """Iterate the covariance map through ``depth`` layers (Xiao et al. 2018, Eq. 2.5).

    Layer 1 is affine in the input, ``Sigma^1 = sigma_w2 A(Sigma^0) + sigma_b2`` with
    ``Sigma^0_ab = x_a . x_b / C_0``; then ``Sigma^{l+1} = sigma_w2 A(K(Sigma^l)) +
    sigma_b2``. ``K`` from the activation's closed forms, else 2-D quadrature with unequal
    variances; one ``lax.scan`` over depth, compiled once per activation, depth and shape.
    ``covariance``: ``(..., n, n)``, symmetric positive semi-definite.
    """
    v = self.weights
    cov = _check_covariance(covariance, semidefinite=True)
    n = jnp.shape(cov)[-1]
    if self.spatial_size is not None and n != self.spatial_size:
      raise ValueError(f"`covariance` must be ({self.spatial_size}, {self.spatial_size}) "
                       f"across positions for {self!r}, got shape {jnp.shape(cov)}")
    sig, q, c = _conv_propagate(act, depth, cov, sigma_w2, sigma_b2, v)
    w = jnp.asarray(sigma_w2)[..., None, None]
    chi = chi_1_at(act, q, w, jnp.asarray(sigma_b2)[..., None, None])
    return Propagation(q=q, c=c, chi_1=chi, extra={"covariance": sig})

  def fixed_point(self, act, sigma_w2, sigma_b2):
    """The stable fixed point ``Sigma* = q* (c* 11^T + (1 - c*) I)``, for every footprint.

    The shift average maps ``alpha I + beta 11^T`` to itself, so the MLP's ``(q*, c*)``
    give the CNN's fixed point (Xiao et al. 2018, Sec. 2.3); it is stable where the MLP's
    is. Raises ``ValueError`` where the covariance (broadcast shape ``+ (n, n)``) would
    exceed ``2**27`` entries.
    """
    q, c, chi_c, cov, converged = _fixed_covariance(act, sigma_w2, sigma_b2,
                                                    self._size("fixed_point"))
    fields = (q, c, chi_1_at(act, q, sigma_w2, sigma_b2), chi_c, xi_q(act, sigma_w2, q),
              depth_scale(chi_c), converged)
    return FixedPoint.broadcast(*fields, extra={"covariance": cov})

  def depth_scales(self, act, sigma_w2, sigma_b2):
    """Depth scales of the covariance's Fourier modes (Xiao et al. 2018, Sec. 2.4; docs/conv.md).

    ``xi_{c,f} = -1/log|chi_c lambda_f|``: mode 0 is the MLP's ``xi_c``; every mode with
    ``|lambda_f| < 1`` stays finite at criticality. The same for the length modes with
    the q-map's slope.
    """
    lam = mode_eigenvalues(kernel_size=self.kernel_size,
                           spatial_size=self._size("depth_scales"), footprint=self._footprint)
    lam_j, sq, sc = _mode_slopes(act, sigma_w2, sigma_b2, lam)
    return DepthScales(xi_q=depth_scale(jnp.abs(sq)), xi_c=depth_scale(jnp.abs(sc)),
                       extra={"eigenvalue": lam_j, "slope_q": sq, "slope_c": sc})

  def phase_diagram(self, ds):
    """The MLP's phase diagram ``ds`` with the per-mode depth scales of the CNN.

    Adds ``xi_q_mode``, ``xi_c_mode`` (``-1/log|slope lambda_f|``) and ``eigenvalue``
    (``lambda_f``, ``f = 0..n-1``); the phase boundary is the MLP's (mode 0 carries it).
    """
    lam = mode_eigenvalues(kernel_size=self.kernel_size,
                           spatial_size=self._size("phase_diagram"), footprint=self._footprint)
    footprint = self._footprint
    return ds.assign(**_mode_phase_diagram(ds, lam)).assign_coords(
        frequency=np.arange(lam.size)).assign_attrs(
            kernel_size=self.kernel_size, spatial_size=self.spatial_size,
            footprint=footprint if isinstance(footprint, str) else "custom")
