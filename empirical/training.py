"""Training many networks at once, with the per-layer probes recorded over time.

:func:`train` trains a grid of networks (``activation`` x ``init`` x
``width`` x ``depth`` x ``sigma_w2`` x ``sigma_b2`` x ``learning_rate``)
times ``n_seeds`` seeds on one data set. The optimizer step is written for
one network and ``jax.vmap``-ed over the networks of a chunk (no Python loop
over networks: one jitted program per activation, init, width and depth),
and the steps between two recordings run in one ``lax.fori_loop``. The networks are :mod:`empirical.models`' MLP with a
linear readout to the classes,

.. math::

  h^1 = x W^1 + b^1, \\quad h^l = \\phi(h^{l-1}) W^l + b^l \\ (l = 2..L), \\quad
  \\mathrm{logits} = \\phi(h^L) W^\\mathrm{out} + b^\\mathrm{out},

(with optional skip connections and Layer/BatchNorm, as in
:func:`empirical.models.forward`), initialised as in :mod:`empirical.inits`:
``W^l_ij`` with variance ``sigma_w2 / fan_in`` (the readout too),
``b^l_i ~ N(0, sigma_b2)``, readout bias 0. The loss is the mean softmax
cross-entropy over a minibatch. Schoenholz et al. 2017 (Sec. 6, Fig. 5/6)
predict that such networks train only up to a depth of about ``6 xi_c``.

With ``architecture="conv"`` the networks are instead :mod:`empirical.conv`'s
circular CNNs (1-D or 2-D, ``width`` channels, kernel schemes such as
Xiao et al. 2018's ``"delta_orthogonal"``), each flat input reshaped to
``input_shape``, ``phi(h^L)`` averaged over the positions before the
readout; everything else (optimizers, minibatches, chunks, stores) is the
same, and a record keeps the quantities that carry over (see :func:`train`).

Random numbers follow the package's seed-key convention: network ``seed``
has key ``k = fold_in(key, seed)`` (:func:`empirical.models.network_key`),
the same for every grid point, so networks of one seed at different
``sigma_w2`` share their standard draw (common random numbers) *and* their
minibatches. Weights come from ``fold_in(k, WEIGHTS)``, biases from
``fold_in(k, BIASES)``; the minibatch of step ``t`` is drawn from
``fold_in(fold_in(k, BATCHES), t)`` (the streams are named in
:mod:`empirical.streams`): ``batch_size`` training examples,
uniformly with replacement (:func:`empirical.data.sample_batch`), so a
network's run depends only on its own key and hyperparameters, never on the
chunk it was trained in.

Optimizers (``optimizer``): ``"sgd"`` (``optax.sgd``), ``"momentum"``
(``optax.sgd`` with heavy-ball ``momentum``) and ``"adam"`` (``optax.adam``);
with ``clip_norm`` the gradient is first clipped to that global norm
(``optax.clip_by_global_norm``, per network). ``learning_rate`` may be a
grid axis: the optimizer runs at unit rate and its update is multiplied by
each network's own rate (exact for these three optimizers, whose updates are
linear in the rate).

At each step of ``record_steps`` (step ``t`` is after ``t`` updates; step 0
is the initialization) it records, per network:

- ``train_loss``, ``train_accuracy`` on the whole training split,
  ``test_loss``, ``test_accuracy`` on the whole test split;
- per layer ``l = 1..L``, on a fixed probe batch (the first ``probe_size``
  training examples, by default ``min(256, n_train)``), the same statistics as a sweep at initialization
  (:func:`empirical.probes.measure`, its loss projection ``r`` drawn from
  ``fold_in(k, READOUT)`` as in :func:`empirical.sweep`): ``q``,
  ``c``, pre- and post-activation means and variances, ``zero``, ``dead``,
  ``saturated``, ``grad_h``, ``grad_w`` and ``first_nonfinite``; and
  ``loss_grad_w``, the Frobenius norm of the *training* loss's gradient
  ``dLoss/dW^l`` on the probe batch;
- per layer, summaries of the weights: ``weight_quantiles`` (quantiles
  ``weight_quantile`` of the entries of ``W^l``), ``layer_sigma_w2``
  (``fan_in * mean(W_ij^2)``, the weight variance in the theory's terms),
  and of the singular values of ``W^l`` (``sv_max``, ``sv_min``,
  ``sv_quantiles`` at ``sv_quantile``);
- ``diverged_step``: the first step whose minibatch loss was not finite
  (``-1`` if none). A diverged network keeps running on nan weights (its
  loss is nan, its accuracy that of a constant prediction); nothing raises.

With BatchNorm (``norm="batch"``) every forward pass normalises with the
statistics of the batch at hand (no running averages): a training step with
its minibatch, an evaluation with the whole split, a probe with the probe
batch.

Results are an ``xarray.Dataset`` (layout in :func:`train`). Work is cut
into chunks of networks of one configuration by
:func:`empirical.engine.run_chunked`; with ``store`` each finished chunk is
written atomically to that directory and a rerun with the same arguments
loads it instead of training again, so an interrupted run resumes at the
first unfinished chunk with identical results.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import os
import pathlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import xarray as xr
from tqdm import tqdm

from empirical import _checks
from empirical import _grid
from empirical import conv as _conv
from empirical import data as _data
from empirical import description
from empirical import devices as _devices
from empirical import engine
from empirical import inits as _inits
from empirical import models as _models
from empirical import probes as _probes
from empirical import streams
from empirical.engine import DEFAULT_MEMORY_BUDGET
from meanfield.activations import Activation

__all__ = [
    "OPTIMIZERS", "SWEPT", "WEIGHT_QUANTILES",
    "SV_QUANTILES", "RECORD_DOCS", "CONV_DOCS", "ARCHITECTURES", "optimizer", "train",
]

Array = jax.Array

#: Optimizer names accepted by :func:`train`.
OPTIMIZERS = ("sgd", "momentum", "adam")
#: The arguments :func:`train` takes a list of, in the order of the Dataset's dims.
SWEPT = engine.SWEPT + ("learning_rate",)
#: Default quantiles of each layer's weight entries.
WEIGHT_QUANTILES = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
#: Default quantiles of each layer's singular values (besides min and max).
SV_QUANTILES = (0.1, 0.5, 0.9)

#: Description of each recorded variable besides the probes' (``probes.STAT_DOCS``).
RECORD_DOCS = {
    "train_loss": "mean softmax cross-entropy on the whole training split",
    "train_accuracy": "fraction of the training split classified correctly",
    "test_loss": "mean softmax cross-entropy on the whole test split",
    "test_accuracy": "fraction of the test split classified correctly",
    "loss_grad_w": "Frobenius norm of dLoss/dW^l, training loss on the probe batch",
    "layer_sigma_w2": "each layer's weight variance in the theory's terms, fan_in mean(W_ij^2)",
    "weight_quantiles": "quantiles of the entries of W^l",
    "sv_max": "largest singular value of W^l",
    "sv_min": "smallest singular value of W^l",
    "sv_quantiles": "quantiles of the singular values of W^l",
    "diverged_step": "first step whose minibatch loss was not finite (-1: none)",
    "diverged": "the minibatch loss was not finite at some step",
}
#: What a CNN's description says differently (``architecture="conv"``).
CONV_DOCS = {
    "q": "mean squared pre-activation <(h^l_{a,i})^2> over the probe batch, positions a and "
         "channels i",
    "loss_grad_w": "Frobenius norm of dLoss/dW^l (the whole kernel), training loss on the "
                   "probe batch",
    "layer_sigma_w2": "each layer's kernel variance in the theory's terms, taps C_in mean(W^2)",
    "weight_quantiles": "quantiles of the entries of the kernel W^l (all taps)",
}
_FORMAT = 1


# ---------------------------------------------------------------------------
# Configuration (static: one compiled program per configuration).


@dataclasses.dataclass(frozen=True)
class _Config:
  activation: Activation
  init: _inits.Init
  width: int
  depth: int
  in_features: int
  n_classes: int
  residual: bool
  norm: str | None
  optimizer: str
  momentum: float
  clip_norm: float | None
  batch_size: int
  weight_quantiles: tuple[float, ...]
  sv_quantiles: tuple[float, ...]
  dtype: Any
  probes: bool = True
  conv: _conv.ConvInit | None = None    # the kernel scheme of a CNN; None: the MLP
  kernel_size: int = 3
  input_shape: tuple[int, ...] = ()     # a CNN's (*spatial, channels) per example


class _State(NamedTuple):
  """One network's training state (a pytree; vmapped over a chunk)."""
  params: _models.Params
  opt_state: Any
  learning_rate: Array   # () float
  batch_key: Array       # root of the minibatch keys
  r: Array               # (N,) the probes' loss projection
  diverged_step: Array   # () int32, -1 until the minibatch loss is not finite


