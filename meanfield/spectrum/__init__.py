"""Input-output Jacobian spectra of deep networks at initialization.

For a depth-``L`` network at the fixed point ``q*`` (or a given ``q``) the
input-output Jacobian is ``J = D^L W^L ... D^1 W^1`` with
``D^l = diag(phi'(h^l))`` and ``h^l ~ N(0, q)`` in every layer. Free
probability (Pennington, Schoenholz & Ganguli 2017, "Resurrecting the sigmoid
in deep learning through dynamical isometry", eq. 12; 2018, "The emergence of
spectral universality in deep networks") gives the law of the eigenvalues
``lambda`` of ``J J^T`` (the squared singular values ``sigma^2`` of ``J``)
from two ingredients: the law of ``x = phi'(sqrt(q) z)^2``, ``z ~ N(0, 1)``,
and the weight ensemble, ``init="gaussian"`` (entries
``N(0, sigma_w2 / N)``, square) or ``init="orthogonal"`` (``sqrt(sigma_w2)``
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
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from meanfield import _checks
from meanfield._fixed_points import q_root
from meanfield._integrals import float_dtype
from meanfield.activations import Activation
from meanfield.activations import activation as _activation
from meanfield.fixed_points import q_star
from meanfield.network import (MLP, Architecture, accepts_network, check_variants,
                               stationary_inputs, weight_law)
from meanfield.spectrum._law import x_law_batch, x_moments
from meanfield.spectrum._solver import density_batch, support_batch

__all__ = [
    "JacobianMoments",
    "JacobianSpectrum",
    "jacobian_moments",
    "jacobian_spectrum",
    "jacobian_spectrum_edge",
]

Array = jax.Array
ArrayLike = Any

# First S-transform coefficient of W^T W: sigma_w2 S_{W^T W}(m) = 1 + s_1 m + O(m^2).
_S1 = {"gaussian": -1.0, "orthogonal": 0.0}

DEFAULT_N_POINTS = 400
DEFAULT_N_NODES = 512

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
    lambda_max: upper edge of the support of the continuous part, ``batch``.
    q: the pre-activation variance used, ``batch``.

  Property ``sigma_max = sqrt(lambda_max)``: the largest singular value of
  ``J`` at infinite width, the quantity :func:`empirical.jacobian_spectra`
  records as ``sigma_max``.
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

  @property
  def sigma_max(self) -> Array:
    """``sqrt(lambda_max)``, the upper edge of the singular values of ``J``, ``batch``."""
    return jnp.sqrt(self.lambda_max)

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
            "sigma_max": ((), np.asarray(self.sigma_max)),
            "q": ((), np.asarray(self.q)),
        },
        coords={"sigma": sigma, "lam": ("sigma", np.asarray(self.lam))},
    )


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


def _validate(*, activation, init, sigma_w2, sigma_b2, depth, q) -> tuple[Activation, str]:
  law = weight_law(init)
  act = _activation(activation)
  _checks.check("depth", depth, lambda d: (d >= 1) & (d == np.round(d)), "an integer >= 1")
  _checks.check("sigma_w2", sigma_w2, lambda s: s > 0, "> 0 (a variance)")
  _checks.check_nonnegative("sigma_b2", sigma_b2)
  if q is not None:
    _checks.check_nonnegative("q", q)
  return act, law


def _shape(*xs) -> tuple[int, ...]:
  return np.broadcast_shapes(*(np.shape(x) for x in xs if x is not None))


def _q(act, sigma_w2, sigma_b2, q):
  """``q``, or where None ``q*`` from :func:`meanfield.q_star`'s program (``q_root``, without
  checking the hyperparameters again), shared with every theory function that needs ``q*``,
  not compiled again into this one's."""
  if q is not None:
    return q
  dtype = float_dtype(*_arguments(sigma_w2, sigma_b2))
  sigma_w2, sigma_b2 = (jnp.asarray(x, dtype) if isinstance(x, jax.Array) else np.asarray(x, dtype)
                        for x in (sigma_w2, sigma_b2))
  return q_root(act, sigma_w2, sigma_b2).value


