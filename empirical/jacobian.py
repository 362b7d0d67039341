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

:func:`jacobian_spectra` draws many networks at the fixed point ``q*`` and
returns their spectra as an ``xarray.Dataset``.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from empirical import _checks
from empirical import _grid
from empirical import description
from empirical import devices as _devices
from empirical import engine
from empirical import models as _models
from empirical import streams
from empirical.engine import DEFAULT_MEMORY_BUDGET, SWEPT
from meanfield.activations import Activation, activation as _get_activation

__all__ = [
    "output_and_derivatives",
    "jacobian",
    "singular_values",
    "moment_estimates",
    "extreme_singular_values",
    "jacobian_input",
    "jacobian_spectra",
    "density_l1",
    "SWEPT",
]

Array = jax.Array


# ---------------------------------------------------------------------------
# Validation.


def _check_params(weights, biases, x) -> tuple[int, int]:
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


def _check_depths(depths, depth: int) -> tuple[int, ...]:
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


# ---------------------------------------------------------------------------
# One network.


def _value_and_derivative(phi: Activation, h: Array) -> tuple[Array, Array]:
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
_RESCALE = 32


def _rescale(v: Array, axis=None) -> tuple[Array, Array]:
  """``(v 2^-e, e)`` with ``e`` int32 over ``axis`` (kept): 0 unless ``max |v|`` is
  outside ``[2^-_RESCALE, 2^_RESCALE]``, else the exponent of ``max |v|``."""
  m = jnp.max(jnp.abs(v), axis=axis, keepdims=True)
  usable = jnp.isfinite(m) & (m > 0)
  e = jnp.frexp(jnp.where(usable, m, jnp.ones_like(m)))[1]
  limit = jnp.finfo(v.dtype).maxexp - 2
  e = jnp.where(usable & (jnp.abs(e) > _RESCALE), jnp.clip(e, -limit, limit), 0)
  return v * jnp.ldexp(jnp.ones_like(e, v.dtype), -e), e


def _first_nonfinite(h_finite: Array) -> Array:
  """First layer (1-based) whose ``h`` is not finite, along axis 0; 0 if none."""
  bad = ~h_finite
  return jnp.where(jnp.any(bad, axis=0), jnp.argmax(bad, axis=0) + 1, 0).astype(jnp.int32)


def output_and_derivatives(weights: Array, biases: Array, x: Array, *,
            activation: str | Activation | Callable) -> tuple[Array, Array]:
  """The network's output and the diagonals of ``D^l``.

  Args:
    weights: ``(depth, N, N)``, layer ``l`` maps ``h^l = x^{l-1} W^l + b^l``
      (Flax kernel layout ``(fan_in, fan_out)``).
    biases: ``(depth, N)``.
    x: the input ``x^0``, ``(N,)``.
    activation: a name from :data:`meanfield.ACTIVATIONS`, an ``Activation``
      or an elementwise callable.

  Returns:
    ``(x^L, d)``: the output ``(N,)`` and ``d[l - 1] = phi'(h^l)``,
    ``(depth, N)``, in the dtype of the inputs.
  """
  _check_params(weights, biases, x)
  out, d, _ = _forward(_get_activation(activation), weights, biases, x)
  return out, d


def _forward(phi: Activation, weights, biases, x):
  """``(x^L, d, finite)``: :func:`output_and_derivatives`'s results and whether each ``h^l`` is finite."""
  def layer(x, wb):
    w, b = wb
    h = x @ w + b
    y, d = _value_and_derivative(phi, h)
    return y, (d, jnp.all(jnp.isfinite(h)))

  out, (d, finite) = jax.lax.scan(layer, x, (weights, biases))
  return out, d, finite


