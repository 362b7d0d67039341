"""Depth scales of signal propagation (Schoenholz et al. 2017, Sec. 3-5).

Near the fixed points, ``|q^l - q*| ~ exp(-l / xi_q)`` and
``|c^l - c*| ~ exp(-l / xi_c)`` with

.. math::

  \\xi_q^{-1} = -\\log\\bigl(\\chi_1 + \\sigma_w^2 E[\\phi''(u)\\phi(u)]\\bigr), \\qquad
  \\xi_c^{-1} = -\\log \\chi_c,

at ``u = sqrt(q*) z`` (Eqs. 5 and 9). The argument of the first logarithm is
the slope of the q-map at ``q*`` (:func:`meanfield.q_map_slope`, which counts
the delta functions of ``phi''`` at kinks). ``xi_c`` diverges at
criticality (``chi_c = 1``); networks train up to a depth of about
``6 xi_c`` (their Fig. 5). Gradients scale as ``chi_1^(L - l)``, which gives
the gradient depth scale ``1 / |log chi_1|`` (Sec. 5).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from meanfield import _checks
from meanfield._fixed_points import c_root, chi_1_at, depth_scale, q_star, xi_q
from meanfield._integrals import as_arrays, length_map_slope, second_moments
from meanfield.activations import activation as _activation
from meanfield.network import MLP, Architecture, accepts_network, check_variants, stationary_inputs

__all__ = ["DepthScales", "depth_scales", "depth_scale", "gradient_depth_scale"]

Array = jax.Array
ArrayLike = Any


class DepthScales(NamedTuple):
  """``xi_q`` and ``xi_c`` (layers), arrays of one shape; inf at criticality, nan where q* is infinite.

  ``extra``: ``None`` for the MLP; an architecture's own values, a dict of
  arrays. :class:`meanfield.Conv`: ``xi_q``, ``xi_c`` per mode ``batch +
  (n,)`` and ``extra={"eigenvalue": lambda_f (n,), "slope_q": ..., "slope_c": ...}``.

  ``xi_1`` and ``xi_star``: the NTK's trainability and generalization depth
  scales (Xiao, Pennington & Schoenholz 2020; docs/ntk.md), the plain MLP's
  only (``None`` for another architecture): ``xi_1 = -1/log chi_1`` (inf
  where ``chi_1 >= 1``), ``xi_star = -1/(log chi_c - log chi_1)`` (inf in the
  ordered phase, where ``c* = 1`` and ``chi_c = chi_1``).
  """

  xi_q: Array
  xi_c: Array
  extra: dict | None = None
  xi_1: Array | None = None
  xi_star: Array | None = None


def _ntk_scales(c_star, chi_c, chi_1):
  """``(xi_1, xi_star)`` from ``c*``, ``chi_c`` and ``chi_1`` (docs/ntk.md); ``c* = 1`` where
  ``chi_1 <= 1`` (the c-map is convex), whatever the bisection's last bits say."""
  ordered = (c_star >= 1) | (chi_1 <= 1)
  ratio = jnp.where(ordered, jnp.ones_like(chi_c), chi_c / chi_1)
  return depth_scale(chi_1), depth_scale(ratio)


@functools.partial(jax.jit, static_argnames=("act",))
def _depth_scales(act, sigma_w2, sigma_b2):
  sigma_w2, sigma_b2 = as_arrays(sigma_w2, sigma_b2)
  q = q_star(sigma_w2=sigma_w2, sigma_b2=sigma_b2, activation=act)
  # no fixed length (q* = inf): no c* either; nan is what the traced path gives there
  finite_q = jnp.where(jnp.isinf(q), jnp.nan, q)
  root, chi_c = c_root(act, sigma_w2, sigma_b2, finite_q)
  xi_1, xi_star = _ntk_scales(root.value, chi_c, sigma_w2 * second_moments(act, q)[1])
  return DepthScales(xi_q=depth_scale(length_map_slope(act, sigma_w2, q)),
                     xi_c=depth_scale(chi_c), xi_1=xi_1, xi_star=xi_star)