def _configurations(act, sigma_w2, sigma_b2, depth, q):
  """Hyperparameters as flat arrays of one floating dtype, ``q`` resolved to ``q*`` if None."""
  dtype = float_dtype(sigma_w2, sigma_b2, q)
  sigma_w2, sigma_b2 = jnp.asarray(sigma_w2, dtype), jnp.asarray(sigma_b2, dtype)
  if q is None:
    q = q_star(sigma_w2=sigma_w2, sigma_b2=sigma_b2, activation=act)
  sigma_w2, sigma_b2, depth, q = jnp.broadcast_arrays(
      sigma_w2, sigma_b2, jnp.asarray(depth, dtype), jnp.asarray(q, dtype))
  return sigma_w2.ravel(), depth.ravel(), q.ravel()


# --------------------------------------------------------------------------
# Moments in closed form
# --------------------------------------------------------------------------


@accepts_network
def jacobian_moments(*, activation, sigma_w2: ArrayLike, sigma_b2: ArrayLike,
                     depth: ArrayLike, init: Any = "gaussian", q: ArrayLike | None = None,
                     q_input: ArrayLike | None = None, arch: Architecture = MLP()) -> JacobianMoments:
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
    init: the weight law, ``"gaussian"`` (i.i.d. entries, the default) or
      ``"orthogonal"``, or a scheme whose ``law`` is one of them
      (``meanfield.network.weight_law``).
    q: pre-activation variance; ``None`` uses the fixed point ``q*`` from
      ``meanfield.q_star`` (``sigma_b2`` only enters through it).
    q_input: for an architecture driven by its input (the RNN), the input's
      length (default 1 there); must be None for the MLP.
    arch: the plain :class:`meanfield.MLP` (default; its variants are not
      covered here), or another architecture value whose
      ``jacobian_moments`` hook answers. ``meanfield.RNN(sigma_u2=...)``: the
      time-step Jacobian ``dh_T / dh_{T-k}`` at ``k = depth`` steps (an array
      of lags gives each), at the stationary ``q*`` of the input's drive
      (:class:`meanfield.RNN`; docs/rnn.md).

  Returns:
    :class:`JacobianMoments` with fields of the broadcast shape of
    ``sigma_w2, sigma_b2, depth, q``, in their floating dtype. Jit-able (with
    ``activation`` and ``init`` static).

  Raises:
    ValueError: unknown ``init`` or ``activation``, ``depth`` not an integer
      >= 1, ``sigma_w2 <= 0``, ``sigma_b2 < 0`` or ``q < 0``.
  """
  act, law = _validate(activation=activation, init=init, sigma_w2=sigma_w2,
                  sigma_b2=sigma_b2, depth=depth, q=q)
  check_variants("jacobian_moments", arch)
  inputs = stationary_inputs("jacobian_moments", arch, q_input=q_input)
  if not isinstance(arch, MLP):
    return arch.jacobian_moments(act, init, sigma_w2, sigma_b2, depth, q, **inputs)
  shape = _shape(sigma_w2, sigma_b2, depth, q)
  q = _q(act, sigma_w2, sigma_b2, q)
  moments = _moments(act, _S1[law], *_arguments(sigma_w2, sigma_b2, depth, q))
  return _unflatten(moments, shape)


def _arguments(*xs):
  """Concrete arguments as NumPy arrays (lists too); traced ones as they are."""
  return tuple(x if x is None or isinstance(x, jax.Array) else np.asarray(x) for x in xs)


@functools.partial(jax.jit, static_argnames=("act", "s1"))
def _moments(act: Activation, s1: float, sigma_w2, sigma_b2, depth, q) -> JacobianMoments:
  sigma_w2, depth, q = _configurations(act, sigma_w2, sigma_b2, depth, q)
  mu1, mu2 = x_moments(act, q)
  mean = (sigma_w2 * mu1) ** depth
  relative_variance = depth * (mu2 / mu1**2 - 1.0 - s1)
  variance = mean**2 * relative_variance
  return JacobianMoments(mean=mean, second_moment=mean**2 + variance,
                         variance=variance)


@functools.partial(jax.jit, static_argnames=("act", "n_nodes"))
def _laws(act, n_nodes, orthogonal, sigma_w2, sigma_b2, depth, q):
  """The law of ``x`` of every configuration, flattened, with its hyperparameters."""
  sigma_w2, depth, q = _configurations(act, sigma_w2, sigma_b2, depth, q)
  law = x_law_batch(q, act=act, n_nodes=n_nodes)
  return law, sigma_w2, depth, q, jnp.asarray(orthogonal, q.dtype)


def _law_and_support(act, n_nodes, orthogonal, sigma_w2, sigma_b2, depth, q):
  """The law of ``x`` and the support of every configuration, flattened.

  Two programs, not one: compiled together, XLA ran the support's search
  three to four times slower (2.9 ms against 0.7 ms for tanh at depth 16,
  measured; an optimization barrier between them does not help), so the law
  is handed over as an array.
  """
  law, sigma_w2, depth, q, orthogonal = _laws(act, n_nodes, orthogonal, sigma_w2, sigma_b2,
                                               depth, q)
  return (law, sigma_w2, depth, q, orthogonal) + tuple(
      support_batch(law, sigma_w2, depth, orthogonal))


@functools.partial(jax.jit, static_argnames=("shape",))
def _reshaped(tree, shape: tuple[int, ...]):
  """Every array of ``tree`` with its leading (configuration) axis reshaped to ``shape``."""
  return jax.tree.map(lambda a: a.reshape(shape + a.shape[1:]), tree)


def _grid(sigma, dtype):
  """A given grid in ``dtype`` (NumPy where it is concrete: no program to convert it)."""
  if sigma is None or isinstance(sigma, jax.Array):
    return None if sigma is None else jnp.asarray(sigma, dtype)
  return np.asarray(sigma, dtype)


def _unflatten(tree, shape: tuple[int, ...]):
  """:func:`_reshaped`, in one small program, and only where the shape changes."""
  leaves = jax.tree.leaves(tree)
  if all(a.shape[:1] == shape for a in leaves):
    return tree
  return _reshaped(tree, shape)


@accepts_network
def jacobian_spectrum(*, activation, sigma_w2: ArrayLike, sigma_b2: ArrayLike,
                      depth: ArrayLike, init: Any = "gaussian", q: ArrayLike | None = None,
                      sigma: ArrayLike | None = None,
                      n_points: int = DEFAULT_N_POINTS,
                      n_nodes: int = DEFAULT_N_NODES,
                      eps: float | None = None) -> JacobianSpectrum:
  """Densities of the singular values of ``J`` and of the eigenvalues of ``J J^T``.

  By subordination (Pennington, Schoenholz & Ganguli 2017, eqs. 7-12; 2018):
  for each grid point ``z(w) = lambda + i eps lambda`` is solved for ``w`` by
  a complex Newton continuation on the physical branch, and
  ``rho(lambda) = -Im m(w) / (pi lambda)``, ``p(sigma) = 2 sigma
  rho(sigma^2)``. The densities are those of the continuous part smoothed over
  a relative width ``eps``; atoms are reported apart (``zero_mass``,
  ``atom_lambda``, ``atom_mass``), so ``integral p(sigma) dsigma + zero_mass +
  atom_mass = 1``. Points where the solver did not converge are ``nan`` with
  ``converged = False``. Use 64-bit for deep networks and the tails of the
  spectrum. The method, its accuracy and its cost: docs/theory.md, section
  "The density solver".

  Args:
    activation: a name from ``meanfield.activation_names()``, an
      :class:`~meanfield.activations.Activation` or a callable.
    sigma_w2, sigma_b2: weight and bias variances; arrays broadcast (the
      result gets their broadcast shape as leading ``batch`` axes).
    depth: number of layers ``L >= 1`` (integer-valued; may be an array).
    init: the weight law, ``"gaussian"`` (i.i.d. entries, the default) or
      ``"orthogonal"``, or a scheme whose ``law`` is one of them
      (``meanfield.network.weight_law``).
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
    gives an ``xarray.Dataset`` with dimension ``sigma``). With ``batch`` the
    broadcast shape of ``sigma_w2, sigma_b2, depth, q`` and ``n`` the number
    of grid points (``n_points``, or the length of ``sigma``): ``sigma``,
    ``lam``, the two densities and ``converged`` (bool) have shape
    ``(*batch, n)``; ``zero_mass``, ``atom_lambda``, ``atom_mass``,
    ``lambda_max`` and ``q`` have shape ``batch``. Floating fields are in the
    floating dtype of the hyperparameters (float32, or float64 with 64-bit
    enabled).

  Raises:
    ValueError: unknown ``init`` or ``activation``, ``depth`` not an integer
      >= 1, ``sigma_w2 <= 0``, ``sigma_b2 < 0``, ``q < 0``, ``sigma`` not 1-D
      and positive, ``n_points`` or ``n_nodes`` < 1, ``eps`` not in (0, 1).
  """
  act, law = _validate(activation=activation, init=init, sigma_w2=sigma_w2,
                  sigma_b2=sigma_b2, depth=depth, q=q)
  n_points = _checks.check_positive_int("n_points", n_points)
  n_nodes = _checks.check_positive_int("n_nodes", n_nodes)
  dtype = float_dtype(*_arguments(sigma_w2, sigma_b2, q))
  if eps is None:
    eps = 1e-7 if dtype == jnp.float64 else 1e-4
  _checks.check("eps", eps, lambda e: (e > 0) & (e < 1), "in (0, 1)")
  if sigma is not None:
    if np.ndim(_checks.real("sigma", sigma)) != 1:
      raise ValueError(f"`sigma` must be a 1-D array, got shape {np.shape(sigma)}")
    _checks.check("sigma", sigma, lambda s: s > 0, "> 0 everywhere")
  shape = _shape(sigma_w2, sigma_b2, depth, q)
  law, sw2, depth, qq, orthogonal, lambda_max, zero_mass, atom_lambda, atom_mass = (
      _law_and_support(act, n_nodes, law == "orthogonal",
                       *_arguments(sigma_w2, sigma_b2, depth, _q(act, sigma_w2, sigma_b2, q))))
  sigma, lam, p, rho, converged = density_batch(
      law, sw2, depth, orthogonal, _grid(sigma, dtype),
      lambda_max, atom_lambda, atom_mass, np.asarray(eps, dtype),
      n_points=n_points if sigma is None else None)
  result = JacobianSpectrum(
      sigma=sigma, lam=lam, singular_value_density=p, eigenvalue_density=rho,
      converged=converged, zero_mass=zero_mass, atom_lambda=atom_lambda,
      atom_mass=atom_mass, lambda_max=lambda_max, q=qq)
  return _unflatten(result, shape)


@accepts_network
def jacobian_spectrum_edge(*, activation, sigma_w2: ArrayLike, sigma_b2: ArrayLike,
                           depth: ArrayLike, init: Any = "gaussian", q: ArrayLike | None = None,
                           n_nodes: int = DEFAULT_N_NODES) -> Array:
  """Upper edge ``lambda_max`` of the eigenvalue density of ``J J^T``.

  The largest singular value of ``J`` (width to infinity) is
  ``sqrt(lambda_max)``. It is ``z(w)`` at the first stationary point
  ``dz/dw = 0`` met coming from ``w = +inf`` along the real axis right of the
  support of ``x`` (``z(w)`` as in docs/theory.md, "The density solver";
  Pennington et al. 2018). Examples: Marchenko-Pastur (linear, Gaussian, depth 1)
  ``4 sigma_w2``; Fuss-Catalan (depth L) ``sigma_w2^L (L + 1)^(L + 1) / L^L``.
  An atom away from 0 (orthogonal weights) is not part of the density and is
  not counted here (see ``JacobianSpectrum.atom_lambda``).

  Args:
    activation, sigma_w2, sigma_b2, depth, init, q: as in :func:`jacobian_moments`.
    n_nodes: as in :func:`jacobian_spectrum`.

  Returns:
    ``lambda_max`` with the broadcast shape of the hyperparameters.
  """
  act, law = _validate(activation=activation, init=init, sigma_w2=sigma_w2,
                  sigma_b2=sigma_b2, depth=depth, q=q)
  n_nodes = _checks.check_positive_int("n_nodes", n_nodes)
  shape = _shape(sigma_w2, sigma_b2, depth, q)
  out = _law_and_support(act, n_nodes, law == "orthogonal",
                         *_arguments(sigma_w2, sigma_b2, depth, _q(act, sigma_w2, sigma_b2, q)))
  return _unflatten(out[5], shape)
