"""The grid of an experiment, validated before any work.

:func:`empirical.sweep`, :func:`empirical.train` and
:func:`empirical.jacobian_spectra` take ``activation``, ``init``, ``width``,
``depth``, ``sigma_w2`` and ``sigma_b2`` as one value or a list (a list makes
a dimension of the result) and a PRNG key; :func:`network_grid` checks them
all (with the one-value checks of :mod:`empirical._checks`) and
:func:`check_split` a training run's :class:`DataSplit`. Everything here
raises ``ValueError`` naming the argument, its value and what is allowed.

Stores are keyed on content: an activation or an init is named in a store's
spec by :func:`activation_key` / :func:`init_key`, its registry name, or for
anything else a fingerprint of its code and of the values it closes over, so
two different callables (or ``normal(0.5)`` and ``normal(0.5000001)``) never
share results. The same keys make a Dataset's labels unique
(:func:`unique_labels`) and let :func:`empirical.theory` find a custom
activation again (:func:`recall_activation`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import types
import uuid
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from empirical import _checks
from empirical import inits as _inits
from empirical import models as _models
from meanfield.activations import ACTIVATIONS, Activation, activation as _activation


def is_list(value: Any) -> bool:
  """Whether ``value`` is a list of grid values (a sequence or a 1-D array)."""
  return isinstance(value, list | tuple | range) or (
      isinstance(value, np.ndarray | jax.Array) and np.ndim(value) == 1)


def values(name: str, value: Any) -> list:
  """``value`` as a non-empty list of grid values (a scalar becomes ``[value]``)."""
  if is_list(value):
    out = list(value.tolist() if isinstance(value, np.ndarray | jax.Array) else value)
    if not out:
      raise ValueError(f"`{name}` must be a value or a non-empty list, got {value!r}")
    return out
  if isinstance(value, np.ndarray | jax.Array):
    if np.ndim(value) != 0:
      raise ValueError(f"`{name}` must be a value or a 1-D list, got shape {np.shape(value)}")
    value = value.item()
  return [value]


def key_data(key: Any) -> list[int]:
  """The words of a PRNG key (new-style or raw ``uint32``), for provenance and stores."""
  key = _checks.check_key(key)
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)
  return np.asarray(key).ravel().tolist()


# --- activations and inits: validated, keyed on content, labelled --------------


def check_activation(act: Activation) -> Activation:
  """``act`` if its ``fn`` traces and is elementwise (output shape = input shape).

  The check is meanfield's (:func:`meanfield.activation` checks every
  activation outside its table once): a callable that needs concrete values
  (``math.tanh``) or reduces (``jnp.sum``) is refused here rather than deep
  inside a compiled program.
  """
  return _activation(act)


class Unfingerprintable(ValueError):
  """A callable whose content cannot be keyed (it closes over arrays or objects)."""


_PLAIN = (bool, int, float, complex, str, bytes, type(None))


def _content(obj: Any, what: str, seen: frozenset[int]) -> Any:
  """A nested tuple of plain values that identifies ``obj`` by content."""
  if isinstance(obj, float):
    return ("float", obj.hex())
  if isinstance(obj, _PLAIN):
    return (type(obj).__name__, obj)
  if isinstance(obj, np.floating | np.integer | np.bool_):
    return ("np", obj.dtype.str, obj.item())
  if isinstance(obj, tuple | list | frozenset | set):
    items = sorted(obj, key=repr) if isinstance(obj, frozenset | set) else obj
    return (type(obj).__name__, tuple(_content(v, what, seen) for v in items))
  if isinstance(obj, dict):
    return ("dict", tuple((repr(k), _content(v, what, seen)) for k, v in sorted(
        obj.items(), key=lambda kv: repr(kv[0]))))
  if isinstance(obj, types.ModuleType):
    return ("module", obj.__name__)
  if isinstance(obj, np.dtype):
    return ("dtype", obj.str)
  if isinstance(obj, type):
    return ("type", obj.__module__, obj.__qualname__)
  if isinstance(obj, types.CodeType):
    return ("code", obj.co_code, obj.co_names, obj.co_varnames, obj.co_freevars,
            tuple(_content(c, what, seen) for c in obj.co_consts))
  if id(obj) in seen:
    return ("cycle", getattr(obj, "__qualname__", type(obj).__name__))
  seen = seen | {id(obj)}
  if isinstance(obj, Activation):
    return ("Activation", obj.name, obj.kinks, _content(obj.fn, what, seen),
            _content(obj.dfn, what, seen), _content(obj.d2fn, what, seen))
  if isinstance(obj, functools.partial):
    return ("partial", _content(obj.func, what, seen), _content(obj.args, what, seen),
            _content(obj.keywords, what, seen))
  if isinstance(obj, types.MethodType):
    return ("method", _content(obj.__func__, what, seen), _content(obj.__self__, what, seen))
  if isinstance(obj, types.FunctionType):
    cells = tuple(_content(c.cell_contents, what, seen) for c in obj.__closure__ or ())
    names = _code_names(obj.__code__)
    glob = tuple((n, _content(obj.__globals__[n], what, seen))
                 for n in sorted(names) if n in obj.__globals__)
    return ("function", _content(obj.__code__, what, seen),
            _content(obj.__defaults__, what, seen), _content(obj.__kwdefaults__, what, seen),
            cells, glob)
  # Other callables (builtins, jitted or custom_jvp library functions, ufuncs):
  # by their import path, when it leads back to the very same object.
  module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
  if isinstance(module, str) and isinstance(qualname, str):
    target = _import_path(module, qualname)
    if target is obj:
      return ("ref", module, qualname)
  raise Unfingerprintable(
      f"`{what}` must be keyed by content to use `store`, but it refers to {obj!r} of type "
      f"{type(obj).__name__}, which cannot be fingerprinted (only numbers, strings, "
      f"tuples, modules and functions can; arrays and other objects cannot); run without "
      f"`store`, or pass the values as Python numbers")


def _code_names(code: types.CodeType) -> set[str]:
  names = set(code.co_names)
  for c in code.co_consts:
    if isinstance(c, types.CodeType):
      names |= _code_names(c)
  return names


def _import_path(module: str, qualname: str) -> Any:
  import importlib  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  obj = sys.modules.get(module)
  if obj is None:
    try:
      obj = importlib.import_module(module)
    except ImportError:
      return None
  for part in qualname.split("."):
    obj = getattr(obj, part, None)
  return obj


def fingerprint(obj: Any, what: str) -> str:
  """A hex digest of ``obj``'s content (code, constants, closure, defaults).

  Raises:
    Unfingerprintable: a ``ValueError`` naming ``what``, when ``obj`` closes
      over something without a content key (an array, an arbitrary object).
  """
  text = repr(_content(obj, what, frozenset()))
  return hashlib.sha256(text.encode()).hexdigest()[:20]


_SESSION: dict[str, Activation] = {}


def activation_key(act: Activation, *, need_content: bool) -> str:
  """The store key of an activation: its registry name, or ``<name>@<fingerprint>``.

  A callable that cannot be fingerprinted raises (``need_content=True``) or
  gets a key unique to this object in this session. Either way the
  activation is remembered for :func:`recall_activation`.
  """
  if ACTIVATIONS.get(act.name) == act:
    return act.name
  try:
    key = f"{act.name}@{fingerprint(act, 'activation')}"
  except Unfingerprintable:
    if need_content:
      raise
    key = f"{act.name}@session-{uuid.uuid4().hex[:20]}"
  _SESSION.setdefault(key, act)
  return key


def recall_activation(key: str) -> Activation | None:
  """The activation of ``key`` (a registry name, or one this session has keyed)."""
  if key in ACTIVATIONS:
    return ACTIVATIONS[key]
  return _SESSION.get(key)


def init_key(scheme: _inits.Init, *, need_content: bool) -> str:
  """The store key of an init: its name when that rebuilds it (registry and
  parametrised schemes, whose names carry their exact values), else
  ``<name>@<fingerprint>`` of its functions."""
  try:
    ref = _inits.init(scheme.name)
  except ValueError:
    ref = None
  if (ref is not None and ref.standard is scheme.standard
      and ref.unit_second_moment is scheme.unit_second_moment
      and ref.uses_sigma_w2 == scheme.uses_sigma_w2
      and (ref.scale_fn is scheme.scale_fn or scheme.name not in _inits.INITS)):
    return scheme.name
  parts = (scheme.name, scheme.uses_sigma_w2, scheme.standard, scheme.scale_fn,
           scheme.unit_second_moment)
  try:
    return f"{scheme.name}@{fingerprint(parts, 'init')}"
  except Unfingerprintable:
    if need_content:
      raise
    return f"{scheme.name}@session-{uuid.uuid4().hex[:20]}"


def unique_labels(names: list[str], keys: list[str]) -> list[str]:
  """Coordinate labels: the names, with ``#2``, ``#3``, ... added where one name
  stands for different keys (the first keeps the plain name)."""
  seen: dict[str, list[str]] = {}
  labels = []
  for name, key in zip(names, keys):
    distinct = seen.setdefault(name, [])
    if key not in distinct:
      distinct.append(key)
    j = distinct.index(key)
    labels.append(name if j == 0 else f"{name}#{j + 1}")
  return labels


@dataclasses.dataclass(frozen=True)
class Schemes:
  """Validated activations and inits with their store keys and labels."""

  activations: list[Activation]
  activation_keys: list[str]
  activation_labels: list[str]
  inits: list[_inits.Init]
  init_keys: list[str]
  init_labels: list[str]

  def keys_attr(self) -> str:
    """JSON ``{label: key}`` of the activations, for a Dataset's attributes."""
    return json.dumps(dict(zip(self.activation_labels, self.activation_keys)), sort_keys=True)


