"""The network description: one frozen dataclass that theory and experiment both read.

A :class:`Network` is one network, or a grid of them: one activation, the
variances (numbers, or arrays that broadcast into a grid), one depth, width
and weight law, and the architecture, a value: the fully connected MLP with its
variant (``arch=meanfield.MLP(residual=True)``, the default ``MLP()`` the plain one)
or another architecture (``arch=meanfield.Conv(kernel_size=3)``).
The theory functions of :mod:`meanfield` take it as their first argument and
read the fields they need; ``empirical`` samples and runs it, and ``empirical.theory(ds)``
rebuilds it from a Dataset's coordinates. Grids stay keyword lists for
users; a ``Network`` is what one grid point is::

  net = meanfield.Network(activation="tanh", sigma_w2=1.5, sigma_b2=0.05, depth=30)
  meanfield.q_star(net)                       # the theory of that network
  meanfield.jacobian_spectrum(net)            # reads depth and init too
  meanfield.q_star(net.replace(sigma_w2=2.0))
  grid = net.replace(sigma_w2=np.linspace(0.5, 3, 50)[:, None], sigma_b2=np.array([0.0, 0.05]))
  meanfield.fixed_point(grid)                 # on the (50, 2) grid, as the keyword call
  jax.grad(meanfield.q_star)(net)             # a Network of d q* / d sigma_w2, d sigma_b2

A grid ``Network`` answers bitwise as the keyword call with the same arrays.
``Network`` is a JAX pytree: ``sigma_w2`` and ``sigma_b2`` are its leaves
and every other field is static, so it passes through ``jit``, ``vmap`` and
``grad`` (inside them the leaves are tracers and are not checked; a
Network rebuilt from leaves, a gradient say, is not checked either).
Networks are equal, and hash alike, when every field is equal, arrays by
shape and value.

Fields (names as in docs/theory.md, "Names in code", and as ``empirical``'s keywords):

- ``activation``: a registry name, an ``Activation`` or an elementwise
  ``jax.numpy`` callable.
- ``sigma_w2``, ``sigma_b2``: weight and bias variances, in the theory's
  parametrisation ``W_ij ~ (sigma_w2 / fan_in)^{1/2} * standard``; each a
  number (stored as a Python float) or an array (checked elementwise,
  stored as a NumPy array of its dtype). An experiment takes a 1-d array as
  one axis of its grid (``empirical.description``).
- ``depth``: number of layers ``L >= 1``.
- ``width``: units per layer ``N``; ``None`` is the infinite-width limit of
  mean-field theory (experiments need a number; mean-field functions ignore
  it; finite-width corrections read it).
- ``init``: the weight law. ``"gaussian"`` (i.i.d. entries; at infinite
  width every i.i.d. zero-mean law of the same variance has the same theory)
  or ``"orthogonal"`` (Haar, scaled by ``sqrt(sigma_w2)``); or any object
  with a ``law`` attribute equal to one of them (``empirical``'s schemes:
  ``"he_normal"`` is i.i.d., so its law is ``"gaussian"``). A scheme with a
  ``footprint`` attribute (``empirical``'s kernel schemes) also gives the
  footprint of a ``Conv`` architecture that leaves its own unset.
- ``arch``: the architecture, an :class:`Architecture` value: :class:`MLP`
  (the default, ``MLP()``: the fully connected MLP, with its variant fields
  ``residual``, ``alpha``, ``norm`` and ``keep_prob``), or another such as
  :class:`meanfield.Conv`. In a Network the MLP's ``alpha`` and
  ``keep_prob`` are one concrete number each (stored as Python floats; a
  Network's grid is in its variances). The generic functions
  :func:`meanfield.propagate`, :func:`meanfield.fixed_point`,
  :func:`meanfield.depth_scales` and :func:`meanfield.phase_diagram` take it
  (or the keyword ``arch``) and call another architecture's hooks; the
  other functions are the MLP's theory and raise for another architecture.

A theory function that does not cover a variant or an architecture (the
plain-MLP fixed points of a residual network, say) raises ``ValueError``
naming the field rather than answering for a different network.

A new architecture plugs in by subclassing :class:`Architecture` (its
hooks are the protocol; a hook it does not override raises
``NotImplementedError`` naming the function and the architecture); nothing
in the generic functions names a particular architecture.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from meanfield import _checks
from meanfield.activations import Activation, activation as _activation

__all__ = ["Network", "Architecture", "MLP", "WEIGHT_LAWS", "NORMS", "weight_law",
           "accepts_network", "check_architecture", "check_variants", "architecture_inputs",
           "stationary_inputs"]

WEIGHT_LAWS = ("gaussian", "orthogonal")
NORMS = (None, "layer", "batch")

# Fields that describe a variant of the plain MLP, with their plain values.
_VARIANTS = {"residual": False, "alpha": 1.0, "norm": None, "keep_prob": 1.0}


def weight_law(init: Any) -> str:
  """The theory's weight law of ``init``: ``"gaussian"`` or ``"orthogonal"``.

  Args:
    init: ``"gaussian"``, ``"orthogonal"``, or an object with a ``law``
      attribute holding one of them (an ``empirical.inits.Init``).

  Raises:
    ValueError: anything else, naming the allowed values.
  """
  law = getattr(init, "law", init)
  if isinstance(law, str) and law in WEIGHT_LAWS:
    return law
  raise ValueError(
      f"`init` must be one of {', '.join(map(repr, WEIGHT_LAWS))} (the weight law the "
      f"theory reads), or a scheme whose `law` is one of them, got {init!r}"
      + (f" with law {law!r}" if law is not init else ""))


class Architecture:
  """An architecture value: the hooks the generic functions call for it.

  Subclass it (a frozen dataclass of the architecture's own sizes, so the
  value is hashable and compares by value) and override the hooks its
  theory has (:class:`MLP`, the fully connected MLP, has none: the generic
  functions run its theory themselves). Each receives the resolved
  :class:`Activation` ``act`` and the checked (array) variances, broadcast as
  the generic function documents;
  the generic function has already validated its own arguments. A hook
  left out raises ``NotImplementedError`` naming the function and the
  architecture.

  Attributes:
    inputs: the input keywords of :func:`meanfield.propagate` this
      architecture reads (the MLP's are ``("q_input", "c_input")``); each is
      required, and any other input keyword raises ``ValueError``.
    stationary_inputs: the input keywords that :func:`meanfield.fixed_point`,
      :func:`meanfield.depth_scales` and :func:`meanfield.jacobian_moments`
      pass on to its hooks where given (a network driven by its input at every
      step, as the RNN, has a stationary state that depends on it; the hooks
      give their defaults); none for the MLP and the CNN.
  """

  inputs: tuple[str, ...] = ()
  stationary_inputs: tuple[str, ...] = ()

  def _no_theory(self, fn: str):
    raise NotImplementedError(f"`{fn}` has no theory for the {self!r} architecture")

  def bind(self, network: Network) -> Architecture:
    """The architecture as a ``Network``'s theory reads it (default: itself); lets a
    field left unset be filled from the network's other fields."""
    return self

  def propagate(self, act: Activation, depth: int, sigma_w2: Any, sigma_b2: Any, **inputs):
    """:func:`meanfield.propagate`: a ``Propagation`` through ``depth`` layers from ``inputs``."""
    self._no_theory("propagate")

  def fixed_point(self, act: Activation, sigma_w2: Any, sigma_b2: Any, **inputs):
    """:func:`meanfield.fixed_point`: a ``FixedPoint`` (``inputs``: the given
    :attr:`stationary_inputs`)."""
    self._no_theory("fixed_point")

  def depth_scales(self, act: Activation, sigma_w2: Any, sigma_b2: Any, **inputs):
    """:func:`meanfield.depth_scales`: a ``DepthScales``."""
    self._no_theory("depth_scales")

  def jacobian_moments(self, act: Activation, init: Any, sigma_w2: Any, sigma_b2: Any,
                       depth: Any, q: Any, **inputs):
    """:func:`meanfield.jacobian_moments`: a ``JacobianMoments`` of the Jacobian over
    ``depth`` layers (or steps), at the length ``q`` (None: the architecture's own)."""
    self._no_theory("jacobian_moments")

  def phase_diagram(self, ds: Any):
    """:func:`meanfield.phase_diagram`: the MLP's Dataset ``ds``, extended."""
    self._no_theory("phase_diagram")


def _differs(value: Any, plain: Any) -> bool:
  """Whether a keyword is not (concretely) its plain value ``plain`` (None, a bool or a number)."""
  if plain is None or isinstance(plain, bool):
    return value is not plain and not (isinstance(value, np.bool_) and value == plain)
  a = _checks.concrete(value)
  return a is None or a.ndim != 0 or a.dtype.kind not in "iuf" or bool(a != plain)


def _same(a: Any, b: Any) -> bool:
  """Field equality: arrays by shape and value, tracers by identity, the rest with ``==``."""
  arrays = [isinstance(x, (np.ndarray, jax.Array)) for x in (a, b)]
  if not any(arrays):
    return bool(a == b)
  if not all(arrays):
    return False
  x, y = _checks.concrete(a), _checks.concrete(b)
  if x is None or y is None:
    return a is b
  return x.shape == y.shape and bool(np.all(x == y))


def _field_hash(value: Any) -> Any:
  """A field's part of a hash: arrays (and tracers) by shape, the rest as themselves."""
  return ("array", np.shape(value)) if isinstance(value, (np.ndarray, jax.Array)) else value


class _ByValue:
  """Equality and hash of a frozen dataclass by its fields' values (arrays by shape and value)."""

  def __eq__(self, other: Any) -> bool:
    if other.__class__ is not self.__class__:
      return NotImplemented
    return all(_same(getattr(self, f.name), getattr(other, f.name))
               for f in dataclasses.fields(self))

  def __hash__(self) -> int:
    return hash(tuple(_field_hash(getattr(self, f.name)) for f in dataclasses.fields(self)))


def _parameter(name: str, value: Any, ok, allowed: str) -> Any:
  """``alpha`` or ``keep_prob`` of an :class:`MLP` checked: a number or array elementwise (a
  list becomes a NumPy array), a tracer unchecked and unchanged; ValueError else (also for
  what is not real numbers: None, a string, a bool)."""
  try:
    _checks.check(name, value, ok, allowed)
  except TypeError as e:
    raise ValueError(str(e)) from None
  return np.asarray(value) if isinstance(value, (list, tuple)) else value


@dataclasses.dataclass(frozen=True, eq=False)
class MLP(_ByValue, Architecture):
  """The fully connected MLP, plain or a variant: the default architecture of :class:`Network`.

  Layer ``l >= 2`` is ``h^l = s h^{l-1} + alpha (W^l (m^l * phi(nu(h^{l-1}))) / p + b^l)``
  (docs/architectures.md): ``s = 1`` with ``residual``, ``nu`` a LayerNorm with
  ``norm="layer"``, ``m^l`` Bernoulli(``p = keep_prob``) dropout masks. The generic
  functions (:func:`meanfield.propagate`, :func:`meanfield.fixed_point`, ...) and
  ``empirical``'s drivers read its fields; a function that does not cover a variant
  raises ``ValueError`` naming the field.

  Attributes:
    residual: a skip connection around each layer ``l >= 2`` (Yang & Schoenholz 2017).
    alpha: the residual branch's scale, ``> 0`` (the theory needs 1 without
      ``residual``).
    norm: ``None``, ``"layer"`` (LayerNorm before ``phi``) or ``"batch"``
      (BatchNorm: an experiment's variant; its theory is the closed form
      :meth:`gradient_factor`).
    keep_prob: dropout's keep probability ``p`` in ``(0, 1]`` (1: no dropout).

  ``alpha`` and ``keep_prob`` may be numbers, NumPy arrays (checked
  elementwise; the keyword theory functions broadcast over them) or JAX
  tracers (unchecked: ``jax.grad`` over ``keep_prob``); in a :class:`Network`
  each is one concrete number. Equal, and hashing alike, field by field
  (arrays by shape and value).
  """

  residual: bool = False
  alpha: Any = 1.0
  norm: str | None = None
  keep_prob: Any = 1.0

  inputs = ("q_input", "c_input")

  def __post_init__(self):
    if not isinstance(self.residual, (bool, np.bool_)):
      raise ValueError(f"`residual` must be True or False, got {self.residual!r}")
    object.__setattr__(self, "residual", bool(self.residual))
    object.__setattr__(self, "alpha", _parameter(
        "alpha", self.alpha, lambda a: a > 0, "> 0 (the residual branch scale)"))
    if self.norm not in NORMS:
      raise ValueError(f"`norm` must be one of None, 'layer', 'batch', got {self.norm!r}")
    object.__setattr__(self, "keep_prob", _parameter(
        "keep_prob", self.keep_prob, lambda p: (p > 0) & (p <= 1),
        "in (0, 1] (dropout's keep probability)"))

  @property
  def variants(self) -> dict[str, Any]:
    """The fields that differ from the plain MLP's (``MLP()``), by name."""
    return {k: getattr(self, k) for k, plain in _VARIANTS.items()
            if _differs(getattr(self, k), plain)}

  def replace(self, **changes) -> MLP:
    """A copy with ``changes`` applied (validated again)."""
    return dataclasses.replace(self, **changes)

  def gradient_factor(self, *, n_inputs: Any, activation: Any = "linear") -> jax.Array:
    """Per-layer growth of ``|dL/dh^l|^2`` backwards through a deep BatchNorm MLP, linear.

    .. math:: \\lambda = \\frac{B - 2}{B - 3}

    for batch size ``B = n_inputs > 3`` (Yang et al. 2019, Thm. 3.10, linear
    case; derivation in docs/architectures.md): BatchNorm normalises each unit
    over the batch, so the inputs of a batch interact and the two-input maps
    of the other variants do not close, but the gradient's growth does:
    BatchNorm's Jacobian for one unit is ``(I - y y^T / B) P / std`` (``P``
    the centring), which keeps ``(B - 2) / (B - 1)`` of an isotropic
    gradient, and at the forward fixed point ``E[1/std^2] = (B - 1) / ((B -
    3) sigma_w2)`` (an inverse chi-square with ``B - 1`` degrees of freedom)
    cancels ``sigma_w2``. Deep BatchNorm networks thus have exploding
    gradients at initialisation whatever the variances. For other
    activations the rate depends on the ``B x B`` Gram fixed point of the
    forward pass, which has no closed form (docs/architectures.md gives
    measured rates).

    Args:
      n_inputs: the batch size ``B``, an integer ``> 3`` (or an array of them).
      activation: must be ``"linear"`` (the case with a closed form); a
        Network's ``activation`` may be passed as it is.

    Returns:
      ``lambda``, float, shape of ``n_inputs``.

    Raises:
      ValueError: this MLP is not ``MLP(norm="batch")`` (no other variant),
        ``activation`` is not linear, or ``n_inputs`` is not an integer ``> 3``.
    """
    if self.variants != {"norm": "batch"}:
      raise ValueError(f"`gradient_factor` is the BatchNorm MLP's closed form: the MLP must be "
                       f"MLP(norm='batch') with no other variant, got {self!r}")
    if getattr(_activation(activation), "name", None) != "linear":
      raise ValueError(f"`activation` must be 'linear' for MLP.gradient_factor (the case with a "
                       f"closed form), got {activation!r}")
    _checks.real("n_inputs", n_inputs)
    b = np.asarray(n_inputs)
    if b.dtype.kind not in "iu" or np.any(b <= 3):
      raise ValueError(f"`n_inputs` must be an integer > 3 (the batch size), got {n_inputs!r}")
    b = jax.numpy.asarray(b, float)
    return (b - 2) / (b - 3)


_ALLOWED = ("meanfield.MLP(...) (the fully connected MLP; the default, MLP(), is the plain one) "
            "or another meanfield.network.Architecture such as meanfield.Conv(kernel_size=3)")


def check_architecture(fn_name: str, arch: Any, plain: dict[str, Any] | None = None,
                       **given: Any) -> None:
  """Raise ``ValueError`` unless ``arch`` is an :class:`Architecture` (``None`` is refused:
  the MLP is ``MLP()``) and, where it is not the :class:`MLP`, every keyword in ``given``
  has its plain value in ``plain``.

  ``plain`` (required with ``given``) maps each keyword of ``given`` to the value it must
  keep for another architecture (the MLP-only keywords of ``empirical.sweep``:
  ``n_inputs``, ``dtype``, ...); a keyword differs unless it is that value (None and
  booleans by identity, numbers by value). The error names every keyword that differs,
  its plain value and what was given.
  """
  if not isinstance(arch, Architecture):
    raise ValueError(f"`arch` of `{fn_name}` must be {_ALLOWED}, got {arch!r}")
  if isinstance(arch, MLP) or not given:
    return
  bad = {k: v for k, v in given.items() if _differs(v, plain[k])}
  if bad:
    raise ValueError(
        f"{', '.join(f'`{k}`' for k in bad)} must keep the plain value "
        f"({', '.join(f'{k}={plain[k]!r}' for k in bad)}) with arch={arch!r} for "
        f"`{fn_name}` (the fully connected MLP's options are not covered for another "
        f"architecture), got " + ", ".join(f"{k}={v!r}" for k, v in bad.items()))


def check_variants(fn_name: str, arch: Any, supports: tuple[str, ...] = (), *,
                   name: str = "arch", does: str = "does not cover (it is the theory of the "
                   "plain MLP); see the module for that variant") -> None:
  """Raise ``ValueError`` unless ``arch`` is an :class:`Architecture` (:func:`check_architecture`)
  and, where it is an :class:`MLP`, each of its variant fields (:attr:`MLP.variants`) is in
  ``supports`` (the error names the fields, their values and ``fn_name``: "`{name}` has
  residual=True, which `{fn_name}` {does}")."""
  check_architecture(fn_name, arch)
  if not isinstance(arch, MLP):
    return
  unsupported = {k: v for k, v in arch.variants.items() if k not in supports}
  if unsupported:
    shown = ", ".join(f"{k}={v!r}" for k, v in unsupported.items())
    raise ValueError(f"`{name}` has {shown}, which `{fn_name}` {does}")


def architecture_inputs(fn_name: str, arch: Architecture, **inputs: Any) -> dict:
  """The input keywords ``arch`` reads, checked: each given, and no other one given.

  ``inputs`` maps every input keyword of ``fn_name`` to its value (None when not given);
  the MLP reads ``q_input`` and ``c_input`` (:attr:`Architecture.inputs`).
  """
  wanted = tuple(arch.inputs)
  what = "the fully connected MLP" if isinstance(arch, MLP) else f"arch={arch!r}"
  extra = [k for k, v in inputs.items() if v is not None and k not in wanted]
  if extra:
    raise ValueError(f"{', '.join(f'`{k}`' for k in extra)} must not be given to `{fn_name}` "
                     f"for {what}, which reads {', '.join(map(repr, wanted))}; got "
                     + ", ".join(f"{k}={inputs[k]!r}" for k in extra))
  missing = [k for k in wanted if inputs.get(k) is None]
  if missing:
    raise ValueError(f"{', '.join(f'`{k}`' for k in missing)} must be given to `{fn_name}` "
                     f"for {what}, got None")
  return {k: inputs[k] for k in wanted}


def stationary_inputs(fn_name: str, arch: Architecture, **inputs: Any) -> dict:
  """The input keywords of ``fn_name`` that were given (not None), checked against
  ``arch.stationary_inputs``: any other one given raises ``ValueError`` (the MLP reads none)."""
  given = {k: v for k, v in inputs.items() if v is not None}
  wanted = tuple(arch.stationary_inputs)
  extra = [k for k in given if k not in wanted]
  if extra:
    what = "the fully connected MLP" if isinstance(arch, MLP) else f"arch={arch!r}"
    reads = f"reads {', '.join(map(repr, wanted))}" if wanted else "reads no input"
    raise ValueError(f"{', '.join(f'`{k}`' for k in extra)} must not be given to `{fn_name}` "
                     f"for {what}, whose stationary state {reads}; got "
                     + ", ".join(f"{k}={given[k]!r}" for k in extra))
  return given


def _number(name: str, value: Any, *, minimum: float, strict: bool = False,
            maximum: float | None = None) -> float:
  """A Python float in the bounds (one number: ``alpha``, ``keep_prob``)."""
  _checks.real(name, value)
  a = _checks.concrete(value)
  if a is None or a.ndim != 0:
    raise ValueError(f"`{name}` of a Network must be one concrete number (the grid of a "
                     f"Network is in its variances), got "
                     + ("a traced value" if a is None else f"shape {a.shape}"))
  _check_bounds(name, a, value, minimum=minimum, strict=strict, maximum=maximum)
  return float(a)


def _check_bounds(name: str, a: np.ndarray, value: Any, *, minimum: float, strict: bool,
                  maximum: float | None) -> None:
  low = a > minimum if strict else a >= minimum
  ok = low & (True if maximum is None else a <= maximum)
  if not np.all(ok):
    bound = f"{'>' if strict else '>='} {minimum:g}"
    if maximum is not None:
      bound += f" and <= {maximum:g}"
    shown = repr(value) if a.ndim == 0 else f"an array containing {a[~ok].flat[0]!r}"
    raise ValueError(f"`{name}` must be {bound}, got {shown}")


def _variance(name: str, value: Any) -> Any:
  """A variance field: a Python float (one number), a NumPy array (a grid, checked
  elementwise, its dtype kept) or, traced inside ``jit``/``vmap``/``grad``, unchanged."""
  _checks.real(name, value)
  a = _checks.concrete(value)
  if a is None:
    return value                        # a tracer: its values are checked by no one here
  _check_bounds(name, a, value, minimum=0.0, strict=False, maximum=None)
  return float(a) if a.ndim == 0 else a


#: The data leaves of a Network as a JAX pytree; every other field is static metadata.
_LEAVES = ("sigma_w2", "sigma_b2")


@dataclasses.dataclass(frozen=True, eq=False)
class Network(_ByValue):
  """One network, or a grid of them: what both the theory and the experiment of it read.

  See the module docstring for the fields. Numbers are validated on
  construction and stored as Python floats and ints; ``sigma_w2`` and
  ``sigma_b2`` may be arrays (a grid, checked elementwise and stored as
  NumPy arrays). ``activation`` is resolved once (``net.phi`` is its
  :class:`Activation`). A JAX pytree whose leaves are ``sigma_w2`` and
  ``sigma_b2`` (the rest is static), so it passes through ``jit``, ``vmap``
  and ``grad``; equal when every field is equal, arrays by value.
  """

  activation: str | Activation | Callable = "tanh"
  sigma_w2: float = 1.0
  sigma_b2: float = 0.0
  depth: int = 10
  width: int | None = None
  init: Any = "gaussian"
  arch: Architecture = MLP()

  def __post_init__(self):
    set_ = functools.partial(object.__setattr__, self)
    _activation(self.activation)        # raises for an unknown name or a bad callable
    set_("sigma_w2", _variance("sigma_w2", self.sigma_w2))
    set_("sigma_b2", _variance("sigma_b2", self.sigma_b2))
    set_("depth", _checks.check_positive_int("depth", self.depth))
    if self.width is not None:
      set_("width", _checks.check_positive_int("width", self.width))
    weight_law(self.init)
    if not isinstance(self.arch, Architecture):
      raise ValueError(f"`arch` must be {_ALLOWED}, got {self.arch!r}")
    if isinstance(self.arch, MLP):      # one number each: a Network's grid is in its variances
      set_("arch", self.arch.replace(
          alpha=_number("alpha", self.arch.alpha, minimum=0.0, strict=True),
          keep_prob=_number("keep_prob", self.arch.keep_prob, minimum=0.0, strict=True,
                            maximum=1.0)))

  @property
  def phi(self) -> Activation:
    """The resolved :class:`Activation`."""
    return _activation(self.activation)

  @property
  def law(self) -> str:
    """The weight law, ``"gaussian"`` or ``"orthogonal"`` (:func:`weight_law`)."""
    return weight_law(self.init)

  def replace(self, **changes) -> Network:
    """A copy with ``changes`` applied (validated again)."""
    return dataclasses.replace(self, **changes)


def _flatten(net: Network):
  static = tuple(getattr(net, f.name) for f in dataclasses.fields(net) if f.name not in _LEAVES)
  return [(jax.tree_util.GetAttrKey(n), getattr(net, n)) for n in _LEAVES], static


def _unflatten(static: tuple, leaves: Any) -> Network:
  """A Network of ``leaves`` unchecked (tracers, gradients, ``vmap``'s axis specs)."""
  net = object.__new__(Network)
  names = [f.name for f in dataclasses.fields(Network) if f.name not in _LEAVES]
  for name, value in (*zip(names, static), *zip(_LEAVES, leaves)):
    object.__setattr__(net, name, value)
  return net


jax.tree_util.register_pytree_with_keys(Network, _flatten, _unflatten)


def _fill(fn_name: str, params: dict[str, inspect.Parameter], net: Network,
          given: dict[str, Any], supports: tuple[str, ...]) -> dict[str, Any]:
  check_variants(fn_name, net.arch, supports, name="network")
  if not isinstance(net.arch, MLP) and "arch" not in params:
    raise ValueError(
        f"`network` has arch={net.arch!r}, which `{fn_name}` does not cover (it is the theory "
        f"of the fully connected MLP); the functions with an `arch` keyword dispatch on it")
  fields = {"activation": net.activation, "sigma_w2": net.sigma_w2,
            "sigma_b2": net.sigma_b2, "depth": net.depth, "width": net.width,
            "init": net.init, "arch": net.arch.bind(net)}
  both = sorted(k for k in fields if k in params and k in given)
  if both:
    raise ValueError(
        f"`{fn_name}` got {', '.join(map(repr, both))} both from `network` and as "
        f"keywords; change the network with `network.replace(...)` instead")
  return {**{k: v for k, v in fields.items() if k in params}, **given}


def accepts_network(fn: Callable | None = None, *, supports: tuple[str, ...] = ()):
  """Let a keyword-only theory function take a :class:`Network` as its first argument.

  ``fn(net, **kw)`` is ``fn(activation=net.activation, sigma_w2=net.sigma_w2,
  ..., **kw)`` for the fields ``fn`` has parameters for; a field also given
  as a keyword raises ``ValueError`` (no silent override). A network whose
  :class:`MLP` has a variant field (``residual``, ``alpha``, ``norm``,
  ``keep_prob``) not listed in ``supports`` (the variants ``fn`` covers), or
  with another architecture where ``fn`` has no ``arch`` parameter, raises
  ``ValueError``; where ``fn`` has one it gets ``arch=net.arch.bind(net)``
  (the MLP's variant fields with it). Called without a network, ``fn`` is
  unchanged. Functions with a positional first argument (``q_map(q, ...)``)
  take the network as a keyword, ``q_map(q, network=net)``.
  """
  if fn is None:
    return functools.partial(accepts_network, supports=supports)
  sig = inspect.signature(fn)
  params = dict(sig.parameters)
  positional = [p for p in params.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]

  if positional:
    @functools.wraps(fn)
    def wrapper(*args, network: Network | None = None, **kwargs):
      if network is None:
        return fn(*args, **kwargs)
      _check_network(fn.__name__, network)
      return fn(*args, **_fill(fn.__name__, params, network, kwargs, supports))
  else:
    @functools.wraps(fn)
    def wrapper(network: Network | None = None, /, **kwargs):
      if network is None:
        return fn(**kwargs)
      _check_network(fn.__name__, network)
      return fn(**_fill(fn.__name__, params, network, kwargs, supports))

  wrapper.__signature__ = _signature_with_network(sig, positional_first=bool(positional))
  return wrapper


def _check_network(fn_name: str, network: Any) -> None:
  if not isinstance(network, Network):
    raise ValueError(f"`network` of `{fn_name}` must be a meanfield.Network (the function's "
                     f"other arguments are keywords), got {network!r}")


def _signature_with_network(sig: inspect.Signature, *, positional_first: bool
                            ) -> inspect.Signature:
  params = list(sig.parameters.values())
  if positional_first:
    extra = inspect.Parameter("network", inspect.Parameter.KEYWORD_ONLY, default=None)
    at = next((i for i, p in enumerate(params) if p.kind == p.VAR_KEYWORD), len(params))
    params.insert(at, extra)
  else:
    params.insert(0, inspect.Parameter("network", inspect.Parameter.POSITIONAL_ONLY,
                                       default=None))
  return sig.replace(parameters=params)