def optimizer(name: str = "sgd", *, momentum: float = 0.9,
              clip_norm: float | None = None) -> optax.GradientTransformation:
  """The optax transformation of ``name`` at unit learning rate.

  ``"sgd"``: ``optax.sgd(1.0)``; ``"momentum"``: ``optax.sgd(1.0,
  momentum=momentum)``; ``"adam"``: ``optax.adam(1.0)``; each preceded by
  ``optax.clip_by_global_norm(clip_norm)`` if ``clip_norm`` is given.
  Multiply its updates by the learning rate (all three are linear in it).
  """
  name = _check_optimizer(name)
  momentum = _checks.check_number("momentum", 0.9 if momentum is None else momentum,
                                  minimum=0.0, below=1.0)
  clip_norm = _check_clip_norm(clip_norm)
  if name == "sgd":
    base = optax.sgd(1.0)
  elif name == "momentum":
    base = optax.sgd(1.0, momentum=momentum)
  else:
    base = optax.adam(1.0)
  if clip_norm is None:
    return base
  return optax.chain(optax.clip_by_global_norm(clip_norm), base)


# ---------------------------------------------------------------------------
# Validation.


def _check_optimizer(name) -> str:
  if not isinstance(name, str) or name not in OPTIMIZERS:
    raise ValueError(f"`optimizer` must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
  return name


def _check_clip_norm(clip_norm) -> float | None:
  if clip_norm is None:
    return None
  return _checks.check_number("clip_norm", clip_norm, minimum=0.0, strict=True)


def _check_quantiles(name: str, values) -> tuple[float, ...]:
  arr = np.atleast_1d(np.asarray(values, dtype=float))
  if arr.ndim != 1 or arr.size == 0 or not np.all((arr >= 0) & (arr <= 1)):
    raise ValueError(f"`{name}` must be a non-empty 1-D sequence of numbers in [0, 1], got "
                     f"{values!r}")
  return tuple(arr.tolist())


def _check_record_steps(record_steps, record_every, n_steps: int) -> tuple[int, ...]:
  if record_steps is not None and record_every is not None:
    raise ValueError(f"`record_steps` and `record_every` must not both be given, got "
                     f"{record_steps!r} and {record_every!r}")
  if record_steps is None:
    every = (max(n_steps // 10, 1) if record_every is None
             else _checks.check_int("record_every", record_every, 1))
    return tuple(sorted(set(range(0, n_steps + 1, every)) | {n_steps}))
  steps = np.atleast_1d(np.asarray(record_steps)).tolist()
  if (not steps or not all(_checks.is_int(s) and 0 <= s <= n_steps for s in steps)
      or any(b <= a for a, b in zip(steps, steps[1:]))):
    raise ValueError(
        f"`record_steps` must be a non-empty increasing sequence of integers in "
        f"[0, n_steps] = [0, {n_steps}], got {record_steps!r}")
  return tuple(int(s) for s in steps)


_DATA_ALLOWED = ("a DataSplit (empirical.data), 'digits', or a directory holding the "
                 "MNIST-style IDX files")


def _resolve_data(data, dtype) -> tuple[_data.DataSplit, tuple[int, ...]]:
  """The split with flat inputs ``(n, n_features)``, and one input's shape as loaded."""
  if isinstance(data, _data.DataSplit):
    _grid.check_split(data)
    split = data
  elif isinstance(data, str) and data == "digits":
    split = _data.load_digits(key=jax.random.key(0), dtype=dtype)
  elif isinstance(data, (str, os.PathLike)):
    path = pathlib.Path(data).expanduser()
    if not path.is_dir():
      reason = "a file, not a directory" if path.exists() else "no such directory"
      raise ValueError(f"`data` must be {_DATA_ALLOWED}, got {str(data)!r} ({reason})")
    split = _data.load_mnist(path, dtype=dtype)
  else:
    raise ValueError(f"`data` must be {_DATA_ALLOWED}, got {type(data).__name__}")
  flat = split.replace(x_train=jnp.asarray(split.x_train, dtype).reshape(split.n_train, -1),
                       x_test=jnp.asarray(split.x_test, dtype).reshape(split.n_test, -1))
  return flat, split.input_shape


ARCHITECTURES = ("mlp", "conv")


def _check_conv(architecture, *, residual, norm, kernel_size) -> bool:
  """Whether ``architecture`` is ``"conv"``; raises for a bad one or a variant a CNN lacks."""
  if not isinstance(architecture, str) or architecture not in ARCHITECTURES:
    raise ValueError(f"`architecture` must be one of {', '.join(ARCHITECTURES)}, got "
                     f"{architecture!r}")
  if architecture == "mlp":
    return False
  if residual or norm is not None:
    raise ValueError(f"`architecture` 'conv' has no residual or norm variant, got "
                     f"residual={residual!r}, norm={norm!r}")
  if _checks.check_int("kernel_size", kernel_size, 1) % 2 == 0:
    raise ValueError(f"`kernel_size` must be odd (taps centred on each position), got "
                     f"{kernel_size!r}")
  return True


def _check_applies(*, architecture, optimizer, probes, **given) -> None:
  """Raise for a keyword given (not None) that the chosen network or run does not use."""
  used_by = {"kernel_size": ("architecture", "conv"), "input_shape": ("architecture", "conv"),
             "momentum": ("optimizer", "momentum")}
  chosen = {"architecture": architecture, "optimizer": optimizer}
  if given["momentum"] is not None:   # a bad value is named as such first
    _checks.check_number("momentum", given["momentum"], minimum=0.0, below=1.0)
  for name, (what, needs) in used_by.items():
    if given[name] is not None and chosen[what] != needs:
      raise ValueError(f"`{name}` applies only to {what}={needs!r}, got {name}="
                       f"{given[name]!r} with {what}={chosen[what]!r}")
  for name in ("weight_quantile", "sv_quantile"):
    if given[name] is not None and isinstance(probes, bool | np.bool_) and not probes:
      raise ValueError(f"`{name}` applies only with probes=True (probes=False records no "
                       f"weight summaries), got {name}={given[name]!r}")
  if given["sv_quantile"] is not None and architecture == "conv":
    raise ValueError(f"`sv_quantile` does not apply to architecture='conv' (a CNN records "
                     f"no singular values), got sv_quantile={given['sv_quantile']!r}")


def _input_shape(input_shape, loaded: tuple[int, ...], split: _data.DataSplit) -> tuple[int, ...]:
  """A CNN's ``(*spatial, channels)`` per example (see :func:`train`, ``input_shape``)."""
  n = split.n_features
  if input_shape is None:
    if len(loaded) >= 2:
      return tuple(loaded) + (1,)
    side = int(np.sqrt(n))
    if (split.name == "digits" or "mnist" in split.name) and side * side == n:
      return (side, side, 1)
    return (n, 1)
  shape = tuple(_grid.values("input_shape", input_shape))
  if (len(shape) < 2 or not all(_checks.is_int(v) and v >= 1 for v in shape)
      or int(np.prod(shape)) != n):
    raise ValueError(f"`input_shape` must be (*spatial, channels), at least 2 integers >= 1 "
                     f"whose product is the data's n_features = {n}, got {input_shape!r}")
  return tuple(int(v) for v in shape)


# ---------------------------------------------------------------------------
# One network: initialise, step, measure.


def _loss_and_accuracy(logits: Array, labels: Array) -> tuple[Array, Array]:
  loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
  accuracy = jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(logits.dtype))
  return loss, accuracy


def _logits(params: _models.Params, x: Array, cfg: _Config) -> Array:
  if cfg.conv is not None:
    return _conv.conv_logits(params, x.reshape(x.shape[0], *cfg.input_shape),
                             activation=cfg.activation)
  return _models.forward(params, x, activation=cfg.activation, residual=cfg.residual,
                         norm=cfg.norm)[0]


def _init_state(key: Array, sigma_w2: Array, sigma_b2: Array, learning_rate: Array,
                cfg: _Config) -> _State:
  """One network at initialization; ``key`` is its network key."""
  scheme = cfg.init
  s_w2 = sigma_w2 if scheme.uses_sigma_w2 else None
  params = (_init_params(key, s_w2, sigma_b2, cfg) if cfg.conv is None else
            _conv.classifier_params(key, s_w2, sigma_b2, scheme=cfg.conv,
                                    in_channels=cfg.input_shape[-1], width=cfg.width,
                                    depth=cfg.depth, kernel_size=cfg.kernel_size,
                                    spatial_dims=len(cfg.input_shape) - 1,
                                    n_classes=cfg.n_classes, dtype=cfg.dtype))
  tx = optimizer(cfg.optimizer, momentum=cfg.momentum, clip_norm=cfg.clip_norm)
  return _State(params=params, opt_state=tx.init(params),
                learning_rate=jnp.asarray(learning_rate, cfg.dtype),
                batch_key=jax.random.fold_in(key, streams.BATCHES),
                r=_probes.readout(jax.random.fold_in(key, streams.READOUT), cfg.width, cfg.dtype),
                diverged_step=jnp.asarray(-1, jnp.int32))


def _init_params(key: Array, s_w2, sigma_b2: Array, cfg: _Config) -> _models.Params:
  """The MLP's parameters with its readout (``s_w2`` None for presets)."""
  scheme = cfg.init
  std = _models.standard_params(key, in_features=cfg.in_features, width=cfg.width,
                                depth=cfg.depth, init=scheme, norm=cfg.norm,
                                out_features=cfg.n_classes, dtype=cfg.dtype)
  w_scale, b_scale = _models.layer_scales(scheme, s_w2, sigma_b2, in_features=cfg.in_features,
                                          width=cfg.width, depth=cfg.depth, dtype=cfg.dtype)
  params = _models.scale_params(std, w_scale, b_scale)
  out_scale = jnp.asarray(scheme.scale(s_w2, cfg.width, cfg.n_classes), cfg.dtype)
  return params._replace(w_out=params.w_out * out_scale)


def _step(state: _State, t: Array, x_train: Array, y_train: Array, cfg: _Config) -> _State:
  """One optimizer step of one network, on its minibatch of step ``t``."""
  xb, yb = _data.sample_batch(x_train, y_train, key=jax.random.fold_in(state.batch_key, t),
                              batch_size=cfg.batch_size, replace=True)

  def loss_fn(params):
    return _loss_and_accuracy(_logits(params, xb, cfg), yb)[0]

  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  tx = optimizer(cfg.optimizer, momentum=cfg.momentum, clip_norm=cfg.clip_norm)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  updates = jax.tree.map(lambda u: u * state.learning_rate.astype(u.dtype), updates)
  params = optax.apply_updates(state.params, updates)
  first_bad = (state.diverged_step < 0) & ~jnp.isfinite(loss)
  diverged_step = jnp.where(first_bad, jnp.asarray(t, jnp.int32), state.diverged_step)
  return state._replace(params=params, opt_state=opt_state, diverged_step=diverged_step)


def _svd_summary(w: Array, qs: tuple[float, ...]) -> tuple[Array, Array, Array]:
  """``(max, min, quantiles)`` of the singular values of ``w``; nan if ``w`` is not finite."""
  finite = jnp.all(jnp.isfinite(w))
  s = jnp.linalg.svd(jnp.where(finite, w, jnp.zeros_like(w)), compute_uv=False)
  s = jnp.where(finite, s, jnp.asarray(jnp.nan, w.dtype))
  return s[0], s[-1], jnp.quantile(s, jnp.asarray(qs, w.dtype))


def _per_layer(f, w_in: Array, w: Array, *, one_at_a_time: bool = False):
  """``f`` on ``W^1`` and on each of the stacked ``W^2..W^L``, stacked to leading axis ``L``.

  ``one_at_a_time``: a ``lax.map`` instead of a vmap, for ``f`` that calls
  LAPACK (see ``_singular_values_chunk``).
  """
  first, rest = f(w_in), (jax.lax.map(f, w) if one_at_a_time else jax.vmap(f)(w))
  return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, rest)


