"""Mean-field theory of a stack of transformer blocks: token norms and rank collapse.

A block acts on ``T`` tokens ``x_1 .. x_T`` of width ``d`` (the Network's
``width``) with self-attention, then an MLP, each a residual branch; the
LayerNorm ``LN`` sits before each branch (``norm="pre"``), after each sum
(``"post"``) or nowhere (``None``)::

  pre:   x <- x + alpha_sa Attn(LN(x));   x <- x + alpha_mlp MLP(LN(x))
  post:  x <- LN(x + alpha_sa Attn(x));   x <- LN(x + alpha_mlp MLP(x))
  None:  x <- x + alpha_sa Attn(x);       x <- x + alpha_mlp MLP(x)

``Attn(x)_i = W_O concat_h(W_V^h sum_j A^h_ij x_j)`` with ``W_V`` entries of
variance ``sigma_v2 / d``, ``W_O`` of ``sigma_o2 / d``, the attention of head
``h`` (of ``H = heads``, width ``d_h = d / H``) ``A^h_ij = softmax_j(s^h_ij)``
of the scores

.. math::

  s^h_{ij} = \\beta \\sqrt{\\log T / d_h}\\; \\langle W_Q^h x_i, W_K^h x_j \\rangle,

``W_Q^h, W_K^h`` (``d x d_h``) of entries of variance ``1 / d``. For one head
``beta`` is the inverse temperature of Giorlandino & Goldt 2025 (arXiv
2505.24333; their query/key standard deviation
``sqrt(beta) (log T)^{1/4} / sqrt(d_h)`` with scores over ``sqrt(d_h)``),
and ``beta = 0`` is uniform attention (zero queries). ``MLP(x)_i = W_2
phi(W_1 x_i + b_1) + b_2`` with the Network's ``sigma_w2``, ``sigma_b2`` and
``activation`` (entries ``sigma_w2 / d``, biases ``sigma_b2``).

The state after block ``l``: ``q`` (mean ``|x_i|^2 / d``), ``p`` (mean
``x_i . x_j / d`` over pairs ``i != j``) and the token correlation ``c = p /
q`` (rank collapse: ``c -> 1``), all pairs alike. At infinite ``d`` the
branches add their Gram matrices (fresh zero-mean weights: no cross terms),
``LN`` maps ``(q, p)`` to ``(1, p / q)``, the MLP branch is the MLP's q- and
c-maps (:mod:`meanfield.maps`) two layers deep, and attention of the token
overlaps ``(q, p)`` gives ``(q_att, p_att) = (p + (q - p) w_2, p + (q - p)
w_x)`` before ``sigma_v2 sigma_o2``:

- ``beta = 0``: every token's output is the token mean: ``w_2 = w_x = 1/T``,
  exact for any ``T``.
- ``beta > 0``: the large-``T`` random-energy-model theory of Giorlandino &
  Goldt 2025: ``w_x = 0``, ``w_2 = max(0, 1 - beta_c / beta)`` with
  ``beta_c = sqrt(2 / (q (q - p)))``; finite-``T`` corrections are of order
  ``T^{beta^2 q (q - p) - 1}`` (docs/transformer.md).

Derivations and sources: docs/transformer.md.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from meanfield import _checks
from meanfield._integrals import as_arrays, correlation_map, second_moments
from meanfield.activations import Activation
from meanfield.depth import DepthScales, depth_scale
from meanfield.fixed_points import FixedPoint
from meanfield.maps import Propagation
from meanfield.network import Architecture

__all__ = ["Transformer"]

Array = jax.Array
ArrayLike = Any
NORMS = ("pre", "post", None)
_BISECTIONS = 80


def _attention(q, gap, tokens, beta):
  """``(q_att, gap_att)`` of ``sum_j A_ij x_j`` for tokens of length ``q`` and ``q - p = gap``."""
  p = q - gap
  qg = q * gap
  beta_c = jnp.sqrt(2 / jnp.where(qg > 0, qg, 1.0))
  y2 = jnp.where((qg > 0) & (beta > beta_c), 1 - beta_c / jnp.where(beta > 0, beta, 1.0), 0.0)
  w2 = jnp.where(beta == 0, 1 / tokens, y2)
  wx = jnp.where(beta == 0, 1 / tokens, 0.0)
  return p + gap * w2, gap * (w2 - wx)


def _mlp(act, sigma_w2, sigma_b2, q, gap):
  """``(q_b, gap_b)`` of ``W_2 phi(W_1 x + b_1) + b_2`` on tokens ``(q, gap)``."""
  q_h = sigma_w2 * q + sigma_b2
  c_h = 1 - sigma_w2 * gap / jnp.where(q_h > 0, q_h, 1.0)
  q_b, c_b = correlation_map(act, sigma_w2, sigma_b2, q_h, c_h)
  return q_b, jnp.where(q_b > 0, q_b * (1 - c_b), 0.0)


def _block(act, norm, tokens, sigma_w2, sigma_b2, beta, s, a2_sa, a2_mlp, q, gap):
  """One block: ``(q, gap)`` of its output from those of its input (``gap = q - p``)."""
  def ln(q, gap):
    return jnp.ones_like(q), gap / q

  q_in, g_in = ln(q, gap) if norm == "pre" else (q, gap)
  q_a, g_a = _attention(q_in, g_in, tokens, beta)
  q, gap = q + a2_sa * s * q_a, gap + a2_sa * s * g_a
  if norm == "post":
    q, gap = ln(q, gap)
  q_in, g_in = ln(q, gap) if norm == "pre" else (q, gap)
  q_b, g_b = _mlp(act, sigma_w2, sigma_b2, q_in, g_in)
  q, gap = q + a2_mlp * q_b, gap + a2_mlp * g_b
  if norm == "post":
    q, gap = ln(q, gap)
  return q, gap


@functools.partial(jax.jit, static_argnames=("act", "norm", "tokens", "depth"))
def _propagate(act, norm, tokens, depth, sigma_w2, sigma_b2, beta, s, a2_sa, a2_mlp, q_input,
               c_input):
  """``(q, c, p, rate, beta_c)``, each ``batch + (depth,)``: after blocks ``1..depth``
  (``beta_c`` of each block's attention input)."""
  args = as_arrays(sigma_w2, sigma_b2, beta, s, a2_sa, a2_mlp, q_input, c_input)
  shape = jnp.broadcast_shapes(*(a.shape for a in args))
  sigma_w2, sigma_b2, beta, s, a2_sa, a2_mlp, q_input, c_input = (
      jnp.broadcast_to(a, shape) for a in args)
  gap0 = q_input * (1 - c_input)

  def step(carry, _):
    q, gap = carry
    out = _block(act, norm, tokens, sigma_w2, sigma_b2, beta, s, a2_sa, a2_mlp, q, gap)
    # the critical inverse temperature of the block's attention input
    qg = gap / q if norm == "pre" else q * gap
    beta_c = jnp.sqrt(2 / jnp.where(qg > 0, qg, 0.0))
    return out, (*out, (out[1] / out[0]) / (gap / q), beta_c)

  _, (qs, gaps, rate, beta_c) = jax.lax.scan(step, (q_input, gap0), None, length=depth)
  last = lambda a: jnp.moveaxis(a, 0, -1)
  return last(qs), last(1 - gaps / qs), last(qs - gaps), last(rate), last(beta_c)


def _post_gap_map(act, tokens, params, gap):
  """The Post-LN block's map of ``1 - c`` (its output has ``q = 1``)."""
  return _block(act, "post", tokens, *params, jnp.ones_like(gap), gap)[1]


#: Where the Post-LN map of ``1 - c`` is scanned for the fixed point's bracket (fractions of
#: the largest gap ``T / (T - 1)``): geometric towards 0, then even.
_GRID = np.concatenate([np.geomspace(1e-9, 1e-2, 48, endpoint=False), np.linspace(1e-2, 1, 208)])


def _bracket(g_grid, grid, gap0, g0):
  """``(lo, hi, found)``: the grid cell holding the fixed point that ``1 - c`` moves to from
  ``gap0`` (``g0 = g(gap0)``; ``g = map - identity``, ``> 0`` at ``lo``, ``<= 0`` at ``hi``)."""
  below = (grid < gap0[..., None]) & (g_grid >= 0)    # going down: the largest such point
  k_down = grid.shape[-1] - 1 - jnp.argmax(below[..., ::-1], axis=-1)
  above = (grid > gap0[..., None]) & (g_grid <= 0)    # going up: the smallest such point
  k_up = jnp.argmax(above, axis=-1)
  take = lambda k: jnp.take_along_axis(grid, k[..., None], axis=-1)[..., 0]
  nxt = jnp.minimum(k_down + 1, grid.shape[-1] - 1)
  lo = jnp.where(g0 < 0, take(k_down), jnp.maximum(take(jnp.maximum(k_up - 1, 0)), gap0))
  hi = jnp.where(g0 < 0, jnp.minimum(take(nxt), gap0), take(k_up))
  lo = jnp.where((g0 > 0) & (k_up == 0), gap0, lo)
  found = jnp.where(g0 < 0, jnp.any(below, axis=-1), jnp.any(above, axis=-1))
  return lo, hi, found


@functools.partial(jax.jit, static_argnames=("act", "tokens"))
def _post_fixed_point(act, tokens, sigma_w2, sigma_b2, beta, s, a2_sa, a2_mlp, c_input):
  """``(c*, chi_1, chi_c)`` of the Post-LN block's c-map (on ``q = 1``), reached from ``c_input``."""
  params = tuple(jnp.broadcast_arrays(*as_arrays(sigma_w2, sigma_b2, beta, s, a2_sa, a2_mlp,
                                                 c_input)))
  params, c_input = params[:-1], params[-1]
  sigma_w2, sigma_b2, _, s, a2_sa, a2_mlp = params
  # slope at c = 1 (docs/transformer.md): attention keeps no gap there, the MLP's chi_1
  m2, dm2 = second_moments(act, sigma_w2 + sigma_b2)
  q_b = sigma_w2 * m2 + sigma_b2
  chi_1 = (1 + a2_mlp * sigma_w2 * sigma_w2 * dm2) / ((1 + a2_sa * s) * (1 + a2_mlp * q_b))
  g = lambda gap, ps=params: _post_gap_map(act, tokens, ps, gap) - gap
  top = tokens / (tokens - 1)                                   # c = -1/(T - 1)
  shape = c_input.shape + (_GRID.size,)
  grid = jnp.broadcast_to(jnp.asarray(top * _GRID, c_input.dtype), shape)
  wide = tuple(jnp.broadcast_to(p[..., None], shape) for p in params)
  gap0 = 1 - c_input
  g0 = g(gap0)
  lo, hi, found = _bracket(g(grid, wide), grid, gap0, g0)

  def bisect(_, bounds):
    lo, hi = bounds
    mid = (lo + hi) / 2
    up = g(mid) > 0
    return jnp.where(up, mid, lo), jnp.where(up, hi, mid)

  lo, hi = jax.lax.fori_loop(0, _BISECTIONS, bisect, (lo, hi))
  gap_star = jnp.where(g0 == 0, gap0, jnp.where(found, (lo + hi) / 2, 0.0))
  inside = gap_star > 0
  safe = jnp.where(inside, gap_star, 0.5)
  slope = jax.jvp(lambda x: _post_gap_map(act, tokens, params, x), (safe,),
                  (jnp.ones_like(safe),))[1]
  return 1 - gap_star, chi_1, jnp.where(inside, slope, chi_1)


def _number(name: str, value: Any, ok, allowed: str) -> float:
  """One real number, checked, as a Python float (ValueError else)."""
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer,
                                                                   np.floating)):
    raise ValueError(f"`{name}` must be one real number {allowed}, got {value!r}")
  if not (np.isfinite(value) and ok(value)):
    raise ValueError(f"`{name}` must be {allowed}, got {value!r}")
  return float(value)


