"""Mean-field theory of a vanilla recurrent network over time steps.

The network (Elman 1990), written for its pre-activations ``h_t`` as the
rest of the package writes a layer:

.. math::

  h_t = W \\phi(h_{t-1}) + U x_t + b, \\qquad t = 1, \\dots, T, \\qquad h_0 = 0,

with the recurrent matrix ``W`` (``N x N``) *tied*: the same at every step;
``W_ij ~ N(0, sigma_w2 / N)`` (``init="gaussian"``) or ``sqrt(sigma_w2)``
times a Haar orthogonal matrix (``init="orthogonal"``); input weights
``U_ij ~ N(0, sigma_u2 / N_in)``; bias ``b_i ~ N(0, sigma_b2)``. This is the
vanilla RNN of Chen, Pennington & Schoenholz 2018 ("Dynamical isometry and a
mean field theory of RNNs", ICML; its vanilla RNN), whose pre-activation ``e_t = W
h_{t-1} + V x_t + b`` (with ``h_t = phi(e_t)``) is the ``h_t`` here, their
``V`` our ``U`` and their ``sigma_v^2`` our ``sigma_u2``.

The inputs ``x_t^a`` of a sequence have ``|x_t|^2 / N_in = q_input`` at every
step; two sequences ``a, b`` have cosine ``c_input`` at every step. At
infinite width (the mean-field recursion of Chen et al. 2018, derived in docs/rnn.md):

.. math::

  q_t = \\sigma_w^2 E[\\phi(\\sqrt{q_{t-1}} z)^2] + \\sigma_u^2 q_{in} + \\sigma_b^2,
  \\qquad
  q^{ab}_t = \\sigma_w^2 E[\\phi(u_1)\\phi(u_2)] + \\sigma_u^2 q_{in} c_{in} + \\sigma_b^2,

``c_t = q^{ab}_t / q_t``: the feed-forward maps of :mod:`meanfield.maps` with
the input acting as a bias of variance ``sigma_u2 q_input`` (and covariance
``sigma_u2 q_input c_input``). The theory is the architecture value
:class:`RNN` (``sigma_u2``, ``tied``): a :class:`meanfield.Network` field
``arch`` or the keyword ``arch`` of the generic functions, which call its
hooks. Depth becomes time: a network's ``depth`` is the number of steps
``T``, its ``sigma_w2`` the recurrent variance, its ``init`` the recurrent
law::

  net = meanfield.Network(activation="tanh", sigma_w2=1.5, sigma_b2=0.05, depth=30,
                          arch=meanfield.RNN(sigma_u2=0.5))
  meanfield.propagate(net, q_input=1.0, c_input=0.3)   # q_t, c_t; .extra["grad_h2"]
  meanfield.fixed_point(net, q_input=1.0)              # q*, c*, chi_1, chi_c, xi_q, xi_c
  meanfield.jacobian_moments(activation="tanh", sigma_w2=1.5, sigma_b2=0.05,  # dh_T/dh_{T-k}
                             depth=np.arange(1, 31), arch=meanfield.RNN(sigma_u2=0.5))

Derivations, and what tying the weights changes, are in ``docs/rnn.md``:

- The forward recursion above holds for tied ``W`` as for untied (fresh at
  every step) at infinite width: Yang 2019 ("Wide feedforward or recurrent
  neural networks of any architecture are Gaussian processes", NeurIPS;
  Tensor Programs I) proves the tied RNN's kernel is this recursion. What
  tying changes forward is the correlation of *two time steps* of one
  sequence: tied, it is the c-map's fixed point; untied, only the bias's
  and inputs' share (``FixedPoint.extra["c_time"]``).
- Backward, ``E|dL/dh_t|^2 / E|dL/dh_T|^2 = prod_{s=t}^{T-1} chi_1(q_s)``,
  tied or not (gradient independence, Yang 2020, Tensor Programs II).
- The squared singular values of the time-step Jacobian ``dh_T / dh_{T-k}``
  (:func:`meanfield.jacobian_moments` with ``arch=RNN(...)``) come from free probability as for a depth-k
  MLP at ``q*``; their mean is exact for tied weights, their variance is
  exact for linear tied networks (powers of one matrix) and an untied
  approximation otherwise.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from meanfield import _checks, _solve
from meanfield._fixed_points import q_root, xi_q
from meanfield._integrals import as_arrays, correlation_map, pair_moments, second_moments
from meanfield.activations import Activation
from meanfield.depth import DepthScales, depth_scale
from meanfield.fixed_points import FixedPoint, q_star
from meanfield.maps import Propagation
from meanfield.network import Architecture
from meanfield.spectrum import JacobianMoments, jacobian_moments

__all__ = ["RNN"]

Array = jax.Array
ArrayLike = Any


def _drive(sigma_u2, q_input, c_input=None):
  """The input's statistics checked: ``(sigma_u2, q_input[, c_input])``."""
  out = (_checks.nonnegative("sigma_u2", sigma_u2),
         _checks.nonnegative("q_input", q_input, "a length"))
  if c_input is not None:
    out += (_checks.correlation("c_input", c_input),)
  return out


