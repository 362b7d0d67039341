"""Is my network critical? Signal-propagation diagnostics of any Flax model.

:func:`diagnose` takes a user's model as it is (an ``nnx`` factory, a Linen
module, or an ``init``/``apply`` pair), builds ``n_seeds`` random instances
(``jax.vmap`` over keys, in chunks run by :func:`empirical.engine.run_chunked`:
stores, resume, devices, progress), and measures at every layer what the sweep
measures on the toolkit's own MLPs (:mod:`empirical.probes`), plus the
criticality criterion of Doshi, He & Gromov (2023), which holds for
architectures that mean-field theory does not cover.

Layers are found in the forward pass's jaxpr, with no change to the model
(:mod:`empirical._capture`): every dense or convolutional pre-activation
(the ``dot_general`` / ``conv`` with a weight, its bias added), every residual
addition ``x + f(x)``, and every submodule's output (recorded by Flax's own
``nnx.capture(..., method_outputs=nnx.Intermediate)``, or Linen's
``capture_intermediates``), so normalisations and attention blocks appear
under their paths. A network scanned over depth (``lax.scan``) shows each
layer. For a layer's value ``h`` (batch first, ``N`` units per example, all
non-batch axes together) over ``B`` inputs:

- ``q``: ``<h_i^2>``, the mean square per unit; ``mean``: ``<h_i>``.
- ``c``: the cosine of ``h`` for inputs ``2k`` and ``2k+1``, mean over pairs.
- ``zero``, ``dead``, ``saturated``: as in :mod:`empirical.probes`, of the
  layer's post-activation ``a = phi(h)`` (the elementwise nonlinearity applied
  to ``h``, if one is: ``tanh``, ``sigmoid``, ``erf``, ReLU, ...); nan where none is.
- ``grad_h``: ``sqrt(mean_a |dL_a/dh_a|^2)`` for the loss ``L_a = r . out_a``,
  ``r`` a random unit vector over the output's units (per network).
- ``partial_jacobian``: the averaged partial Jacobian norm (APJN) from a
  reference layer ``l0``,

  .. math::

    \\mathcal{J}^{l_0, l} = \\frac{1}{N_l}\\,
      \\mathbb{E}\\,\\Big\\| \\frac{\\partial h^{l}}{\\partial h^{l_0}} \\Big\\|_F^2
      = \\frac{1}{N_l}\\,\\mathbb{E}_v \\Big\\| \\frac{\\partial h^{l}}{\\partial h^{l_0}}
      \\, v \\Big\\|^2,
    \\quad v \\sim \\mathcal{N}(0, I),

  (Doshi, He & Gromov 2023, "Critical initialization of wide and deep neural
  networks using partial Jacobians"; per input, averaged over inputs and
  ``n_projections`` random tangents ``v``, each one forward-mode JVP). For an
  MLP it is ``prod chi_1`` over the layers between (``chi_1`` of Poole et al.
  2016): ``J`` decays exponentially with depth in the ordered phase, grows
  in the chaotic phase and stays of order one (a power law at most) at
  criticality.
- ``singular_values``: of the input-output Jacobian ``d out_0 / d x_0`` of
  the first input (small models).
- attention models (a softmax in the forward pass, ``x`` of shape ``(B, T,
  ...)``): ``token_c`` and ``stable_rank`` of each layer's tokens,
  ``aligned_gap`` (``1 - token_c`` on nearly aligned inputs) and each softmax's
  ``attention_entropy``; :func:`verdict` adds Cowsik et al. 2024's angle and
  gradient exponents and names rank collapse, entropy collapse or chaos
  (``docs/diagnose.md``).

:func:`verdict` fits ``log J^{l0,l}`` over the layers of the fit (the
residual stream where there is one, else the dense/conv layers; ``d``
counts those layers) with an exponential ``a + s d`` and a power law
``a + zeta log(d + 1)``: ordered (``s < 0``) or chaotic (``s > 0``) when the
exponential fits better and its depth scale ``xi = 1 / |s|`` is shorter than
the depth spanned; critical otherwise (``J`` changes by less than a factor
``e`` across the network, or like a power of the depth).
``figures/_diagnose_plot.py`` draws it all (:mod:`figures.fig_diagnose`).

Random numbers follow the package's convention: network ``i`` has key
``k_i = network_key(key, i) = fold_in(key, i)``; the model is built from
``nnx.Rngs(k_i)`` (Linen: ``init(k_i, x)``), the readout ``r`` from
``fold_in(k_i, READOUT)`` (as :mod:`empirical.sweep` draws it) and the
tangents ``v`` from ``fold_in(k_i, TANGENTS)``, streams 2 and 3 of
:mod:`empirical.streams`.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import math
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from empirical import _capture
from empirical import _checks
from empirical import _diagnose_network as _network
from empirical import _grid
from empirical import devices as _devices
from empirical import engine
from empirical import models as _models
from empirical.tangent import condition_numbers

__all__ = ["diagnose", "verdict", "Verdict", "DIAGNOSE_DOCS"]

Array = jax.Array
_MAX_JACOBIAN = 1 << 16        # entries of d out_0 / d x_0 computed by default

#: Description of each measured variable (the ``description`` attribute).
DIAGNOSE_DOCS = {
    "q": "mean square per unit <h_i^2> of the layer's value over units and inputs",
    "mean": "mean <h_i> of the layer's value over units and inputs",
    "c": "cosine of the layer's values for inputs 2k and 2k+1, mean over pairs",
    "zero": "fraction of post-activations phi(h) exactly zero (nan: no nonlinearity follows)",
    "dead": "fraction of units whose post-activation is zero for every input (nan: none)",
    "saturated": "fraction of post-activations within 1% of a finite asymptote of phi "
                 "(nan: no nonlinearity follows)",
    "grad_h": "sqrt(mean over inputs of |dL_a/dh^l|^2), L_a = r . out_a (r random unit vector)",
    "partial_jacobian": "(1/N_l) E ||d h^l / d h^l0||_F^2 (Doshi, He & Gromov 2023), by JVPs "
                        "with random tangents; nan before l0",
    "singular_values": "singular values of d out_0 / d x_0 (first input), descending",
    "ntk": "empirical NTK grad_p f_a . grad_p f_b over every parameter, f_a = r . out_a "
           "(with ntk=True)",
    "ntk_condition": "lambda_max / lambda_min of ntk; inf beyond the dtype's resolution "
                     "(empirical.tangent.condition_numbers)",
    "token_c": "token correlation: mean over token pairs of the cosine of the layer's tokens "
               "(axis 1 after the inputs'), mean over inputs (attention models)",
    "stable_rank": "|X|_F^2 / |X|_2^2 of the layer's T x features token matrix, mean over "
                   "inputs (attention models)",
    "aligned_gap": "1 - token correlation on the nearly aligned inputs m + 1e-3 (x - m), m the "
                   "inputs' token mean (attention models; the angle exponent's data)",
    "attention_entropy": "-sum_j A_ij log A_ij of each softmax found, mean over queries, heads "
                         "and inputs (log keys for uniform attention)",
}


# --- validation, the driver ----------------------------------------------------------

def _check(model, x, key, n_seeds, n_projections, jacobian, ntk=False):
  if not isinstance(ntk, bool):
    raise ValueError(f"`ntk` must be True or False, got {ntk!r}")
  if isinstance(n_seeds, bool) or not isinstance(n_seeds, int | np.integer) or n_seeds < 1:
    raise ValueError(f"`n_seeds` must be an integer >= 1, got {n_seeds!r}")
  if (isinstance(n_projections, bool) or not isinstance(n_projections, int | np.integer)
      or n_projections < 1):
    raise ValueError(f"`n_projections` must be an integer >= 1, got {n_projections!r}")
  if jacobian not in (None, True, False):
    raise ValueError(f"`jacobian` must be None, True or False, got {jacobian!r}")
  try:
    shape, dtype = jnp.shape(x), jnp.result_type(x)
  except TypeError:
    raise ValueError(f"`x` must be an array of inputs (batch first), got {type(x).__name__}")
  if len(shape) < 1 or shape[0] < 1 or not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(f"`x` must be a float array of shape (batch >= 1, ...), got shape "
                     f"{shape} and dtype {dtype}")
  if not (isinstance(key, jax.Array) and (jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
                                          or key.shape == (2,))):
    raise ValueError(f"`key` must be a jax PRNG key (jax.random.key(0)), got {key!r}")
  _network.program(model, x)                             # raises for an unusable model


def _select(names: Sequence[str], which, what: str, allowed: str) -> int:
  if isinstance(which, str):
    if which not in names:
      raise ValueError(f"`{what}` must be one of the layer names {list(names)}, got {which!r}")
    return list(names).index(which)
  if isinstance(which, int | np.integer) and not isinstance(which, bool) \
      and 0 <= which < len(names):
    return int(which)
  raise ValueError(f"`{what}` must be {allowed}, got {which!r}")


def diagnose(model, x: Array, *, key: Array, n_seeds: int = 8, n_projections: int = 4,
             l0: str | int | None = None, fit: Sequence[str] | None = None,
             jacobian: bool | None = None, chunk_size: int | None = None,
             memory_budget: int = engine.DEFAULT_MEMORY_BUDGET,
             store: str | os.PathLike | None = None, progress: bool = True,
             devices: _devices.Devices = None, ntk: bool = False) -> xr.Dataset:
  """Signal-propagation diagnostics of ``n_seeds`` random instances of ``model``.

  Runs on the experiment engine (:func:`empirical.engine.run_chunked`), as
  :func:`empirical.sweep` does: networks are built and measured in chunks,
  ``group`` networks vmapped at once (2 on the CPU, 8 on accelerators, at
  most ``n_seeds`` but at least 2), so every network is computed by the same
  program whatever the chunking: results are bitwise identical across
  ``chunk_size``, ``memory_budget``, ``devices`` and resumption.

  Args:
    model: a callable ``factory(rngs: nnx.Rngs) -> nnx.Module`` (e.g.
      ``lambda rngs: MyNet(..., rngs=rngs)``), a ``flax.linen.Module``, or an
      ``(init, apply)`` pair with ``init(key, x) -> params`` and
      ``apply(params, x) -> out``. The output must be one array, batch first.
    x: inputs ``(B, ...)`` (batch first); pairs ``(2k, 2k+1)`` give ``c``.
    key: the PRNG key; network ``i`` has ``fold_in(key, i)`` (module docstring).
    n_seeds: networks built and measured.
    n_projections: random tangents per input for the partial Jacobians.
    l0: the reference layer of ``J^{l0,l}`` (name or index); default the
      first layer of the fit.
    fit: names of the layers that :func:`verdict` fits; default the
      residual additions if there are any, else the dense/conv layers, from
      ``l0`` on.
    jacobian: compute the input-output singular values; default when
      ``d out_0 / d x_0`` has at most 65536 entries.
    chunk_size: networks per chunk (per stored chunk, per progress step),
      rounded up to a multiple of the group times the devices; default as
      many as ``memory_budget`` would hold on each device.
    memory_budget: bytes per device a group of networks measured at once may
      hold (default 1 GiB; a rough count per network, as in
      :func:`empirical.sweep`); it also sizes the default chunk.
    store: a directory; each finished chunk is written there atomically and a
      rerun with the same model and arguments loads it instead of measuring
      again, so a run killed at any moment resumes to exactly the result of
      an uninterrupted one. The store is keyed on what the model computes
      (below); a different model or setting on the same store raises
      ``ValueError`` naming what differs.
    progress: show a tqdm bar (networks measured).
    devices: where to run: ``None`` (default) every local device (the first
      only on the CPU, as in :func:`empirical.sweep`), ``1`` the default
      device, an integer ``n`` the first ``n`` local devices, or a sequence
      of them; each chunk is cut into ``n`` equal parts measured at once, one
      per device (:func:`empirical.devices.split_over`; local devices only:
      a model is built eagerly, outside any compiled program); under
      ``jax.distributed`` each process measures its own chunks and the
      processes share them through ``store``
      (:func:`empirical.engine.run_chunked`).
    ntk: also measure the empirical neural tangent kernel of each network on
      ``x`` (``J J^T`` over every parameter, in the model's own
      parametrisation, of ``f_a = r . out_a``; ``J`` materialised, so for
      models of moderate size), and its condition number: a trainability
      proxy that needs no training (Xiao et al. 2020; docs/ntk.md).

  A store's spec keys the model by content, never by its Python code or
  identity (which change between processes): digests of ``x`` (shape, dtype,
  bytes); of the parameters of networks 0 and 1 as built from the key (their
  tree paths, shapes, dtypes and values); of network 0's output and every
  layer's value on ``x``; the layers found (names, kinds, shapes); and
  ``key``, ``n_seeds``, ``n_projections``, ``l0``, the fit, ``jacobian`` and
  the vmapped group. Its limit: two models that agree at all these points
  (the same parameters for networks 0 and 1 and the same values on ``x``,
  yet different elsewhere, e.g. a model that reads a global changed between
  runs) share a key, and a rerun would load the other's chunks. The digests
  are of exact bits, computed on the host's CPU (deterministic there); the
  group differs between the CPU and accelerators, so a store resumes on the kind
  of backend (and the library versions) that made it.

  Models run as they are called. Where a layer mixes the inputs of the
  batch (BatchNorm in training mode), ``grad_h`` is that of ``sum_a L_a`` and
  ``J^{l0,l}`` sums, for input ``a``, the squared Jacobians from every
  input's ``h^{l0}`` to ``h^l_a``. Dropout draws from each network's own
  ``nnx.Rngs``.

  Returns:
    An ``xarray.Dataset`` over ``(seed, layer)`` (``layer`` = 1..n in the order
    of computation) with ``q``, ``mean``, ``c``, ``zero``, ``dead``,
    ``saturated``, ``grad_h``, ``partial_jacobian`` (see :data:`DIAGNOSE_DOCS`),
    ``singular_values`` over ``(seed, sv)`` if computed; coordinates over
    ``layer``: ``name``, ``kind``, ``module``, ``activation``, ``units``
    (``N_l``), ``in_fit``; attributes ``l0``, ``verdict`` (the text of
    :func:`verdict`), ``phase``, ``chi_J``, ``depth_scale``. For attention
    models also ``token_c``, ``stable_rank``, ``aligned_gap`` over ``(seed,
    layer)``, ``attention_entropy`` over ``(seed, attention)`` (coordinate
    ``keys``) and attributes ``tokens`` (the failures found, or
    ``"healthy"``), ``angle_exponent``, ``gradient_exponent``. With ``ntk``:
    ``ntk`` over ``(seed, input_a, input_b)``, ``ntk_condition`` over
    ``seed``, and the attribute ``ntk_condition`` (its median and 10-90%
    range over the seeds, in words).

  Raises:
    ValueError: for a bad argument, before any work: a model that is not one
      of the above or whose output is not one float array batch first, a
      group of networks that does not fit ``memory_budget``, a ``store``
      holding another computation; and, after building the first two, a
      model whose networks are identical for different keys (one that
      ignores its ``rngs``).
  """
  _check(model, x, key, n_seeds, n_projections, jacobian, ntk)
  memory_budget = _checks.check_int("memory_budget", memory_budget, 1)
  if chunk_size is not None:
    chunk_size = _checks.check_int("chunk_size", chunk_size, 1)
  store = _checks.check_store(store)
  devs = _devices.check_local(_devices.resolve(devices))
  x = jnp.asarray(x)
  build, apply = _network.program(model, x)
  plan = _plan(build, apply, x, key, n_seeds, l0, fit, jacobian, ntk)
  group_bytes = plan.group * plan.per_network
  if group_bytes > memory_budget:
    raise ValueError(
        f"`memory_budget` = {memory_budget} bytes is too small for {plan.group} networks of "
        f"`model` measured at once (one vmapped group), which need about {group_bytes} "
        f"bytes ({group_bytes / 2**30:.3g} GiB; one network about {plan.per_network}) on "
        f"these inputs; raise `memory_budget` or use fewer inputs")
  step = plan.group * len(devs)
  size = chunk_size or len(devs) * plan.group * engine.items_per_chunk(memory_budget,
                                                                       group_bytes)
  measure = _measure_program(plan.traced, plan.layers, plan.i0, n_projections, plan.jac,
                             bool(plan.keys), plan.ntk)
  compute = _devices.split_over(_chunk_program(build, measure, x, key, plan.group), devs)
  spec = None if store is None else _spec(build, x, key, n_projections, plan)
  result = engine.run_chunked(compute, n_seeds, chunk_size=-(-size // step) * step,
                              multiple=step, store=store, spec=spec, progress=progress,
                              desc="diagnose")
  return _dataset(result, plan, n_seeds, x.shape[0])


class _Plan(NamedTuple):
  """What :func:`diagnose` knows of one network before building any: its traced forward
  pass, layers, reference and fitted layers, whether the Jacobian is taken, the rough
  bytes one network holds, and how many networks are vmapped at once."""
  traced: Any
  layers: tuple
  i0: int
  fit_idx: list[int]
  jac: bool
  per_network: int
  group: int
  keys: tuple[int, ...] = ()
  ntk: bool = False


def _plan(build, apply, x, key, n_seeds, l0, fit, jacobian, ntk=False) -> _Plan:
  """The layers and the memory plan, from shapes only (nothing is built)."""
  one = jax.eval_shape(build, _models.network_key(key, 0))
  traced = _capture.trace(apply, one, x)
  out_shape, layers = _network.first_layers(traced, jax.tree.leaves(one), x)
  _network.check_output(out_shape, x)
  layers = _network.batch_axes(layers, apply, one, x)
  if not layers:
    raise ValueError("`model` has no layer that diagnose can see (no dense, conv, residual "
                     "or submodule output depends on `x`)")
  names = [layer.name for layer in layers]
  fit_idx = _fit_layers(layers, fit)
  i0 = fit_idx[0] if l0 is None else _select(names, l0, "l0", "a layer name or index")
  fit_idx = [i for i in fit_idx if i >= i0]
  n_jac = math.prod(out_shape.shape[1:]) * math.prod(x.shape[1:])
  jac = n_jac <= _MAX_JACOBIAN if jacobian is None else bool(jacobian)
  per_network = _network_bytes(one, layers, n_jac if jac else 0)
  if ntk:             # J over the parameters, one row per input, materialised
    per_network += 2 * x.shape[0] * sum(math.prod(p.shape) * np.dtype(p.dtype).itemsize
                                        for p in jax.tree.leaves(one)
                                        if jnp.issubdtype(p.dtype, jnp.floating))
  # token statistics where there is attention and x carries tokens (batch, tokens, ...)
  keys = _network.attention_keys(traced, jax.tree.leaves(one), x) \
      if x.ndim >= 3 and x.shape[1] >= 2 else ()
  return _Plan(traced, tuple(layers), i0, fit_idx, jac, per_network, _group_size(n_seeds),
               keys, ntk)


#: Networks vmapped together (None: 2 on the CPU, 8 on accelerators). At least 2: XLA
#: compiles a vmap over one network to another program (other last bits) than over
#: several, whose rows are then computed alike.
_GROUP: int | None = None


def _group_size(n_seeds: int) -> int:
  group = _GROUP or (2 if jax.default_backend() == "cpu" else 8)
  return max(2, min(group, n_seeds))


#: Copies of each layer's value one network holds while measured (value,
#: post-activation, gradient, shift, tangent, and the forward pass's own
#: intermediates); a rough count, as the other drivers' plans are.
_LAYER_COPIES = 8


def _network_bytes(params, layers, n_jac: int) -> int:
  """Rough bytes one network holds while measured: its parameters (twice: built and
  read), its layers' values (:data:`_LAYER_COPIES` each), the input-output Jacobian."""
  def nbytes(shape, dtype):
    size = 8 if jnp.issubdtype(dtype, jax.dtypes.prng_key) else np.dtype(dtype).itemsize
    return math.prod(shape) * size
  weights = sum(nbytes(p.shape, p.dtype) for p in jax.tree.leaves(params))
  values = sum(nbytes(layer.shape, layer.dtype) for layer in layers)
  itemsize = max((np.dtype(layer.dtype).itemsize for layer in layers), default=4)
  return 2 * weights + _LAYER_COPIES * values + 2 * n_jac * itemsize


