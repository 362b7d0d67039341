"""Lanczos iteration for the extreme eigenvalues of a symmetric operator, with error bounds."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


def lanczos(matvec: Callable[[Array], Array], v0: Array, num_iterations: int):
  """Ritz values of a symmetric operator and their residual bounds.

  Lanczos with full reorthogonalisation (Gram-Schmidt, twice), stopping at a
  breakdown (an invariant Krylov space: later rows are zero). Returns
  ``(theta, bound)``, each ``(num_iterations,)`` ascending: for each Ritz
  value there is an eigenvalue within ``bound`` of it (Parlett 1998,
  Thm. 13.1.1: the residual ``|A y - theta y| = beta_k |s_k|``).
  """
  k, n = num_iterations, v0.shape[0]
  dtype = v0.dtype
  basis = jnp.zeros((k + 1, n), dtype).at[0].set(v0 / jnp.linalg.norm(v0))
  alphas = jnp.zeros((k,), dtype)
  betas = jnp.zeros((k,), dtype)
  tiny = jnp.finfo(dtype).tiny

  def step(j, state):
    basis, alphas, betas = state
    v = basis[j]
    w = matvec(v)
    alpha = jnp.dot(v, w)
    for _ in range(2):  # full reorthogonalisation (rows after j are still 0), twice is enough
      w = w - basis.T @ (basis @ w)
    beta = jnp.linalg.norm(w)
    # Breakdown: the Krylov space is invariant (A has rank below j + 1 on it)
    # when the residual is rounding noise, n eps |T|. Continuing from the noise
    # would make T differ from Q^T A Q (its Ritz values could then exceed the
    # largest eigenvalue), so the basis stops there: zero vectors, and zero
    # alphas and betas from then on.
    alphas = alphas.at[j].set(alpha)
    size = jnp.maximum(jnp.max(jnp.abs(alphas)), jnp.max(betas))
    ok = beta > jnp.maximum(tiny, n * jnp.finfo(dtype).eps * size)
    nxt = jnp.where(ok, w / jnp.maximum(beta, tiny), jnp.zeros_like(w))
    return basis.at[j + 1].set(nxt), alphas, betas.at[j].set(jnp.where(ok, beta, 0))

  basis, alphas, betas = jax.lax.fori_loop(0, k, step, (basis, alphas, betas))
  tri = jnp.diag(alphas) + jnp.diag(betas[:-1], 1) + jnp.diag(betas[:-1], -1)
  theta, vecs = jnp.linalg.eigh(tri)
  return theta, jnp.abs(betas[-1] * vecs[-1])
