"""One network's training program, and the vmapped, jitted programs of a chunk of networks.

A network's state (:class:`State`) is initialised from its network key,
stepped on its own minibatches and measured (losses and accuracies, the
probes, weight summaries, singular values); the chunk programs ``vmap``
these over the networks of a chunk, one compiled program per
:class:`Config` (see :mod:`empirical.training`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from empirical import conv as _conv
from empirical import data as _data
from empirical import inits as _inits
from empirical import models as _models
from empirical import probes as _probes
from empirical import streams
from empirical._train_optim import optimizer
from meanfield.activations import Activation

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Config:
  """What one compiled program fixes: the network, the optimizer and what is recorded."""
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


class State(NamedTuple):
  """One network's training state (a pytree; vmapped over a chunk)."""
  params: _models.Params
  opt_state: Any
  learning_rate: Array   # () float
  batch_key: Array       # root of the minibatch keys
  r: Array               # (N,) the probes' loss projection
  diverged_step: Array   # () int32, -1 until the minibatch loss is not finite


# ---------------------------------------------------------------------------
# One network: initialise, step, measure.


def _loss_and_accuracy(logits: Array, labels: Array) -> tuple[Array, Array]:
  loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
  accuracy = jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(logits.dtype))
  return loss, accuracy


def _logits(params: _models.Params, x: Array, cfg: Config) -> Array:
  if cfg.conv is not None:
    return _conv.conv_logits(params, x.reshape(x.shape[0], *cfg.input_shape),
                             activation=cfg.activation)
  return _models.forward(params, x, activation=cfg.activation, residual=cfg.residual,
                         norm=cfg.norm)[0]


def _init_state(key: Array, sigma_w2: Array, sigma_b2: Array, learning_rate: Array,
                cfg: Config) -> State:
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
  return State(params=params, opt_state=tx.init(params),
                learning_rate=jnp.asarray(learning_rate, cfg.dtype),
                batch_key=jax.random.fold_in(key, streams.BATCHES),
                r=_probes.readout(jax.random.fold_in(key, streams.READOUT), cfg.width, cfg.dtype),
                diverged_step=jnp.asarray(-1, jnp.int32))


def _init_params(key: Array, s_w2, sigma_b2: Array, cfg: Config) -> _models.Params:
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


def _step(state: State, t: Array, x_train: Array, y_train: Array, cfg: Config) -> State:
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
  LAPACK (see ``singular_values_chunk``).
  """
  first, rest = f(w_in), (jax.lax.map(f, w) if one_at_a_time else jax.vmap(f)(w))
  return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, rest)


def _measure(state: State, x_train, y_train, x_test, y_test, x_probe, y_probe,
             cfg: Config) -> dict[str, Array]:
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


def _measure_conv(state: State, x_train, y_train, x_test, y_test, x_probe, y_probe,
                  cfg: Config) -> dict[str, Array]:
  """What is recorded of one CNN at one step (:data:`empirical.training.CONV_DOCS`)."""
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


def _singular_values(state: State, cfg: Config) -> dict[str, Array]:
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
def init_chunk(keys, sigma_w2, sigma_b2, learning_rate, *, cfg: Config) -> State:
  return jax.vmap(lambda k, w, b, r: _init_state(k, w, b, r, cfg))(
      keys, sigma_w2, sigma_b2, learning_rate)


@functools.partial(jax.jit, static_argnames=("cfg",))
def advance(state: State, start, stop, x_train, y_train, *, cfg: Config) -> State:
  """Steps ``start .. stop - 1`` of every network of the chunk."""
  step = jax.vmap(_step, in_axes=(0, None, None, None, None))
  return jax.lax.fori_loop(start, stop, lambda t, s: step(s, t, x_train, y_train, cfg), state)


@functools.partial(jax.jit, static_argnames=("cfg",))
def measure_chunk(state: State, x_train, y_train, x_test, y_test, x_probe, y_probe, *,
                  cfg: Config) -> dict[str, Array]:
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
def singular_values_chunk(state: State, *, cfg: Config) -> dict[str, Array]:
  return jax.lax.map(lambda s: _singular_values(s, cfg), state)

