"""Many random vanilla RNNs at once, measured step by step.

The network of :mod:`meanfield.rnn`, in Flax's kernel layout (``h = x @ W``):

.. math::

  h_t = \\phi(h_{t-1}) W + x_t U + b, \\qquad t = 1, \\dots, T, \\qquad h_0 = 0,

with the recurrent ``W`` (``N x N``) drawn once from an :mod:`empirical.inits`
scheme by variance (``"gaussian"``, ``"orthogonal"``, ``"uniform"``,
``"truncated_normal"``: ``standard(key) * scale(sigma_w2)``) and tied over
time (``tied=False`` draws a fresh ``W`` at every step, the approximation
the theory of the Jacobian spectrum makes), ``U ~ N(0, sigma_u2 / N_in)``
(``N_in = width``), ``b ~ N(0, sigma_b2)``. A network is a pure function of
its stacked parameters, run by ``lax.scan`` over time and ``vmap`` over
seeds; network ``i`` uses ``fold_in(key, i)``.

Inputs: ``pairs`` pairs of sequences; at every step the two inputs of a pair
have ``|x_t|^2 / N_in = q_input`` exactly and cosine ``c_input`` exactly
(a random orthonormal pair of directions, fresh at every step and for every
pair), so the theory's ``q_input`` and ``c_input`` hold without sampling error.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from empirical import _checks
from empirical import inits as _inits
from meanfield.activations import activation as _activation

__all__ = ["RNNStats", "rnn_statistics", "rnn_jacobian_moments"]

Array = jax.Array


class RNNStats(NamedTuple):
  """Per-network, per-step statistics; every field has shape ``(seeds, steps)``.

  Attributes:
    q: ``<(h_t)_i^2>`` over units and the ``2 * pairs`` sequences.
    c: cosine of the two sequences' ``h_t`` in a pair, mean over pairs.
    grad_h2: ``mean_a |dL_a/dh_t^a|^2`` over the sequences ``a``, for the
      loss ``L_a = r . h_T^a`` at the last step, ``r`` a random unit vector
      per network (so ``|dL_a/dh_T^a|^2 = 1``).
    c_time: cosine of ``h_t`` and ``h_{t-1}`` of one sequence (two time
      steps), mean over the sequences; nan at ``t = 1`` (``h_0 = 0``).
  """

  q: Array
  c: Array
  grad_h2: Array
  c_time: Array


def _check(activation, init, sigma_w2, sigma_u2, sigma_b2, q_input, c_input, steps, width,
           seeds, pairs):
  act = _activation(activation)
  scheme = _inits.init(init)
  if not scheme.uses_sigma_w2:
    raise ValueError(f"`init` must be a scheme by variance (gaussian, uniform, "
                     f"truncated_normal, orthogonal), got {scheme.name!r}")
  for name, v in (("sigma_w2", sigma_w2), ("sigma_u2", sigma_u2), ("sigma_b2", sigma_b2),
                  ("q_input", q_input)):
    _checks.check_number(name, v, minimum=0.0)
  if not (_checks.is_number(c_input) or isinstance(c_input, np.ndarray | jax.Array)) \
      or np.ndim(c_input) != 0 or not -1 <= float(c_input) <= 1:
    raise ValueError(f"`c_input` must be a number in [-1, 1], got {c_input!r}")
  for name, v in (("steps", steps), ("width", width), ("seeds", seeds), ("pairs", pairs)):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
      raise ValueError(f"`{name}` must be an integer >= 1, got {v!r}")
  if width < 2:
    raise ValueError(f"`width` must be >= 2 (two input directions), got {width!r}")
  return act, scheme


def _pair_inputs(key, steps, pairs, width, q_input, c_input, dtype):
  """``(steps, 2 pairs, width)`` inputs: each pair exactly of length and cosine as asked."""
  z = jax.random.normal(key, (steps, pairs, 2, width), dtype)
  e1 = z[..., 0, :] / jnp.linalg.norm(z[..., 0, :], axis=-1, keepdims=True)
  v = z[..., 1, :] - jnp.sum(z[..., 1, :] * e1, axis=-1, keepdims=True) * e1
  e2 = v / jnp.linalg.norm(v, axis=-1, keepdims=True)
  r = jnp.sqrt(q_input * width)
  xa = r * e1
  xb = r * (c_input * e1 + jnp.sqrt(1 - c_input ** 2) * e2)
  return jnp.stack([xa, xb], axis=2).reshape(steps, 2 * pairs, width)


def _recurrent(scheme, key, t, width, sigma_w2, dtype, tied):
  k = key if tied else jax.random.fold_in(key, t)
  return scheme.standard(k, (width, width), dtype) * scheme.scale(sigma_w2, width, width)


def _network(act, scheme, steps, width, pairs, tied, key, sigma_w2, sigma_u2, sigma_b2,
             q_input, c_input):
  """One network's statistics: ``(q, c, grad_h2, c_time)``, each of shape ``(steps,)``."""
  dtype = sigma_w2.dtype
  k_w, k_u, k_b, k_x, k_r = jax.random.split(key, 5)
  u = jax.random.normal(k_u, (width, width), dtype) * jnp.sqrt(sigma_u2 / width)
  b = jax.random.normal(k_b, (width,), dtype) * jnp.sqrt(sigma_b2)
  x = _pair_inputs(k_x, steps, pairs, width, q_input, c_input, dtype)
  r = jax.random.normal(k_r, (width,), dtype)
  r = r / jnp.linalg.norm(r)
  w_tied = _recurrent(scheme, k_w, 0, width, sigma_w2, dtype, True) if tied else None
  drive = x @ u + b[None, None, :]                        # (steps, B, N)

  def run(shift):
    def step(h, inputs):
      t, drive_t, shift_t = inputs
      w = w_tied if tied else _recurrent(scheme, k_w, t, width, sigma_w2, dtype, False)
      h = act.fn(h) @ w + drive_t + shift_t
      return h, h

    h0 = jnp.zeros(drive.shape[1:], dtype)
    _, hs = jax.lax.scan(step, h0, (jnp.arange(steps), drive, shift))
    return jnp.sum(hs[-1] @ r), hs

  shift = jnp.zeros_like(drive)
  grads, hs = jax.grad(run, has_aux=True)(shift)
  q = jnp.mean(hs * hs, axis=(1, 2))
  cosine = lambda a, b: jnp.sum(a * b, -1) / jnp.sqrt(jnp.sum(a * a, -1) * jnp.sum(b * b, -1))
  c = jnp.mean(cosine(hs[:, 0::2], hs[:, 1::2]), axis=1)
  c_time = jnp.mean(cosine(hs[1:], hs[:-1]), axis=1)
  c_time = jnp.concatenate([jnp.full((1,), jnp.nan, dtype), c_time])
  return q, c, jnp.mean(jnp.sum(grads * grads, -1), axis=1), c_time


