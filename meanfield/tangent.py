"""The neural tangent kernel beside the NNGP kernel, for a whole data set (docs/ntk.md).

For the MLP ``h^l = W^l phi(h^{l-1}) + b^l`` at infinite width, in this
library's variance parametrisation (Jacot et al. 2018; Xiao, Pennington &
Schoenholz 2020; Arora et al. 2019), the NNGP kernel ``Sigma^l`` and the NTK
``Theta^l`` of the pre-activations ``h^l`` of ``m`` inputs follow

.. math::

  \\Sigma^1 = \\Theta^1 = \\sigma_w^2 K + \\sigma_b^2, \\qquad
  \\Sigma^{l+1} = \\sigma_w^2 E[\\phi(u)\\phi(v)] + \\sigma_b^2, \\qquad
  \\Theta^{l+1} = \\Sigma^{l+1} + \\sigma_w^2 E[\\phi'(u)\\phi'(v)]\\, \\Theta^l,

``(u, v) ~ N(0, Sigma^l)`` on each pair and ``K_ab = x_a . x_b / N_0`` the
inputs' Gram matrix (so ``Sigma^1`` is :func:`meanfield.propagate`'s
``q^1 c^1``). Residual, LayerNorm and dropout variants change the layer as
docs/ntk.md derives. ``Theta^l`` grows like ``chi_1^l`` in the chaotic
phase, so it is carried as ``Theta^l = exp(s^l) M^l`` with a scalar
``s^l`` per network and ``M^l`` of unit largest diagonal: finite at any
depth in float32 and float64.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from meanfield import _checks, _mehler, _variants
from meanfield._integrals import float_dtype, second_moments
from meanfield.activations import activation as _activation
from meanfield.gaussian import bivariate_expectation
from meanfield.network import MLP, Architecture, accepts_network, check_variants

__all__ = ["ntk", "Kernels"]

Array = jax.Array
ArrayLike = Any

#: The MLP's variant fields that :func:`ntk` covers.
_VARIANT_FIELDS = ("residual", "alpha", "norm", "keep_prob")


class Kernels(NamedTuple):
  """NNGP and NTK of ``m`` inputs layer by layer (``L = depth``; ``batch`` the variances' and
  Gram matrices' broadcast shape; index ``l - 1`` of the layer axis holds layer ``l``).

  With ``every_layer=False`` the layer axis of ``nngp``, ``log_ntk_diagonal``,
  ``ntk_correlation`` and ``predictor`` is dropped (the last layer's); the
  condition numbers keep it.

  Attributes:
    nngp: ``Sigma^l``, ``batch + (L, m, m)``.
    log_ntk_diagonal: ``log Theta^l_aa``, ``batch + (L, m)`` (finite where
      ``Theta`` overflows).
    ntk_correlation: ``Theta^l_ab / sqrt(Theta^l_aa Theta^l_bb)``, ``batch + (L, m, m)``.
    ntk_condition, nngp_condition: ``lambda_max / lambda_min`` of the
      training block (the first ``n_train = n`` inputs), ``batch + (L,)``;
      rounding leaves them a relative error of about ``n eps`` times
      themselves, so they are inf past ``1e-3 / (n eps)`` (to 1e-3: about
      4.5e12 / n in float64, 8e3 / n in float32).
    predictor: ``Theta^l_{test,train} (Theta^l_{train,train})^{-1}``, the map
      from training targets to the mean prediction of infinite-width gradient
      descent at the other ``m - n_train`` inputs, ``batch + (L, m - n_train,
      n_train)``; nan where ``ntk_condition`` is inf; ``None`` without ``n_train``.
  """

  nngp: Array
  log_ntk_diagonal: Array
  ntk_correlation: Array
  ntk_condition: Array
  nngp_condition: Array
  predictor: Array | None = None

  @property
  def ntk(self) -> Array:
    """``Theta^l`` itself, ``exp`` of the log form (inf where it overflows the dtype)."""
    d = self.log_ntk_diagonal
    return jnp.exp((d[..., :, None] + d[..., None, :]) / 2) * self.ntk_correlation


def _pair_moments(act, s11, s22, s12):
  """``(E[phi(u) phi(v)], E[phi'(u) phi'(v)])`` for every pair: closed forms, Mehler's series
  where it is certified (:func:`_series_moments`), else 2-D quadrature."""
  forms = act.closed_forms
  if "cross_moment" in forms and "derivative_cross_moment" in forms:
    return forms["cross_moment"](s11, s22, s12), forms["derivative_cross_moment"](s11, s22, s12)
  g = lambda u, v: (act.fn(u) * act.fn(v), act.derivative(u) * act.derivative(v))
  quadrature = lambda _: bivariate_expectation(g, s11, s22, s12, kinks=act.kinks)
  if not _mehler.usable(act):
    return quadrature(None)
  cross, dcross, certified = _series_moments(act, s11, s22, s12)
  return jax.lax.cond(certified, lambda _: (cross, dcross), quadrature, None)


def _series_moments(act, s11, s22, s12):
  """Mehler: ``E[phi(u) phi(v)] = sum_k a_k(q_u) a_k(q_v) c^k`` and ``E[phi'(u) phi'(v)]`` its
  ``c``-derivative over ``sqrt(q_u q_v)`` (Price), with whether the truncation is certified to
  ``_mehler.TOLERANCE`` epsilons (tails by Cauchy-Schwarz from the 1-D integrals)."""
  diag = jnp.diagonal(s11, axis1=-2, axis2=-1)                 # s11[..., a, b] = q_a
  valid = jnp.isfinite(diag) & (diag > 0)
  q = jnp.where(valid, diag, 1)
  a = _mehler.amplitudes(act, q)                               # (..., m, K + 1)
  m2, dm2 = second_moments(act, q)
  t0, t1 = _mehler.tail_bounds(a * a, q, m2, dm2)
  root_q = jnp.sqrt(q)
  norm = root_q[..., :, None] * root_q[..., None, :]
  c = jnp.clip(s12 / norm, -1, 1)
  coef = a[..., :, None, :] * a[..., None, :, :]
  cross, slope = _mehler.polynomial(coef, c)
  outer = lambda v: jnp.sqrt(v[..., :, None] * v[..., None, :])
  terms = a.shape[-1]
  cross_error = jnp.abs(c) ** terms * outer(t0)
  slope_error = outer(t1)
  tol = _mehler.TOLERANCE * float(jnp.finfo(q.dtype).eps)
  certified = jnp.all(valid) & jnp.all(cross_error <= tol * outer(m2)) & jnp.all(
      slope_error <= tol * outer(q * dm2))
  return cross, slope / norm, certified


def _branch(act, variant, sigma_w2, sigma_b2, keep_prob, sigma):
  """The branch's ``(B, D)`` from ``Sigma^l`` (``(..., m, m)``): its NNGP kernel ``B`` and the
  factor ``D`` of the NTK it carries, ``Theta_branch = B + D * Theta^l`` (elementwise)."""
  diag = jnp.diagonal(sigma, axis1=-2, axis2=-1)
  eye = jnp.broadcast_to(jnp.eye(sigma.shape[-1], dtype=bool), sigma.shape)
  if variant.layer_norm:              # phi sees h / sqrt(q_a): unit lengths, same correlation
    norm = jnp.sqrt(diag[..., :, None] * diag[..., None, :])
    s12 = jnp.clip(sigma / norm, -1, 1)
    s11 = s22 = jnp.ones_like(sigma)
  else:
    norm = jnp.ones_like(sigma)
    s11, s22, s12 = diag[..., :, None] + 0 * sigma, diag[..., None, :] + 0 * sigma, sigma
  # the diagonal from the same pair integral as the rest (a 1-D rule there would differ from
  # the pairs' rule by its error: a fake eigenvalue where the kernel is nearly singular)
  cross, dcross = _pair_moments(act, s11, s22, s12)
  scale = jnp.where(eye, 1 / keep_prob, 1.0)       # dropout: one input's mask, twice
  cross, dcross = cross * scale, dcross * scale
  return sigma_w2 * cross + sigma_b2, sigma_w2 * dcross / norm


def _scaled(log_scale, m, extra, factor):
  """``Theta' = extra + factor * exp(log_scale) m`` as ``(log_scale', m')``, ``m'`` of unit
  largest diagonal (``extra`` is O(1); ``exp(-log_scale)`` may underflow to 0, correctly)."""
  inner = extra * jnp.exp(-log_scale)[..., None, None] + factor * m
  top = jnp.max(jnp.diagonal(inner, axis1=-2, axis2=-1), axis=-1)
  return log_scale + jnp.log(top), inner / top[..., None, None]


def _condition(matrix, n_train):
  """``lambda_max / lambda_min`` of the leading ``n_train`` block; inf past the resolution."""
  block = matrix[..., :n_train, :n_train]
  eig = jnp.linalg.eigvalsh(block)
  low, high = eig[..., 0], eig[..., -1]
  # rounding leaves a relative error of about n eps lambda_max / lambda_min: inf past 1e-3
  tol = 1e3 * n_train * jnp.finfo(block.dtype).eps
  return jnp.where(low > tol * high, high / jnp.where(low > 0, low, 1), jnp.inf)


def _predictor(m, n_train, condition):
  train, cross = m[..., :n_train, :n_train], m[..., :n_train, n_train:]
  p = jnp.swapaxes(jnp.linalg.solve(train, cross), -1, -2)
  return jnp.where(jnp.isinf(condition)[..., None, None], jnp.nan, p)


def _readout(log_scale, m, sigma, n_train, has_test):
  """One layer's ``(nngp, log diagonal, correlation, ntk cond, nngp cond, predictor)``."""
  diag = jnp.diagonal(m, axis1=-2, axis2=-1)
  corr = m / jnp.sqrt(diag[..., :, None] * diag[..., None, :])
  cond = _condition(m, n_train)
  pred = _predictor(m, n_train, cond) if has_test else None
  return (sigma, log_scale[..., None] + jnp.log(diag), corr, cond, _condition(sigma, n_train),
          pred)


@functools.partial(jax.jit, static_argnames=("act", "variant", "depth", "n_train",
                                               "every_layer"))
def _kernels(act, variant, depth, n_train, every_layer, gram, sigma_w2, sigma_b2, alpha,
             keep_prob):
  m = gram.shape[-1]
  shape = jnp.broadcast_shapes(gram.shape[:-2], sigma_w2.shape, sigma_b2.shape)
  dtype = float_dtype(gram, sigma_w2, sigma_b2)
  sw, sb = (jnp.broadcast_to(jnp.asarray(x, dtype), shape)[..., None, None]
            for x in (sigma_w2, sigma_b2))
  sigma1 = sw * jnp.broadcast_to(jnp.asarray(gram, dtype), shape + (m, m)) + sb
  a2 = jnp.asarray(alpha, dtype) ** 2
  skip = 1.0 if variant.residual else 0.0
  has_test = m > n_train
  zero = jnp.zeros(shape, dtype)
  state = _scaled(zero, jnp.zeros_like(sigma1), sigma1, jnp.zeros_like(sigma1)) + (sigma1,)

  def layer(carry, _):
    log_scale, mat, sigma = carry
    b, d = _branch(act, variant, sw, sb, jnp.asarray(keep_prob, dtype), sigma)
    log_scale, mat = _scaled(log_scale, mat, a2 * b, skip + a2 * d)
    sigma = skip * sigma + a2 * b
    out = (log_scale, mat, sigma)
    if every_layer:
      return out, _readout(*out, n_train, has_test)
    return out, (_condition(mat, n_train), _condition(sigma, n_train))

  last, rest = jax.lax.scan(layer, state, None, length=depth - 1)
  first = _readout(*state, n_train, has_test)
  if every_layer:
    fields = [None if f is None else jnp.concatenate([f0[None], f], axis=0)
              for f0, f in zip(first, rest)]
    fields = [None if f is None else jnp.moveaxis(f, 0, len(shape)) for f in fields]
    return Kernels(*fields)
  final = _readout(*last, n_train, has_test)
  conds = [jnp.moveaxis(jnp.concatenate([c0[None], c], axis=0), 0, -1)
           for c0, c in zip(first[3:5], rest)]
  return Kernels(final[0], final[1], final[2], conds[0], conds[1], final[5])


def _check_gram(gram: Any) -> Any:
  _checks.real("gram", gram)
  a = _checks.concrete(gram)
  if a is None:
    return gram
  if a.ndim < 2 or a.shape[-1] != a.shape[-2] or a.shape[-1] < 1:
    raise ValueError(f"`gram` must be a square matrix (..., m, m) of the inputs' products "
                     f"x_a . x_b / N_0, got shape {a.shape}")
  scale = np.max(np.abs(a)) if a.size else 0.0
  if not np.allclose(a, np.swapaxes(a, -1, -2), rtol=0, atol=1e-6 * max(scale, 1e-300)):
    raise ValueError("`gram` must be symmetric (a Gram matrix x_a . x_b / N_0), got an "
                     "asymmetric matrix")
  diag = np.diagonal(a, axis1=-2, axis2=-1)
  if np.any(diag < 0):
    raise ValueError(f"`gram` must have a non-negative diagonal (squared lengths), got "
                     f"{diag[diag < 0].flat[0]!r}")
  return gram if isinstance(gram, jax.Array) else a


def _check_n_train(n_train: Any, m: int) -> int:
  if n_train is None:
    return m
  if isinstance(n_train, bool) or not isinstance(n_train, (int, np.integer)) or not (
      1 <= n_train <= m):
    raise ValueError(f"`n_train` must be an integer in [1, {m}] (the number of training "
                     f"inputs, first in `gram`), got {n_train!r}")
  return int(n_train)


@accepts_network(supports=_VARIANT_FIELDS)
def ntk(*, gram: ArrayLike, depth: int, sigma_w2: ArrayLike, sigma_b2: ArrayLike,
        activation: Any, arch: Architecture = MLP(), n_train: int | None = None,
        every_layer: bool = True) -> Kernels:
  """NNGP and neural tangent kernels of a data set through ``depth`` layers (module docstring).

  ``Theta^l`` is the NTK of one unit of ``h^l`` with respect to the parameters
  of layers ``1..l``: the output layer of a network with ``l - 1`` hidden
  layers. At the He point (ReLU, ``sigma_w2 = 2``, ``sigma_b2 = 0``) inputs
  of ``q^1 = 1`` give ``Theta^l_aa = l`` (Arora et al. 2019's ``L + 1`` for
  ``L = l - 1`` hidden layers); as neural-tangents' ``stax.serial`` of ``l``
  ``Dense`` layers with ``W_std^2 = sigma_w2``, ``b_std^2 = sigma_b2`` and the
  activation between them. One program per activation, variant, depth,
  ``n_train``, ``every_layer`` and shape; the variances broadcast (a whole
  phase diagram over ``(sigma_w2, sigma_b2)`` and depth is one call).

  Args:
    gram: the inputs' Gram matrix ``K_ab = x_a . x_b / N_0``, ``(..., m, m)``,
      symmetric with a non-negative diagonal (its leading axes broadcast).
    depth: number of layers, an integer ``>= 1``.
    sigma_w2, sigma_b2, activation: as in :func:`meanfield.q_map`.
    arch: a :class:`meanfield.MLP`, plain or with ``residual``/``alpha``,
      ``norm="layer"`` or ``keep_prob`` (docs/ntk.md); no other architecture.
    n_train: the first ``n_train`` inputs are the training set: condition
      numbers are of their block, and with ``n_train < m`` the
      :attr:`Kernels.predictor` of the others is given (default ``m``: all
      train, no predictor).
    every_layer: keep the kernels of every layer (default) or only the last
      (memory for large grids); condition numbers are per layer either way.

  Returns:
    :class:`Kernels`, in the floating dtype of the arguments.

  Raises:
    ValueError: ``gram`` not a symmetric square matrix with non-negative
      diagonal, ``depth < 1``, negative variance, unknown activation, ``arch``
      not an MLP or ``norm="batch"``, ``n_train`` outside ``[1, m]``.
  """
  act = _activation(activation)
  depth = _checks.check_depth(depth)
  check_variants("ntk", arch, _VARIANT_FIELDS)
  if not isinstance(arch, MLP):
    raise ValueError(f"`arch` of `ntk` must be a meanfield.MLP (the NTK is derived for the "
                     f"fully connected MLP and its variants, docs/ntk.md), got {arch!r}")
  variant, alpha, keep_prob = _variants.check_variant(
      "ntk", residual=arch.residual, alpha=arch.alpha, norm=arch.norm, keep_prob=arch.keep_prob)
  for name, x in (("alpha", alpha), ("keep_prob", keep_prob)):
    if np.ndim(x) != 0:
      raise ValueError(f"`arch.{name}` of `ntk` must be one number, got shape {np.shape(x)}")
  gram = _check_gram(gram)
  sigma_w2, sigma_b2 = _checks.hyperparameters(sigma_w2, sigma_b2)
  n_train = _check_n_train(n_train, int(np.shape(gram)[-1]))
  if not isinstance(every_layer, (bool, np.bool_)):
    raise ValueError(f"`every_layer` must be True or False, got {every_layer!r}")
  dtype = float_dtype(gram, sigma_w2, sigma_b2)
  return _kernels(act, variant, depth, n_train, bool(every_layer), jnp.asarray(gram, dtype),
                  jnp.asarray(sigma_w2, dtype), jnp.asarray(sigma_b2, dtype),
                  float(alpha), float(keep_prob))