def _measure(state: _State, x_train, y_train, x_test, y_test, x_probe, y_probe,
             cfg: _Config) -> dict[str, Array]:
  """Everything recorded for one network at one step (losses and accuracies only
  without ``cfg.probes``)."""
  if cfg.conv is not None and cfg.probes:
    return _measure_conv(state, x_train, y_train, x_test, y_test, x_probe, y_probe, cfg)
  params = state.params
  train_loss, train_acc = _loss_and_accuracy(_logits(params, x_train, cfg), y_train)
  test_loss, test_acc = _loss_and_accuracy(_logits(params, x_test, cfg), y_test)
  scores = dict(train_loss=train_loss, train_accuracy=train_acc, test_loss=test_loss,
                test_accuracy=test_acc)
  if not cfg.probes:
    return scores
  stats = _probes.measure(params, x_probe, state.r, activation=cfg.activation,
                          residual=cfg.residual, norm=cfg.norm)
  grads = jax.grad(lambda p: _loss_and_accuracy(_logits(p, x_probe, cfg), y_probe)[0])(params)
  loss_grad_w = _per_layer(_probes.scaled_norm, grads.w_in, grads.w)
  wq = jnp.asarray(cfg.weight_quantiles, cfg.dtype)
  weight_quantiles = _per_layer(lambda m: jnp.quantile(m.reshape(-1), wq), params.w_in, params.w)
  layer_sigma_w2 = _per_layer(lambda m: m.shape[0] * jnp.mean(jnp.square(m)),
                              params.w_in, params.w)
  out = {name: value[:, 0] for name, value in stats._asdict().items()
         if name != "first_nonfinite"}
  out.update(first_nonfinite=stats.first_nonfinite[0], loss_grad_w=loss_grad_w,
             layer_sigma_w2=layer_sigma_w2, weight_quantiles=weight_quantiles, **scores)
  return out


