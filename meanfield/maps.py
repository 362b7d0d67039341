"""The length map, the correlation map and their propagation through depth.

For the network ``h^l = W^l phi(h^{l-1}) + b^l`` with
``W_ij ~ N(0, sigma_w2/N)``, ``b_i ~ N(0, sigma_b2)``, at infinite width
(Poole et al. 2016, Schoenholz et al. 2017):

.. math::

  q^{l} = \\sigma_w^2 E[\\phi(\\sqrt{q^{l-1}} z)^2] + \\sigma_b^2,
  \\qquad
  q_{12}^{l} = \\sigma_w^2 E[\\phi(u_1) \\phi(u_2)] + \\sigma_b^2,
  \\qquad c^l = q_{12}^l / q^l,

with ``u1 = sqrt(q) z1``, ``u2 = sqrt(q) (c z1 + sqrt(1 - c^2) z2)``, both
inputs of the same length ``q = q^{l-1}`` and correlation ``c = c^{l-1}``.
Where ``c^l > 1/2`` it is computed as
``1 - sigma_w2 E[(phi(u1) - phi(u2))^2] / (2 q^l)``, which has no cancellation
as ``c -> 1``.

:func:`q_map`, :func:`c_map` and :func:`propagate` also cover the MLP's
variants, by the fields ``residual``, ``alpha``, ``norm`` and ``keep_prob``
of their ``arch=meanfield.MLP(...)`` (and of a :class:`~meanfield.Network`'s
``arch``): a residual branch
``h^l = h^{l-1} + alpha (W^l phi(h^{l-1}) + b^l)`` (Yang & Schoenholz 2017),
a LayerNorm before ``phi`` (``norm="layer"``) and dropout with keep
probability ``p = keep_prob`` on the post-activations (Schoenholz et al.
2017, Sec. 6). For ``l >= 2``, from ``q = q^{l-1}`` and ``c = c^{l-1}``,
with ``s = 1`` for a residual network (else 0 and ``alpha = 1``) and
``q_phi`` the length entering ``phi`` (1 after a LayerNorm, else ``q``):

.. math::

  q^l = s q + \\alpha^2 \\big(\\tfrac{\\sigma_w^2}{p} E[\\phi(\\sqrt{q_\\phi} z)^2]
        + \\sigma_b^2\\big),
  \\qquad
  q^l c^l = s q c + \\alpha^2 \\big(\\sigma_w^2 E[\\phi(u_1)\\phi(u_2)] + \\sigma_b^2\\big),

``(u1, u2)`` of variance ``q_phi`` and correlation ``c``. With the plain
values (``MLP()``: ``residual=False, alpha=1, norm=None, keep_prob=1``, scalars) they
run the plain MLP's code above; derivations of the variants are in
docs/architectures.md. BatchNorm (``norm="batch"``) couples the inputs of
a batch and has no map of this form: it raises ``ValueError``.

Every function broadcasts over its array arguments (result: the broadcast
shape, in their floating dtype), is pure, and jits, vmaps and differentiates.
``activation`` (a name, an :class:`~meanfield.Activation` or a callable) is
static: it is resolved before tracing.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from meanfield import _checks, _variants
from meanfield._integrals import (as_arrays, correlation_map, float_dtype, length_map,
                                  length_map_slope, second_moments)
from meanfield.activations import activation as _activation
from meanfield._fixed_points import q_star
from meanfield.gaussian import gaussian_expectation
from meanfield.network import (MLP, Architecture, accepts_network, architecture_inputs,
                               check_architecture)

__all__ = ["q_map", "c_map", "chi_1", "q_map_slope", "propagate", "Propagation",
           "post_activation_variance"]

Array = jax.Array
ArrayLike = Any

_jit = functools.partial(jax.jit, static_argnames=("act",))

#: The MLP's variant fields that q_map, c_map and propagate cover.
_VARIANT_FIELDS = ("residual", "alpha", "norm", "keep_prob")


def _length(q, sigma_w2, sigma_b2, act):
  """``q`` checked, or the fixed point ``q*`` where it is None."""
  if q is None:
    return q_star(sigma_w2=sigma_w2, sigma_b2=sigma_b2, activation=act)
  return _checks.nonnegative("q", q, "a length")


def _is_one(x: Any) -> bool:
  """``x`` is a concrete real scalar equal to 1 (a plain ``alpha`` or ``keep_prob``)."""
  a = _checks.concrete(x)
  return a is not None and a.ndim == 0 and a.dtype.kind in "iuf" and bool(a == 1)


def _is_plain(residual: Any, alpha: Any, norm: Any, keep_prob: Any) -> bool:
  """The MLP's variant fields are the plain MLP's: the plain code runs, unchanged."""
  return residual is False and norm is None and _is_one(alpha) and _is_one(keep_prob)


def _mlp(fn_name: str, arch: Any) -> tuple[Any, Any, Any, Any]:
  """``arch``'s ``(residual, alpha, norm, keep_prob)``; ValueError unless it is an MLP."""
  if not isinstance(arch, MLP):
    raise ValueError(
        f"`arch` of `{fn_name}` must be a meanfield.MLP (`{fn_name}` is the fully connected "
        f"MLP's map; for another architecture use meanfield.propagate(arch=...), or its own "
        f"map such as meanfield.Conv.covariance_map), got {arch!r}")
  return arch.residual, arch.alpha, arch.norm, arch.keep_prob


