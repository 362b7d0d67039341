"""Named activations: one table entry per nonlinearity.

An :class:`Activation` carries the pointwise function ``phi`` and what the
Gaussian quadrature in :mod:`meanfield.gaussian` needs to integrate it well:
the points where ``phi`` or one of its first two derivatives is not smooth
(``kinks``), so integrals can be split there. Closed-form Gaussian integrals,
where they are known, are attached as optional fields and used in place of
quadrature.

A new activation is one entry in :data:`ACTIVATIONS`. Any ``jax.numpy``
callable can be used directly: ``activation(jnp.sin)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

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
      the quantity they compute (see :mod:`meanfield.gaussian`); empty for
      activations that are integrated by quadrature.
  """

  name: str
  fn: Callable[[Array], Array]
  kinks: tuple[float, ...] = ()
  closed_forms: dict[str, Callable[..., Array]] = dataclasses.field(
      default_factory=dict, compare=False, hash=False)

  def __call__(self, x: Any) -> Array:
    return self.fn(x)

  def derivative(self, x: Any) -> Array:
    """``phi'(x)``, elementwise, by automatic differentiation."""
    return jnp.vectorize(jax.grad(self.fn))(x)

  def second_derivative(self, x: Any) -> Array:
    """``phi''(x)``, elementwise (zero almost everywhere for piecewise-linear phi)."""
    return jnp.vectorize(jax.grad(jax.grad(self.fn)))(x)


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


# name -> Activation. Closed forms are attached in meanfield.gaussian's table
# of closed forms (see `_CLOSED_FORMS` there) so this table stays one line each.
ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation("linear", _linear),
    "relu": Activation("relu", _relu, kinks=(0.0,)),
    "leaky_relu": Activation("leaky_relu", _leaky_relu, kinks=(0.0,)),
    "tanh": Activation("tanh", jnp.tanh),
    "hard_tanh": Activation("hard_tanh", _hard_tanh, kinks=(-1.0, 1.0)),
    "erf": Activation("erf", jax.scipy.special.erf),
    "sigmoid": Activation("sigmoid", jax.nn.sigmoid),
    "softplus": Activation("softplus", jax.nn.softplus),
    "gelu": Activation("gelu", _gelu),
    "silu": Activation("silu", jax.nn.silu),
    "selu": Activation("selu", _selu, kinks=(0.0,)),
    "elu": Activation("elu", _elu, kinks=(0.0,)),
}


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

  Raises:
    ValueError: for an unknown name, listing the known ones, or an argument
      that is neither a string nor callable.
  """
  if isinstance(spec, Activation):
    return spec
  if isinstance(spec, str):
    try:
      return ACTIVATIONS[spec]
    except KeyError:
      raise ValueError(
          f"`activation` must be one of {', '.join(activation_names())} or a "
          f"callable, got {spec!r}") from None
  if callable(spec):
    return Activation(getattr(spec, "__name__", repr(spec)), spec)
  raise ValueError(
      f"`activation` must be a name ({', '.join(activation_names())}), an "
      f"Activation or a callable, got {spec!r} of type {type(spec).__name__}")