def _measure_conv(state: _State, x_train, y_train, x_test, y_test, x_probe, y_probe,
                  cfg: _Config) -> dict[str, Array]:
  """What is recorded of one CNN at one step (:data:`CONV_RECORDS`)."""
  params = state.params
  train_loss, train_acc = _loss_and_accuracy(_logits(params, x_train, cfg), y_train)
  test_loss, test_acc = _loss_and_accuracy(_logits(params, x_test, cfg), y_test)
  q = _conv.conv_layer_q(params, x_probe.reshape(x_probe.shape[0], *cfg.input_shape),
                    activation=cfg.activation)
  grads = jax.grad(lambda p: _loss_and_accuracy(_logits(p, x_probe, cfg), y_probe)[0])(params)
  fan_in = lambda m: m.size // m.shape[-1]     # taps x C_in
  wq = jnp.asarray(cfg.weight_quantiles, cfg.dtype)
  finite = jnp.isfinite(q)
  return {"q": q, "first_nonfinite": jnp.where(jnp.all(finite), 0, jnp.argmin(finite) + 1),
          "train_loss": train_loss, "train_accuracy": train_acc, "test_loss": test_loss,
          "test_accuracy": test_acc,
          "loss_grad_w": _per_layer(_probes.scaled_norm, grads.w_in, grads.w),
          "layer_sigma_w2": _per_layer(lambda m: fan_in(m) * jnp.mean(jnp.square(m)),
                                       params.w_in, params.w),
          "weight_quantiles": _per_layer(lambda m: jnp.quantile(m.reshape(-1), wq),
                                         params.w_in, params.w)}


def _singular_values(state: _State, cfg: _Config) -> dict[str, Array]:
  """``sv_max``, ``sv_min``, ``sv_quantiles`` of each layer of one network."""
  sv_max, sv_min, sv_quantiles = _per_layer(lambda m: _svd_summary(m, cfg.sv_quantiles),
                                            state.params.w_in, state.params.w,
                                            one_at_a_time=True)
  return {"sv_max": sv_max, "sv_min": sv_min, "sv_quantiles": sv_quantiles}


# ---------------------------------------------------------------------------
# A chunk of networks: vmapped, jitted programs.


# Initialization runs once per chunk, but its random draws (threefry, unrolled)
# took 20-30 s to compile with XLA's default optimisation on a 2-core CPU, and
# 3-5 s without (jax 0.10.2); training and measuring stay optimised.
_FAST_COMPILE = {"xla_backend_optimization_level": 0}


@functools.partial(jax.jit, static_argnames=("cfg",), compiler_options=_FAST_COMPILE)
def _init_chunk(keys, sigma_w2, sigma_b2, learning_rate, *, cfg: _Config) -> _State:
  return jax.vmap(lambda k, w, b, r: _init_state(k, w, b, r, cfg))(
      keys, sigma_w2, sigma_b2, learning_rate)


@functools.partial(jax.jit, static_argnames=("cfg",))
def _advance(state: _State, start, stop, x_train, y_train, *, cfg: _Config) -> _State:
  """Steps ``start .. stop - 1`` of every network of the chunk."""
  step = jax.vmap(_step, in_axes=(0, None, None, None, None))
  return jax.lax.fori_loop(start, stop, lambda t, s: step(s, t, x_train, y_train, cfg), state)


@functools.partial(jax.jit, static_argnames=("cfg",))
def _measure_chunk(state: _State, x_train, y_train, x_test, y_test, x_probe, y_probe, *,
                   cfg: _Config) -> dict[str, Array]:
  return jax.vmap(_measure, in_axes=(0,) + (None,) * 7)(
      state, x_train, y_train, x_test, y_test, x_probe, y_probe, cfg)