def _variant(fn_name: str, residual: Any, alpha: Any, norm: Any, keep_prob: Any):
  """Checked ``(Variant, alpha, keep_prob)``; ``alpha``/``keep_prob`` None where unused (1)."""
  variant, alpha, keep_prob = _variants.check_variant(fn_name, residual=residual, alpha=alpha,
                                                      norm=norm, keep_prob=keep_prob)
  return (variant, alpha if variant.residual else None,
          None if _is_one(keep_prob) else keep_prob)


# --- public maps ----------------------------------------------------------------


@_jit
def _q_map(act, q, sigma_w2, sigma_b2):
  q, sigma_w2, sigma_b2 = as_arrays(q, sigma_w2, sigma_b2)
  return length_map(act, sigma_w2, sigma_b2, q)


@accepts_network(supports=_VARIANT_FIELDS)
def q_map(q: ArrayLike, *, sigma_w2: ArrayLike, sigma_b2: ArrayLike, activation: Any,
          arch: Architecture = MLP()) -> Array:
  """The length map ``q -> sigma_w2 E[phi(sqrt(q) z)^2] + sigma_b2`` (Poole et al. 2016, Eq. 3).

  With a variant ``arch`` (module docstring): ``q -> s q + alpha^2
  ((sigma_w2 / p) E[phi(sqrt(q_phi) z)^2] + sigma_b2)``. Residual: Yang &
  Schoenholz 2017, Eq. 4; dropout: Schoenholz et al. 2017, Eq. 18. After a
  LayerNorm the branch sees length 1, so without ``residual`` the map is
  the constant ``q_LN = (sigma_w2 / p) E[phi(z)^2] + sigma_b2`` (broadcast
  to ``q``'s shape): the length of every layer ``l >= 2``, whatever ``q``.

  Args:
    q: input length (mean squared pre-activation), ``>= 0``.
    sigma_w2, sigma_b2: weight and bias variances, ``>= 0``.
    activation: a name from :func:`meanfield.activation_names`, an Activation
      or a callable.
    arch: a :class:`meanfield.MLP` (default ``MLP()``, the plain MLP): its
      ``residual`` (a skip connection around each layer ``l >= 2``),
      ``alpha`` (the residual branch's scale, ``> 0``; 1 without
      ``residual``), ``norm`` (``None``, or ``"layer"`` for a LayerNorm
      before ``phi``) and ``keep_prob`` (dropout's keep probability ``p``,
      in ``(0, 1]``); ``alpha`` and ``keep_prob`` may be arrays.

  Returns:
    The next layer's length, broadcast shape of ``q, sigma_w2, sigma_b2``
    (and of ``alpha``, ``keep_prob`` where they enter), their floating dtype.

  Raises:
    ValueError: negative ``q`` or variance, unknown activation, ``arch`` not
      an MLP, ``arch.alpha != 1`` without ``arch.residual``, ``arch.norm="batch"``.
  """
  act = _activation(activation)
  residual, alpha, norm, keep_prob = _mlp("q_map", arch)
  q = _checks.nonnegative("q", q, "a length")
  sigma_w2, sigma_b2 = _checks.hyperparameters(sigma_w2, sigma_b2)
  if _is_plain(residual, alpha, norm, keep_prob):
    return _q_map(act, q, sigma_w2, sigma_b2)
  variant, alpha, keep_prob = _variant("q_map", residual, alpha, norm, keep_prob)
  return _variants.maps(act, variant, q, 1.0, sigma_w2, sigma_b2, alpha, keep_prob)[0]


