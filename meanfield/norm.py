"""Normalised MLPs: LayerNorm's correlation map, and BatchNorm's gradient rate.

**LayerNorm** before the nonlinearity, as ``empirical.models.forward(norm="layer")``
does it: ``h^l = W^l phi(nu(h^{l-1})) + b^l`` with
``nu(h) = gamma (h - mean(h)) / sqrt(var(h) + eps) + beta`` over the ``N``
units of one input (``gamma = 1``, ``beta = 0`` at initialisation). At
infinite width the mean over units is 0 and the variance ``q^{l-1}``, so
``nu(h^{l-1})`` has length exactly 1 whatever ``q^{l-1}`` (``eps = 1e-6``
is neglected) and keeps the correlation ``c^{l-1}``. Hence for ``l >= 2``

.. math::

  q^l = q_{LN} = \\sigma_w^2 E[\\phi(z)^2] + \\sigma_b^2, \\qquad
  c^l = \\frac{\\sigma_w^2 E[\\phi(z_1)\\phi(z_2)] + \\sigma_b^2}{q_{LN}},

``z`` standard, ``(z1, z2)`` of correlation ``c^{l-1}``: the length is
fixed after one layer, and the c-map alone (the plain c-map at length 1,
divided by ``q_LN``) carries the signal. Its slope at ``c = 1`` is
``chi_1 = sigma_w2 E[phi'(z)^2] / q_LN``; ``c* = 1`` is stable where
``chi_1 <= 1``, else a second fixed point ``c* < 1`` attracts. The
experiment's ``h^l`` (what ``q`` measures) is the pre-normalisation
pre-activation, of length ``q_LN``; the normalised ``nu(h^l)`` has length 1
and the same correlation. Derivation: docs/architectures.md. The fixed point
(``q_LN``, ``c*``, ``chi_c``, ``chi_1``, ``xi_c``) is
:func:`meanfield.fixed_point` with ``norm="layer"``.

**BatchNorm** normalises each unit over the batch, so the inputs of a batch
interact and the two-input maps above do not close. What is simple is the
gradient explosion at initialisation (Yang et al. 2019, "A mean field theory
of batch normalization", Thm. 3.10 and Sec. 3.2 for the linear case): for a
linear activation the backward pass multiplies ``|dL/dh|^2`` by
``(B - 2) / (B - 3)`` per layer, whatever ``sigma_w2`` and ``sigma_b2``
(:func:`batchnorm_gradient_factor`). For nonlinear activations the rate
depends on the ``B x B`` Gram fixed point of the forward pass, which has
no closed form; docs/architectures.md gives measured rates.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from meanfield import _checks, _variants
from meanfield._integrals import as_arrays
from meanfield.activations import activation as _activation
from meanfield.maps import Propagation
from meanfield.network import Network, accepts_network

__all__ = ["layernorm_c_map", "layernorm_propagate", "batchnorm_gradient_factor"]

Array = jax.Array
ArrayLike = Any
_LAYER = _variants.Variant(residual=False, layer_norm=True)


def _norm_checked(fn_name, norm, sigma_w2, sigma_b2):
  _variants.require(fn_name, "norm", norm, "layer", "the theory of LayerNorm networks")
  return _checks.hyperparameters(sigma_w2, sigma_b2)


@functools.partial(jax.jit, static_argnames=("act",))
def _c_map(act, c, sigma_w2, sigma_b2):
  c, sigma_w2, sigma_b2 = as_arrays(c, sigma_w2, sigma_b2)
  return _variants.layer(act, _LAYER, sigma_w2, sigma_b2, 1.0, 1.0, jnp.ones_like(c), c)


@accepts_network(supports=("norm",))
def layernorm_c_map(c: ArrayLike, *, sigma_w2: ArrayLike, sigma_b2: ArrayLike,
                    activation: Any, norm: str = "layer") -> Array:
  """``c^{l-1} -> c^l`` of a LayerNorm MLP, whatever ``q^{l-1}`` (see the module docstring).

  Args:
    c: correlation in ``[-1, 1]``.
    sigma_w2, sigma_b2: weight and bias variances, ``>= 0``.
    activation: a name, an Activation or a callable.
    norm: must be ``"layer"`` (it is there to refuse another ``Network``).

  Returns:
    ``c^l``, broadcast shape of the arguments; ``c = 1`` maps to 1.
  """
  act = _activation(activation)
  c = _checks.correlation("c", c)
  sigma_w2, sigma_b2 = _norm_checked("layernorm_c_map", norm, sigma_w2, sigma_b2)
  return _c_map(act, c, sigma_w2, sigma_b2)[1]


@accepts_network(supports=("norm", "residual", "alpha", "keep_prob"))
def layernorm_propagate(*, q_input: ArrayLike, c_input: ArrayLike, depth: int,
                        sigma_w2: ArrayLike, sigma_b2: ArrayLike, activation: Any,
                        norm: str = "layer", residual: bool = False, alpha: ArrayLike = 1.0,
                        keep_prob: ArrayLike = 1.0) -> Propagation:
  """``q^l``, ``c^l`` and the gradient factor of a LayerNorm MLP, layer by layer.

  Layer 1 is affine in the input (as in :func:`meanfield.propagate`); then
  ``q^l = q_LN`` and ``c^l = layernorm_c_map(c^{l-1})``. ``residual=True``
  (with ``alpha``) and ``keep_prob < 1`` combine as in
  :func:`meanfield.residual_propagate`.

  Returns:
    A :class:`meanfield.Propagation` (shape ``batch + (depth,)``) whose
    ``chi_1`` is the per-layer factor ``|dL/dh^l|^2 / |dL/dh^{l+1}|^2 =
    sigma_w2 E[phi'(z)^2] / q^l`` (the LayerNorm's Jacobian divides by
    ``sqrt(q^l)``), ``1 +`` that times ``alpha^2`` for a residual network.
  """
  _variants.require("layernorm_propagate", "norm", norm, "layer",
                    "the theory of LayerNorm networks")
  return _variants.checked_propagate(
      "layernorm_propagate", activation=activation, depth=depth, q_input=q_input,
      c_input=c_input, sigma_w2=sigma_w2, sigma_b2=sigma_b2, residual=residual, alpha=alpha,
      norm="layer", keep_prob=keep_prob)


def batchnorm_gradient_factor(network: Network | None = None, /, *, n_inputs: ArrayLike,
                              activation: Any = None) -> Array:
  """Per-layer growth of ``|dL/dh^l|^2`` backwards through a deep linear BatchNorm MLP.

  .. math:: \\lambda = \\frac{B - 2}{B - 3}

  for batch size ``B = n_inputs > 3`` (Yang et al. 2019, linear case; the
  derivation is in docs/architectures.md): BatchNorm's Jacobian for one
  unit is ``(I - y y^T / B) P / std``, ``P`` the centring; the projection
  keeps ``(B - 2)/(B - 1)`` of an isotropic gradient, and at the forward
  fixed point ``E[1/std^2] = (B - 1) / ((B - 3) sigma_w2)`` (an inverse
  chi-square with ``B - 1`` degrees of freedom), which cancels ``sigma_w2``.
  Deep BatchNorm networks thus have exploding gradients at initialisation
  whatever the variances.

  Args:
    network: optionally a :class:`meanfield.Network` with ``norm="batch"``
      and no other variant, which gives ``activation`` (its variances cancel).
    n_inputs: the batch size ``B``, an integer ``> 3`` (or an array of them).
    activation: must be ``"linear"`` (the default): for other activations
      the rate depends on the forward Gram fixed point, which has no closed
      form.

  Returns:
    ``lambda``, float, shape of ``n_inputs``.
  """
  if network is not None:
    activation = _batchnorm_network(network, activation)
  name = getattr(_activation("linear" if activation is None else activation), "name", None)
  if name != "linear":
    raise ValueError(f"`activation` must be 'linear' for batchnorm_gradient_factor (the case "
                     f"with a closed form), got {activation!r}")
  _checks.real("n_inputs", n_inputs)
  b = np.asarray(n_inputs)
  if b.dtype.kind not in "iu" or np.any(b <= 3):
    raise ValueError(f"`n_inputs` must be an integer > 3 (the batch size), got {n_inputs!r}")
  b = jnp.asarray(b, float)
  return (b - 2) / (b - 3)


def _batchnorm_network(network, activation):
  """The activation of a BatchNorm ``network`` (raises for any other argument)."""
  if not isinstance(network, Network):
    raise ValueError(f"`network` of `batchnorm_gradient_factor` must be a meanfield.Network "
                     f"(its other arguments are keywords), got {network!r}")
  if network.norm != "batch" or network.residual or network.keep_prob != 1.0 \
      or network.alpha != 1.0:
    raise ValueError(
        f"`network` of `batchnorm_gradient_factor` must be a BatchNorm MLP (norm='batch', no "
        f"residual or dropout), got norm={network.norm!r}, residual={network.residual!r}, "
        f"keep_prob={network.keep_prob!r}")
  if activation is not None:
    raise ValueError(f"`activation` must not be given with `network` (which has "
                     f"activation={network.activation!r}), got {activation!r}")
  return network.activation