@accepts_network
def depth_scales(*, sigma_w2: ArrayLike, sigma_b2: ArrayLike, activation: Any,
                 q_input: ArrayLike | None = None, c_input: ArrayLike | None = None,
                 arch: Architecture = MLP()) -> DepthScales:
  """The depth scales ``xi_q`` and ``xi_c`` at the fixed points ``(q*, c*)`` (Schoenholz et al. 2017).

  Args:
    sigma_w2, sigma_b2: weight and bias variances (``>= 0``), broadcast.
    activation: a name, an Activation or a callable.
    arch: the architecture value (:class:`meanfield.network.Architecture`):
      the plain :class:`meanfield.MLP` (default; its variants are not
      covered here), or another whose ``depth_scales`` hook answers. ``meanfield.Conv(kernel_size=k, spatial_size=n)``: the depth
      scales of the Fourier modes of the covariance (docs/conv.md), mode axis
      last: ``xi_c = -1/log|chi_c lambda_f|``, mode 0 the MLP's; ``extra``
      holds ``eigenvalue`` ``lambda_f`` ``(n,)`` and the per-mode slopes
      ``slope_q = q_map'(q*) lambda_f``, ``slope_c = chi_c lambda_f``.
      ``meanfield.RNN(...)``: ``xi_q``, ``xi_c`` in time steps, with
      ``extra={"xi_grad": -1/log chi_1}``.
    q_input, c_input: the input's length and cosine where the architecture's
      stationary state reads them (the RNN's; as :func:`meanfield.fixed_point`).

  Example::

    meanfield.depth_scales(sigma_w2=1.05, sigma_b2=2.01e-5, activation="tanh",
                           arch=meanfield.Conv(kernel_size=3, spatial_size=16)).xi_c  # (16,)

  Returns:
    :class:`DepthScales` of the broadcast shape and floating dtype of the
    arguments. ``xi_c = -1/log(chi_c)`` (``chi_c = chi_1`` in the ordered
    phase), inf at criticality; nan where ``q*`` is infinite. For the MLP
    also the NTK's ``xi_1`` and ``xi_star`` (:class:`DepthScales`).
  """
  act = _activation(activation)
  sigma_w2, sigma_b2 = _checks.hyperparameters(sigma_w2, sigma_b2)
  check_variants("depth_scales", arch)
  inputs = stationary_inputs("depth_scales", arch, q_input=q_input, c_input=c_input)
  if not isinstance(arch, MLP):
    return arch.depth_scales(act, sigma_w2, sigma_b2, **inputs)
  if any(_checks.concrete(x) is None for x in (sigma_w2, sigma_b2)):
    return _depth_scales(act, sigma_w2, sigma_b2)              # traced: one program
  # concrete: in steps, so that c* compiles its 2-D quadrature only where it is needed
  q = q_star(sigma_w2=sigma_w2, sigma_b2=sigma_b2, activation=act)
  # no fixed length (q* = inf): no c* either; nan is what the traced path gives there
  finite_q = jnp.where(jnp.isinf(q), jnp.nan, q)
  root, chi_c = c_root(act, sigma_w2, sigma_b2, finite_q)
  xi_1, xi_star = _ntk_scales(root.value, chi_c, chi_1_at(act, q, sigma_w2, sigma_b2))
  return DepthScales(xi_q=xi_q(act, sigma_w2, q), xi_c=depth_scale(chi_c), xi_1=xi_1,
                     xi_star=xi_star)


@functools.partial(jax.jit, static_argnames=("act",))
def _gradient_depth_scale(act, sigma_w2, sigma_b2):
  sigma_w2, sigma_b2 = as_arrays(sigma_w2, sigma_b2)
  q = q_star(sigma_w2=sigma_w2, sigma_b2=sigma_b2, activation=act)
  chi = sigma_w2 * second_moments(act, q)[1]
  return depth_scale(jnp.exp(-jnp.abs(jnp.log(chi))))


@accepts_network
def gradient_depth_scale(*, sigma_w2: ArrayLike, sigma_b2: ArrayLike, activation: Any) -> Array:
  """``1 / |log chi_1|``: gradients grow or shrink by ``e`` over this many layers (Schoenholz et al. 2017, Sec. 5).

  inf at criticality. Broadcast shape and dtype of the arguments.
  """
  act = _activation(activation)
  sigma_w2, sigma_b2 = _checks.hyperparameters(sigma_w2, sigma_b2)
  return _gradient_depth_scale(act, sigma_w2, sigma_b2)