def _step(act, sigma_w2, b_self, gap, q, c):
  """One time step: ``(q_t, c_t)`` from ``(q_{t-1}, c_{t-1})``.

  ``b_self = sigma_u2 q_input + sigma_b2`` is the input's and bias's share of
  ``q_t``; ``gap = sigma_u2 q_input (1 - c_input)`` what the two sequences'
  inputs lack of it in ``q^{ab}_t``. The feed-forward c-map with bias
  ``b_self`` minus ``gap / q_t`` is the RNN's, with no cancellation near 1.
  """
  q_next, c_ff = correlation_map(act, sigma_w2, b_self, q, c)
  return q_next, c_ff - gap / q_next


@functools.partial(jax.jit, static_argnames=("act", "steps"))
def _propagate(act, steps, sigma_w2, sigma_u2, sigma_b2, q_input, c_input):
  """``(q, c, chi_1, grad_h2)``, each ``batch + (steps,)``."""
  sigma_w2, sigma_u2, sigma_b2, q_input, c_input = as_arrays(
      sigma_w2, sigma_u2, sigma_b2, q_input, c_input)
  b_self = sigma_u2 * q_input + sigma_b2
  gap = sigma_u2 * q_input * (1 - c_input)
  phi0 = act.fn(jnp.zeros((), sigma_w2.dtype))
  q1 = sigma_w2 * phi0 ** 2 + b_self                      # h_0 = 0 for both sequences
  c1 = 1 - gap / q1

  def step(carry, _):
    out = _step(act, sigma_w2, b_self, gap, *carry)
    return out, out

  _, (qs, cs) = jax.lax.scan(step, (q1, c1), None, length=steps - 1)
  qs = jnp.concatenate([q1[None], qs], axis=0)
  cs = jnp.concatenate([c1[None], cs], axis=0)
  chi = sigma_w2[None] * second_moments(act, qs)[1]
  # prod_{s=t}^{T-1} chi_s: reversed cumulative product of chi_1 .. chi_{T-1}, then 1.
  tail = jnp.cumprod(chi[:-1][::-1], axis=0)[::-1]
  grad = jnp.concatenate([tail, jnp.ones_like(chi[:1])], axis=0)
  last = lambda a: jnp.moveaxis(a, 0, -1)
  return last(qs), last(cs), last(chi), last(grad)