@functools.partial(jax.jit, static_argnames=("act", "scheme", "steps", "width", "seeds",
                                             "pairs", "tied"))
def _statistics(act, scheme, steps, width, seeds, pairs, tied, key, *hyper):
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(seeds))
  one = functools.partial(_network, act, scheme, steps, width, pairs, tied)
  return RNNStats(*jax.vmap(lambda k: one(k, *hyper))(keys))


def rnn_statistics(*, key: Array, activation: Any = "tanh", sigma_w2: float,
                   sigma_b2: float = 0.0, sigma_u2: float = 1.0, q_input: float = 1.0,
                   c_input: float = 0.0, steps: int, width: int, init: Any = "gaussian",
                   seeds: int = 8, pairs: int = 1, tied: bool = True,
                   dtype: Any = jnp.float32) -> RNNStats:
  """Run ``seeds`` random RNNs on ``pairs`` pairs of sequences and measure every step.

  Keywords as :func:`meanfield.rnn_propagate` (the theory of what this
  measures, same names), plus:

  Args:
    key: PRNG key; network ``i`` uses ``fold_in(key, i)``.
    width: units ``N`` (also the input dimension).
    init: recurrent scheme by variance from :mod:`empirical.inits`
      (``"gaussian"`` or ``"orthogonal"``, ...).
    seeds: number of networks.
    pairs: pairs of input sequences per network.
    tied: one ``W`` for every step (an RNN); False draws a fresh ``W`` per step.
    dtype: float dtype of the parameters and activations.

  Returns:
    :class:`RNNStats`, fields ``(seeds, steps)``. One compile per activation,
    scheme, sizes and dtype; hyperparameters are traced (new values reuse it).

  Raises:
    ValueError: a ``key`` that is not a PRNG key, an unknown activation or
      scheme, a scheme that fixes its own variance, variances that are not
      finite numbers ``>= 0`` (None, strings), ``|c_input| > 1``, sizes below 1.
  """
  _checks.check_key(key)
  act, scheme = _check(activation, init, sigma_w2, sigma_u2, sigma_b2, q_input, c_input,
                       steps, width, seeds, pairs)
  hyper = tuple(jnp.asarray(v, dtype) for v in (sigma_w2, sigma_u2, sigma_b2, q_input,
                                                c_input))
  return _statistics(act, scheme, steps, width, seeds, pairs, bool(tied), key, *hyper)


