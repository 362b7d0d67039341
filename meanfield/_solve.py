"""Root finding for the theory's fixed points: one copy, used by q*, c* and the critical line.

Elementwise on arrays (every element its own problem, solved together):

- :func:`first_sign_change`: bracket the smallest root of ``f`` on a fixed
  ladder of points (``f > 0`` below, ``f < 0`` (or ``<= 0``) at the top);
- :func:`safeguarded_newton`: refine a bracket by Newton steps that fall
  back to regula falsi or bisection when they leave it;
- :func:`implicit_step`: the implicit-function gradient
  ``dx/dp = -(df/dp)/(df/dx)`` attached to a solution, its value unchanged;
- :func:`raise_if_not_converged`: the opt-in ``throw=`` of the public solvers.

A private module: its names are meant for the other theory modules.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

#: Half-decade ladder of lengths on which q* and the critical line are bracketed.
LADDER = 10.0 ** np.arange(-12.0, 16.25, 0.5)
MAX_ITERATIONS = 60


def ladder(dtype) -> np.ndarray:
  """``0``, :data:`LADDER`, then every 4 decades up to the largest finite float of ``dtype``.

  The lengths on which ``q*`` is bracketed: a bounded activation has
  ``q* ~ sigma_w2 sup phi^2 + sigma_b2``, which may be any finite number, so
  no sign change up to the float maximum means the q-map has no fixed point
  in range (divergence, or overflow).
  """
  top = float(np.finfo(np.dtype(dtype)).max)
  far = 10.0 ** np.arange(20.0, np.log10(top), 4.0)
  return np.concatenate([[0.0], LADDER, far, [top]])


def rtol(dtype) -> float:
  """Relative step at which the solvers stop: 16 machine epsilons."""
  return 16 * float(jnp.finfo(dtype).eps)


def first_sign_change(values: Array, ladder: Array, *, strict: bool = True
                      ) -> tuple[Array, Array, Array, Array, Array]:
  """The first ladder step where ``f`` turns negative, from ``f`` tabulated on the ladder.

  Args:
    values: ``f(ladder[k])``, shape ``S + (K,)``.
    ladder: the points, shape ``(K,)``, increasing.
    strict: the sign change is ``f < 0`` (else ``f <= 0``).

  Returns:
    ``(found, lo, f_lo, hi, f_hi)`` of shape ``S``: ``hi`` the first ladder
    point with a sign change, ``lo`` the one before it (the ladder's first
    point, with its own value, where the change is at index 0). Where none is
    found, ``found`` is False and ``lo = hi`` is the last point.
  """
  neg = values < 0 if strict else values <= 0
  found = jnp.any(neg, axis=-1)
  k = jnp.argmax(neg, axis=-1)
  k = jnp.where(found, k, values.shape[-1] - 1)
  k_lo = jnp.maximum(k - 1, 0)
  take = lambda a, i: jnp.take_along_axis(a, i[..., None], axis=-1)[..., 0]
  lad = jnp.broadcast_to(ladder.reshape((1,) * (values.ndim - 1) + ladder.shape), values.shape)
  return found, take(lad, k_lo), take(values, k_lo), take(lad, k), take(values, k)


def safeguarded_newton(f_and_df: Callable[[Array], tuple[Array, Array]], lo: Array, hi: Array,
                       f_lo: Array, f_hi: Array, x0: Array, active: Array, tol: float,
                       ftol: float = 0.0, increasing: bool = False
                       ) -> tuple[Array, Array, Array]:
  """Root of a function positive at ``lo`` and negative at ``hi``, elementwise.

  ``f_and_df(x) -> (f, f')``; converged when a step or the bracket is below
  ``tol`` relative, or ``|f| <= ftol`` (the noise level of ``f``). A Newton
  step that leaves ``(lo, hi)`` is replaced by the regula-falsi point of the
  bracket, or by bisection when that stalls at an end. With
  ``increasing=True`` the signs are the other way round (``f(lo) < 0 <
  f(hi)``). Elements with ``active = False`` are left alone.

  Returns:
    ``(x, converged, iterations)``, each of the shape of ``x0``.
  """
  sign = -1.0 if increasing else 1.0

  def cond(state):
    *_, it, done = state
    return (it < MAX_ITERATIONS) & ~jnp.all(done)

  def body(state):
    lo, hi, f_lo, f_hi, x, f, df, its, it, done = state
    newton = x - f / df
    ok = (sign * df < 0) & (newton > lo) & (newton < hi)
    width = hi - lo                    # products and sums that stay finite near the float max
    falsi = lo + width * (f_lo / (f_lo - f_hi))
    falsi_ok = (falsi > lo + width / 16) & (falsi < hi - width / 16)
    x_new = jnp.where(ok, newton, jnp.where(falsi_ok, falsi, lo + width / 2))
    f_new, df_new = f_and_df(x_new)
    up = sign * f_new >= 0
    lo_new, f_lo_new = jnp.where(up, x_new, lo), jnp.where(up, f_new, f_lo)
    hi_new, f_hi_new = jnp.where(up, hi, x_new), jnp.where(up, f_hi, f_new)
    # a small step ends the search only when it is Newton's: a regula-falsi point of a bracket
    # that has not moved repeats the last point (x0 is one), which says nothing of the root
    finished = ((ok & (jnp.abs(x_new - x) <= tol * jnp.abs(x_new))) | (jnp.abs(f_new) <= ftol)
                | (hi_new - lo_new <= tol * jnp.abs(hi_new)))
    keep = lambda old, new: jnp.where(done, old, new)
    return (keep(lo, lo_new), keep(hi, hi_new), keep(f_lo, f_lo_new), keep(f_hi, f_hi_new),
            keep(x, x_new), keep(f, f_new), keep(df, df_new), keep(its, its + 1), it + 1,
            done | finished)

  f0, df0 = f_and_df(x0)
  done = ~active | (f0 == 0)
  state = (lo, hi, f_lo, f_hi, x0, f0, df0, jnp.zeros(x0.shape, jnp.int32), 0, done)
  state = jax.lax.while_loop(cond, body, state)
  x, its, done = state[4], state[7], state[9]
  return x, done, its


def implicit_step(residual: Callable[[Array], Array], x: Array, use: Array,
                  slope: Array | None = None) -> Array:
  """``x`` unchanged in value, with the implicit-function gradient of a root of ``residual``.

  For ``r(x, p) = 0`` solved by ``x``, ``dx/dp = -(dr/dp) / (dr/dx)``: returned
  as ``x - (r - stop(r)) / stop(dr/dx)``, where ``r`` is live in the
  parameters ``p`` that ``residual`` closes over. The value is exactly ``x``
  (no Newton step on a residual that is noise near a double root), and only
  the gradient flows. ``use`` selects where (elsewhere ``x``, with zero
  gradient). ``slope`` is ``dr/dx`` at ``x`` where the caller has it in closed
  form; else it comes from a forward derivative of ``residual``.
  """
  x = jax.lax.stop_gradient(x)
  safe = jnp.where(use, x, 1)
  if slope is None:
    value, slope = jax.jvp(residual, (safe,), (jnp.ones_like(safe),))
  else:
    value = residual(safe)
  slope = jax.lax.stop_gradient(slope)
  ok = use & (slope != 0) & jnp.isfinite(slope)
  correction = (value - jax.lax.stop_gradient(value)) / jnp.where(ok, slope, 1)
  return jnp.where(ok, x - correction, x)


def raise_if_not_converged(converged: Array, what: str) -> None:
  """Raise ``RuntimeError`` at run time (also under ``jit``) where a solver did not converge."""
  def check(converged):
    if not np.all(converged):
      raise RuntimeError(f"{what}: the solver did not converge at "
                         f"{int(np.size(converged) - np.sum(converged))} of "
                         f"{np.size(converged)} points")
  jax.debug.callback(check, converged)
