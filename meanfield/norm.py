"""Normalised MLPs: BatchNorm's gradient rate; LayerNorm's theory lives in the generic functions.

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
and the same correlation. Derivation: docs/architectures.md. The maps and
their propagation are :func:`meanfield.q_map`, :func:`meanfield.c_map` and
:func:`meanfield.propagate` with ``arch=meanfield.MLP(norm="layer")``; the
fixed point (``q_LN``, ``c*``, ``chi_c``, ``chi_1``, ``xi_c``) is
:func:`meanfield.fixed_point` with the same ``arch``.

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

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from meanfield import _checks
from meanfield.activations import activation as _activation
from meanfield.network import MLP, Network

__all__ = ["batchnorm_gradient_factor"]

Array = jax.Array
ArrayLike = Any


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
    network: optionally a :class:`meanfield.Network` with
      ``arch=meanfield.MLP(norm="batch")`` and no other variant, which gives
      ``activation`` (its variances cancel).
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
  if not isinstance(network.arch, MLP) or network.arch.variants != {"norm": "batch"}:
    raise ValueError(
        f"`network` of `batchnorm_gradient_factor` must be a BatchNorm MLP "
        f"(arch=MLP(norm='batch'), no residual or dropout), got arch={network.arch!r}")
  if activation is not None:
    raise ValueError(f"`activation` must not be given with `network` (which has "
                     f"activation={network.activation!r}), got {activation!r}")
  return network.activation
