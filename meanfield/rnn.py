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
``sigma_u2 q_input c_input``). Depth becomes time: ``steps`` is ``T``, and a
:class:`meanfield.Network` passed as first argument gives ``steps =
network.depth`` (its ``sigma_w2`` is the recurrent variance, its ``init`` the
recurrent law). Derivations, and what tying the weights changes, are in
``docs/rnn.md``:

- The forward recursion above holds for tied ``W`` as for untied (fresh at
  every step) at infinite width: Yang 2019 ("Wide feedforward or recurrent
  neural networks of any architecture are Gaussian processes", NeurIPS;
  Tensor Programs I) proves the tied RNN's kernel is this recursion. What
  tying changes forward is the correlation of *two time steps* of one
  sequence: tied, it is the c-map's fixed point; untied, only the bias's
  and inputs' share (see :func:`rnn_propagate`).
- Backward, ``E|dL/dh_t|^2 / E|dL/dh_T|^2 = prod_{s=t}^{T-1} chi_1(q_s)``,
  tied or not (gradient independence, Yang 2020, Tensor Programs II).
- The squared singular values of the time-step Jacobian ``dh_T / dh_{T-k}``
  (:func:`rnn_jacobian_moments`) come from free probability as for a depth-k
  MLP at ``q*``; their mean is exact for tied weights, their variance is
  exact for linear tied networks (powers of one matrix) and an untied
  approximation otherwise.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from meanfield import _checks, _solve
from meanfield._integrals import as_arrays, correlation_map, pair_moments, second_moments
from meanfield.activations import activation as _activation
from meanfield.depth import depth_scale
from meanfield.fixed_points import q_star
from meanfield.network import Network, accepts_network, weight_law
from meanfield.spectrum import JacobianMoments, jacobian_moments

__all__ = ["RNNPropagation", "RNNFixedPoint", "rnn_propagate", "rnn_fixed_point",
           "rnn_jacobian_moments"]

Array = jax.Array
ArrayLike = Any


def _with_steps(fn):
  """:func:`accepts_network`, and ``steps = network.depth`` (time steps are the RNN's depth)."""
  wrapped = accepts_network(fn)

  @functools.wraps(wrapped)
  def wrapper(network: Network | None = None, /, **kwargs):
    if network is not None and "steps" in inspect.signature(fn).parameters:
      if "steps" in kwargs:
        raise ValueError(
            f"`{fn.__name__}` got 'steps' both from `network` (its depth) and as a keyword; "
            "change the network with `network.replace(depth=...)` instead")
      if isinstance(network, Network):
        kwargs["steps"] = network.depth
    return wrapped(network, **kwargs)

  wrapper.__signature__ = inspect.signature(wrapped)
  return wrapper


def _inputs(sigma_w2, sigma_u2, sigma_b2, q_input, c_input=None):
  sigma_w2, sigma_b2 = _checks.hyperparameters(sigma_w2, sigma_b2)
  sigma_u2 = _checks.nonnegative("sigma_u2", sigma_u2)
  q_input = _checks.nonnegative("q_input", q_input, "a length")
  out = (sigma_w2, sigma_u2, sigma_b2, q_input)
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


class RNNPropagation(NamedTuple):
  """Step-by-step theory; every field has shape ``batch + (steps,)``, index ``t - 1`` for step t.

  Attributes:
    q: ``q_t``, the length of either sequence's ``h_t``.
    c: ``c_t``, the correlation of the two sequences' ``h_t``.
    chi_1: ``sigma_w2 E[phi'(sqrt(q_t) z)^2]``: the factor by which
      ``E|dL/dh|^2`` grows from step ``t + 1`` back to step ``t``.
    grad_h2: ``E|dL/dh_t|^2 / E|dL/dh_T|^2 = prod_{s=t}^{T-1} chi_1(q_s)``
      for a loss at the last step ``T = steps`` (1 at ``t = T``).
  """

  q: Array
  c: Array
  chi_1: Array
  grad_h2: Array


