"""The experiment side of an architecture value: one table, :data:`MIRRORS`, keyed by class.

A :class:`meanfield.network.Architecture` (``meanfield.Conv(kernel_size=3)``)
carries the theory of a network other than the fully connected MLP;
``meanfield`` knows nothing of experiments. Its experiment *mirror* is the
:class:`Mirror` registered here for its class: the hooks the drivers of
``empirical`` call for ``arch=`` (:func:`empirical.sweep`,
:func:`empirical.networks`, :func:`empirical.theory`). A driver given an
architecture with no entry, or whose mirror lacks the hook, raises
``NotImplementedError`` naming the architecture and the driver.

A new architecture's experiment is two hooks, registered with
``register(MyArch, MyMirror())``::

  class MyMirror(empirical.architectures.Mirror):
    name = "my_arch"                               # ds.attrs["architecture"]
    def draw(self, key, arch, *, in_features, width, depth, init, sigma_w2, sigma_b2,
             dtype): ...                           # one network's parameters (a pytree)
    def forward(self, arch, params, x, phi, shift): ...   # (L, B, N) pre-activations

- ``draw(key, arch, *, in_features, width, depth, init, sigma_w2, sigma_b2,
  dtype)``: one network's parameters, any pytree of arrays, drawn from
  ``key`` alone (the network's ``fold_in(fold_in(key, seed), WEIGHTS)``:
  split or ``fold_in`` it further with your own layer indices). ``init`` is
  the :class:`empirical.Init` of the grid point (``matrix_init``; draw a
  ``(fan_in, fan_out)`` matrix as ``init.standard(k, shape, dtype) *
  init.scale(sigma_w2, fan_in, fan_out)``); ``sigma_w2`` and ``sigma_b2``
  are 0-d arrays of ``dtype``, traced (``sigma_w2`` is None for schemes
  that fix the variance); ``in_features``, ``width``, ``depth`` are ints.
- ``forward(arch, params, x, phi, shift)``: the pre-activations ``h^1 ..
  h^L`` of that network on the inputs ``x`` ``(B, in_features)`` (float,
  the sweep's dtype), as one array ``(L, B, N)`` with ``N = width`` units
  per layer. ``phi`` is the :class:`meanfield.Activation`; ``shift``
  ``(L, B, N)`` (zeros) must be added to each ``h^l`` where it is formed,
  before it feeds the next layer: the gradients ``dL/dh^l`` are taken
  through it.
- ``sweep_inputs(arch, inputs)`` (optional): ``inputs`` checked, as an
  array; the default takes a finite floating ``(B, in_features)`` array.

The default :meth:`Mirror.sweep` runs them on the experiment engine
(:mod:`empirical._grid_sweep`: chunks, store and resume, memory plan,
progress) and returns the MLP sweep's variables where they apply: the
forward statistics of :func:`empirical.probes.layer_stats`, ``grad_h`` for
the loss ``L_a = r . phi(h^L_a)`` (``r`` a random unit vector from the
network's ``READOUT`` stream, :mod:`empirical.streams`) and
``first_nonfinite``, over the swept axes, ``seed`` and ``layer``;
``q_input``, ``c_input``; the attributes of the inputs and the
architecture (``architecture``: the mirror's ``name``; ``arch``: the
value's fields as JSON, from which :meth:`Mirror.network` rebuilds it, so
its fields must be JSON numbers, strings, booleans or None). The default
:meth:`Mirror.theory` overlays ``meanfield.propagate`` of each grid
point's Network (for an architecture whose ``inputs`` are ``q_input`` and
``c_input``). An architecture with its own measurements overrides
``sweep`` (and ``network``, ``theory``) whole, as :class:`ConvMirror` does.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

import meanfield
from empirical import _grid
from empirical import _grid_sweep
from empirical import engine
from empirical import conv as _conv
from empirical import inits as _inits
from empirical import probes as _probes
from empirical import streams
from meanfield.activations import ACTIVATIONS, Activation, activation as _activation
from meanfield.conv import Conv
from meanfield.network import Architecture, Network, check_architecture

__all__ = ["Mirror", "MIRRORS", "register", "mirror", "dataset_mirror", "grid_points",
           "dataset_activation"]

Array = jax.Array
# The sweep's per-network variables beyond layer_stats', with their dims after `seed`.
_GRADIENTS = {"grad_h": ["layer"], "first_nonfinite": []}
# A rough count of the arrays of one network's layer size held while measuring.
_ACTIVATION_COPIES = 10


class Mirror:
  """The hooks of an architecture's experiments; a hook left out raises ``NotImplementedError``.

  See the module docstring for the hooks a new architecture writes (``draw``,
  ``forward``, optionally ``sweep_inputs``) and what the defaults of
  ``sweep``, ``network`` and ``theory`` build from them.

  Attributes:
    name: the ``architecture`` attribute of the Datasets its sweeps return
      (``"conv"``), by which :func:`empirical.networks` and
      :func:`empirical.theory` find the mirror of a Dataset.
    sweep_keywords: the keywords of :func:`empirical.sweep` besides the grid's
      that its ``sweep`` reads (passed on where given; the others must keep
      their MLP defaults).
    spectra_keywords: the MLP keywords of :func:`empirical.jacobian_spectra`
      (``q``, ``method``, ``batch_size``, ``devices``) that its
      ``jacobian_spectra`` reads (passed on; the others must keep their defaults).
  """

  name: str = ""
  sweep_keywords: tuple[str, ...] = ()
  spectra_keywords: tuple[str, ...] = ()

  def _no_experiment(self, what: str, driver: str):
    raise NotImplementedError(f"`{driver}` has no experiment for {what} (its mirror "
                              f"{type(self).__name__} lacks the hook)")

  def _has(self, *hooks: str) -> bool:
    return all(getattr(type(self), h) is not getattr(Mirror, h) for h in hooks)

  def matrix_init(self, init: Any) -> _inits.Init:
    """The matrix scheme (:class:`empirical.Init`) behind a Network's ``init``."""
    return _inits.init(init)

  def draw(self, key: Array, arch: Architecture, *, in_features: int, width: int, depth: int,
           init: _inits.Init, sigma_w2: Array | None, sigma_b2: Array, dtype: Any) -> Any:
    """One network's parameters (a pytree) from its weight key ``key`` (module docstring)."""
    self._no_experiment(f"the {arch!r} architecture", "empirical.sweep")

  def forward(self, arch: Architecture, params: Any, x: Array, phi: Activation,
              shift: Array) -> Array:
    """The pre-activations ``(L, B, N)`` of ``params`` on ``x`` ``(B, in_features)``, each
    ``h^l`` plus ``shift[l - 1]`` (module docstring)."""
    self._no_experiment(f"the {arch!r} architecture", "empirical.sweep")

  def sweep_inputs(self, arch: Architecture, inputs: Any) -> jax.Array:
    """:func:`empirical.sweep`: ``inputs`` checked (``ValueError`` naming them) and as an
    array; by default a finite floating array ``(B, in_features)``, ``B, in_features >= 1``."""
    if not self._has("draw", "forward"):
      self._no_experiment(f"the {arch!r} architecture", "empirical.sweep")
    x = jnp.asarray(inputs) if inputs is not None else None
    if x is None or x.ndim != 2 or x.size == 0 or not jnp.issubdtype(x.dtype, jnp.floating):
      raise ValueError(f"`inputs` must be a floating array of shape (batch, in_features), "
                       f"both >= 1, for arch={arch!r}, got "
                       f"{None if x is None else f'{x.dtype} of shape {x.shape}'}")
    if not bool(jnp.all(jnp.isfinite(x))):
      raise ValueError(f"`inputs` must be finite for arch={arch!r}")
    return x

  def sweep(self, key: jax.Array, arch: Architecture, x: jax.Array, **grid: Any) -> xr.Dataset:
    """:func:`empirical.sweep`: the Dataset of the grid ``grid`` (its keywords
    ``activation, width, depth, init, sigma_w2, sigma_b2, n_seeds, chunk_size,
    memory_budget, store, progress``) on the checked inputs ``x``; by default
    ``draw`` and ``forward`` on the engine (module docstring)."""
    if not self._has("draw", "forward"):
      self._no_experiment(f"the {arch!r} architecture", "empirical.sweep")
    fields = _arch_fields(arch)
    g = _grid.network_grid(key=key, verb="sweep", **{k: grid[k] for k in (
        "activation", "init", "width", "depth", "n_seeds", "sigma_w2", "sigma_b2", "store")})
    batch, in_features = x.shape
    ds = _grid_sweep.run(
        key, x, g, g.inits, program=functools.partial(_program, self, arch),
        item_bytes=lambda w, d: x.dtype.itemsize * (
            _ACTIVATION_COPIES * d * batch * w + 2 * w * (in_features + d * w)),
        given=tuple(grid[k] for k in engine.SWEPT),
        spec={"architecture": self.name, "arch": fields,
              "inputs": hashlib.sha256(np.ascontiguousarray(np.asarray(x))).hexdigest()},
        variables={**{n: (["layer"], _probes.STAT_DOCS[n]) for n in _LAYER_STATS},
                   **{n: (dims, _probes.STAT_DOCS[n]) for n, dims in _GRADIENTS.items()}},
        coords={}, attrs={"architecture": self.name, "arch": fields,
                          "in_features": in_features, "n_inputs": batch,
                          "loss": "L_a = r . phi(h^L_a), r a random unit vector per network "
                                  "(empirical.architectures)"},
        chunk_size=grid["chunk_size"], memory_budget=grid["memory_budget"],
        progress=grid["progress"])
    q_in, c_in = _grid_sweep.input_statistics(x)
    ds["q_input"] = xr.Variable((), q_in, {"description": "mean |x|^2 / in_features of the inputs"})
    ds["c_input"] = xr.Variable((), c_in, {"description": "mean cosine of input pairs (2k, 2k+1)"})
    return ds

  def jacobian_spectra(self, key: jax.Array, arch: Architecture, **kwargs: Any) -> xr.Dataset:
    """:func:`empirical.jacobian_spectra`: the Dataset of the grid (its keywords)."""
    self._no_experiment(f"the {arch!r} architecture", "empirical.jacobian_spectra")

  def network(self, ds: xr.Dataset, point: dict[str, Any], activation: Any) -> Network:
    """:func:`empirical.networks`: the Network of one grid point ``point`` (its coordinate
    values by name) of the Dataset ``ds`` of this mirror's sweep; by default the
    architecture rebuilt from ``ds.attrs["arch"]`` and the MLP's fields from ``point``."""
    if not self._has("draw", "forward"):
      self._no_experiment(f"{self.name!r} Datasets", "empirical.networks")
    scheme = _scheme(self.matrix_init, point, "init")
    arch = _arch_type(self)(**json.loads(ds.attrs["arch"]))
    return _point_network(point, activation, arch, scheme, scheme, fan_in=int(point["width"]))

  def theory(self, ds: xr.Dataset, activation: Any) -> xr.Dataset:
    """:func:`empirical.theory`: the predictions on the coordinates of ``ds``; by default
    ``q``, ``c`` and ``chi_1`` of ``meanfield.propagate(net, q_input=, c_input=)`` for
    the Network ``net`` of each grid point (:meth:`network`) at the measured
    ``q_input``, ``c_input`` of ``ds``, nan beyond each network's depth."""
    if not (self._has("network") or self._has("draw", "forward")):
      self._no_experiment(f"{self.name!r} Datasets", "empirical.theory")
    return _propagated(self, ds, activation)