def _c_star(act, sigma_w2, b_self, gap, qs, chi):
  """``(c*, converged)`` of the RNN's c-map on the length ``qs`` (arrays of one shape).

  ``g(c) = C(c) - c`` has ``g(-1) >= 0`` and ``g(1) = -gap / q* <= 0``. Where
  ``gap > 0`` the root is bracketed by ``[-1, 1]``; where ``gap = 0`` (the
  feed-forward map) ``c* = 1`` if ``chi_1 <= 1`` (ordered, critical), else the
  root below 1 (chaotic: ``g < 0`` just below 1, where ``g' = chi_1 - 1 > 0``
  keeps Newton out). Safeguarded Newton (:mod:`meanfield._solve`) on stopped
  parameters, ``g' = sigma_w2 q* E[phi'(u1) phi'(u2)] / q_map(q*) - 1``; the
  gradient in the parameters comes from the implicit-function step.
  """
  stop = jax.lax.stop_gradient
  s_w2, s_b, s_gap, s_q = stop(sigma_w2), stop(b_self), stop(gap), stop(qs)

  def f_and_df(c):
    q_next, c_next = _step(act, s_w2, s_b, s_gap, s_q, c)
    dd = pair_moments(act, s_q, c, derivative=True)[2]
    return c_next - c, s_w2 * s_q * dd / q_next - 1

  ones = jnp.ones_like(qs)
  active = jnp.isfinite(qs) & ((gap > 0) | (chi > 1))
  f_lo, _ = f_and_df(jnp.where(active, -ones, 0.0))
  f_hi, _ = f_and_df(jnp.where(active, ones, 0.0))
  # regula falsi of [-1, 1] where g(1) < 0; 0 where g(1) = 0 (the root at 1 is not the one)
  x0 = jnp.where(active & (f_hi < 0), -1 + 2 * f_lo / jnp.where(active, f_lo - f_hi, 1), 0.0)
  cs, converged, _ = _solve.safeguarded_newton(f_and_df, -ones, ones, f_lo, f_hi, x0, active,
                                               _solve.rtol(qs.dtype))
  cs = jnp.where(active, cs, 1.0)

  def residual(c):      # c = 1/2 where unused (at c = 1 ReLU's closed forms have infinite slopes)
    c = jnp.where(c < 1, c, 0.5)
    return _step(act, sigma_w2, b_self, gap, qs, c)[1] - c

  slope = f_and_df(jnp.where(active, cs, 0.0))[1]
  cs = _solve.implicit_step(residual, cs, active & converged, slope)
  return jnp.where(jnp.isfinite(qs), cs, jnp.nan), converged | ~active


@functools.partial(jax.jit, static_argnames=("act",))
def _fixed_point(act, sigma_w2, sigma_u2, sigma_b2, q_input, c_input):
  sigma_w2, sigma_u2, sigma_b2, q_input, c_input = as_arrays(
      sigma_w2, sigma_u2, sigma_b2, q_input, c_input)
  b_self = sigma_u2 * q_input + sigma_b2
  gap = sigma_u2 * q_input * (1 - c_input)
  length = q_root(act, sigma_w2, b_self)
  qs = length.value
  chi = sigma_w2 * second_moments(act, qs)[1]
  cs, c_converged = _c_star(act, sigma_w2, b_self, gap, qs, chi)
  # c* = 1 takes chi_1 (evaluated at c = 1/2 there: no derivative of an unused branch at c = 1)
  dd = pair_moments(act, qs, jnp.where(jnp.isfinite(cs) & (cs != 1), cs, 0.5),
                    derivative=True)[2]
  chi_c = jnp.where(cs == 1, chi, sigma_w2 * dd)
  # -1/log chi_1, negative where gradients grow; depth_scale (inf, not -inf) where chi_1 <= 1
  growing = chi > 1
  xi_grad = jnp.where(growing, -1 / jnp.log(jnp.where(growing, chi, 2.0)), depth_scale(chi))
  # two time steps of one sequence, untied: the inputs' and bias's share (tied: c*)
  untied = (sigma_u2 * q_input * c_input + sigma_b2) / qs
  fields = (qs, cs, chi, chi_c, xi_q(act, sigma_w2, qs), depth_scale(chi_c),
            length.converged & c_converged)
  shape = jnp.broadcast_shapes(*(jnp.shape(f) for f in fields))
  fields = tuple(jnp.broadcast_to(f, shape) for f in fields)
  return fields, xi_grad, untied


