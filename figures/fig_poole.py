"""Length q^l and correlation c^l over depth in tanh networks: measured against theory in the ordered, critical and chaotic phases.

After Poole et al. (2016), Fig. 2 and 3. Tanh networks with ``sigma_b2 =
0.05`` at three weight variances: ordered (``sigma_w2 = 1.2``), critical
(``chi_1 = 1``, :func:`meanfield.critical_sigma_w2`, 1.76) and chaotic
(``sigma_w2 = 4``). Top: inputs of several lengths ``q_input`` converge
within a few layers to the same fixed point ``q*`` (dotted). Bottom: pairs
of inputs with several cosines ``c_input`` (``q_input = 1``) converge to
``c*`` (dotted): to 1 in the ordered phase (exponentially, depth scale
``xi_c``), to 1 as a power law at criticality, and to ``c* < 1`` in the
chaotic phase, where nearby inputs decorrelate. Points: median over seeds of
the measured ``q^l`` and ``c^l`` (bars: 10-90% quantiles); lines:
:func:`meanfield.propagate` from the same ``q_input`` and ``c_input``
(the sweep builds inputs with exactly those statistics, so theory and
experiment start from the same point).
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from matplotlib.ticker import MaxNLocator

import empirical
import meanfield
from figures import _common, _seeds

ACTIVATION = "tanh"
SIGMA_B2 = 0.05
ORDERED, CHAOTIC = 1.2, 4.0
Q_INPUTS = (0.05, 0.5, 2.0, 8.0)
C_INPUTS = (0.1, 0.5, 0.8, 0.95, 0.995)
PHASES = ("ordered", "critical", "chaotic")


def _sigma_w2() -> list[float]:
  with jax.enable_x64(True):
    critical = float(meanfield.critical_sigma_w2(sigma_b2=jnp.float64(SIGMA_B2),
                                                 activation=ACTIVATION))
  return [ORDERED, critical, CHAOTIC]


def compute(*, width: int, depth: int, n_seeds: int, n_inputs: int,
            progress: bool = False) -> xr.Dataset:
  """Measured ``q``/``c`` (dims ``start, phase, seed, layer``) and theory, for each start."""
  # One Network holds the three phases (a 1-d axis of sigma_w2); theory and sweep read it.
  net = meanfield.Network(activation=ACTIVATION, init="gaussian", sigma_w2=_sigma_w2(),
                          sigma_b2=SIGMA_B2, width=width, depth=depth)
  kw = dict(network=net, n_seeds=n_seeds, n_inputs=n_inputs, in_features=width,
            progress=progress)
  key = jax.random.key(3)
  parts = {"q": [], "c": []}
  for name, starts in (("q", Q_INPUTS), ("c", C_INPUTS)):
    for start in starts:
      extra = {"q_input": start} if name == "q" else {"q_input": 1.0, "c_input": start}
      # Every start is the same compiled program (only the inputs change).
      ds = empirical.sweep(key, **kw, **extra)
      parts[name].append(xr.Dataset({name: ds[name], f"{name}_input_measured": ds[f"{name}_input"]}))
  out = xr.merge([
      xr.concat(parts["q"], dim="q_start").assign_coords(q_start=list(Q_INPUTS)),
      xr.concat(parts["c"], dim="c_start").assign_coords(c_start=list(C_INPUTS))],
      compat="override", join="outer")
  # Theory from the measured input statistics (equal to the requested ones up
  # to float32 rounding), all starts and phases in one broadcast call. With
  # init="gaussian" and in_features = width every layer has variance
  # sigma_w2, as empirical.overlay.theory would read from layer_sigma_w2.
  with jax.enable_x64(True):
    row = net.replace(sigma_w2=net.sigma_w2[None, :])          # starts down, phases across
    q0 = jnp.asarray(out.q_input_measured.values)[:, None]
    th_q = meanfield.propagate(row, q_input=q0, c_input=0.0).q
    c0 = jnp.asarray(np.clip(out.c_input_measured.values, -1.0, 1.0))[:, None]
    th_c = meanfield.propagate(row, q_input=1.0, c_input=c0).c
  out["theory_q"] = (("q_start", "sigma_w2", "layer"), np.asarray(th_q))
  out["theory_c"] = (("c_start", "sigma_w2", "layer"), np.asarray(th_c))
  with jax.enable_x64(True):
    out["q_star"] = ("sigma_w2", np.asarray(meanfield.q_star(net)))
    out["c_star"] = ("sigma_w2", np.asarray(meanfield.fixed_point(net).c_star))
  out = out.assign_coords(phase=("sigma_w2", list(PHASES)))
  out.attrs = {"activation": ACTIVATION, "width": width, "depth": depth, "n_seeds": n_seeds,
               "n_inputs": n_inputs, "sigma_b2": SIGMA_B2,
               "band": "median over seeds and 10-90% quantiles"}
  return out


def _points(ax, layer, values, color, label=None):
  med, lo, hi = _seeds.quantiles(values)
  ax.errorbar(layer, med, yerr=[med - lo, hi - med], fmt="o", ms=3.2, color=color,
              elinewidth=0.8, capsize=0, label=label)


def draw(ds: xr.Dataset):
  fig, axes = _common.subplots(2, 3, figsize=(12.6, 7.4), sharex=True)
  layer = ds.layer.values
  q_cmap = _common_cmap("viridis", len(Q_INPUTS))
  c_cmap = _common_cmap("plasma", len(C_INPUTS))
  for j, phase in enumerate(PHASES):
    sel = ds.isel(sigma_w2=j)
    sw2 = float(sel.sigma_w2)
    ax = axes[0, j]
    for k, q0 in enumerate(Q_INPUTS):
      s = sel.sel(q_start=q0)
      _points(ax, layer, s.q.transpose("seed", "layer").values, q_cmap[k],
              label=rf"$q_\mathrm{{input}} = {q0:g}$")
      ax.plot(layer, s.theory_q.values, color=q_cmap[k], lw=1.2)
    ax.axhline(float(sel.q_star), color="k", ls=":", lw=1.0)
    ax.set_yscale("log")
    ax.set_title(rf"{phase}: $\sigma_w^2 = {sw2:.3g}$, $\sigma_b^2 = {SIGMA_B2:g}$",
                 color=_common.PHASE_COLORS[phase])
    ax.set_ylabel(_common.LABELS["q"])
    ax = axes[1, j]
    for k, c0 in enumerate(C_INPUTS):
      s = sel.sel(c_start=c0)
      _points(ax, layer, s.c.transpose("seed", "layer").values, c_cmap[k],
              label=rf"$c_\mathrm{{input}} = {c0:g}$")
      ax.plot(layer, s.theory_c.values, color=c_cmap[k], lw=1.2)
    ax.axhline(float(sel.c_star), color="k", ls=":", lw=1.0)
    ax.set_ylim(0.0, 1.03)
    ax.set_xlabel(_common.LABELS["layer"])
    ax.set_ylabel(_common.LABELS["c"])
  axes[1, 0].xaxis.set_major_locator(MaxNLocator(integer=True))
  axes[0, 0].plot([], [], color="k", ls=":", lw=1.0, label=r"$q^*$")
  axes[1, 0].plot([], [], color="k", ls=":", lw=1.0, label=r"$c^*$")
  axes[0, 0].legend(fontsize=8, loc="upper right", ncol=1)
  axes[1, 0].legend(fontsize=8, loc="lower right", ncol=1)
  fig.suptitle(f"tanh, width {ds.attrs['width']}, {ds.attrs['n_seeds']} seeds: measured "
               "(points, median and 10-90%) against mean-field theory (lines), "
               "after Poole et al. 2016")
  return fig


def _common_cmap(name: str, n: int) -> list:
  import matplotlib
  cmap = matplotlib.colormaps[name]
  return [cmap(0.1 + 0.75 * i / max(1, n - 1)) for i in range(n)]


SECONDS = 19   # measured: default settings, 2-core CPU, one figure at a time


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  """Write ``poole.png`` and ``poole.nc``."""
  if paper:
    ds = compute(width=1000, depth=30, n_seeds=64, n_inputs=16, progress=progress)
  else:
    ds = compute(width=256, depth=20, n_seeds=16, n_inputs=8, progress=progress)
  return _common.save(draw(ds), ds, pathlib.Path(outdir) / "poole")
