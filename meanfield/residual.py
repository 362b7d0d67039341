"""Residual MLPs at infinite width: length and correlation maps and their slow dynamics.

The network of ``empirical.models.forward(residual=True)`` (``alpha = 1``),
with a branch scale ``alpha`` (Yang & Schoenholz 2017, "Mean field residual
networks: on the edge of chaos", Sec. 3, reduced residual network):

.. math::

  h^1 = W^1 x + b^1, \\qquad
  h^l = h^{l-1} + \\alpha (W^l \\phi(h^{l-1}) + b^l) \\quad (l \\ge 2).

``W^l`` is fresh and has mean zero, so the skip and the branch are
uncorrelated and their second moments add:

.. math::

  q^l = q^{l-1} + \\alpha^2 (\\sigma_w^2 E[\\phi(u)^2] + \\sigma_b^2), \\qquad
  q^l c^l = q^{l-1} c^{l-1} + \\alpha^2 (\\sigma_w^2 E[\\phi(u_1)\\phi(u_2)] + \\sigma_b^2),

with ``u, u1, u2`` of variance ``q^{l-1}`` and correlation ``c^{l-1}``. There
is no fixed point: ``q^l`` grows (geometrically for ReLU, by
``1 + alpha^2 sigma_w2 / 2`` per layer; linearly for tanh and erf, by
``alpha^2 (sigma_w2 + sigma_b2)``), and ``c^l`` drifts polynomially in ``l``
to its limit: 1 for ReLU (``1 - c^l ~ 9 pi^2 (1 + a)^2 / (2 a^2 l^2)``,
``a = alpha^2 sigma_w2 / 2``, ``sigma_b2 = 0``), and for tanh and erf the
stable root ``c_inf < 1`` of ``(2/pi) sigma_w2 arcsin(c) + sigma_b2 =
(sigma_w2 + sigma_b2) c``, approached like ``l^{-(1 - g'(c_inf))}``. The
derivations are in docs/architectures.md, checked in tests/meanfield/test_residual.py.

All functions broadcast over their array arguments (``alpha`` too), compile
once per activation (and depth), and take a :class:`meanfield.Network` with
``residual=True``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax

from meanfield import _checks, _variants
from meanfield._integrals import as_arrays
from meanfield.activations import activation as _activation
from meanfield.maps import Propagation
from meanfield.network import accepts_network

__all__ = ["residual_q_map", "residual_c_map", "residual_propagate"]

Array = jax.Array
ArrayLike = Any
_RESIDUAL = _variants.Variant(residual=True, layer_norm=False)


def _checked(fn_name, residual, alpha, sigma_w2, sigma_b2):
  _variants.require(fn_name, "residual", residual, True, "the theory of residual networks")
  _, alpha, _ = _variants.check_variant(fn_name, residual=True, alpha=alpha, norm=None,
                                        keep_prob=1.0)
  return (alpha, *_checks.hyperparameters(sigma_w2, sigma_b2))


@functools.partial(jax.jit, static_argnames=("act",))
def _maps(act, q, c, sigma_w2, sigma_b2, alpha):
  q, c, sigma_w2, sigma_b2, alpha = as_arrays(q, c, sigma_w2, sigma_b2, alpha)
  return _variants.layer(act, _RESIDUAL, sigma_w2, sigma_b2, alpha, 1.0, q, c)


@accepts_network(supports=("residual", "alpha"))
def residual_q_map(q: ArrayLike, *, sigma_w2: ArrayLike, sigma_b2: ArrayLike, activation: Any,
                   alpha: ArrayLike = 1.0, residual: bool = True) -> Array:
  """``q -> q + alpha^2 (sigma_w2 E[phi(sqrt(q) z)^2] + sigma_b2)`` (Yang & Schoenholz 2017, Eq. 4).

  Args:
    q: the length ``q^{l-1}``, ``>= 0``.
    sigma_w2, sigma_b2: weight and bias variances, ``>= 0``.
    activation: a name, an Activation or a callable.
    alpha: the branch scale, ``> 0`` (1 in ``empirical``'s residual MLP).
    residual: must be True (it is there to refuse a plain ``Network``).

  Returns:
    ``q^l``, broadcast shape of the arguments.
  """
  act = _activation(activation)
  q = _checks.nonnegative("q", q, "a length")
  alpha, sigma_w2, sigma_b2 = _checked("residual_q_map", residual, alpha, sigma_w2, sigma_b2)
  return _maps(act, q, 1.0, sigma_w2, sigma_b2, alpha)[0]


@accepts_network(supports=("residual", "alpha"))
def residual_c_map(c: ArrayLike, *, q: ArrayLike, sigma_w2: ArrayLike, sigma_b2: ArrayLike,
                   activation: Any, alpha: ArrayLike = 1.0, residual: bool = True) -> Array:
  """``c^{l-1} -> c^l`` at the length ``q = q^{l-1}`` of both inputs.

  .. math:: c^l = \\frac{q c + \\alpha^2 (\\sigma_w^2 E[\\phi(u_1)\\phi(u_2)] + \\sigma_b^2)}
                        {q + \\alpha^2 (\\sigma_w^2 E[\\phi(u)^2] + \\sigma_b^2)}

  Unlike the plain c-map it needs ``q`` (there is no fixed length). Same
  arguments as :func:`residual_q_map`, plus ``c`` in ``[-1, 1]``; ``c = 1``
  maps to 1.
  """
  act = _activation(activation)
  c = _checks.correlation("c", c)
  q = _checks.nonnegative("q", q, "a length")
  alpha, sigma_w2, sigma_b2 = _checked("residual_c_map", residual, alpha, sigma_w2, sigma_b2)
  return _maps(act, q, c, sigma_w2, sigma_b2, alpha)[1]


@accepts_network(supports=("residual", "alpha", "norm", "keep_prob"))
def residual_propagate(*, q_input: ArrayLike, c_input: ArrayLike, depth: int,
                       sigma_w2: ArrayLike, sigma_b2: ArrayLike, activation: Any,
                       alpha: ArrayLike = 1.0, residual: bool = True, norm: str | None = None,
                       keep_prob: ArrayLike = 1.0) -> Propagation:
  """``q^l``, ``c^l`` and the gradient factor of a residual MLP, layer by layer.

  Layer 1 is affine in the input, as in :func:`meanfield.propagate`
  (``q^1 = sigma_w2 q_input + sigma_b2``); layers ``2..depth`` apply
  :func:`residual_c_map` and :func:`residual_q_map`. ``norm="layer"`` puts
  a LayerNorm before ``phi`` (the branch's integrals at length 1, see
  :mod:`meanfield.norm`) and ``keep_prob < 1`` dropout on the branch's
  post-activations (:mod:`meanfield.dropout`), as ``empirical.models.forward``
  does. Uses ``lax.scan`` (one compile per activation, variant and depth).

  Args:
    q_input, c_input: the inputs' length ``|x|^2 / N_0`` and cosine.
    depth: number of layers ``>= 1``.
    sigma_w2, sigma_b2, activation, alpha: as in :func:`residual_q_map`.
    residual: must be True.
    norm: ``None`` or ``"layer"``.
    keep_prob: dropout keep probability in ``(0, 1]``.

  Returns:
    A :class:`meanfield.Propagation`, fields of shape ``batch + (depth,)``:
    ``q^l``, ``c^l``, and in ``chi_1`` the per-layer gradient factor
    ``|dL/dh^l|^2 / |dL/dh^{l+1}|^2 = 1 + alpha^2 sigma_w2 E[phi'(u)^2]``
    (``u`` of variance ``q^l``; mean-field gradient independence).
  """
  _variants.require("residual_propagate", "residual", residual, True,
                    "the theory of residual networks")
  return _variants.checked_propagate(
      "residual_propagate", activation=activation, depth=depth, q_input=q_input,
      c_input=c_input, sigma_w2=sigma_w2, sigma_b2=sigma_b2, residual=True, alpha=alpha,
      norm=norm, keep_prob=keep_prob)
