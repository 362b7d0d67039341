"""The network description on the experiment's side: :class:`meanfield.Network`.

One :class:`meanfield.Network` is one grid point: an activation, the
variances, depth, width, weight law and architecture. The experiments read
it (``network=``) and give it back (:func:`networks`):

- :func:`takes_network` lets :func:`empirical.sweep`, :func:`empirical.train`
  and :func:`empirical.jacobian_spectra` take ``network=net``: its fields
  fill the keywords of the same names (a field also given as a keyword
  raises ``ValueError``); lists of keywords stay the grid, and a variance
  field that is a 1-d array is that list (a dimension of the Dataset; more
  dimensions raise ``ValueError``: an experiment's grid is the outer
  product of 1-d axes). Its ``arch`` is the driver's ``arch`` keyword. An
  experiment needs a ``width``; a variant of the :class:`meanfield.MLP` the
  driver does not run (``alpha != 1`` anywhere; ``keep_prob < 1`` except in
  :func:`empirical.sweep`; ``residual``/``norm`` in
  :func:`empirical.jacobian_spectra`) raises ``ValueError``, from the network
  or the keyword alike. For a
  scheme that fixes the variance itself (``he_normal``, ``normal(0.01)``,
  ...), the network's ``sigma_w2`` is what that scheme gives, not a
  keyword: it is left out.
- :func:`networks` rebuilds the network of every grid point of an
  experiment's Dataset from its coordinates and attributes, so that the
  theory of exactly what was measured is ``meanfield.q_star(net)`` and
  friends (:func:`empirical.theory` reads it).

Example::

  net = meanfield.Network(activation="tanh", sigma_w2=1.5, depth=20, width=128)
  ds = empirical.sweep(key, network=net, n_seeds=16, n_inputs=8, in_features=128)
  empirical.networks(ds).item() == net       # the same description back
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import xarray as xr

from empirical import architectures
from empirical import inits as _inits
from meanfield.activations import Activation
from meanfield.network import MLP, Network, check_variants

__all__ = ["takes_network", "networks", "check_runs"]

#: Network fields every driver takes as keywords of the same names.
_FIELDS = ("activation", "init", "width", "depth", "sigma_w2", "sigma_b2")


def check_runs(fn_name: str, arch: Any, supports: tuple[str, ...], *, name: str = "arch"
               ) -> None:
  """``ValueError`` unless ``arch`` is an architecture value and, where it is a
  :class:`meanfield.MLP`, every variant field it sets is one the driver ``fn_name``
  runs (``supports``): "`arch` has alpha=0.5, which `empirical.sweep` does not run"."""
  check_variants(fn_name, arch, supports, name=name, does="does not run")


def _keywords(fn_name: str, net: Any, given: dict[str, Any], supports: tuple[str, ...],
              has_arch: bool) -> dict[str, Any]:
  """The keywords ``net`` stands for, merged with ``given`` (no field twice)."""
  if not isinstance(net, Network):
    raise ValueError(f"`network` of `{fn_name}` must be a meanfield.Network, got {net!r}")
  if net.width is None:
    raise ValueError(f"`network.width` must be a number of units for `{fn_name}` (an "
                     f"experiment has a finite width), got None")
  check_runs(fn_name, net.arch, supports, name="network")
  if not isinstance(net.arch, MLP) and not has_arch:
    raise ValueError(f"`network` has arch={net.arch!r}, which `{fn_name}` does not run")
  fields = {n: getattr(net, n) for n in _FIELDS}
  fields.update({n: _axis(fn_name, n, fields[n]) for n in ("sigma_w2", "sigma_b2")})
  if has_arch:
    fields["arch"] = net.arch.bind(net)
  matrix_init = _inits.init
  if not isinstance(net.arch, MLP):     # its mirror reads the init
    matrix_init = architectures.mirror(net.arch, fn_name).matrix_init
  if not matrix_init(net.init).uses_sigma_w2:
    if isinstance(fields["sigma_w2"], list):
      raise ValueError(f"`network.sigma_w2` must be one number for `{fn_name}` with "
                       f"init={net.init!r}, which fixes the weight variance itself; got a grid "
                       f"of {len(fields['sigma_w2'])} values")
    del fields["sigma_w2"]              # fixed by the scheme (see the module docstring)
  both = sorted(k for k in fields if k in given)
  if both:
    raise ValueError(
        f"`{fn_name}` got {', '.join(map(repr, both))} both from `network` and as "
        f"keywords; change the network with `network.replace(...)` instead")
  return {**fields, **given}


def _axis(fn_name: str, name: str, value: Any) -> Any:
  """A variance field as a driver's keyword: a number, or a 1-d array as a list (a grid dim)."""
  if not isinstance(value, np.ndarray):
    if isinstance(value, jax.Array):
      raise ValueError(f"`network.{name}` must be concrete (a number or a NumPy array) for "
                       f"`{fn_name}`, got {value!r}")
    return value
  if value.ndim != 1:
    raise ValueError(
        f"`network.{name}` must be a number or a 1-d array for `{fn_name}`, got shape "
        f"{value.shape}: an experiment's grid is the outer product of 1-d axes (each "
        f"becomes a dimension of the Dataset), so give each variance its own 1-d axis")
  return value.tolist()


