"""The experiment side of an architecture value: one table, :data:`MIRRORS`, keyed by class.

A :class:`meanfield.network.Architecture` (``meanfield.Conv(kernel_size=3)``)
carries the theory of a network other than the fully connected MLP;
``meanfield`` knows nothing of experiments. Its experiment *mirror* is the
:class:`Mirror` registered here for its class: the hooks the drivers of
``empirical`` call for ``arch=`` (today :func:`empirical.sweep`). A driver
given an architecture with no entry, or whose mirror lacks the hook, raises
``NotImplementedError`` naming the architecture and the driver.

A new architecture plugs in with ``register(MyArch, MyMirror())``::

  class MyMirror(empirical.architectures.Mirror):
    def sweep_inputs(self, arch, inputs): ...      # the checked input array
    def sweep(self, key, arch, x, **grid): ...     # the Dataset of the grid
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import xarray as xr

from empirical import _grid
from empirical import conv as _conv
from empirical import inits as _inits
from meanfield.conv import Conv, footprint_weights
from meanfield.network import Architecture, Network

__all__ = ["Mirror", "MIRRORS", "register", "mirror", "dataset_mirror"]


class Mirror:
  """The hooks of an architecture's experiments; a hook left out raises ``NotImplementedError``.

  Attributes:
    name: the ``architecture`` attribute of the Datasets its sweeps return
      (``"conv"``), by which :func:`empirical.networks` and
      :func:`empirical.theory` find the mirror of a Dataset.
    sweep_keywords: the keywords of :func:`empirical.sweep` besides the grid's
      that its ``sweep`` reads (passed on where given; the others must keep
      their MLP defaults).
  """

  name: str = ""
  sweep_keywords: tuple[str, ...] = ()

  def _no_experiment(self, what: str, driver: str):
    raise NotImplementedError(f"`{driver}` has no experiment for {what} (its mirror "
                              f"{type(self).__name__} lacks the hook)")

  def matrix_init(self, init: Any) -> _inits.Init:
    """The matrix scheme (:class:`empirical.Init`) behind a Network's ``init``."""
    return _inits.init(init)

  def sweep_inputs(self, arch: Architecture, inputs: Any) -> jax.Array:
    """:func:`empirical.sweep`: ``inputs`` checked (``ValueError`` naming them) and as an array."""
    self._no_experiment(f"the {arch!r} architecture", "empirical.sweep")

  def sweep(self, key: jax.Array, arch: Architecture, x: jax.Array, **grid: Any) -> xr.Dataset:
    """:func:`empirical.sweep`: the Dataset of the grid ``grid`` (its keywords
    ``activation, width, depth, init, sigma_w2, sigma_b2, n_seeds, chunk_size,
    memory_budget, store, progress``) on the checked inputs ``x``."""
    self._no_experiment(f"the {arch!r} architecture", "empirical.sweep")

  def jacobian_spectra(self, key: jax.Array, arch: Architecture, **kwargs: Any) -> xr.Dataset:
    """:func:`empirical.jacobian_spectra`: the Dataset of the grid (its keywords)."""
    self._no_experiment(f"the {arch!r} architecture", "empirical.jacobian_spectra")

  def network(self, ds: xr.Dataset, point: dict[str, Any], activation: Any) -> Network:
    """:func:`empirical.networks`: the Network of one grid point ``point`` (its coordinate
    values by name) of the Dataset ``ds`` of this mirror's sweep."""
    self._no_experiment(f"{self.name!r} Datasets", "empirical.networks")

  def theory(self, ds: xr.Dataset, activation: Any) -> xr.Dataset:
    """:func:`empirical.theory`: the predictions on the coordinates of ``ds``."""
    self._no_experiment(f"{self.name!r} Datasets", "empirical.theory")


#: The experiment mirror of each architecture class (:func:`register` adds one).
MIRRORS: dict[type, Mirror] = {}


def register(arch_type: type, entry: Mirror) -> None:
  """Make ``entry`` the experiment mirror of the architecture class ``arch_type``."""
  if not (isinstance(arch_type, type) and issubclass(arch_type, Architecture)):
    raise ValueError(f"`arch_type` must be a subclass of meanfield.network.Architecture, "
                     f"got {arch_type!r}")
  if not isinstance(entry, Mirror):
    raise ValueError(f"`entry` must be an empirical.architectures.Mirror, got {entry!r}")
  MIRRORS[arch_type] = entry