def _jacobian_segments(phi: Activation, weights, biases, x, depths: tuple[int, ...]):
  """``(J^T 2^-e, e, first)`` after each depth in ``depths``, one pass.

  Accumulates ``J^T <- J^T W^l D^l``, which keeps the weights in their
  ``(fan_in, fan_out)`` layout (no transposed matmul per layer), rescaled by
  powers of two (see ``_RESCALE``): ``J^T`` is the first of the triple
  times ``2^e`` (``e`` int32). ``first`` is the first layer whose ``h^l`` is
  not finite (0: none up to that depth).
  """
  h = x @ weights[0] + biases[0]
  x, d = _value_and_derivative(phi, h)
  jac_t, e = _rescale(weights[0] * d[None, :])
  e = e[0, 0]
  first = jnp.where(jnp.all(jnp.isfinite(h)), 0, 1).astype(jnp.int32)

  def layer(carry, wbl):
    x, jac_t, e, first = carry
    w, b, l = wbl
    h = x @ w + b
    y, d = _value_and_derivative(phi, h)
    jac_t, de = _rescale((jac_t @ w) * d[None, :])
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
  depth, _ = _check_params(weights, biases, x)
  jac_t, e, _ = _jacobian_segments(_get_activation(activation), weights, biases, x, (depth,))[0]
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
  depth, _ = _check_params(weights, biases, x)
  single = depths is None or isinstance(depths, (int, np.integer))
  depths = _check_depths(depth if depths is None else depths, depth)
  svals = _svd_at_depths(_get_activation(activation), weights, biases, x, depths)[0]
  return svals[0] if single else svals


def _apply_jacobian(weights: Array, derivs: Array, v: Array) -> tuple[Array, Array]:
  """``J v`` for ``v`` of shape ``(N, P)``: ``v <- D^l (W^l)^T v`` for l = 1..L.

  Returns ``(u, e)``: ``J v = u 2^e`` per column (``e`` int32 ``(P,)``, see ``_RESCALE``).
  """
  def layer(carry, wd):
    v, e = carry
    w, d = wd
    v, de = _rescale(d[:, None] * (w.T @ v), axis=0)
    return (v, e + de[0]), None
  return jax.lax.scan(layer, (v, jnp.zeros(v.shape[1:], jnp.int32)), (weights, derivs))[0]


def _apply_jacobian_t(weights: Array, derivs: Array, u: Array) -> tuple[Array, Array]:
  """``J^T u`` for ``u`` of shape ``(N, P)``: ``u <- W^l D^l u`` for l = L..1; as
  :func:`_apply_jacobian`, ``(v, e)`` with ``J^T u = v 2^e`` per column."""
  def layer(carry, wd):
    u, e = carry
    w, d = wd
    u, de = _rescale(w @ (d[:, None] * u), axis=0)
    return (u, e + de[0]), None
  return jax.lax.scan(layer, (u, jnp.zeros(u.shape[1:], jnp.int32)), (weights, derivs),
                      reverse=True)[0]


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
  _, width = _check_params(weights, biases, x)
  n_probes = _checks.check_int("n_probes", n_probes, 2)
  max_order = _checks.check_int("max_order", max_order, 1)
  _, derivs = output_and_derivatives(weights, biases, x, activation=activation)
  a = jax.random.normal(key, (width, n_probes), jnp.result_type(weights))
  e = jnp.zeros((n_probes,), jnp.int32)
  per_probe, exponents = [], []
  for k in range(1, max_order + 1):
    a, de = (_apply_jacobian_t if k % 2 else _apply_jacobian)(weights, derivs, a)
    e = e + de
    per_probe.append(jnp.sum(a * a, axis=0) / width)     # |a_k|^2 / N = this 4^e
    exponents.append(2 * e)
  per_probe, exponents = jnp.stack(per_probe), jnp.stack(exponents)
  # On a common scale across probes (0 when nothing was rescaled), then back.
  top = jnp.max(exponents, axis=1, keepdims=True)
  common = jnp.ldexp(per_probe, exponents - top)
  return (jnp.ldexp(jnp.mean(common, axis=1), top[:, 0]),
          jnp.ldexp(jnp.std(common, axis=1, ddof=1) / math.sqrt(n_probes), top[:, 0]))