def _network_keys(key: Array, idx) -> Array:
  return jax.vmap(lambda i: _models.network_key(key, i))(jnp.asarray(idx, jnp.int32))


def _chunk_program(build, measure, x, key, group: int):
  """``compute(indices)`` for :func:`empirical.engine.run_chunked`: networks ``indices``
  (a multiple of ``group`` of them) built and measured ``group`` at a time, by one
  program, so each network's numbers depend on its index only (and the group's
  composition, which chunks aligned to ``group`` keep)."""
  def compute(idx):
    idx = np.asarray(idx)
    parts = []
    for g in idx.reshape(-1, group):
      keys = _network_keys(key, g)
      # Eagerly vmapped: a factory's own jitted parts compile once per shape, whatever
      # the values it closes over (a new init, say).
      params = jax.vmap(build)(keys)
      if g[0] == 0:
        _check_independent(params if g[1] == 1 else jax.vmap(build)(_network_keys(key, [0, 1])))
      parts.append(jax.device_get(measure(jax.tree.leaves(params), x, keys)))
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

  return compute


def _digest(arrays) -> str:
  """sha256 of arrays' dtypes, shapes and bytes (PRNG keys by their key data)."""
  h = hashlib.sha256()
  for a in arrays:
    if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
      a = jax.random.key_data(a)
    a = np.ascontiguousarray(np.asarray(a))
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
  return h.hexdigest()


