"""Input-output Jacobians of random networks and their singular values.

For a fully-connected network ``x^l = phi(h^l)``, ``h^l = x^{l-1} W^l + b^l``
(``l = 1..L``, all layers of width ``N``; weights in Flax's kernel layout
``(fan_in, fan_out)`` as in :mod:`empirical.inits`), the input-output
Jacobian is

.. math::
  J = \\partial x^L / \\partial x^0 = \\prod_{l=L}^{1} D^l (W^l)^T, \\qquad
  D^l = \\mathrm{diag}(\\phi'(h^l))

(Pennington, Schoenholz & Ganguli 2017, Eq. 2). Dynamical isometry is the
singular values of ``J`` staying concentrated near 1 as ``L`` grows; the
theory of their density is :func:`meanfield.jacobian_spectrum`.

Three ways to look at ``J``, all for one network (``vmap``/``lax.map`` for
many), with parameters stacked as ``weights`` of shape ``(depth, N, N)``
(``h = x @ W``) and ``biases`` of shape ``(depth, N)``:

- :func:`jacobian` forms ``J`` as the explicit product of the layer factors
  ``D^l (W^l)^T`` (accumulated in a ``lax.scan``), and :func:`singular_values`
  takes its SVD. Forming ``J`` costs ``L N^3`` multiply-adds, the same as
  forward-mode ``jax.jacfwd``; on a 2-core CPU in float64 the explicit product
  was 10-25% faster than ``jax.jacfwd`` and ``jax.jacrev`` at N = 256..1000
  when networks are mapped one after the other, and vmapping the networks
  was a further 10-40% slower than ``lax.map`` there (batched matmuls run on
  one core), so many networks go through ``lax.map`` with a ``batch_size``.
- :func:`moment_estimates` estimates the moments ``tr (J J^T)^k / N`` by
  random projections (Hutchinson), with standard errors, never forming ``J``:
  ``O(k L N^2)`` per probe.
- :func:`extreme_singular_values` estimates the largest (and smallest)
  singular value by Lanczos on ``J J^T``, with a residual error bound.

The singular values of a deep Jacobian span many decades (Gaussian weights,
depth 32: ``sigma_min / sigma_max`` about 1e-19), and float32 loses the
small end (it resolves about 1e-11 of the largest). Use float64 for tails:
pass float64 arrays, with 64-bit enabled (``with jax.enable_x64(True):``).

:func:`empirical.jacobian_spectra` (:mod:`empirical.spectra`) draws many
networks at the fixed point ``q*`` and returns their spectra as an
``xarray.Dataset``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from empirical import _checks
from empirical import _products
from empirical._lanczos import lanczos
from meanfield.activations import Activation, activation as _get_activation

__all__ = [
    "output_and_derivatives",
    "jacobian",
    "singular_values",
    "moment_estimates",
    "extreme_singular_values",
    "jacobian_input",
]

Array = jax.Array


def output_and_derivatives(weights: Array, biases: Array, x: Array, *,
            activation: str | Activation | Callable) -> tuple[Array, Array]:
  """The network's output and the diagonals of ``D^l``.

  Args:
    weights: ``(depth, N, N)``, layer ``l`` maps ``h^l = x^{l-1} W^l + b^l``
      (Flax kernel layout ``(fan_in, fan_out)``).
    biases: ``(depth, N)``.
    x: the input ``x^0``, ``(N,)``.
    activation: a name from :data:`meanfield.activations.ACTIVATIONS`, an ``Activation``
      or an elementwise callable.

  Returns:
    ``(x^L, d)``: the output ``(N,)`` and ``d[l - 1] = phi'(h^l)``,
    ``(depth, N)``, in the dtype of the inputs.
  """
  _products.check_params(weights, biases, x)
  out, d, _ = _products.forward(_get_activation(activation), weights, biases, x)
  return out, d


def jacobian(weights: Array, biases: Array, x: Array, *,
             activation: str | Activation | Callable) -> Array:
  """The input-output Jacobian ``J = D^L (W^L)^T ... D^1 (W^1)^T`` of one network.

  Formed as the explicit product of the layer factors, accumulated from the
  input side in a ``lax.scan`` (Pennington et al. 2017, Eq. 2).

  Args:
    weights, biases, x, activation: as in :func:`output_and_derivatives`.

  Returns:
    ``J = d x^L / d x^0``, ``(N, N)``, in the dtype of ``weights``.
  """
  depth, _ = _products.check_params(weights, biases, x)
  jac_t, e, _ = _products.jacobian_segments(_get_activation(activation), weights, biases, x,
                                            (depth,))[0]
  return jnp.ldexp(jac_t, e).T


def singular_values(weights: Array, biases: Array, x: Array, *,
                    activation: str | Activation | Callable,
                    depths: int | Sequence[int] | None = None) -> Array:
  """Singular values of the input-output Jacobian of one network, descending.

  Args:
    weights, biases, x, activation: as in :func:`output_and_derivatives`.
    depths: ``None`` for the whole network, or increasing depths
      ``L_1 < L_2 < ...`` (each at most ``depth``): the spectra of the
      Jacobians of the network's first ``L_i`` layers, all from one pass.

  Returns:
    ``(N,)`` for ``depths=None`` (or an int), else ``(len(depths), N)``;
    sorted in descending order, in the dtype of ``weights``. Use float64 to
    resolve the small end (see the module docstring).
  """
  depth, _ = _products.check_params(weights, biases, x)
  single = depths is None or isinstance(depths, (int, np.integer))
  depths = _products.check_depths(depth if depths is None else depths, depth)
  svals = _products.svd_at_depths(_get_activation(activation), weights, biases, x, depths)[0]
  return svals[0] if single else svals


def moment_estimates(weights: Array, biases: Array, x: Array, *,
                     activation: str | Activation | Callable, key: Array,
                     n_probes: int = 32, max_order: int = 2) -> tuple[Array, Array]:
  """Moments of the eigenvalues of ``J J^T`` by random projections.

  Hutchinson's estimator with ``P = n_probes`` Gaussian probes
  ``v ~ N(0, I_N)``: ``m_k = tr (J J^T)^k / N = E_v[v^T (J J^T)^k v] / N``.
  With ``a_0 = v`` and ``a_j = J^T a_{j-1}`` (j odd) or ``J a_{j-1}`` (j
  even), ``v^T (J J^T)^k v = |a_k|^2``, so order ``k`` costs ``k`` passes
  through the network per probe and ``J`` is never formed. A single probe has
  variance ``Var(v^T A v) = 2 tr A^2``, i.e. a relative standard deviation
  ``sqrt(2 m_{2k} / N) / m_k``; the returned standard error is the sample
  standard deviation over probes divided by ``sqrt(P)``.

  Args:
    weights, biases, x, activation: as in :func:`output_and_derivatives`.
    key: PRNG key for the probes.
    n_probes: ``P >= 2``.
    max_order: the highest order ``K >= 1``.

  Returns:
    ``(moments, errors)``, each ``(K,)``: ``m_1..m_K`` and their standard
    errors, in the dtype of ``weights``.
  """
  _, width = _products.check_params(weights, biases, x)
  n_probes = _checks.check_int("n_probes", n_probes, 2)
  max_order = _checks.check_int("max_order", max_order, 1)
  _, derivs = output_and_derivatives(weights, biases, x, activation=activation)
  a = jax.random.normal(key, (width, n_probes), jnp.result_type(weights))
  e = jnp.zeros((n_probes,), jnp.int32)
  per_probe, exponents = [], []
  for k in range(1, max_order + 1):
    apply = _products.apply_jacobian_t if k % 2 else _products.apply_jacobian
    a, de = apply(weights, derivs, a)
    e = e + de
    per_probe.append(jnp.sum(a * a, axis=0) / width)     # |a_k|^2 / N = this 4^e
    exponents.append(2 * e)
  per_probe, exponents = jnp.stack(per_probe), jnp.stack(exponents)
  # On a common scale across probes (0 when nothing was rescaled), then back.
  top = jnp.max(exponents, axis=1, keepdims=True)
  common = jnp.ldexp(per_probe, exponents - top)
  return (jnp.ldexp(jnp.mean(common, axis=1), top[:, 0]),
          jnp.ldexp(jnp.std(common, axis=1, ddof=1) / math.sqrt(n_probes), top[:, 0]))


def extreme_singular_values(weights: Array, biases: Array, x: Array, *,
                            activation: str | Activation | Callable, key: Array,
                            num_iterations: int = 48) -> tuple[Array, Array]:
  """Largest and smallest singular value of ``J`` by Lanczos on ``J J^T``.

  ``num_iterations`` Lanczos steps on ``J J^T`` (each one ``J^T`` and one
  ``J`` pass through the network, ``J`` never formed) from a random start.
  The largest Ritz value ``theta_max`` is a lower bound on the largest
  eigenvalue ``sigma_max^2`` and converges fast (the top of the spectrum is
  sparse); the smallest Ritz value is an upper bound on ``sigma_min^2`` and
  converges slowly where the small end is dense (most deep Jacobians), so
  treat ``sigma_min`` as a bound unless its error is small.

  Args:
    weights, biases, x, activation: as in :func:`output_and_derivatives`.
    key: PRNG key for the start vector.
    num_iterations: Lanczos steps, ``1 <= num_iterations <= N``.

  Returns:
    ``(sigmas, errors)``, each ``(2,)``: ``(sigma_max, sigma_min)`` and the
    residual bounds on them as singular values: an eigenvalue of ``J J^T``
    lies within ``r`` of ``theta`` (Parlett 1998, Thm. 13.1.1), i.e. a
    singular value within ``r / (2 sigma)`` of ``sigma`` to first order.
  """
  _, width = _products.check_params(weights, biases, x)
  if isinstance(num_iterations, bool) or not isinstance(num_iterations, (int, np.integer)) \
      or not 1 <= num_iterations <= width:
    raise ValueError(
        f"`num_iterations` must be an integer in [1, N = {width}], got {num_iterations!r}")
  _, derivs = output_and_derivatives(weights, biases, x, activation=activation)
  return _extreme(weights, derivs, jax.random.normal(key, (width,), jnp.result_type(weights)),
                  int(num_iterations))


def _extreme(weights, derivs, v0, num_iterations):
  """:func:`extreme_singular_values` from a start vector, on the scaled operator
  ``J J^T 4^-s`` (``s`` from ``J J^T v0``; 0 when nothing needed rescaling)."""
  def gram(v):
    u, e1 = _products.apply_jacobian_t(weights, derivs, v[:, None])
    w, e2 = _products.apply_jacobian(weights, derivs, u)
    return w[:, 0], e1[0] + e2[0]

  w0, e0 = gram(v0 / jnp.linalg.norm(v0))
  s = jnp.where(jnp.abs(e0) > _products.RESCALE, e0 // 2, 0)

  def matvec(v):
    w, e = gram(v)
    return jnp.ldexp(w, e - 2 * s)

  theta, bound = lanczos(matvec, v0, num_iterations)
  ends = jnp.stack([theta[-1], theta[0]])
  end_bounds = jnp.stack([bound[-1], bound[0]])
  sigmas = jnp.sqrt(jnp.maximum(ends, 0.0))
  errors = end_bounds / (2 * jnp.maximum(sigmas, jnp.finfo(sigmas.dtype).tiny))
  return jnp.ldexp(sigmas, s), jnp.ldexp(errors, s)


# ---------------------------------------------------------------------------
# Inputs and networks.


def jacobian_input(*, key: Array, activation: str | Activation | Callable, q, width: int,
                   dtype=None) -> Array:
  """An input ``x^0 = phi(sqrt(q) z)``, ``z ~ N(0, I_N)``, as from a layer at length ``q``.

  Fed to a network with weight and bias variances ``sigma_w2``, ``sigma_b2``,
  the first pre-activation has length ``sigma_w2 E[phi(sqrt(q) z)^2] +
  sigma_b2``, which is ``q`` again when ``q = q*``: every layer is at the
  fixed point, as the theory of the spectrum assumes.

  Returns:
    ``(width,)`` in ``dtype`` (default: the default float type).
  """
  width = _checks.check_int("width", width, 1)
  q_arr = np.asarray(q)
  if q_arr.ndim != 0 or not np.isfinite(q_arr) or q_arr < 0:
    raise ValueError(f"`q` must be a finite scalar >= 0, got {q!r}")
  phi = _get_activation(activation)
  z = jax.random.normal(key, (width,), dtype or jnp.result_type(float))
  return phi(jnp.sqrt(jnp.asarray(q, z.dtype)) * z)
