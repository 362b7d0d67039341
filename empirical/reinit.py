"""Re-initialise a user's Flax nnx model in place with given initialisers.

:func:`reinit` walks the model's graph (:func:`flax.nnx.iter_graph`), finds
every ``nnx.Linear`` and ``nnx.Conv`` layer (and ``nnx.ConvTranspose``,
``nnx.LinearGeneral`` and ``nnx.Einsum`` are left alone: their kernel
layouts do not have one fan-in axis before one fan-out axis), and replaces
its kernel and bias by fresh draws. The initialisers come from an object
with ``kernel_init`` and ``bias_init`` attributes, such as the result of
:func:`meanfield.critical_init`, or are passed directly::

  model = MyModel(rngs=nnx.Rngs(0))
  empirical.reinit(model, meanfield.critical_init("tanh", sigma_b2=0.05), key=jax.random.key(1))

Layer ``i`` (in the order of :func:`flax.nnx.iter_graph`) draws from
``fold_in(key, i)``, its kernel and bias from the two halves of a split of
it, so a model's weights depend only on ``key`` and its structure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from flax import nnx

from empirical import _checks

__all__ = ["reinit", "LAYER_TYPES"]

Initializer = Callable[..., jax.Array]
Path = tuple[Any, ...]

#: The layer types :func:`reinit` re-draws (kernels ``(..., fan_in, fan_out)``).
LAYER_TYPES = (nnx.Linear, nnx.Conv)


def _initialisers(init: Any, kernel_init: Initializer | None, bias_init: Initializer | None
                  ) -> tuple[Initializer, Initializer]:
  if init is not None:
    if kernel_init is not None or bias_init is not None:
      raise ValueError("give `init` or `kernel_init`/`bias_init`, not both")
    kernel_init = getattr(init, "kernel_init", None)
    bias_init = getattr(init, "bias_init", None)
    if not (callable(kernel_init) and callable(bias_init)):
      raise ValueError(f"`init` must have callable `kernel_init` and `bias_init` attributes "
                       f"(e.g. meanfield.critical_init(...)), got {init!r}")
    return kernel_init, bias_init
  for name, fn in (("kernel_init", kernel_init), ("bias_init", bias_init)):
    if not callable(fn):
      raise ValueError(f"`{name}` must be an initialiser (key, shape, dtype) -> Array "
                       f"(or pass `init`), got {fn!r}")
  return kernel_init, bias_init


def reinit(model: nnx.Module, init: Any = None, *, key: jax.Array,
           kernel_init: Initializer | None = None, bias_init: Initializer | None = None,
           where: Callable[[Path, nnx.Module], bool] | None = None) -> list[Path]:
  """Replace the kernels and biases of ``model``'s Linear and Conv layers, in place.

  Args:
    model: an ``nnx.Module``.
    init: an object with ``kernel_init`` and ``bias_init`` (a
      ``meanfield.CriticalInit``); or pass the two initialisers as keywords.
    key: a JAX PRNG key (layer ``i`` uses ``fold_in(key, i)``).
    kernel_init, bias_init: ``(key, shape, dtype) -> Array``.
    where: optional ``(path, layer) -> bool`` choosing the layers to redraw
      (default: all of :data:`LAYER_TYPES`).

  Returns:
    The graph paths of the layers redrawn, in drawing order. Kernels and
    biases keep their shapes and dtypes; layers without a bias keep none.

  Raises:
    ValueError: ``model`` is not an nnx Module, bad ``key``, initialisers
      missing or given twice, no layer selected, or an initialiser refuses a
      layer's kernel shape (the layer is named).
  """
  if not isinstance(model, nnx.Module):
    raise ValueError(f"`model` must be a flax.nnx.Module, got {type(model).__name__}")
  key = _checks.check_key(key)
  kernel_init, bias_init = _initialisers(init, kernel_init, bias_init)
  layers = [(path, node) for path, node in nnx.iter_graph(model)
            if isinstance(node, LAYER_TYPES) and (where is None or where(path, node))]
  if not layers:
    raise ValueError("`model` has no nnx.Linear or nnx.Conv layer"
                     + (" selected by `where`" if where is not None else ""))
  for i, (path, layer) in enumerate(layers):
    k_kernel, k_bias = jax.random.split(jax.random.fold_in(key, i))
    kernel = layer.kernel[...]
    try:
      layer.kernel[...] = kernel_init(k_kernel, kernel.shape, kernel.dtype)
    except ValueError as e:
      raise ValueError(f"`kernel_init` cannot draw the kernel of layer {'.'.join(map(str, path))} "
                       f"({type(layer).__name__}, kernel shape {kernel.shape}): {e}") from None
    if layer.bias is not None:
      bias = layer.bias[...]
      layer.bias[...] = bias_init(k_bias, bias.shape, bias.dtype)
  return [path for path, _ in layers]
