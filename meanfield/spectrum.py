"""Input-output Jacobian spectra of deep networks at initialization.

For a depth-``L`` network at the fixed point ``q*`` (or a given ``q``) the
input-output Jacobian is ``J = D^L W^L ... D^1 W^1`` with
``D^l = diag(phi'(h^l))`` and ``h^l ~ N(0, q)`` in every layer. Free
probability (Pennington, Schoenholz & Ganguli 2017, "Resurrecting the sigmoid
in deep learning through dynamical isometry", eq. 12; 2018, "The emergence of
spectral universality in deep networks") gives the law of the eigenvalues
``lambda`` of ``J J^T`` (the squared singular values ``sigma^2`` of ``J``)
from two ingredients: the law of ``x = phi'(sqrt(q) z)^2``, ``z ~ N(0, 1)``,
and the weight ensemble, ``weights="gaussian"`` (entries
``N(0, sigma_w2 / N)``, square) or ``weights="orthogonal"`` (``sqrt(sigma_w2)``
times a Haar orthogonal matrix).

Transforms (2017, eqs. 7-10), for a matrix ``X`` with eigenvalue law ``rho``:
``G(z) = E[1/(z - lambda)]``, ``M(z) = z G(z) - 1 = sum_k m_k z^-k``,
``S(m) = (1 + m) / (m M^{-1}(m))``; for free ``A, B``, ``S_{AB} = S_A S_B``, so

.. math::

   S_{JJ^T} = S_{D^2}^L S_{W^T W}^L, \\qquad
   S_{W^T W} = 1/\\sigma_w^2 \\ (\\text{orthogonal}), \\quad
   1/(\\sigma_w^2 (1 + m)) \\ (\\text{Gaussian}).

:func:`jacobian_moments` gives the mean and variance of ``lambda`` in closed
form; :func:`jacobian_spectrum` the densities on a grid;
:func:`jacobian_spectrum_edge` the upper edge of the support.

64-bit: densities are computed in the default float type; enable 64-bit
(``jax.enable_x64``) for accuracy at the edges of the spectrum and for deep
networks (see :func:`jacobian_spectrum`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from meanfield import _checks
from meanfield.activations import Activation
from meanfield.activations import activation as _activation
from meanfield.gaussian import _legendre, gaussian_expectation

__all__ = [
    "WEIGHTS",
    "JacobianMoments",
    "JacobianSpectrum",
    "jacobian_moments",
    "jacobian_spectrum",
    "jacobian_spectrum_edge",
]

Array = jax.Array
ArrayLike = Any

WEIGHTS = ("gaussian", "orthogonal")
# First S-transform coefficient of W^T W: sigma_w2 S_{W^T W}(m) = 1 + s_1 m + O(m^2).
_S1 = {"gaussian": -1.0, "orthogonal": 0.0}

DEFAULT_N_POINTS = 400
DEFAULT_N_NODES = 512
_Z_MAX = 9.0          # |z| beyond which the Gaussian mass (1e-19) is dropped
_NUDGE = 1e-3         # interval ends are evaluated this fraction of a segment inside
_N_TAIL = 8          # segments the tail's equal-mass segment is cut into
_N_GAUSS = 16         # Gauss-Legendre nodes per segment for its moments of x
_N_LEVELS = 64        # most levels (accepted or not) of the continuation in Im z
_N_START = 12         # Newton steps at the first (far) level
_N_STEP = 3           # Newton steps per level
_N_POLISH = 10        # Newton steps at the final level
_TRACK = 1e-2         # largest residual allowed at the end of a level
_FIRST_STEP = 2.0     # first step of the continuation in log(Im z)
_MAX_STEP = 8.0       # longest step in log(Im z) while Im z > _FAR Re z
_NEAR_STEP = 1.0      # longest step in log(Im z) closer to the real axis
_FAR = 100.0
_MIN_STEP = 1e-3      # a level failing at a shorter step flags the point
_ATOM_NOISE = (1e-3, 1e-8)  # density noise allowed next to an atom (float32, float64)


# --------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class JacobianMoments:
  """Mean and spread of the eigenvalues ``lambda`` of ``J J^T``.

  All fields have the broadcast shape of the hyperparameters, in their
  floating dtype.

  Attributes:
    mean: ``m_1 = E[lambda] = E[sigma^2] = chi_1^L``.
    second_moment: ``m_2 = E[lambda^2]``.
    variance: ``m_2 - m_1^2``.
  """

  mean: Array
  second_moment: Array
  variance: Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class JacobianSpectrum:
  """Spectral densities of ``J`` on a grid of singular values.

  The grid has shape ``(*batch, n)`` where ``batch`` is the broadcast shape of
  the hyperparameters and ``n`` the number of grid points; per-configuration
  scalars have shape ``batch``. Densities are ``nan`` where the solver did not
  converge (``converged`` is False there), never a silently wrong number.

  Attributes:
    sigma: singular values of ``J`` (grid), ``(*batch, n)``.
    lam: eigenvalues of ``J J^T`` on the same grid, ``lam = sigma**2``.
    singular_value_density: ``p(sigma) = 2 sigma rho(sigma^2)``, density per
      unit singular value of the continuous part, ``(*batch, n)``.
    eigenvalue_density: ``rho(lambda)``, density per unit eigenvalue of the
      continuous part, ``(*batch, n)``.
    converged: bool ``(*batch, n)``: the complex Newton iteration reached its
      tolerance on the physical branch (``Im w > 0``).
    zero_mass: mass of the atom of ``J J^T`` at ``lambda = 0``,
      ``P(phi'(h) = 0)`` (ReLU 1/2, hard-tanh ``P(|h| > 1)``), ``batch``.
    atom_lambda: location of an atom away from zero, ``(sigma_w2 a)^L`` where
      ``phi'^2 = a`` with probability ``p > (L - 1)/L`` (orthogonal weights
      only: linear networks, hard-tanh at small ``q``); ``nan`` if none.
    atom_mass: its mass ``L p - (L - 1)`` (Bercovici-Voiculescu), else 0.
    lambda_max: upper edge of the support of the continuous part
      (``sigma_max = sqrt(lambda_max)``), ``batch``.
    q: the pre-activation variance used, ``batch``.
  """

  sigma: Array
  lam: Array
  singular_value_density: Array
  eigenvalue_density: Array
  converged: Array
  zero_mass: Array
  atom_lambda: Array
  atom_mass: Array
  lambda_max: Array
  q: Array

  def to_dataset(self):
    """An ``xarray.Dataset`` with dimension ``sigma`` (unbatched results only).

    Data variables ``singular_value_density``, ``eigenvalue_density`` and
    ``converged`` along ``sigma``, with ``lam`` as a coordinate; the scalars
    are data variables without dimensions.
    """
    import xarray as xr  # pylint: disable=import-outside-toplevel

    if np.ndim(self.sigma) != 1:
      raise ValueError(
          "`to_dataset` needs an unbatched spectrum (sigma of shape (n,)), got "
          f"sigma of shape {np.shape(self.sigma)}; index the batch first")
    sigma = np.asarray(self.sigma)
    return xr.Dataset(
        {
            "singular_value_density": ("sigma", np.asarray(self.singular_value_density)),
            "eigenvalue_density": ("sigma", np.asarray(self.eigenvalue_density)),
            "converged": ("sigma", np.asarray(self.converged)),
            "zero_mass": ((), np.asarray(self.zero_mass)),
            "atom_lambda": ((), np.asarray(self.atom_lambda)),
            "atom_mass": ((), np.asarray(self.atom_mass)),
            "lambda_max": ((), np.asarray(self.lambda_max)),
            "q": ((), np.asarray(self.q)),
        },
        coords={"sigma": sigma, "lam": ("sigma", np.asarray(self.lam))},
    )


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


def _check(name: str, x, ok: Callable[[np.ndarray], np.ndarray], allowed: str):
  """Raise unless ``ok(x)`` everywhere; no-op on traced values (see ``_checks``)."""
  a = _checks._concrete(x)
  if a is not None and not np.all(ok(a)):
    raise ValueError(f"`{name}` must be {allowed}, got {_checks._show(a, ~ok(a))}")


def _validate(*, activation, weights, sigma_w2, sigma_b2, depth, q) -> Activation:
  if weights not in WEIGHTS:
    raise ValueError(f"`weights` must be one of {', '.join(map(repr, WEIGHTS))}, "
                     f"got {weights!r}")
  act = _activation(activation)
  _check("depth", depth, lambda d: (d >= 1) & (d == np.round(d)), "an integer >= 1")
  _check("sigma_w2", sigma_w2, lambda s: s > 0, "> 0 (a variance)")
  _checks.check_nonnegative("sigma_b2", sigma_b2)
  if q is not None:
    _checks.check_nonnegative("q", q)
  return act


def _float_dtype(*xs):
  return jnp.result_type(*[x for x in xs if x is not None], float)


def _resolve_q(q, *, sigma_w2, sigma_b2, act: Activation, dtype) -> Array:
  """``q`` if given, else the fixed point ``q*`` of the length map."""
  if q is None:
    from meanfield import q_star  # pylint: disable=import-outside-toplevel

    q = q_star(sigma_w2=sigma_w2, sigma_b2=sigma_b2, activation=act)
    for field in ("q_star", "value"):
      if not isinstance(q, jax.Array | np.ndarray) and hasattr(q, field):
        q = getattr(q, field)
  return jnp.asarray(q, dtype)


# --------------------------------------------------------------------------
# Moments in closed form
# --------------------------------------------------------------------------


def _x_moments(act: Activation, q: Array) -> tuple[Array, Array]:
  """``mu_1 = E[phi'(sqrt(q) z)^2]`` and ``mu_2 = E[phi'(sqrt(q) z)^4]``."""
  def g(h):
    x = act.derivative(h) ** 2
    return x, x * x

  return gaussian_expectation(g, q, kinks=act.kinks)


def jacobian_moments(*, activation, sigma_w2: ArrayLike, sigma_b2: ArrayLike,
                     depth: ArrayLike, weights: str, q: ArrayLike | None = None
                     ) -> JacobianMoments:
  """Mean and variance of the eigenvalues of ``J J^T`` in closed form.

  With ``x = phi'(sqrt(q) z)^2``, ``mu_k = E[x^k]`` and ``chi_1 = sigma_w2 mu_1``:

  .. math::

     m_1 = \\chi_1^L, \\qquad
     m_2 - m_1^2 = m_1^2 \\, L \\left(\\frac{\\mu_2}{\\mu_1^2} - 1 - s_1\\right),

  ``s_1 = 0`` (orthogonal), ``-1`` (Gaussian weights).

  Derivation (Pennington, Schoenholz & Ganguli 2017, eqs. 9, 10, 12, whose
  moment expansion is the one of their eq. 18; 2018, Sec. on moments). From
  ``M(z) = m_1/z + m_2/z^2 + ...`` invert, ``M^{-1}(m) = (m_1/m)(1 + (m_2/m_1^2) m
  + O(m^2))``, so ``S(m) = (1 + m)/(m M^{-1}(m)) = (1/m_1)(1 - r m + O(m^2))``
  with ``r = (m_2 - m_1^2)/m_1^2`` the relative variance. In the product
  ``S_{JJ^T} = S_{D^2}^L S_{W^T W}^L`` the leading factors multiply and the
  first-order coefficients add: ``1/m_1 = (1/mu_1)^L (1/sigma_w2)^L`` and
  ``r_{JJ^T} = L r_{D^2} + L r_{W^T W}``, with ``r_{D^2} = mu_2/mu_1^2 - 1`` and
  ``r_{W^T W} = -s_1`` read off ``sigma_w2 S_{W^T W}(m) = 1 + s_1 m``: orthogonal
  ``S = 1/sigma_w2`` (``s_1 = 0``), Gaussian ``S = 1/(sigma_w2 (1 + m))``
  (``s_1 = -1``; the Marchenko-Pastur law has relative variance 1).
  Checks: ReLU at criticality (``sigma_w2 = 2``, ``mu_1 = mu_2 = 1/2``) has
  mean 1 and variance ``L`` (orthogonal), ``2L`` (Gaussian); a linear network
  variance 0 (orthogonal) and ``L sigma_w2^{2L}`` (Gaussian, Fuss-Catalan).

  Args:
    activation: a name from ``meanfield.activation_names()``, an
      :class:`~meanfield.activations.Activation` or a callable.
    sigma_w2, sigma_b2: weight and bias variances; arrays broadcast.
    depth: number of layers ``L >= 1`` (integer-valued; may be an array).
    weights: ``"gaussian"`` or ``"orthogonal"``.
    q: pre-activation variance; ``None`` uses the fixed point ``q*`` from
      ``meanfield.q_star`` (``sigma_b2`` only enters through it).

  Returns:
    :class:`JacobianMoments` with fields of the broadcast shape of
    ``sigma_w2, sigma_b2, depth, q``, in their floating dtype. Jit-able (with
    ``activation`` and ``weights`` static).

  Raises:
    ValueError: unknown ``weights`` or ``activation``, ``depth`` not an integer
      >= 1, ``sigma_w2 <= 0``, ``sigma_b2 < 0`` or ``q < 0``.
  """
  act = _validate(activation=activation, weights=weights, sigma_w2=sigma_w2,
                  sigma_b2=sigma_b2, depth=depth, q=q)
  dtype = _float_dtype(sigma_w2, sigma_b2, q)
  sigma_w2 = jnp.asarray(sigma_w2, dtype)
  sigma_b2 = jnp.asarray(sigma_b2, dtype)
  depth = jnp.asarray(depth, dtype)
  q = _resolve_q(q, sigma_w2=sigma_w2, sigma_b2=sigma_b2, act=act, dtype=dtype)
  sigma_w2, sigma_b2, depth, q = jnp.broadcast_arrays(sigma_w2, sigma_b2, depth, q)
  return _moments(sigma_w2, depth, q, act=act, s1=_S1[weights])


@functools.partial(jax.jit, static_argnames=("act", "s1"))
def _moments(sigma_w2, depth, q, *, act: Activation, s1: float) -> JacobianMoments:
  mu1, mu2 = _x_moments(act, q)
  mean = (sigma_w2 * mu1) ** depth
  relative_variance = depth * (mu2 / mu1**2 - 1.0 - s1)
  variance = mean**2 * relative_variance
  return JacobianMoments(mean=mean, second_moment=mean**2 + variance,
                         variance=variance)


# --------------------------------------------------------------------------
# The law of x = phi'(sqrt(q) z)^2, piecewise uniform between quantile nodes
# --------------------------------------------------------------------------


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _Law:
  """Mixture of uniform laws on ``[mid - half, mid + half]`` with weights ``mass``.

  ``half == 0`` is a point mass; all arrays have shape ``(n_segments,)``.
  """

  mid: Array
  half: Array
  mass: Array


def _intervals(act: Activation) -> list[tuple[float, float, float]]:
  """Intervals ``(a, b, sign)`` in ``h`` with ``a < b <= 0``: ``h = sign * h'``.

  They cut the real line at the activation's kinks and at 0, and are mirrored
  onto the negative half-line so every quantile is taken in a lower tail
  (precise ``ndtr``/``ndtri``).
  """
  cuts = sorted({float(k) for k in act.kinks} | {0.0})
  neg = [-np.inf] + [k for k in cuts if k < 0] + [0.0]
  pos = [-np.inf] + sorted(-k for k in cuts if k > 0) + [0.0]
  return ([(a, b, 1.0) for a, b in zip(neg[:-1], neg[1:])]
          + [(a, b, -1.0) for a, b in zip(pos[:-1], pos[1:])])


def _fractions(n: int) -> np.ndarray:
  """Ends of ``n`` segments on ``[0, 1]`` (fractions of an interval's Gaussian mass).

  Equal masses ``1/m``, except that the first is cut geometrically into
  ``r`` pieces of masses ``1/(2m), 1/(4m), ..., 2^-(r-1)/m, 2^-(r-1)/m``
  (``m = n - r + 1``, ``r = min(_N_TAIL, n)``): that end is a Gaussian
  tail (``z -> -inf``) where the law of ``x`` within one equal-mass segment
  is too skewed for a uniform law with its mean and variance.
  """
  r = min(_N_TAIL, n)
  m = n - r + 1
  tail = np.r_[0.0, 2.0 ** -np.arange(r - 1, 0, -1, dtype=np.float64)] / m
  return np.r_[tail, np.arange(1, m + 1, dtype=np.float64) / m]


def _x_law(act: Activation, q: Array, n_nodes: int) -> _Law:
  """The law of ``x = phi'(sqrt(q) z)^2`` from equal-mass segments in ``z``.

  Each of the ``k`` intervals between kinks is cut into ``n_nodes // k``
  segments of Gaussian mass (quantiles of ``z``), equal but for the one at
  the Gaussian tail, cut finer (:func:`_fractions`). On a segment the law
  of ``x`` is taken uniform with the segment's own conditional mean and
  variance of ``x`` (``_N_GAUSS``-point Gauss-Legendre in ``z`` with the
  Gaussian weight), its half-width ``sqrt(3 Var)`` capped so that it stays
  within the values of ``x`` at the segment's ends. So ``mu_1 = E[x]`` is
  exact to quadrature accuracy, and so is ``mu_2 = E[x^2]`` unless a cap
  bites. Where ``x`` is constant on a segment (the atoms of ReLU, hard-tanh,
  linear) the segment is a point mass. Stieltjes transforms of this law stay
  smooth as their argument approaches the real axis, unlike a sum of point
  masses.

  Matching the moments matters where ``x`` is nearly constant (``q`` small:
  ``x ~ 1 - 2 q z^2`` for tanh): uniform between the end values, the tail
  segment ``z < ndtri(1/n)`` (cut at ``|z| = 9``) put its mass far out in
  ``x`` and made ``Var[x]`` several times too large at ``q = 1e-3``, and with
  it the variance of the Jacobian spectrum.
  """
  dtype = q.dtype
  sqrt_q = jnp.sqrt(q)
  intervals = _intervals(act)
  n = max(n_nodes // len(intervals), 1)
  a, b, sign = (np.array(col, dtype=np.float64) for col in zip(*intervals))
  # Ends in z; 0 and -inf stay put (also for q = 0).
  za = jnp.where(a == -np.inf, -jnp.inf, jnp.asarray(a, dtype) / sqrt_q)
  zb = jnp.where(b == 0.0, 0.0, jnp.asarray(b, dtype) / sqrt_q)
  ua = jax.scipy.special.ndtr(za)[:, None]
  ub = jax.scipy.special.ndtr(zb)[:, None]
  frac = jnp.asarray(_fractions(n), dtype)[None, :]
  z = jnp.clip(jax.scipy.special.ndtri(ua + (ub - ua) * frac), -_Z_MAX, 0.0)
  signs = jnp.asarray(sign, dtype)[:, None]   # (intervals, 1)

  def x_of(zz, s):
    return act.derivative(s * sqrt_q * zz) ** 2

  # Conditional moments of x on each segment [z0, z1] (z <= 0, so the
  # Gaussian weight is largest at z1; scaled by it to stay in range).
  z0, z1 = z[:, :-1, None], z[:, 1:, None]
  t, wt = (jnp.asarray(v, dtype)[None, None, :] for v in _legendre(_N_GAUSS))
  zz = (z0 + z1) / 2 + (z1 - z0) / 2 * t
  weight = wt * jnp.exp(-(zz - z1) * (zz + z1) / 2)
  weight = weight / jnp.sum(weight, axis=-1, keepdims=True)
  xx = x_of(zz, signs[..., None])
  mean = jnp.sum(weight * xx, axis=-1)
  var = jnp.sum(weight * (xx - mean[..., None]) ** 2, axis=-1)
  # The ends of an interval are kinks: evaluate phi' just inside it.
  z = z.at[:, 0].add(_NUDGE * (z[:, 1] - z[:, 0]))
  z = z.at[:, -1].add(-_NUDGE * (z[:, -1] - z[:, -2]))
  x = x_of(z, signs)
  # Bounds of x on each segment (x need not be monotone there: GELU, SiLU).
  lo = jnp.minimum(jnp.minimum(x[:, 1:], x[:, :-1]), jnp.min(xx, axis=-1))
  hi = jnp.maximum(jnp.maximum(x[:, 1:], x[:, :-1]), jnp.max(xx, axis=-1))
  point = lo == hi
  mid = jnp.where(point, lo, jnp.clip(mean, lo, hi))
  half = jnp.where(point, 0.0, jnp.minimum(jnp.sqrt(3.0 * var),
                                           jnp.minimum(mid - lo, hi - mid)))
  mass = (ub - ua) * jnp.diff(frac, axis=-1)
  # Pad with empty segments to exactly n_nodes, so that every activation
  # shares one compiled solver.
  pad = max(n_nodes - mid.size, 0)
  return _Law(*(jnp.pad(v.ravel(), (0, pad)) for v in (mid, half, mass)))


@functools.partial(jax.jit, static_argnames=("act", "n_nodes"))
def _x_law_batch(q, *, act: Activation, n_nodes: int) -> _Law:
  return jax.vmap(lambda qq: _x_law(act, qq, n_nodes))(q)


def _atan(t: Array) -> Array:
  """``arctan`` of a real array by two half-angle reductions and a Taylor series.

  ``atan(a) = 2 atan(a/(1 + sqrt(1 + a^2)))`` twice takes ``|a| <= 1`` to
  ``|a| <= tan(pi/16) ~ 0.2``, where 12 Taylor terms give full double
  precision; ``|t| > 1`` uses ``pi/2 - atan(1/t)``. Several times faster
  than ``jnp.arctan`` on CPU, which dominates the cost of the solver.
  """
  a = jnp.abs(t)
  inverted = a > 1.0
  a = jnp.where(inverted, 1.0 / a, a)
  for _ in range(2):
    a = a / (1.0 + jnp.sqrt(1.0 + a * a))
  a2 = a * a
  acc = jnp.zeros_like(a)
  for k in range(11, -1, -1):
    acc = acc * a2 + (-1.0) ** k / (2 * k + 1)
  res = 4.0 * a * acc
  return jnp.sign(t) * jnp.where(inverted, np.pi / 2 - res, res)


def _arg(x: Array, y: Array) -> Array:
  """The angle of ``x + i y`` in ``(-pi, pi]`` (``atan2(y, x)``), via ``tan(angle/2)``."""
  r = jnp.sqrt(x * x + y * y)
  return 2.0 * _atan(jnp.where(x >= 0, y / (r + x), (r - x) / y))


def _atanh(y: Array, one_plus_y: Array, one_minus_y: Array) -> Array:
  """Principal ``atanh`` of a complex array (``y != +-1``), accurate near 0 and near ``+-1``.

  ``Re = log1p(4a / ((1 - a)^2 + b^2)) / 4`` (``|a| < 1/2``), else
  ``log(|1 + y|^2 / |1 - y|^2) / 4``; ``Im = arg((1 + y) conj(1 - y)) / 2``
  for ``y = a + i b``. ``1 +- y`` are passed in, computed without
  cancellation by the caller (next to an end of a segment ``1 +- y`` is
  small and ``1 + (+-y)`` would lose its digits).
  """
  a, b = jnp.real(y), jnp.imag(y)
  pr, pi = jnp.real(one_plus_y), jnp.imag(one_plus_y)
  qr, qi = jnp.real(one_minus_y), jnp.imag(one_minus_y)
  q2 = qr * qr + qi * qi
  re = 0.25 * jnp.where(jnp.abs(a) < 0.5, jnp.log1p(4.0 * a / q2),
                        jnp.log((pr * pr + pi * pi) / q2))
  im = 0.5 * _arg(pr * qr + pi * qi, 2.0 * b)
  return jax.lax.complex(re, im)


def _stieltjes(w: Array, law: _Law) -> tuple[Array, Array, Array]:
  """``m(w) = E[x/(w - x)]``, ``dm/dw`` and ``g(w) = E[1/(w - x)]`` (``Im w >= 0``).

  Per segment with centre ``c``, half-width ``h``: ``d = w - c``,
  ``y = h/d``, ``E[1/(w - x)] = atanh(y)/(y d) = A/d``; then
  ``E[x/(w - x)] = c A/d + (A - 1)`` (no cancellation at large ``|w|``) and
  ``d/dw = -c/(d^2 (1 - y^2)) - (1/(1 - y^2) - A)/d``; a point mass
  (``h = 0``) has ``A = 1``. The principal ``atanh(y) = (log(1 + y) -
  log(1 - y))/2`` is the right branch for ``Im w > 0`` and for real ``w`` off
  the segment (``1 +- y = (d +- h)/d`` with ``d +- h`` and ``d`` in the same
  half-plane). ``1 + m = w g`` is accurate where ``m -> -1`` (``w -> 0``, small
  ``lambda``), where ``1 + m`` itself would cancel.
  """
  inv_d = 1.0 / (w - law.mid)
  y = law.half * inv_d
  one_plus_y = (w - (law.mid - law.half)) * inv_d
  one_minus_y = (w - (law.mid + law.half)) * inv_d
  point = law.half == 0
  a = jnp.where(point, 1.0, _atanh(y, one_plus_y, one_minus_y)
                / (jnp.where(point, 1.0, law.half) * inv_d))
  inv_1my2 = 1.0 / (1.0 - y * y)
  m = law.mid * a * inv_d + (a - 1.0)
  dm = -law.mid * inv_d * inv_d * inv_1my2 - (inv_1my2 - a) * inv_d
  return (jnp.sum(law.mass * m, axis=-1), jnp.sum(law.mass * dm, axis=-1),
          jnp.sum(law.mass * a * inv_d, axis=-1))


def _log_z(w: Array, law: _Law, depth, log_sigma_w2, orthogonal: float):
  """``log z(w)`` and its derivative, with ``M_{JJ^T}(z(w)) = m(w)`` (subordination).

  Put ``m = M_{D^2}(w)``, so ``S_{D^2}(m) = (1 + m)/(m w)``; then
  ``M_{JJ^T}^{-1}(m) = (1 + m)/m * S_{D^2}(m)^-L S_{W^T W}(m)^-L``:

  ``z = (1 + m)/m * t^L`` with ``t = sigma_w2 m w/(1 + m)`` (orthogonal) or
  ``t = sigma_w2 m w`` (Gaussian), i.e.
  ``log z = (1 - L o) log(1 + m) + (L - 1) log m + L log w + L log sigma_w2``
  with ``o = 1`` (orthogonal), ``0`` (Gaussian). Logarithms keep deep
  networks in range; they are principal, so ``log z`` is known mod ``2 pi i``.
  """
  m, dm, g = _stieltjes(w[..., None], law)
  one_plus_m = w * g   # = 1 + m without cancellation as m -> -1
  c1 = 1.0 - depth * orthogonal
  f = (c1 * jnp.log(one_plus_m) + (depth - 1.0) * jnp.log(m) + depth * jnp.log(w)
       + depth * log_sigma_w2)
  df = c1 * dm / one_plus_m + (depth - 1.0) * dm / m + depth / w
  return f, df, m


def _edge(law: _Law, depth, log_sigma_w2, orthogonal, n_grid: int = 128,
          n_refine: int = 4) -> Array:
  """Upper edge ``lambda_+``: the first minimum of real ``z(w)`` right of the support of x.

  On the real axis right of the support of ``x``, ``z(w)`` is real; the
  physical branch comes in from ``w = +inf`` and the spectrum starts where
  ``dz/dw = 0``. Located as the minimum on a log grid of ``w - x_max``, then
  on finer grids around it (``n_refine`` times, each ``n_grid / 2`` times
  finer); ``z`` has a single minimum there for the laws met in practice, and
  the global minimum is robust to rounding noise (float32, deep networks).
  """
  dtype = law.mid.dtype
  cdtype = jnp.result_type(dtype, jnp.complex64)
  x_max = jnp.max(law.mid + law.half)
  s_min = -9.0 if dtype == jnp.float64 else -5.0
  unit = jnp.linspace(0.0, 1.0, n_grid, dtype=dtype)

  def f(ls):
    w = (x_max * (1.0 + jnp.exp(ls))).astype(cdtype)
    return _log_z(w, law, depth, log_sigma_w2, orthogonal)[0].real

  def refine(_, carry):
    lo, hi, best = carry
    log_s = lo + (hi - lo) * unit
    values = jax.vmap(f)(log_s)
    i = jnp.argmin(jnp.where(jnp.isnan(values), jnp.inf, values))
    best = jnp.where(jnp.isfinite(values[i]), jnp.minimum(best, values[i]), best)
    return (log_s[jnp.maximum(i - 1, 0)], log_s[jnp.minimum(i + 1, n_grid - 1)], best)

  init = (jnp.asarray(s_min * np.log(10.0), dtype), jnp.asarray(6.0 * np.log(10.0), dtype),
          jnp.asarray(jnp.inf, dtype))
  _, _, best = jax.lax.fori_loop(0, n_refine, refine, init)
  return jnp.exp(best)


def _atoms(law: _Law, depth, sigma_w2, orthogonal):
  """Atoms of ``J J^T``: at 0 with mass ``P(x = 0)``; away from 0 (orthogonal).

  For orthogonal weights ``J J^T`` is the L-fold free multiplicative
  convolution of the law of ``sigma_w2 x``, which has an atom at
  ``(sigma_w2 a)^L`` of mass ``L P(x = a) - (L - 1)`` when positive
  (Bercovici & Voiculescu 1993); the Marchenko-Pastur factor of Gaussian
  weights has none. The largest candidate atom of ``x`` is used.
  """
  point = law.half == 0
  zero_mass = jnp.sum(jnp.where(point & (law.mid == 0), law.mass, 0.0))
  same = point[:, None] & point[None, :] & (law.mid[:, None] == law.mid[None, :])
  p = jnp.where(point & (law.mid != 0), jnp.sum(jnp.where(same, law.mass[None, :], 0.0), 1), 0.0)
  k = jnp.argmax(p)
  mass = orthogonal * jnp.maximum(depth * p[k] - (depth - 1.0), 0.0)
  lam = jnp.where(mass > 0, (sigma_w2 * law.mid[k]) ** depth, jnp.nan)
  return zero_mass, lam, mass


def _solve(lam, law: _Law, depth, log_sigma_w2, orthogonal, mu1, log_mean, scale,
           eps, tol):
  """Complex Newton for ``z(w) = lam + i eps lam`` on the physical branch.

  Continuation in ``Im z``: start far from the spectrum, ``z = lam + i 10 scale``
  (``scale = max(lambda_max, lam)``),
  where ``M_{JJ^T}(z) ~ m_1/z`` and ``m(w) ~ mu_1/w`` give
  ``w ~ mu_1 z/m_1``; then lower ``eta = Im z`` to ``eps lam`` in levels,
  ``_N_STEP`` Newton steps each. Along this path ``z`` stays in the upper
  half-plane where the physical ``w(z)`` is analytic (and ``Im w > 0``), so
  the iteration cannot swap to another root where two meet at an edge of the
  support. Newton runs on ``u = log w`` (``log z`` is nearly linear in ``u``
  both far out and, at small ``lambda``, near ``w = 0``); steps are shortened
  to keep ``0 < Im u < pi``.

  The levels adapt (predictor-corrector with step control): a level is
  accepted when it ends close to its solution (``|log z - target| <
  _TRACK``), and the next step in ``log eta`` is then doubled (at most
  ``_MAX_STEP``); otherwise ``w`` returns to the last accepted level and the
  step is halved. A large residual is how a jump to another root, or a step
  too long for Newton, shows. The number of levels therefore follows the
  length of the path, ``log(10 scale/(eps lam))``, which grows without bound
  as ``lam -> 0`` (a fixed number of levels failed below
  ``sigma ~ 1e-4 sigma_max``); points that do not reach the final level
  within the iteration budget, or do not meet ``tol`` there, are flagged.

  Returns ``(w, m, |residual|, converged)``.
  """
  dtype = lam.dtype
  eta0 = 10.0 * scale
  total = jnp.log(eta0 / (eps * lam))   # length of the path in log eta

  def residual(u, s):
    w = jnp.exp(u)
    f, df, m = _log_z(w, law, depth, log_sigma_w2, orthogonal)
    r = f - jnp.log(jax.lax.complex(lam, eta0 * jnp.exp(-s)))
    # log z is known mod 2 pi i: wrap the phase of the residual.
    r = jax.lax.complex(r.real, r.imag - 2 * np.pi * jnp.round(r.imag / (2 * np.pi)))
    return r, w * df, m

  def newton(u, s):
    r, du, _ = residual(u, s)
    delta = r / du
    # Keep Im u = arg w inside (0, pi), moving at most 90% of the way to a bound.
    room = jnp.where(delta.imag > 0, u.imag, np.pi - u.imag)
    shrink = jnp.minimum(1.0, 0.9 * room / jnp.maximum(jnp.abs(delta.imag), 1e-300))
    u_new = u - shrink * delta
    return jnp.where(jnp.isfinite(u_new), u_new, u), jnp.abs(r)

  zero = jnp.zeros((), dtype)
  u = jnp.log(mu1 * jax.lax.complex(lam, eta0)) - log_mean
  u = jax.lax.fori_loop(0, _N_START, lambda _, v: newton(v, zero)[0], u)
  start_ok = jnp.abs(residual(u, zero)[0]) < _TRACK

  def max_step(s):
    # Long steps only while Im z >> Re z, where the path is far from the
    # real axis; near it, long steps can land on another root (a wrong
    # density that converges).
    return jnp.where(eta0 * jnp.exp(-s) > _FAR * lam, _MAX_STEP, _NEAR_STEP)

  def level(carry):
    i, u, s, step, failed = carry
    s_try = jnp.minimum(s + step, total)
    v = jax.lax.fori_loop(0, _N_STEP - 1, lambda _, x: newton(x, s_try)[0], u)
    v, r = newton(v, s_try)   # r: residual after _N_STEP - 1 steps
    ok = r < _TRACK
    failed = failed | ((~ok) & (step < _MIN_STEP))
    return (i + 1, jnp.where(ok, v, u), jnp.where(ok, s_try, s),
            jnp.where(ok, jnp.minimum(2.0 * step, max_step(jnp.where(ok, s_try, s))),
                      0.5 * step), failed)

  def more(carry):
    i, _, s, _, failed = carry
    return (i < _N_LEVELS) & (s < total) & ~failed

  # A while loop: under vmap it stops when the longest path of the grid is done.
  init = (0, u, zero, jnp.asarray(_FIRST_STEP, dtype), ~start_ok)
  _, u, s, _, failed = jax.lax.while_loop(more, level, init)
  u = jax.lax.fori_loop(0, _N_POLISH, lambda _, v: newton(v, s)[0], u)
  r, _, m = residual(u, s)
  r = jnp.abs(r)
  w = jnp.exp(u)
  converged = ((s >= total) & ~failed & (r < tol) & (w.imag > 0) & (u.imag < np.pi)
               & jnp.isfinite(m))
  return w, m, r, converged


def _support_one(law: _Law, sigma_w2, depth, orthogonal):
  """``(lambda_max, zero_mass, atom_lambda, atom_mass)`` for one configuration."""
  lambda_max = _edge(law, depth, jnp.log(sigma_w2), orthogonal)
  return (lambda_max,) + _atoms(law, depth, sigma_w2, orthogonal)


def _density_one(law: _Law, sigma_w2, depth, orthogonal, sigma, lambda_max, atom_lambda,
                 atom_mass, eps):
  """``(rho, converged)`` on the grid ``sigma`` for one configuration."""
  dtype = sigma.dtype
  log_sigma_w2 = jnp.log(sigma_w2)
  mu1 = jnp.sum(law.mass * law.mid)
  log_mean = depth * (log_sigma_w2 + jnp.log(mu1))
  lam = sigma * sigma
  # Each point starts its continuation at its own distance from the spectrum:
  # a grid reaching far above the support (sigma to 1e3) once started every
  # point there, and the long first steps of a point inside the support
  # could land on another root that converged (ReLU, orthogonal, L = 128).
  top = jnp.fmax(lambda_max, jnp.where(atom_mass > 0, atom_lambda, 0.0))
  scale = jnp.maximum(top, lam)
  tol = 1e-9 if dtype == jnp.float64 else 1e-4
  solve = functools.partial(
      _solve, law=law, depth=depth, log_sigma_w2=log_sigma_w2, orthogonal=orthogonal,
      mu1=mu1, log_mean=log_mean, eps=eps, tol=tol)
  _, m, residual, converged = jax.vmap(lambda l, sc: solve(l, scale=sc))(lam, scale)
  z = lam + 1j * eps * lam
  has_atom = atom_mass > 0
  m_atom = jnp.where(has_atom, atom_mass * atom_lambda / (z - atom_lambda), 0.0)
  rho = -(m - m_atom).imag / (np.pi * lam)
  # Near the atom, subtracting it cancels digits: flag where the error of m
  # (rounding, and the Newton residual on log z amplified by the pole) exceeds
  # the noise allowed (_ATOM_NOISE).
  pole = jnp.abs(z) / jnp.abs(z - jnp.where(has_atom, atom_lambda, 0.0))
  noise = ((8 * jnp.finfo(dtype).eps + residual * pole) * jnp.abs(m_atom)
           / (np.pi * lam))
  converged = converged & (noise < _ATOM_NOISE[dtype == jnp.float64])
  return jnp.where(converged, rho, jnp.nan), converged


@jax.jit
def _support_batch(law, sigma_w2, depth, orthogonal):
  return jax.vmap(_support_one, in_axes=(0, 0, 0, None))(law, sigma_w2, depth, orthogonal)


@jax.jit
def _density_batch(law, sigma_w2, depth, orthogonal, sigma, lambda_max, atom_lambda,
                   atom_mass, eps):
  return jax.vmap(_density_one, in_axes=(0, 0, 0, None, 0, 0, 0, 0, None))(
      law, sigma_w2, depth, orthogonal, sigma, lambda_max, atom_lambda, atom_mass, eps)


def _prepare(activation, sigma_w2, sigma_b2, depth, weights, q):
  act = _validate(activation=activation, weights=weights, sigma_w2=sigma_w2,
                  sigma_b2=sigma_b2, depth=depth, q=q)
  dtype = _float_dtype(sigma_w2, sigma_b2, q)
  sigma_w2 = jnp.asarray(sigma_w2, dtype)
  sigma_b2 = jnp.asarray(sigma_b2, dtype)
  q = _resolve_q(q, sigma_w2=sigma_w2, sigma_b2=sigma_b2, act=act, dtype=dtype)
  sigma_w2, sigma_b2, depth, q = jnp.broadcast_arrays(
      sigma_w2, sigma_b2, jnp.asarray(depth, dtype), q)
  return act, sigma_w2.shape, (sigma_w2.ravel(), depth.ravel(), q.ravel())





def jacobian_spectrum(*, activation, sigma_w2: ArrayLike, sigma_b2: ArrayLike,
                      depth: ArrayLike, weights: str, q: ArrayLike | None = None,
                      sigma: ArrayLike | None = None,
                      n_points: int = DEFAULT_N_POINTS,
                      n_nodes: int = DEFAULT_N_NODES,
                      eps: float | None = None) -> JacobianSpectrum:
  """Densities of the singular values of ``J`` and of the eigenvalues of ``J J^T``.

  Method (Pennington, Schoenholz & Ganguli 2017, eqs. 7-12; 2018): by
  subordination, for ``w`` off the support of ``x = phi'(sqrt(q) z)^2`` put
  ``m(w) = E[x/(w - x)] = M_{D^2}(w)``; then ``M_{JJ^T}(z(w)) = m(w)`` with

  .. math::

     z(w) = \\frac{1 + m}{m} t^L, \\qquad
     t = \\frac{\\sigma_w^2 m w}{1 + m} \\ (\\text{orthogonal}), \\quad
     t = \\sigma_w^2 m w \\ (\\text{Gaussian}),

  which is ``M^{-1}_{JJ^T} = (1 + m)/(m S_{D^2}^L S_{W^T W}^L)`` with
  ``S_{D^2}(m) = (1 + m)/(m w)``. For each grid point ``z(w) = lambda + i eps
  lambda`` is solved for ``w`` by complex Newton iteration, continued from far
  above the real axis down to ``eps lambda`` so that it stays on the physical
  branch (``Im w > 0``); then

  .. math::

     \\rho(\\lambda) = -\\frac{\\operatorname{Im} m}{\\pi \\lambda}, \\qquad
     p(\\sigma) = 2 \\sigma \\rho(\\sigma^2)

  (2017, eq. 8). The law of ``x`` is represented by ``n_nodes`` segments of
  Gaussian mass in ``z`` cut at the activation's kinks (equal masses, the
  tail's one cut finer), with ``x`` uniform on each with the segment's own
  mean and variance of ``x`` (exact for the atoms of ReLU, hard-tanh and
  linear networks; elsewhere ``E[x]`` exact and ``Var[x]`` to about 2e-4
  relative at the default ``n_nodes``, also when ``q`` is small and the law
  piles up at ``phi'(0)^2``); ``m(w)`` then stays smooth up to the real axis.

  Atoms are reported apart from the (continuous) densities: ``zero_mass`` at
  ``lambda = 0`` (``P(phi' = 0)``), and for orthogonal weights possibly one at
  ``atom_lambda`` (a linear orthogonal network is the point mass
  ``lambda = sigma_w2^L``, ``sigma = sigma_w2^(L/2)``: ``atom_mass = 1`` and the
  density is 0 on the grid). So ``integral p(sigma) dsigma + zero_mass +
  atom_mass = 1``.

  Accuracy (64-bit): the densities are those of the spectrum smoothed over a
  relative width ``eps`` (a Lorentzian of half-width ``eps lambda``), exact
  up to ``O(eps)`` except within about ``eps lambda`` of a square-root edge,
  where the error is ``O(sqrt(eps))`` (Marchenko-Pastur: 1e-7 away from the
  edges). For smooth activations add the error of the law of ``x``: its
  first two moments are kept (above), so ``E[lambda]`` is exact and
  ``Var[lambda]`` good to ~2e-4 relative; pointwise, below 1e-6 relative
  in the bulk when ``depth >= 2`` (tanh at criticality, depth 4, against
  ``n_nodes = 2048``); at depth 1 with
  orthogonal weights the density is the law of ``sigma_w2 x`` itself, a
  sum of uniform pieces of mass ``~1/n_nodes`` each within its segment's
  range (its distribution function is right to one piece's mass, ~2e-3;
  pointwise ~1-2%); and a few percent at
  the smallest singular values (``sigma`` below ~1% of ``sigma_max``), which
  come from the Gaussian tails of ``h`` that few segments resolve -- raise
  ``n_nodes`` there. Small singular values: the continuation adapts its
  steps to the length of its path, so densities converge (64-bit) down to
  ``sigma ~ 1e-30`` for tanh at criticality (orthogonal and Gaussian, depths
  4 and 32; orthogonal depth 32 to about ``1e-20``, below which ``w`` meets the
  cut-off ``|z| < 9`` of the law of ``x``). For Gaussian weights at
  ``depth >= 2`` ``p(sigma)`` diverges as ``sigma^(-(L-1)/(L+1))`` at 0, so a
  uniform grid misses mass: pass a log grid, e.g.
  ``sigma=np.geomspace(1e-16 * sigma_max, 1.1 * sigma_max, n)``, and
  integrate ``p(sigma) sigma`` in ``log sigma``; at depth 32 a few percent of
  the mass lies below ``1e-30``. Points where the Newton iteration did not reach its
  tolerance (``1e-9`` in 64-bit, ``1e-4`` in 32-bit, on ``log z``), left the
  physical branch, or lie so close to an atom that subtracting it leaves
  noise above ``1e-8`` (``1e-3`` in 32-bit), have ``converged = False`` and
  ``nan`` densities. In 32-bit, deep networks (``depth`` of order 100)
  mostly fail to converge: use 64-bit for them and for the tails.

  Cost: about ``(20 + 3 n_levels) n_points n_nodes`` complex evaluations per
  configuration, ``n_levels`` the longest continuation on the grid (about 25
  for the default grid, up to 64 for ``sigma`` down to ``1e-30``; about 1-2 s
  on one CPU core for the defaults in 64-bit); one compiled
  program serves every activation with the same ``n_points`` and ``n_nodes``.

  Args:
    activation: a name from ``meanfield.activation_names()``, an
      :class:`~meanfield.activations.Activation` or a callable.
    sigma_w2, sigma_b2: weight and bias variances; arrays broadcast (the
      result gets their broadcast shape as leading ``batch`` axes).
    depth: number of layers ``L >= 1`` (integer-valued; may be an array).
    weights: ``"gaussian"`` or ``"orthogonal"``.
    q: pre-activation variance; ``None`` uses ``meanfield.q_star``.
    sigma: 1-D array of singular values ``> 0`` shared by all configurations;
      ``None`` gives ``n_points`` midpoints of a uniform grid on
      ``(0, 1.1 sigma_max]`` per configuration, with
      ``sigma_max = sqrt(max(lambda_max, atom_lambda))``.
    n_points: number of grid points when ``sigma`` is None.
    n_nodes: number of segments representing the law of ``x``.
    eps: relative imaginary part; default ``1e-7`` in 64-bit, ``1e-4`` in 32-bit.

  Returns:
    A :class:`JacobianSpectrum` (frozen pytree dataclass; ``.to_dataset()``
    gives an ``xarray.Dataset`` with dimension ``sigma``), in the floating
    dtype of the hyperparameters.

  Raises:
    ValueError: unknown ``weights`` or ``activation``, ``depth`` not an integer
      >= 1, ``sigma_w2 <= 0``, ``sigma_b2 < 0``, ``q < 0``, ``sigma`` not 1-D
      and positive, ``n_points`` or ``n_nodes`` < 1, ``eps`` not in (0, 1).
  """
  act, shape, (sw2, depth, qq) = _prepare(activation, sigma_w2, sigma_b2, depth,
                                          weights, q)
  n_points = _checks.check_positive_int("n_points", n_points)
  n_nodes = _checks.check_positive_int("n_nodes", n_nodes)
  dtype = sw2.dtype
  if eps is None:
    eps = 1e-7 if dtype == jnp.float64 else 1e-4
  _check("eps", eps, lambda e: (e > 0) & (e < 1), "in (0, 1)")
  if sigma is not None:
    if np.ndim(sigma) != 1:
      raise ValueError(f"`sigma` must be a 1-D array, got shape {np.shape(sigma)}")
    _check("sigma", sigma, lambda s: s > 0, "> 0 everywhere")
    sigma = jnp.asarray(sigma, dtype)
  law = _x_law_batch(qq, act=act, n_nodes=n_nodes)
  orthogonal = jnp.asarray(weights == "orthogonal", dtype)
  lambda_max, zero_mass, atom_lambda, atom_mass = _support_batch(law, sw2, depth, orthogonal)
  if sigma is None:
    top = jnp.sqrt(jnp.fmax(lambda_max, jnp.where(atom_mass > 0, atom_lambda, 0.0)))
    sigma = 1.1 * top[:, None] * ((jnp.arange(n_points, dtype=dtype) + 0.5) / n_points)[None, :]
  else:
    sigma = jnp.broadcast_to(sigma[None, :], (sw2.size,) + sigma.shape)
  rho, converged = _density_batch(law, sw2, depth, orthogonal, sigma, lambda_max,
                                  atom_lambda, atom_mass, jnp.asarray(eps, dtype))
  result = JacobianSpectrum(
      sigma=sigma, lam=sigma * sigma, singular_value_density=2 * sigma * rho,
      eigenvalue_density=rho, converged=converged, zero_mass=zero_mass,
      atom_lambda=atom_lambda, atom_mass=atom_mass, lambda_max=lambda_max, q=qq)
  return jax.tree.map(lambda a: a.reshape(shape + a.shape[1:]), result)


def jacobian_spectrum_edge(*, activation, sigma_w2: ArrayLike, sigma_b2: ArrayLike,
                           depth: ArrayLike, weights: str, q: ArrayLike | None = None,
                           n_nodes: int = DEFAULT_N_NODES) -> Array:
  """Upper edge ``lambda_max`` of the eigenvalue density of ``J J^T``.

  The largest singular value of ``J`` (width to infinity) is
  ``sqrt(lambda_max)``. It is ``z(w)`` at the first stationary point
  ``dz/dw = 0`` met coming from ``w = +inf`` along the real axis right of the
  support of ``x`` (see :func:`jacobian_spectrum` for ``z(w)``; Pennington et
  al. 2018). Examples: Marchenko-Pastur (linear, Gaussian, depth 1)
  ``4 sigma_w2``; Fuss-Catalan (depth L) ``sigma_w2^L (L + 1)^(L + 1) / L^L``.
  An atom away from 0 (orthogonal weights) is not part of the density and is
  not counted here (see ``JacobianSpectrum.atom_lambda``).

  Args: as :func:`jacobian_moments`, plus ``n_nodes`` as in
    :func:`jacobian_spectrum`.

  Returns:
    ``lambda_max`` with the broadcast shape of the hyperparameters.
  """
  act, shape, (sw2, depth, qq) = _prepare(activation, sigma_w2, sigma_b2, depth,
                                          weights, q)
  n_nodes = _checks.check_positive_int("n_nodes", n_nodes)
  law = _x_law_batch(qq, act=act, n_nodes=n_nodes)
  orthogonal = jnp.asarray(weights == "orthogonal", sw2.dtype)
  return _support_batch(law, sw2, depth, orthogonal)[0].reshape(shape)