def takes_network(*, supports: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
  """Let an experiment ``fn(key, **keywords)`` take ``network=`` (a :class:`meanfield.Network`).

  ``supports``: the variant fields of a :class:`meanfield.MLP` that ``fn``
  runs (``"residual"``, ``"norm"``, ``"keep_prob"``); a network whose MLP
  sets another raises ``ValueError``, as does another architecture where
  ``fn`` has no ``arch`` keyword. Where it has one, ``fn`` gets
  ``arch=net.arch.bind(net)`` (and another architecture's kernel scheme is
  read through its mirror, :mod:`empirical.architectures`).
  """
  def decorate(fn: Callable) -> Callable:
    sig = inspect.signature(fn)
    has_arch = "arch" in sig.parameters

    @functools.wraps(fn)
    def wrapper(*args, network: Network | None = None, **kwargs):
      if network is None:
        return fn(*args, **kwargs)
      return fn(*args, **_keywords(fn.__name__, network, kwargs, supports, has_arch))

    if "network" not in sig.parameters:     # drivers name it themselves, for their docs
      params = list(sig.parameters.values())
      params.insert(1, inspect.Parameter("network", inspect.Parameter.KEYWORD_ONLY,
                                         default=None))
      wrapper.__signature__ = sig.replace(parameters=params)
    return wrapper

  return decorate


def _init_of(label: str) -> _inits.Init:
  try:
    return _inits.init(label)
  except ValueError:
    raise ValueError(f"`ds` was run with the custom init {label!r}, which a Dataset cannot "
                     f"carry; rebuild its networks by hand") from None


def _network(point: dict[str, Any], acts: dict, ds: xr.Dataset) -> Network:
  scheme = _init_of(str(point["init"]))
  width = int(point["width"])
  sigma_w2 = (float(point["sigma_w2"]) if "sigma_w2" in point
              else float(scheme.sigma_w2_effective(None, width, width)))
  norm = ds.attrs.get("norm", "none")
  arch = MLP(residual=bool(ds.attrs.get("residual", 0)),
             norm=None if norm == "none" else str(norm),
             keep_prob=float(ds.attrs.get("keep_prob", 1.0)))
  return Network(activation=acts[str(point["activation"])], sigma_w2=sigma_w2,
                 sigma_b2=float(point["sigma_b2"]), depth=int(point["depth"]), width=width,
                 init=scheme, arch=arch)


def networks(ds: xr.Dataset, *, activation: Activation | Callable | str | None = None
             ) -> xr.DataArray:
  """The :class:`meanfield.Network` of each grid point of an experiment's Dataset.

  Args:
    ds: a Dataset of :func:`empirical.sweep`, :func:`empirical.train` or
      :func:`empirical.jacobian_spectra`.
    activation: the activation for every ``activation`` label (needed for a
      custom callable when ``ds`` was loaded from a file; registry names and
      callables run in this session are found by themselves).

  Returns:
    An object ``DataArray`` over the grid dims of ``ds`` among
    ``activation, init, width, depth, sigma_w2, sigma_b2`` (0-d if none is
    swept; ``.item()`` is then the network), holding Networks with
    ``arch`` the :class:`meanfield.MLP` the Dataset's attributes record
    (``residual``, ``norm``, ``keep_prob``), ``init`` the
    :class:`empirical.inits.Init` and, for schemes that fix the
    variance, ``sigma_w2`` its hidden layers' ``fan_in E[W_ij^2]``. A CNN
    sweep's (``ds.attrs["architecture"] == "conv"``) Networks have
    ``arch=meanfield.Conv(kernel_size, spatial_size=n)`` and ``init`` the
    kernel scheme (:class:`empirical.conv.ConvInit`, whose footprint the theory reads).

  Raises:
    ValueError: ``ds`` not a Dataset of those drivers (a dict, a
      :func:`empirical.diagnose` result), a custom activation or init that
      ``ds`` cannot name, an init without a weight law (``zeros``,
      ``constant``).
    NotImplementedError: a Dataset of an architecture (``ds.attrs["architecture"]``)
      whose experiment mirror (:mod:`empirical.architectures`) has no ``network`` hook.
  """
  if not isinstance(ds, xr.Dataset):
    raise ValueError(f"`ds` must be an xarray.Dataset of empirical.sweep, train or "
                     f"jacobian_spectra, got {type(ds).__name__}")
  missing = [n for n in _FIELDS if n not in ds.coords and n != "sigma_w2"]
  if missing:
    raise ValueError(
        f"`ds` must be a Dataset of empirical.sweep, train or jacobian_spectra, with the "
        f"coordinates {', '.join(_FIELDS)}; got one without {', '.join(missing)} (a "
        f"diagnose result describes a user's model, not a grid of meanfield.Networks)")
  build = _network
  if ds.attrs.get("architecture", "mlp") != "mlp":      # another architecture: its mirror
    build = architectures.dataset_mirror(ds, "empirical.networks").network
  dims = [n for n in _FIELDS if n in ds.dims]
  acts = {str(a): architectures.dataset_activation(str(a), ds, activation)
          for a in np.atleast_1d(ds["activation"].values)}
  out = np.empty([ds.sizes[n] for n in dims], dtype=object)
  for index, point in architectures.grid_points(ds, dims):
    out[index] = (_network(point, acts, ds) if build is _network
                  else build(ds, point, acts[str(point["activation"])]))
  return xr.DataArray(out, dims=dims, coords={n: ds[n].values for n in dims})