def _positive_int(name: str, value: Any, minimum: int, what: str) -> int:
  if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
      or value < minimum:
    raise ValueError(f"`{name}` must be an integer >= {minimum} ({what}), got {value!r}")
  return int(value)


@dataclasses.dataclass(frozen=True)
class Transformer(Architecture):
  """A stack of transformer blocks: the architecture value of :class:`meanfield.Network`.

  ``Network(activation=..., sigma_w2=..., sigma_b2=..., depth=L, width=d,
  arch=Transformer(tokens=T, ...))``: ``depth`` is the number of blocks,
  ``width`` the model width ``d``, and ``sigma_w2``, ``sigma_b2``,
  ``activation`` are the blocks' MLP's. The block, the scores' scale and the
  maps are in the module docstring; derivations in docs/transformer.md.

  Attributes:
    tokens: ``T``, the number of tokens, an integer ``>= 2``.
    heads: ``H >= 1`` attention heads (each of width ``d / H``; the theory does
      not depend on it at infinite width, the experiment needs ``H | d``).
    beta: the inverse temperature ``>= 0`` of the scores (module docstring;
      Giorlandino & Goldt's ``beta`` for one head); 0 is uniform attention.
    sigma_v2, sigma_o2: the value and output variances ``>= 0`` (only their
      product enters the theory).
    alpha_sa, alpha_mlp: the residual branches' strengths ``> 0``; pass
      ``1 / sqrt(depth)`` for the ``1/sqrt(L)`` scaling (Noci et al. 2022).
      They multiply the branch; Giorlandino & Goldt's ``alpha_A`` multiplies
      the skip, which under Post-LN is ``alpha_sa^2 sigma_v2 sigma_o2 =
      var_v / alpha_A^2``.
    norm: ``"pre"`` (default), ``"post"`` or ``None``: where the LayerNorm sits.
    causal: causal masking; the experiment runs it, the theory does not cover it
      (the tokens are not exchangeable) and its hooks raise ``ValueError``.

  Each field is one number (stored as a Python float or int), so the value is
  hashable, compares by value and is recorded in a sweep's Dataset; the grid of
  a theory call is in the Network's variances and the inputs, which broadcast.

  Inputs: ``q_input`` (the tokens' ``|x_i|^2 / d``, ``>= 0``) and ``c_input``
  (every pair's cosine, in ``[-1/(T-1), 1]``).

  Results:

  - ``propagate``: a :class:`meanfield.Propagation` over blocks ``batch +
    (depth,)``: ``q``, ``c`` after each block; ``chi_1`` nan (the block's
    gradient factor is not derived here); ``extra={"p": p, "rate": (1 -
    c^l) / (1 - c^{l-1})`` (the per-block rate of rank collapse), ``"beta_c":
    sqrt(2 / (q (q - p)))`` of block ``l``'s attention input (inf where its
    tokens are aligned; attention condenses where ``beta > beta_c``)}``.
  - ``fixed_point`` (``norm="post"`` only: without a LayerNorm after each sum
    the length grows with depth and ``c`` has no fixed point at finite
    length): ``q* = 1``; ``c*``, the fixed point of the block's c-map that
    the tokens reach from ``c_input`` (default 0; the map may have several:
    with softmax attention above ``beta_c`` a stable ``c* < 1`` can coexist with
    the collapse ``c* = 1``; found by scanning 256 gaps and bisecting, so two
    roots closer than one grid cell are missed); ``chi_1`` (the c-map's slope at
    ``c = 1``), ``chi_c`` (at ``c*``), ``xi_q = 0``, ``xi_c = -1/log chi_c``,
    the depth scale of ``1 - c``.
  - ``depth_scales``: ``xi_q``, ``xi_c`` of ``fixed_point`` (same ``c_input``).
  """

  tokens: int
  heads: int = 1
  beta: float = 0.0
  sigma_v2: float = 1.0
  sigma_o2: float = 1.0
  alpha_sa: float = 1.0
  alpha_mlp: float = 1.0
  norm: str | None = "pre"
  causal: bool = False

  inputs = ("q_input", "c_input")
  stationary_inputs = ("c_input",)

  def __post_init__(self):
    set_ = functools.partial(object.__setattr__, self)
    set_("tokens", _positive_int("tokens", self.tokens, 2, "the number of tokens T"))
    set_("heads", _positive_int("heads", self.heads, 1, "attention heads"))
    set_("beta", _number("beta", self.beta, lambda b: b >= 0,
                                  ">= 0 (the scores' inverse temperature)"))
    for name in ("sigma_v2", "sigma_o2"):
      set_(name, _number(name, getattr(self, name), lambda v: v >= 0, ">= 0 (a variance)"))
    for name in ("alpha_sa", "alpha_mlp"):
      set_(name, _number(name, getattr(self, name), lambda a: a > 0,
                                  "> 0 (a residual branch's strength)"))
    if self.norm not in NORMS:
      raise ValueError(f"`norm` must be one of 'pre', 'post', None, got {self.norm!r}")
    if not isinstance(self.causal, (bool, np.bool_)):
      raise ValueError(f"`causal` must be True or False, got {self.causal!r}")
    set_("causal", bool(self.causal))

  def replace(self, **changes) -> Transformer:
    """A copy with ``changes`` applied (validated again)."""
    return dataclasses.replace(self, **changes)

  def _theory(self, fn: str) -> tuple:
    if self.causal:
      raise ValueError(f"`causal` must be False for `{fn}`: with causal masking token i "
                       f"attends to tokens 1..i only, the tokens are not exchangeable and the "
                       f"one-overlap theory does not hold (the experiment runs it)")
    return (self.beta, self.sigma_v2 * self.sigma_o2, self.alpha_sa ** 2, self.alpha_mlp ** 2)

  def _inputs(self, q_input, c_input):
    q_input = _checks.nonnegative("q_input", q_input, "a length")
    low = -1 / (self.tokens - 1)
    _checks.check("c_input", c_input, lambda c: (c >= low) & (c <= 1),
                  f"in [-1/(T-1), 1] = [{low:g}, 1] (all pairs of T = {self.tokens} tokens "
                  f"alike)")
    return q_input, _checks.real("c_input", c_input)

  def propagate(self, act: Activation, depth: int, sigma_w2, sigma_b2, *, q_input, c_input):
    """``q``, ``c`` after blocks ``1..depth`` from tokens of ``q_input``, ``c_input``."""
    arch = self._theory("propagate")
    q_input, c_input = self._inputs(q_input, c_input)
    q, c, p, rate, beta_c = _propagate(act, self.norm, self.tokens, depth, sigma_w2, sigma_b2,
                                       *arch, q_input, c_input)
    return Propagation(q=q, c=c, chi_1=jnp.full_like(q, jnp.nan),
                       extra={"p": p, "rate": rate, "beta_c": beta_c})

  def fixed_point(self, act: Activation, sigma_w2, sigma_b2, *, c_input: ArrayLike = 0.0):
    """The Post-LN token-correlation fixed point reached from ``c_input`` (class docstring)."""
    arch = self._theory("fixed_point")
    if self.norm != "post":
      raise ValueError(
          f"`norm` must be 'post' for `fixed_point` of a Transformer, got {self.norm!r}: "
          f"without a LayerNorm after each residual sum the token length grows with depth "
          f"and the correlation has no fixed point at finite length (use propagate)")
    _, c_input = self._inputs(1.0, c_input)
    c, chi_1, chi_c = _post_fixed_point(act, self.tokens, sigma_w2, sigma_b2, *arch, c_input)
    one = jnp.ones_like(c)
    converged = jnp.isfinite(c)
    return FixedPoint.broadcast(one, c, chi_1, chi_c, jnp.zeros_like(c), depth_scale(chi_c),
                                converged)

  def depth_scales(self, act: Activation, sigma_w2, sigma_b2, *, c_input: ArrayLike = 0.0):
    """``xi_q = 0`` and ``xi_c`` of :meth:`fixed_point` (Post-LN, reached from ``c_input``)."""
    fp = self.fixed_point(act, sigma_w2, sigma_b2, c_input=c_input)
    return DepthScales(xi_q=fp.xi_q, xi_c=fp.xi_c)
