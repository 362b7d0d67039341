"""Dropout at initialisation: the noisy length map, c* < 1 and a finite xi_c everywhere.

Dropout with keep probability ``p`` (``keep_prob``) on the post-activations
entering layers ``2..L``, scaled by ``1/p`` as in
``empirical.models.forward(keep_prob=p)``:
``h^l = W^l (m^l * phi(h^{l-1})) / p + b^l``, ``m^l_i ~ Bernoulli(p)``,
drawn independently for every input. At infinite width (Schoenholz et al.
2017, "Deep information propagation", Sec. 6, Eqs. 18-19; Pretorius et al.
2018, "Critical initialisation for deep signal propagation in noisy
rectifier neural networks"):

.. math::

  q^l = \\frac{\\sigma_w^2}{p} E[\\phi(u)^2] + \\sigma_b^2, \\qquad
  q^l c^l = \\sigma_w^2 E[\\phi(u_1)\\phi(u_2)] + \\sigma_b^2,

``E[(m/p)^2] = 1/p`` on the diagonal, ``E[m_a m_b]/p^2 = 1`` off it (the
masks of two inputs are independent). So ``q*`` is the plain network's at
``sigma_w2 / p``; ``c = 1`` is no longer fixed (``c_map(1) < 1``), the
stable ``c*`` is below 1 everywhere, and ``chi_c = sigma_w2 E[phi'(u1)
phi'(u2)]`` at ``c*`` is below 1, so ``xi_c = -1/log chi_c`` is finite even
where gradients are critical. Gradients pass the same masks, and grow per
layer by ``chi_1 = (sigma_w2 / p) E[phi'(u)^2]``: critical at ``chi_1 = 1``,
which for ReLU (``E[phi'^2] = 1/2``) is ``sigma_w2 = 2p`` (Pretorius et al.
2018), where ``q*`` also turns infinite. Derivation: docs/architectures.md.
The maps and their propagation are :func:`meanfield.q_map`,
:func:`meanfield.c_map` and :func:`meanfield.propagate` with ``keep_prob``.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from meanfield import _checks, _variants
from meanfield._integrals import as_arrays, second_moments
from meanfield.activations import activation as _activation
from meanfield.depth import depth_scale
from meanfield.fixed_points import q_star as _q_star
from meanfield.network import accepts_network

__all__ = ["dropout_fixed_point", "DropoutFixedPoint"]

Array = jax.Array
ArrayLike = Any
_PLAIN = _variants.Variant(residual=False, layer_norm=False)


class DropoutFixedPoint(NamedTuple):
  """The fixed point of an MLP with dropout (fields of one shape).

  Attributes:
    q_star: the stable length (inf where it diverges: ReLU at ``sigma_w2 >= 2p``
      with ``sigma_b2 > 0``).
    c_star: the stable correlation, ``< 1``.
    chi_c: the c-map's slope at ``c_star``, ``< 1``.
    chi_1: the per-layer factor of ``|dL/dh^l|^2``, ``(sigma_w2 / p) E[phi'(u)^2]``
      at ``q_star``; 1 on the critical line.
    xi_c: ``-1 / log(chi_c)``, finite.
  """

  q_star: Array
  c_star: Array
  chi_c: Array
  chi_1: Array
  xi_c: Array


def _checked(fn_name, keep_prob, sigma_w2, sigma_b2):
  _, _, keep_prob = _variants.check_variant(fn_name, residual=False, alpha=1.0, norm=None,
                                            keep_prob=keep_prob)
  return (keep_prob, *_checks.hyperparameters(sigma_w2, sigma_b2))


@functools.partial(jax.jit, static_argnames=("act",))
def _fixed_point(act, sigma_w2, sigma_b2, keep_prob):
  sigma_w2, sigma_b2, keep_prob = as_arrays(sigma_w2, sigma_b2, keep_prob)
  q = _q_star(sigma_w2=sigma_w2 / keep_prob, sigma_b2=sigma_b2, activation=act)
  c_star, chi_c, _ = _variants.correlation_root(act, _PLAIN, sigma_w2, sigma_b2, keep_prob, q,
                                                closed=False)
  chi_1 = sigma_w2 / keep_prob * second_moments(act, q)[1]
  # keep_prob = 1 at q* = 0: the plain MLP's ordered-phase values (meanfield.c_star, chi_c)
  plain = (keep_prob == 1) & (q == 0)
  c_star, chi_c = jnp.where(plain, 1, c_star), jnp.where(plain, chi_1, chi_c)
  return DropoutFixedPoint(q_star=q, c_star=c_star, chi_c=chi_c, chi_1=chi_1,
                           xi_c=depth_scale(chi_c))


@accepts_network(supports=("keep_prob",))
def dropout_fixed_point(*, sigma_w2: ArrayLike, sigma_b2: ArrayLike, activation: Any,
                        keep_prob: ArrayLike) -> DropoutFixedPoint:
  """``q*``, ``c*``, ``chi_c``, ``chi_1`` and ``xi_c`` of an MLP with dropout.

  ``q*`` is :func:`meanfield.q_star` at ``sigma_w2 / p``; ``c*`` by bisection
  on ``[0, 1]`` (the c-map is increasing and convex there, with
  ``C(1) < 1``: one fixed point), about ``1e-15`` in float64; ``chi_c`` by
  Price's theorem. Where ``q*`` is infinite the c-map has no length to be
  evaluated at and ``c_star``, ``chi_c``, ``xi_c`` are nan (ReLU's c-map is
  the same at every length: evaluate :func:`meanfield.c_map` with
  ``keep_prob`` at any ``q``).
  Where ``q* = 0`` (``sigma_b2 = 0``, ordered) ``c*``, ``chi_c`` and ``xi_c``
  are those of the c-map's limit ``q -> 0+`` (:func:`meanfield.c_map` at
  ``q = 0``: ReLU's at any length, ``p c`` for a smooth ``phi`` with
  ``phi(0) = 0``); with ``keep_prob = 1`` the plain MLP's (``c* = 1``,
  ``chi_c = chi_1``).

  Returns:
    A :class:`DropoutFixedPoint`, broadcast shape of the arguments.
  """
  act = _activation(activation)
  keep_prob, sigma_w2, sigma_b2 = _checked("dropout_fixed_point", keep_prob, sigma_w2, sigma_b2)
  return _fixed_point(act, sigma_w2, sigma_b2, keep_prob)