def _host_device() -> jax.Device:
  """The host's first CPU device (the default device where JAX runs without a CPU)."""
  try:
    return jax.local_devices(backend="cpu")[0]
  except RuntimeError:                           # JAX_PLATFORMS without "cpu"
    return jax.local_devices()[0]


def _spec(build, x, key, n_projections: int, plan: _Plan) -> dict:
  """A store's spec: the model keyed by what it computes (see :func:`diagnose`).

  Computed on the host's CPU whatever the devices: its programs are deterministic
  there (an accelerator's autotuned kernels may round differently from one process
  to the next, and a resumed run would not find its store)."""
  host = _host_device()
  with jax.default_device(host):
    pair = jax.vmap(build)(_network_keys(key, [0, 1]))
    _check_independent(pair)                     # before a store is made for it
    flat = jax.tree_util.tree_flatten_with_path(pair)[0]
    leaves = [leaf for _, leaf in flat]
    first = [leaf[0] for leaf in leaves]
    x = jax.device_put(np.asarray(x), host)
    out, rec = _capture.run(plan.traced, first, x)
  return {
      "driver": "diagnose", "key": _grid.key_data(key), "x": _digest([x]),
      "parameters": [[jax.tree_util.keystr(path), list(leaf.shape[1:]), str(leaf.dtype)]
                     for path, leaf in flat],
      "parameter_values": _digest(leaves),
      "values": _digest(jax.tree.leaves(out) + list(rec.values)),
      "layers": [[layer.name, layer.kind, list(layer.shape), str(layer.dtype)]
                 for layer in plan.layers],
      "l0": plan.layers[plan.i0].name, "fit": [plan.layers[i].name for i in plan.fit_idx],
      "n_projections": n_projections, "jacobian": plan.jac, "group": plan.group,
      **({"ntk": True} if plan.ntk else {})}


