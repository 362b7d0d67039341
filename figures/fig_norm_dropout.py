"""LayerNorm and dropout MLPs: c^l of wide random networks against mean-field theory, and xi_c.

tanh MLPs at ``sigma_b2 = 0.05`` from pairs of inputs of length 1 and cosine
0.5. Left: LayerNorm (``empirical.sweep(arch=meanfield.MLP(norm="layer"))``) in
the ordered phase (``sigma_w2 = 0.4``, ``c^l -> c* = 1``) and the chaotic one
(``sigma_w2 = 3``, ``c* < 1``), theory from :func:`empirical.theory`
(:func:`meanfield.propagate` with that ``arch``), ``c*`` from
:func:`meanfield.fixed_point` (the same). Middle: dropout at initialisation
(``arch=meanfield.MLP(keep_prob=p)``) at the critical point of the dropout-free network
(:func:`meanfield.critical_sigma_w2`): without dropout ``c^l`` decays only
polynomially towards ``c* = 1``; with ``keep_prob = 0.8`` it settles within a
few layers at ``c* < 1`` (:func:`meanfield.fixed_point`), since the
masks decorrelate the two inputs. Right: ``xi_c`` against ``sigma_w2``
(theory alone): diverges at criticality only for ``keep_prob = 1``.

Measured: median over seeds with the 10-90% band; defaults width 256, 30
layers, 16 seeds, 8 inputs (4 pairs); ``--paper``: width 1024, 64 seeds.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import xarray as xr

import empirical
import meanfield
from figures import _common, _seeds

ACTIVATION = "tanh"
SIGMA_B2, Q_INPUT, C_INPUT = 0.05, 1.0, 0.5
LN_SIGMA_W2 = (0.4, 3.0)  # LayerNorm: ordered (c* = 1) and chaotic (c* < 1)
KEEP_PROBS = (1.0, 0.8)  # measured
XI_KEEP_PROBS = (1.0, 0.9, 0.8)  # theory panel
XI_GRID = np.linspace(0.3, 4.0, 149)


def _sweep(key, net: meanfield.Network, *, n_seeds, n_inputs, progress):
  return empirical.sweep(key, network=net, n_seeds=n_seeds, n_inputs=n_inputs,
                         in_features=net.width, q_input=Q_INPUT, c_input=C_INPUT,
                         progress=progress)


def compute(*, width: int, depth: int, n_seeds: int, n_inputs: int,
            progress: bool = False) -> xr.Dataset:
  """Measured ``c`` and its theory for LayerNorm (``ln_*``, dims ``(ln_sigma_w2, [seed,]
  layer)``) and dropout (``do_*``, dims ``(keep_prob, [seed,] layer)``) sweeps, fixed points
  ``*_c_star``, and ``xi_c`` over ``(xi_keep_prob, sigma_w2)``."""
  size = dict(n_seeds=n_seeds, n_inputs=n_inputs, progress=progress)
  net = meanfield.Network(activation=ACTIVATION, sigma_b2=SIGMA_B2, width=width, depth=depth)
  ln_net = net.replace(sigma_w2=np.array(LN_SIGMA_W2),           # a 1-d grid
                       arch=meanfield.MLP(norm="layer"))
  ln = _sweep(jax.random.key(21), ln_net, **size)
  ln_th = empirical.theory(ln)
  with jax.enable_x64(True):
    sigma_w2_crit = float(meanfield.critical_sigma_w2(net))
    ln_fp = meanfield.fixed_point(ln_net)
    # One argument shape for every call (the grid and, last, the measured point), so the
    # fixed-point solver compiles once.
    grid = net.replace(sigma_w2=np.append(XI_GRID, sigma_w2_crit))
    fps = {p: meanfield.fixed_point(grid.replace(arch=meanfield.MLP(keep_prob=p)))
           for p in dict.fromkeys(XI_KEEP_PROBS + KEEP_PROBS)}
    do_fp = [fps[p] for p in KEEP_PROBS]                     # [-1]: the measured point
    xi = [np.asarray(fps[p].xi_c)[:-1] for p in XI_KEEP_PROBS]
  # The same key for every keep_prob: the same weights, only the masks differ.
  do = [_sweep(jax.random.key(22),
               net.replace(sigma_w2=sigma_w2_crit, arch=meanfield.MLP(keep_prob=p)), **size)
        for p in KEEP_PROBS]
  do_th = [empirical.theory(d) for d in do]
  ln_dims = ("ln_sigma_w2", "seed", "layer")
  out = xr.Dataset(
      {"ln_c": (ln_dims, ln.c.transpose("sigma_w2", "seed", "layer").values),
       "ln_theory_c": (("ln_sigma_w2", "layer"), ln_th.c.transpose("sigma_w2", "layer").values),
       "ln_c_star": (("ln_sigma_w2",), np.asarray(ln_fp.c_star)),
       "ln_xi_c": (("ln_sigma_w2",), np.asarray(ln_fp.xi_c)),
       "do_c": (("keep_prob", "seed", "layer"),
                np.stack([d.c.transpose("seed", "layer").values for d in do])),
       "do_theory_c": (("keep_prob", "layer"), np.stack([t.c.values for t in do_th])),
       "do_c_star": (("keep_prob",), np.array([np.asarray(f.c_star)[-1] for f in do_fp])),
       "do_xi_c": (("keep_prob",), np.array([np.asarray(f.xi_c)[-1] for f in do_fp])),
       "xi_c": (("xi_keep_prob", "sigma_w2"), np.stack([np.asarray(x) for x in xi]))},
      coords={"ln_sigma_w2": list(LN_SIGMA_W2), "keep_prob": list(KEEP_PROBS),
              "xi_keep_prob": list(XI_KEEP_PROBS), "sigma_w2": XI_GRID,
              "layer": ln.layer.values, "seed": np.arange(n_seeds)})
  out.attrs = {"activation": ACTIVATION, "sigma_b2": SIGMA_B2, "q_input": Q_INPUT,
               "c_input": C_INPUT, "width": width, "depth": depth, "n_inputs": n_inputs,
               "do_sigma_w2": sigma_w2_crit,
               "band": "median over seeds and 10-90% quantiles"}
  return out


def _measured_vs_theory(ax, layer, values, theory, c_star, *, color, label):
  _seeds.band(ax, layer, values, color=color, label=f"{label}, measured", lw=0, marker="o",
              ms=3)
  ax.plot(layer, theory, color=color, lw=1.4, label=f"{label}, theory")
  ax.axhline(c_star, color=color, ls=":", lw=1)


def draw(ds: xr.Dataset):
  fig, axes = _common.subplots(1, 3, figsize=(14, 4.3))
  layer = ds.layer.values
  colors = (_common.PHASE_COLORS["ordered"], _common.PHASE_COLORS["chaotic"])
  ax = axes[0]
  for sw2, color in zip(ds.ln_sigma_w2.values, colors):
    sel = ds.sel(ln_sigma_w2=sw2)
    _measured_vs_theory(ax, layer, sel.ln_c.values, sel.ln_theory_c.values,
                        float(sel.ln_c_star), color=color,
                        label=rf"$\sigma_w^2 = {sw2:g}$")
  ax.set_title(r"LayerNorm: $c^l \to c^*$ (dotted)")
  ax = axes[1]
  for p, color in zip(ds.keep_prob.values, ("#1a1a1a", "#e08214")):
    sel = ds.sel(keep_prob=p)
    _measured_vs_theory(ax, layer, sel.do_c.values, sel.do_theory_c.values,
                        float(sel.do_c_star), color=color, label=f"$p = {p:g}$")
  ax.set_title(rf"dropout, keep prob $p$, at $\sigma_w^2 = {ds.attrs['do_sigma_w2']:.3f}$ "
               r"(critical for $p = 1$)")
  for ax in axes[:2]:
    ax.set_xlabel(_common.LABELS["layer"])
    ax.set_ylabel(_common.LABELS["c"])
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, loc="lower left", ncols=2)
  ax = axes[2]
  for p, color in zip(ds.xi_keep_prob.values, ("#1a1a1a", "#fdb863", "#e08214")):
    ax.plot(ds.sigma_w2.values, ds.xi_c.sel(xi_keep_prob=p).values, color=color,
            label=f"keep prob $p = {p:g}$")
  ax.axvline(ds.attrs["do_sigma_w2"], color="#888888", ls=":", lw=1)
  ax.set_yscale("log")
  ax.set_ylim(0.5, 300)
  ax.set_xlabel(_common.LABELS["sigma_w2"])
  ax.set_ylabel(_common.LABELS["xi_c"])
  ax.set_title(r"dropout: $\xi_c$ stays finite at criticality")
  ax.legend(fontsize=8, loc="upper right")
  fig.suptitle(rf"{ds.attrs['activation']} MLPs, $\sigma_b^2 = {ds.attrs['sigma_b2']:g}$, "
               rf"$c^0 = {ds.attrs['c_input']:g}$: width {int(ds.attrs['width'])}, "
               f"{ds.sizes['seed']} seeds (median, 10-90% band)")
  return fig


SECONDS = 46   # measured: default settings, 2-core CPU, one figure at a time


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  """Write ``norm_dropout.png`` and its data."""
  if paper:
    ds = compute(width=1024, depth=30, n_seeds=64, n_inputs=8, progress=progress)
  else:
    ds = compute(width=256, depth=30, n_seeds=16, n_inputs=8, progress=progress)
  return _common.save(draw(ds), ds, pathlib.Path(outdir) / "norm_dropout")