def _jacobian_network(act, scheme, steps, warmup, width, tied, key, sigma_w2, sigma_u2,
                      sigma_b2, q_input):
  """``(m_1, m_2)`` of ``J_k J_k^T``, ``J_k = dh_T/dh_{T-k}``, ``k = 1..steps``, one network."""
  dtype = sigma_w2.dtype
  total = warmup + steps
  k_w, k_u, k_b, k_x = jax.random.split(key, 4)
  u = jax.random.normal(k_u, (width, width), dtype) * jnp.sqrt(sigma_u2 / width)
  b = jax.random.normal(k_b, (width,), dtype) * jnp.sqrt(sigma_b2)
  x = _pair_inputs(k_x, total, 1, width, q_input, 0.0, dtype)[:, 0]
  drive = x @ u + b[None, :]
  w_of = lambda t: _recurrent(scheme, k_w, t, width, sigma_w2, dtype, tied)

  def step(h, inputs):
    t, drive_t = inputs
    h = act.fn(h) @ w_of(t) + drive_t
    return h, h

  _, hs = jax.lax.scan(step, jnp.zeros((width,), dtype), (jnp.arange(total), drive))
  # Row-vector layout: dh_{s+1} = dh_s diag(phi'(h_s)) W_{s+1}; J_k maps dh_{T-k} to dh_T.
  def back(j, s):                 # j = d h_T / d h_{s+1} as (N, N) acting on row vectors
    j = (act.derivative(hs[s])[:, None] * w_of(s + 1)) @ j
    jj = j @ j.T
    return j, (jnp.trace(jj) / width, jnp.sum(jj * jj) / width)

  last = total - 1
  _, (m1, m2) = jax.lax.scan(back, jnp.eye(width, dtype=dtype),
                             jnp.arange(last - 1, last - 1 - steps, -1))
  return m1, m2


@functools.partial(jax.jit, static_argnames=("act", "scheme", "steps", "warmup", "width",
                                             "seeds", "tied"))
def _jacobian(act, scheme, steps, warmup, width, seeds, tied, key, *hyper):
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(seeds))
  one = functools.partial(_jacobian_network, act, scheme, steps, warmup, width, tied)
  return jax.vmap(lambda k: one(k, *hyper))(keys)


def rnn_jacobian_moments(*, key: Array, activation: Any = "tanh", sigma_w2: float,
                         sigma_b2: float = 0.0, sigma_u2: float = 1.0, q_input: float = 1.0,
                         steps: int, width: int, warmup: int = 20, init: Any = "gaussian",
                         seeds: int = 8, tied: bool = True, dtype: Any = jnp.float32
                         ) -> tuple[Array, Array]:
  """Moments of the squared singular values of the time-step Jacobian ``dh_T / dh_{T-k}``.

  Each network runs ``T = warmup + steps`` steps on one input sequence (so
  the lags ``k = 1..steps`` start after ``warmup`` steps, near the stationary
  ``q*``) and forms ``J_k`` exactly, ``k`` products of ``N x N`` matrices.
  The theory is :func:`meanfield.rnn_jacobian_moments`.

  Returns:
    ``(m1, m2)``, each ``(seeds, steps)``: ``tr(J_k J_k^T) / N`` and
    ``tr((J_k J_k^T)^2) / N`` for lag ``k`` at index ``k - 1``.

  Raises:
    ValueError: as :func:`rnn_statistics`; ``warmup < 0``.
  """
  _checks.check_key(key)
  act, scheme = _check(activation, init, sigma_w2, sigma_u2, sigma_b2, q_input, 0.0,
                       steps, width, seeds, 1)
  if isinstance(warmup, bool) or not isinstance(warmup, (int, np.integer)) or warmup < 0:
    raise ValueError(f"`warmup` must be an integer >= 0, got {warmup!r}")
  hyper = tuple(jnp.asarray(v, dtype) for v in (sigma_w2, sigma_u2, sigma_b2, q_input))
  return _jacobian(act, scheme, steps, warmup + 1, width, seeds, bool(tied), key, *hyper)