@_jit
def _q_map_slope(act, q, sigma_w2):
  q, sigma_w2 = as_arrays(q, sigma_w2)
  return length_map_slope(act, sigma_w2, q)


@accepts_network
def q_map_slope(q: ArrayLike, *, sigma_w2: ArrayLike, sigma_b2: ArrayLike,
                activation: Any) -> Array:
  """``d q_map / d q = chi_1(q) + sigma_w2 E[phi''(u) phi(u)]`` (Schoenholz et al. 2017, Eq. 5).

  Computed as the derivative of the (closed-form or quadrature) length map, so
  kinks contribute their delta functions correctly; at ``q = 0`` the limit
  from above (ReLU: ``sigma_w2 / 2``). Same arguments and shape as
  :func:`q_map` (``sigma_b2`` does not enter, but is checked and broadcast).
  """
  act = _activation(activation)
  q = _checks.nonnegative("q", q, "a length")
  sigma_w2, sigma_b2 = _checks.hyperparameters(sigma_w2, sigma_b2)
  return _q_map_slope(act, q, sigma_w2) + 0 * jnp.asarray(sigma_b2)


@accepts_network
def post_activation_variance(q: ArrayLike, *, activation: Any) -> Array:
  """``Var[phi(sqrt(q) z)] = E[phi(sqrt(q) z)^2] - E[phi(sqrt(q) z)]^2``, ``z ~ N(0, 1)``.

  The mean-field variance over units of the post-activations ``phi(h^l)`` of
  a layer whose pre-activations have length ``q = q^l``: at infinite width
  ``h_i^l`` are independent ``N(0, q^l)`` (Poole et al. 2016), so the
  post-activations have mean ``E[phi(sqrt(q) z)]`` and this variance. Its
  second moment alone is the q-map's ``(q_map(q) - sigma_b2) / sigma_w2``.
  Both moments come from one quadrature (:func:`meanfield.gaussian.gaussian_expectation`,
  split at the activation's kinks); the difference is clipped at 0 against
  roundoff. Being a difference of moments, its absolute error is a few
  machine epsilons times ``E[phi^2]``: relative accuracy is lost where the
  variance is far below ``E[phi]^2`` (``q -> 0`` when ``phi(0) != 0``).
  Evaluated eagerly (no loop to compile).

  Args:
    q: pre-activation length(s), ``>= 0`` (nan propagates), any shape.
    activation: a name from :func:`meanfield.activation_names`, an Activation
      or a callable.

  Returns:
    The variance, shape of ``q``, its floating dtype (float32 unless 64-bit is
    on and ``q`` is float64).

  Raises:
    ValueError: negative or infinite ``q``, unknown activation.
  """
  act = _activation(activation)
  q = _checks.nonnegative("q", q, "a length")
  q = jnp.asarray(q, float_dtype(q))
  m2, m1 = gaussian_expectation(lambda h: (act.fn(h) ** 2, act.fn(h)), q, kinks=act.kinks)
  return jnp.maximum(m2 - m1 ** 2, 0.0)


@_jit
def _chi_1(act, q, sigma_w2, sigma_b2):
  q, sigma_w2, sigma_b2 = as_arrays(q, sigma_w2, sigma_b2)
  return sigma_w2 * second_moments(act, q)[1]


