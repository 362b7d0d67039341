"""Initialisations on the critical line, as numbers and as ready Flax initialisers.

:func:`critical_init` returns a point of the order-to-chaos line
``chi_1 = sigma_w2 E[phi'(sqrt(q*) z)^2] = 1`` (Poole et al. 2016; Schoenholz
et al. 2017) for any activation, with the fixed-point length ``q*``, the
depth scale ``xi_q`` of the length map there (``xi_c`` is infinite on the
line) and ``kernel_init`` / ``bias_init`` in the ``jax.nn.initializers``
style ``(key, shape, dtype) -> Array`` for Flax's kernel layout
``(..., fan_in, fan_out)``. The point is chosen in one of two ways:

- by the bias variance ``sigma_b2`` (Schoenholz et al. 2017): ``sigma_w2`` is
  :func:`meanfield.critical_sigma_w2`;
- by the spread of the input-output Jacobian's spectrum (Pennington,
  Schoenholz & Ganguli 2017, "Resurrecting the sigmoid"): along the line,
  parametrised by ``q = q*`` (:func:`meanfield.critical_line`), the mean
  eigenvalue of ``J J^T`` is ``chi_1^L = 1`` at every point, and its relative
  variance is ``L (mu_2 / mu_1^2 - 1 - s_1)`` with ``mu_k = E[phi'(sqrt(q) z)^{2k}]``
  (:func:`meanfield.jacobian_moments`; ``s_1 = 0`` orthogonal, ``-1``
  Gaussian). "Closest to isometry within ``[q_min, q_max]``" is the ``q`` in
  that interval, where the line is realisable (``sigma_b2 >= 0``), with the
  smallest variance. The depth ``L`` multiplies the variance, so the choice
  does not depend on it. For odd, smooth activations (tanh, erf) ``phi'^2``
  flattens as ``q -> 0`` and the variance grows with ``q``: the answer is
  ``q_min`` (Pennington et al.'s "small q*"), and ``q_min`` says how far from
  the linear regime the user wants the network. Where the variance is not
  monotone the interval matters at both ends. The derivation is in
  ``docs/initialise.md``.

Weights: ``init="gaussian"`` draws ``N(0, sigma_w2 / fan_in)``;
``init="orthogonal"`` a Haar orthogonal kernel scaled so that
``E[W_ij^2] = sigma_w2 / fan_in`` for every shape (``sqrt(sigma_w2)`` times an
orthogonal matrix when square), and for convolution kernels (more than two
axes) the delta-orthogonal kernel of Xiao et al. 2018 (orthogonal centre tap,
zeros elsewhere; needs ``in_channels <= out_channels``), whose per-position
theory is the MLP's with ``fan_in = in_channels``. Biases are
``N(0, sigma_b2)`` (zeros when ``sigma_b2 = 0``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
from jax.nn import initializers as jinit

from meanfield import _checks
from meanfield._critical import critical_point, reached_length
from meanfield.activations import Activation, activation as _activation
from meanfield.depth import depth_scale
from meanfield.fixed_points import q_star as _q_star
from meanfield.maps import chi_1 as _chi_1, propagate as _propagate, q_map_slope
from meanfield.network import MLP, Network, accepts_network, check_variants, weight_law
from meanfield.phase import critical_line, critical_sigma_w2
from meanfield.spectrum import jacobian_moments
from meanfield.transformer import Transformer

__all__ = ["CriticalInit", "critical_init", "kernel_initializer", "bias_initializer"]

Array = jax.Array
Initializer = Callable[..., Array]

# Points of the q grid on which the Jacobian spread is tabulated before refinement.
_GRID = 257


def kernel_initializer(sigma_w2: float, init: str = "gaussian") -> Initializer:
  """``(key, shape, dtype) -> Array`` with ``E[W_ij^2] = sigma_w2 / fan_in``, kernel layout ``(..., fan_in, fan_out)``.

  ``fan_in`` counts the receptive field (``prod(shape[:-1])``) for
  ``"gaussian"`` (:func:`jax.nn.initializers.variance_scaling`, untruncated
  normal). ``"orthogonal"``: :func:`jax.nn.initializers.orthogonal` for 2-D
  shapes, scaled by ``sqrt(sigma_w2 max(1, fan_out / fan_in))``, and
  :func:`jax.nn.initializers.delta_orthogonal` (``fan_in = shape[-2]``) for
  convolution kernels.
  """
  _checks.check_nonnegative("sigma_w2", sigma_w2)
  law = weight_law(init)
  if law == "gaussian":
    return jinit.variance_scaling(float(sigma_w2), "fan_in", "normal")

  def orthogonal(key: Array, shape: tuple[int, ...], dtype: Any = jnp.float_) -> Array:
    if len(shape) < 2:
      raise ValueError(f"an orthogonal kernel needs at least 2 axes, got shape {shape}")
    fan_in, fan_out = shape[-2], shape[-1]
    scale = float(np.sqrt(sigma_w2 * max(1.0, fan_out / fan_in)))
    if len(shape) == 2:
      return jinit.orthogonal(scale=scale)(key, shape, dtype)
    if fan_in > fan_out:
      raise ValueError(
          f"a delta-orthogonal convolution kernel needs in_channels <= out_channels (its "
          f"centre tap is an orthogonal in x out matrix), got kernel shape {tuple(shape)} "
          f"(in_channels {fan_in} > out_channels {fan_out}); use init='gaussian' there")
    return jinit.delta_orthogonal(scale=scale)(key, shape, dtype)

  return orthogonal


def bias_initializer(sigma_b2: float) -> Initializer:
  """``(key, shape, dtype) -> Array`` of ``N(0, sigma_b2)`` entries (zeros for ``sigma_b2 = 0``)."""
  _checks.check_nonnegative("sigma_b2", sigma_b2)
  if sigma_b2 == 0:
    return jinit.zeros
  return jinit.normal(stddev=float(np.sqrt(sigma_b2)))


@dataclasses.dataclass(frozen=True)
class CriticalInit:
  """A point on the critical line with its initialisers (:func:`critical_init`).

  Attributes:
    activation: the activation as given (name, Activation or callable).
    init: the weight law, ``"gaussian"`` or ``"orthogonal"``.
    sigma_w2, sigma_b2: the variances (theory parametrisation).
    q_star: the stable fixed point of the length map there, the length a network reaches.
    chi_1: ``sigma_w2 E[phi'(sqrt(q*) z)^2]``, 1 up to the solver's tolerance.
    xi_q: depth scale of the length map at ``q*`` (layers).
    xi_c: depth scale of the correlation map: ``inf`` on the critical line.
    depth: the depth the Jacobian numbers refer to, or None.
    jacobian_mean, jacobian_variance: mean (``chi_1^L``) and variance of the
      eigenvalues of ``J J^T`` at ``depth`` (None without a depth).
    kernel_init, bias_init: ``(key, shape, dtype) -> Array`` initialisers.
    arch: ``None``, or for ``arch=Transformer(...)`` the transformer with its residual
      strengths chosen (its MLP has ``sigma_w2``, ``sigma_b2`` above).
    extra: for a transformer, ``"c"`` (the token correlation after ``depth`` blocks
      there), ``"strength"`` (the factor ``t`` on the given strengths), ``"c_given"``
      (the correlation at the given strengths) and ``"beta_c"`` (the critical inverse
      temperature of the last block's attention input); else empty.
  """

  activation: Any
  init: str
  sigma_w2: float
  sigma_b2: float
  q_star: float
  chi_1: float
  xi_q: float
  xi_c: float
  depth: int | None
  jacobian_mean: float | None
  jacobian_variance: float | None
  kernel_init: Initializer = dataclasses.field(compare=False, repr=False)
  bias_init: Initializer = dataclasses.field(compare=False, repr=False)
  arch: Any = None
  extra: dict = dataclasses.field(default_factory=dict, compare=False)

  def network(self, depth: int | None = None, width: int | None = None) -> Network:
    """The :class:`meanfield.Network` of this initialisation (``depth`` defaults to the one given)."""
    depth = self.depth if depth is None else depth
    if depth is None:
      raise ValueError("`depth` must be given (critical_init was called without one)")
    return Network(activation=self.activation, sigma_w2=self.sigma_w2, sigma_b2=self.sigma_b2,
                   depth=depth, width=width, init=self.init,
                   **({} if self.arch is None else {"arch": self.arch}))


def _scalar(name: str, value: Any, what: str) -> float:
  _checks.check_nonnegative(name, value, what)
  a = np.asarray(value)
  if a.ndim != 0:
    raise ValueError(f"`{name}` must be one number, got shape {a.shape}")
  if np.isnan(a):
    raise ValueError(f"`{name}` must be a number, got nan")
  return float(a)


def _spread(act: Activation, law: str, q: np.ndarray) -> np.ndarray:
  """Relative variance of ``J J^T``'s eigenvalues per layer along the critical line at lengths ``q``."""
  line = critical_line(q, activation=act)
  # with q given, sigma_b2 does not enter (it only sets q*)
  moments = jacobian_moments(activation=act, sigma_w2=line.sigma_w2, sigma_b2=0.0, depth=1,
                             init=law, q=q)
  return np.asarray(moments.variance / moments.mean ** 2)


def _line_start(act: Activation) -> float:
  """The smallest length on the critical line with ``sigma_b2 >= 0`` (0 where ``phi(0) = 0``)."""
  if float(np.asarray(critical_line(0.0, activation=act).sigma_b2)) >= 0:
    return 0.0
  sigma_w2 = critical_sigma_w2(sigma_b2=0.0, activation=act)
  return float(np.asarray(_q_star(sigma_w2=sigma_w2, sigma_b2=0.0, activation=act)))


def _most_isometric(act: Activation, law: str, q_min: float, q_max: float) -> float:
  """The length in ``[q_min, q_max]`` with the smallest Jacobian spread (grid, then bounded Brent)."""
  start = _line_start(act)
  low = max(q_min, start)
  if not q_max >= low:
    raise ValueError(
        f"`q_max` must be >= {low:g} (the critical line of {act.name} has sigma_b2 >= 0 only "
        f"for q* >= {start:g}, and q_min = {q_min:g}), got {q_max!r}")
  if q_max == low:
    return low
  floor = max(low, q_max * 1e-8)
  grid = np.unique(np.concatenate([[low], np.geomspace(floor, q_max, _GRID)]))
  values = np.where(_realisable(act, grid), _spread(act, law, grid), np.inf)
  if not np.isfinite(values).any():
    raise ValueError(f"the critical line of {act.name} has no realisable point (sigma_b2 >= 0, "
                     f"q* a stable fixed point) with q* in [{low:g}, {q_max:g}]")
  # the smallest length among the (rounding-level) ties, so a flat spread (ReLU) picks q_min
  tie = 64 * np.finfo(values.dtype).eps * max(1.0, abs(float(values.min())))
  i = int(np.argmax(values <= values.min() + tie))
  if i == 0 or i == grid.size - 1:
    return float(grid[i])
  lo, hi = grid[i - 1], grid[i + 1]
  best = scipy.optimize.minimize_scalar(
      lambda q: float(_spread(act, law, np.asarray([q]))[0]), bounds=(lo, hi), method="bounded",
      options={"xatol": 1e-10 * hi})
  ok = best.fun < values[i] and bool(_realisable(act, np.asarray([best.x]))[0])
  return float(best.x) if ok else float(grid[i])


def _realisable(act: Activation, q: np.ndarray) -> np.ndarray:
  """Where the critical line at length ``q`` has ``sigma_b2 >= 0`` and a network reaches ``q``.

  The line, parametrised by ``q``, also passes through unstable fixed points
  of the length map (GELU at small ``q``), where the network's length runs
  off to another ``q*``; they are excluded (the rule of :func:`meanfield.critical_sigma_w2`).
  """
  line = critical_line(q, activation=act)
  bias = np.asarray(line.sigma_b2)
  sigma_w2, sigma_b2 = jnp.asarray(line.sigma_w2), jnp.maximum(jnp.asarray(bias), 0)
  solved = _q_star(sigma_w2=sigma_w2, sigma_b2=sigma_b2, activation=act)
  _, reached = reached_length(act, jnp.asarray(q, solved.dtype), solved, sigma_w2, sigma_b2)
  return (bias >= 0) & np.asarray(reached)


#: Strength factors ``t`` scanned for the largest one that keeps the tokens apart.
_STRENGTHS = np.geomspace(1e-4, 1.0, 65)


def _token_c(act, arch: Transformer, depth: int, sigma_w2, sigma_b2, t: float, c_input):
  """The token correlation after ``depth`` blocks at strengths ``t`` times ``arch``'s, and
  ``beta_c`` of the last block's attention input."""
  scaled = arch.replace(alpha_sa=t * arch.alpha_sa, alpha_mlp=t * arch.alpha_mlp)
  prop = _propagate(Network(activation=act, sigma_w2=sigma_w2, sigma_b2=sigma_b2, depth=depth,
                            arch=scaled), q_input=1.0, c_input=c_input)
  return float(np.asarray(prop.c)[-1]), float(np.asarray(prop.extra["beta_c"])[-1])


def _transformer_strength(act, arch, sigma_w2, sigma_b2, depth, c_max, c_input):
  """``(arch with strengths t alpha, extra)``: the largest ``t`` in ``(0, 1]`` with the token
  correlation after ``depth`` blocks at most ``c_max`` (``docs/initialise.md``)."""
  if depth is None:
    raise ValueError("`depth` must be given for arch=Transformer(...): the strength that keeps "
                     "the tokens apart depends on the number of blocks")
  c_max = _scalar("c_max", c_max, "a token correlation")
  low = -1 / (arch.tokens - 1)
  c_input = float(np.asarray(c_input))
  if not low <= c_input < c_max <= 1:
    raise ValueError(f"`c_max` must be in (c_input, 1] = ({c_input:g}, 1] and `c_input` in "
                     f"[{low:g}, 1] (the tokens' correlation after and before the blocks), got "
                     f"c_max={c_max!r}, c_input={c_input!r}")
  f = lambda t: _token_c(act, arch, depth, sigma_w2, sigma_b2, t, c_input)[0] - c_max  # noqa
  values = np.array([f(t) for t in _STRENGTHS])
  if values[-1] <= 0:
    t = 1.0
  else:
    ok = np.flatnonzero(values <= 0)
    if ok.size == 0:
      raise ValueError(f"`c_max` = {c_max:g}: no residual strength down to 1e-4 times the "
                       f"given ones keeps the token correlation after {depth} blocks at or "
                       f"below it (at 1e-4 it is {values[0] + c_max:.6g})")
    i = ok[-1]
    t = float(scipy.optimize.brentq(f, _STRENGTHS[i], _STRENGTHS[i + 1], xtol=1e-12,
                                    rtol=1e-10))
  c, beta_c = _token_c(act, arch, depth, sigma_w2, sigma_b2, t, c_input)
  extra = {"c": c, "strength": t, "c_given": float(values[-1] + c_max), "beta_c": beta_c}
  return arch.replace(alpha_sa=t * arch.alpha_sa, alpha_mlp=t * arch.alpha_mlp), extra


@accepts_network
def critical_init(activation: Any, *, sigma_b2: float | None = None, init: str = "gaussian",
                  q_min: float = 0.0, q_max: float | None = None,
                  depth: int | None = None, arch: Any = None, c_max: float = 0.9,
                  c_input: float = 0.0) -> CriticalInit:
  """The initialisation on the critical line ``chi_1 = 1``, as numbers and initialisers.

  Give exactly one of ``sigma_b2`` (the point of the line with that bias
  variance, Schoenholz et al. 2017) or ``q_max`` (the point with ``q*`` in
  ``[q_min, q_max]`` whose input-output Jacobian spectrum is closest to
  isometry, Pennington et al. 2017; see the module docstring and
  ``docs/initialise.md``)::

    ci = meanfield.critical_init("tanh", sigma_b2=0.05)          # sigma_w2 = 1.761, q* = 0.570
    layer = nnx.Linear(256, 256, kernel_init=ci.kernel_init, bias_init=ci.bias_init, rngs=rngs)
    ci = meanfield.critical_init("tanh", init="orthogonal", q_min=0.1, q_max=1.0, depth=50)
    ci = meanfield.critical_init(network=net)    # net's activation, sigma_b2, depth and init

  A :class:`~meanfield.Network` given as ``network=`` supplies
  ``activation``, ``sigma_b2``, ``depth`` and ``init`` (its ``sigma_w2`` is
  what this function chooses, and is not read).

  Args:
    activation: a name, an :class:`~meanfield.Activation` or a callable.
    sigma_b2: bias variance ``>= 0``.
    init: weight law, ``"gaussian"`` or ``"orthogonal"`` (or a scheme with a ``law``).
    q_min, q_max: bounds on ``q*`` for the choice by isometry (``0 <= q_min < q_max``).
    depth: the depth ``L`` at which the Jacobian's mean and variance are
      reported (they do not change the choice), and the default depth of
      :meth:`CriticalInit.network`; for a transformer the number of blocks.
    arch: ``None`` (or a plain :class:`~meanfield.MLP`), or a
      :class:`~meanfield.Transformer`: its MLP gets the critical ``sigma_w2``
      chosen as above, and its residual strengths ``alpha_sa``, ``alpha_mlp`` are
      multiplied by the largest ``t`` in ``(0, 1]`` for which the token correlation
      after ``depth`` blocks from ``c_input`` (tokens of ``q = 1``) is at most
      ``c_max`` (the theory's :func:`meanfield.propagate`; ``beta`` and the other
      fields as given; ``docs/initialise.md``). The result's ``arch`` and ``extra``.
    c_max, c_input: the token correlation allowed after the blocks (default 0.9,
      the rank-collapse threshold of :func:`empirical.verdict`) and the inputs'.

  Returns:
    A :class:`CriticalInit` (Python floats, in the precision JAX runs in:
    enable 64-bit for ~1e-10). ``q_star`` is the length a network reaches
    (the rule of :func:`meanfield.critical_sigma_w2`). Where a range of
    lengths is fixed to rounding it is the bottom of the range: leaky ReLU at
    ``sigma_b2 = 0`` (the q-map is the identity) has ``q* = 0``, as ReLU at
    the He point; hard_tanh at ``sigma_b2 = 0`` (``sigma_w2 = 1``) has
    ``q* = 0``: its q-map ``E[clip(sqrt(q) z, -1, 1)^2]`` is below ``q`` at
    every ``q > 0``, so 0 is the only fixed point and a network's length
    decreases towards it from any input, by a relative ``3e-3`` per layer at
    ``q = 0.1``, ``1.5e-5`` at ``0.05`` and ``3e-12`` at ``0.02`` (below
    about ``0.02`` a finite network keeps its input length to rounding);
    there ``chi_1 = 1`` and ``xi_q = inf`` are the limits ``q -> 0+``.

  Raises:
    ValueError: unknown activation or init; both or neither of ``sigma_b2``
      and ``q_max``; negative or non-scalar numbers; ``q_max <= q_min``; an
      activation whose critical line does not reach ``sigma_b2`` (ReLU and
      linear reach only ``sigma_b2 = 0``: with a bias, ``q*`` is infinite at
      ``chi_1 = 1``) or ``[q_min, q_max]``.
  """
  act = _activation(activation)
  law = weight_law(init)
  if depth is not None:
    depth = _checks.check_positive_int("depth", depth)
  if isinstance(arch, MLP):
    check_variants("critical_init", arch)
    arch = None
  if not (arch is None or isinstance(arch, Transformer)):
    raise ValueError(f"`arch` must be None, MLP() or a meanfield.Transformer for "
                     f"critical_init, got {arch!r}")
  if arch is not None and (depth is None or arch.causal):
    _transformer_strength(act, arch, 1.0, 0.0, depth, c_max, c_input)   # raises
  q_min = _scalar("q_min", q_min, "a length")
  if (sigma_b2 is None) == (q_max is None):
    raise ValueError("give exactly one of `sigma_b2` (the point of the critical line with that "
                     "bias variance) and `q_max` (the most isometric point with q* in "
                     f"[q_min, q_max]), got sigma_b2={sigma_b2!r}, q_max={q_max!r}")
  if sigma_b2 is not None:
    sigma_b2 = _scalar("sigma_b2", sigma_b2, "a variance")
    sigma_w2, q_line, _ = critical_point(act, np.asarray(sigma_b2))
    sigma_w2, q_line = float(np.asarray(sigma_w2)), float(np.asarray(q_line))
    if not np.isfinite(sigma_w2):
      raise ValueError(
          f"`sigma_b2` = {sigma_b2!r} has no critical point for activation {act.name!r}: the "
          "critical line chi_1 = 1 does not reach it (for ReLU and linear only sigma_b2 = 0 "
          "does; with a bias, q* is infinite where chi_1 = 1)")
  else:
    q_max = _scalar("q_max", q_max, "a length")
    if not q_max > q_min:
      raise ValueError(f"`q_max` must be > q_min = {q_min!r}, got {q_max!r}")
    q_line = _most_isometric(act, law, q_min, q_max)
    line = critical_line(q_line, activation=act)
    sigma_w2 = float(np.asarray(line.sigma_w2))
    sigma_b2 = max(float(np.asarray(line.sigma_b2)), 0.0)
  q = _q_star(sigma_w2=sigma_w2, sigma_b2=sigma_b2, activation=act)
  q_reached, reached = reached_length(act, jnp.asarray(q_line, q.dtype), q,
                                      *(jnp.asarray(v, q.dtype) for v in (sigma_w2, sigma_b2)))
  q = float(np.asarray(q))
  if not np.isfinite(q):
    raise ValueError(f"activation {act.name!r} has no finite q* at the critical point "
                     f"(sigma_w2={sigma_w2:g}, sigma_b2={sigma_b2:g})")
  if not bool(reached):
    chi = float(np.asarray(_chi_1(sigma_w2=sigma_w2, sigma_b2=sigma_b2, activation=act, q=q)))
    raise ValueError(
        f"`sigma_b2` = {sigma_b2!r}: the critical line of {act.name!r} passes there through an "
        f"unstable fixed point of the length map; the network's length goes to q* = {q:g}, "
        f"where chi_1 = {chi:g}, not 1")
  q = float(np.asarray(q_reached))
  chi = float(np.asarray(_chi_1(sigma_w2=sigma_w2, sigma_b2=sigma_b2, activation=act, q=q)))
  slope = q_map_slope(q, sigma_w2=sigma_w2, sigma_b2=sigma_b2, activation=act)
  mean = variance = None
  if depth is not None:
    moments = jacobian_moments(activation=act, sigma_w2=sigma_w2, sigma_b2=sigma_b2,
                               depth=depth, init=law, q=q)
    mean, variance = float(np.asarray(moments.mean)), float(np.asarray(moments.variance))
  extra = {}
  if arch is not None:
    arch, extra = _transformer_strength(act, arch, sigma_w2, sigma_b2, depth, c_max, c_input)
  return CriticalInit(
      activation=activation, init=law, sigma_w2=sigma_w2, sigma_b2=sigma_b2, q_star=q,
      chi_1=chi, xi_q=float(np.asarray(depth_scale(slope))), xi_c=float("inf"), depth=depth,
      jacobian_mean=mean, jacobian_variance=variance,
      kernel_init=kernel_initializer(sigma_w2, law), bias_init=bias_initializer(sigma_b2),
      arch=arch, extra=extra)