def mirror(arch: Any, driver: str) -> Mirror:
  """The mirror of ``arch`` (an Architecture value) for the driver named ``driver``.

  Raises:
    ValueError: ``arch`` is not an Architecture.
    NotImplementedError: no entry for its class (nor a base class), naming both.
  """
  if not isinstance(arch, Architecture):
    raise ValueError(f"`arch` of `{driver}` must be None (the fully connected MLP) or a "
                     f"meanfield.network.Architecture such as meanfield.Conv(kernel_size=3), "
                     f"got {arch!r}")
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


class ConvMirror(Mirror):
  """:class:`meanfield.Conv`: the circular CNNs of :mod:`empirical.conv`."""

  name = "conv"

  def matrix_init(self, init: Any) -> _inits.Init:
    return _conv.kernel_init(init).init

  def sweep_inputs(self, arch: Conv, inputs: Any) -> jax.Array:
    x = _conv.check_sweep_inputs(inputs)
    if arch.spatial_size is not None and arch.spatial_size != x.shape[0]:
      raise ValueError(f"`inputs` must have arch.spatial_size = {arch.spatial_size} positions "
                       f"(shape (n, in_channels)), got shape {x.shape}")
    return x

  def sweep(self, key: jax.Array, arch: Conv, x: jax.Array, **grid: Any) -> xr.Dataset:
    if arch.footprint is not None:
      for v in _grid.values("init", grid["init"]):
        scheme = _conv.kernel_init(v)
        if not np.array_equal(arch.weights, footprint_weights(
            kernel_size=arch.kernel_size, footprint=scheme.footprint)):
          raise ValueError(f"`init` must be kernel schemes of the footprint of {arch!r} (or "
                           f"leave its footprint None), got {scheme.name!r} (footprint "
                           f"{scheme.footprint!r})")
    return _conv.run_sweep(key, x, kernel_size=arch.kernel_size, **grid)

  def jacobian_spectra(self, key: jax.Array, arch: Architecture, **kwargs: Any) -> xr.Dataset:
    """:func:`empirical.jacobian_spectra`: the Dataset of the grid (its keywords)."""
    self._no_experiment(f"the {arch!r} architecture", "empirical.jacobian_spectra")

  def network(self, ds: xr.Dataset, point: dict[str, Any], activation: Any) -> Network:
    shape = ds.attrs.get("input_shape", [ds.attrs.get("n_positions"), None])  # train's, sweep's
    if len(shape) != 2:
      raise ValueError(f"`ds` holds CNNs of {len(shape) - 1} spatial axes (input_shape "
                       f"{list(shape)}), which meanfield.Conv (one circular axis) does not "
                       f"describe")
    arch = Conv(kernel_size=int(ds.attrs["kernel_size"]), spatial_size=int(shape[0]))
    label = str(point["init"])
    try:
      scheme = _conv.kernel_init(label)
    except ValueError:
      raise ValueError(f"`ds` was run with the custom kernel scheme {label!r}, which a Dataset "
                       f"cannot carry; rebuild its networks by hand") from None
    width = int(point["width"])
    fan_in = width * (1 if scheme.delta else arch.kernel_size)    # the hidden layers' draw
    sigma_w2 = (float(point["sigma_w2"]) if "sigma_w2" in point
                else float(scheme.init.sigma_w2_effective(None, fan_in, width)))
    return Network(activation=activation, sigma_w2=sigma_w2, sigma_b2=float(point["sigma_b2"]),
                   depth=int(point["depth"]), width=width, init=scheme, arch=arch)

  def theory(self, ds: xr.Dataset, activation: Any) -> xr.Dataset:
    raise NotImplementedError(
        "`empirical.theory` has no overlay for a CNN sweep's Dataset: it keeps a digest of "
        "its input x, not x, and the CNN theory starts from Sigma^0 = x x^T / C_0; compute "
        "meanfield.propagate(net, covariance=x @ x.T / x.shape[1]) for each net of "
        "empirical.networks(ds)")


register(Conv, ConvMirror())
