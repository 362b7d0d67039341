"""Gaussian expectations on fixed quadrature grids.

Baseline implementation (probabilists' Gauss-Hermite); the public signatures
below are what the rest of the package calls.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["gaussian_expectation", "bivariate_expectation"]

Array = jax.Array
DEFAULT_DEGREE = 101


def _hermite_e(degree: int, dtype) -> tuple[Array, Array]:
  """Nodes and weights of the standard normal measure (weights sum to 1)."""
  z, w = np.polynomial.hermite_e.hermegauss(degree)
  return jnp.asarray(z, dtype), jnp.asarray(w / np.sqrt(2 * np.pi), dtype)


def gaussian_expectation(g: Callable[[Array], Array], q, *, kinks=(),
                         degree: int = DEFAULT_DEGREE) -> Array:
  """``E_z[g(sqrt(q) z)]`` for ``z ~ N(0, 1)``.

  Args:
    g: elementwise ``jax.numpy`` function of the pre-activation ``h``.
    q: variance of ``h``; any shape, ``q >= 0``.
    kinks: points in ``h`` where ``g`` is not smooth (used by refined rules).
    degree: number of quadrature nodes.

  Returns:
    An array of ``jnp.shape(q)``, in the floating dtype of ``q``.
  """
  del kinks
  q = jnp.asarray(q)
  dtype = jnp.result_type(q.dtype, jnp.float32)
  z, w = _hermite_e(degree, dtype)
  h = jnp.sqrt(q)[..., None] * z
  return jnp.sum(w * g(h), axis=-1)


def bivariate_expectation(g: Callable[[Array, Array], Array], q11, q22, q12, *,
                          kinks=(), degree: int = DEFAULT_DEGREE) -> Array:
  """``E[g(u1, u2)]`` for ``(u1, u2)`` centred Gaussian with covariance ``[[q11, q12], [q12, q22]]``.

  ``u1 = sqrt(q11) z1``, ``u2 = sqrt(q22) (c z1 + sqrt(1 - c^2) z2)``,
  ``c = q12 / sqrt(q11 q22)``. Result has the broadcast shape of the inputs.
  """
  del kinks
  q11, q22, q12 = jnp.broadcast_arrays(*map(jnp.asarray, (q11, q22, q12)))
  dtype = jnp.result_type(q11.dtype, jnp.float32)
  z, w = _hermite_e(degree, dtype)
  c = q12 / jnp.sqrt(q11 * q22)
  s = jnp.sqrt(jnp.clip(1 - c * c, 0.0, None))
  z1 = z[:, None]
  z2 = z[None, :]
  u1 = jnp.sqrt(q11)[..., None, None] * z1
  u2 = jnp.sqrt(q22)[..., None, None] * (c[..., None, None] * z1 + s[..., None, None] * z2)
  return jnp.sum(w[:, None] * w[None, :] * g(u1, u2), axis=(-2, -1))
