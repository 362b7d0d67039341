"""The empirical neural tangent kernel of many random MLPs at once, as a Dataset.

:func:`ntk` draws ``n_seeds`` random MLPs (:mod:`empirical.models`, one
setting) and measures, for ``m`` given inputs, the Gram matrix over
parameters ``Theta = J J^T`` of one output unit ``f = h^d_0`` of layer
``d``, in the NTK parametrisation of the theory (``W^l = sqrt(sigma_w2 /
N_{l-1}) omega^l``, ``b^l = sigma_b omega_b^l``, the ``omega`` trained):
:func:`meanfield.ntk` predicts its mean (docs/ntk.md).

``J`` is never materialised. For an MLP the gradient of ``f`` in layer
``l``'s weights is the outer product of ``delta^l = df/dh^l`` and the layer's
input ``a^{l-1}``, so

.. math::

  \\Theta_{ab} = \\sum_{l \\le d} \\big(\\sigma_w^2\\, a^{l-1}_a \\cdot a^{l-1}_b / N_{l-1}
                 + \\sigma_b^2\\big)\\, \\delta^l_a \\cdot \\delta^l_b :

one forward pass (the layer inputs' Gram matrices, a probe of
:func:`empirical.models.forward`) and one backward pass per depth (``delta``
of all ``m`` inputs at once, the gradient in ``forward``'s ``h_shift``),
``O(L m N)`` memory instead of ``J``'s ``O(m L N^2)`` (docs/ntk.md has the
timings against materialising ``J``).
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from empirical import _checks
from empirical import _grid
from empirical import description
from empirical import devices as _devices
from empirical import engine
from empirical import inits as _inits
from empirical import models as _models
from meanfield.activations import activation as _activation
from meanfield.network import MLP, Architecture

__all__ = ["ntk", "condition_numbers"]

Array = jax.Array


def _gram(a: Array) -> Array:
  """``a a^T / n`` for ``a`` of shape ``(1, m, n)`` (one setting): ``(m, m)``."""
  return a[0] @ a[0].T / a.shape[-1]


def _one_network(params: _models.Params, x: Array, act, sigma_w2, sigma_b2,
                 depths: tuple[int, ...]) -> dict[str, Array]:
  """``ntk`` and ``nngp`` ``(len(depths), m, m)`` of one network (module docstring)."""
  depth, width = params.depth, params.width
  m = x.shape[0]

  def probe(h, a, a_in):
    return h[0, :, 0], _gram(h), _gram(a_in)

  def units(shift):
    return _models.forward(params, x, activation=act, h_shift=shift, probe=probe)[1][0]

  shift = jnp.zeros((depth, 1, m, width), x.dtype)
  _, (_, nngp, inputs) = _models.forward(params, x, activation=act, probe=probe)
  _, pullback = jax.vjp(units, shift)
  picks = jnp.asarray(depths) - 1
  cotangents = jax.nn.one_hot(picks, depth, dtype=x.dtype)[:, :, None] * jnp.ones((1, 1, m),
                                                                                  x.dtype)
  delta = jax.vmap(pullback)(cotangents)[0][:, :, 0]                  # (D, L, m, N)
  dots = jnp.einsum("dlan,dlbn->dlab", delta, delta)
  per_layer = sigma_w2 * inputs + sigma_b2                            # (L, m, m)
  return {"ntk": jnp.sum(per_layer[None] * dots, axis=1), "nngp": nngp[picks]}


@functools.partial(jax.jit, static_argnames=("act", "scheme", "width", "depths"))
def _compute(idx, key, x, w_scale, b_scale, sigma_w2, sigma_b2, *, act, scheme, width,
             depths):
  """Networks ``idx`` (key ``fold_in(key, i)``), vmapped: ``{name: (items, D, m, m)}``."""

  def item(seed):
    std = _models.standard_params(_models.network_key(key, seed), in_features=x.shape[-1],
                                  width=width, depth=depths[-1], init=scheme, dtype=x.dtype)
    params = _models.scale_params(std, w_scale, b_scale)
    return _one_network(params, x, act, sigma_w2, sigma_b2, depths)

  return jax.vmap(item)(idx)


def condition_numbers(kernels, *, eps: float) -> np.ndarray:
  """``lambda_max / lambda_min`` of each ``(..., m, m)`` kernel (float64 eigenvalues); inf
  where ``lambda_min <= 1e3 m eps lambda_max``, beyond the resolution of kernels computed
  with machine epsilon ``eps`` (as :class:`meanfield.tangent.Kernels`)."""
  k = np.asarray(kernels, np.float64)
  eig = np.linalg.eigvalsh(k)
  low, high = eig[..., 0], eig[..., -1]
  ok = low > 1e3 * k.shape[-1] * eps * high
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(ok, high / np.where(ok, low, 1.0), np.inf)


def _depths(depth) -> tuple[int, ...]:
  depths = depth if isinstance(depth, (list, tuple)) else [depth]
  out = tuple(_checks.check_int("depth", d, 1) for d in depths)
  if not out or any(b <= a for a, b in zip(out, out[1:])):
    raise ValueError(f"`depth` must be one integer >= 1 or an increasing list, got {depth!r}")
  return out


def _inputs(x, dtype) -> np.ndarray:
  a = np.asarray(x)
  if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1 or a.dtype.kind not in "iuf":
    raise ValueError(f"`x` must be real inputs of shape (m, in_features), got "
                     f"{a.dtype} of shape {a.shape}")
  if not np.all(np.isfinite(a)):
    raise ValueError("`x` must be finite")
  return a.astype(dtype)


@description.takes_network()
def ntk(key: Array, *, x, network=None, arch: Architecture = MLP(), activation="tanh",
        width=256, depth=10, sigma_w2=1.0, sigma_b2=0.0, init="gaussian", n_seeds: int = 8,
        chunk_size: int | None = None, memory_budget: int = engine.DEFAULT_MEMORY_BUDGET,
        store: str | os.PathLike | None = None, progress: bool = True, dtype=None,
        devices: _devices.Devices = None) -> xr.Dataset:
  """The empirical NTK ``J J^T`` of ``n_seeds`` random MLPs on the inputs ``x`` (module docstring).

  Network ``i`` has key ``fold_in(key, i)`` and the parameters of
  :func:`empirical.models.standard_params` scaled to ``(sigma_w2,
  sigma_b2)``; the network of depth ``d`` is the first ``d`` layers of the
  deepest, and its NTK is that of unit 0 of ``h^d``. Seeds are vmapped in
  chunks on the engine (:func:`empirical.engine.run_chunked`: ``store``
  resumes; results do not depend on ``chunk_size`` or ``devices``).

  Args:
    key: PRNG key.
    network: a :class:`meanfield.Network` whose fields fill ``activation``,
      ``width``, ``depth``, ``init``, ``sigma_w2`` and ``sigma_b2``.
    x: the inputs, ``(m, in_features)`` (real data, e.g. ``empirical.load_digits``'s
      ``x_train[:m]``, or synthetic); their Gram matrix ``x x^T / in_features``
      is the theory's ``gram``.
    arch: the plain :class:`meanfield.MLP` only.
    activation, width, init: one each (``init`` a scheme by variance:
      ``"gaussian"`` or ``"orthogonal"``).
    depth: an integer ``>= 1`` or an increasing list (all from one network).
    sigma_w2, sigma_b2: one number each.
    n_seeds: networks.
    chunk_size: networks per compiled call and stored chunk (default from
      ``memory_budget`` bytes).
    store, progress, devices: as in :func:`empirical.sweep`.
    dtype: float dtype (default float32, float64 under x64).

  Returns:
    ``xarray.Dataset`` over ``(seed, depth, input_a, input_b)``: ``ntk``, the
    empirical NTK; ``nngp``, ``h^d_a . h^d_b / N``; ``ntk_condition``
    ``(seed, depth)`` (:func:`condition_numbers`). Attributes hold the setting.

  Raises:
    ValueError: before any work, for a bad argument (a variant or another
      architecture included).
  """
  description.check_runs("empirical.ntk", arch, ())
  if not isinstance(arch, MLP):
    raise ValueError(f"`arch` of `empirical.ntk` must be the plain meanfield.MLP(), got {arch!r}")
  act = _activation(activation)
  width = _checks.check_int("width", width, 1)
  depths = _depths(depth)
  sw, sb = (_checks.check_variance(n, v) for n, v in (("sigma_w2", sigma_w2),
                                                      ("sigma_b2", sigma_b2)))
  scheme = _inits.init(init)
  if not scheme.uses_sigma_w2:
    raise ValueError(f"`init` must be a scheme by variance ('gaussian' or 'orthogonal'), "
                     f"got {init!r}")
  n_seeds = _checks.check_int("n_seeds", n_seeds, 1)
  dtype = _checks.float_dtype(dtype)
  xs = _inputs(x, dtype)
  memory_budget = int(_checks.check_number("memory_budget", memory_budget, minimum=0,
                                           strict=True))
  m, n0 = xs.shape
  per_network = np.dtype(dtype).itemsize * (
      depths[-1] * width * (width + 4 * m * (len(depths) + 2)) + n0 * width)
  items = chunk_size or max(1, min(n_seeds, memory_budget // per_network))
  ws, bs = _models.layer_scales(scheme, sw, sb, in_features=n0, width=width,
                                depth=depths[-1], dtype=dtype)
  compute = functools.partial(_compute, key=key, x=jnp.asarray(xs), w_scale=ws, b_scale=bs,
                              sigma_w2=jnp.asarray(sw, dtype), sigma_b2=jnp.asarray(sb, dtype),
                              act=act, scheme=scheme, width=width, depths=depths)
  spec = {"driver": "ntk", "activation": repr(act), "width": width, "depths": list(depths),
          "sigma_w2": sw, "sigma_b2": sb, "init": repr(scheme), "dtype": np.dtype(dtype).name,
          "x": xs.tolist(), "key": _grid.key_data(key)}
  out = engine.run_chunked(compute, n_seeds, chunk_size=items, store=store, spec=spec,
                           progress=progress, desc="ntk", devices=devices)
  dims = ("seed", "depth", "input_a", "input_b")
  cond = condition_numbers(out["ntk"], eps=float(np.finfo(dtype).eps))
  return xr.Dataset(
      {"ntk": (dims, out["ntk"], {"doc": "empirical NTK J J^T of unit 0 of h^d"}),
       "nngp": (dims, out["nngp"], {"doc": "h^d_a . h^d_b / N"}),
       "ntk_condition": (dims[:2], cond, {"doc": "lambda_max / lambda_min of ntk"})},
      coords={"seed": np.arange(n_seeds), "depth": np.asarray(depths)},
      attrs={"activation": getattr(act, "name", repr(act)), "width": width, "sigma_w2": sw,
             "sigma_b2": sb, "init": str(init), "dtype": np.dtype(dtype).name,
             "parametrisation": "NTK: W = sqrt(sigma_w2 / fan_in) omega, b = sigma_b omega_b"})