@functools.partial(jax.jit, static_argnames=("act", "steps"))
def _propagate(act, steps, sigma_w2, sigma_u2, sigma_b2, q_input, c_input):
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
  return RNNPropagation(q=last(qs), c=last(cs), chi_1=last(chi), grad_h2=last(grad))


@_with_steps
def rnn_propagate(*, activation: Any, sigma_w2: ArrayLike, sigma_b2: ArrayLike,
                  steps: int, sigma_u2: ArrayLike = 1.0, q_input: ArrayLike = 1.0,
                  c_input: ArrayLike = 0.0) -> RNNPropagation:
  """Iterate the RNN's length and correlation maps through ``steps`` time steps.

  From ``h_0 = 0``: ``q_1 = sigma_w2 phi(0)^2 + sigma_u2 q_input + sigma_b2``,
  and for ``t >= 2`` (Chen et al. 2018; derived in docs/rnn.md)

  .. math::

    q_t = \\sigma_w^2 E[\\phi(\\sqrt{q_{t-1}} z)^2] + \\sigma_u^2 q_{in} + \\sigma_b^2,
    \\qquad
    c_t = \\frac{\\sigma_w^2 E[\\phi(u_1) \\phi(u_2)] + \\sigma_u^2 q_{in} c_{in}
                 + \\sigma_b^2}{q_t},

  ``u1, u2`` of variance ``q_{t-1}`` and correlation ``c_{t-1}``. With
  tied ``W`` two *time steps* ``t`` and ``t + k`` of one sequence obey the
  same recursion, both steps moving together, with ``c_input`` the
  correlation of the inputs ``k`` steps apart; so at the stationary length
  their correlation is :func:`rnn_fixed_point`'s ``c*`` at that
  ``c_input`` (0 for inputs independent in time) for every ``k >= 1``.
  Untied weights would give ``(sigma_u2 q_input c_input + sigma_b2) / q*``
  instead (docs/rnn.md).

  The gradient of a loss at the last step ``T = steps`` with respect to
  ``h_t`` has ``E|dL/dh_t|^2 = E|dL/dh_T|^2 prod_{s=t}^{T-1} chi_1(q_s)``
  (backpropagation ``dL/dh_s = D_s W^T dL/dh_{s+1}``; Schoenholz et al. 2017,
  Sec. 5, with time for depth; exact for tied ``W`` at infinite width by
  gradient independence, Yang 2020).

  Args:
    activation: a name, an Activation or a callable.
    sigma_w2: recurrent weight variance ``>= 0`` (``W_ij`` variance times ``N``).
    sigma_b2: bias variance ``>= 0``.
    steps: number of time steps ``T >= 1`` (a Network's ``depth``).
    sigma_u2: input weight variance ``>= 0`` (``U_ij`` variance times ``N_in``).
    q_input: ``|x_t|^2 / N_in`` at every step, ``>= 0``.
    c_input: cosine of the two sequences' inputs at every step, in ``[-1, 1]``.

  Returns:
    :class:`RNNPropagation`, fields of shape ``broadcast(...) + (steps,)``.
    The gradient ratio overflows to inf where it is out of range (data).

  Raises:
    ValueError: ``steps < 1``, a negative variance or length, ``|c_input| > 1``,
      an unknown activation.
  """
  act = _activation(activation)
  steps = _checks.check_positive_int("steps", steps)
  args = _inputs(sigma_w2, sigma_u2, sigma_b2, q_input, c_input)
  return _propagate(act, steps, *args)


