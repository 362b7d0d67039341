"""Length and correlation maps of tanh networks, with fixed points and cobwebs, in the three regimes.

After Poole et al. 2016 (Fig. 1) and Schoenholz et al. 2017 (Fig. 2). Top
row: the length map ``q^{l+1} = sigma_w2 E[phi(sqrt(q^l) z)^2] + sigma_b2``
against the identity, with its fixed point q* and the layer-by-layer
iterates of :func:`meanfield.propagate` drawn as a cobweb. Bottom row: the
correlation map at q* (:func:`meanfield.c_map`), its stable fixed point c*
and the cobwebs of two pairs of inputs whose length is already q*, one
orthogonal (``c_input = 0``) and one nearly aligned (``c_input = 0.95``). Ordered: c* = 1 and chi_1 < 1; critical (sigma_w2 from
:func:`meanfield.critical_sigma_w2`): the map is tangent to the identity at
c = 1, so c crawls towards 1; chaotic: c* < 1.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

import meanfield
from figures import _common

ACTIVATION = "tanh"
SIGMA_B2 = 0.05
ORDERED_SIGMA_W2 = 1.2
CHAOTIC_SIGMA_W2 = 3.0
REGIMES = ("ordered", "critical", "chaotic")
Q_INPUT = 1.0  # |x|^2 / N_0 of the input in the length cobweb
C_INPUTS = (0.0, 0.95)  # cosines of the two input pairs in the correlation cobwebs
DEPTH = 25


def _theory(net: meanfield.Network, q_grid, c_grid):
  """Everything the figure shows, for a Network of three ``sigma_w2`` (one jitted program)."""
  q_star = meanfield.q_star(net)
  fixed = dict(q_star=q_star, c_star=meanfield.fixed_point(net).c_star,
               chi_1=meanfield.chi_1(net))
  column = net.replace(sigma_w2=net.sigma_w2[:, None])        # regimes down, grid across
  curves = dict(q_map=meanfield.q_map(q_grid[None, :], network=column),
                c_map=meanfield.c_map(c_grid[None, :], network=column))
  # Length cobweb: from |x|^2/N_0 = Q_INPUT. Correlation cobwebs: inputs of length q*
  # (so q^l = q* in every layer) and cosines C_INPUTS.
  length = meanfield.propagate(net, q_input=Q_INPUT, c_input=0.0)
  corr = [meanfield.propagate(net, q_input=(q_star - SIGMA_B2) / net.sigma_w2, c_input=c_input)
          for c_input in C_INPUTS]
  return fixed, curves, length.q, jnp.stack([p.c for p in corr])


def compute(*, n_points: int, depth: int) -> xr.Dataset:
  """Map curves on ``n_points`` grid points and ``depth`` layers of cobweb for each regime."""
  with jax.enable_x64(True):
    critical = float(meanfield.critical_sigma_w2(sigma_b2=SIGMA_B2, activation=ACTIVATION))
    sigma_w2 = jnp.asarray([ORDERED_SIGMA_W2, critical, CHAOTIC_SIGMA_W2])
    q_max = 1.15 * max(CHAOTIC_SIGMA_W2 * Q_INPUT + SIGMA_B2, CHAOTIC_SIGMA_W2 + SIGMA_B2)
    q_grid = jnp.linspace(0.0, q_max, n_points)
    c_grid = jnp.linspace(0.0, 1.0, n_points)
    net = meanfield.Network(activation=ACTIVATION, sigma_w2=sigma_w2, sigma_b2=SIGMA_B2,
                            depth=depth)
    # The Network is a pytree: its variances are traced, its depth is static.
    fixed, curves, q_layers, c_layers = jax.jit(_theory)(net, q_grid, c_grid)
    q_star, c_star, chi_1 = fixed["q_star"], fixed["c_star"], fixed["chi_1"]
    q_curve, c_curve = curves["q_map"], curves["c_map"]

  regime = ("regime", list(REGIMES))
  return xr.Dataset(
      {
          "q_map": (("regime", "q"), np.asarray(q_curve)),
          "c_map": (("regime", "c"), np.asarray(c_curve)),
          "q_star": (("regime",), np.asarray(q_star)),
          "c_star": (("regime",), np.asarray(c_star)),
          "chi_1": (("regime",), np.asarray(chi_1)),
          "q_layers": (("regime", "layer"), np.asarray(q_layers)),
          "c_layers": (("c_input", "regime", "layer"), np.asarray(c_layers)),
      },
      coords={
          "regime": regime[1],
          "sigma_w2": (("regime",), np.asarray(sigma_w2)),
          "q": np.asarray(q_grid),
          "c": np.asarray(c_grid),
          "layer": np.arange(1, depth + 1),
          "c_input": list(C_INPUTS),
      },
      attrs={"activation": ACTIVATION, "sigma_b2": SIGMA_B2, "q_input_length_cobweb": Q_INPUT},
  )


def _cobweb(ax, x: np.ndarray, color: str) -> None:
  """Staircase (x_l, x_l) -> (x_l, x_{l+1}) -> (x_{l+1}, x_{l+1}) of an iterated map."""
  xs = np.repeat(x, 2)[:-1]
  ys = np.repeat(x, 2)[1:]
  ax.plot(xs, ys, color=color, lw=0.9, alpha=0.8)
  ax.plot(x[0], x[0], "o", color=color, ms=4)


def draw(ds: xr.Dataset):
  fig, axes = _common.subplots(2, 3, figsize=(12.0, 7.4))
  for j, regime in enumerate(REGIMES):
    r = ds.sel(regime=regime)
    color = _common.PHASE_COLORS[regime]
    sw, chi = float(r["sigma_w2"]), float(r["chi_1"])
    ax = axes[0, j]
    q = ds["q"].values
    ax.plot(q, q, ls="--", color="0.6", lw=1, label="identity")
    ax.plot(q, r["q_map"], color=color, label="$q$-map")
    _cobweb(ax, r["q_layers"].values, color)
    ax.plot(r["q_star"], r["q_star"], "*", color="gold", mec="k", ms=13, zorder=5,
            label=f"$q^* = {float(r['q_star']):.3g}$")
    top = 1.1 * max(float(r["q_star"]), float(r["q_layers"][0]))
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_aspect("equal")
    ax.set_xlabel(_common.LABELS["q"])
    ax.set_ylabel(_common.LABELS["q_next"])
    ax.set_title(f"{regime}: " + rf"$\sigma_w^2 = {sw:.3g}$, $\chi_1 = {chi:.3g}$", color=color)
    ax.legend(loc="upper left")

    ax = axes[1, j]
    c = ds["c"].values
    ax.plot(c, c, ls="--", color="0.6", lw=1, label="identity")
    ax.plot(c, r["c_map"], color=color, label=r"$c$-map at $q^*$")
    for c_layers in r["c_layers"].values:
      _cobweb(ax, c_layers, color)
    ax.plot(r["c_star"], r["c_star"], "*", color="gold", mec="k", ms=13, zorder=5, clip_on=False,
            label=f"$c^* = {float(r['c_star']):.3g}$")
    ax.set_xlim(0, 1.0)
    ax.set_ylim(0, 1.0)
    ax.set_aspect("equal")
    ax.set_xlabel(_common.LABELS["c"])
    ax.set_ylabel(_common.LABELS["c_next"])
    ax.legend(loc="upper left")
  fig.suptitle(rf"tanh, $\sigma_b^2 = {SIGMA_B2}$: maps, fixed points (stars) and "
               f"{ds.sizes['layer']} layers of iterates (cobwebs)")
  return fig


SECONDS = 23   # measured: default settings, 2-core CPU, one figure at a time


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  """Write ``maps.png`` and ``maps.nc``."""
  ds = compute(n_points=401 if paper else 201, depth=DEPTH)
  return _common.save(draw(ds), ds, pathlib.Path(outdir) / "maps")
