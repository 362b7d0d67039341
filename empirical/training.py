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

With ``arch=meanfield.Conv(kernel_size=k)`` the networks are instead :mod:`empirical.conv`'s
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
import os
from collections.abc import Sequence

import jax
import xarray as xr

from empirical import _checks
from empirical import _grid
from empirical import _train_data
from empirical import _train_dataset
from empirical import _train_options
from empirical import _train_run
from empirical import conv as _conv
from empirical import data as _data
from empirical import description
from empirical import devices as _devices
from empirical import engine
from empirical._train_dataset import CONV_DOCS, RECORD_DOCS, SWEPT
from empirical._train_optim import OPTIMIZERS, optimizer
from empirical._train_options import SV_QUANTILES, WEIGHT_QUANTILES
from empirical.engine import DEFAULT_MEMORY_BUDGET
from meanfield.network import MLP, Architecture

__all__ = [
    "OPTIMIZERS", "SWEPT", "WEIGHT_QUANTILES",
    "SV_QUANTILES", "RECORD_DOCS", "CONV_DOCS", "optimizer", "train",
]

Array = jax.Array


@description.takes_network(supports=_train_options.RUNS)
def train(key: Array, *, network=None, arch: Architecture = MLP(),
          data: _data.DataSplit | str | os.PathLike = "digits",
          activation="tanh", width=64, depth=10, sigma_w2=None, sigma_b2=0.0,
          init="gaussian", n_seeds: int = 1, optimizer: str = "sgd", learning_rate=None,
          momentum: float | None = None, clip_norm: float | None = None, n_steps: int = 1000,
          batch_size: int = 64, record_every: int | None = None,
          record_steps: Sequence[int] | None = None, probe_size: int | None = None,
          weight_quantile: Sequence[float] | None = None,
          sv_quantile: Sequence[float] | None = None, probes: bool = True,
          chunk_size: int | None = None,
          memory_budget: int = DEFAULT_MEMORY_BUDGET, store: str | os.PathLike | None = None,
          progress: bool = True, dtype=None, devices: _devices.Devices = None,
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
      schemes by variance), ``sigma_b2`` and ``arch``
      (:mod:`empirical.description`); those must then not be given too.
    arch: ``meanfield.MLP(residual=False, norm=None)`` (default ``MLP()``)
      for the MLP of :func:`empirical.models.forward` with its variant
      (``residual``; ``norm`` in ``None``, ``"layer"``, ``"batch"``; no
      dropout, ``keep_prob = 1``, and ``alpha = 1``: ``ValueError`` else),
      or ``meanfield.Conv(kernel_size=k)``
      for the circular CNN of :mod:`empirical.conv` (Xiao et al. 2018) with
      ``width`` channels and ``k`` odd taps per spatial axis (``k x k`` in
      2-D), each input reshaped to ``input_shape`` and ``phi(h^L)`` averaged
      over the positions before the linear readout
      (:func:`empirical.conv.conv_logits`). ``init`` then names kernel schemes
      (:func:`empirical.conv.kernel_init_names`: ``"gaussian"`` over all
      taps, ``"delta_orthogonal"``, ...; all of the Conv's ``footprint``
      where it sets one), the readout is the matrix scheme's as for the MLP,
      and a record holds ``q`` (over positions too), ``loss_grad_w``,
      ``layer_sigma_w2``, ``weight_quantiles`` of the whole kernel, no other
      probes and no singular values. No ``residual`` or ``norm``. The Conv's
      ``spatial_size``, where set, must be the positions of a 1-D CNN's
      ``input_shape``. Another architecture raises ``ValueError``.
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
      bitwise those of a one-device run with ``chunk_size / n``. Local
      devices only (the training loop reads back to the host between its
      programs); under ``jax.distributed`` each process trains its own
      chunks and the processes share them through ``store``
      (:func:`empirical.engine.run_chunked`).
    input_shape: a CNN's ``(*spatial, channels)`` per example, its product
      the data's ``n_features`` (only with a Conv ``arch``); default: ``(8, 8, 1)`` for ``"digits"`` and
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

    ds = empirical.train(key, arch=meanfield.Conv(kernel_size=3), init=["delta_orthogonal", "gaussian"],
                         depth=50, width=16, sigma_w2=1.05, sigma_b2=2.01e-5,
                         optimizer="adam", learning_rate=3e-4, n_steps=300)

  Raises:
    ValueError: before any work, for a bad argument (unknown optimizer,
      activation or init, a negative learning rate or variance, a missing
      data directory, a DataSplit with labels outside ``[0, n_classes)``,
      non-finite inputs or mismatched lengths, ...), naming it, its value and
      what is allowed.
  """
  conv = _train_options.check_arch(arch, init=init)
  residual, norm = (arch.residual, arch.norm) if conv is None else (False, None)
  _train_options.check_applies(
      arch=arch, optimizer=optimizer, probes=probes, momentum=momentum,
      weight_quantile=weight_quantile, sv_quantile=sv_quantile, input_shape=input_shape)
  grid_args = dict(key=key, activation=activation, init=init, width=width, depth=depth,
                   n_seeds=n_seeds, sigma_w2=sigma_w2, sigma_b2=sigma_b2, verb="train",
                   store=store)
  kernels = None
  if conv is not None:
    grid, kernels = _conv.kernel_grid(**grid_args)
  else:
    grid = _grid.network_grid(**grid_args, residual=residual, norm=norm)
  opts = _train_options.options(
      learning_rate=learning_rate, optimizer=optimizer, momentum=momentum, clip_norm=clip_norm,
      n_steps=n_steps, batch_size=batch_size, record_every=record_every,
      record_steps=record_steps, probe_size=probe_size, weight_quantile=weight_quantile,
      sv_quantile=sv_quantile, probes=probes)
  memory_budget = _checks.check_int("memory_budget", memory_budget, 1)
  if chunk_size is not None:
    chunk_size = _checks.check_int("chunk_size", chunk_size, 1)
  dtype = _checks.float_dtype(dtype)
  devs = _devices.resolve(devices)
  devs = _devices.check_local(devs)
  split, loaded_shape = _train_data.resolve_data(data, dtype)
  cnn = None
  if conv is not None:
    cnn = dict(kernels=kernels, kernel_size=conv.kernel_size,
               input_shape=_train_data.input_shape(input_shape, loaded_shape, split))
    _train_options.check_spatial_size(conv, cnn["input_shape"])
  opts = _train_data.with_probe_size(opts, split)
  configs = _train_run.configs(grid, split, residual=residual, norm=norm, opts=opts,
                               dtype=dtype, arch=cnn)
  n_eval = max(split.n_train, split.n_test)
  for *_, cfg in configs:
    engine.check_fits(
        f"network of width {cfg.width} and depth {cfg.depth} in training",
        lambda d, cfg=cfg: _train_run.network_bytes(dataclasses.replace(cfg, depth=d), n_eval,
                                                    opts.probe_size),
        cfg.depth, memory_budget, width=cfg.width)
  run = functools.partial(_train_run.run_config, key=key, grid=grid, split=split, opts=opts,
                          spec=_train_run.spec(grid, split, opts, residual=residual, norm=norm,
                                               dtype=dtype, arch=cnn),
                          chunk_size=chunk_size, memory_budget=memory_budget, devs=devs)
  n_items = len(grid.sigma_w2) * len(grid.sigma_b2) * len(opts.rates) * grid.n_seeds
  results = engine.run_configs(configs, run, total=len(configs) * n_items, desc="train",
                               progress=progress)
  swept = engine.swept(SWEPT, (activation, init, width, depth, sigma_w2, sigma_b2,
                               learning_rate))
  return _train_dataset.dataset(
      results, grid, opts, swept,
      _train_dataset.attrs(grid, split, opts, residual=residual, norm=norm, dtype=dtype,
                           arch=cnn), conv=conv is not None)
