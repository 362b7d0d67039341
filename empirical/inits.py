"""Weight initialization schemes: one table entry per scheme.

Every scheme is an :class:`Init`: a *standard* draw, made once per network,
and a *scale*, a number that depends on the hyperparameters. The weights are

.. math::

  W = \\mathrm{scale}(\\sigma_w^2, n_\\mathrm{in}, n_\\mathrm{out})
      \\cdot \\mathrm{standard}(\\mathrm{key}, (n_\\mathrm{in}, n_\\mathrm{out})).

Splitting the two is what lets a sweep draw a network's random numbers once
and reuse them for every ``sigma_w2`` (common random numbers): only the scale
changes across a hyperparameter grid.

Weights have Flax's kernel layout ``(fan_in, fan_out)``: ``h = x @ W``.
(PyTorch stores ``(fan_out, fan_in)``; the fans below are the same.)

Three kinds of schemes:

- **by variance, in the theory's parametrisation** (Poole et al. 2016):
  ``E[W_ij^2] = sigma_w2 / fan_in``. ``gaussian`` (exact normal, what
  mean-field theory assumes), ``uniform``, ``truncated_normal`` (normal cut
  at two standard deviations and rescaled to the same variance; this is
  Flax's default kernel init) and ``orthogonal`` (``W^T W = sigma_w2 I`` for
  square ``W``; Haar-distributed, drawn with matrix products only, no
  LAPACK QR, at about twice the cost of a Gaussian draw of the same shape).
  These take ``sigma_w2``.
- **by absolute standard deviation**, as in everyday scripts:
  :func:`normal` ``(std)``, :func:`constant` ``(value)`` and ``zeros``.
- **named presets**: ``xavier_normal``, ``xavier_uniform``, ``he_normal``,
  ``he_uniform``, ``lecun_normal``.

The last two kinds fix the variance themselves and *ignore* ``sigma_w2``:
passing both raises ``ValueError``, and a sweep over such schemes has no
``sigma_w2`` axis. Their variance in the theory's terms is
:meth:`Init.sigma_w2_effective` (``fan_in * E[W_ij^2]``), which a sweep
records per layer so that theory can be put beside it.

Biases are ``N(0, sigma_b2)``; ``sigma_b2 = 0`` gives zeros (see
:func:`bias_initializer`).

A new scheme is one entry in :data:`INITS`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.nn import initializers as jinit

from empirical import _checks

__all__ = [
    "Init", "INITS", "init", "init_names", "normal", "constant",
    "bias_initializer",
]

Array = jax.Array
Standard = Callable[[Array, tuple[int, ...], Any], Array]


@dataclasses.dataclass(frozen=True)
class Init:
  """An initialization scheme: a standard draw times a scale.

  Attributes:
    name: registry name; for parametrised schemes the call that builds it,
      e.g. ``"normal(0.01)"`` (:func:`init` parses it back).
    standard: ``(key, shape, dtype) -> Array`` for ``shape = (fan_in,
      fan_out)``; the unit draw, independent of any hyperparameter.
    scale_fn: ``(sigma_w2, fan_in, fan_out) -> scalar`` multiplying the
      standard draw; traceable in ``sigma_w2`` (so a sweep vmaps over it).
    unit_second_moment: ``(fan_in, fan_out) -> float``, ``E[standard_ij^2]``.
    uses_sigma_w2: whether the scale depends on ``sigma_w2`` (schemes by
      variance) or the scheme fixes it (presets, absolute std).
    torch, keras: the equivalent call in ``torch.nn.init`` and Keras.
    law: the weight law the theory reads (:func:`meanfield.network.weight_law`):
      ``"gaussian"`` for i.i.d. zero-mean entries (at infinite width every
      such law of one variance has the Gaussian's theory), ``"orthogonal"``
      for scaled Haar matrices, ``None`` for schemes without one (``zeros``,
      ``constant``; and by default your own, until you say which it is).

  Two schemes compare equal when their names (and flags) are equal.
  """

  name: str
  standard: Standard = dataclasses.field(repr=False, compare=False)
  scale_fn: Callable[..., Any] = dataclasses.field(repr=False, compare=False)
  unit_second_moment: Callable[[int, int], float] = dataclasses.field(
      repr=False, compare=False)
  uses_sigma_w2: bool = True
  torch: str = ""
  keras: str = ""
  law: str | None = None

  def scale(self, sigma_w2, fan_in: int, fan_out: int):
    """The multiplier of the standard draw; ``sigma_w2`` is ignored by presets."""
    return self.scale_fn(sigma_w2, fan_in, fan_out)

  def sigma_w2_effective(self, sigma_w2, fan_in: int, fan_out: int):
    """``fan_in * E[W_ij^2]``: the scheme's ``sigma_w2`` in the theory's terms."""
    return self.scale(sigma_w2, fan_in, fan_out) ** 2 * (
        self.unit_second_moment(fan_in, fan_out) * fan_in)

  def check_sigma_w2(self, sigma_w2) -> None:
    """Raise ``ValueError`` unless ``sigma_w2`` suits this scheme.

    Schemes by variance need a finite ``sigma_w2 >= 0``; presets and schemes
    by absolute std need ``None``.
    """
    if self.uses_sigma_w2:
      if sigma_w2 is None:
        raise ValueError(
            f"`sigma_w2` must be given (a finite number >= 0) for init "
            f"{self.name!r}, got None")
      _checks.check_variance("sigma_w2", sigma_w2)
    elif sigma_w2 is not None:
      raise ValueError(
          f"`sigma_w2` must be None for init {self.name!r}, which fixes the "
          f"weight variance itself, got {sigma_w2!r}; use init='gaussian' "
          f"(or 'uniform', 'truncated_normal', 'orthogonal') to set sigma_w2")

  def initializer(self, sigma_w2=None) -> Callable[..., Array]:
    """A ``jax.nn.initializers``-style ``(key, shape, dtype) -> Array``.

    ``shape`` is ``(fan_in, fan_out)``; the result has ``dtype`` (default
    float32 or float64 under x64).
    """
    self.check_sigma_w2(sigma_w2)

    def init_fn(key, shape, dtype=None):
      if len(shape) != 2:
        raise ValueError(
            f"`shape` must be (fan_in, fan_out), got {tuple(shape)}")
      dtype = _checks.float_dtype(dtype)
      w = self.standard(key, tuple(shape), dtype)
      return (w * jnp.asarray(self.scale(sigma_w2, *shape), dtype)).astype(dtype)

    return init_fn


# --- standard draws -------------------------------------------------------

def _fan_in_standard(distribution: str) -> Standard:
  # Variance 1/fan_in, exactly (jax corrects the truncated normal's std).
  return jinit.variance_scaling(1.0, "fan_in", distribution)


def _orthogonal_standard(key, shape, dtype):
  """Haar draw of shape ``(fan_in, fan_out)``.

  ``W W^T = I`` if ``fan_in <= fan_out`` (orthonormal rows), else ``W^T W = I``.
  """
  fan_in, fan_out = shape
  if fan_in <= fan_out:
    return _haar_rows(key, fan_in, fan_out, dtype)
  return _haar_rows(key, fan_out, fan_in, dtype).T


# Householder reflectors per block of :func:`_haar_rows` (256 x 256 float32 on
# a 2-core CPU: 16 and 64 were no faster than 32).
_BLOCK = 32


def _haar_rows(key: Array, k: int, n: int, dtype) -> Array:
  """A Haar-distributed ``(k, n)`` float matrix with orthonormal rows, ``1 <= k <= n``.

  The transpose of the ``Q`` of a QR factorisation, with positive diagonal
  ``R``, of an ``(n, k)`` standard Gaussian matrix, drawn as Stewart (1980)
  does: Householder QR of a Gaussian matrix meets, at step ``j``, a column
  below the diagonal that is a fresh ``N(0, I_{n-j})`` vector (rotational
  invariance), so the reflectors are drawn directly and ``Q = H_1 ... H_k
  D`` with ``D`` the signs that make ``R``'s diagonal positive. Exact in
  distribution (Haar on the Stiefel manifold; on ``O(n)`` for ``k = n``).

  It draws about ``n k - k^2 / 2`` normals rather than ``n k``, and forms
  ``Q^T = D H_k ... H_1`` with matrix products only, about ``4/3 n^3``
  flops for ``k = n``, in blocks of ``_BLOCK`` reflectors (compact WY form,
  Schreiber & Van Loan 1989): no LAPACK call, so it batches and runs inside
  any program. Rows orthonormal to rounding (``|Q^T Q - I|`` about ``1e-6``
  in float32 at ``n = 256``, ``1e-15`` in float64).
  """
  b = min(_BLOCK, k)
  count = sum((n - s) * min(b, k - s) for s in range(0, k, b))
  # An even count: threefry makes pairs, and an odd count ran 4x slower.
  return _householder_product(k, n)(jax.random.normal(key, (count + count % 2,), dtype))


@functools.cache
def _householder_product(k: int, n: int) -> Callable[[Array], Array]:
  """``z -> Q^T`` of :func:`_haar_rows` for normals ``z``, unbatched under a vmap of one.

  A sweep on the CPU vmaps groups of one network; its batch-of-one matrix
  products ran 30% slower than plain ones, so a batch of one is drawn as a
  single matrix (the same numbers).
  """

  # Jitted, so that a draw outside any program (a user's or a test's) is one compiled
  # program instead of hundreds of eager operations, each compiled for its shape.
  rows = jax.jit(lambda z: _householder_rows(z, k, n))

  @jax.custom_batching.custom_vmap
  def product(z):
    return rows(z)

  @product.def_vmap
  def _rule(axis_size, in_batched, z):
    if not in_batched[0]:
      return product(z), False
    if axis_size == 1:
      return product(z[0])[None], True
    return jax.vmap(rows)(z), True

  return product


def _householder_rows(z: Array, k: int, n: int) -> Array:
  """``Q^T`` ``(k, n)`` from the normals ``z`` of :func:`_haar_rows`."""
  dtype = z.dtype
  b = min(_BLOCK, k)
  starts = range(0, k, b)
  blocks, offset = [], 0
  for s in starts:
    width = min(b, k - s)
    blocks.append(_reflectors(z[offset:offset + width * (n - s)].reshape(width, n - s)))
    offset += width * (n - s)
  # Block j (reflectors s..s+b-1, acting on coordinates s..) is
  # I - V T V^T; on the rows, P -> P - ((P V) T^T) V^T.
  grams = [jnp.pad(v_t @ v_t.T, [(0, b - v_t.shape[0])] * 2) for v_t, _ in blocks]
  ts = _compact_wy_t(jnp.stack(grams))
  p = None
  for j in reversed(range(len(starts))):
    v_t, sign = blocks[j]
    width, length = v_t.shape
    # The rows before s + width are still signed unit vectors.
    head = jnp.eye(width, length, dtype=dtype) * sign[:, None]
    if p is not None:
      rows, cols = p.shape
      head = jnp.block([[head], [jnp.zeros((rows, width), dtype), p]])
    t = ts[j, :width, :width]
    p = head - ((head @ v_t.T) @ t.T) @ v_t
  return p


def _reflectors(x: Array) -> tuple[Array, Array]:
  """Unit Householder vectors (rows) and signs from Gaussians ``x`` ``(b, m)``.

  Row ``i`` is the reflector of the Gaussian vector ``x[i, i:]``, sending
  it to ``-sign(x_ii) |x[i, i:]| e_i`` (zeros before ``i``); its sign
  ``-sign(x_ii)`` is that of ``R_ii`` in a QR. Returns ``(v, sign)`` of
  shapes ``(b, m)`` and ``(b,)``.
  """
  rows, cols = np.arange(x.shape[0])[:, None], np.arange(x.shape[1])[None, :]
  x = jnp.where(cols >= rows, x, 0)
  diag = cols == rows
  norm = jnp.sqrt(jnp.sum(x * x, axis=1, keepdims=True))
  head = jnp.sum(jnp.where(diag, x, 0), axis=1, keepdims=True)
  sign = jnp.where(head >= 0, 1, -1).astype(x.dtype)
  # |x + sign |x| e_i|^2 = 2 |x| (|x| + |x_ii|).
  v = (x + jnp.where(diag, sign * norm, 0)) / jnp.sqrt(2 * norm * (norm + jnp.abs(head)))
  return v, -sign[:, 0]


def _compact_wy_t(gram: Array) -> Array:
  """``T`` with ``H_1 ... H_b = I - V T V^T``, from the Gram matrix ``(..., b, b)`` of unit ``V``.

  ``T`` is upper triangular with ``T^{-1} = I / 2 + triu(V^T V, 1)``
  (Puglisi 1992), built by doubling as LAPACK's ``larft`` does by columns:
  the ``T`` of two adjacent groups of reflectors is
  ``[[T1, -T1 (V1^T V2) T2], [0, T2]]``, which is stable (a Neumann series
  of the nilpotent part is not: float32 draws lost orthonormality to 7e-6).
  """
  b = gram.shape[-1]
  size = 1 << (b - 1).bit_length()                  # b rounded up to a power of two
  gram = jnp.pad(gram, [(0, 0)] * (gram.ndim - 2) + [(0, size - b)] * 2)
  lead = gram.shape[:-2]
  blocks = jnp.full((*lead, size, 1, 1), 2, gram.dtype)  # T of one unit reflector
  s = 1
  while s < size:
    starts = np.arange(0, size, 2 * s)[:, None, None]
    cross = gram[..., starts + np.arange(s)[:, None], starts + s + np.arange(s)]
    t1, t2 = blocks[..., 0::2, :, :], blocks[..., 1::2, :, :]
    top = jnp.concatenate([t1, -(t1 @ cross @ t2)], axis=-1)
    bottom = jnp.concatenate([jnp.zeros_like(t2), t2], axis=-1)
    blocks = jnp.concatenate([top, bottom], axis=-2)
    s *= 2
  return blocks[..., 0, :b, :b]


def _unit_normal(key, shape, dtype):
  return jax.random.normal(key, shape, dtype)


def _ones(key, shape, dtype):
  del key
  return jnp.ones(shape, dtype)


def _zeros(key, shape, dtype):
  del key
  return jnp.zeros(shape, dtype)


def _per_fan_in(fan_in, fan_out):
  del fan_out
  return 1.0 / fan_in


def _unit(fan_in, fan_out):
  del fan_in, fan_out
  return 1.0


def _by_variance(sigma_w2, fan_in, fan_out):
  del fan_in, fan_out
  return jnp.sqrt(sigma_w2)


def _orthogonal_scale(sigma_w2, fan_in, fan_out):
  # An orthogonal draw has E[W_ij^2] = 1/max(fan_in, fan_out); rescale so
  # that E[W_ij^2] = sigma_w2/fan_in in every case (for fan_in < fan_out the
  # rows are orthonormal and W W^T = sigma_w2 (fan_out/fan_in) I).
  return jnp.sqrt(sigma_w2 * max(1.0, fan_out / fan_in))


def _preset(gain2: Callable[[int, int], float]):
  def scale_fn(sigma_w2, fan_in, fan_out):
    del sigma_w2
    return math.sqrt(gain2(fan_in, fan_out))
  return scale_fn


def _xavier(fan_in, fan_out):
  return 2.0 * fan_in / (fan_in + fan_out)   # variance 2 / (fan_in + fan_out)


def _he(fan_in, fan_out):
  del fan_in, fan_out
  return 2.0                                 # variance 2 / fan_in


def _lecun(fan_in, fan_out):
  del fan_in, fan_out
  return 1.0                                 # variance 1 / fan_in


def _absolute(value: float):
  def scale_fn(sigma_w2, fan_in, fan_out):
    del sigma_w2, fan_in, fan_out
    return value
  return scale_fn


def _exact(value: float) -> str:
  """``value`` short (``%g``) when that reads back exactly, else its full ``repr``,
  so that a scheme's name determines it (``normal(0.5)``, ``normal(0.5000001)``)."""
  short = f"{value:g}"
  return short if float(short) == value else repr(value)


def normal(std: float) -> Init:
  """``W_ij ~ N(0, std^2)``, whatever the fan-in (``sigma_w2 = fan_in std^2``).

  torch: ``torch.nn.init.normal_(w, 0.0, std)``;
  Keras: ``keras.initializers.RandomNormal(0.0, std)``.
  """
  _checks.check_variance("std", std)
  std = float(std)
  return Init(f"normal({_exact(std)})", _unit_normal, _absolute(std), _unit,
              uses_sigma_w2=False, law="gaussian",
              torch=f"torch.nn.init.normal_(w, 0.0, {_exact(std)})",
              keras=f"keras.initializers.RandomNormal(0.0, {_exact(std)})")


def constant(value: float) -> Init:
  """``W_ij = value`` for every entry (not random; ``zeros`` is ``constant(0)``).

  torch: ``torch.nn.init.constant_(w, value)``;
  Keras: ``keras.initializers.Constant(value)``.
  """
  try:
    value = float(value)
  except (TypeError, ValueError):
    raise ValueError(f"`value` must be a finite number, got {value!r}") from None
  if not math.isfinite(value):
    raise ValueError(f"`value` must be a finite number, got {value!r}")
  return Init(f"constant({_exact(value)})", _ones, _absolute(value), _unit,
              uses_sigma_w2=False,
              torch=f"torch.nn.init.constant_(w, {_exact(value)})",
              keras=f"keras.initializers.Constant({_exact(value)})")


# name -> Init. Schemes by variance take sigma_w2; the rest fix the variance.
INITS: dict[str, Init] = {
    "gaussian": Init(
        "gaussian", _fan_in_standard("normal"), _by_variance, _per_fan_in,
        law="gaussian",
        torch="torch.nn.init.normal_(w, 0.0, (sigma_w2 / fan_in) ** 0.5)",
        keras="keras.initializers.VarianceScaling(sigma_w2, 'fan_in', 'untruncated_normal')"),
    "uniform": Init(
        "uniform", _fan_in_standard("uniform"), _by_variance, _per_fan_in,
        law="gaussian",
        torch="torch.nn.init.uniform_(w, -a, a), a = (3 sigma_w2 / fan_in) ** 0.5",
        keras="keras.initializers.VarianceScaling(sigma_w2, 'fan_in', 'uniform')"),
    "truncated_normal": Init(
        "truncated_normal", _fan_in_standard("truncated_normal"), _by_variance,
        _per_fan_in,
        law="gaussian",
        torch="torch.nn.init.trunc_normal_(w, 0.0, s / 0.8796, -2 s / 0.8796, 2 s / 0.8796), s = (sigma_w2 / fan_in) ** 0.5",
        keras="keras.initializers.VarianceScaling(sigma_w2, 'fan_in', 'truncated_normal')"),
    "orthogonal": Init(
        "orthogonal", _orthogonal_standard, _orthogonal_scale,
        lambda fan_in, fan_out: 1.0 / max(fan_in, fan_out),
        law="orthogonal",
        torch="torch.nn.init.orthogonal_(w, gain=sigma_w2 ** 0.5)  (square w)",
        keras="keras.initializers.Orthogonal(gain=sigma_w2 ** 0.5)  (square w)"),
    "xavier_normal": Init(
        "xavier_normal", _fan_in_standard("normal"), _preset(_xavier), _per_fan_in,
        uses_sigma_w2=False,
        law="gaussian",
        torch="torch.nn.init.xavier_normal_(w)",
        keras="keras.initializers.VarianceScaling(1.0, 'fan_avg', 'untruncated_normal') "
              "(keras.initializers.GlorotNormal truncates, same variance)"),
    "xavier_uniform": Init(
        "xavier_uniform", _fan_in_standard("uniform"), _preset(_xavier), _per_fan_in,
        uses_sigma_w2=False,
        law="gaussian",
        torch="torch.nn.init.xavier_uniform_(w)",
        keras="keras.initializers.GlorotUniform()"),
    "he_normal": Init(
        "he_normal", _fan_in_standard("normal"), _preset(_he), _per_fan_in,
        uses_sigma_w2=False,
        law="gaussian",
        torch="torch.nn.init.kaiming_normal_(w, nonlinearity='relu')",
        keras="keras.initializers.VarianceScaling(2.0, 'fan_in', 'untruncated_normal') "
              "(keras.initializers.HeNormal truncates, same variance)"),
    "he_uniform": Init(
        "he_uniform", _fan_in_standard("uniform"), _preset(_he), _per_fan_in,
        uses_sigma_w2=False,
        law="gaussian",
        torch="torch.nn.init.kaiming_uniform_(w, nonlinearity='relu')",
        keras="keras.initializers.HeUniform()"),
    "lecun_normal": Init(
        "lecun_normal", _fan_in_standard("normal"), _preset(_lecun), _per_fan_in,
        uses_sigma_w2=False,
        law="gaussian",
        torch="torch.nn.init.kaiming_normal_(w, nonlinearity='linear')",
        keras="keras.initializers.VarianceScaling(1.0, 'fan_in', 'untruncated_normal') "
              "(keras.initializers.LecunNormal truncates, same variance)"),
    "zeros": Init(
        "zeros", _zeros, _absolute(0.0), _unit, uses_sigma_w2=False,
        torch="torch.nn.init.zeros_(w)", keras="keras.initializers.Zeros()"),
}

_PARAMETRISED = {"normal": normal, "constant": constant}
_CALL = re.compile(r"^\s*(\w+)\s*\(\s*([^()]*?)\s*\)\s*$")


def init_names() -> tuple[str, ...]:
  """The registered scheme names, sorted (plus ``normal(std)``, ``constant(value)``)."""
  return tuple(sorted(INITS))


def _valid() -> str:
  return ", ".join(init_names()) + ", normal(std), constant(value)"


def init(spec: str | Init) -> Init:
  """The :class:`Init` for a name, a call string, or an ``Init``.

  Args:
    spec: a name from :data:`INITS` (``"gaussian"``, ``"he_normal"``, ...),
      a call string ``"normal(0.01)"`` / ``"constant(0.5)"`` (the ``name`` of
      what :func:`normal` and :func:`constant` return), or an :class:`Init`
      (returned unchanged).

  Raises:
    ValueError: for an unknown name, listing the valid ones.
  """
  if isinstance(spec, Init):
    return spec
  if isinstance(spec, str):
    if spec in INITS:
      return INITS[spec]
    m = _CALL.match(spec)
    if m and m.group(1) in _PARAMETRISED:
      try:
        arg = float(m.group(2))
      except ValueError:
        raise ValueError(
            f"`init` {spec!r} needs one number, e.g. 'normal(0.01)'") from None
      return _PARAMETRISED[m.group(1)](arg)
  raise ValueError(f"`init` must be one of {_valid()} or an Init, got {spec!r}")


def bias_initializer(sigma_b2) -> Callable[..., Array]:
  """``(key, shape, dtype) -> Array`` drawing ``b_i ~ N(0, sigma_b2)``.

  ``sigma_b2 = 0`` gives zeros (the everyday default). torch:
  ``torch.nn.init.normal_(b, 0.0, sigma_b2 ** 0.5)``; Keras:
  ``keras.initializers.RandomNormal(0.0, sigma_b2 ** 0.5)``.
  """
  _checks.check_variance("sigma_b2", sigma_b2)

  def init_fn(key, shape, dtype=None):
    dtype = _checks.float_dtype(dtype)
    return (jax.random.normal(key, shape, dtype)
            * jnp.asarray(math.sqrt(float(sigma_b2)), dtype))

  return init_fn
