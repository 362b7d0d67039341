"""One layer of the mean-field maps of the MLP's variants, shared by the maps and fixed points.

A private module: the public functions are :func:`meanfield.q_map`,
:func:`meanfield.c_map` and :func:`meanfield.propagate` (the fields
``residual``, ``alpha``, ``norm`` and ``keep_prob`` of their
``arch=meanfield.MLP(...)``), and :func:`meanfield.fixed_point`
(``MLP(norm="layer")`` or ``MLP(keep_prob=p)``; dropout as in Schoenholz et
al. 2017, Sec. 6, and Pretorius et al. 2018). Layer ``l >= 2`` of

.. math::

  h^l = s\\, h^{l-1} + \\alpha \\big(W^l (m^l \\circ \\phi(\\nu(h^{l-1}))) / p + b^l\\big)

with ``s = 1`` (residual) or ``0`` (plain, then ``alpha`` must be 1),
``nu`` the identity or LayerNorm, and ``m^l`` Bernoulli(``p``) dropout masks,
independent across inputs. At infinite width, with ``q_phi`` the length
entering ``phi`` (``q^{l-1}``, or 1 after LayerNorm):

.. math::

  q^l = s q^{l-1} + \\alpha^2 \\big(\\tfrac{\\sigma_w^2}{p} E[\\phi(u)^2] + \\sigma_b^2\\big),
  \\qquad
  q^l c^l = s q^{l-1} c^{l-1}
            + \\alpha^2 \\big(\\sigma_w^2 E[\\phi(u_1)\\phi(u_2)] + \\sigma_b^2\\big),

with ``u`` of variance ``q_phi`` and ``(u1, u2)`` of correlation ``c^{l-1}``
(the cross terms vanish because ``W^l`` is fresh and has mean zero; the
masks of two inputs are independent, so ``1/p`` enters the diagonal only).
``1 - c^l`` is computed from ``1 - c^{l-1}`` and the plain map's
``1 - c_map`` (no cancellation as ``c -> 1``). Derivations: docs/architectures.md.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from meanfield import _checks, _solve
from meanfield._integrals import (as_arrays, correlation_map, limit_length, pair_moments,
                                  second_moments)

Array = jax.Array


class Variant(NamedTuple):
  """The static part of a variant: skip connection and LayerNorm (hashable, for jit)."""

  residual: bool
  layer_norm: bool


def check_variant(fn_name: str, *, residual: Any, alpha: Any, norm: Any,
                  keep_prob: Any) -> tuple[Variant, Any, Any]:
  """Validate the fields of an ``arch=meanfield.MLP(...)`` eagerly; ``(Variant, alpha, keep_prob)``.

  Raises:
    ValueError: ``residual`` not a bool, ``alpha <= 0`` (or ``!= 1`` without
      ``residual``), ``norm`` not ``None``/``"layer"`` (BatchNorm has no
      mean-field map of this form), ``keep_prob`` outside ``(0, 1]``; each
      named as the field of ``arch``.
  """
  if not isinstance(residual, bool):
    raise ValueError(f"`arch.residual` must be True or False, got {residual!r}")
  _checks.check("arch.alpha", alpha, lambda a: a > 0, "> 0 (the residual branch scale)")
  alpha = _checks.real("arch.alpha", alpha)
  if not residual:
    _checks.check("arch.alpha", alpha, lambda a: a == 1,
                  "1 without a residual connection (it scales the residual branch; "
                  "arch.residual is False)")
  if norm not in (None, "layer"):
    raise ValueError(
        f"`arch.norm` must be None or 'layer' for `{fn_name}`, got {norm!r}: BatchNorm couples "
        f"the inputs of a batch, and has no two-input map of this form (see "
        f"meanfield.MLP(norm='batch').gradient_factor for what is predicted)")
  _checks.check("arch.keep_prob", keep_prob, lambda p: (p > 0) & (p <= 1),
                "in (0, 1] (dropout's keep probability)")
  keep_prob = _checks.real("arch.keep_prob", keep_prob)
  return Variant(residual, norm == "layer"), alpha, keep_prob


def branch(act, variant: Variant, sigma_w2, sigma_b2, keep_prob, q, c):
  """The branch's ``(q_b, q_b - cov_b)``: its length and its length minus its covariance.

  ``q_b = (sigma_w2 / p) E[phi(u)^2] + sigma_b2``,
  ``cov_b = sigma_w2 E[phi(u1) phi(u2)] + sigma_b2``, at the length
  ``q_phi`` entering ``phi`` and correlation ``c``.
  """
  q_phi = jnp.ones_like(q) if variant.layer_norm else q
  q_plain, c_plain = correlation_map(act, sigma_w2, sigma_b2, q_phi, c)
  q_b = q_plain + (1 / keep_prob - 1) * (q_plain - sigma_b2)
  # a branch of length 0 (sigma_w2 = sigma_b2 = 0) adds nothing, not 0 * nan
  spread = jnp.where(q_plain > 0, q_plain * (1 - c_plain), jnp.zeros_like(q_plain))
  return q_b, spread + (q_b - q_plain)


def layer(act, variant: Variant, sigma_w2, sigma_b2, alpha, keep_prob, q, c):
  """``(q^l, c^l)`` from ``(q^{l-1}, c^{l-1})`` (arrays of one shape)."""
  q_b, gap_b = branch(act, variant, sigma_w2, sigma_b2, keep_prob, q, c)
  a2 = alpha * alpha
  if variant.residual:
    q_next = q + a2 * q_b
    one_minus_c = (q * (1 - c) + a2 * gap_b) / q_next
  else:
    q_next, one_minus_c = q_b, gap_b / q_b
  return q_next, 1 - one_minus_c


def gradient_factor(act, variant: Variant, sigma_w2, alpha, keep_prob, q):
  """``|dL/dh^l|^2 / |dL/dh^{l+1}|^2`` at infinite width, from ``q = q^l``.

  ``s + alpha^2 (sigma_w2 / p) E[phi'(u)^2] q_phi / q``: the skip, plus the
  branch's Jacobian (a LayerNorm divides by ``sqrt(q)``; the dropout mask
  kept in the backward pass gives ``E[(m/p)^2] = 1/p``). Mean-field
  gradient independence (Schoenholz et al. 2017; Yang & Schoenholz 2017).
  """
  q_phi = jnp.ones_like(q) if variant.layer_norm else q
  chi = sigma_w2 / keep_prob * second_moments(act, q_phi)[1]
  if variant.layer_norm:
    chi = chi / q
  return (1.0 + alpha * alpha * chi) if variant.residual else chi


@functools.partial(jax.jit, static_argnames=("act", "variant"))
def maps(act, variant: Variant, q, c, sigma_w2, sigma_b2, alpha, keep_prob):
  """:func:`layer` at ``(q, c)``, broadcast: ``(q^l, c^l)``.

  ``alpha`` or ``keep_prob`` None stands for 1 and leaves the dtype to the
  other arguments (as without a branch scale or dropout); ``q`` None (a
  LayerNorm without skip, whose ``c^l`` does not depend on ``q``) for
  ``ones_like(c)``.
  """
  optional = [x for x in (alpha, keep_prob) if x is not None]
  if q is None:
    c, sigma_w2, sigma_b2, *rest = as_arrays(c, sigma_w2, sigma_b2, *optional)
    q = jnp.ones_like(c)
  else:
    q, c, sigma_w2, sigma_b2, *rest = as_arrays(q, c, sigma_w2, sigma_b2, *optional)
  alpha = 1.0 if alpha is None else rest.pop(0)
  keep_prob = 1.0 if keep_prob is None else rest.pop(0)
  return layer(act, variant, sigma_w2, sigma_b2, alpha, keep_prob, q, c)


@functools.partial(jax.jit, static_argnames=("act", "variant", "depth"))
def propagate(act, variant: Variant, depth: int, q_input, c_input, sigma_w2, sigma_b2, alpha,
              keep_prob) -> tuple[Array, Array, Array]:
  """Layer 1 affine in the input (as in :func:`meanfield.propagate`), then :func:`layer`.

  ``(q, c, chi)``, each of shape ``batch + (depth,)``: the fields of a
  :class:`meanfield.Propagation`, ``chi`` the per-layer gradient factor
  (:func:`gradient_factor`).
  """
  q_input, c_input, sigma_w2, sigma_b2, alpha, keep_prob = as_arrays(
      q_input, c_input, sigma_w2, sigma_b2, alpha, keep_prob)
  q1 = sigma_w2 * q_input + sigma_b2
  c1 = jnp.where(c_input > 0.5, 1 - sigma_w2 * q_input * (1 - c_input) / q1,
                 (sigma_w2 * q_input * c_input + sigma_b2) / q1)

  def step(carry, _):
    out = layer(act, variant, sigma_w2, sigma_b2, alpha, keep_prob, *carry)
    return out, out

  _, (qs, cs) = jax.lax.scan(step, (q1, c1), None, length=depth - 1)
  qs = jnp.concatenate([q1[None], qs], axis=0)
  cs = jnp.concatenate([c1[None], cs], axis=0)
  chi = gradient_factor(act, variant, sigma_w2[None], alpha[None], keep_prob[None], qs)
  last = lambda a: jnp.moveaxis(a, 0, -1)
  return last(qs), last(cs), last(chi)


# --- the correlation fixed point of a non-residual branch ------------------------


def correlation_root(act, variant: Variant, sigma_w2, sigma_b2, keep_prob, q, *, closed: bool,
                     iterations: int = 64):
  """``(c*, chi_c, slope at c = 1)`` of a non-residual branch's c-map at the length ``q``.

  The map is ``C(c) = cov_b(c) / q_b`` (:func:`branch`; with ``q = q*`` for
  dropout, any ``q`` after a LayerNorm). ``C`` is increasing and convex on
  ``[0, 1]`` (``E[phi(u1) phi(u2)]`` is a series in ``c`` with non-negative
  coefficients) with ``C(0) >= 0``, so where ``C(1) < 1`` (dropout) it has one
  fixed point in ``[0, 1)``, and where ``C(1) = 1`` (LayerNorm,
  ``closed=True``) one in ``[0, 1)`` if ``C'(1) > 1``, else ``c* = 1``.
  Bisection on the sign of ``C(c) - c``, from ``1 - C = gap_b / q_b`` (no
  cancellation near 1), with the implicit-function gradient in the
  parameters (:func:`meanfield._solve.implicit_step`; ``c* = 0``, reached at
  ``sigma_b2 = 0`` for odd ``phi``, has none). Slopes by Price's theorem:
  ``C'(c) = sigma_w2 q_phi E[phi'(u1) phi'(u2)] / q_b``. Where ``q = 0`` and
  the map is 0/0 there (``sigma_b2 = 0``) the map, root and slopes are the
  limit ``q -> 0+``, as in :func:`meanfield._integrals.correlation_map`.
  """
  if variant.residual:
    raise ValueError("a residual network's c-map has no fixed point at finite length")
  if not variant.layer_norm:
    q = limit_length(act, sigma_w2, sigma_b2, q)      # q = 0 (sigma_b2 = 0): the limit q -> 0+

  def gap(c, sigma_w2=sigma_w2, sigma_b2=sigma_b2, keep_prob=keep_prob, q=q):
    q_b, gap_b = branch(act, variant, sigma_w2, sigma_b2, keep_prob, q, c)
    return (1 - c) - gap_b / q_b              # (1 - c) - (1 - C(c)) = C(c) - c

  stop = jax.lax.stop_gradient
  frozen = functools.partial(gap, sigma_w2=stop(sigma_w2), sigma_b2=stop(sigma_b2),
                             keep_prob=stop(keep_prob), q=stop(q))

  def bisect(_, bounds):
    lo, hi = bounds
    mid = (lo + hi) / 2
    up = frozen(mid) >= 0
    return jnp.where(up, mid, lo), jnp.where(up, hi, mid)

  lo, _ = jax.lax.fori_loop(0, iterations, bisect, (jnp.zeros_like(q), jnp.ones_like(q)))
  q_phi = jnp.ones_like(q) if variant.layer_norm else q
  q_b = branch(act, variant, sigma_w2, sigma_b2, keep_prob, q, jnp.ones_like(q))[0]
  slope_at_one = sigma_w2 * q_phi * second_moments(act, q_phi)[1] / q_b
  inside = jnp.isfinite(q) & ~jnp.isnan(slope_at_one)
  if closed:
    inside = inside & (slope_at_one > 1)
  # the bisection's value, with the implicit-function gradient (dC/dc - 1 = chi_c - 1)
  dd = pair_moments(act, q_phi, lo, derivative=True)[2]
  chi_inside = sigma_w2 * q_phi * dd / q_b
  lo = _solve.implicit_step(gap, lo, inside & (lo > 0), chi_inside - 1)
  c_star = jnp.where(slope_at_one <= 1, jnp.ones_like(lo), lo) if closed else lo
  c_star = jnp.where(jnp.isfinite(q) & ~jnp.isnan(slope_at_one), c_star, jnp.nan)
  chi_c = jnp.where(c_star >= 1, slope_at_one,
                    sigma_w2 * q_phi * pair_moments(act, q_phi, c_star, derivative=True)[2] / q_b)
  return c_star, chi_c, slope_at_one


def require(fn_name: str, field: str, value: Any, wanted: Any, what: str) -> None:
  """ValueError unless ``value == wanted``: a function for one variant given another network."""
  if value != wanted:
    raise ValueError(f"`{field}` must be {wanted!r} for `{fn_name}` ({what}), got {value!r}")