def schemes(activation: Any, init: Any, *, store: str | None) -> Schemes:
  """Validate ``activation`` and ``init`` (values or lists) and key them."""
  acts = [check_activation(_activation(a)) for a in values("activation", activation)]
  inits = [_inits.init(s) for s in values("init", init)]
  need = store is not None
  a_keys = [activation_key(a, need_content=need) for a in acts]
  i_keys = [init_key(s, need_content=need) for s in inits]
  return Schemes(acts, a_keys, unique_labels([a.name for a in acts], a_keys),
                 inits, i_keys, unique_labels([s.name for s in inits], i_keys))


@dataclasses.dataclass(frozen=True)
class NetworkGrid:
  """The validated grid of an experiment (:func:`empirical.sweep`,
  :func:`empirical.train`, :func:`empirical.jacobian_spectra`).

  Attributes:
    key_data: the key's words.
    activations, inits, widths, depths: the values along each axis.
    n_seeds: networks per grid point.
    sigma_w2: weight variances, or ``[None]`` for schemes that fix it (He,
      LeCun, ...).
    sigma_b2: bias variances.
    schemes: the activations' and inits' store keys and labels.
    store: the store directory, or None.
  """

  key_data: list[int]
  activations: list[Activation]
  inits: list[_inits.Init]
  widths: list[int]
  depths: list[int]
  n_seeds: int
  sigma_w2: list[float | None]
  sigma_b2: list[float]
  schemes: Schemes
  store: str | None

  def axes(self) -> dict[str, list]:
    """The coordinate values of each axis of ``empirical.engine.SWEPT``, in its order."""
    return {"activation": self.schemes.activation_labels, "init": self.schemes.init_labels,
            "width": self.widths, "depth": self.depths, "sigma_w2": self.sigma_w2,
            "sigma_b2": self.sigma_b2}