#: The experiment mirror of each architecture class (:func:`register` adds one).
def _scheme(lookup: Callable[[str], Any], point: dict[str, Any], what: str) -> Any:
  """The weight scheme named by a grid point's ``init`` label, or a ``ValueError`` for a
  custom one (a Dataset keeps its label only)."""
  label = str(point["init"])
  try:
    return lookup(label)
  except ValueError:
    raise ValueError(f"`ds` was run with the custom {what} {label!r}, which a Dataset cannot "
                     f"carry; rebuild its networks by hand") from None


def _point_network(point: dict[str, Any], activation: Any, arch: Architecture, scheme: Any,
                   standard: Any, *, fan_in: int) -> Network:
  """The Network of one grid point: ``sigma_w2`` its coordinate, or where a scheme fixes the
  variance itself (no ``sigma_w2`` coordinate) what ``standard`` (an ``Init``) gives a
  layer of fan-in ``fan_in`` in the theory's terms."""
  width = int(point["width"])
  sigma_w2 = (float(point["sigma_w2"]) if "sigma_w2" in point
              else float(standard.sigma_w2_effective(None, fan_in, width)))
  return Network(activation=activation, sigma_w2=sigma_w2, sigma_b2=float(point["sigma_b2"]),
                 depth=int(point["depth"]), width=width, init=scheme, arch=arch)