class RNNFixedPoint(NamedTuple):
  """The stationary state of the RNN's maps; fields of the broadcast shape of the arguments.

  Attributes:
    q_star: stationary length ``q* = sigma_w2 E[phi(sqrt(q*) z)^2] + sigma_u2 q_input + sigma_b2``.
    c_star: stationary correlation of two sequences, the limit of ``c_t``;
      with tied ``W`` also that of two time steps ``t, t + k`` (any
      ``k >= 1``) of one sequence whose inputs ``k`` apart have correlation
      ``c_input``.
    chi_1: ``sigma_w2 E[phi'(sqrt(q*) z)^2]``, the gradient's factor per step.
    chi_c: the slope of the c-map at ``c*``, ``sigma_w2 E[phi'(u1) phi'(u2)]``.
    xi_c: ``-1 / log chi_c``, the number of steps over which ``c_t``
      forgets its start (the memory time scale of Chen et al. 2018).
    xi_grad: ``-1 / log chi_1``: gradients shrink (``chi_1 < 1``) or grow
      (``> 1``) by ``e`` over this many steps; ``inf`` at ``chi_1 = 1``, and
      negative where they grow.
  """

  q_star: Array
  c_star: Array
  chi_1: Array
  chi_c: Array
  xi_c: Array
  xi_grad: Array


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
  qs = q_star(sigma_w2=sigma_w2, sigma_b2=b_self, activation=act)
  chi = sigma_w2 * second_moments(act, qs)[1]
  cs, _ = _c_star(act, sigma_w2, b_self, gap, qs, chi)
  # c* = 1 takes chi_1 (evaluated at c = 1/2 there: no derivative of an unused branch at c = 1)
  dd = pair_moments(act, qs, jnp.where(jnp.isfinite(cs) & (cs != 1), cs, 0.5),
                    derivative=True)[2]
  chi_c = jnp.where(cs == 1, chi, sigma_w2 * dd)
  # -1/log chi_1, negative where gradients grow; depth_scale (inf, not -inf) where chi_1 <= 1
  growing = chi > 1
  xi_grad = jnp.where(growing, -1 / jnp.log(jnp.where(growing, chi, 2.0)), depth_scale(chi))
  return RNNFixedPoint(q_star=qs, c_star=cs, chi_1=chi, chi_c=chi_c, xi_c=depth_scale(chi_c),
                       xi_grad=xi_grad)


@accepts_network
def rnn_fixed_point(*, activation: Any, sigma_w2: ArrayLike, sigma_b2: ArrayLike,
                    sigma_u2: ArrayLike = 1.0, q_input: ArrayLike = 1.0,
                    c_input: ArrayLike = 0.0) -> RNNFixedPoint:
  """The stationary ``q*``, ``c*``, ``chi_1``, ``chi_c`` and time scales of the RNN's maps.

  ``q*`` is the feed-forward :func:`meanfield.q_star` with bias variance
  ``sigma_u2 q_input + sigma_b2`` (the input enters every step as a bias).
  ``c*`` solves ``c = C(c)`` for the RNN's c-map (:func:`rnn_propagate`) on
  ``q*``: where the inputs differ (``sigma_u2 q_input (1 - c_input) > 0``)
  ``C(1) < 1`` and ``c* < 1`` in every phase, the RNN's correlations never
  collapse to 1; otherwise it is the feed-forward ``c*`` (1 when ``chi_1 <=
  1``). Found by safeguarded Newton on the bracket ``[-1, 1]``, where
  ``C(c) - c`` changes sign once from above, with implicit-function gradients
  (``jax.grad`` of every field works). ``chi_c = sigma_w2 E[phi'(u1) phi'(u2)]`` at
  ``(q*, c*)``, the slope of the c-map there (``d E[phi(u1) phi(u2)]/dc =
  q E[phi'(u1) phi'(u2)]`` by Gaussian integration by parts, and ``q_t =
  q*``).

  Args: as :func:`rnn_propagate`, without ``steps``.

  Returns:
    :class:`RNNFixedPoint` of the broadcast shape of the arguments; nan where
    ``q*`` is infinite.
  """
  act = _activation(activation)
  args = _inputs(sigma_w2, sigma_u2, sigma_b2, q_input, c_input)
  return _fixed_point(act, *args)