_BY_VARIANCE = "gaussian, uniform, truncated_normal, orthogonal"


def _weight_variances(sigma_w2, inits: list[_inits.Init], *, verb: str,
                      by_variance_only: bool) -> list[float | None]:
  """The ``sigma_w2`` axis: variances for schemes by variance, ``[None]`` for presets."""
  uses = {s.uses_sigma_w2 for s in inits}
  if by_variance_only and uses != {True}:
    raise ValueError(f"`init` must be schemes by variance ({_BY_VARIANCE}), got "
                     f"{[s.name for s in inits]}")
  if len(uses) > 1:
    raise ValueError(
        f"`init` must not mix schemes by variance and schemes that fix it, got "
        f"{[s.name for s in inits]}; {verb} them separately")
  if uses == {True}:
    if sigma_w2 is None:
      raise ValueError(f"`sigma_w2` must be given for init {[s.name for s in inits]}, got None")
    if by_variance_only:      # a spectrum at sigma_w2 = 0 has no singular values to speak of
      return [_checks.check_number("sigma_w2", v, minimum=0, strict=True)
              for v in values("sigma_w2", sigma_w2)]
    return _checks.check_variances("sigma_w2", values("sigma_w2", sigma_w2))
  if sigma_w2 is not None:
    inits[0].check_sigma_w2(sigma_w2)   # raises, naming the scheme
  return [None]