def _check_independent(params) -> None:
  """Raise if networks 0 and 1 are one network: every parameter the same, some random."""
  def data(p):
    return jax.random.key_data(p) if jnp.issubdtype(p.dtype, jax.dtypes.prng_key) else p
  leaves = [np.asarray(data(p)) for p in jax.tree.leaves(params)]
  if not all(np.array_equal(p[0], p[1]) for p in leaves):
    return
  if any(p[0].size > 1 and np.any(p[0] != p[0].flat[0]) for p in leaves):
    raise ValueError(
        "`model` builds identical networks from different keys (network 0 and 1 have every "
        "parameter equal): it ignores the key it is given (an nnx factory must pass its "
        "`rngs` to its layers, an `init` must use its `key`), so the seeds would not be "
        "independent networks")


_PROGRAMS: collections.OrderedDict = collections.OrderedDict()


def _measure_program(traced, layers, i0, n_projections, jac, attention, ntk=False):
  """The jitted ``(params, x, keys) -> stats`` of all seeds, reused for any model whose
  forward pass has the same jaxpr and constants (the same architecture at a new init)."""
  consts = tuple(hashlib.sha256(np.ascontiguousarray(np.asarray(c)).tobytes()).hexdigest()
                 for c in traced.jaxpr.consts)
  fingerprint = (str(traced.jaxpr.jaxpr), consts, str(traced.out_tree), layers, i0,
                 n_projections, jac, attention, ntk)
  if fingerprint not in _PROGRAMS:
    one = functools.partial(_network.measure_one, traced, layers, i0, n_projections, jac,
                            attention, ntk=ntk)
    _PROGRAMS[fingerprint] = jax.jit(jax.vmap(one, in_axes=(0, None, 0)))
    while len(_PROGRAMS) > 16:
      _PROGRAMS.popitem(last=False)
  return _PROGRAMS[fingerprint]


