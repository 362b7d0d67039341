"""Random convolutional networks with circular padding, many at once, measured layer by layer.

The network (1-D, ``n`` positions, ``C`` channels = ``width``, odd kernel
size ``k``), input ``x`` of shape ``(n, C_0)``:

.. math::

  h^1 = \\mathrm{conv}(x, W^1) + b^1, \\qquad
  h^{l+1} = \\mathrm{conv}(\\phi(h^l), W^{l+1}) + b^{l+1},
  \\qquad \\mathrm{conv}(a, W)_{p} = \\sum_{j} a_{p + j - (k-1)/2}\\, W_j

(positions mod ``n``): the cross-correlation with circular padding that
``flax.nnx.Conv(..., padding="CIRCULAR")`` computes (:class:`CNN` is that
module, with the same parameters). Kernels have Flax's layout ``(k, C_in,
C_out)``; biases ``N(0, sigma_b2)``. The same holds on any number of
spatial axes, circular along each: 2-D images ``(H, W, C_0)`` with kernels
``(k, k, C_in, C_out)`` (fan-in ``k^2 C_in``); :func:`_conv` stacks the
shifted copies of the input along the channels and multiplies once.

Kernel schemes (:func:`kernel_init`): every scheme of
:data:`empirical.inits.INITS` spread over the footprint, ``W`` reshaped from the
scheme's ``(k C_in, C_out)`` draw (fan-in ``k C_in``; ``"gaussian"`` gives
``W_ij ~ N(0, sigma_w2 / (k C_in))``, the theory's ``"uniform"`` footprint),
and ``"delta_<scheme>"``: the scheme's ``(C_in, C_out)`` draw on the centre
tap (fan-in ``C_in``), zeros elsewhere (the ``"delta"`` footprint).
``"delta_orthogonal"`` is Xiao et al. 2018's delta-orthogonal kernel. These
live here rather than as entries of :data:`empirical.inits.INITS` because an
:class:`~empirical.Init` draws a ``(fan_in, fan_out)`` matrix and knows no
spatial footprint; a kernel scheme is an Init plus where its draw goes.

Probes (:func:`conv_measure`) per layer: the covariance across positions
``Sigma_ab = h_a . h_b / C`` (``(n, n)``, whose diagonal mean is ``q^l`` and
whose Fourier modes along the diagonals are :func:`spatial_modes`), and the
norm of the backpropagated signal ``|dL/dh^l|`` for the loss ``L = r .
phi(h^L)`` with a fixed random unit ``r``; :func:`run_sweep` runs them on a
grid of networks on the experiment engine (:mod:`empirical.engine`, through
the skeleton every architecture's sweep shares, :mod:`empirical._grid_sweep`): what
``empirical.sweep(key, arch=meanfield.Conv(kernel_size), inputs=x, ...)``
runs (:mod:`empirical.architectures`). :func:`run_jacobian_spectra` measures
the singular values of the input-output Jacobian (:func:`conv_jacobian`) on
the engine: what ``empirical.jacobian_spectra(key, arch=meanfield.Conv(
kernel_size, spatial_size), ...)`` runs.
Theory: :mod:`meanfield.conv`.

Training: :func:`empirical.train` with ``arch=meanfield.Conv(kernel_size=k)`` trains these
networks as classifiers (:func:`conv_logits`: global average pooling of
``phi(h^L)``, then a linear readout; :func:`classifier_params`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from flax import nnx

from empirical import _checks
from empirical import _grid
from empirical import _grid_sweep
from empirical._input_length import fixed_point_q as _fixed_point_q
from empirical import engine
from empirical import inits as _inits
from empirical import streams as _streams
from meanfield.activations import Activation, activation as _activation
from meanfield.conv import footprint_weights as _footprint_weights

__all__ = ["ConvInit", "kernel_init", "kernel_init_names", "check_footprint", "ConvParams",
           "conv_params",
           "conv_forward", "ConvStats", "conv_measure", "kernel_grid", "check_sweep_inputs",
           "run_sweep", "SWEEP_DOCS", "conv_jacobian", "run_jacobian_spectra", "JACOBIAN_DOCS",
           "spatial_modes",
           "CNN", "conv_logits", "classifier_params", "conv_layer_q"]

Array = jax.Array
DELTA = "delta_"


@dataclasses.dataclass(frozen=True)
class ConvInit:
  """A kernel scheme: an :class:`empirical.Init` and where its draw goes.

  Attributes:
    init: the matrix scheme.
    delta: ``True``: the ``(C_in, C_out)`` draw on the centre tap, zeros
      elsewhere; ``False``: the ``(k C_in, C_out)`` draw over all taps.
  """

  init: _inits.Init
  delta: bool

  @property
  def name(self) -> str:
    """The scheme's name: the init's, prefixed ``delta_`` for a centre-tap kernel."""
    return (DELTA if self.delta else "") + self.init.name

  @property
  def footprint(self) -> str:
    """The theory's footprint (:func:`meanfield.conv.footprint_weights`)."""
    return "delta" if self.delta else "uniform"

  @property
  def law(self) -> str:
    """The weight law the theory reads (``"gaussian"`` or ``"orthogonal"``)."""
    return "orthogonal" if self.init.name == "orthogonal" else "gaussian"

  def kernel(self, key: Array, shape: tuple[int, ...], sigma_w2=None, dtype=None) -> Array:
    """A kernel of ``shape = (*taps, C_in, C_out)``: ``(k, C_in, C_out)`` in 1-D, ``(k, k, C_in, C_out)`` in 2-D."""
    *taps, c_in, c_out = shape
    dtype = jax.dtypes.canonicalize_dtype(jnp.float64 if dtype is None else dtype)

    def draw(key, matrix_shape, dtype):   # Init.initializer without its eager check (traceable)
      w = self.init.standard(key, matrix_shape, dtype)
      return (w * jnp.asarray(self.init.scale(sigma_w2, *matrix_shape), dtype)).astype(dtype)

    if self.delta:
      centre = draw(key, (c_in, c_out), dtype)
      return jnp.zeros(tuple(shape), centre.dtype).at[tuple(k // 2 for k in taps)].set(centre)
    return draw(key, (int(np.prod(taps)) * c_in, c_out), dtype).reshape(shape)


def kernel_init_names() -> tuple[str, ...]:
  """The kernel schemes: every :func:`empirical.init_names` entry and its ``delta_`` form."""
  names = _inits.init_names()
  return names + tuple(DELTA + n for n in names)


def kernel_init(spec: str | ConvInit | _inits.Init) -> ConvInit:
  """The :class:`ConvInit` of a name (``"gaussian"``, ``"delta_orthogonal"``, ...) or an Init.

  Raises:
    ValueError: an unknown name, listing the valid ones.
  """
  if isinstance(spec, ConvInit):
    return spec
  if isinstance(spec, _inits.Init):
    return ConvInit(spec, False)
  if isinstance(spec, str):
    delta = spec.startswith(DELTA)
    try:
      return ConvInit(_inits.init(spec[len(DELTA):] if delta else spec), delta)
    except ValueError:
      pass
  raise ValueError(f"`init` must be one of {', '.join(kernel_init_names())} (or normal(std), "
                   f"constant(value), with or without 'delta_'), got {spec!r}")


def check_footprint(arch: Any, init: Any) -> None:
  """ValueError unless every kernel scheme of ``init`` has ``arch``'s footprint (if it fixes one)."""
  if arch.footprint is not None:
    for v in _grid.values("init", init):
      scheme = kernel_init(v)
      if not np.array_equal(arch.weights, _footprint_weights(
          kernel_size=arch.kernel_size, footprint=scheme.footprint)):
        raise ValueError(f"`init` must be kernel schemes of the footprint of {arch!r} (or "
                         f"leave its footprint None), got {scheme.name!r} (footprint "
                         f"{scheme.footprint!r})")


def _positive_int(name: str, value: Any) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}")
  return int(value)


def _check(*, depth, width, kernel_size, in_channels=1):
  _positive_int("depth", depth)
  _positive_int("width", width)
  _positive_int("in_channels", in_channels)
  if _positive_int("kernel_size", kernel_size) % 2 == 0:
    raise ValueError(f"`kernel_size` must be odd (taps centred on each position), got {kernel_size!r}")


class ConvParams(NamedTuple):
  """Parameters of one CNN: layer 1 apart (its fan-in ``C_0`` may differ), the rest stacked for ``scan``.

  Attributes:
    w_in: ``(k, C_0, C)`` (2-D: ``(k, k, C_0, C)``); b_in: ``(C,)``.
    w: ``(L - 1, k, C, C)`` (2-D: ``(L - 1, k, k, C, C)``); b: ``(L - 1, C)``.
    w_out, b_out: ``(C, n_classes)``, ``(n_classes,)``: the linear readout of
      the positions' mean of ``phi(h^L)`` (:func:`conv_logits`), or ``None``.
  """

  w_in: Array
  b_in: Array
  w: Array
  b: Array
  w_out: Array | None = None
  b_out: Array | None = None


def conv_params(key: Array, *, in_channels: int, width: int, depth: int, kernel_size: int,
                init: str | ConvInit = "gaussian", sigma_w2=1.0, sigma_b2=0.0,
                dtype=None) -> ConvParams:
  """Draw one CNN's parameters; layer ``l``'s depend only on ``fold_in(key, l)``.

  Example::

    p = empirical.conv.conv_params(jax.random.key(0), in_channels=1, width=64, depth=50,
                                   kernel_size=3, init="delta_orthogonal", sigma_w2=1.05,
                                   sigma_b2=2.01e-5)
  """
  _check(depth=depth, width=width, kernel_size=kernel_size, in_channels=in_channels)
  scheme = kernel_init(init)
  scheme.init.check_sigma_w2(sigma_w2)
  _checks.check_variance("sigma_b2", sigma_b2)
  return _draw(key, in_channels, width, depth, kernel_size, scheme, sigma_w2, sigma_b2, dtype)


def _draw(key, in_channels, width, depth, kernel_size, scheme, sigma_w2, sigma_b2, dtype,
          spatial_dims=1):
  """:func:`conv_params` without the checks (traceable in the variances)."""
  taps = (kernel_size,) * spatial_dims

  def layer(l, c_in):
    kw, kb = jax.random.split(jax.random.fold_in(key, l))
    w = scheme.kernel(kw, taps + (c_in, width), sigma_w2, dtype)
    b = jax.random.normal(kb, (width,), w.dtype) * jnp.sqrt(jnp.asarray(sigma_b2, w.dtype))
    return w, b

  w_in, b_in = layer(0, in_channels)
  w, b = jax.vmap(lambda l: layer(l, width))(jnp.arange(1, depth))   # one program for any depth
  return ConvParams(w_in, b_in, w, b)


def _conv(a: Array, w: Array) -> Array:
  """Circular cross-correlation of ``a`` ``(..., *spatial, C_in)`` with ``w`` ``(*taps, C_in, C_out)``.

  ``len(taps)`` spatial axes (those just before the channels); the shifted
  copies of ``a`` are stacked along the channels (tap-major, as
  ``w.reshape(-1, C_out)`` orders them) and multiplied once.
  """
  taps = w.shape[:-2]
  axes = tuple(range(-len(taps) - 1, -1))
  shifted = [jnp.roll(a, tuple(k // 2 - j for j, k in zip(t, taps)), axis=axes)
             for t in np.ndindex(*taps)]
  return jnp.concatenate(shifted, axis=-1) @ w.reshape(-1, w.shape[-1])


def _layers(phi: Activation, params: ConvParams, x: Array, shifts: Array | None = None):
  """Pre-activations of every layer, ``(L, n, C)``; ``shifts`` (same shape) are added to them."""
  h1 = _conv(x, params.w_in) + params.b_in[None, :]
  if shifts is not None:
    h1 = h1 + shifts[0]
    rest_shifts = shifts[1:]
  else:
    rest_shifts = jnp.zeros((params.w.shape[0],) + h1.shape, h1.dtype)

  def step(h, layer):
    w, b, s = layer
    nxt = _conv(phi.fn(h), w) + b[None, :] + s
    return nxt, nxt

  _, hs = jax.lax.scan(step, h1, (params.w, params.b, rest_shifts))
  return jnp.concatenate([h1[None], hs], axis=0)


def conv_forward(params: ConvParams, x: Array, *, activation="tanh") -> Array:
  """The pre-activations ``h^1 .. h^L`` of one CNN on one input ``x`` ``(n, C_0)``: ``(L, n, C)``."""
  return _layers(_activation(activation), params, jnp.asarray(x, params.w_in.dtype))


def _biased(z: Array, b: Array) -> Array:
  """``z + b`` with ``b`` ``(C,)`` on the last axis of ``z``."""
  return z + b.reshape((1,) * (z.ndim - 1) + b.shape)


def _run(phi: Activation, params: ConvParams, x: Array, probe=None):
  """``(h^L, stacked probe(h^l))`` of a batch ``x`` ``(..., *spatial, C_0)``; keeps one layer at a time."""
  h1 = _biased(_conv(x, params.w_in), params.b_in)
  first = None if probe is None else probe(h1)

  def step(h, layer):
    w, b = layer
    nxt = _biased(_conv(phi.fn(h), w), b)
    return nxt, (None if probe is None else probe(nxt))

  h_last, rest = jax.lax.scan(step, h1, (params.w, params.b))
  if probe is None:
    return h_last, None
  return h_last, jax.tree.map(lambda f, r: jnp.concatenate([f[None], r]), first, rest)


def _check_batch(params: ConvParams, x: Array) -> None:
  """Raise unless ``x`` is a batch ``(B, *spatial, C_0)`` for ``params`` (static shapes only)."""
  *taps, c_in, _ = params.w_in.shape
  if jnp.ndim(x) != len(taps) + 2 or jnp.shape(x)[-1] != c_in:
    raise ValueError(f"`x` must have shape (batch, {', '.join(['n'] * len(taps))}, {c_in}) "
                     f"for kernels of {len(taps)} spatial axes and {c_in} input channels, "
                     f"got {jnp.shape(x)}")


def conv_logits(params: ConvParams, x: Array, *, activation="tanh") -> Array:
  """Class scores of a batch ``x`` ``(B, *spatial, C_0)``, ``(B, n_classes)``.

  ``phi(h^L)`` averaged over the positions (global average pooling), then
  the readout ``w_out``, ``b_out`` of ``params`` (Xiao et al. 2018, Sec. 4).
  """
  phi = _activation(activation)
  _check_batch(params, x)
  if params.w_out is None:
    raise ValueError("`params` must have a readout (w_out, b_out) for class scores, got None")
  h, _ = _run(phi, params, x)
  pooled = jnp.mean(phi.fn(h), axis=tuple(range(1, h.ndim - 1)))
  return pooled @ params.w_out + params.b_out[None, :]


def classifier_params(key: Array, sigma_w2, sigma_b2, *, scheme: ConvInit, in_channels: int,
                      width: int, depth: int, kernel_size: int, spatial_dims: int,
                      n_classes: int, dtype) -> ConvParams:
  """One CNN classifier's parameters, traceable in the variances (for :func:`empirical.train`).

  Unchecked (the variances may be traced): :func:`empirical.train`
  validates its arguments; :func:`conv_params` is the checked draw.

  Streams of the network key ``key`` (:mod:`empirical.streams`): the kernels
  and biases are :func:`conv_params`'s draw from ``fold_in(key, WEIGHTS)``
  (layer ``l`` from ``fold_in(., l - 1)``); the readout ``(C, n_classes)``
  is ``scheme.init``'s draw from ``fold_in(fold_in(key, WEIGHTS), L + 1)``
  at fan-in ``C`` (as :func:`empirical.train`'s MLP readout), its bias 0.
  """
  kw = jax.random.fold_in(key, _streams.WEIGHTS)
  p = _draw(kw, in_channels, width, depth, kernel_size, scheme, sigma_w2, sigma_b2, dtype,
            spatial_dims)
  init = scheme.init
  w_out = init.standard(jax.random.fold_in(kw, depth + 1), (width, n_classes), p.w_in.dtype)
  w_out = w_out * jnp.asarray(init.scale(sigma_w2, width, n_classes), p.w_in.dtype)
  return p._replace(w_out=w_out, b_out=jnp.zeros((n_classes,), p.w_in.dtype))


def conv_layer_q(params: ConvParams, x: Array, *, activation="tanh") -> Array:
  """``q^l``: the mean of ``(h^l_{a,i})^2`` over the batch, positions and channels, ``(L,)``."""
  _check_batch(params, x)
  _, q = _run(_activation(activation), params, x, probe=lambda h: jnp.mean(jnp.square(h)))
  return q


class ConvStats(NamedTuple):
  """Per-layer statistics (layer axis ``L`` after any batch axes).

  Attributes:
    covariance: ``h^l_a . h^l_b / C``, ``(..., L, n, n)``.
    q: its mean diagonal, ``(..., L)``.
    grad_h: ``|dL/dh^l|`` over all positions and channels, ``(..., L)``.
  """

  covariance: Array
  q: Array
  grad_h: Array


def conv_measure(params: ConvParams, x: Array, r: Array, *, activation="tanh") -> ConvStats:
  """Forward and backward through one CNN on one input; statistics reduced per layer.

  ``r`` (``(n, C)``) is the readout of the loss ``L = r . phi(h^L)``; the
  gradients are taken through zero shifts added to every ``h^l``.
  """
  phi = _activation(activation)
  x = jnp.asarray(x, params.w_in.dtype)
  n, width = x.shape[0], params.b_in.shape[0]
  depth = params.w.shape[0] + 1

  def loss(shifts):
    hs = _layers(phi, params, x, shifts)
    return jnp.sum(r * phi.fn(hs[-1])), hs

  grads, hs = jax.grad(loss, has_aux=True)(jnp.zeros((depth, n, width), x.dtype))
  cov = jnp.einsum("lac,lbc->lab", hs, hs) / width
  return ConvStats(covariance=cov, q=jnp.mean(jnp.diagonal(cov, axis1=-2, axis2=-1), -1),
                   grad_h=jnp.sqrt(jnp.sum(grads * grads, axis=(-2, -1))))


def spatial_modes(matrix: Array) -> Array:
  """``M_hat[f, d] = (1/n) sum_a exp(-2 pi i f a / n) M[a, a + d]``: the same transform as :func:`meanfield.conv.spatial_modes`."""
  m = jnp.asarray(matrix)
  n = m.shape[-1]
  a = np.arange(n)
  return jnp.fft.fft(m[..., a[:, None], (a[:, None] + a[None, :]) % n], axis=-2) / n


def kernel_grid(*, key, activation, init, width, depth, n_seeds, sigma_w2, sigma_b2, verb: str,
                store=None) -> tuple[_grid.NetworkGrid, list[ConvInit]]:
  """An experiment's grid (:func:`empirical._grid.network_grid`) whose ``init`` names kernel schemes.

  The grid is built from the schemes' matrix inits (their variances and
  checks), then labelled and store-keyed by the kernel names
  (``"delta_orthogonal"``); returns it with the :class:`ConvInit` of each
  ``init`` value. Raises ``ValueError`` for a bad argument, as the grid does.
  """
  kernels = [kernel_init(v) for v in _grid.values("init", init)]
  grid = _grid.network_grid(key=key, activation=activation, init=[c.init for c in kernels],
                            width=width, depth=depth, n_seeds=n_seeds, sigma_w2=sigma_w2,
                            sigma_b2=sigma_b2, verb=verb, store=store)
  keys = [(DELTA if c.delta else "") + k for c, k in zip(kernels, grid.schemes.init_keys)]
  labels = _grid.unique_labels([c.name for c in kernels], keys)
  return dataclasses.replace(grid, schemes=dataclasses.replace(
      grid.schemes, init_keys=keys, init_labels=labels)), kernels


@functools.lru_cache(maxsize=32)
def _sweep_program(phi: Activation, scheme: ConvInit, width: int, depth: int, kernel_size: int,
                   n_seeds: int):
  """``compute(key, x, settings, indices)``: item ``i`` is setting ``i // n_seeds``
  (a row ``(sigma_w2, sigma_b2)`` of ``settings``), seed ``i % n_seeds``."""

  @jax.jit
  def compute(key, x, settings, idx):
    def one(i):
      k = jax.random.fold_in(key, i % n_seeds)
      sigma_w2, sigma_b2 = settings[i // n_seeds, 0], settings[i // n_seeds, 1]
      p = _draw(jax.random.fold_in(k, _streams.WEIGHTS), x.shape[1], width, depth, kernel_size,
                scheme, None if not scheme.init.uses_sigma_w2 else sigma_w2, sigma_b2, x.dtype)
      r = jax.random.normal(jax.random.fold_in(k, _streams.CONV_READOUT), (x.shape[0], width),
                            x.dtype)
      return conv_measure(p, x, r / jnp.linalg.norm(r), activation=phi)._asdict()

    return jax.vmap(one)(idx)

  return compute


def _item_bytes(n: int, c_in: int, width: int, depth: int, kernel_size: int, itemsize: int) -> int:
  """A rough count of the bytes one network of a sweep holds (activations, gradients, kernels)."""
  return itemsize * (8 * depth * n * width + depth * n * n
                     + 2 * kernel_size * width * (c_in + depth * width))


#: Descriptions of the variables of a CNN sweep's Dataset (:func:`run_sweep`).
SWEEP_DOCS = {"covariance": "h^l_a . h^l_b / C, the covariance across positions a, b",
              "q": "mean diagonal of the covariance, (1/n) sum_a |h^l_a|^2 / C",
              "grad_h": "|dL/dh^l| over all positions and channels, L = r . phi(h^L), |r| = 1"}
# Their dims after `seed`.
_SWEEP_DIMS = {"covariance": ["layer", "position", "position_b"], "q": ["layer"],
               "grad_h": ["layer"]}


def check_sweep_inputs(inputs: Any) -> Array:
  """The input of a CNN sweep, checked: a finite floating array ``(n, C_0)`` (``n`` positions).

  Raises:
    ValueError: another shape or dtype, no entries, or a non-finite entry.
  """
  x = jnp.asarray(inputs)
  if x.ndim != 2 or not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f"`inputs` must be a floating array of shape (n, in_channels) for a CNN "
                     f"sweep, got {x.dtype} of shape {x.shape}")
  if x.size == 0:
    raise ValueError(f"`inputs` must have at least one position and one channel (shape (n, "
                     f"in_channels), n, in_channels >= 1), got shape {x.shape}")
  if not bool(jnp.all(jnp.isfinite(x))):
    raise ValueError(f"`inputs` must be finite (an input to propagate), got an array containing "
                     f"{np.asarray(x)[~np.isfinite(np.asarray(x))].flat[0]!r}")
  return x


def run_sweep(key: Array, x: Array, *, kernel_size: int, activation, width, depth, init,
              sigma_w2, sigma_b2, n_seeds: int, chunk_size: int | None, memory_budget: int,
              store, progress: bool) -> xr.Dataset:
  """:func:`conv_measure` on a grid of random CNNs x seeds, on the experiment engine.

  What :func:`empirical.sweep` runs for ``arch=meanfield.Conv(kernel_size)``
  (see it for the keywords; ``x`` is its ``inputs``, checked by
  :func:`check_sweep_inputs`). Any of ``activation``, ``init`` (kernel schemes,
  :func:`kernel_init_names`), ``width``, ``depth``, ``sigma_w2`` and
  ``sigma_b2`` may be a list: a list makes a dimension of the result, a
  single value a scalar coordinate; each (activation, init, width, depth) is
  one compiled program and its networks (variances x seeds) run vmapped in
  chunks (:func:`empirical.engine.run_chunked`; with ``store`` each chunk is
  written atomically and a rerun resumes). Network ``seed`` has key ``k =
  fold_in(key, seed)`` at every grid point: parameters from ``fold_in(k,
  WEIGHTS)`` (:func:`conv_params`' layout), the readout ``r`` from
  ``fold_in(k, CONV_READOUT)`` (:mod:`empirical.streams`). ``x`` is one
  input ``(n, C_0)`` (1-D, ``n`` positions), shared by all.

  Returns:
    An ``xarray.Dataset`` with dims the swept axes, ``seed``, ``layer``
    (``1..max depth``, nan beyond a network's depth) and, for
    ``covariance``, ``position`` and ``position_b``. Variables:
    ``covariance``, ``q``, ``grad_h`` (:data:`SWEEP_DOCS`).
  """
  x = check_sweep_inputs(x)
  _check(depth=1, width=1, kernel_size=kernel_size)
  grid, kernels = kernel_grid(key=key, activation=activation, init=init, width=width,
                              depth=depth, n_seeds=n_seeds, sigma_w2=sigma_w2,
                              sigma_b2=sigma_b2, verb="sweep", store=store)
  n = x.shape[0]
  return _grid_sweep.run(
      key, x, grid, kernels,
      program=lambda act, scheme, w, d, n_seeds: _sweep_program(act, scheme, w, d, kernel_size,
                                                                n_seeds),
      item_bytes=lambda w, d: _item_bytes(n, x.shape[1], w, d, kernel_size, x.dtype.itemsize),
      given=(activation, init, width, depth, sigma_w2, sigma_b2),
      spec={"kernel_size": kernel_size,
            "x": hashlib.sha256(np.ascontiguousarray(np.asarray(x))).hexdigest()},
      variables={name: (dims, SWEEP_DOCS[name]) for name, dims in _SWEEP_DIMS.items()},
      coords={"position": np.arange(n), "position_b": np.arange(n)},
      attrs={"architecture": "conv", "kernel_size": kernel_size, "n_positions": n,
             "in_channels": x.shape[1],
             "seed_key": "network i uses jax.random.fold_in(key, i): parameters from "
                         "fold_in(., 0), readout from fold_in(., 1)"},
      chunk_size=chunk_size, memory_budget=memory_budget, progress=progress)


def conv_jacobian(params: ConvParams, x: Array, *, activation="tanh") -> Array:
  """``J = d phi(h^L) / d x`` flattened to ``(n C, n C_0)`` (positions major), for small sizes."""
  phi = _activation(activation)
  x = jnp.asarray(x, params.w_in.dtype)
  out = lambda x_: phi.fn(_layers(phi, params, x_)[-1]).reshape(-1)
  return jax.jacfwd(out)(x).reshape(out(x).size, x.size)


#: Descriptions of the variables of a CNN's Jacobian spectra (:func:`run_jacobian_spectra`).
JACOBIAN_DOCS = {"singular_values": "singular values of J = d phi(h^L) / d x^0 (n C square), "
                                    "descending",
                 "moment": "m_k = tr (J J^T)^k / (n C), from the singular values",
                 "sigma_max": "largest singular value of J"}


@functools.lru_cache(maxsize=32)
def _spectra_program(phi: Activation, scheme: ConvInit, width: int, n: int, depth: int,
                     kernel_size: int):
  """``compute(key, sigma_w2, sigma_b2, q, idx)``: singular values ``(len(idx), n C)``.

  Of networks ``idx`` (key ``k = fold_in(key, i)``: parameters from ``fold_in(k,
  WEIGHTS)``, input noise from ``fold_in(k, CONV_INPUT)``), one network at a time
  (``lax.map``). Cached per static configuration: one compile each.
  """

  @jax.jit
  def compute(key, sigma_w2, sigma_b2, q, idx):
    def one(i):
      k = jax.random.fold_in(key, i)
      p = _draw(jax.random.fold_in(k, _streams.WEIGHTS), width, width, depth, kernel_size,
                scheme, sigma_w2, sigma_b2, q.dtype)
      z = jax.random.normal(jax.random.fold_in(k, _streams.CONV_INPUT), (n, width), q.dtype)
      x = phi.fn(jnp.sqrt(q) * z)
      return {"singular_values": jnp.linalg.svd(conv_jacobian(p, x, activation=phi),
                                                compute_uv=False)}

    return jax.lax.map(one, idx)

  return compute


def _input_length(act: Activation, sigma_w2, sigma_b2, q) -> float:
  """``q`` checked, or the default of the setting where ``q`` is None.

  The default is the MLP's (:func:`empirical._input_length.fixed_point_q`):
  ``q*`` (float64), ``Q_LIMIT`` where ``q* = 0``, a ``ValueError`` where it is
  infinite or ``sigma_w2`` is None (a scheme that fixes the variance).
  """
  if q is not None:
    return float(_checks.check_number("q", q, minimum=0.0))
  return float(_fixed_point_q(act, sigma_w2, sigma_b2))


def run_jacobian_spectra(key: Array, *, kernel_size: int, spatial_size: int, activation, width,
                         depth, init, sigma_w2, sigma_b2, n_seeds: int, q=None,
                         max_order: int = 2, chunk_size: int | None, memory_budget: int, store,
                         progress: bool, dtype=None) -> xr.Dataset:
  """Input-output Jacobian spectra of a grid of random square CNNs (``C_0 = width``), on the engine.

  What :func:`empirical.jacobian_spectra` runs for ``arch=meanfield.Conv(kernel_size,
  spatial_size)``. The input is ``x^0 = phi(sqrt(q) z)`` (``z`` standard
  normal, ``(n, C)``), so with ``q = q*`` (the default, ``meanfield.q_star``
  of each setting; ``Q_LIMIT`` where it is 0, as for the MLP: :func:`_input_length`)
  every layer sits at the fixed point; ``J = d phi(h^L) /
  d x^0`` is ``n C`` square. Any of ``activation``, ``init`` (kernel
  schemes), ``width``, ``depth``, ``sigma_w2``, ``sigma_b2`` may be a list;
  each grid point is one configuration whose seeds run in chunks
  (:func:`empirical.engine.run_chunked`; with ``store`` each chunk is
  written atomically and a rerun resumes). Network ``i`` uses ``k = fold_in(key,
  i)``: parameters from ``fold_in(k, WEIGHTS)`` (:func:`conv_params`' layout),
  ``z`` from ``fold_in(k, CONV_INPUT)``. Cost: ``n C`` forward passes and one
  ``(n C)^2`` SVD per network.

  Returns:
    An ``xarray.Dataset`` over the swept axes, ``seed`` and ``index``
    (``n C`` of the widest; nan beyond a network's) or ``order``: the
    variables of :data:`JACOBIAN_DOCS` and ``q``, the input length per
    setting.
  """
  _check(depth=1, width=1, kernel_size=kernel_size)
  n = _positive_int("spatial_size", spatial_size)
  max_order = _checks.check_int("max_order", max_order, 1)
  grid, kernels = kernel_grid(key=key, activation=activation, init=init, width=width,
                              depth=depth, n_seeds=n_seeds, sigma_w2=sigma_w2,
                              sigma_b2=sigma_b2, verb="jacobian_spectra", store=store)
  dtype = _checks.float_dtype(dtype)
  qs = np.array([[[_input_length(a, sw, sb, q) for sb in grid.sigma_b2] for sw in grid.sigma_w2]
                 for a in grid.activations])                       # (acts, sigma_w2, sigma_b2)
  size = max(grid.widths) * n
  memory_budget = _checks.check_int("memory_budget", memory_budget, 1)
  items = (_checks.check_int("chunk_size", chunk_size, 1) if chunk_size is not None else
           engine.items_per_chunk(memory_budget, np.dtype(dtype).itemsize * size * size
                                  * (max(grid.depths) + 6)))
  spec = {**engine.base_spec(grid, dtype), "architecture": "conv", "kernel_size": kernel_size,
          "spatial_size": n, "q": qs.tolist()}
  axes = [range(len(grid.activations)), range(len(kernels)), grid.widths, grid.depths,
          range(len(grid.sigma_w2)), range(len(grid.sigma_b2))]

  def run(c, config, bar):
    a, s, w, d, i, j = config
    compute = functools.partial(
        _spectra_program(grid.activations[a], kernels[s], w, n, d, kernel_size), key,
        None if grid.sigma_w2[i] is None else jnp.asarray(grid.sigma_w2[i], dtype),
        jnp.asarray(grid.sigma_b2[j], dtype), jnp.asarray(qs[a, i, j], dtype))
    sv = engine.run_chunked(compute, grid.n_seeds, chunk_size=items,
                            store=engine.config_store(grid.store, c),
                            spec={**spec, "config": c}, progress=bar)["singular_values"]
    moment = np.stack([np.mean(sv ** (2 * k), -1) for k in range(1, max_order + 1)], -1)
    pad = np.full((grid.n_seeds, size - sv.shape[-1]), np.nan, sv.dtype)
    return {"singular_values": np.concatenate([sv, pad], -1), "moment": moment,
            "sigma_max": sv[:, 0]}

  configs = list(itertools.product(*axes))
  results = engine.run_configs(configs, run, total=len(configs) * grid.n_seeds,
                               desc="jacobian_spectra", progress=progress)
  return _spectra_dataset(results, grid, qs, (activation, init, width, depth, sigma_w2,
                                              sigma_b2), kernel_size=kernel_size, n=n,
                          max_order=max_order, size=size, dtype=dtype)


def _spectra_dataset(results, grid, qs, given, *, kernel_size, n, max_order, size,
                     dtype) -> xr.Dataset:
  """:func:`run_jacobian_spectra`'s result schema: over (grid, seed, index | order) and ``q``."""
  swept = engine.swept(engine.SWEPT, given)
  axes = grid.axes()
  lengths = [len(v) for v in axes.values()] + [grid.n_seeds]
  trailing = {"singular_values": ["index"], "moment": ["order"], "sigma_max": []}
  data_vars = {name: engine.grid_variable(engine.stack(results, name, lengths), engine.SWEPT,
                                          swept, ["seed"] + trailing[name], JACOBIAN_DOCS[name])
               for name in JACOBIAN_DOCS}
  data_vars["q"] = engine.grid_variable(
      qs[:, None, None, None], engine.SWEPT,
      {**swept, "init": False, "width": False, "depth": False}, [],
      "input length q (q* unless given)")
  coords = {"seed": np.arange(grid.n_seeds), "index": np.arange(size),
            "order": np.arange(1, max_order + 1), **engine.grid_coords(axes, swept)}
  attrs = {"method": "svd", "architecture": "conv", "kernel_size": kernel_size,
           "spatial_size": n, **engine.provenance(
               grid, dtype, seed_key="network i uses jax.random.fold_in(key, i): parameters "
                                     "from fold_in(., WEIGHTS), input from fold_in(., CONV_INPUT)"),
           "input": "x^0 = phi(sqrt(q) z), z ~ N(0, I_{n C})"}
  return xr.Dataset(data_vars, coords=coords, attrs=attrs)


class CNN(nnx.Module):
  """The same network as a Flax module: ``nnx.Conv(padding="CIRCULAR")`` layers on ``(batch, *spatial, C_0)``.

  ``CNN.from_params(params)`` holds the given parameters (so the two agree
  to rounding); ``__call__`` returns the last pre-activation ``h^L`` and,
  with ``readout`` set, the logits of a mean-pooled linear readout.
  """

  def __init__(self, params: ConvParams, *, activation="tanh", out_features: int | None = None,
               rngs: nnx.Rngs | None = None):
    self.phi = _activation(activation).fn
    *taps, c_in, width = params.w_in.shape
    depth = params.w.shape[0] + 1
    rngs = rngs or nnx.Rngs(0)
    layers = []
    for l in range(depth):
      conv = nnx.Conv(c_in if l == 0 else width, width, kernel_size=tuple(taps),
                      padding="CIRCULAR", param_dtype=params.w_in.dtype, rngs=rngs)
      conv.kernel[...] = params.w_in if l == 0 else params.w[l - 1]
      conv.bias[...] = params.b_in if l == 0 else params.b[l - 1]
      layers.append(conv)
    self.layers = nnx.List(layers)
    self.readout = (nnx.Linear(width, out_features, param_dtype=params.w_in.dtype, rngs=rngs)
                    if out_features else None)

  def __call__(self, x: Array) -> Array:
    h = self.layers[0](x)
    for conv in self.layers[1:]:
      h = conv(self.phi(h))
    if self.readout is None:
      return h
    return self.readout(jnp.mean(self.phi(h), axis=tuple(range(1, h.ndim - 1))))