@accepts_network
def chi_1(*, sigma_w2: ArrayLike, sigma_b2: ArrayLike, activation: Any,
          q: ArrayLike | None = None) -> Array:
  """``chi_1 = sigma_w2 E[phi'(sqrt(q) z)^2]``, the slope of the c-map at ``c = 1`` (Poole et al. 2016).

  Args:
    sigma_w2, sigma_b2, activation: as in :func:`q_map`.
    q: the length; default the fixed point ``q*`` (:func:`meanfield.q_star`),
      where ``chi_1 < 1`` is ordered and ``chi_1 > 1`` chaotic.

  Returns:
    Broadcast shape of the arguments. Where ``q*`` is infinite the value is
    the activation's closed form if it has one (ReLU: ``sigma_w2 / 2``), else nan.
  """
  act = _activation(activation)
  sigma_w2, sigma_b2 = _checks.hyperparameters(sigma_w2, sigma_b2)
  q = _length(q, sigma_w2, sigma_b2, act)
  return _chi_1(act, q, sigma_w2, sigma_b2)


@_jit
def _c_map(act, c, q, sigma_w2, sigma_b2):
  c, q, sigma_w2, sigma_b2 = as_arrays(c, q, sigma_w2, sigma_b2)
  return correlation_map(act, sigma_w2, sigma_b2, q, c)[1]


@accepts_network(supports=_VARIANT_FIELDS)
def c_map(c: ArrayLike, *, sigma_w2: ArrayLike, sigma_b2: ArrayLike, activation: Any,
          q: ArrayLike | None = None, arch: Architecture = MLP()) -> Array:
  """The correlation map of two inputs of equal length ``q`` (Poole et al. 2016, Eq. 5).

  .. math:: c \\mapsto \\frac{\\sigma_w^2 E[\\phi(u_1)\\phi(u_2)] + \\sigma_b^2}{q_{map}(q)}

  with ``u1 = sqrt(q) z1``, ``u2 = sqrt(q) (c z1 + sqrt(1 - c^2) z2)``.
  With a variant ``arch`` (module docstring):
  ``c -> (s q c + alpha^2 (sigma_w2 E[phi(u1) phi(u2)] + sigma_b2)) / q_map(q)``,
  ``(u1, u2)`` of variance ``q_phi`` (Schoenholz et al. 2017, Eq. 19, for
  dropout): with dropout ``c = 1`` maps below 1; after a LayerNorm
  without ``residual`` the map does not depend on ``q``.

  Args:
    c: input correlation in ``[-1, 1]``.
    sigma_w2, sigma_b2, activation: as in :func:`q_map`.
    q: the inputs' length; default ``q*`` (then ``q_map(q) = q``), with
      dropout the dropout network's ``q*``. Needed with ``arch.residual``
      (a residual network has no fixed length); not needed after a
      LayerNorm without it (if given, the result broadcasts over it).
    arch: a :class:`meanfield.MLP`, the variant, as in :func:`q_map`.

  Returns:
    The output correlation, broadcast shape of the arguments, their
    floating dtype; without dropout ``c = 1`` maps to exactly 1.

  Raises:
    ValueError: ``|c| > 1``, negative ``q`` or variance, unknown activation,
      ``q`` missing with ``arch.residual``, ``arch`` as in :func:`q_map`.
  """
  act = _activation(activation)
  residual, alpha, norm, keep_prob = _mlp("c_map", arch)
  c = _checks.correlation("c", c)
  sigma_w2, sigma_b2 = _checks.hyperparameters(sigma_w2, sigma_b2)
  if _is_plain(residual, alpha, norm, keep_prob):
    q = _length(q, sigma_w2, sigma_b2, act)
    return _c_map(act, c, q, sigma_w2, sigma_b2)
  variant, alpha, keep_prob = _variant("c_map", residual, alpha, norm, keep_prob)
  if q is not None:
    q = _checks.nonnegative("q", q, "a length")
  elif variant.residual:
    raise ValueError("`q` must be given to `c_map` with arch=MLP(residual=True) (a length "
                     ">= 0): a residual network's length grows and has no fixed point, got None")
  elif not variant.layer_norm:      # the q-map's fixed point; with dropout at sigma_w2 / p
    scaled = sigma_w2 if keep_prob is None else jnp.asarray(sigma_w2) / jnp.asarray(keep_prob)
    q = q_star(sigma_w2=scaled, sigma_b2=sigma_b2, activation=act)
  return _variants.maps(act, variant, q, c, sigma_w2, sigma_b2, alpha, keep_prob)[1]