# The SVDs run in a program of their own, one matrix at a time. jaxlib's CPU
# LAPACK kernels (0.10) split a batch of matrices into tasks on XLA's intra-op
# thread pool and block until they finish; when other work of the program (or
# of another device) holds the pool's threads, nothing runs them and the
# process hangs with every thread idle on a futex (seen here inside the
# measuring program, and with QR on two emulated devices). A matrix at a time,
# the kernel runs in the calling thread.
@functools.partial(jax.jit, static_argnames=("cfg",))
def _singular_values_chunk(state: _State, *, cfg: _Config) -> dict[str, Array]:
  return jax.lax.map(lambda s: _singular_values(s, cfg), state)


def _chunk_program(key: Array, cfg: _Config, settings: np.ndarray, n_seeds: int,
                   split: _data.DataSplit, probe_size: int, steps: tuple[int, ...],
                   bar: tqdm) -> Callable[[Array], dict[str, np.ndarray]]:
  """``compute(indices)`` for :func:`empirical.engine.run_chunked`: network ``i`` is
  setting ``i // n_seeds`` (a row of ``settings``: sigma_w2, sigma_b2, learning_rate)
  with seed ``i % n_seeds``; returns arrays ``(chunk, n_records, ...)``."""
  settings = jnp.asarray(settings, cfg.dtype)
  x_probe, y_probe = split.x_train[:probe_size], split.y_train[:probe_size]

  def compute(idx):
    keys = jax.vmap(lambda s: _models.network_key(key, s))(idx % n_seeds)
    row = settings[idx // n_seeds]
    state = _init_chunk(keys, row[:, 0], row[:, 1], row[:, 2], cfg=cfg)
    records, done = [], 0
    for t in steps:
      if t > done:
        bar.set_postfix_str(f"depth {cfg.depth}, step {t}", refresh=False)
        state = _advance(state, done, t, split.x_train, split.y_train, cfg=cfg)
        done = t
      record = jax.device_get(_measure_chunk(
          state, split.x_train, split.y_train, split.x_test, split.y_test, x_probe, y_probe,
          cfg=cfg))
      # a kernel's singular values are per spatial frequency: not recorded for a CNN
      if cfg.probes and cfg.conv is None:
        record.update(jax.device_get(_singular_values_chunk(state, cfg=cfg)))
      records.append(record)
    out = {k: np.stack([r[k] for r in records], axis=1) for k in records[0]}
    out["diverged_step"] = np.asarray(jax.device_get(state.diverged_step))
    return out

  return compute


def _network_bytes(cfg: _Config, n_eval: int, probe_size: int) -> int:
  """A rough count of the bytes one network holds while trained and measured."""
  if cfg.conv is not None:
    return _conv_bytes(cfg, n_eval, probe_size)
  n, depth = cfg.width, cfg.depth
  n_params = cfg.in_features * n + (depth - 1) * n * n + n * cfg.n_classes + 3 * depth * n
  slots = {"sgd": 0, "momentum": 1, "adam": 2}[cfg.optimizer]
  words = (n_params * (3 + slots)                               # params, grads, updates, slots
           + 10 * depth * n * max(cfg.batch_size, probe_size)   # saved activations (probes)
           + 4 * n_eval * max(n, cfg.in_features)               # evaluation on a split
           + 4 * n * n)                                         # an SVD's workspace
  return words * np.dtype(cfg.dtype).itemsize


def _conv_bytes(cfg: _Config, n_eval: int, probe_size: int) -> int:
  """:func:`_network_bytes` of a CNN: ``P`` positions, ``T`` taps, ``C`` channels."""
  c, depth = cfg.width, cfg.depth
  positions = int(np.prod(cfg.input_shape[:-1]))
  taps = cfg.kernel_size ** (len(cfg.input_shape) - 1)
  n_params = taps * c * (cfg.input_shape[-1] + (depth - 1) * c) + c * cfg.n_classes + depth * c
  slots = {"sgd": 0, "momentum": 1, "adam": 2}[cfg.optimizer]
  words = (n_params * (3 + slots)
           + 4 * depth * positions * c * max(cfg.batch_size, probe_size)   # saved activations
           + 2 * (taps + 2) * n_eval * positions * c)                       # one layer of a split
  return words * np.dtype(cfg.dtype).itemsize


def _plan_chunk(cfg: _Config, n_eval: int, probe_size: int, memory_budget: int) -> int:
  """Networks per chunk: a rough count of the bytes one network holds, against the budget."""
  return engine.items_per_chunk(memory_budget, _network_bytes(cfg, n_eval, probe_size))


# ---------------------------------------------------------------------------
# The public entry point.


def _data_fingerprint(split: _data.DataSplit) -> str:
  h = hashlib.sha256()
  for a in (split.x_train, split.y_train, split.x_test, split.y_test):
    h.update(np.ascontiguousarray(np.asarray(a)).tobytes())
  return h.hexdigest()


@description.takes_network(supports=("residual", "norm"))
def train(key: Array, *, network=None, data: _data.DataSplit | str | os.PathLike = "digits",
          activation="tanh", width=64, depth=10, sigma_w2=None, sigma_b2=0.0,
          init="gaussian", n_seeds: int = 1, residual: bool = False,
          norm: _models.Norm = None, optimizer: str = "sgd", learning_rate=None,
          momentum: float | None = None, clip_norm: float | None = None, n_steps: int = 1000,
          batch_size: int = 64, record_every: int | None = None,
          record_steps: Sequence[int] | None = None, probe_size: int | None = None,
          weight_quantile: Sequence[float] | None = None,
          sv_quantile: Sequence[float] | None = None, probes: bool = True,
          chunk_size: int | None = None,
          memory_budget: int = DEFAULT_MEMORY_BUDGET, store: str | os.PathLike | None = None,
          progress: bool = True, dtype=None, devices: _devices.Devices = None,
          architecture: str = "mlp", kernel_size: int | None = None,
          input_shape: Sequence[int] | None = None) -> xr.Dataset:
  """Trains a grid of networks x seeds with optax, recording per-layer probes over time.

  Any of ``activation``, ``init``, ``width``, ``depth``, ``sigma_w2``,
  ``sigma_b2`` and ``learning_rate`` may be a list (or 1-D array): the grid
  is their Cartesian product, and every grid point is trained with each of
  ``n_seeds`` seeds. As in :func:`empirical.sweep`, a list makes a
  dimension of the result (even of length one), a single value a scalar
  coordinate; each combination of the discrete ones (``activation``,
  ``init``, ``width``, ``depth``) is one compiled program, and the networks
  of the continuous ones and the seeds are trained together in vmapped
  chunks. See the module docstring for the network, the loss, the
  random-number convention and what is recorded.

  Args:
    key: PRNG key; network ``seed`` uses ``fold_in(key, seed)`` whatever the grid.
    network: a :class:`meanfield.Network` (one grid point) whose fields fill
      ``activation``, ``width``, ``depth``, ``init``, ``sigma_w2`` (for
      schemes by variance), ``sigma_b2``, ``residual`` and ``norm``
      (:mod:`empirical.description`); those must then not be given too.
    data: a :class:`empirical.data.DataSplit` (e.g. from
      :func:`empirical.data.split_data` for your own arrays), ``"digits"``
      (scikit-learn's digits with the split ``load_digits(key=jax.random.key(0))``),
      or a directory of MNIST-style IDX files (:func:`empirical.data.load_mnist`).
      Inputs are flattened to ``(n, n_features)``.
    activation: names from ``meanfield.activation``'s table, or Activations.
    width: hidden width ``N``. depth: hidden layers ``L >= 1``.
    sigma_w2: weight variance for the schemes by variance (``gaussian``,
      ``uniform``, ``truncated_normal``, ``orthogonal``); ``None`` when every
      ``init`` fixes the variance itself (``"he_normal"``, ``"normal(0.01)"``, ...).
    sigma_b2: bias variance.
    init: scheme names or :class:`empirical.inits.Init`.
    n_seeds: networks per grid point.
    residual, norm: architecture variants of :func:`empirical.models.forward`
      (``norm`` in ``None``, ``"layer"``, ``"batch"``).
    optimizer: ``"sgd"``, ``"momentum"`` or ``"adam"``.
    learning_rate: finite and ``>= 0``; required.
    momentum: heavy-ball coefficient of ``"momentum"``, in ``[0, 1)`` (default
      0.9); only with that optimizer.
    clip_norm: ``None``, or the global gradient norm to clip to (``> 0``).
    n_steps: optimizer steps, ``>= 0``.
    batch_size: minibatch size, ``>= 1``.
    record_every: record every this many steps, and at 0 and ``n_steps``
      (default ``max(n_steps // 10, 1)``); or give ``record_steps``, an
      increasing sequence of steps in ``[0, n_steps]``.
    probe_size: size of the probe batch, ``1 .. n_train``; default
      ``min(256, n_train)``.
    weight_quantile, sv_quantile: the quantiles recorded of each layer's
      weight entries and singular values (default :data:`WEIGHT_QUANTILES`,
      :data:`SV_QUANTILES`); only with ``probes``, and ``sv_quantile`` not
      for a CNN.
    probes: record the per-layer probes and weight summaries (default). With
      ``False`` only ``train_loss``, ``train_accuracy``, ``test_loss``,
      ``test_accuracy`` and ``diverged_step``/``diverged`` are recorded: the
      training is the same (bitwise), and the measuring program is a fraction
      of the full one to compile and run (trainability maps need no more).
    chunk_size: networks trained together (and stored together); default
      from ``memory_budget`` (rough bytes per device, default 1 GiB) times
      the number of devices.
    store: a directory; each finished chunk is written there atomically and a
      rerun with the same arguments loads it instead of training it again
      (:func:`empirical.engine.run_chunked`).
    progress: show a tqdm bar (networks done; the step in the postfix).
    dtype: float dtype of data and parameters (default float32, float64 under x64).
    devices: where to train: ``None`` (default) every local device (the
      first only on the CPU, as in :func:`empirical.sweep`), ``1`` the
      default device, an integer ``n`` the first ``n`` local devices, or a
      sequence of them. With ``n`` devices each chunk (padded
      to a multiple of ``n``) is cut into ``n`` equal parts trained at the
      same time, one per device (:func:`empirical.devices.split_over`); when
      ``chunk_size`` is a multiple of ``n`` (the default is) the results are
      bitwise those of a one-device run with ``chunk_size / n``. One host
      only: the training loop reads back to the host between its programs.
    architecture: ``"mlp"`` (default) or ``"conv"``: the circular CNN of
      :mod:`empirical.conv` (Xiao et al. 2018) with ``width`` channels, each
      input reshaped to ``input_shape`` and ``phi(h^L)`` averaged over the
      positions before the linear readout (:func:`empirical.conv.conv_logits`).
      ``init`` then names kernel schemes (:func:`empirical.conv.kernel_init_names`:
      ``"gaussian"`` over all taps, ``"delta_orthogonal"``, ...), the
      readout is the matrix scheme's as for the MLP, and a record holds
      ``q`` (over positions too), ``loss_grad_w``, ``layer_sigma_w2``,
      ``weight_quantiles`` of the whole kernel, no other probes and no
      singular values. No ``residual`` or ``norm``.
    kernel_size: odd taps per spatial axis of a CNN (``k x k`` in 2-D;
      default 3). ``kernel_size`` and ``input_shape`` only with ``"conv"``.
    input_shape: a CNN's ``(*spatial, channels)`` per example, its product
      the data's ``n_features``; default: ``(8, 8, 1)`` for ``"digits"`` and
      ``(28, 28, 1)`` for flat MNIST-style data (the images), a loaded
      image shape with one channel appended, else ``(n_features, 1)``. E.g.
      ``(8, 8)`` runs a 1-D CNN over the digits' rows with 8 channels.

  Returns:
    An ``xarray.Dataset`` with dims, in order, the swept ones of
    :data:`SWEPT`, then ``seed``, ``step`` (the recorded steps) and, for
    per-layer variables, ``layer`` (``1..max depth``; nan beyond a network's
    depth), then ``weight_quantile`` or ``sv_quantile``. Data variables:

    - ``(..., seed, step)``: ``train_loss``, ``train_accuracy``,
      ``test_loss``, ``test_accuracy``, ``first_nonfinite``;
    - ``(..., seed, step, layer)``: the probes' statistics on the probe batch
      (:class:`empirical.probes.Stats`: ``q``, ``c``, ``pre_mean``,
      ``pre_var``, ``post_mean``, ``post_var``, ``zero``, ``dead``,
      ``saturated``, ``grad_h``, ``grad_w``), ``loss_grad_w``,
      ``layer_sigma_w2``, ``sv_max``, ``sv_min``;
    - ``weight_quantiles`` ``(..., layer, weight_quantile)``,
      ``sv_quantiles`` ``(..., layer, sv_quantile)``;
    - ``(..., seed)``: ``diverged_step`` (int, ``-1``: finite throughout) and
      ``diverged``.

    Each variable has a ``description`` attribute; the Dataset's attributes
    record the data set, optimizer and architecture. Save with ``ds.to_netcdf``.

  Example (a 2-D CNN on the 8x8 digits, Xiao et al.'s critical point)::

    ds = empirical.train(key, architecture="conv", init=["delta_orthogonal", "gaussian"],
                         depth=50, width=16, sigma_w2=1.05, sigma_b2=2.01e-5,
                         optimizer="adam", learning_rate=3e-4, n_steps=300)

  Raises:
    ValueError: before any work, for a bad argument (unknown optimizer,
      activation or init, a negative learning rate or variance, a missing
      data directory, a DataSplit with labels outside ``[0, n_classes)``,
      non-finite inputs or mismatched lengths, ...), naming it, its value and
      what is allowed.
  """
  _check_applies(architecture=architecture, optimizer=optimizer, probes=probes,
                 momentum=momentum, weight_quantile=weight_quantile, sv_quantile=sv_quantile,
                 kernel_size=kernel_size, input_shape=input_shape)
  kernel_size = 3 if kernel_size is None else kernel_size
  conv = _check_conv(architecture, residual=residual, norm=norm, kernel_size=kernel_size)
  grid_args = dict(key=key, activation=activation, init=init, width=width, depth=depth,
                   n_seeds=n_seeds, sigma_w2=sigma_w2, sigma_b2=sigma_b2, verb="train",
                   store=store)
  kernels = None
  if conv:
    grid, kernels = _conv.kernel_grid(**grid_args)
  else:
    grid = _grid.network_grid(**grid_args, residual=residual, norm=norm)
  opts = _options(learning_rate=learning_rate, optimizer=optimizer, momentum=momentum,
                  clip_norm=clip_norm, n_steps=n_steps, batch_size=batch_size,
                  record_every=record_every, record_steps=record_steps,
                  probe_size=probe_size, weight_quantile=weight_quantile,
                  sv_quantile=sv_quantile, probes=probes)
  memory_budget = _checks.check_int("memory_budget", memory_budget, 1)
  if chunk_size is not None:
    chunk_size = _checks.check_int("chunk_size", chunk_size, 1)
  dtype = _checks.float_dtype(dtype)
  devs = _devices.resolve(devices)
  if devices is None:   # every device of this host (of all hosts under jax.distributed)
    devs = tuple(d for d in devs if d in jax.local_devices())
  devs = _devices.check_local(devs)
  split, loaded_shape = _resolve_data(data, dtype)
  arch = (dict(kernels=kernels, kernel_size=kernel_size,
               input_shape=_input_shape(input_shape, loaded_shape, split)) if conv else None)
  opts = _with_probe_size(opts, split)
  configs = _configs(grid, split, residual=residual, norm=norm, opts=opts, dtype=dtype,
                     arch=arch)
  n_eval = max(split.n_train, split.n_test)
  for *_, cfg in configs:
    engine.check_fits(
        f"network of width {cfg.width} and depth {cfg.depth} in training",
        lambda d, cfg=cfg: _network_bytes(dataclasses.replace(cfg, depth=d), n_eval,
                                          opts.probe_size),
        cfg.depth, memory_budget, width=cfg.width)
  run = functools.partial(_run_config, key=key, grid=grid, split=split, opts=opts,
                          spec=_spec(grid, split, opts, residual=residual, norm=norm,
                                     dtype=dtype, arch=arch),
                          chunk_size=chunk_size, memory_budget=memory_budget, devs=devs)
  n_items = len(grid.sigma_w2) * len(grid.sigma_b2) * len(opts.rates) * grid.n_seeds
  results = engine.run_configs(configs, run, total=len(configs) * n_items, desc="train",
                               progress=progress)
  swept = engine.swept(SWEPT, (activation, init, width, depth, sigma_w2, sigma_b2,
                               learning_rate))
  return _dataset(results, grid, opts, swept,
                  _attrs(grid, split, opts, residual=residual, norm=norm, dtype=dtype,
                         arch=arch), conv=conv)


@dataclasses.dataclass(frozen=True)
class _Options:
  """The validated training options (besides the grid)."""
  rates: list[float]
  optimizer: str
  momentum: float
  clip_norm: float | None
  n_steps: int
  batch_size: int
  steps: tuple[int, ...]
  probe_size: int | None
  weight_quantiles: tuple[float, ...]
  sv_quantiles: tuple[float, ...]
  probes: bool = True


def _options(*, learning_rate, optimizer, momentum, clip_norm, n_steps, batch_size,
             record_every, record_steps, probe_size, weight_quantile, sv_quantile,
             probes=True) -> _Options:
  if learning_rate is None:
    raise ValueError("`learning_rate` must be given (a finite number >= 0, or a list), got None")
  rates = [_checks.check_number("learning_rate", v, minimum=0.0)
           for v in _grid.values("learning_rate", learning_rate)]
  name = _check_optimizer(optimizer)
  momentum = _checks.check_number("momentum", 0.9 if momentum is None else momentum,
                                  minimum=0.0, below=1.0)
  clip_norm = _check_clip_norm(clip_norm)
  n_steps = _checks.check_int("n_steps", n_steps, 0)
  batch_size = _checks.check_int("batch_size", batch_size, 1)
  steps = _check_record_steps(record_steps, record_every, n_steps)
  if probe_size is not None:
    probe_size = _checks.check_int("probe_size", probe_size, 1)
  if not isinstance(probes, (bool, np.bool_)):
    raise ValueError(f"`probes` must be True or False, got {probes!r}")
  return _Options(rates=rates, optimizer=name, momentum=momentum, clip_norm=clip_norm,
                  n_steps=n_steps, batch_size=batch_size, steps=steps, probe_size=probe_size,
                  weight_quantiles=_check_quantiles(
                      "weight_quantile",
                      WEIGHT_QUANTILES if weight_quantile is None else weight_quantile),
                  sv_quantiles=_check_quantiles(
                      "sv_quantile", SV_QUANTILES if sv_quantile is None else sv_quantile),
                  probes=bool(probes))


def _with_probe_size(opts: _Options, split: _data.DataSplit) -> _Options:
  """``opts`` with the probe batch's size resolved against the data."""
  probe_size = min(256, split.n_train) if opts.probe_size is None else opts.probe_size
  if probe_size > split.n_train:
    raise ValueError(f"`probe_size` must be <= n_train = {split.n_train}, got {probe_size}")
  return dataclasses.replace(opts, probe_size=probe_size)


def _configs(grid, split, *, residual, norm, opts: _Options, dtype, arch=None) -> list:
  """``(activation index, init index, _Config)`` of every discrete combination."""
  conv = {} if arch is None else dict(kernel_size=arch["kernel_size"],
                                      input_shape=arch["input_shape"])
  return [(a, s, _Config(
      activation=grid.activations[a], init=grid.inits[s], width=w, depth=d,
      in_features=split.n_features, n_classes=split.n_classes, residual=residual, norm=norm,
      optimizer=opts.optimizer, momentum=opts.momentum, clip_norm=opts.clip_norm,
      batch_size=opts.batch_size, weight_quantiles=opts.weight_quantiles,
      sv_quantiles=opts.sv_quantiles, dtype=dtype, probes=opts.probes,
      conv=None if arch is None else arch["kernels"][s], **conv))
      for a, s, w, d in itertools.product(range(len(grid.activations)), range(len(grid.inits)),
                                          grid.widths, grid.depths)]


def _settings(grid, opts: _Options) -> np.ndarray:
  """Rows ``(sigma_w2, sigma_b2, learning_rate)`` of every setting (presets: sigma_w2 0)."""
  settings = np.asarray([(np.nan if w is None else w, b, r)
                         for w, b, r in itertools.product(grid.sigma_w2, grid.sigma_b2,
                                                          opts.rates)])
  settings[:, 0] = np.nan_to_num(settings[:, 0])   # presets ignore sigma_w2
  return settings


def _spec(grid, split, opts: _Options, *, residual, norm, dtype, arch=None) -> dict:
  conv = {} if arch is None else {"architecture": "conv", "kernel_size": arch["kernel_size"],
                                  "input_shape": list(arch["input_shape"])}
  return {**conv, **engine.base_spec(grid, dtype), "format": _FORMAT, "learning_rate": opts.rates,
          "residual": residual, "norm": norm, "optimizer": opts.optimizer,
          "momentum": opts.momentum, "clip_norm": opts.clip_norm, "steps": list(opts.steps),
          "batch_size": opts.batch_size, "probe_size": opts.probe_size,
          "weight_quantile": list(opts.weight_quantiles),
          "sv_quantile": list(opts.sv_quantiles),
          "data": [split.name, _data_fingerprint(split)],
          **({} if opts.probes else {"probes": False})}   # stores made before keep their key


def _run_config(k, config, bar, *, key, grid, split, opts, spec, chunk_size, memory_budget,
                devs) -> dict[str, np.ndarray]:
  """Configuration ``k``: every setting and seed trained, arrays ``(settings * seed, step, ...)``."""
  a, s, cfg = config
  settings = _settings(grid, opts)
  n_items = len(settings) * grid.n_seeds
  n_eval = max(split.n_train, split.n_test)
  size = chunk_size or len(devs) * _plan_chunk(cfg, n_eval, opts.probe_size, memory_budget)
  compute = _devices.split_over(
      _chunk_program(key, cfg, settings, grid.n_seeds, split, opts.probe_size, opts.steps,
                     bar), devs)
  out = engine.run_chunked(
      compute, n_items, chunk_size=min(size, n_items), multiple=len(devs),
      store=engine.config_store(grid.store, k),
      spec={**spec, "activation": grid.schemes.activation_keys[a],
            "init": grid.schemes.init_keys[s], "width": cfg.width, "depth": cfg.depth},
      progress=bar)
  return _pad_layers(out, cfg.depth, max(grid.depths))


def _attrs(grid, split, opts: _Options, *, residual, norm, dtype, arch=None) -> dict:
  conv = {} if arch is None else {
      "kernel_size": arch["kernel_size"], "input_shape": list(arch["input_shape"]),
      "loss": "mean softmax cross-entropy of a linear readout of the positions' mean of "
              "phi(h^L) (empirical.conv.conv_logits)"}
  return {"architecture": "mlp" if arch is None else "conv", **_common_attrs(
      grid, split, opts, residual=residual, norm=norm, dtype=dtype), **conv}


def _common_attrs(grid, split, opts: _Options, *, residual, norm, dtype) -> dict:
  return {
      "data": split.name, "n_train": split.n_train, "n_test": split.n_test,
      "n_features": split.n_features, "n_classes": split.n_classes,
      "optimizer": opts.optimizer, "momentum": opts.momentum,
      "clip_norm": "none" if opts.clip_norm is None else opts.clip_norm,
      "n_steps": opts.n_steps, "batch_size": opts.batch_size, "probe_size": opts.probe_size,
      "probes": int(opts.probes),
      "residual": int(residual), "norm": "none" if norm is None else norm,
      **engine.provenance(
          grid, dtype,
          seed_key="network i uses jax.random.fold_in(key, i); minibatch of step t from "
                   f"fold_in(fold_in(fold_in(key, i), {streams.BATCHES}), t)"),
      "loss": "mean softmax cross-entropy of a linear readout of a^L; probes' grad_h and "
              "grad_w use L_a = r . a^L (empirical.probes)",
  }


_LAYER_AXIS = 2   # of a per-network array (network, step, layer, ...)


def _pad_layers(out: dict[str, np.ndarray], depth: int, max_depth: int) -> dict[str, np.ndarray]:
  padded = {}
  for name, a in out.items():
    if a.ndim > _LAYER_AXIS and depth < max_depth:
      pad = [(0, 0)] * a.ndim
      pad[_LAYER_AXIS] = (0, max_depth - depth)
      a = np.pad(a.astype(np.result_type(a.dtype, np.float32)), pad, constant_values=np.nan)
    padded[name] = a
  return padded


def _dataset(results, grid, opts: _Options, swept, attrs, conv: bool = False) -> xr.Dataset:
  """The training run's result schema: records over (grid, seed, step[, layer[, quantile]])."""
  axes = {**grid.axes(), "learning_rate": opts.rates}
  lengths = [len(v) for v in axes.values()] + [grid.n_seeds]
  docs = {**_probes.STAT_DOCS, **RECORD_DOCS, **(CONV_DOCS if conv else {})}
  data_vars = {}
  for name in results[0]:
    full = engine.stack(results, name, lengths)   # (*grid, seed, step, ...)
    trailing = ["step", "layer", "weight_quantile" if name == "weight_quantiles"
                else "sv_quantile"][:full.ndim - len(lengths)]
    data_vars[name] = engine.grid_variable(full, SWEPT, swept, ["seed"] + trailing, docs[name])
  data_vars["diverged"] = xr.Variable(data_vars["diverged_step"].dims,
                                      data_vars["diverged_step"].values >= 0,
                                      {"description": docs["diverged"]})
  coords = {"seed": np.arange(grid.n_seeds), "step": np.asarray(opts.steps),
            "layer": np.arange(1, max(grid.depths) + 1),
            "weight_quantile": np.asarray(opts.weight_quantiles),
            "sv_quantile": np.asarray(opts.sv_quantiles), **engine.grid_coords(axes, swept)}
  return xr.Dataset(data_vars, coords=coords, attrs=attrs)
