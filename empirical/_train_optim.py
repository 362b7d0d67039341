"""The optimizers of :func:`empirical.train`: optax transformations at unit learning rate.

Each network's update is multiplied by its own learning rate afterwards
(exact for these three optimizers, whose updates are linear in the rate), so
``learning_rate`` can be a grid axis of one compiled program.
"""

from __future__ import annotations

import optax

from empirical import _checks

#: Optimizer names accepted by :func:`empirical.train`.
OPTIMIZERS = ("sgd", "momentum", "adam")


def optimizer(name: str = "sgd", *, momentum: float = 0.9,
              clip_norm: float | None = None) -> optax.GradientTransformation:
  """The optax transformation of ``name`` at unit learning rate.

  ``"sgd"``: ``optax.sgd(1.0)``; ``"momentum"``: ``optax.sgd(1.0,
  momentum=momentum)``; ``"adam"``: ``optax.adam(1.0)``; each preceded by
  ``optax.clip_by_global_norm(clip_norm)`` if ``clip_norm`` is given.
  Multiply its updates by the learning rate (all three are linear in it).
  """
  name = check_optimizer(name)
  momentum = _checks.check_number("momentum", 0.9 if momentum is None else momentum,
                                  minimum=0.0, below=1.0)
  clip_norm = check_clip_norm(clip_norm)
  if name == "sgd":
    base = optax.sgd(1.0)
  elif name == "momentum":
    base = optax.sgd(1.0, momentum=momentum)
  else:
    base = optax.adam(1.0)
  if clip_norm is None:
    return base
  return optax.chain(optax.clip_by_global_norm(clip_norm), base)


def check_optimizer(name) -> str:
  if not isinstance(name, str) or name not in OPTIMIZERS:
    raise ValueError(f"`optimizer` must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
  return name


def check_clip_norm(clip_norm) -> float | None:
  if clip_norm is None:
    return None
  return _checks.check_number("clip_norm", clip_norm, minimum=0.0, strict=True)