def _lanczos(matvec: Callable[[Array], Array], v0: Array, num_iterations: int):
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
  _, width = _check_params(weights, biases, x)
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
    u, e1 = _apply_jacobian_t(weights, derivs, v[:, None])
    w, e2 = _apply_jacobian(weights, derivs, u)
    return w[:, 0], e1[0] + e2[0]

  w0, e0 = gram(v0 / jnp.linalg.norm(v0))
  s = jnp.where(jnp.abs(e0) > _RESCALE, e0 // 2, 0)

  def matvec(v):
    w, e = gram(v)
    return jnp.ldexp(w, e - 2 * s)

  theta, bound = _lanczos(matvec, v0, num_iterations)
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


# ---------------------------------------------------------------------------
# Many networks: a labelled Dataset.

METHODS = ("svd", "projection")


#: The input length standing for the limit q -> 0+ where q* = 0 (see :func:`_fixed_point_q`).
Q_LIMIT = 1e-6


def _fixed_point_q(act: Activation, settings: list[tuple[float, float]]) -> np.ndarray:
  """``q*`` of each ``(sigma_w2, sigma_b2)`` from :func:`meanfield.q_star` (float64), > 0.

  Where ``q* = 0`` (ordered, no bias; ReLU at the He point ``(2, 0)``, where
  every length is fixed and ``meanfield`` reports 0) the theory is the limit
  ``q -> 0+``; inputs of length 0 would make every ReLU derivative 0. The
  networks get ``q = Q_LIMIT`` instead: a ReLU network without bias is
  scale-free (any length gives the same Jacobians), and a smooth activation
  is then in its linear regime (``phi'(h)^2`` within about ``1e-6`` of
  ``phi'(0)^2``).
  """
  from meanfield import q_star  # pylint: disable=import-outside-toplevel
  sw2, sb2 = np.array(settings, np.float64).T
  with jax.enable_x64(True):
    values = np.asarray(q_star(sigma_w2=sw2, sigma_b2=sb2, activation=act), np.float64)
  bad = ~np.isfinite(values)
  if np.any(bad):
    i = int(np.argmax(bad))
    raise ValueError(
        f"`q` must be given for activation {act.name!r} at sigma_w2={sw2[i]}, "
        f"sigma_b2={sb2[i]}: the length map has no finite fixed point there "
        f"(meanfield.q_star = {values[i]})")
  return np.where(values > 0, values, Q_LIMIT)


def _stacked(params: _models.Params) -> tuple[Array, Array]:
  """``(weights (L, N, N), biases (L, N))`` of a square MLP's :class:`Params`."""
  return (jnp.concatenate([params.w_in[None], params.w]),
          jnp.concatenate([params.b_in[None], params.b]))


@functools.partial(jax.jit, static_argnames=(
    "act", "scheme", "width", "depths", "method", "max_order", "n_probes",
    "num_iterations", "batch_size"))
def _compute(idx, key, ws, bs, qs, *, act, scheme, width, depths, method, max_order,
             n_probes, num_iterations, batch_size):
  """Networks ``idx`` of one (activation, init, width): all settings, all depths.

  Item ``i`` is network ``i`` (key ``fold_in(key, i)``); its standard draw is
  shared by every ``(sigma_w2, sigma_b2)`` setting (common random numbers).
  ``ws``, ``bs``: ``(settings, L)`` layer scales; ``qs``: ``(settings,)``.
  Module-level and jitted on static arguments, so repeated calls reuse the
  compiled program.
  """
  depth = depths[-1]
  dtype = ws.dtype

  def one_setting(std, z, k, w_scale, b_scale, q):
    weights, biases = _stacked(_models.scale_params(std, w_scale, b_scale))
    x = act(jnp.sqrt(q) * z)
    if method == "svd":
      sv, powers, first = _svd_at_depths(act, weights, biases, x, depths, max_order)
      return {"singular_values": sv, "moment": powers, "sigma_max": sv[:, 0],
              "first_nonfinite": first}
    finite = _forward(act, weights, biases, x)[2]
    out = {"moment": [], "moment_error": [], "sigma_max": [], "sigma_max_error": [],
           "sigma_min": [], "sigma_min_error": [],
           "first_nonfinite": [_first_nonfinite(finite[:d]) for d in depths]}
    for d in depths:
      m, e = moment_estimates(weights[:d], biases[:d], x, activation=act,
                              key=jax.random.fold_in(k, streams.HUTCHINSON), n_probes=n_probes,
                              max_order=max_order)
      s, se = extreme_singular_values(weights[:d], biases[:d], x, activation=act,
                                      key=jax.random.fold_in(k, streams.LANCZOS),
                                      num_iterations=num_iterations)
      for name, v in (("moment", m), ("moment_error", e), ("sigma_max", s[0]),
                      ("sigma_max_error", se[0]), ("sigma_min", s[1]),
                      ("sigma_min_error", se[1])):
        out[name].append(v)
    return {name: jnp.stack(v) for name, v in out.items()}

  def item(seed):
    k = _models.network_key(key, seed)
    std = _models.standard_params(k, in_features=width, width=width, depth=depth,
                                  init=scheme, dtype=dtype)
    z = jax.random.normal(jax.random.fold_in(k, streams.JACOBIAN_INPUT), (width,), dtype)
    return jax.lax.map(lambda a: one_setting(std, z, k, *a), (ws, bs, qs))

  return jax.lax.map(item, idx, batch_size=batch_size)


def _svd_at_depths(act, weights, biases, x, depths, max_order: int = 0):
  """``(singular values, moments, first_nonfinite)`` of ``J`` at each depth.

  The SVD runs on the rescaled ``J`` and the singular values and moments
  ``mean(sigma^(2k))``, ``k = 1..max_order``, are scaled back at the end,
  so they are inf only where their values are beyond the dtype's range.
  """
  svs, moments, firsts = [], [], []
  for jac_t, e, first in _jacobian_segments(act, weights, biases, x, depths):
    sv = jnp.linalg.svd(jac_t, compute_uv=False)
    lam = sv * sv
    svs.append(jnp.ldexp(sv, e))
    moments.append(jnp.stack([jnp.ldexp(jnp.mean(lam ** k, axis=-1), 2 * k * e)
                              for k in range(1, max_order + 1)], -1) if max_order else lam[:0])
    firsts.append(first)
  return jnp.stack(svs), jnp.stack(moments), jnp.stack(firsts)


@description.takes_network()
def jacobian_spectra(key: Array, *, network=None, activation="tanh", width=256, depth=10, sigma_w2=None,
                     sigma_b2=0.0, init="gaussian", n_seeds: int = 1, q=None,
                     method: str = "svd", max_order: int = 2, n_probes: int = 32,
                     num_iterations: int = 48, chunk_size: int | None = None,
                     batch_size: int | None = None,
                     memory_budget: int = DEFAULT_MEMORY_BUDGET,
                     store: str | os.PathLike | None = None, progress: bool = True,
                     dtype=None, devices: _devices.Devices = None) -> xr.Dataset:
  """Input-output Jacobian spectra of many random networks, as a labelled Dataset.

  Networks are square MLPs (:mod:`empirical.models`, ``in_features = width``,
  no readout) with input ``x^0 = phi(sqrt(q) z)``: with ``q = q*`` every
  layer is at the fixed point, as in the theory
  (:func:`meanfield.jacobian_spectrum`).

  Any of ``activation``, ``init``, ``width``, ``depth``, ``sigma_w2`` and
  ``sigma_b2`` may be a list; the grid is their Cartesian product, a list
  makes a dimension (as in :func:`empirical.sweep`). Seeds, settings and
  depths never loop in Python:

  - network ``i`` has key ``fold_in(key, i)`` and the parameters of
    :func:`empirical.models.standard_params` (layer ``l``'s weights depend on
    ``(i, l)`` only); its input noise ``z`` comes from ``fold_in(k_i, JACOBIAN_INPUT)``,
    its probes from ``fold_in(k_i, HUTCHINSON)`` and ``fold_in(k_i, LANCZOS)``
    (:mod:`empirical.streams`);
  - every ``(sigma_w2, sigma_b2)`` rescales the same standard draw (common
    random numbers);
  - the network of depth ``L`` is the first ``L`` layers of the deepest one,
    so all depths come from one pass (``J`` is taken after each).

  Results do not depend on ``chunk_size`` or ``batch_size``. With ``store``,
  each finished chunk is written atomically and a rerun resumes
  (:func:`empirical.engine.run_chunked`).

  Args:
    key: PRNG key.
    network: a :class:`meanfield.Network` (one grid point) whose fields fill
      ``activation``, ``width``, ``depth``, ``init``, ``sigma_w2`` and
      ``sigma_b2`` (:mod:`empirical.description`); those must then not be
      given too. Plain MLPs only here.
    activation: names from ``meanfield.activation``'s table (or Activations).
    width: ``N``. depth: ``L >= 1``.
    sigma_w2, sigma_b2: weight variance (``fan_in E[W_ij^2]``, for the
      schemes by variance) and bias variance.
    init: weight schemes of :mod:`empirical.inits` (``"gaussian"``,
      ``"orthogonal"``, ...); the theory reads their law (``Init.law``,
      :func:`meanfield.weight_law`).
    n_seeds: networks per grid point.
    q: input length; ``None`` uses ``meanfield.q_star`` of each setting
      (``Q_LIMIT`` where it is 0; a ``ValueError`` where it is infinite:
      give ``q`` there).
    method: ``"svd"``: exact singular values (``O(L N^3)`` per network);
      ``"projection"``: :func:`moment_estimates` with ``n_probes`` probes
      and :func:`extreme_singular_values` with ``num_iterations`` Lanczos
      steps (``O(L N^2)`` per probe or step), for widths where the SVD is
      too dear.
    max_order: moments ``m_k = tr (J J^T)^k / N`` for ``k = 1..max_order``.
    chunk_size: networks per compiled call and per stored chunk; default
      from ``memory_budget`` (bytes).
    batch_size: networks vmapped together inside a chunk (``lax.map``'s
      ``batch_size``); default 1 on the CPU, where it measured fastest, else
      the whole chunk.
    store: directory for finished chunks (resume).
    progress: tqdm progress bar.
    dtype: float dtype (default float32, float64 under x64); use float64
      for the small end of deep spectra.
    devices: where to run, as in :func:`empirical.sweep`: ``None`` (default)
      every device JAX sees (the first only on the CPU), ``1`` the default
      device, an integer ``n`` the
      first ``n``, or a sequence of devices; each chunk of networks is split
      evenly over them (:mod:`empirical.devices`), with results those of a
      one-device run.

  Returns:
    ``xarray.Dataset`` with the swept dims of ``activation, init, width,
    depth, sigma_w2, sigma_b2`` (in that order), then ``seed``, then
    ``index`` (singular values, descending) or ``order`` (``k``). Variables:
    ``moment`` (``..., seed, order``); ``sigma_max`` (``..., seed``);
    for ``svd`` ``singular_values`` (``..., seed, index``; nan beyond a
    network's width); for ``projection`` ``moment_error``, the standard
    errors, and ``sigma_max_error``, ``sigma_min``, ``sigma_min_error``
    (Lanczos bounds). ``first_nonfinite`` (``..., seed``): the first layer
    whose pre-activations overflowed (0: none up to that depth), as in a
    sweep; spectra from there on are nan. Products of layers are rescaled
    by powers of two on the way, so the other values are inf only where
    they are beyond the dtype's range (a float32 ``sigma_max`` of 4e32 is
    returned as such; its moments ``m_k``, above 1e38, as inf). ``q``
    holds the input length used per setting.

  Raises:
    ValueError: before any work, for a bad argument.
  """
  grid = _grid.network_grid(key=key, activation=activation, init=init, width=width,
                            depth=depth, n_seeds=n_seeds, sigma_w2=sigma_w2,
                            sigma_b2=sigma_b2, verb="jacobian_spectra", store=store,
                            by_variance_only=True)
  depths = grid.depths
  if any(b <= a for a, b in zip(depths, depths[1:])):
    raise ValueError(f"`depth` must be one integer or an increasing list, got {depth!r}")
  if method not in METHODS:
    raise ValueError(f"`method` must be one of {', '.join(METHODS)}, got {method!r}")
  max_order = _checks.check_int("max_order", max_order, 1)
  n_probes = _checks.check_int("n_probes", n_probes, 2)
  num_iterations = _checks.check_int("num_iterations", num_iterations, 1)
  if method == "projection" and num_iterations > min(grid.widths):
    raise ValueError(
        f"`num_iterations` must be at most the width {min(grid.widths)}, got {num_iterations}")
  if q is not None:
    q = _checks.check_variances("q", [q])[0]
  if chunk_size is not None:
    chunk_size = _checks.check_int("chunk_size", chunk_size, 1)
  if batch_size is not None:
    batch_size = _checks.check_int("batch_size", batch_size, 1)
  memory_budget = int(_checks.check_number("memory_budget", memory_budget, minimum=0,
                                           strict=True))
  dtype = _checks.float_dtype(dtype)
  devs = _devices.resolve(devices)
  _check_plan_fits(grid, np.dtype(dtype).itemsize, batch_size, memory_budget)
  settings = list(itertools.product(grid.sigma_w2, grid.sigma_b2))
  qs = np.array([np.full(len(settings), q) if q is not None else _fixed_point_q(a, settings)
                 for a in grid.activations])                         # (acts, settings)
  if batch_size is None:
    batch_size = 1 if jax.default_backend() == "cpu" else None
  configs = list(itertools.product(range(len(grid.activations)), grid.inits, grid.widths))
  spec = {**engine.base_spec(grid, dtype), "q": qs.tolist(), "method": method,
          "max_order": max_order, "num_probes": n_probes,   # the stores' name of n_probes
          "num_iterations": num_iterations}
  run = functools.partial(
      _run_config, key=key, grid=grid, settings=settings, qs=qs, spec=spec,
      options=dict(method=method, max_order=max_order, n_probes=n_probes,
                   num_iterations=num_iterations, batch_size=batch_size),
      chunk_size=chunk_size, memory_budget=memory_budget, devs=devs, dtype=dtype)
  results = engine.run_configs(configs, run, total=len(configs) * grid.n_seeds * len(settings),
                               desc="jacobian", progress=progress)
  swept = engine.swept(SWEPT, (activation, init, width, depth, sigma_w2, sigma_b2))
  return _dataset(results, grid, qs, swept, method=method, max_order=max_order, dtype=dtype)


def _check_plan_fits(grid, itemsize: int, batch_size: int | None, memory_budget: int) -> None:
  """ValueError unless one network of the deepest depth fits at every width."""
  for w in grid.widths:
    # One network in flight per device at the least (batch_size or 1 of them).
    engine.check_fits(f"network of width {w} and depth {grid.depths[-1]}",
                      lambda d, w=w: _network_bytes(itemsize, w, d, batch_size or 1),
                      grid.depths[-1], memory_budget, width=w)


def _run_config(c, config, bar, *, key, grid, settings, qs, spec, options, chunk_size,
                memory_budget, devs, dtype) -> dict[str, np.ndarray]:
  """Configuration ``c`` (activation, init, width): arrays ``(seed, settings, depths, ...)``."""
  a, scheme, w = config
  depths = grid.depths
  ws, bs = _models.layer_scales(scheme, jnp.asarray([st[0] for st in settings], dtype),
                                jnp.asarray([st[1] for st in settings], dtype),
                                in_features=w, width=w, depth=depths[-1], dtype=dtype)
  ws, bs = ws.T, bs.T                                              # (settings, L)
  per_network = _network_bytes(np.dtype(dtype).itemsize, w, depths[-1],
                               options["batch_size"] or grid.n_seeds)
  # The budget is per device: a chunk holds that many networks on each.
  items = chunk_size or max(1, min(grid.n_seeds, len(devs) * memory_budget // per_network))
  compute = functools.partial(
      _compute, key=key, ws=ws, bs=bs, qs=jnp.asarray(qs[a], dtype), act=grid.activations[a],
      scheme=scheme, width=w, depths=tuple(depths), **options)
  return engine.run_chunked(
      compute, grid.n_seeds, chunk_size=items, store=engine.config_store(grid.store, c),
      spec={**spec, "config": c}, progress=bar, units_per_item=len(settings), devices=devs)


def _network_bytes(itemsize: int, width: int, depth: int, networks: int) -> int:
  """Bytes ``networks`` networks in flight hold (weights and workspace)."""
  return itemsize * width * width * (depth + 6) * networks


def _dataset(results, grid, qs, swept, *, method, max_order, dtype) -> xr.Dataset:
  """The spectra's result schema: over (grid, seed[, index | order]) and ``q``."""
  axes = grid.axes()
  n_acts, n_inits, n_widths, n_depths, n_sw, n_sb = (len(v) for v in axes.values())
  max_width = max(grid.widths)
  data_vars = {}
  for name in results[0]:
    parts = []
    for r in results:                    # (seed, settings, depths[, index|order])
      a = r[name]
      if name == "singular_values" and a.shape[-1] < max_width:
        pad = np.full((*a.shape[:-1], max_width - a.shape[-1]), np.nan, a.dtype)
        a = np.concatenate([a, pad], -1)
      parts.append({name: a})
    a = engine.stack(parts, name, [n_acts, n_inits, n_widths, grid.n_seeds])
    a = a.reshape(*a.shape[:4], n_sw, n_sb, n_depths, *a.shape[6:])
    a = np.swapaxes(a, 3, 6)             # -> (activation, ..., sigma_b2, seed, ...)
    extra = {"singular_values": ["index"], "moment": ["order"],
             "moment_error": ["order"]}.get(name, [])
    data_vars[name] = engine.grid_variable(a, SWEPT, swept, ["seed"] + extra, _DOCS[name])
  q = qs.reshape(n_acts, 1, 1, 1, n_sw, n_sb)
  data_vars["q"] = engine.grid_variable(
      q, SWEPT, {**swept, "init": False, "width": False, "depth": False}, [],
      "input length q (q* unless given)")
  coords = {"seed": np.arange(grid.n_seeds), "order": np.arange(1, max_order + 1)}
  if method == "svd":
    coords["index"] = np.arange(max_width)
  coords.update(engine.grid_coords(axes, swept))
  attrs = {"method": method, **engine.provenance(grid, dtype),
           "input": "x^0 = phi(sqrt(q) z), z ~ N(0, I_N)",
           "depths": "the network of depth L is the first L layers of the deepest one"}
  return xr.Dataset(data_vars, coords=coords, attrs=attrs)


_DOCS = {
    "singular_values": "singular values of J = dx^L/dx^0, descending",
    "moment": "m_k = tr (J J^T)^k / N (exact for svd, Hutchinson estimate for projection)",
    "moment_error": "standard error of the Hutchinson estimate of m_k",
    "sigma_max": "largest singular value of J (Lanczos lower bound for projection)",
    "sigma_max_error": "Lanczos residual bound on sigma_max",
    "sigma_min": "Lanczos estimate of the smallest singular value (an upper bound)",
    "sigma_min_error": "Lanczos residual bound on sigma_min",
    "first_nonfinite": "first layer whose pre-activations h^l are not finite, i.e. the "
                       "forward pass overflowed (0: none up to this depth)",
}


def density_l1(samples, *, sigma, density, bins: int = 20, floor: float = 0.0,
               mass_below: float = 0.0) -> float:
  """L1 distance between the empirical law of ``samples`` and a density on a grid.

  The axis is cut into ``bins`` intervals of equal mass ``1/bins`` under the
  density (its quantiles), so the distance weighs the bulk and the tails
  alike and does not depend on the parametrisation (singular value or its
  log): ``sum_b |n_b / n - 1/bins|``, in ``[0, 2]``, where ``n_b`` counts
  the samples in interval ``b``. The density is integrated by the
  trapezoidal rule on ``sigma`` and normalised; check separately that it
  carries the mass you expect (e.g. ``JacobianSpectrum.converged``).

  Values below ``floor`` are compared as one lump (their total mass), not
  bin by bin: an SVD resolves singular values only down to about ``eps
  sigma_max`` (``1e-16`` of the largest in float64), and the smaller ones of a
  deep Gaussian network (1e-19 and below) come out as rounding noise there.

  Mass of the density below the grid (``sigma < sigma[0]``, e.g. the power-law
  tail ``p ~ sigma^(-(L-1)/(L+1))`` of a deep Gaussian network, whose mass
  below ``sigma_0`` is ``p(sigma_0) sigma_0 (L + 1)/2``) is passed as
  ``mass_below``: it joins the lump below ``floor``, and the density on the
  grid is normalised to ``1 - mass_below``.

  Args:
    samples: any shape (flattened; nan ignored).
    sigma: increasing grid ``(n,)`` covering the samples.
    density: ``(n,)``, the density per unit ``sigma`` (nan counts as 0).
    bins: number of equal-mass intervals (above ``floor``), ``>= 2``.
    floor: resolution floor on ``sigma`` (``>= 0``).
    mass_below: probability below ``sigma[0]`` under the density, in ``[0, 1)``.

  Returns:
    The distance as a Python float.
  """
  bins = _checks.check_int("bins", bins, 2)
  sigma = np.asarray(sigma, np.float64)
  density = np.nan_to_num(np.asarray(density, np.float64))
  if sigma.ndim != 1 or sigma.shape != density.shape or sigma.size < 2 or np.any(
      np.diff(sigma) <= 0):
    raise ValueError(
        f"`sigma` must be an increasing 1-D grid and `density` of the same shape, got "
        f"{sigma.shape} and {density.shape}")
  cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(sigma))])
  if not cdf[-1] > 0:
    raise ValueError("`density` must have positive mass on `sigma`")
  samples = np.asarray(samples, np.float64).ravel()
  samples = samples[~np.isnan(samples)]
  if not (math.isfinite(floor) and floor >= 0):
    raise ValueError(f"`floor` must be a finite number >= 0, got {floor!r}")
  if not (math.isfinite(mass_below) and 0 <= mass_below < 1):
    raise ValueError(f"`mass_below` must be a number in [0, 1), got {mass_below!r}")
  cdf = mass_below + (1.0 - mass_below) * cdf / cdf[-1]
  u = np.interp(samples, sigma, cdf)                # probability integral transform
  cut = max(floor, sigma[0]) if mass_below > 0 else floor
  lump = float(np.interp(cut, sigma, cdf))
  below = np.mean(samples < cut)
  counts = np.histogram(u[samples >= cut], bins=bins, range=(lump, 1.0))[0]
  return float(abs(below - lump)
               + np.sum(np.abs(counts / samples.size - (1.0 - lump) / bins)))
