"""The fixed point of an MLP, with or without LayerNorm or dropout: one function, one result.

:func:`fixed_point` returns a :class:`FixedPoint`: the stable length ``q*``
and correlation ``c*`` (Poole et al. 2016), the c-map's slopes ``chi_1`` (at
``c = 1``, also the per-layer factor of ``|dL/dh|^2``) and ``chi_c`` (at
``c*``), the depth scales ``xi_q`` and ``xi_c`` over which the length and the
correlation approach them (Schoenholz et al. 2017, Eqs. 5 and 9), and one
``converged`` flag. :func:`q_star` gives the length alone.

Plain MLP: ``q*`` by safeguarded Newton on a ladder bracket, ``c*`` on the
Mehler series of the c-map or 2-D quadrature (docs/theory.md; the solvers
are described in ``meanfield/_fixed_points.py``). ``q* = inf`` where the length diverges
(ReLU at ``sigma_w2 > 2``), and there ``c*``, ``chi_c``, ``xi_c`` are nan;
``q* = 0`` where 0 is stable, with ``c* = 1``; at the identity q-map (ReLU at
``(2, 0)``, linear at ``(1, 0)``) ``q* = 0``, ``c* = chi_c = chi_1 = 1`` and
``xi_q = xi_c = inf``. In the ordered phase ``c* = 1`` and ``chi_c = chi_1``;
``xi_c`` diverges at criticality (``chi_c = 1``).

LayerNorm (``norm="layer"``, docs/architectures.md): the length after the
first layer is ``q_LN = sigma_w2 E[phi(z)^2] + sigma_b2`` whatever the
length before, and ``c*`` solves the c-map at that length.

Dropout (``keep_prob = p < 1``): ``q*`` is the plain MLP's at ``sigma_w2 /
p``, ``c* < 1`` everywhere and ``xi_c`` is finite.

Gradients use the implicit function theorem, so ``jax.grad`` works through
every field; each path compiles once per activation and argument
shape/dtype, and works inside a user's ``jit`` and ``vmap``.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from meanfield import _checks, _solve, _variants
from meanfield._fixed_points import (c_root, chi_1_at, depth_scale, q_root, q_star, xi_q)
from meanfield._integrals import as_arrays, length_map_slope, second_moments
from meanfield.activations import activation as _activation
from meanfield.network import accepts_network, check_architecture, stationary_inputs

__all__ = ["FixedPoint", "fixed_point", "q_star"]

Array = jax.Array
ArrayLike = Any
_PLAIN = _variants.Variant(residual=False, layer_norm=False)
_LAYER = _variants.Variant(residual=False, layer_norm=True)


class FixedPoint(NamedTuple):
  """The fixed point of a network (a pytree; every field of one broadcast shape).

  Attributes:
    q_star: the stable length ``q*`` (``q_LN`` with LayerNorm; ``inf`` where
      the length diverges), floating.
    c_star: the stable correlation ``c*`` (1 in the ordered phase of the
      plain MLP and LayerNorm; below 1 with dropout), floating.
    chi_1: the c-map's slope at ``c = 1`` and the per-layer factor of
      ``|dL/dh^l|^2``: ``sigma_w2 E[phi'(u)^2]`` at ``q*`` (divided by
      ``q_LN`` with LayerNorm, ``sigma_w2 / p`` with dropout), floating.
    chi_c: the c-map's slope at ``c_star``, floating.
    xi_q: ``-1 / log q_map'(q*)``, the length's depth scale in layers
      (0 with LayerNorm: the length does not depend on the one before; with
      dropout the q-map is the plain one at ``sigma_w2 / p``, and so is its slope).
    xi_c: ``-1 / log chi_c``, the correlation's depth scale in layers (inf
      at criticality).
    converged: bool, whether every solver met its tolerance (or proved
      divergence); where False the other fields are not to be trusted.
    extra: ``None`` for the MLP; an architecture's own values, a dict of
      arrays (not broadcast with the fields above). :class:`meanfield.Conv`:
      ``{"covariance": Sigma*}``, shape ``batch + (n, n)``.
  """

  q_star: Array
  c_star: Array
  chi_1: Array
  chi_c: Array
  xi_q: Array
  xi_c: Array
  converged: Array
  extra: dict | None = None

  @classmethod
  def broadcast(cls, *fields, extra: dict | None = None) -> FixedPoint:
    """A FixedPoint of the seven fields, broadcast to their common shape, and ``extra``.

    The fields ``q_star`` .. ``converged`` keep their values; ``extra`` is kept as it
    is. This is how an architecture's ``fixed_point`` hook builds its result.
    """
    shape = jnp.broadcast_shapes(*(jnp.shape(f) for f in fields))
    return cls(*(jnp.broadcast_to(f, shape) for f in fields), extra=extra)



def _plain(act, sigma_w2, sigma_b2, q) -> FixedPoint:
  """The plain MLP: the programs of :func:`q_star`, ``chi_1`` and ``depth_scales``, and ``c*`` on ``q``."""
  length = q_root(act, sigma_w2, sigma_b2)
  correlation, chi_c = c_root(act, sigma_w2, sigma_b2, q)
  chi_1 = chi_1_at(act, length.value, sigma_w2, sigma_b2)
  return FixedPoint.broadcast(length.value, correlation.value, chi_1, chi_c,
                      xi_q(act, sigma_w2, length.value), depth_scale(chi_c),
                      length.converged & correlation.converged)


@functools.partial(jax.jit, static_argnames=("act",))
def _layernorm(act, sigma_w2, sigma_b2):
  sigma_w2, sigma_b2 = as_arrays(sigma_w2, sigma_b2)
  ones = jnp.ones_like(sigma_w2)
  q = sigma_w2 * second_moments(act, ones)[0] + sigma_b2
  c_star, chi_c, chi_1 = _variants.correlation_root(act, _LAYER, sigma_w2, sigma_b2, 1.0, ones,
                                                     closed=True)
  # the bisection's bracket after its 64 halvings of [0, 1] is 2**-64 wide: below the
  # solvers' tolerance in any float dtype; only nan input leaves it unresolved
  converged = ~jnp.isnan(sigma_w2 + sigma_b2)
  xi = jnp.where(jnp.isnan(q), jnp.nan, jnp.zeros_like(q))
  return FixedPoint.broadcast(q, c_star, chi_1, chi_c, xi, depth_scale(chi_c), converged)


@functools.partial(jax.jit, static_argnames=("act",))
def _dropout(act, sigma_w2, sigma_b2, keep_prob):
  sigma_w2, sigma_b2, keep_prob = as_arrays(sigma_w2, sigma_b2, keep_prob)
  length = q_root(act, sigma_w2 / keep_prob, sigma_b2)
  q = length.value
  c_star, chi_c, _ = _variants.correlation_root(act, _PLAIN, sigma_w2, sigma_b2, keep_prob, q,
                                                closed=False)
  chi_1 = sigma_w2 / keep_prob * second_moments(act, q)[1]
  # keep_prob = 1 at q* = 0: the plain MLP's ordered-phase values (c* = 1, chi_c = chi_1)
  plain = (keep_prob == 1) & (q == 0)
  c_star, chi_c = jnp.where(plain, 1, c_star), jnp.where(plain, chi_1, chi_c)
  # the dropout q-map is the plain one at sigma_w2 / p: its slope at q* gives xi_q
  xi = depth_scale(length_map_slope(act, sigma_w2 / keep_prob, q))
  # c* by bisection (see _layernorm): converged where q* is and the input is not nan
  converged = length.converged & ~jnp.isnan(sigma_w2 + sigma_b2 + keep_prob)
  return FixedPoint.broadcast(q, c_star, chi_1, chi_c, xi, depth_scale(chi_c), converged)


def _with_dropout(keep_prob) -> bool:
  """Whether ``keep_prob`` (checked) asks for the dropout theory: traced, or not all 1."""
  p = _checks.concrete(keep_prob)
  return p is None or bool((p != 1).any())


@accepts_network(supports=("norm", "keep_prob"))
def fixed_point(*, sigma_w2: ArrayLike, sigma_b2: ArrayLike, activation: Any,
                q: ArrayLike | None = None, norm: str | None = None,
                keep_prob: ArrayLike = 1.0, throw: bool = False, q_input: ArrayLike | None = None,
                c_input: ArrayLike | None = None, arch: Any = None) -> FixedPoint:
  """``q*``, ``c*``, ``chi_1``, ``chi_c``, ``xi_q``, ``xi_c`` and ``converged`` of an MLP.

  Args:
    sigma_w2, sigma_b2: weight and bias variances (``>= 0``), broadcast.
    activation: a name, an Activation or a callable.
    q: plain MLP only: solve the c-map at this length (``>= 0``) instead of
      at ``q*``, i.e. ``c -> (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2) /
      q_map(q)``; then ``c_star``, ``chi_c`` and ``xi_c`` are that map's,
      while ``q_star``, ``chi_1`` and ``xi_q`` stay those of the fixed
      length ``q*``. Default ``None``: ``q*``.
    norm: ``None`` or ``"layer"`` (LayerNorm before the nonlinearity; then
      ``q_star`` is ``q_LN`` and ``xi_q = 0``).
    keep_prob: dropout's keep probability ``p`` in ``(0, 1]``, broadcast.
      Where it is 1 (all of it, concrete) the plain MLP is solved; else the
      dropout theory is, at every point (at ``p = 1`` it agrees with the
      plain MLP's to about ``1e-15``). Where dropout's ``q* = 0``
      (``sigma_b2 = 0``, ordered) ``c*``, ``chi_c`` and ``xi_c`` are those of
      the c-map's limit ``q -> 0+``.
    throw: raise ``RuntimeError`` (at run time, also under ``jit``) if any
      point did not converge.
    arch: ``None`` (the fully connected MLP) or an architecture value
      (:class:`meanfield.network.Architecture`), whose ``fixed_point`` hook
      answers; ``q``, ``norm`` and ``keep_prob`` must then keep their defaults.
      ``meanfield.Conv(kernel_size=3, spatial_size=n)``: the MLP's fields (mode
      0) and ``extra={"covariance": Sigma*}`` with ``Sigma* = q* (c* 11^T + (1 -
      c*) I)``, ``batch + (n, n)`` (at most ``2**27`` entries, else ``ValueError``).
      ``meanfield.RNN(sigma_u2=...)``: the stationary state over time steps
      (:class:`meanfield.RNN`), with ``extra={"xi_grad", "c_time"}``.
    q_input, c_input: the input's length and cosine, for an architecture
      driven by its input at every step (``arch.stationary_inputs``: the RNN;
      default there 1 and 0); must be None for the MLP and the CNN.

  Returns:
    A :class:`FixedPoint`, every field of the broadcast shape of the
    arguments, in their floating dtype (``converged``: bool).

  Raises:
    ValueError: a negative variance or ``q``; ``norm`` not ``None`` or
      ``"layer"`` (BatchNorm has no fixed point of this form); ``keep_prob``
      outside ``(0, 1]``; ``norm="layer"`` with dropout, or ``q`` with
      either (not covered); ``arch`` not an Architecture, or with ``q``, ``norm``
      or ``keep_prob``.
  """
  act = _activation(activation)
  sigma_w2, sigma_b2 = _checks.hyperparameters(sigma_w2, sigma_b2)
  check_architecture("fixed_point", arch, norm=norm, keep_prob=keep_prob)
  inputs = stationary_inputs("fixed_point", arch, q_input=q_input, c_input=c_input)
  if arch is not None:
    if q is not None:
      raise ValueError(f"`q` must be None for `fixed_point` with arch={arch!r} (a given "
                       f"length is for the plain MLP), got {q!r}")
    fp = arch.fixed_point(act, sigma_w2, sigma_b2, **inputs)
    if throw:
      _solve.raise_if_not_converged(fp.converged, "fixed_point")
    return fp
  given = keep_prob
  _, _, keep_prob = _variants.check_variant("fixed_point", residual=False, alpha=1.0,
                                            norm=norm, keep_prob=keep_prob)
  dropout = _with_dropout(keep_prob)
  if norm == "layer" and dropout:
    raise ValueError(f"`keep_prob` must be 1 with norm='layer' for `fixed_point` (LayerNorm with "
                     f"dropout is not covered), got {given!r}")
  if q is not None and (norm is not None or dropout):
    raise ValueError(f"`q` must be None for `fixed_point` with norm={norm!r} or keep_prob < 1 "
                     f"(a given length is for the plain MLP), got {q!r}")
  if norm == "layer":
    fp = _layernorm(act, sigma_w2, sigma_b2)
  elif dropout:
    fp = _dropout(act, sigma_w2, sigma_b2, keep_prob)
  else:
    if q is not None:
      q = _checks.nonnegative("q", q, "a length")
    fp = _plain(act, sigma_w2, sigma_b2, q)
  if throw:
    _solve.raise_if_not_converged(fp.converged, "fixed_point")
  return fp