def _fit_layers(layers, fit) -> list[int]:
  names = [layer.name for layer in layers]
  if fit is not None:
    if isinstance(fit, str) or not all(isinstance(n, str) for n in fit):
      raise ValueError(f"`fit` must be a sequence of layer names, got {fit!r}")
    idx = sorted(_select(names, n, "fit", "a layer name") for n in fit)
  else:
    idx = [i for i, layer in enumerate(layers) if layer.kind == "residual"] or \
        [i for i, layer in enumerate(layers) if layer.kind in ("dense", "conv")] or \
        list(range(len(layers)))
  return idx


def _dataset(result, plan: _Plan, n_seeds, n_batch) -> xr.Dataset:
  layers, fit_idx, i0 = plan.layers, plan.fit_idx, plan.i0
  data = {}
  if "ntk" in result:
    result = {**result, "ntk_condition": condition_numbers(
        result["ntk"], eps=float(np.finfo(np.asarray(result["ntk"]).dtype).eps))}
  dims_of = {"singular_values": ("seed", "sv"), "ntk": ("seed", "input_a", "input_b"),
             "ntk_condition": ("seed",), "attention_entropy": ("seed", "attention")}
  for name, value in result.items():
    value = np.asarray(value)
    dims = dims_of.get(name, ("seed", "layer"))
    data[name] = xr.Variable(dims, value, {"description": DIAGNOSE_DOCS[name]})
  coords = {
      "seed": np.arange(n_seeds), "layer": np.arange(1, len(layers) + 1),
      "name": ("layer", [layer.name for layer in layers]),
      "kind": ("layer", [layer.kind for layer in layers]),
      "module": ("layer", [layer.module for layer in layers]),
      "activation": ("layer", [layer.activation or "" for layer in layers]),
      "units": ("layer", [math.prod(layer.shape) // n_batch for layer in layers]),
      "in_fit": ("layer", [i in fit_idx for i in range(len(layers))]),
  }
  if plan.keys:
    coords.update(attention=np.arange(1, len(plan.keys) + 1), keys=("attention", list(plan.keys)))
  ds = xr.Dataset(data, coords=coords, attrs={"l0": layers[i0].name,
                                              "seed_key": "network i uses fold_in(key, i)"})
  v = verdict(ds)
  ds.attrs.update(verdict=v.text, phase=v.phase, law=v.law, chi_J=v.chi_J,
                  depth_scale=v.depth_scale, exponent=v.exponent)
  if "ntk_condition" in ds:
    low, mid, high = np.quantile(ds["ntk_condition"].values, (0.1, 0.5, 0.9))
    ds.attrs["ntk_condition"] = (f"NTK condition number: median {mid:.4g} (10-90% over "
                                 f"{n_seeds} seeds: {low:.4g} to {high:.4g})")
  if plan.keys:
    ds.attrs.update(tokens=", ".join(v.tokens) or "healthy", angle_exponent=v.angle_exponent,
                    gradient_exponent=v.gradient_exponent)
  return ds


# --- the verdict --------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Verdict:
  """The phase read from the partial Jacobians (see :func:`verdict`).

  Attributes:
    phase: ``"ordered"``, ``"critical"``, ``"chaotic"`` or ``"undetermined"``
      (fewer than 3 finite layers in the fit).
    law: ``"exponential"`` or ``"power"``, the form that fits ``J`` better.
    chi_J: ``exp(s)``, the factor by which ``J^{l0,l}`` changes per layer of
      the fit in the exponential fit (``chi_1`` for an MLP).
    depth_scale: ``xi = 1 / |s|`` in layers of the fit (inf for ``s = 0``).
    exponent: ``zeta`` of the power-law fit ``J ~ (d + 1)^zeta``.
    span: the number of layers of the fit after ``l0``.
    slope: ``s``, with its standard error ``slope_err`` over seeds.
    text: the verdict in words.
    tokens: for attention models, the failures found among ``"rank collapse"``,
      ``"entropy collapse"`` and ``"chaos"`` (empty: none; thresholds in
      :func:`verdict`).
    angle_exponent: Cowsik et al. 2024's angle exponent, the mean over layers
      of the fit of ``log((1 - c^l) / (1 - c^{l-1}))`` for nearly aligned tokens
      (nan without attention).
    gradient_exponent: ``(1/n) log(|dL/dh^{first}|^2 / |dL/dh^{last}|^2)`` over
      the ``n`` steps of the fit (nan without attention).
  """

  phase: str
  law: str
  chi_J: float
  depth_scale: float
  exponent: float
  span: int
  slope: float
  slope_err: float
  text: str
  tokens: tuple[str, ...] = ()
  angle_exponent: float = math.nan
  gradient_exponent: float = math.nan


def _fit(u: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
  """Least squares ``y = a + b u`` per row of ``y`` ``(seed, n)``: slopes ``b`` and the
  residual sum of squares of the fit to the mean row."""
  b = np.polyfit(u, y.T, 1)[0]
  mean = y.mean(0)
  coef = np.polyfit(u, mean, 1)
  return b, float(np.sum(np.square(np.polyval(coef, u) - mean)))


def verdict(ds: xr.Dataset) -> Verdict:
  """Ordered, critical or chaotic, from the growth of ``J^{l0,l}`` with depth.

  Over the layers with ``in_fit`` (``d = 0, 1, ..., n - 1`` from ``l0``), fits
  ``log J`` with an exponential, ``a + s d``, and with a power law,
  ``a + zeta log(d + 1)`` (least squares; slopes per seed, averaged). The
  phase is ordered (``s < 0``) or chaotic (``s > 0``) when the exponential
  fits better and its depth scale ``xi = 1/|s|`` is shorter than the span
  ``n - 1``; otherwise critical: ``J`` changes by less than a factor ``e``
  over the network, or like a power of the depth (Doshi, He & Gromov 2023:
  ``J^{l0,l} ~ l^zeta`` at criticality, exponential off it).
  """
  logj = np.log(ds["partial_jacobian"].where(ds["in_fit"], drop=True).values)   # (seed, n)
  finite = np.all(np.isfinite(logj), axis=0)
  logj = logj[:, finite]
  n = logj.shape[1]
  tokens = _tokens(ds)
  if n < 3:
    return Verdict("undetermined", "", math.nan, math.nan, math.nan, max(n - 1, 0), math.nan,
                   math.nan, f"undetermined: {n} layers with a finite partial Jacobian in "
                   f"the fit (3 needed)" + tokens[0], *tokens[1:])
  d = np.arange(n, dtype=float)
  slopes, rss_exp = _fit(d, logj)
  zetas, rss_pow = _fit(np.log1p(d), logj)
  s, zeta = float(np.mean(slopes)), float(np.mean(zetas))
  err = float(np.std(slopes, ddof=1) / math.sqrt(len(slopes))) if len(slopes) > 1 else math.nan
  xi = math.inf if s == 0 else 1.0 / abs(s)
  span = n - 1
  law = "power" if rss_pow < rss_exp else "exponential"
  phase = ("critical" if xi >= span or law == "power" else "ordered" if s < 0 else "chaotic")
  where = f"{span} layers fitted from {ds.attrs.get('l0', 'l0')}"
  if law == "power" and xi < span:
    text = (f"critical: the partial Jacobian norm J^(l0,l) follows a power law (d+1)^zeta, "
            f"zeta = {zeta:.3g}, better than an exponential ({where})")
  else:
    how = {"ordered": "decays", "chaotic": "grows", "critical": "changes"}[phase]
    text = (f"{phase}: the partial Jacobian norm J^(l0,l) {how} by a factor chi_J = "
            f"{math.exp(s):.3g} per layer (depth scale xi = {xi:.3g} layers; {where})")
  return Verdict(phase, law, math.exp(s), xi, zeta, span, s, err, text + tokens[0], *tokens[1:])


#: Thresholds of the token verdict (docs/diagnose.md): rank collapse where the token
#: correlation at the last layer of the fit is at least RANK_COLLAPSE (and above the first
#: layer's); entropy collapse where the deepest softmax's entropy is below ENTROPY_COLLAPSE
#: log(keys); chaos where the angle exponent exceeds CHAOS per layer of the fit.
RANK_COLLAPSE, ENTROPY_COLLAPSE, CHAOS = 0.9, 0.2, 0.05


def _tokens(ds: xr.Dataset) -> tuple[str, tuple[str, ...], float, float]:
  """``(text, failures, angle exponent, gradient exponent)`` of an attention model's
  token statistics (``("", (), nan, nan)`` without them)."""
  if "token_c" not in ds:
    return "", (), math.nan, math.nan
  fit = ds.sel(layer=ds["in_fit"])
  fit = fit.sel(layer=np.isfinite(fit["token_c"].mean("seed").values))
  n = fit.sizes["layer"]
  if n < 2:
    return "; tokens: undetermined (fewer than 2 layers of the fit carry tokens)", (), \
        math.nan, math.nan
  first, last = fit.isel(layer=0), fit.isel(layer=-1)
  angle = float(np.mean(np.log(last["aligned_gap"] / first["aligned_gap"]))) / (n - 1)
  grad = float(np.mean(2 * np.log(first["grad_h"] / last["grad_h"]))) / (n - 1)
  c0, c1 = float(first["token_c"].mean()), float(last["token_c"].mean())
  failures = []
  if c1 >= RANK_COLLAPSE and c1 > c0:
    failures.append("rank collapse")
  entropy = math.nan
  if "attention_entropy" in ds and ds.sizes["attention"]:
    deepest = ds["attention_entropy"].isel(attention=-1)
    entropy = float(deepest.mean()) / math.log(int(ds["keys"].values[-1]))
    if entropy < ENTROPY_COLLAPSE:
      failures.append("entropy collapse")
  if angle > CHAOS:
    failures.append("chaos")
  text = (f"; tokens: {', '.join(failures) or 'no rank collapse, entropy collapse or chaos'} "
          f"(token correlation {c0:.3g} -> {c1:.3g}, deepest attention entropy "
          f"{entropy:.3g} log(keys), angle exponent {angle:.3g} and gradient exponent "
          f"{grad:.3g} per layer of the fit)")
  return text, tuple(failures), angle, grad
