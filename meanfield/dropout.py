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
The fixed point is :func:`meanfield.fixed_point` with ``keep_prob=p``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from meanfield import _checks, _variants
from meanfield._integrals import as_arrays
from meanfield.activations import activation as _activation
from meanfield.fixed_points import q_star as _q_star
from meanfield.maps import Propagation
from meanfield.network import accepts_network

__all__ = ["dropout_q_map", "dropout_c_map", "dropout_propagate"]

Array = jax.Array
ArrayLike = Any
_PLAIN = _variants.Variant(residual=False, layer_norm=False)


def _checked(fn_name, keep_prob, sigma_w2, sigma_b2):
  _, _, keep_prob = _variants.check_variant(fn_name, residual=False, alpha=1.0, norm=None,
                                            keep_prob=keep_prob)
  return (keep_prob, *_checks.hyperparameters(sigma_w2, sigma_b2))


def _length(q, sigma_w2, sigma_b2, keep_prob, act):
  if q is None:
    return _q_star(sigma_w2=jnp.asarray(sigma_w2) / jnp.asarray(keep_prob), sigma_b2=sigma_b2,
                   activation=act)
  return _checks.nonnegative("q", q, "a length")


@functools.partial(jax.jit, static_argnames=("act",))
def _maps(act, q, c, sigma_w2, sigma_b2, keep_prob):
  q, c, sigma_w2, sigma_b2, keep_prob = as_arrays(q, c, sigma_w2, sigma_b2, keep_prob)
  return _variants.layer(act, _PLAIN, sigma_w2, sigma_b2, 1.0, keep_prob, q, c)


@accepts_network(supports=("keep_prob",))
def dropout_q_map(q: ArrayLike, *, sigma_w2: ArrayLike, sigma_b2: ArrayLike, activation: Any,
                  keep_prob: ArrayLike) -> Array:
  """``q -> (sigma_w2 / p) E[phi(sqrt(q) z)^2] + sigma_b2`` (Schoenholz et al. 2017, Eq. 18).

  Args:
    q: the length ``q^{l-1}``, ``>= 0``.
    sigma_w2, sigma_b2: weight and bias variances, ``>= 0``.
    activation: a name, an Activation or a callable.
    keep_prob: ``p`` in ``(0, 1]``.

  Returns:
    ``q^l``, broadcast shape of the arguments.
  """
  act = _activation(activation)
  q = _checks.nonnegative("q", q, "a length")
  keep_prob, sigma_w2, sigma_b2 = _checked("dropout_q_map", keep_prob, sigma_w2, sigma_b2)
  return _maps(act, q, 1.0, sigma_w2, sigma_b2, keep_prob)[0]


@accepts_network(supports=("keep_prob",))
def dropout_c_map(c: ArrayLike, *, sigma_w2: ArrayLike, sigma_b2: ArrayLike, activation: Any,
                  keep_prob: ArrayLike, q: ArrayLike | None = None) -> Array:
  """``c -> (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) / dropout_q_map(q)``.

  Schoenholz et al. 2017, Eq. 19.

  Args:
    c: correlation in ``[-1, 1]``.
    sigma_w2, sigma_b2, activation, keep_prob: as in :func:`dropout_q_map`.
    q: the inputs' length; default the dropout network's ``q*``.

  Returns:
    ``c^l``, broadcast shape of the arguments; below 1 at ``c = 1`` for ``p < 1``.
  """
  act = _activation(activation)
  c = _checks.correlation("c", c)
  keep_prob, sigma_w2, sigma_b2 = _checked("dropout_c_map", keep_prob, sigma_w2, sigma_b2)
  q = _length(q, sigma_w2, sigma_b2, keep_prob, act)
  return _maps(act, q, c, sigma_w2, sigma_b2, keep_prob)[1]


@accepts_network(supports=("keep_prob", "residual", "alpha", "norm"))
def dropout_propagate(*, q_input: ArrayLike, c_input: ArrayLike, depth: int,
                      sigma_w2: ArrayLike, sigma_b2: ArrayLike, activation: Any,
                      keep_prob: ArrayLike, residual: bool = False, alpha: ArrayLike = 1.0,
                      norm: str | None = None) -> Propagation:
  """``q^l``, ``c^l`` and the gradient factor of an MLP with dropout, layer by layer.

  Layer 1 is affine in the (undropped) input, as in :func:`meanfield.propagate`;
  layers ``2..depth`` apply :func:`dropout_q_map` and :func:`dropout_c_map`.
  ``residual``/``alpha`` and ``norm="layer"`` combine as in
  :func:`meanfield.residual_propagate`.

  Returns:
    A :class:`meanfield.Propagation` (shape ``batch + (depth,)``) whose
    ``chi_1`` is the per-layer factor ``(sigma_w2 / p) E[phi'(u)^2]`` of
    ``|dL/dh^l|^2`` (``u`` of variance ``q^l``).
  """
  return _variants.checked_propagate(
      "dropout_propagate", activation=activation, depth=depth, q_input=q_input,
      c_input=c_input, sigma_w2=sigma_w2, sigma_b2=sigma_b2, residual=residual, alpha=alpha,
      norm=norm, keep_prob=keep_prob)