@_with_steps
def rnn_jacobian_moments(*, activation: Any, sigma_w2: ArrayLike, sigma_b2: ArrayLike,
                         steps: int, init: Any = "gaussian", sigma_u2: ArrayLike = 1.0,
                         q_input: ArrayLike = 1.0) -> JacobianMoments:
  """Mean and variance of the squared singular values of ``dh_T / dh_{T-k}``, ``k = 1..steps``.

  The time-step Jacobian is ``J_k = W D_{T-1} W D_{T-2} ... W D_{T-k}``,
  ``D_s = diag(phi'(h_s))``, at the stationary length ``q*``
  (:func:`rnn_fixed_point`). With ``x = phi'(sqrt(q*) z)^2``, ``mu_j = E[x^j]``:

  .. math::

    m_1 = \\chi_1^k, \\qquad m_2 - m_1^2 = m_1^2 \\, k
      \\left(\\frac{\\mu_2}{\\mu_1^2} - 1 - s_1\\right),

  ``s_1 = -1`` (Gaussian ``W``), ``0`` (orthogonal): the depth-``k`` MLP of
  :func:`meanfield.jacobian_moments` at ``q = q*`` (Pennington, Schoenholz &
  Ganguli 2017, 2018), which is how Chen et al. 2018 treat the
  vanilla RNN. With tied ``W`` (docs/rnn.md):

  - ``m_1`` is exact at infinite width (it is ``E|J_k^T r|^2`` for a random
    unit ``r``: the gradient of :func:`rnn_propagate`).
  - For a linear network ``J_k = W^k`` (times ``sigma_w2^(k/2)``): orthogonal,
    a point mass at ``sigma_w2^k`` (variance 0); Gaussian, the squared
    singular values of a power of one Ginibre matrix, whose limit law is
    Fuss-Catalan of order ``k`` (Alexeev, Goetze & Tikhomirov 2010), the same
    as for ``k`` independent factors. Both exact.
  - Otherwise the variance is the untied (free-product) value: tied, the
    ``D_s`` are correlated over time through the shared ``W`` and the factors
    ``W`` are one matrix, not ``k`` free ones; the free-probability product
    no longer applies as it stands. Measured against it in docs/rnn.md.

  Args:
    activation, sigma_w2, sigma_b2, sigma_u2, q_input: as :func:`rnn_propagate`.
    steps: the largest lag ``k``; results for ``k = 1..steps``.
    init: the recurrent law, ``"gaussian"`` or ``"orthogonal"`` (or a scheme
      whose ``law`` is one of them).

  Returns:
    :class:`meanfield.JacobianMoments` with fields of shape
    ``broadcast(...) + (steps,)`` (index ``k - 1`` for lag ``k``).

  Raises:
    ValueError: as :func:`rnn_propagate`, an unknown ``init``, ``sigma_w2 = 0``.
  """
  act = _activation(activation)
  steps = _checks.check_positive_int("steps", steps)
  weight_law(init)
  _checks.check("sigma_w2", sigma_w2, lambda s: s > 0, "> 0 (a variance)")
  sigma_w2, sigma_u2, sigma_b2, q_input = _inputs(sigma_w2, sigma_u2, sigma_b2, q_input)
  # rnn_fixed_point's q*: the feed-forward q* at the input's bias (its c* is not needed here,
  # and its root-find costs most of a compile)
  qs = q_star(sigma_w2=sigma_w2, sigma_b2=sigma_u2 * q_input + sigma_b2, activation=act)
  sw2 = jnp.asarray(sigma_w2, qs.dtype)
  sw2 = jnp.broadcast_to(sw2, jnp.broadcast_shapes(sw2.shape, qs.shape))[..., None]
  lags = np.arange(1, steps + 1, dtype=np.dtype(qs.dtype)).reshape((1,) * qs.ndim + (steps,))
  return jacobian_moments(activation=act, sigma_w2=sw2, sigma_b2=jnp.zeros_like(sw2),
                          depth=lags, init=init, q=qs[..., None])