MIRRORS: dict[type, Mirror] = {}


def register(arch_type: type, entry: Mirror) -> None:
  """Make ``entry`` the experiment mirror of the architecture class ``arch_type``."""
  if not (isinstance(arch_type, type) and issubclass(arch_type, Architecture)):
    raise ValueError(f"`arch_type` must be a subclass of meanfield.network.Architecture, "
                     f"got {arch_type!r}")
  if not isinstance(entry, Mirror):
    raise ValueError(f"`entry` must be an empirical.architectures.Mirror, got {entry!r}")
  if not isinstance(entry.name, str) or entry.name in ("", "mlp"):
    raise ValueError(f"`entry` must have a `name` (its Datasets' architecture attribute) other "
                     f"than '' and 'mlp', got {entry.name!r}")
  MIRRORS[arch_type] = entry


def mirror(arch: Any, driver: str) -> Mirror:
  """The mirror of ``arch`` (an Architecture value other than the MLP, which the drivers run
  themselves) for the driver named ``driver``.

  Raises:
    ValueError: ``arch`` is not an Architecture.
    NotImplementedError: no entry for its class (nor a base class), naming both.
  """
  check_architecture(driver, arch)
  for cls in type(arch).__mro__:
    if cls in MIRRORS:
      return MIRRORS[cls]
  raise NotImplementedError(f"`{driver}` has no experiment for the {arch!r} architecture: "
                            f"no entry for {type(arch).__name__} in "
                            f"empirical.architectures.MIRRORS (see register)")


