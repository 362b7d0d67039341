"""Activation transforms that shape a deep network's kernel: DKS and TAT.

A transformed activation is

.. math:: \\hat\\phi(x) = \\gamma\\,(\\phi(\\alpha x + \\beta) + \\delta),

(``input_scale`` alpha, ``input_shift`` beta, ``output_shift`` delta,
``output_scale`` gamma), or for the rectifier family the leaky ReLU
``gamma * leaky_relu(x + beta; negative_slope)``. Its local maps are the
theory's q- and c-maps at ``sigma_w2 = 1``, ``sigma_b2 = 0`` and input length
``q = 1``: ``Q(q) = E[phi_hat(sqrt(q) z)^2]`` and the c-map ``C(c)``
(:mod:`meanfield.maps`), with

.. math::

  Q(1) = E[\\hat\\phi^2],\\ Q'(1) = E[z \\hat\\phi \\hat\\phi'],\\
  C(0) = E[\\hat\\phi]^2 / Q(1),\\ C'(1) = E[\\hat\\phi'^2] / Q(1),\\
  C''(1) = E[\\hat\\phi''^2] / Q(1)

(the last three from Mehler's series, ``docs/transforms.md``). Every method
keeps ``Q(1) = 1`` (gamma), so lengths stay 1 through the network and the
network's C-map is the composition of the local ones.

- **DKS** (Martens et al. 2021, "Rapid training of deep neural networks
  without skip connections or normalization layers using Deep Kernel
  Shaping", Sec. 5): ``C(0) = 0`` (delta), ``Q'(1) = q_slope`` (1 in the
  paper), and the local ``C'(1) = xi`` chosen so that the network's largest
  C-map slope at 1 over its subnetworks is ``zeta``. ReLU has one free
  parameter fewer: beta is fixed to ``+1`` (``-1`` when ``xi`` exceeds
  ``pi / (pi - 1)``, the slope of the centred ReLU) and ``Q'(1)`` is free.
  The leaky ReLU solves for its negative slope and beta (alpha is redundant).
- **TAT** (Zhang et al. 2022, "Deep Learning without Shortcuts: Shaping the
  Kernel with Tailored Rectifiers"): smooth activations get
  ``Q'(1) = 1``, ``C'(1) = 1`` and the local ``C''(1) = kappa`` with the
  network's largest ``C''_f(1)`` equal to ``tau`` (alpha, beta, delta
  solved; Sec. 4 and their App. on smooth activations); the rectifier
  family ("relu" or "leaky_relu") becomes the Tailored ReLU, the leaky ReLU
  whose network C-map has ``C_f(0) = eta`` (largest over subnetworks), with
  ``gamma = sqrt(2 / (1 + slope^2))`` (Sec. 3).

The network enters through ``depth`` (an MLP of ``depth`` nonlinear layers,
whose C-map is the ``depth``-fold composition) or ``subnet_max``, the
"subnetwork maximising function" ``M(x, r)`` of the TAT paper (App.): the
network's C-map written with each local map replaced by ``r``. From it the
largest slope is ``M(1, y -> xi y)``, the largest curvature
``M(0, y -> kappa + y)``, and the largest ``C_f(0)`` is ``M(0, C)``.

Parameters are found by a root solve (scipy's ``hybr``) from a fixed list of
starting points; the Gaussian integrals are the theory's split quadrature
(:func:`meanfield.gaussian.gaussian_expectation`), in 64-bit for the
duration of the call (``jax.enable_x64``), so results do not depend on the
user's precision setting.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from meanfield import _checks
from meanfield.activations import ACTIVATIONS, Activation, activation as _activation
from meanfield.gaussian import gaussian_expectation

__all__ = ["ActivationTransform", "dks_transform", "tat_transform", "leaky_relu_c_map",
           "mlp_subnet_max", "residual_subnet_max"]

Array = jax.Array
SubnetMax = Callable[[float, Callable[[float], float]], float]

# Starting points of the root solve, tried in this order (the first accepted root wins).
_STARTS = {"input_scale": (1.0, 0.1), "input_shift": (0.0, 1.0, -1.0),
           "output_shift": (0.0, 1.0, -1.0), "negative_slope": (0.0, 0.5)}
_RANDOM_RANGES = {"input_scale": (0.0, 2.0), "input_shift": (-3.0, 3.0),
                  "output_shift": (-3.0, 3.0), "negative_slope": (0.0, 1.0)}
_N_STARTS = 50
_RECTIFIERS = ("relu", "leaky_relu")
_DEGREE = 64


@dataclasses.dataclass(frozen=True)
class ActivationTransform:
  """``phi_hat(x) = output_scale * (phi(input_scale * x + input_shift) + output_shift)``.

  For the rectifier family ``phi`` is the leaky ReLU with ``negative_slope``
  (``None`` otherwise). Call it like a function; :attr:`activation` is the
  :class:`~meanfield.Activation` to hand to the theory (``meanfield.c_map``)
  or to ``empirical``'s models.

  Attributes:
    base: the activation that was transformed (as given).
    method: ``"dks"`` or ``"tat"``.
    input_scale, input_shift, output_shift, output_scale: alpha, beta, delta, gamma.
    negative_slope: the leaky ReLU's slope, or None.
    local_target: the local condition solved for: DKS ``C'(1) = xi``; TAT
      smooth ``C''(1) = kappa``; Tailored ReLU: the slope itself.
  """

  base: Any
  method: str
  input_scale: float
  input_shift: float
  output_shift: float
  output_scale: float
  negative_slope: float | None
  local_target: float

  def __call__(self, x: Any) -> Array:
    return self.activation(x)

  @functools.cached_property
  def activation(self) -> Activation:
    """The transformed activation (kinks moved to ``(k - beta) / alpha``, derivatives by the chain rule)."""
    a, b, d, g = self.input_scale, self.input_shift, self.output_shift, self.output_scale
    fn, dfn, d2fn, kinks, name = _family(self.base, self.negative_slope)
    kinks = tuple(sorted((k - b) / a for k in kinks))
    return Activation(
        f"{self.method}({name})", lambda x: g * (fn(a * x + b) + d), kinks,
        dfn=lambda x: g * a * dfn(a * x + b), d2fn=lambda x: g * a * a * d2fn(a * x + b))


def _family(base: Any, slope: float | None):
  """``(phi, phi', phi'', kinks, name)`` of the base activation (the leaky ReLU with ``slope``)."""
  if slope is not None:
    return (lambda h: jnp.where(h > 0, h, slope * h),
            lambda h: jnp.where(h > 0, 1.0, slope).astype(jnp.result_type(h, float)),
            lambda h: jnp.zeros_like(h, dtype=jnp.result_type(h, float)), (0.0,),
            f"leaky_relu({slope:.6g})")
  act = _activation(base)
  return act.fn, act.derivative, act.second_derivative, act.kinks, act.name


# --- local maps of phi_hat -------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("act", "leaky"))
def _moments(act, leaky, a, b, slope):
  """Gaussian moments of ``phi(h)``, ``h = a z + b``: the ingredients of the local maps."""
  if leaky:
    fn = lambda h: jnp.where(h > 0, h, slope * h)
    d1 = lambda h: jnp.where(h > 0, 1.0, slope)
    d2 = jnp.zeros_like
    kinks = (0.0,)
  else:
    fn, d1, d2, kinks = act.fn, act.derivative, act.second_derivative, act.kinks

  def g(h):
    z = (h - b) / a
    p, dp, ddp = fn(h), d1(h), d2(h)
    return p, p * p, dp * dp, z * p * dp, z * dp, ddp * ddp

  return gaussian_expectation(g, a * a, kinks=kinks, degree=_DEGREE, mean=b)


def _local_maps(act, leaky, a, b, slope, delta):
  """``(gamma, C(0), C'(1), Q'(1), C''(1))`` of ``gamma (phi(a z + b) + delta)`` with ``Q(1) = 1``."""
  m1, m2, d2, zpd, zd, dd2 = (float(v) for v in _moments(act, leaky, a, b, slope))
  var = m2 + 2 * delta * m1 + delta * delta     # 0 where phi is constant on the mass: no map
  gamma2 = 1 / var if var > 0 else float("nan")
  return (np.sqrt(gamma2), gamma2 * (m1 + delta) ** 2, gamma2 * a * a * d2,
          gamma2 * a * (zpd + delta * zd), gamma2 * a ** 4 * dd2)


def leaky_relu_c_map(c: Any, negative_slope: Any) -> Array:
  """The c-map of the leaky ReLU with ``Q(1) = 1`` (scale-free, any ``q``).

  ``C(c) = [(1 - s)^2 (sqrt(1 - c^2) + (pi - arccos c) c) / pi + 2 s c] / (1 + s^2)``
  (Zhang et al. 2022, Sec. 3; from the arc-cosine kernel of Cho & Saul 2009,
  derivation in ``docs/transforms.md``).
  """
  c, s = jnp.asarray(c), jnp.asarray(negative_slope)
  arc = (jnp.sqrt(jnp.clip(1 - c * c, 0, None)) + (np.pi - jnp.arccos(c)) * c) / np.pi
  return ((1 - s) ** 2 * arc + 2 * s * c) / (1 + s * s)


def mlp_subnet_max(depth: int) -> SubnetMax:
  """``M(x, r) = r(r(...r(x)))`` (``depth`` times): the subnetwork maximising function of an MLP."""
  depth = _checks.check_positive_int("depth", depth)

  def subnet_max(x, r):
    for _ in range(depth):
      x = r(x)
    return x

  return subnet_max


def residual_subnet_max(*, n_blocks: int, branch_depth: int, shortcut_weight: float
                        ) -> SubnetMax:
  """``M(x, r)`` of ``n_blocks`` residual blocks ``x -> w^2 x + (1 - w^2) r^branch_depth(x)``.

  The normalised residual network of DKS and TAT (Martens et al. 2021,
  Sec. 7; Zhang et al. 2022, Sec. 5): identity shortcuts weighted by
  ``w = shortcut_weight`` and branches of ``branch_depth`` nonlinear layers,
  combined so that ``Q(1) = 1`` is kept. Its largest slope at 1 is
  ``prod (w^2 + (1 - w^2) xi^branch_depth)`` and its largest curvature
  ``n_blocks (1 - w^2) branch_depth kappa``.
  """
  n_blocks = _checks.check_positive_int("n_blocks", n_blocks)
  branch_depth = _checks.check_positive_int("branch_depth", branch_depth)
  w2 = _check_target("shortcut_weight", shortcut_weight, lambda w: (w >= 0) & (w < 1),
                     "in [0, 1)") ** 2

  def subnet_max(x, r):
    for _ in range(n_blocks):
      branch = x
      for _ in range(branch_depth):
        branch = r(branch)
      x = w2 * x + (1 - w2) * branch
    return x

  return subnet_max


def _name(activation: Any) -> str | None:
  """The registry name of ``activation`` (a name or a registry Activation), else None."""
  if isinstance(activation, str):
    return activation
  if isinstance(activation, Activation) and ACTIVATIONS.get(activation.name) is activation:
    return activation.name
  return None


def _network(depth, subnet_max) -> SubnetMax:
  if (depth is None) == (subnet_max is None):
    raise ValueError("give exactly one of `depth` (an MLP of that many nonlinear layers) and "
                     f"`subnet_max` (the network's M(x, r)), got depth={depth!r}, "
                     f"subnet_max={subnet_max!r}")
  if subnet_max is None:
    return mlp_subnet_max(depth)
  if not callable(subnet_max):
    raise ValueError(f"`subnet_max` must be a callable M(x, r), got {subnet_max!r}")
  return subnet_max


def _solve_increasing(fn, target, low, name, what):
  """``x >= low`` with ``fn(x) = target`` for increasing ``fn`` (bracket by doubling, then Brent)."""
  high = max(2 * low, 1.0) if low > 0 else 1.0
  for _ in range(200):
    if fn(high) >= target:
      break
    low, high = high, 2 * high
  else:
    raise ValueError(f"`{name}` = {target!r} is not reached by {what}")
  return scipy.optimize.brentq(lambda x: fn(x) - target, low, high, xtol=1e-15, rtol=1e-15)


def _root(residual, names, accept):
  """The first accepted root of ``residual`` from the starting points (see ``_STARTS``)."""
  starts = list(itertools.product(*(_STARTS[n] for n in names)))
  rng = np.random.default_rng(123)
  starts += [tuple(rng.uniform(*_RANDOM_RANGES[n]) for n in names)
             for _ in range(_N_STARTS - len(starts))]
  for start in starts:
    sol = scipy.optimize.root(residual, np.asarray(start, float), method="hybr",
                              options={"xtol": 1e-13})
    if sol.success and np.all(np.abs(sol.fun) < 1e-9) and accept(sol.x):
      return sol.x
  return None


def _check_shapeable(act, activation, method):
  """ValueError unless ``phi'`` has mass under ``N(0, 1)``: with ``E[phi'(z)^2] = 0`` (``jnp.sign``,
  a step) the local ``C'(1) = gamma^2 E[phi'^2]`` is 0 at every input scale and shift."""
  with jax.enable_x64(True):
    d2 = float(_moments(act, False, np.float64(1.0), np.float64(0.0), 0.0)[2])
  if not d2 > 0:
    raise ValueError(
        f"`activation` = {activation!r} cannot be transformed by {method}: its derivative is "
        f"zero almost everywhere (E[phi'(z)^2] = {d2:g} for z ~ N(0, 1)), so the local "
        "C-map slope C'(1) = gamma^2 E[phi'^2] that the transform sets is 0 at every input "
        "scale and shift; use an activation with a nonzero derivative")


def _check_target(name, value, ok, allowed):
  _checks.check(name, value, ok, allowed)
  if np.ndim(value) != 0:
    raise ValueError(f"`{name}` must be one number, got shape {np.shape(value)}")
  return float(value)


def dks_transform(activation: Any, *, depth: int | None = None,
                  subnet_max: SubnetMax | None = None, zeta: float = 1.5,
                  q_slope: float = 1.0) -> ActivationTransform:
  """Deep Kernel Shaping (Martens et al. 2021): the transform with ``max_f C_f'(1) = zeta``.

  Conditions: ``Q(1) = 1``, ``C(0) = 0``, ``Q'(1) = q_slope`` (not for ReLU)
  and the local ``C'(1) = xi`` with the network's largest slope
  ``M(1, y -> xi y) = zeta`` (an MLP: ``xi = zeta^(1/depth)``)::

    t = meanfield.dks_transform("tanh", depth=100, zeta=1.5)
    t(x); meanfield.c_map(0.0, sigma_w2=1, sigma_b2=0, q=1, activation=t.activation)  # 0

  Args:
    activation: a name, Activation or callable; ``"leaky_relu"`` and
      ``"relu"`` have the special forms of the module docstring.
    depth, subnet_max: the network (exactly one).
    zeta: the network's largest C-map slope at 1, ``> 1``.
    q_slope: the local q-map slope at 1, ``> 0``.

  Raises:
    ValueError: bad arguments, or no parameters meet the conditions.
  """
  zeta = _check_target("zeta", zeta, lambda z: z > 1, "> 1 (the largest C-map slope at 1)")
  q_slope = _check_target("q_slope", q_slope, lambda s: s > 0, "> 0")
  network = _network(depth, subnet_max)
  name = _name(activation)
  act = None if name in _RECTIFIERS else _activation(activation)
  if act is not None:
    _check_shapeable(act, activation, "DKS")
  xi = _solve_increasing(lambda x: network(1.0, lambda y: x * y), zeta, 1.0, "zeta",
                         "the network's largest slope at any local slope")
  with jax.enable_x64(True):
    if name == "relu":
      beta = 1.0 if xi < np.pi / (np.pi - 1) else -1.0
      relu = _activation("relu")
      res = lambda p: [_local_maps(relu, False, p[0], beta, 0.0,
                                   -_mean(relu, False, p[0], beta, 0.0))[2] - xi]
      p = _root(res, ("input_scale",), lambda p: True)
      params = None if p is None else (p[0], beta, None)
    elif name == "leaky_relu":
      def res(p):
        delta = -_mean(None, True, 1.0, p[1], p[0])
        out = _local_maps(None, True, 1.0, p[1], p[0], delta)
        return [out[3] - q_slope, out[2] - xi]
      p = _root(res, ("negative_slope", "input_shift"), lambda p: True)
      params = None if p is None else (1.0, p[1], p[0])
    else:
      def res(p):
        delta = -_mean(act, False, p[0], p[1], 0.0)
        out = _local_maps(act, False, p[0], p[1], 0.0, delta)
        return [out[3] - q_slope, out[2] - xi]
      p = _root(res, ("input_scale", "input_shift"), lambda p: True)
      params = None if p is None else (p[0], p[1], None)
    if params is None:
      raise ValueError(f"no DKS parameters found for activation {activation!r} with "
                       f"zeta={zeta!r}, q_slope={q_slope!r} (local C'(1) = {xi:.6g})")
    a, b, slope = params
    fam = None if slope is not None else (act or _activation(name))
    leaky = slope is not None
    delta = -_mean(fam, leaky, a, b, slope or 0.0)
    gamma = _local_maps(fam, leaky, a, b, slope or 0.0, delta)[0]
  return ActivationTransform(activation, "dks", float(a), float(b), float(delta), float(gamma),
                             None if slope is None else float(slope), float(xi))


def _mean(act, leaky, a, b, slope):
  return float(_moments(act, leaky, a, b, slope)[0])


def tat_transform(activation: Any, *, depth: int | None = None,
                  subnet_max: SubnetMax | None = None, eta: float = 0.9,
                  tau: float = 0.3) -> ActivationTransform:
  """Tailored Activation Transformation (Zhang et al. 2022).

  ``"relu"`` or ``"leaky_relu"``: the Tailored ReLU, the leaky ReLU whose
  network has ``max_f C_f(0) = eta`` (an MLP: ``C^depth(0) = eta`` with
  :func:`leaky_relu_c_map`), scaled to ``Q(1) = 1``. Other (smooth)
  activations: ``Q(1) = 1``, ``Q'(1) = 1``, ``C'(1) = 1`` and the local
  ``C''(1) = kappa`` with ``M(0, y -> kappa + y) = tau`` (an MLP:
  ``kappa = tau / depth``)::

    t = meanfield.tat_transform("leaky_relu", depth=100, eta=0.9)   # t.negative_slope

  Args:
    activation: a name, Activation or callable.
    depth, subnet_max: the network (exactly one).
    eta: the network's largest ``C_f(0)``, in ``[0, 1)`` (rectifiers).
    tau: the network's largest ``C_f''(1)``, ``> 0`` (smooth activations).

  Raises:
    ValueError: bad arguments, an ``eta`` too large for a network this
      shallow (a leaky ReLU network of few layers cannot be that nonlinear:
      even ReLU, slope 0, gives a smaller ``C_f(0)``), or no parameters found.
  """
  eta = _check_target("eta", eta, lambda e: (e >= 0) & (e < 1), "in [0, 1)")
  tau = _check_target("tau", tau, lambda t: t > 0, "> 0")
  network = _network(depth, subnet_max)
  name = _name(activation)
  if name in _RECTIFIERS:
    c0 = lambda s: network(0.0, lambda c: float(leaky_relu_c_map(c, s)))
    if c0(0.0) < eta:
      raise ValueError(
          f"`eta` = {eta!r} is not reached: this network's largest C_f(0) is at most "
          f"{c0(0.0):.6g} (ReLU); use a smaller eta or a deeper network")
    with jax.enable_x64(True):
      slope = scipy.optimize.brentq(lambda s: c0(s) - eta, 0.0, 1.0, xtol=1e-15, rtol=1e-15)
    return ActivationTransform(activation, "tat", 1.0, 0.0, 0.0,
                               float(np.sqrt(2 / (1 + slope * slope))), float(slope),
                               float(slope))
  act = _activation(activation)
  _check_shapeable(act, activation, "TAT")
  kappa = _solve_increasing(lambda k: network(0.0, lambda y: k + y), tau, 0.0, "tau",
                            "the network's largest curvature at any local curvature")
  with jax.enable_x64(True):
    def res(p):
      out = _local_maps(act, False, p[0], p[1], 0.0, p[2])
      return [out[3] - 1, out[2] - 1, out[4] - kappa]

    # Zhang et al.'s reference code rejects roots with alpha * gamma >= 2 (unstable q-maps)
    accept = lambda p: p[0] * _local_maps(act, False, p[0], p[1], 0.0, p[2])[0] < 2
    p = _root(res, ("input_scale", "input_shift", "output_shift"), accept)
    if p is None:
      raise ValueError(f"no TAT parameters found for activation {activation!r} with "
                       f"tau={tau!r} (local C''(1) = {kappa:.6g})")
    gamma = _local_maps(act, False, p[0], p[1], 0.0, p[2])[0]
  return ActivationTransform(activation, "tat", float(p[0]), float(p[1]), float(p[2]),
                             float(gamma), None, float(kappa))
