"""The grid of an experiment, validated before any work.

:func:`empirical.sweep`, :func:`empirical.train` and
:func:`empirical.jacobian_spectra` take ``activation``, ``init``, ``width``,
``depth``, ``sigma_w2`` and ``sigma_b2`` as one value or a list (a list makes
a dimension of the result) and a PRNG key; :func:`network_grid` checks them
all (with the one-value checks of :mod:`empirical._checks`) and
:func:`check_split` a training run's :class:`DataSplit`. Everything here
raises ``ValueError`` naming the argument, its value and what is allowed.

Stores are keyed on content: an activation or an init is named in a store's
spec by :func:`activation_key` / :func:`init_key`, its registry name (exact
parameters included: ``normal(0.5)``), or for anything else a digest of
what it computes, its values at fixed float64 inputs
(:func:`fingerprint_activation`, :func:`fingerprint_init`): no bytecode, no
object identity, so a key is the same in every process and Python version,
and two callables that compute different things never share results. The
same keys make a Dataset's labels unique (:func:`unique_labels`); within one
process they also let :func:`empirical.theory` find a custom activation
again (:func:`recall_activation`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
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
  """A callable that cannot be keyed (it cannot be evaluated at float64 inputs)."""


#: Where a callable outside the registries is evaluated to key it: sinh-spaced
#: points over about [-1.1e4, 1.1e4] (dense near 0) and a fine grid on [-4, 4],
#: offset so no point is a round number.
_PROBES = np.concatenate([np.sinh(np.linspace(-10.0, 10.0, 201)),
                          np.linspace(-4.0, 4.0, 321) + 0.0123456789])
#: Values are keyed to this many significant digits of the largest value of their
#: array: each value ``v`` is written as the integer nearest ``v / scale * 10**(_DIGITS - 1)``
#: (``scale`` the largest finite ``|v|``, itself written to ``_DIGITS`` digits). Values
#: far below the scale (a slope of 1e-11 where the largest is 1, which the platform's
#: last bit decides) then round to 0 on every platform, and last-bit differences
#: between platforms and JAX versions give the same key.
_DIGITS = 10


def _text(values: Any) -> str:
  """``values`` (float64) to ``_DIGITS`` digits of their largest finite magnitude, as text."""
  v = np.asarray(values, np.float64).ravel()
  finite = np.isfinite(v)
  scale = float(np.max(np.abs(v[finite]), initial=0.0))
  unit = scale / 10 ** (_DIGITS - 1) if scale > 0 else 1.0
  q = np.where(finite, np.rint(np.where(finite, v, 0.0) / unit), 0.0)
  return f"{np.shape(values)}:{scale:.{_DIGITS - 1}e}:" + ",".join(
      ("nan" if np.isnan(x) else "inf" if x > 0 else "-inf") if not ok else f"{int(n)}"
      for x, ok, n in zip(v.tolist(), finite.tolist(), q.tolist()))


def _digest(parts: list[Any]) -> str:
  """sha256 (20 hex digits) of ``parts``: arrays by :func:`_text`, the rest by ``repr``."""
  text = "\n".join(_text(p) if isinstance(p, np.ndarray) else repr(p) for p in parts)
  return hashlib.sha256(text.encode()).hexdigest()[:20]


def _evaluate(what: str, name: str, call) -> list[np.ndarray]:
  """``call()`` (a list of arrays) under float64, or :class:`Unfingerprintable`."""
  try:
    with jax.enable_x64(True):
      return [np.asarray(v, np.float64) for v in call()]
  except Exception as e:  # noqa: BLE001 (any failure means the same to the user)
    first = str(e).splitlines()[0] if str(e) else ""
    raise Unfingerprintable(
        f"`{what}` {name!r} must give values at float64 inputs to key a store (a callable "
        f"outside the registry is keyed by its values on a fixed grid), but it raised "
        f"{type(e).__name__}: {first}; run without `store`, or make it accept float64") from None


def _activation_values(act: Activation) -> list[np.ndarray]:
  """``phi`` and its slope (autodiff, as networks differentiate it) on the probes,
  and the explicit ``phi'``, ``phi''`` where given."""
  x = jnp.asarray(_PROBES, jnp.float64)
  y, dy = jax.jvp(act.fn, (x,), (jnp.ones_like(x),))
  out = [y, dy] + [f(x) for f in (act.dfn, act.d2fn) if f is not None]
  for v in out:
    if np.shape(v) != np.shape(x):
      raise ValueError(f"maps shape {np.shape(x)} to {np.shape(v)}")
  return out


def fingerprint_activation(act: Activation) -> str:
  """A hex digest of what ``act`` computes: its name, kinks, and its values and
  slopes at fixed float64 inputs, rounded to ``_DIGITS`` digits of each array's largest value.

  The same function gives the same digest in any process, Python or JAX
  version; functions that differ somewhere on the grid differ (two that agree
  to 10 digits of the largest value at every probe share it).

  Raises:
    Unfingerprintable: a ``ValueError`` naming ``activation``, when ``act``
      cannot be evaluated at float64 inputs.
  """
  values = _evaluate("activation", act.name, lambda: _activation_values(act))
  given = [act.dfn is not None, act.d2fn is not None]
  return _digest(["activation", act.name, [float(k).hex() for k in act.kinks], given, *values])


_INIT_SHAPES = ((3, 5), (5, 3))


def _init_values(scheme: _inits.Init) -> list[np.ndarray]:
  """The standard draws of a fixed key, the scales and the unit second moments."""
  key = jax.random.key(0, impl="threefry2x32")
  sw2s = (0.5, 1.0, 2.0) if scheme.uses_sigma_w2 else (None,)
  out = []
  for shape in _INIT_SHAPES:
    out.append(jnp.asarray(scheme.standard(key, shape, jnp.float64)))
    out.append(jnp.asarray([scheme.scale_fn(s, *shape) for s in sw2s]))
    out.append(jnp.asarray([scheme.unit_second_moment(*shape)]))
  return out


def fingerprint_init(scheme: _inits.Init) -> str:
  """A hex digest of what ``scheme`` draws: its name and flag, the standard draws of
  a fixed key, its scales and unit second moments at fixed fans (float64, rounded
  as :func:`fingerprint_activation`'s values)."""
  values = _evaluate("init", scheme.name, lambda: _init_values(scheme))
  return _digest(["init", scheme.name, scheme.uses_sigma_w2, *values])


_SESSION: dict[str, Activation] = {}


def activation_key(act: Activation, *, need_content: bool) -> str:
  """The store key of an activation: its registry name, or
  ``<name>@<fingerprint_activation>``.

  An activation that cannot be evaluated at float64 inputs raises
  (``need_content=True``) or gets a key unique to this object in this
  session. Either way the activation is remembered in this process for
  :func:`recall_activation` (a Dataset of this session finds its callable
  again; a store never needs this).
  """
  if ACTIVATIONS.get(act.name) == act:
    return act.name
  try:
    key = f"{act.name}@{fingerprint_activation(act)}"
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
  ``<name>@<fingerprint_init>``."""
  try:
    ref = _inits.init(scheme.name)
  except ValueError:
    ref = None
  if (ref is not None and ref.standard is scheme.standard
      and ref.unit_second_moment is scheme.unit_second_moment
      and ref.uses_sigma_w2 == scheme.uses_sigma_w2
      and (ref.scale_fn is scheme.scale_fn or scheme.name not in _inits.INITS)):
    return scheme.name
  try:
    return f"{scheme.name}@{fingerprint_init(scheme)}"
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
