"""NTK condition number against depth in the ordered, critical and chaotic phases: theory and random networks.

After Xiao, Pennington & Schoenholz 2020 (Fig. 2): on ``M`` digits
(``empirical.load_digits``, standardised), the condition number of the
infinite-width NTK (:func:`meanfield.ntk`, lines) grows like ``1/(l
chi_1^l)`` in the ordered phase (past trainability beyond a few ``xi_1``),
polynomially at criticality, and tends to 1 in the chaotic phase (where
instead the predictor forgets the data over ``xi_*``). Bands: the empirical
NTK ``J J^T`` of random tanh networks of finite width (:func:`empirical.ntk`,
10-90% of the seeds, median marked), in float64: they follow the lines while
depth is small against width, and spread above them as ``depth / width``
grows (the NTK's own fluctuations, O(depth / width) in its entries, leave
the nearly diagonal chaotic kernel less well conditioned than its mean).
Where the theory's condition number passes its float64 resolution it is not
drawn (inf).
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import xarray as xr

import empirical
import meanfield
from figures import _common

ACTIVATION = "tanh"
SIGMA_B2 = 0.05
PHASES = ("ordered", "critical", "chaotic")
COLORS = {"ordered": "#2c7bb6", "critical": "#1a9641", "chaotic": "#d7191c"}


def _sigma_w2() -> dict[str, float]:
  with jax.enable_x64(True):
    crit = float(meanfield.critical_sigma_w2(sigma_b2=SIGMA_B2, activation=ACTIVATION))
  return {"ordered": 1.2, "critical": crit, "chaotic": 3.0}


def compute(*, n_inputs: int, depth: int, depths: tuple[int, ...], width: int, n_seeds: int,
            progress: bool = True) -> xr.Dataset:
  """Theory condition numbers per layer and measured ones at ``depths``, per phase."""
  sws = _sigma_w2()
  theory, measured, xi = [], [], []
  with jax.enable_x64(True):
    data = empirical.load_digits(key=jax.random.PRNGKey(0), dtype=np.float64)
    x = np.asarray(data.x_train[:n_inputs], np.float64)
    gram = x @ x.T / x.shape[1]
    for i, phase in enumerate(PHASES):
      kw = dict(activation=ACTIVATION, sigma_w2=sws[phase], sigma_b2=SIGMA_B2)
      theory.append(np.asarray(meanfield.ntk(gram=gram, depth=depth, every_layer=False,
                                             **kw).ntk_condition))
      ds = empirical.ntk(jax.random.fold_in(jax.random.PRNGKey(1), i), x=x, width=width,
                         depth=list(depths), n_seeds=n_seeds, dtype=np.float64,
                         progress=progress, **kw)
      measured.append(ds.ntk_condition.values)
      scales = meanfield.depth_scales(**kw)
      xi.append([float(scales.xi_1), float(scales.xi_star)])
  return xr.Dataset(
      {"theory_condition": (("phase", "layer"), np.stack(theory)),
       "condition": (("phase", "seed", "depth"), np.stack(measured)),
       "sigma_w2": (("phase",), [sws[p] for p in PHASES]),
       "xi_1": (("phase",), [v[0] for v in xi]), "xi_star": (("phase",), [v[1] for v in xi])},
      coords={"phase": list(PHASES), "layer": np.arange(1, depth + 1),
              "depth": np.asarray(depths), "seed": np.arange(n_seeds)},
      attrs={"activation": ACTIVATION, "sigma_b2": SIGMA_B2, "width": width,
             "n_inputs": n_inputs, "inputs": "digits (standardised), training split"})


def draw(ds: xr.Dataset):
  fig, ax = _common.subplots(figsize=(6.4, 4.4))
  for phase in PHASES:
    r = ds.sel(phase=phase)
    color = COLORS[phase]
    label = rf"{phase}, $\sigma_w^2 = {float(r.sigma_w2):.2f}$"
    if phase == "critical":
      label += r", $\xi_1 = \xi_* = \infty$"
    else:
      label += "".join(rf", $\xi_{{{k}}} = {float(r[n]):.1f}$" for k, n in
                       (("1", "xi_1"), ("*", "xi_star")) if np.isfinite(r[n]))
    ax.plot(r.layer, r.theory_condition, color=color, lw=1.8, label=label)
    c = r.condition.values
    low, mid, high = (np.nanquantile(np.where(np.isinf(c), np.nan, c), q, axis=0)
                      for q in (0.1, 0.5, 0.9))
    ax.fill_between(r.depth, low, high, color=color, alpha=0.25, lw=0)
    ax.plot(r.depth, mid, "o", color=color, ms=4)
  ax.plot([], [], "o", color="0.4", ms=4,
          label=f"random networks, width {ds.attrs['width']} (median, 10-90%)")
  ax.set_yscale("log")
  ax.set_xscale("log")
  ax.set_xlabel(r"depth $l$ (layers)")
  ax.set_ylabel(r"NTK condition number $\lambda_{max} / \lambda_{min}$")
  ax.set_title(rf"tanh, $\sigma_b^2 = {ds.attrs['sigma_b2']:g}$, "
               rf"{ds.attrs['n_inputs']} digits: NTK conditioning by phase")
  ax.legend(fontsize=8, loc="upper left")
  return fig


SECONDS = 45   # measured: default settings, 2-core CPU, one figure at a time


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  """Write ``ntk_condition.png`` and ``ntk_condition.nc``."""
  if paper:
    ds = compute(n_inputs=16, depth=200, depths=(2, 4, 8, 16, 32, 64), width=1024, n_seeds=16,
                 progress=progress)
  else:
    ds = compute(n_inputs=8, depth=60, depths=(2, 4, 8, 16, 32), width=256, n_seeds=8,
                 progress=progress)
  return _common.save(draw(ds), ds, pathlib.Path(outdir) / "ntk_condition")
