"""The continuation solver for the Jacobian spectrum: support, atoms and densities.

For each grid point ``lambda`` the subordination equation ``z(w) = lambda + i
eps lambda`` is solved for ``w`` by complex Newton iteration, continued in
``Im z`` from far above the real axis so that it stays on the physical branch
(:func:`_solve`); the upper edge of the support is the first minimum of real
``z(w)`` right of the support of ``x`` (:func:`_edge`); atoms come from the
law of ``x`` (:func:`_atoms`). :func:`support_batch` and
:func:`density_batch` are the jitted entry points, one compiled program per
grid size and ``n_nodes``, shared by every activation. A private module of
:mod:`meanfield.spectrum`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from meanfield._solve import rtol, safeguarded_newton
from meanfield.spectrum._law import Law
from meanfield.spectrum._transforms import log_z, log_z_real

Array = jax.Array

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
_ATOM_NOISE = (1e-3, 1e-8)
_SOLVE_BATCH = 50     # grid points solved together (see _density_one)
# Residual on log z below which a further Newton step changes nothing (float32, float64):
# the start and the polish stop there instead of taking all their steps.
_ROUNDING = (1e-6, 1e-14)  # density noise allowed next to an atom (float32, float64)


def _edge(law: Law, depth, log_sigma_w2, orthogonal, n_grid: int = 32) -> Array:
  """Upper edge ``lambda_+``: the first minimum of real ``z(w)`` right of the support of x.

  On the real axis right of the support of ``x``, ``z(w)`` is real; the
  physical branch comes in from ``w = +inf`` and the spectrum starts where
  ``dz/dw = 0``. With ``w = x_max (1 + e^s)`` the minimum is bracketed on a
  grid of ``n_grid`` points in ``s`` (``w - x_max`` from ``1e-9 x_max``, 64-bit,
  to ``1e6 x_max``; the global minimum of the grid, robust to rounding noise
  in float32 and deep networks); then the root of ``d log z / ds`` between
  the grid's neighbours of that minimum is found by the theory's safeguarded
  Newton (:func:`meanfield._solve.safeguarded_newton`, the second derivative
  by forward-mode autodiff), in real arithmetic (:func:`log_z_real`). The
  smaller of ``z`` there and the grid's minimum is the edge. ``z`` has a
  single minimum there for the laws met in practice; where it lies at the
  grid's first point (``z`` increasing from the support of ``x`` on), that
  point is the answer.
  """
  dtype = law.mid.dtype
  x_max = jnp.max(law.mid + law.half)
  s_min = -9.0 if dtype == jnp.float64 else -5.0
  grid = jnp.linspace(s_min * np.log(10.0), 6.0 * np.log(10.0), n_grid, dtype=dtype)

  def f_and_slope(s):
    e = jnp.exp(s)
    f, df = log_z_real(x_max * (1.0 + e), law, depth, log_sigma_w2, orthogonal)
    slope = df * x_max * e
    bad = ~(jnp.isfinite(f) & jnp.isfinite(slope))
    return jnp.where(bad, jnp.inf, f), jnp.where(bad, jnp.nan, slope)

  def slope_and_curvature(s):
    return jax.jvp(lambda v: f_and_slope(v)[1], (s,), (jnp.ones_like(s),))

  values, slopes = jax.vmap(f_and_slope)(grid)
  i = jnp.argmin(values)
  lo_i, hi_i = jnp.maximum(i - 1, 0), jnp.minimum(i + 1, n_grid - 1)
  # slope(lo) < 0 < slope(hi) around an interior minimum of the grid
  active = (lo_i < i) & (hi_i > i) & (slopes[lo_i] < 0) & (slopes[hi_i] > 0)
  s, _, _ = safeguarded_newton(
      slope_and_curvature, grid[lo_i], grid[hi_i], slopes[lo_i], slopes[hi_i], grid[i], active,
      rtol(dtype), increasing=True)
  return jnp.exp(jnp.minimum(values[i], jnp.where(active, f_and_slope(s)[0], jnp.inf)))


def _atoms(law: Law, depth, sigma_w2, orthogonal):
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


# Phases of the continuation (:func:`_solve`), one Newton evaluation per iteration of its loop.
_START, _STARTED, _NEXT, _LEVEL, _POLISH, _FINAL, _DONE = range(7)


def _wrap(r: Array) -> Array:
  """``r`` with its imaginary part wrapped into ``[-pi, pi]`` (``log z`` is known mod 2 pi i)."""
  return jax.lax.complex(r.real, r.imag - 2 * np.pi * jnp.round(r.imag / (2 * np.pi)))


def _newton_update(u: Array, r: Array, du: Array) -> Array:
  """``u - r/du``, shortened to keep ``Im u = arg w`` in ``(0, pi)`` (at most 90% of the way)."""
  delta = r / du
  room = jnp.where(delta.imag > 0, u.imag, np.pi - u.imag)
  shrink = jnp.minimum(1.0, 0.9 * room / jnp.maximum(jnp.abs(delta.imag), 1e-300))
  u_new = u - shrink * delta
  return jnp.where(jnp.isfinite(u_new), u_new, u)


def _solve(lam, law: Law, depth, log_sigma_w2, orthogonal, mu1, log_mean, scale,
           eps, tol):
  """Complex Newton for ``z(w) = lam + i eps lam`` on the physical branch.

  Continuation in ``Im z``: start far from the spectrum, ``z = lam + i 10 scale``
  (``scale = max(lambda_max, lam)``), where ``M_{JJ^T}(z) ~ m_1/z`` and
  ``m(w) ~ mu_1/w`` give ``w ~ mu_1 z/m_1``; Newton steps there (at most
  ``_N_START``, until the residual is at rounding level) must end within
  ``_TRACK``. Then ``eta = Im z`` is lowered to ``eps lam`` in levels of
  ``_N_STEP`` Newton steps each. Along this path ``z`` stays in the upper
  half-plane where the physical ``w(z)`` is analytic (and ``Im w > 0``), so
  the iteration cannot swap to another root where two meet at an edge of the
  support. Newton runs on ``u = log w`` (``log z`` is nearly linear in ``u``
  both far out and, at small ``lambda``, near ``w = 0``); steps are shortened
  to keep ``0 < Im u < pi``. At the last level at most ``_N_POLISH`` steps
  polish ``w``.

  The levels adapt (predictor-corrector with step control): a level is
  accepted when it ends close to its solution (``|log z - target| <
  _TRACK``), and the next step in ``log eta`` is then doubled (at most
  ``_MAX_STEP`` while ``eta > _FAR lam``, else ``_NEAR_STEP``: near the real
  axis long steps can land on another root); otherwise ``w`` returns to the
  last accepted level and the step is halved. A large residual is how a jump
  to another root, or a step too long for Newton, shows. The number of levels
  therefore follows the length of the path, ``log(10 scale/(eps lam))``;
  points that do not reach the final level within ``_N_LEVELS`` levels, or do
  not meet ``tol`` there, are flagged.

  All of it is one loop with one evaluation of ``log z(w)`` per iteration
  (:func:`_continue`); under ``vmap`` it runs until the longest path of the
  batch is done. Returns ``(w, m, |residual|, converged)``.
  """
  dtype = lam.dtype
  zero = jnp.zeros((), dtype)
  eta0 = 10.0 * scale
  total = jnp.log(eta0 / (eps * lam))   # length of the path in log eta
  u0 = jnp.log(mu1 * jax.lax.complex(lam, eta0)) - log_mean
  evaluate = lambda w: log_z(w, law, depth, log_sigma_w2, orthogonal)  # noqa: E731
  target = lambda s: jnp.log(jax.lax.complex(lam, eta0 * jnp.exp(-s)))  # noqa: E731
  # Long steps only while Im z >> Re z, where the path is far from the real axis.
  max_step = lambda s: jnp.where(  # noqa: E731
      eta0 * jnp.exp(-s) > _FAR * lam, _MAX_STEP, _NEAR_STEP)
  advance = functools.partial(_continue, evaluate=evaluate, target=target, max_step=max_step,
                              total=total, rounding=_ROUNDING[dtype == jnp.float64])
  # The state travels as three arrays (complex, real, integer), not eleven: XLA computes
  # each array of a loop's state in a fusion of its own, repeating the work they share.
  def pack(phase, k, levels, u, base, s, s_try, step, failed, r, m):
    w = jnp.exp(u)   # for the next evaluation, computed once (not in every fusion that uses it)
    return (jnp.stack([u, base, m, w]), jnp.stack([s, s_try, step, r]),
            jnp.stack([phase, k, levels, failed.astype(jnp.int32)]))

  def unpack(zc, xr, ni):
    return (ni[0], ni[1], ni[2], zc[0], zc[1], xr[0], xr[1], xr[2], ni[3] != 0, xr[3],
            zc[2]), zc[3]

  i32 = lambda v: jnp.asarray(v, jnp.int32)  # noqa: E731
  init = pack(i32(_START), i32(0), i32(0), u0, u0, zero, zero, jnp.asarray(_FIRST_STEP, dtype),
              jnp.asarray(False), jnp.asarray(jnp.inf, dtype), jnp.zeros((), u0.dtype))
  out = jax.lax.while_loop(lambda carry: carry[2][0] != _DONE,
                           lambda carry: pack(*advance(*unpack(*carry))), init)
  (_, _, _, u, _, s, _, _, failed, r, m), _ = unpack(*out)
  w = jnp.exp(u)
  converged = ((s >= total) & ~failed & (r < tol) & (w.imag > 0) & (u.imag < np.pi)
               & jnp.isfinite(m))
  return w, m, r, converged


def _continue(carry, w, *, evaluate, target, max_step, total, rounding):
  """One iteration of :func:`_solve`'s loop: evaluate ``log z`` at ``w = exp(u)``, one Newton step.

  ``carry = (phase, k, levels, u, base, s, s_try, step, failed, r, m)``: ``k``
  Newton steps taken in this phase (or level), ``base`` the ``u`` of the last
  accepted level ``s``, ``s_try`` the level being tried, ``r`` and ``m`` the
  final residual and ``m(w)``. An evaluation that ends a phase serves the
  next: the one after the start both checks it and takes the first step of
  the first level (or of the polish).
  """
  phase, k, levels, u, base, s, s_try, step, failed, r_out, m_out = carry
  f, df, m = evaluate(w)
  du = w * df
  # after the start: it must have come within _TRACK of its target
  started = phase == _STARTED
  failed = failed | (started & ~(jnp.abs(_wrap(f - target(s))) < _TRACK))
  # a new level, while any is left; else the polish
  begin = started | (phase == _NEXT)
  more = (levels < _N_LEVELS) & (s < total) & ~failed
  s_try = jnp.where(begin & more, jnp.minimum(s + step, total), s_try)
  base = jnp.where(begin, u, base)
  phase = jnp.where(begin, jnp.where(more, _LEVEL, _POLISH), phase)
  k = jnp.where(begin, 0, k) + 1
  in_level = phase == _LEVEL
  r_c = _wrap(f - target(jnp.where(in_level, s_try, s)))
  r = jnp.abs(r_c)
  u_new = _newton_update(u, r_c, du)
  # the start and the polish stop once a step's residual is at rounding level
  stop = (r < rounding) | (k >= jnp.where(phase == _START, _N_START, _N_POLISH))
  level_done = in_level & (k >= _N_STEP)
  ok = r < _TRACK                    # r: the residual before the level's last step
  accept = level_done & ok
  failed = failed | (level_done & ~ok & (step < _MIN_STEP))
  final = phase == _FINAL
  u = jnp.where(final, u, jnp.where(level_done & ~ok, base, u_new))
  s_new = jnp.where(accept, s_try, s)
  step = jnp.where(level_done, jnp.where(ok, jnp.minimum(2.0 * step, max_step(s_new)),
                                         0.5 * step), step)
  phase = jnp.where(final, _DONE, jnp.where(
      level_done, _NEXT, jnp.where(stop & (phase == _START), _STARTED,
                                   jnp.where(stop & (phase == _POLISH), _FINAL, phase))))
  levels = levels + level_done.astype(jnp.int32)
  return (phase, k, levels, u, base, s_new, s_try, step, failed,
          jnp.where(final, r, r_out), jnp.where(final, m, m_out))


def _support_one(law: Law, sigma_w2, depth, orthogonal):
  """``(lambda_max, zero_mass, atom_lambda, atom_mass)`` for one configuration."""
  lambda_max = _edge(law, depth, jnp.log(sigma_w2), orthogonal)
  return (lambda_max,) + _atoms(law, depth, sigma_w2, orthogonal)


def _density_one(law: Law, sigma_w2, depth, orthogonal, sigma, lambda_max, atom_lambda,
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
  # In batches of at most _SOLVE_BATCH neighbouring grid points: under vmap a batch iterates
  # until its longest continuation is done, and neighbours need similar numbers of levels
  # (one batch of 400 points took 1.5 times the work, on the default grid at depth 32). The
  # batches are of equal size, the grid padded with copies of its last point, so that the
  # program holds one copy of the solver (lax.map traces a remainder batch apart).
  n = lam.shape[0]
  n_batches = -(-n // _SOLVE_BATCH)
  size = -(-n // n_batches)
  padded = [jnp.concatenate([v, jnp.broadcast_to(v[-1:], (n_batches * size - n,))])
            for v in (lam, scale)]
  _, m, residual, converged = (v[:n] for v in jax.lax.map(
      lambda a: solve(a[0], scale=a[1]), tuple(padded), batch_size=size))
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
def support_batch(law, sigma_w2, depth, orthogonal):
  return jax.vmap(_support_one, in_axes=(0, 0, 0, None))(law, sigma_w2, depth, orthogonal)


@functools.partial(jax.jit, static_argnames=("n_points",))
def density_batch(law, sigma_w2, depth, orthogonal, sigma, lambda_max, atom_lambda,
                  atom_mass, eps, n_points=None):
  """``(sigma, lam, p(sigma), rho(lam), converged)`` of every configuration, each ``(B, n)``.

  ``sigma`` is a grid ``(n,)`` shared by all configurations, or None for
  ``n_points`` midpoints of a uniform grid on ``(0, 1.1 sigma_max]`` per
  configuration, ``sigma_max = sqrt(max(lambda_max, atom_lambda))``.
  """
  if sigma is None:
    top = jnp.sqrt(jnp.fmax(lambda_max, jnp.where(atom_mass > 0, atom_lambda, 0.0)))
    unit = (jnp.arange(n_points, dtype=top.dtype) + 0.5) / n_points
    sigma = 1.1 * top[:, None] * unit[None, :]
  else:
    sigma = jnp.broadcast_to(sigma[None, :], (sigma_w2.size, sigma.shape[0]))
  rho, converged = jax.vmap(_density_one, in_axes=(0, 0, 0, None, 0, 0, 0, 0, None))(
      law, sigma_w2, depth, orthogonal, sigma, lambda_max, atom_lambda, atom_mass, eps)
  return sigma, sigma * sigma, 2 * sigma * rho, rho, converged