def network_grid(*, key, activation, init, width, depth, n_seeds, sigma_w2, sigma_b2,
                 residual=False, norm=None, verb: str, store=None,
                 by_variance_only: bool = False) -> NetworkGrid:
  """Validate the grid arguments of an experiment.

  ``verb`` names the caller's action in the message for mixed schemes
  (``"sweep"``, ``"train"``). ``by_variance_only``: the schemes must take
  ``sigma_w2`` and it must be ``> 0`` (Jacobian spectra).
  """
  kd = key_data(key)
  store = _checks.check_store(store)
  sch = schemes(activation, init, store=store)
  widths = [_checks.check_int("width", w, 1) for w in values("width", width)]
  depths = [_checks.check_int("depth", d, 1) for d in values("depth", depth)]
  n_seeds = _checks.check_int("n_seeds", n_seeds, 1)
  _models.check_architecture(norm=norm)
  if not isinstance(residual, bool):
    raise ValueError(f"`residual` must be True or False, got {residual!r}")
  sw2s = _weight_variances(sigma_w2, sch.inits, verb=verb, by_variance_only=by_variance_only)
  sb2s = _checks.check_variances("sigma_b2", values("sigma_b2", sigma_b2))
  return NetworkGrid(key_data=kd, activations=sch.activations, inits=sch.inits,
                     widths=widths, depths=depths, n_seeds=n_seeds, sigma_w2=sw2s,
                     sigma_b2=sb2s, schemes=sch, store=store)


def check_split(split: Any) -> None:
  """Raise unless ``split`` is a consistent :class:`empirical.data.DataSplit`.

  Checks, naming the field, its value and what is allowed: ``n_classes`` an
  integer >= 1; each ``x`` a floating array ``(n, *input_shape)`` of finite
  values with ``n >= 1`` and the same ``input_shape`` in both parts; each
  ``y`` an integer array ``(n,)`` with labels in ``[0, n_classes)``.
  """
  n_classes = split.n_classes
  if not isinstance(n_classes, int | np.integer) or isinstance(n_classes, bool) or n_classes < 1:
    raise ValueError(f"`data.n_classes` must be an integer >= 1, got {n_classes!r}")
  shapes = {}
  for part in ("train", "test"):
    x, y = getattr(split, f"x_{part}"), getattr(split, f"y_{part}")
    x_shape, y_shape = np.shape(x), np.shape(y)
    x_dtype, y_dtype = np.asarray(x).dtype, np.asarray(y).dtype
    if len(x_shape) < 2 or x_shape[0] < 1:
      raise ValueError(f"`data.x_{part}` must have shape (n, *input_shape) with n >= 1, got "
                       f"shape {x_shape}")
    if not jnp.issubdtype(x_dtype, jnp.floating):
      raise ValueError(f"`data.x_{part}` must be floating, got dtype {x_dtype}")
    if len(y_shape) != 1 or y_shape[0] != x_shape[0]:
      raise ValueError(f"`data.y_{part}` must have shape (n,) = ({x_shape[0]},) to match "
                       f"`data.x_{part}` {x_shape}, got shape {y_shape}")
    if not jnp.issubdtype(y_dtype, jnp.integer):
      raise ValueError(f"`data.y_{part}` must hold integer labels, got dtype {y_dtype}")
    yv = np.asarray(y)
    bad = (yv < 0) | (yv >= n_classes)
    if np.any(bad):
      raise ValueError(f"`data.y_{part}` must hold labels in [0, n_classes) = [0, {n_classes}), "
                       f"got {yv[bad][0]} (at index {int(np.argmax(bad))})")
    xv = np.asarray(x)
    if not np.all(np.isfinite(xv)):
      i = int(np.argmax(~np.isfinite(xv).reshape(x_shape[0], -1).all(axis=1)))
      raise ValueError(f"`data.x_{part}` must be finite, got nan or inf in example {i}")
    shapes[part] = x_shape[1:]
  if shapes["train"] != shapes["test"]:
    raise ValueError(f"`data.x_test` must have the input shape of `data.x_train` "
                     f"{shapes['train']}, got {shapes['test']}")