def dataset_mirror(ds: xr.Dataset, driver: str) -> Mirror:
  """The mirror whose sweeps write ``ds.attrs["architecture"]`` (NotImplementedError if none)."""
  name = ds.attrs.get("architecture")
  for entry in MIRRORS.values():
    if entry.name == name:
      return entry
  raise NotImplementedError(f"`{driver}` has no experiment for {name!r} Datasets: no entry "
                            f"named so in empirical.architectures.MIRRORS (see register)")


def grid_points(ds: xr.Dataset, dims: list[str]):
  """``(index, point)`` for every point of the grid dims ``dims`` of ``ds``: ``point`` maps
  each grid coordinate of ``ds`` (:data:`empirical.engine.SWEPT`) to its value there."""
  labels = {n: np.atleast_1d(ds[n].values) for n in engine.SWEPT if n in ds.coords}
  for index in itertools.product(*(range(len(labels[n])) for n in dims)):
    point = {n: v[0] for n, v in labels.items()}
    point.update({n: labels[n][i] for n, i in zip(dims, index)})
    yield index, point


def dataset_activation(label: str, ds: xr.Dataset, override: Any) -> str | Activation:
  """The activation behind a Dataset's ``activation`` label: its registry name, or
  the :class:`Activation` this session ran (or ``override``)."""
  if override is not None:
    return _grid.check_activation(_activation(override))
  key = json.loads(ds.attrs.get("activation_keys", "{}")).get(label, label)
  if key in ACTIVATIONS:
    return key
  act = _grid.recall_activation(key)
  if act is None:
    raise ValueError(
        f"`ds` was run with the custom activation {label!r}, which a Dataset cannot "
        f"carry across sessions or files: pass it again (activation=<the callable>)")
  return act


def _arch_fields(arch: Architecture) -> str:
  """The fields of a dataclass architecture as JSON (ValueError if it is not one, or a field
  is not a JSON value)."""
  try:
    if not dataclasses.is_dataclass(arch):
      raise TypeError
    return json.dumps({f.name: getattr(arch, f.name) for f in dataclasses.fields(arch)},
                      sort_keys=True)
  except TypeError:
    raise ValueError(f"`arch` must be a dataclass whose fields are JSON numbers, strings, "
                     f"booleans or None for the default sweep of its mirror (its Dataset "
                     f"records them), got {arch!r}") from None