@dataclasses.dataclass(frozen=True)
class RNN(Architecture):
  """A vanilla RNN over time steps (Chen et al. 2018): the architecture value of :class:`meanfield.Network`.

  ``Network(..., depth=T, arch=RNN(sigma_u2=0.5))``, or the keyword ``arch=``
  of :func:`meanfield.propagate`, :func:`meanfield.fixed_point`,
  :func:`meanfield.depth_scales` and :func:`meanfield.jacobian_moments`, gives
  the theory of the module docstring: ``depth`` is the number of time steps
  ``T``, ``sigma_w2`` and ``init`` the recurrent weights' variance and law,
  ``sigma_b2`` the bias.

  Attributes:
    sigma_u2: input weight variance ``>= 0`` (``U_ij`` variance times ``N_in``);
      a number or an array (it broadcasts with the variances, and
      ``jax.grad`` reaches it).
    tied: one recurrent ``W`` at every step (an RNN; default) or a fresh one
      per step. The forward maps, gradients and the mean Jacobian are the
      same at infinite width; what differs is the correlation of two time
      steps of one sequence (``FixedPoint.extra["c_time"]``) and, in
      experiments, what the Jacobian's variance is exact for.

  Inputs: ``q_input`` (``|x_t|^2 / N_in`` at every step, ``>= 0``) and
  ``c_input`` (the two sequences' inputs' cosine at every step, in
  ``[-1, 1]``): required by ``propagate``; ``fixed_point`` and
  ``depth_scales`` read them too (defaults 1 and 0: the stationary state of a
  driven network depends on its drive), ``jacobian_moments`` reads ``q_input``.

  Results (``batch`` the broadcast shape of the variances, inputs and ``sigma_u2``):

  - ``propagate``: a :class:`meanfield.Propagation` over the time steps
    ``batch + (T,)`` (index ``t - 1`` for step ``t``): ``q = q_t``, ``c = c_t``,
    ``chi_1 = sigma_w2 E[phi'(sqrt(q_t) z)^2]``, and ``extra={"grad_h2":
    E|dL/dh_t|^2 / E|dL/dh_T|^2 = prod_{s=t}^{T-1} chi_1(q_s)}`` for a loss at the
    last step (1 at ``t = T``; inf where out of range).
  - ``fixed_point``: a :class:`meanfield.FixedPoint`: ``q*``, ``c*`` (the limit
    of ``c_t``; below 1 in every phase where the inputs differ), ``chi_1``,
    ``chi_c``, ``xi_q``, ``xi_c = -1/log chi_c`` (the memory time scale of
    Chen et al. 2018), ``converged``; ``extra={"xi_grad": -1/log chi_1`` (steps
    over which gradients shrink by ``e``; negative where they grow, inf at
    ``chi_1 = 1``), ``"c_time"``: the correlation of ``h_t`` and ``h_{t+k}``
    (``k >= 1``) of one sequence whose inputs ``k`` apart have cosine
    ``c_input``: ``c*`` tied, ``(sigma_u2 q_input c_input + sigma_b2) / q*``
    untied}``.
  - ``depth_scales``: ``xi_q``, ``xi_c`` in steps, ``extra={"xi_grad": ...}``.
  - ``jacobian_moments``: the squared singular values of the time-step
    Jacobian ``dh_T / dh_{T-k}`` at ``k = depth`` (an array of lags gives each)
    at the stationary ``q*``: the depth-``k`` MLP's moments
    (Pennington et al. 2017), as Chen et al. 2018 treat the vanilla RNN. The
    mean is exact for tied weights, the variance for linear tied networks
    (powers of one matrix) and an untied approximation otherwise (docs/rnn.md).
  """

  sigma_u2: ArrayLike = 1.0
  tied: bool = True

  inputs = ("q_input", "c_input")
  stationary_inputs = ("q_input", "c_input")

  def __post_init__(self):
    if isinstance(self.sigma_u2, (list, tuple)):
      object.__setattr__(self, "sigma_u2", np.asarray(self.sigma_u2))
    _checks.check_nonnegative("sigma_u2", self.sigma_u2)
    if not isinstance(self.tied, (bool, np.bool_)):
      raise ValueError(f"`tied` must be True or False, got {self.tied!r}")
    object.__setattr__(self, "tied", bool(self.tied))

  def propagate(self, act: Activation, depth: int, sigma_w2, sigma_b2, *, q_input, c_input):
    """``q_t``, ``c_t`` from ``h_0 = 0`` through ``depth`` steps (Chen et al. 2018; docs/rnn.md).

    ``q_1 = sigma_w2 phi(0)^2 + sigma_u2 q_input + sigma_b2``, then the maps of the
    module docstring; one ``lax.scan`` over time, compiled once per activation and depth.
    """
    sigma_u2, q_input, c_input = _drive(self.sigma_u2, q_input, c_input)
    q, c, chi, grad = _propagate(act, depth, sigma_w2, sigma_u2, sigma_b2, q_input, c_input)
    return Propagation(q=q, c=c, chi_1=chi, extra={"grad_h2": grad})

  def fixed_point(self, act: Activation, sigma_w2, sigma_b2, *, q_input: ArrayLike = 1.0,
                  c_input: ArrayLike = 0.0):
    """The stationary state of the RNN's maps under the input's drive.

    ``q*`` is the feed-forward one at bias ``sigma_u2 q_input + sigma_b2``; ``c*`` solves
    the RNN's c-map by safeguarded Newton on ``[-1, 1]`` with implicit-function gradients
    (``jax.grad`` of every field works).
    """
    args = _drive(self.sigma_u2, q_input, c_input)
    fields, xi_grad, untied = _fixed_point(act, sigma_w2, args[0], sigma_b2, *args[1:])
    c_time = fields[1] if self.tied else jnp.broadcast_to(untied, fields[1].shape)
    return FixedPoint(*fields, extra={"xi_grad": xi_grad, "c_time": c_time})

  def depth_scales(self, act: Activation, sigma_w2, sigma_b2, *, q_input: ArrayLike = 1.0,
                   c_input: ArrayLike = 0.0):
    """``xi_q``, ``xi_c`` (steps) of :meth:`fixed_point`, with ``extra={"xi_grad": ...}``."""
    fp = self.fixed_point(act, sigma_w2, sigma_b2, q_input=q_input, c_input=c_input)
    return DepthScales(xi_q=fp.xi_q, xi_c=fp.xi_c, extra={"xi_grad": fp.extra["xi_grad"]})

  def jacobian_moments(self, act: Activation, init: Any, sigma_w2, sigma_b2, depth, q, *,
                       q_input: ArrayLike = 1.0, c_input: ArrayLike | None = None
                       ) -> JacobianMoments:
    """The time-step Jacobian's moments: the depth-``k`` MLP's (``k = depth``) at ``q``.

    ``q`` defaults to the stationary ``q*``, the feed-forward one at bias ``sigma_u2
    q_input + sigma_b2``; ``c_input`` is not read.
    """
    sigma_u2, q_input = _drive(self.sigma_u2, q_input)
    if q is None:
      # the stationary q* (its c* is not needed here, and its root-find costs most of a compile)
      q = q_star(sigma_w2=sigma_w2, sigma_b2=sigma_u2 * q_input + sigma_b2, activation=act)
    sw2 = jnp.asarray(sigma_w2, jnp.result_type(q))
    sw2 = jnp.broadcast_to(sw2, jnp.broadcast_shapes(sw2.shape, jnp.shape(q)))
    return jacobian_moments(activation=act, sigma_w2=sw2, sigma_b2=jnp.zeros_like(sw2),
                            depth=depth, init=init, q=q)
