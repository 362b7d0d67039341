"""Named activations: one table entry per nonlinearity.

An :class:`Activation` carries the pointwise function ``phi`` and what the
Gaussian quadrature in :mod:`meanfield.gaussian` needs to integrate it well:
the points where ``phi`` or one of its first two derivatives is not smooth
(``kinks``), so integrals can be split there. Closed-form Gaussian integrals,
where they are known, are attached as optional fields and used in place of
quadrature.

A new activation is one entry in :data:`ACTIVATIONS`, ``name: _entry(name,
fn, kinks)`` (or ``Activation(name, fn, kinks)``): ``phi'`` and ``phi''`` come
from autodiff unless an explicit pair is listed in ``_DERIVATIVES`` (done for
the built-ins, for accuracy in the tails), and closed forms in
``_CLOSED_FORMS`` are optional. Any ``jax.numpy`` callable can be used
directly: ``activation(jnp.sin)``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from meanfield import _checks

__all__ = ["Activation", "ACTIVATIONS", "activation", "activation_names"]

Array = jax.Array

# SELU constants (Klambauer et al. 2017).
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
LEAKY_RELU_SLOPE = 0.01


@dataclasses.dataclass(frozen=True)
class Activation:
  """A pointwise nonlinearity ``phi`` with what theory needs to integrate it.

  Attributes:
    name: the registry name (or the wrapped callable's ``__name__``).
    fn: ``phi``, a ``jax.numpy`` elementwise function; shape and dtype preserved.
    kinks: sorted points ``h`` where ``phi``, ``phi'`` or ``phi''`` is not
      smooth (ReLU: ``(0.0,)``; hard-tanh: ``(-1.0, 1.0)``). Quadrature splits
      Gaussian integrals there; a smooth activation has ``()``.
    closed_forms: optional closed-form Gaussian integrals keyed by the name of
      the quantity they compute (keys listed above ``_CLOSED_FORMS`` below:
      ``second_moment``, ``derivative_second_moment``, ``cross_moment``,
      ``derivative_cross_moment``, ``squared_difference``); a quantity without
      a closed form is integrated by quadrature (:mod:`meanfield.gaussian`).
    dfn, d2fn: optional explicit ``phi'`` and ``phi''`` (elementwise); when
      absent, :meth:`derivative` and :meth:`second_derivative` use autodiff.
  """

  name: str
  fn: Callable[[Array], Array]
  kinks: tuple[float, ...] = ()
  closed_forms: dict[str, Callable[..., Array]] = dataclasses.field(
      default_factory=dict, compare=False, hash=False)
  dfn: Callable[[Array], Array] | None = dataclasses.field(
      default=None, compare=False, hash=False)
  d2fn: Callable[[Array], Array] | None = dataclasses.field(
      default=None, compare=False, hash=False)

  def __call__(self, x: Any) -> Array:
    return self.fn(x)

  def derivative(self, x: Any) -> Array:
    """``phi'(x)``, elementwise: the explicit ``dfn`` if given, else autodiff."""
    if self.dfn is not None:
      return self.dfn(jnp.asarray(x))
    return jnp.vectorize(jax.grad(self.fn))(x)

  def second_derivative(self, x: Any) -> Array:
    """``phi''(x)``, elementwise (zero almost everywhere for piecewise-linear phi)."""
    if self.d2fn is not None:
      return self.d2fn(jnp.asarray(x))
    return jnp.vectorize(jax.grad(jax.grad(self.fn)))(x)


# --- the pointwise functions and their derivatives ---------------------------


def _linear(x):
  return jnp.asarray(x)


def _hard_tanh(x):
  return jnp.clip(x, -1.0, 1.0)


def _leaky_relu(x):
  return jax.nn.leaky_relu(x, negative_slope=LEAKY_RELU_SLOPE)


def _gelu(x):
  # The exact (erf) form, as in Hendrycks & Gimpel 2016; not the tanh approximation.
  return jax.nn.gelu(x, approximate=False)


def _selu(x):
  return _SELU_SCALE * jnp.where(x > 0, x, _SELU_ALPHA * jnp.expm1(jnp.minimum(x, 0.0)))


def _elu(x):
  return jnp.where(x > 0, x, jnp.expm1(jnp.minimum(x, 0.0)))


def _relu(x):
  return jnp.maximum(x, 0.0)


def _step(x, left, right):
  return jnp.where(x > 0, right, left).astype(x.dtype)


def _normal_pdf(x):
  return jnp.exp(-0.5 * x * x) / np.sqrt(2 * np.pi).astype(x.dtype)


def _sech2(x):
  """``1 / cosh(x)^2 = 4 e / (1 + e)^2`` with ``e = exp(-2|x|)``: no cancellation at large ``|x|``

  (``1 - tanh(x)^2`` is 0 in float64 beyond ``|x| ~ 19``).
  The exponential form for ``|x| > 1``; ``1 - tanh(x)^2`` (smoothest) inside.
  """
  e = jnp.exp(-2 * jnp.abs(x))
  t = jnp.tanh(x)
  return jnp.where(jnp.abs(x) > 1, 4 * e / ((1 + e) * (1 + e)), 1 - t * t)


_DERIVATIVES: dict[str, tuple[Callable[[Array], Array], Callable[[Array], Array]]] = {
    "linear": (jnp.ones_like, jnp.zeros_like),
    "relu": (lambda x: _step(x, 0.0, 1.0), jnp.zeros_like),
    "leaky_relu": (lambda x: _step(x, LEAKY_RELU_SLOPE, 1.0), jnp.zeros_like),
    "tanh": (lambda x: _sech2(x), lambda x: -2 * jnp.tanh(x) * _sech2(x)),
    "hard_tanh": (lambda x: (jnp.abs(x) < 1).astype(x.dtype), jnp.zeros_like),
    "erf": (lambda x: 2 / np.sqrt(np.pi) * jnp.exp(-x * x),
            lambda x: -4 / np.sqrt(np.pi) * x * jnp.exp(-x * x)),
    "sigmoid": (lambda x: jax.nn.sigmoid(x) * jax.nn.sigmoid(-x),
                lambda x: jax.nn.sigmoid(x) * jax.nn.sigmoid(-x) * jnp.tanh(-x / 2)),
    "softplus": (jax.nn.sigmoid, lambda x: jax.nn.sigmoid(x) * jax.nn.sigmoid(-x)),
    "gelu": (lambda x: jax.scipy.special.ndtr(x) + x * _normal_pdf(x),
             lambda x: (2 - x * x) * _normal_pdf(x)),
    "silu": (lambda x: jax.nn.sigmoid(x) * (1 + x * jax.nn.sigmoid(-x)),
             lambda x: jax.nn.sigmoid(x) * jax.nn.sigmoid(-x)
             * (2 + x * jnp.tanh(-x / 2))),
    "selu": (lambda x: _SELU_SCALE * jnp.where(x > 0, 1.0, _SELU_ALPHA * jnp.exp(jnp.minimum(x, 0.0))),
             lambda x: _SELU_SCALE * jnp.where(x > 0, 0.0, _SELU_ALPHA * jnp.exp(jnp.minimum(x, 0.0)))),
    "elu": (lambda x: jnp.where(x > 0, 1.0, jnp.exp(jnp.minimum(x, 0.0))),
            lambda x: jnp.where(x > 0, 0.0, jnp.exp(jnp.minimum(x, 0.0)))),
}


# --- closed-form Gaussian integrals ---------------------------------------------
#
# Keys of ``Activation.closed_forms`` (all for centred Gaussians; ``u = sqrt(q) z``,
# ``(u1, u2)`` with variances ``q11, q22`` and covariance ``q12``):
#   "second_moment"(q)                    E[phi(u)^2]
#   "derivative_second_moment"(q)         E[phi'(u)^2]
#   "cross_moment"(q11, q22, q12)          E[phi(u1) phi(u2)]
#   "derivative_cross_moment"(q11, q22, q12)  E[phi'(u1) phi'(u2)]
#   "squared_difference"(q, c)            E[(phi(u1) - phi(u2))^2] for equal
#                                          variances q and correlation c, written
#                                          without cancellation as c -> 1.


def _correlation(q11, q22, q12):
  norm = jnp.sqrt(q11 * q22)
  return jnp.clip(q12 / jnp.where(norm > 0, norm, 1), -1, 1), norm


def _angle(c):
  """``arccos(c)`` accurate near ``c = 1`` (``2 arcsin(sqrt((1 - c)/2))``)."""
  return 2 * jnp.arcsin(jnp.sqrt(jnp.clip((1 - c) / 2, 0, 1)))


def _theta_minus_sin(theta):
  """``theta - sin(theta)`` without cancellation for small theta (Taylor series)."""
  t2 = theta * theta
  series = theta * t2 / 6 * (1 - t2 / 20 * (1 - t2 / 42 * (1 - t2 / 72 * (1 - t2 / 110))))
  return jnp.where(theta < 0.25, series, theta - jnp.sin(theta))


def _arccos_kernel(c):
  """``E[relu(z1) relu(z2)]`` for unit variances and correlation c (Cho & Saul 2009)."""
  theta = _angle(c)
  return (jnp.sqrt(jnp.clip((1 - c) * (1 + c), 0, None)) + (np.pi - theta) * c) / (2 * np.pi)


def _leaky_forms(slope: float) -> dict[str, Callable[..., Array]]:
  """Closed forms for ``phi(h) = relu(h) - slope * relu(-h)`` (slope 0: ReLU)."""
  a2 = 1 + slope * slope

  def second_moment(q):
    return a2 * q / 2

  def derivative_second_moment(q):
    return jnp.full_like(q, a2 / 2)

  def cross_moment(q11, q22, q12):
    c, norm = _correlation(q11, q22, q12)
    return norm * (a2 * _arccos_kernel(c) - 2 * slope * _arccos_kernel(-c))

  def derivative_cross_moment(q11, q22, q12):
    c, _ = _correlation(q11, q22, q12)
    theta = _angle(c)
    return (a2 * (np.pi - theta) + 2 * slope * theta) / (2 * np.pi)

  def squared_difference(q, c):
    # q - 2 q k(c) = q [(pi - theta)(1 - c) + theta - sin theta] / pi for ReLU;
    # the leak adds 4 slope q k(-c) = 2 slope q (sin theta - theta c) / pi.
    theta = _angle(c)
    relu_part = ((np.pi - theta) * (1 - c) + _theta_minus_sin(theta)) / np.pi
    leak_part = 2 * ((1 - c) * theta - _theta_minus_sin(theta)) / np.pi
    return q * (a2 * relu_part + slope * leak_part)

  return dict(second_moment=second_moment,
              derivative_second_moment=derivative_second_moment,
              cross_moment=cross_moment,
              derivative_cross_moment=derivative_cross_moment,
              squared_difference=squared_difference)


def _linear_forms() -> dict[str, Callable[..., Array]]:
  return dict(
      second_moment=lambda q: q,
      derivative_second_moment=jnp.ones_like,
      cross_moment=lambda q11, q22, q12: q12 + 0 * (q11 + q22),
      derivative_cross_moment=lambda q11, q22, q12: jnp.ones_like(q12 + q11 + q22),
      squared_difference=lambda q, c: 2 * q * (1 - c))


def _erf_forms() -> dict[str, Callable[..., Array]]:
  """Williams 1997: ``E[erf(u1) erf(u2)] = (2/pi) arcsin(2 q12 / sqrt((1+2q11)(1+2q22)))``."""

  # written so that no intermediate overflows before q does (q* ~ sigma_w2 at any sigma_w2)
  def second_moment(q):
    return 2 / np.pi * jnp.arcsin(q / (q + 0.5))

  def derivative_second_moment(q):
    return 2 / (np.pi * jnp.sqrt(q + 0.25))

  def cross_moment(q11, q22, q12):
    return 2 / np.pi * jnp.arcsin(q12 / (jnp.sqrt(q11 + 0.5) * jnp.sqrt(q22 + 0.5)))

  def derivative_cross_moment(q11, q22, q12):
    # (4/pi) E[exp(-u1^2 - u2^2)] = (4/pi) det(I + 2 Sigma)^(-1/2).
    return 4 / (np.pi * jnp.sqrt((1 + 2 * q11) * (1 + 2 * q22) - 4 * q12 * q12))

  def squared_difference(q, c):
    # (4/pi) (arcsin r - arcsin rc), r = 2q/(1+2q), as one atan2 without cancellation.
    r = q / (q + 0.5)
    a = jnp.sqrt((1 - r) * (1 + r))
    b = jnp.sqrt((1 - r * c) * (1 + r * c))
    sin = r * (1 - c) * (1 + c) / (b + c * a)
    cos = a * b + r * r * c
    return 4 / np.pi * jnp.arctan2(sin, cos)

  return dict(second_moment=second_moment,
              derivative_second_moment=derivative_second_moment,
              cross_moment=cross_moment,
              derivative_cross_moment=derivative_cross_moment,
              squared_difference=squared_difference)


def _hard_tanh_forms() -> dict[str, Callable[..., Array]]:
  """1-D forms for ``clip(h, -1, 1)``; its 2-D integrals use split quadrature."""

  def second_moment(q):
    safe = jnp.where(q > 0, q, 1)
    t = jnp.where(q > 0, 1 / jnp.sqrt(2 * safe), jnp.inf)   # 1 / sqrt(2 q)
    inner = q * jax.scipy.special.erf(t) - 2 * jnp.sqrt(q) * _normal_pdf(np.sqrt(2) * t)
    return inner + jax.scipy.special.erfc(t)

  def derivative_second_moment(q):
    safe = jnp.where(q > 0, q, 1)
    return jnp.where(q > 0, jax.scipy.special.erf(1 / jnp.sqrt(2 * safe)), 1).astype(q.dtype)

  return dict(second_moment=second_moment,
              derivative_second_moment=derivative_second_moment)


_CLOSED_FORMS: dict[str, dict[str, Callable[..., Array]]] = {
    "linear": _linear_forms(),
    "relu": _leaky_forms(0.0),
    "leaky_relu": _leaky_forms(LEAKY_RELU_SLOPE),
    "erf": _erf_forms(),
    "hard_tanh": _hard_tanh_forms(),
}


def _entry(name: str, fn: Callable[[Array], Array], kinks: tuple[float, ...] = ()) -> Activation:
  """The registry's ``Activation`` for ``name``: explicit derivatives and closed forms
  where ``_DERIVATIVES`` and ``_CLOSED_FORMS`` list them, autodiff and quadrature otherwise."""
  dfn, d2fn = _DERIVATIVES.get(name, (None, None))
  return Activation(name, fn, kinks, dict(_CLOSED_FORMS.get(name, {})), dfn, d2fn)


# name -> Activation: one line each (explicit derivatives and closed forms, where there are
# any, are looked up by name; without them autodiff and quadrature are used).
ACTIVATIONS: dict[str, Activation] = {
    "linear": _entry("linear", _linear),
    "relu": _entry("relu", _relu, kinks=(0.0,)),
    "leaky_relu": _entry("leaky_relu", _leaky_relu, kinks=(0.0,)),
    "tanh": _entry("tanh", jnp.tanh),
    "hard_tanh": _entry("hard_tanh", _hard_tanh, kinks=(-1.0, 1.0)),
    "erf": _entry("erf", jax.scipy.special.erf),
    "sigmoid": _entry("sigmoid", jax.nn.sigmoid),
    "softplus": _entry("softplus", jax.nn.softplus),
    "gelu": _entry("gelu", _gelu),
    "silu": _entry("silu", jax.nn.silu),
    "selu": _entry("selu", _selu, kinks=(0.0,)),
    "elu": _entry("elu", _elu, kinks=(0.0,)),
}


@functools.lru_cache(maxsize=256)
def _elementwise_checked(fn: Callable[[Array], Array]) -> bool:
  _checks.check_elementwise("activation", fn)
  return True


def _check_elementwise(fn: Callable[[Array], Array]) -> None:
  try:
    _elementwise_checked(fn)
  except TypeError:              # unhashable callable: check it every time
    _checks.check_elementwise("activation", fn)


def activation_names() -> tuple[str, ...]:
  """The registered activation names, sorted."""
  return tuple(sorted(ACTIVATIONS))


def activation(spec: str | Activation | Callable[[Array], Array]) -> Activation:
  """An :class:`Activation` for a registry name, an ``Activation`` or a callable.

  Args:
    spec: a name from :data:`ACTIVATIONS` (e.g. ``"tanh"``), an
      :class:`Activation` (returned unchanged), or any elementwise
      ``jax.numpy`` callable, which is wrapped as a smooth activation
      integrated by quadrature (pass an ``Activation`` with ``kinks`` for a
      callable that has kinks).

  Any ``fn`` not from the table is checked once (the result is cached by
  the function): it must trace and be elementwise, float array in, float
  array of the same shape out (:func:`meanfield._checks.check_elementwise`).

  Raises:
    ValueError: for an unknown name, listing the known ones, an argument
      that is neither a string nor callable, or a callable that does not
      trace (``math.tanh``) or is not elementwise (``jnp.sum``).
  """
  if isinstance(spec, Activation):
    if ACTIVATIONS.get(spec.name) is not spec:
      _check_elementwise(spec.fn)
    return spec
  if isinstance(spec, str):
    try:
      return ACTIVATIONS[spec]
    except KeyError:
      raise ValueError(
          f"`activation` must be one of {', '.join(activation_names())} or a "
          f"callable, got {spec!r}") from None
  if callable(spec):
    _check_elementwise(spec)
    return Activation(getattr(spec, "__name__", repr(spec)), spec)
  raise ValueError(
      f"`activation` must be a name ({', '.join(activation_names())}), an "
      f"Activation or a callable, got {spec!r} of type {type(spec).__name__}")