def _arch_type(entry: Mirror) -> type:
  """The architecture class ``entry`` is registered for."""
  for cls, e in MIRRORS.items():
    if e is entry:
      return cls
  raise NotImplementedError(f"the mirror {type(entry).__name__} is not registered in "
                            f"empirical.architectures.MIRRORS (see register)")


#: The forward statistics of the default sweep (:func:`empirical.probes.layer_stats`).
_LAYER_STATS = ("q", "c", "pre_mean", "pre_var", "post_mean", "post_var", "zero", "dead",
                "saturated")


@functools.lru_cache(maxsize=32)
def _program(entry: Mirror, arch: Architecture, act: Activation, scheme: _inits.Init,
             width: int, depth: int, n_seeds: int):
  """``compute(key, x, settings, idx)`` of the default sweep (:func:`empirical._grid_sweep.run`):
  item ``i`` is setting ``i // n_seeds``, seed ``i % n_seeds``, network key
  ``k = fold_in(key, seed)``, parameters from ``fold_in(k, WEIGHTS)``, readout from
  ``fold_in(k, READOUT)``. Cached per static configuration: one compile each."""

  @jax.jit
  def compute(key, x, settings, idx):
    def one(i):
      k = jax.random.fold_in(key, i % n_seeds)
      sigma_w2, sigma_b2 = settings[i // n_seeds, 0], settings[i // n_seeds, 1]
      params = entry.draw(jax.random.fold_in(k, streams.WEIGHTS), arch,
                          in_features=x.shape[1], width=width, depth=depth, init=scheme,
                          sigma_w2=sigma_w2 if scheme.uses_sigma_w2 else None,
                          sigma_b2=sigma_b2, dtype=x.dtype)
      r = _probes.readout(jax.random.fold_in(k, streams.READOUT), width, x.dtype)
      return _measure(entry, arch, params, x, act, r, depth, width)

    return jax.vmap(one)(idx)

  return compute


def _measure(entry, arch, params, x, act, r, depth, width) -> dict[str, Array]:
  """One network's statistics: ``layer_stats`` of ``forward``'s ``(L, B, N)``, ``grad_h``
  ``sqrt(mean_a |dL_a/dh^l_a|^2)`` ``(L,)`` and ``first_nonfinite`` (0-d int32)."""
  def loss(shift):
    hs = entry.forward(arch, params, x, act, shift)
    if hs.shape != shift.shape:
      raise ValueError(f"`forward` of {type(entry).__name__} must return (depth, batch, "
                       f"width) = {shift.shape}, got {hs.shape}")
    return jnp.sum(act.fn(hs[-1]) @ r), hs

  shift = jnp.zeros((depth, x.shape[0], width), x.dtype)
  delta, hs = jax.grad(loss, has_aux=True)(shift)
  stats = _probes.layer_stats(hs, act)
  grad_h = _probes.scaled_norm(delta, axis=(-2, -1)) / math.sqrt(x.shape[0])
  bad = ~jnp.isfinite(stats["q"])
  first = jnp.where(jnp.any(bad), jnp.argmax(bad) + 1, 0).astype(jnp.int32)
  return {**stats, "grad_h": grad_h.astype(x.dtype), "first_nonfinite": first}


def _propagated(entry: Mirror, ds: xr.Dataset, activation: Any) -> xr.Dataset:
  """The default overlay (:meth:`Mirror.theory`)."""
  dims = [n for n in engine.SWEPT if n in ds.dims]
  layers = ds.layer.values
  q_in, c_in = float(ds.q_input), float(ds.c_input)
  given = {"q_input": q_in, "c_input": 0.0 if np.isnan(c_in) else min(1.0, max(-1.0, c_in))}
  out = {n: np.full([ds.sizes[d] for d in dims] + [len(layers)], np.nan)
         for n in ("q", "c", "chi_1")}
  acts = {}
  for index, point in grid_points(ds, dims):
    label = str(point["activation"])
    acts.setdefault(label, dataset_activation(label, ds, activation))
    net = entry.network(ds, point, acts[label])
    missing = set(net.arch.inputs) - set(given)
    if missing:
      raise NotImplementedError(
          f"`empirical.theory` has no default overlay for {net.arch!r}: its theory reads "
          f"{', '.join(sorted(missing))}, which a sweep's Dataset does not hold (override "
          f"{type(entry).__name__}.theory)")
    with jax.enable_x64(True):
      prop = meanfield.propagate(net, **{k: given[k] for k in net.arch.inputs})
    for n in out:
      out[n][index + (slice(0, net.depth),)] = np.asarray(getattr(prop, n), np.float64)
  if np.isnan(c_in):
    out["c"][...] = np.nan
  th = xr.Dataset({n: xr.DataArray(v, dims=dims + ["layer"]) for n, v in out.items()})
  th = th.assign_coords({k: c for k, c in ds.coords.items() if k != "seed"})
  th["q_input"], th["c_input"] = ds.q_input, ds.c_input
  th.attrs = {"source": f"meanfield.propagate(net) for each grid point's Network "
                        f"(empirical.architectures.Mirror.theory)", **ds.attrs}
  return th


class ConvMirror(Mirror):
  """:class:`meanfield.Conv`: the circular CNNs of :mod:`empirical.conv`."""

  name = "conv"
  spectra_keywords = ("q",)

  def matrix_init(self, init: Any) -> _inits.Init:
    return _conv.kernel_init(init).init

  def sweep_inputs(self, arch: Conv, inputs: Any) -> jax.Array:
    x = _conv.check_sweep_inputs(inputs)
    if arch.spatial_size is not None and arch.spatial_size != x.shape[0]:
      raise ValueError(f"`inputs` must have arch.spatial_size = {arch.spatial_size} positions "
                       f"(shape (n, in_channels)), got shape {x.shape}")
    return x

  def sweep(self, key: jax.Array, arch: Conv, x: jax.Array, **grid: Any) -> xr.Dataset:
    _conv.check_footprint(arch, grid["init"])
    return _conv.run_sweep(key, x, kernel_size=arch.kernel_size, **grid)

  def jacobian_spectra(self, key: jax.Array, arch: Conv, *, q=None, q_input=None, warmup=None,
                       **grid: Any) -> xr.Dataset:
    """:func:`empirical.jacobian_spectra`: :func:`empirical.conv.run_jacobian_spectra`.

    Of ``arch``'s kernel size and ``spatial_size`` (required), at input length ``q``.
    """
    for name, value in (("q_input", q_input), ("warmup", warmup)):
      if value is not None:
        raise ValueError(f"`{name}` must be None for arch={arch!r} (it is the RNN's), got "
                         f"{value!r}")
    if arch.spatial_size is None:
      raise ValueError(f"`arch` must give spatial_size (the positions n of the n C square "
                       f"Jacobian) for empirical.jacobian_spectra, got {arch!r}")
    _conv.check_footprint(arch, grid["init"])
    return _conv.run_jacobian_spectra(key, kernel_size=arch.kernel_size,
                                      spatial_size=arch.spatial_size, q=q, **grid)

  def network(self, ds: xr.Dataset, point: dict[str, Any], activation: Any) -> Network:
    shape = ds.attrs.get("input_shape", [ds.attrs.get("n_positions"), None])  # train's, sweep's
    if len(shape) != 2:
      raise ValueError(f"`ds` holds CNNs of {len(shape) - 1} spatial axes (input_shape "
                       f"{list(shape)}), which meanfield.Conv (one circular axis) does not "
                       f"describe")
    arch = Conv(kernel_size=int(ds.attrs["kernel_size"]), spatial_size=int(shape[0]))
    scheme = _scheme(_conv.kernel_init, point, "kernel scheme")
    fan_in = int(point["width"]) * (1 if scheme.delta else arch.kernel_size)  # hidden layers'
    return _point_network(point, activation, arch, scheme, scheme.init, fan_in=fan_in)

  def theory(self, ds: xr.Dataset, activation: Any) -> xr.Dataset:
    raise NotImplementedError(
        "`empirical.theory` has no overlay for a CNN sweep's Dataset: it keeps a digest of "
        "its input x, not x, and the CNN theory starts from Sigma^0 = x x^T / C_0; compute "
        "meanfield.propagate(net, covariance=x @ x.T / x.shape[1]) for each net of "
        "empirical.networks(ds)")


register(Conv, ConvMirror())