# --- propagation through depth ------------------------------------------------


class Propagation(NamedTuple):
  """Layer-by-layer theory for two inputs; every field has shape ``batch + (depth,)``.

  Index ``l - 1`` of the last (``layer``) axis holds layer ``l = 1..depth``
  (for another architecture, of the axis after ``batch``).

  Attributes:
    q: ``q^l``, the length of either input's pre-activations at layer l.
    c: ``c^l``, the correlation of the two inputs' pre-activations at layer l.
    chi_1: ``sigma_w2 E[phi'(sqrt(q^l) z)^2]``, the slope of the c-map at
      ``c = 1`` applied to layer l (the per-layer gradient-norm factor; for
      a variant, that factor as :func:`propagate` gives it).
    extra: ``None`` for the MLP; an architecture's own values, a dict of
      arrays. :class:`meanfield.Conv`: ``q`` and ``chi_1`` per position,
      ``batch + (depth, n)``, ``c`` between positions ``batch + (depth, n,
      n)``, and ``extra={"covariance": Sigma^l}``, ``batch + (depth, n, n)``.
  """

  q: Array
  c: Array
  chi_1: Array
  extra: dict | None = None


@accepts_network(supports=_VARIANT_FIELDS)
def propagate(*, q_input: ArrayLike | None = None, c_input: ArrayLike | None = None, depth: int,
              sigma_w2: ArrayLike, sigma_b2: ArrayLike, activation: Any,
              covariance: ArrayLike | None = None, arch: Architecture = MLP()) -> Propagation:
  """Iterate the q- and c-maps from two inputs through ``depth`` layers.

  The inputs ``x, x'`` have ``|x|^2 / N_0 = |x'|^2 / N_0 = q_input`` and
  cosine ``c_input``. Layer 1 is affine in the input (no activation, no
  skip, LayerNorm or dropout):

  .. math::

    q^1 = \\sigma_w^2 q_{input} + \\sigma_b^2, \\qquad
    c^1 = (\\sigma_w^2 q_{input} c_{input} + \\sigma_b^2) / q^1,

  and for ``l >= 2``, ``q^l = q_map(q^{l-1})``,
  ``c^l = c_map(c^{l-1}, q=q^{l-1})``, with the MLP's variant as given
  (any combination of ``residual``/``alpha``, ``norm="layer"`` and
  ``keep_prob``, as ``empirical.models.forward`` builds them). So
  ``q^l, c^l`` predict a network's l-th pre-activations ``h^l`` (``l = 1``
  is the first hidden layer's pre-activation ``W^1 x + b^1``; with a
  LayerNorm, ``h^l`` before normalisation); ``q^l c^l`` is the
  infinite-width NNGP kernel of ``h^l``. Uses ``lax.scan`` over depth (one
  compile per activation, variant and depth, served from the cache afterwards).

  Args:
    q_input: the inputs' squared length per coordinate, ``>= 0``.
    c_input: their cosine, in ``[-1, 1]``.
    depth: number of layers, an integer ``>= 1``.
    sigma_w2, sigma_b2, activation: as in :func:`q_map`.
    covariance: another architecture's input (``arch.inputs``), e.g. for
      :class:`meanfield.Conv` the input covariance across positions
      ``Sigma^0_ab = x_a . x_b / C_0``, ``(..., n, n)``, symmetric positive
      semi-definite; not for the MLP.
    arch: the architecture value (:class:`meanfield.network.Architecture`):
      :class:`meanfield.MLP` (default ``MLP()``; its variant as in
      :func:`q_map`), or another such as ``meanfield.Conv(kernel_size=3)``,
      whose ``propagate`` hook answers.

  Example::

    x = jax.random.normal(key, (16, 3)); cov = x @ x.T / 3
    meanfield.propagate(covariance=cov, depth=20, sigma_w2=1.5, sigma_b2=0.05,
                        activation="tanh", arch=meanfield.Conv(kernel_size=3)).c[-1]

  Returns:
    A :class:`Propagation` whose fields have shape
    ``broadcast(q_input, c_input, sigma_w2, sigma_b2).shape + (depth,)``
    (with a variant, also broadcast over ``alpha`` and ``keep_prob``).
    Where ``q^l = 0`` the correlation is nan. Its ``chi_1`` is the
    per-layer gradient factor ``|dL/dh^l|^2 / |dL/dh^{l+1}|^2`` (mean-field
    gradient independence): ``(sigma_w2 / p) E[phi'(u)^2] q_phi / q^l``
    (``u`` of variance ``q_phi``; a LayerNorm's Jacobian divides by
    ``sqrt(q^l)``), ``1 + alpha^2`` times that for a residual network.

  Raises:
    ValueError: ``depth < 1``, ``|c_input| > 1``, negative lengths or
      variances, unknown activation, ``arch`` not an Architecture, an MLP's
      variant as in :func:`q_map`;
      an input keyword the architecture does not read (``covariance`` for
      the MLP, ``q_input``/``c_input`` for a CNN) or one it needs missing.
  """
  act = _activation(activation)
  depth = _checks.check_depth(depth)
  check_architecture("propagate", arch)
  inputs = architecture_inputs("propagate", arch, q_input=q_input, c_input=c_input,
                               covariance=covariance)
  if not isinstance(arch, MLP):
    sigma_w2, sigma_b2 = _checks.hyperparameters(sigma_w2, sigma_b2)
    return arch.propagate(act, depth, sigma_w2, sigma_b2, **inputs)
  residual, alpha, norm, keep_prob = arch.residual, arch.alpha, arch.norm, arch.keep_prob
  q_input = _checks.nonnegative("q_input", q_input, "a length")
  c_input = _checks.correlation("c_input", c_input)
  sigma_w2, sigma_b2 = _checks.hyperparameters(sigma_w2, sigma_b2)
  if _is_plain(residual, alpha, norm, keep_prob):
    return _propagate(act, depth, q_input, c_input, sigma_w2, sigma_b2)
  variant, alpha, keep_prob = _variants.check_variant(
      "propagate", residual=residual, alpha=alpha, norm=norm, keep_prob=keep_prob)
  return Propagation(*_variants.propagate(act, variant, depth, q_input, c_input, sigma_w2,
                                          sigma_b2, alpha, keep_prob))


@functools.partial(jax.jit, static_argnames=("act", "depth"))
def _propagate(act, depth, q_input, c_input, sigma_w2, sigma_b2):
  q_input, c_input, sigma_w2, sigma_b2 = as_arrays(q_input, c_input, sigma_w2, sigma_b2)
  q1 = sigma_w2 * q_input + sigma_b2
  c1 = jnp.where(c_input > 0.5, 1 - sigma_w2 * q_input * (1 - c_input) / q1,
                 (sigma_w2 * q_input * c_input + sigma_b2) / q1)

  def layer(carry, _):
    q, c = carry
    q_next, c_next = correlation_map(act, sigma_w2, sigma_b2, q, c)
    return (q_next, c_next), (q_next, c_next)

  _, (qs, cs) = jax.lax.scan(layer, (q1, c1), None, length=depth - 1)
  qs = jnp.concatenate([q1[None], qs], axis=0)
  cs = jnp.concatenate([c1[None], cs], axis=0)
  chi = sigma_w2[None] * second_moments(act, qs)[1]
  last = lambda a: jnp.moveaxis(a, 0, -1)
  return Propagation(q=last(qs), c=last(cs), chi_1=last(chi))
