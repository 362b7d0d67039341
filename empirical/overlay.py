"""Theory beside a sweep: mean-field predictions on a sweep's own coordinates.

:func:`theory` takes the ``xarray.Dataset`` of :func:`empirical.sweep` and
returns what ``meanfield`` predicts for the same networks and inputs, with
the same dims (less ``seed``), so the two overlay directly::

  ds = empirical.sweep(key, activation="tanh", sigma_w2=[1.0, 1.76, 4.0], ...)
  th = empirical.theory(ds)
  ds.q.mean("seed").plot.line(x="layer"); th.q.plot.line(x="layer", linestyle="--")

Forward (Poole et al. 2016): ``q`` and ``c`` are
``meanfield.propagate(q_input, c_input, depth, sigma_w2, sigma_b2,
activation)`` with the sweep's *measured* ``q_input`` and ``c_input`` (mean
over inputs and pairs; set them exactly with the sweep's ``q_input``/
``c_input`` options, since averaging a nonlinear map over inputs of unequal
lengths is not the map of the average). Each layer's weight variance comes
from the sweep's ``layer_sigma_w2`` (``fan_in E[W_ij^2]``): presets such as
Xavier give the first layer ``sigma_w2^1 = 2 N_0 / (N_0 + N)`` and the hidden
ones ``sigma_w2 = 1``; the first layer enters through
``q^1 = sigma_w2^1 q_input + sigma_b2`` (propagate is called with
``q_input * sigma_w2^1 / sigma_w2``, which gives the same ``q^1`` and ``c^1``).

Backward (Schoenholz et al. 2017, Sec. 5), for the per-input loss of
:mod:`empirical.probes`, ``L_a = r . a^L`` with ``|r| = 1``. Write
``delta^l = dL_a/dh^l``. At the top, ``delta^L = r * phi'(h^L)``, so
``E|delta^L|^2 = sum_i r_i^2 E[phi'(h_i^L)^2] = E[phi'(sqrt(q^L) z)^2]``.
Below, ``delta^l = phi'(h^l) * (W^{l+1} delta^{l+1})``; over the weights
of layer ``l+1`` (variance ``sigma_w2 / N``, independent of ``delta^{l+1}``
at infinite width) ``E|W delta|^2 = sigma_w2 |delta^{l+1}|^2``, and
``phi'(h^l)^2`` averages to ``E[phi'(sqrt(q^l) z)^2]``, so

.. math::

  E|\\delta^l|^2 = \\chi^l \\, E|\\delta^{l+1}|^2, \\qquad
  \\chi^l = \\sigma_w^2 E[\\phi'(\\sqrt{q^l} z)^2],

(``chi_1`` of propagate, per layer): ``grad_h^2 = E[phi'^2](q^L)
prod_{k=l}^{L-1} chi^k``, which at the fixed point is ``chi_1^(L-l)``. The
weight gradient of one input is the outer product ``a^{l-1} (x) delta^l``,
with squared norm ``|a^{l-1}|^2 |delta^l|^2``; to leading order in ``1/N``
the two factors are independent, ``|a^{l-1}|^2 = N E[phi(sqrt(q^{l-1})
z)^2]`` for ``l >= 2`` and ``|x|^2 = N_0 q_input`` for ``l = 1``, so

.. math::

  \\mathrm{grad\\_w}^2 = N_{l-1} \\, E[\\phi(\\sqrt{q^{l-1}} z)^2] \\;
  \\mathrm{grad\\_h}^2.

Both are returned as norms (square roots), like the sweep's. Finite-width
networks fluctuate about these by a relative ``O(sqrt(l / N))``.

Finite width (:mod:`meanfield.finite_width`): ``q_median``, ``q_lo`` and
``q_hi`` are the predicted median and 10% and 90% quantiles of one
network's ``q^l`` at the sweep's own width (Cornish-Fisher from the
cumulants of ``log q^l``; exact for ReLU and linear networks without
biases). The sweep's ``q`` averages its ``B`` inputs, which
share the weights: the band is that of the average
(:func:`meanfield.finite_width.batch_average`), with the covariance of ``q`` between
inputs ``2k, 2k+1`` at the measured ``c_input`` and between all other pairs
at cosine 0 (the sweep's inputs: independent Gaussian vectors). Inputs that
stay decorrelated (tanh without bias) average their fluctuations out;
inputs whose correlation goes to 1 (ReLU) do not. ``grad_median``,
``grad_lo``, ``grad_hi``: the same band for ``grad_h`` of one input
(:func:`meanfield.finite_width_gradient`; with the first three cumulants of
the log and the quantiles of :func:`meanfield.finite_width.finite_width_quantiles`, as
for ``q``); nan for a sweep of ``B > 1`` inputs (the average of ``B``
inputs' gradients is not derived).

Variants (a sweep's ``arch=meanfield.MLP(...)`` with ``residual``,
``norm="layer"`` or ``keep_prob < 1``): ``q``, ``c`` and ``chi_1`` come from
:func:`meanfield.propagate` called with the same ``q_input`` (first-layer
correction above included: layer 1 is affine in the input in every
variant), ``c_input``, ``depth``, ``sigma_w2`` and ``sigma_b2``, and the
sweep's ``arch`` (rebuilt from ``ds.attrs`` by :func:`empirical.networks`).
``chi_1`` is then the variant's per-layer gradient factor.

Dropout alone (``keep_prob = p < 1``, no skip, no LayerNorm): the masks are
fixed while differentiating, so ``delta^l = phi'(h^l) * (m^{l+1} / p) *
((W^{l+1})^T delta^{l+1})`` for ``l < L`` and ``E[(m/p)^2] = 1/p``: the backward
recursion above holds with ``chi^l = (sigma_w2 / p) E[phi'(sqrt(q^l) z)^2]``
(:func:`meanfield.propagate`'s ``chi_1`` with ``MLP(keep_prob=p)``, at dropout's own ``q^l``);
the top ``E[phi'^2](q^L)`` is unchanged (``a^L`` is not dropped); and the
weight gradient's input is the dropped ``m^l phi(h^{l-1}) / p`` for ``l >=
2``, of squared norm ``N E[phi(sqrt(q^{l-1}) z)^2] / p``. Derivation:
docs/architectures.md, "Dropout's gradient norms".

What is not derived here for a variant is nan: ``grad_h`` and ``grad_w`` of
residual and LayerNorm networks, with or without dropout (a residual
network's gradients also flow through the skip, LayerNorm's Jacobian
divides by ``sqrt(q)``), and the finite-width band ``q_lo``, ``q_median``,
``q_hi`` of every variant (:mod:`meanfield.finite_width` is for plain MLPs).
BatchNorm couples the inputs of a batch and has no two-input map: a
``norm="batch"`` sweep raises ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np
import xarray as xr

import meanfield
from empirical import architectures
from empirical import description
from empirical import inits as _inits
from meanfield.activations import Activation
from meanfield.finite_width import batch_average, finite_width_quantiles

__all__ = ["theory"]


def _moments(act: Activation, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """``(E[phi^2], E[phi'^2])`` at variance ``q`` (nan where q is nan)."""
  safe = np.where(np.isfinite(q), q, 1.0)
  m2 = np.asarray(meanfield.q_map(safe, sigma_w2=1.0, sigma_b2=0.0, activation=act), np.float64)
  d2 = np.asarray(meanfield.chi_1(sigma_w2=1.0, sigma_b2=0.0, activation=act, q=safe),
                  np.float64)
  bad = ~np.isfinite(q)
  return np.where(bad, np.nan, m2), np.where(bad, np.nan, d2)


#: Quantiles of the finite-width band: ``q_lo``, ``q_median``, ``q_hi``.
BAND_QUANTILES = (0.1, 0.5, 0.9)


def _iid(ds: xr.Dataset) -> xr.DataArray:
  """True for the ``init`` labels whose weights are i.i.d. (the finite-width theory's law)."""
  def iid(label):
    try:
      scheme = _inits.init(str(label))
    except ValueError:
      return False
    law = getattr(scheme, "law", None)
    return law == "gaussian" if law is not None else scheme.name != "orthogonal"
  if "init" in ds.dims:
    return xr.DataArray([iid(i) for i in ds.init.values], dims=["init"])
  return xr.DataArray(iid(ds.init.values) if "init" in ds.coords else True)


def _q_band(act: Activation, q_input: np.ndarray, sigma_w2: np.ndarray, sigma_b2: np.ndarray,
            width: np.ndarray, iid: np.ndarray, n_layers: int, *, n_inputs: int,
            c_input: float) -> np.ndarray:
  """``(3,) + shape + (n_layers,)``: 10%, 50%, 90% of ``q^l`` at each point's width (float64).

  One :func:`meanfield.finite_width_q` call per distinct width (the width is
  static there); nan where a width is not a positive integer or the weights
  are not i.i.d. (``iid`` False: orthogonal weights add no spread of their
  own, a different theory).
  """
  out = np.full((len(BAND_QUANTILES),) + q_input.shape + (n_layers,), np.nan)
  for w in np.unique(width):
    if not (np.isfinite(w) and w >= 1):
      continue
    at = (width == w) & iid
    with jax.enable_x64(True):
      kw = dict(q_input=q_input, depth=n_layers, width=int(w), sigma_w2=sigma_w2,
                sigma_b2=sigma_b2, activation=act)
      fw = meanfield.finite_width_q(c_input=c_input if n_inputs > 1 else None, **kw)
      if n_inputs > 1:
        paired = 2 * (n_inputs // 2)          # ordered pairs (2k, 2k+1) at c_input; others at 0
        others = n_inputs * (n_inputs - 1) - paired
        cov0 = meanfield.finite_width_q(c_input=0.0, **kw).cov
        cov = (paired * fw.cov + others * cov0) / (n_inputs * (n_inputs - 1))
        fw = batch_average(fw, n_inputs, cov)
      band = np.asarray(finite_width_quantiles(fw, BAND_QUANTILES), np.float64)
    out[:, at] = band[:, at]
  return out


def _grad_band(act: Activation, q_input: np.ndarray, sigma_w2: np.ndarray,
               sigma_b2: np.ndarray, width: np.ndarray, depth: np.ndarray, iid: np.ndarray,
               n_layers: int) -> np.ndarray:
  """``(3,) + shape + (n_layers,)``: 10%, 50%, 90% of ``grad_h^l`` of one input (float64).

  :func:`meanfield.finite_width_gradient` (the readout ``r . a^L`` at each
  network's own depth ``L``), one call per distinct width and depth; nan
  beyond a network's depth, where the width is not a positive integer or the
  weights are not i.i.d.
  """
  out = np.full((len(BAND_QUANTILES),) + q_input.shape + (n_layers,), np.nan)
  for w in np.unique(width):
    for d in np.unique(depth):
      if not (np.isfinite(w) and w >= 1 and np.isfinite(d) and 1 <= d <= n_layers):
        continue
      at = (width == w) & (depth == d) & iid
      with jax.enable_x64(True):
        fw = meanfield.finite_width_gradient(q_input=q_input, depth=int(d), width=int(w),
                                             sigma_w2=sigma_w2, sigma_b2=sigma_b2,
                                             activation=act)
        band = np.sqrt(np.asarray(finite_width_quantiles(fw, BAND_QUANTILES), np.float64))
      out[:, at, :int(d)] = band[:, at]
  return out


def _is_variant(net: meanfield.Network) -> bool:
  """Whether ``net``'s MLP is a variant of the plain MLP; ValueError for BatchNorm."""
  if net.arch.norm not in (None, "layer"):
    raise ValueError(
        f"`ds` must be a sweep without BatchNorm for theory (norm='none' or 'layer'), got "
        f"norm={net.arch.norm!r}: BatchNorm couples the inputs of a batch and has no two-input "
        f"mean-field map (meanfield.MLP(norm='batch').gradient_factor predicts its gradients only)")
  return bool(net.arch.variants)


def _variant_theory(net: meanfield.Network, act: Activation, q_input: np.ndarray,
                    c_input: float, sigma_w2: np.ndarray, sigma_b2: np.ndarray,
                    n_layers: int) -> dict[str, np.ndarray]:
  """A variant's ``q``, ``c``, ``chi_1`` (``shape + (n_layers,)``, float64) from
  :func:`meanfield.propagate`; nan for what is not derived for it."""
  with jax.enable_x64(True):
    prop = meanfield.propagate(q_input=q_input, c_input=c_input, depth=n_layers,
                               sigma_w2=sigma_w2, sigma_b2=sigma_b2, activation=act,
                               arch=net.arch)
    q, c, chi = (np.asarray(v, np.float64) for v in (prop.q, prop.c, prop.chi_1))
  nan = np.full_like(q, np.nan)
  return {"q": q, "c": c, "chi_1": chi, "grad_h": nan, "grad_w": nan, "q_lo": nan,
          "q_median": nan, "q_hi": nan, "grad_lo": nan, "grad_median": nan, "grad_hi": nan}


def _gradients(act: Activation, q: np.ndarray, chi: np.ndarray, layers: np.ndarray,
               depth: np.ndarray, width: np.ndarray, in_sq: float, keep_prob: float
               ) -> tuple[np.ndarray, np.ndarray]:
  """``(grad_h^2, grad_w^2)``, ``shape + (n_layers,)`` (float64), of an MLP without skip or
  LayerNorm, dropout included (module docstring).

  ``q``, ``chi``: per layer ``layers`` (``chi`` the factor of ``|delta^l|^2 /
  |delta^{l+1}|^2``, with dropout's ``1/p``); ``depth``, ``width``: per network
  (``shape``); ``in_sq``: ``|x|^2``; ``keep_prob``: ``p``, which scales the squared
  layer input ``|m phi / p|^2`` of layers ``>= 2`` by ``1/p``.
  """
  with jax.enable_x64(True):                                # float64, as the forward
    m2, d2 = _moments(act, q)
  d = depth[..., None]
  ell = np.broadcast_to(layers, q.shape)
  top = np.take_along_axis(d2, np.broadcast_to(d - 1, q.shape[:-1] + (1,)), axis=-1)
  factors = np.where(ell < d, chi, 1.0)                     # chi^k for k = l..d-1
  tail = np.flip(np.cumprod(np.flip(factors, -1), -1), -1)  # prod_{k >= l} factors
  grad_h2 = top * tail
  n_units = width[..., None].astype(np.float64)
  prev_sq = np.concatenate([np.full(q.shape[:-1] + (1,), in_sq),
                            (n_units * m2 / keep_prob)[..., :-1]], -1)
  return grad_h2, prev_sq * grad_h2


def theory(ds: xr.Dataset, *, activation: Activation | Callable | str | None = None
           ) -> xr.Dataset:
  """Mean-field predictions on the coordinates of a sweep's Dataset.

  Theory is computed in float64 (under ``jax.enable_x64``, whatever the
  sweep's dtype), so a float32 sweep whose ``q`` left float32's range still
  gets finite predictions wherever they fit in float64.

  Args:
    ds: the result of :func:`empirical.sweep`: a plain MLP, or one with
      ``arch=meanfield.MLP(...)`` of ``residual``, ``norm="layer"`` and/or
      ``keep_prob < 1`` (see the
      module docstring; ``norm="batch"`` raises ``ValueError``).
    activation: the activation to use for every ``activation`` label of
      ``ds`` (a name, an ``Activation`` or a callable). By default registry
      names are looked up, and a custom callable that this session swept is
      found again by the content key the sweep recorded
      (``ds.attrs["activation_keys"]``); a Dataset loaded from a file loses
      the callable, and then ``activation`` must be given.

  Returns:
    An ``xarray.Dataset`` with the dims of ``ds`` less ``seed``, and
    variables ``q``, ``c``, ``chi_1`` (per layer, ``sigma_w2
    E[phi'(sqrt(q^l) z)^2]``), ``grad_h`` and ``grad_w`` (the predicted
    norms, see the module docstring); layers beyond a network's depth are
    nan. ``q_input`` and ``c_input`` are those measured in ``ds``. Also
    ``q_lo``, ``q_median``, ``q_hi``: the finite-width band (module
    docstring); ``grad_lo``, ``grad_median``, ``grad_hi``: that of ``grad_h``
    (one input only). For a variant, ``chi_1`` is its own per-layer gradient
    factor, and the band is nan (not derived); so are ``grad_h`` and
    ``grad_w``, except for dropout alone (module docstring).

  Raises:
    ValueError: a BatchNorm sweep; a custom activation ``ds`` cannot name.
    NotImplementedError: a sweep of another architecture whose experiment
      mirror (:mod:`empirical.architectures`) has no overlay; a CNN sweep's
      Dataset keeps no input, so its theory is ``meanfield.propagate(net,
      covariance=x @ x.T / C_0)`` for the Networks of :func:`empirical.networks`.
  """
  if isinstance(ds, xr.Dataset) and ds.attrs.get("architecture", "mlp") != "mlp":
    return architectures.dataset_mirror(ds, "empirical.theory").theory(ds, activation)
  nets = description.networks(ds, activation=activation)
  net = nets.values.flat[0]                   # the variant is the same everywhere
  variant = _is_variant(net)
  q_in, c_in = float(ds.q_input), float(ds.c_input)
  layers = ds.layer.values
  n_layers = len(layers)
  lsw = ds.layer_sigma_w2
  s1 = lsw.isel(layer=0, drop=True)
  s = lsw.isel(layer=min(1, n_layers - 1), drop=True).fillna(s1) if n_layers > 1 else s1
  s1, s, sb2, depth, width = xr.broadcast(s1, s, ds.sigma_b2.astype(float), ds.depth, ds.width)
  q_eff = xr.where(s > 0, q_in * s1 / s.where(s > 0, 1.0), q_in)
  dims = list(s.dims)
  iid = xr.broadcast(_iid(ds), s)[0].transpose(*dims)
  c_input = 0.0 if np.isnan(c_in) else min(1.0, max(-1.0, c_in))
  in_sq = ds.attrs["in_features"] * q_in                    # |x|^2, the input of layer 1

  acts = [nets.isel({d: 0 for d in nets.dims if d != "activation"}).values.flat[i].phi
          for i in range(ds.sizes.get("activation", 1))]
  out = {name: [] for name in ("q", "c", "chi_1", "grad_h", "grad_w", "q_lo", "q_median",
                               "q_hi", "grad_lo", "grad_median", "grad_hi")}
  for act in acts:
    if variant:
      th = _variant_theory(net, act, q_eff.values, c_input, s.values, sb2.values,
                           n_layers)
      if not net.arch.residual and net.arch.norm is None:  # dropout alone: gradients derived
        grad_h2, grad_w2 = _gradients(act, th["q"], th["chi_1"], layers, depth.values,
                                      width.values, in_sq, net.arch.keep_prob)
        th["grad_h"], th["grad_w"] = np.sqrt(grad_h2), np.sqrt(grad_w2)
      for name, v in th.items():
        out[name].append(np.where(layers <= depth.values[..., None], v, np.nan))
      if np.isnan(c_in):
        out["c"][-1] = np.full_like(out["c"][-1], np.nan)
      continue
    with jax.enable_x64(True):
      prop = meanfield.propagate(q_input=q_eff.values, c_input=c_input, depth=n_layers,
                                 sigma_w2=s.values, sigma_b2=sb2.values, activation=act)
      q, c, chi = (np.asarray(v, np.float64) for v in (prop.q, prop.c, prop.chi_1))
    if np.isnan(c_in):
      c = np.full_like(c, np.nan)
    inside = layers <= depth.values[..., None]                # each network's depth
    grad_h2, grad_w2 = _gradients(act, q, chi, layers, depth.values, width.values, in_sq, 1.0)
    band = _q_band(act, q_eff.values, s.values, sb2.values, width.values, iid.values, n_layers,
                   n_inputs=int(ds.attrs["n_inputs"]), c_input=c_input)
    grad_band = (_grad_band(act, q_eff.values, s.values, sb2.values, width.values,
                            depth.values, iid.values, n_layers)
                 if int(ds.attrs["n_inputs"]) == 1 else np.full_like(band, np.nan))
    for name, v in (("q", q), ("c", c), ("chi_1", chi), ("grad_h", np.sqrt(grad_h2)),
                    ("grad_w", np.sqrt(grad_w2)), ("q_lo", band[0]), ("q_median", band[1]),
                    ("q_hi", band[2]), ("grad_lo", grad_band[0]),
                    ("grad_median", grad_band[1]), ("grad_hi", grad_band[2])):
      out[name].append(np.where(inside, v, np.nan))

  act_dim = ["activation"] if "activation" in ds.dims else []
  data = {}
  for name, arrays in out.items():
    v = np.stack(arrays) if act_dim else arrays[0]
    data[name] = xr.DataArray(v, dims=act_dim + dims + ["layer"])
  coords = {k: c for k, c in ds.coords.items() if k != "seed"}
  th = xr.Dataset(data).assign_coords(coords)
  order = [d for d in ds.q.dims if d != "seed"]
  th = th.transpose(*order)
  th["q_input"], th["c_input"] = ds.q_input, ds.c_input
  call = "meanfield.propagate(arch=MLP({}))".format(
      ", ".join(f"{k}={v!r}" for k, v in net.arch.variants.items()))
  if not variant:
    source = "meanfield.propagate (forward); chi_1 products (backward), see empirical.overlay"
  elif not net.arch.residual and net.arch.norm is None:
    source = (f"{call} (forward and chi_1); chi_1 products (backward); "
              "the finite-width band not derived (nan), see empirical.overlay")
  else:
    source = (f"{call} (forward and chi_1); grad_h, grad_w and the "
              "finite-width band not derived (nan), see empirical.overlay")
  th.attrs = {"source": source, **ds.attrs}
  return th
