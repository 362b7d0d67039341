"""Finite width: q^l, |J^l u|^2 and the gradient norm across networks, theory and measurement.

For one input and random MLPs of widths 16 to 1024 (ReLU with He weights
and no biases; tanh at the critical point ``sigma_w2 = 1.7610``,
``sigma_b2 = 0.05``), three quantities, each divided by its mean-field value,
against ``beta`` = (layers it has crossed) / width:

- top: ``q^l = |h^l|^2 / N`` (``beta = l / N``);
- middle: ``|J^l u|^2``, ``J^l = d h^l / d x`` on a unit ``u _|_ x``
  (``beta = l / N``);
- bottom: ``|dL/dh^l|^2`` for ``L = r . phi(h^depth)``, ``r`` a random unit
  vector, the squared ``grad_h`` of a sweep (``beta = (depth - l + 1) / N``,
  the layers the gradient has crossed).

Lines: finite-width theory (:func:`meanfield.finite_width_q`,
:func:`meanfield.finite_width_jacobian`, :func:`meanfield.finite_width_gradient`),
the median (solid, :func:`meanfield.finite_width.finite_width_quantiles`)
and the mean (dashed); thin where the result is not ``trusted`` (outside the
range measured to be within about 10%). Points: measured over networks,
median (o) and mean (x). Mean-field theory is the horizontal line at 1: the
median leaves it once ``beta`` is a few per cent (ReLU: ``exp(-5 beta / 2)``
for ``q``), while the mean stays (ReLU exactly; its sample mean at large
``beta`` is dominated by rare networks, so it scatters below).

The networks are drawn here in one jitted program per width (a scan over
layers carrying the input and the tangent, and a vector-Jacobian product for
the gradients), Gaussian weights ``N(0, sigma_w2 / N)``.
"""

from __future__ import annotations

import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

import meanfield
from meanfield.finite_width import finite_width_quantiles
from figures import _common

#: width -> (depth, networks); beta = depth / width up to 2 where the CPU allows.
PLAN = {16: (32, 256), 64: (128, 96), 256: (128, 24), 1024: (32, 8)}
PAPER_PLAN = {16: (32, 4096), 64: (128, 2048), 256: (512, 512), 1024: (2048, 64)}
SETTINGS = {"relu": (2.0, 0.0), "tanh": (1.7609546, 0.05)}
COLORS = {16: "#b2182b", 64: "#ef8a62", 256: "#67a9cf", 1024: "#2166ac"}
QUANTITIES = ("q", "ju", "grad")
THEORY = {"q": meanfield.finite_width_q, "ju": meanfield.finite_width_jacobian,
          "grad": meanfield.finite_width_gradient}


@functools.partial(jax.jit, static_argnames=("act", "width", "depth", "n"))
def _measure(key, act, width, depth, n, sigma_w2, sigma_b2):
  """``(q, |J u|^2, |dL/dh|^2)``, each ``(n, depth)``, of ``n`` networks; ``q_input = 1``."""
  phi = meanfield.activation(act)
  x = jnp.zeros(width).at[0].set(jnp.sqrt(width * 1.0))
  u = jnp.zeros(width).at[1].set(1.0)

  def one(k):
    k_w, k_r = jax.random.split(k)

    def forward(shifts):
      def layer(carry, inputs):
        h, t = carry
        l, shift = inputs
        kw, kb = jax.random.split(jax.random.fold_in(k_w, l))
        w = jax.random.normal(kw, (width, width)) * jnp.sqrt(sigma_w2 / width)
        b = jax.random.normal(kb, (width,)) * jnp.sqrt(sigma_b2)
        a = jnp.where(l == 0, h, phi.fn(h))
        dt = jnp.where(l == 0, t, phi.derivative(h) * t)
        h, t = a @ w + b + shift, dt @ w
        return (h, t), (jnp.mean(h * h), jnp.sum(t * t))

      (h, _), stats = jax.lax.scan(layer, (x, u), (jnp.arange(depth), shifts))
      return phi.fn(h), stats

    r = jax.random.normal(k_r, (width,))
    out, pullback, (q, ju) = jax.vjp(forward, jnp.zeros((depth, width)), has_aux=True)
    (delta,) = pullback(r / jnp.linalg.norm(r))
    return q, ju, jnp.sum(delta * delta, -1)

  return jax.vmap(one)(jax.random.split(key, n))


def _theory(act: str, width: int, depth: int) -> dict[str, np.ndarray]:
  """Theory's mean, median (over mean field) and ``trusted`` of each quantity, ``(depth,)``."""
  sw, sb = SETTINGS[act]
  out = {}
  with jax.enable_x64(True):
    for name, fn in THEORY.items():
      fw = fn(q_input=1.0, depth=depth, width=width, sigma_w2=sw, sigma_b2=sb, activation=act)
      mf = np.asarray(fw.mean_field, np.float64)
      out[f"theory_mean_{name}"] = np.asarray(fw.mean, np.float64) / mf
      out[f"theory_median_{name}"] = np.asarray(finite_width_quantiles(fw, 0.5)[0]) / mf
      out[f"trusted_{name}"] = np.asarray(fw.trusted, np.float64)
      out[f"mean_field_{name}"] = mf
  return out


def compute(plan: dict[int, tuple[int, int]] = PLAN, progress: bool = False) -> xr.Dataset:
  """Measured and predicted mean and median over mean field, dims ``activation, width, layer``.

  Also ``beta_<quantity>``: the layers crossed over the width, the x axis.
  """
  acts, widths = list(SETTINGS), list(plan)
  n_layers = max(d for d, _ in plan.values())
  shape = (len(acts), len(widths), n_layers)
  names = [f"{kind}_{q}" for q in QUANTITIES
           for kind in ("mean", "median", "theory_mean", "theory_median", "trusted", "beta")]
  out = {k: np.full(shape, np.nan) for k in names}
  for i, act in enumerate(acts):
    sw, sb = SETTINGS[act]
    for j, width in enumerate(widths):
      depth, n = plan[width]
      if progress:
        print(f"finite_width: {act} width {width} depth {depth} networks {n}", flush=True)
      measured = _measure(jax.random.key(width), act, width, depth, n, sw, sb)
      theory = _theory(act, width, depth)
      ell = np.arange(1, depth + 1)
      for name, samples in zip(QUANTITIES, measured):
        s = np.asarray(samples, np.float64)
        s = s[np.all(np.isfinite(s) & (s > 0), axis=1)]   # dead ReLU networks: q = 0
        mf = theory[f"mean_field_{name}"]
        out[f"mean_{name}"][i, j, :depth] = s.mean(0) / mf
        out[f"median_{name}"][i, j, :depth] = np.median(s, 0) / mf
        for kind in ("theory_mean", "theory_median", "trusted"):
          out[f"{kind}_{name}"][i, j, :depth] = theory[f"{kind}_{name}"]
        crossed = depth - ell + 1 if name == "grad" else ell
        out[f"beta_{name}"][i, j, :depth] = crossed / width
  dims = ("activation", "width", "layer")
  ds = xr.Dataset({k: (dims, v) for k, v in out.items()},
                  coords={"activation": acts, "width": widths,
                          "layer": np.arange(1, n_layers + 1)})
  ds["networks"] = ("width", [plan[w][1] for w in widths])
  ds.attrs = {"settings": str(SETTINGS), "input": "one input, q_input = 1"}
  return ds


def _points(beta: np.ndarray) -> np.ndarray:
  """About 10 indices of ``beta`` spaced evenly on a log axis, to keep the points readable."""
  order = np.argsort(beta)
  grid = np.geomspace(beta[order[0]], beta[order[-1]], 10)
  return np.unique(order[np.searchsorted(beta[order], grid).clip(0, len(beta) - 1)])


YLABELS = {"q": r"$q^l$ / mean field", "ju": r"$|J^l u|^2$ / mean field",
           "grad": r"$|\partial L / \partial h^l|^2$ / mean field"}
XLABELS = {"q": r"$\beta = l / N$", "ju": r"$\beta = l / N$",
           "grad": r"$\beta = (L - l + 1) / N$"}


def draw(ds: xr.Dataset):
  fig, axes = _common.subplots(3, 2, figsize=(10, 11))
  for col, act in enumerate(ds.activation.values):
    for row, name in enumerate(QUANTITIES):
      ax = axes[row, col]
      ax.set_xscale("log")
      ax.set_yscale("log")
      for width in ds.width.values:
        sel = ds.sel(activation=act, width=width)
        ok = np.isfinite(sel[f"beta_{name}"].values)
        beta = sel[f"beta_{name}"].values[ok]
        order = np.argsort(beta)
        color = COLORS.get(int(width), "k")
        trusted = sel[f"trusted_{name}"].values[ok][order] > 0
        med = sel[f"theory_median_{name}"].values[ok][order]
        ax.plot(beta[order], np.where(trusted, med, np.nan), color=color, lw=1.6,
                label=f"N = {width}")
        ax.plot(beta[order], med, color=color, lw=0.6)
        ax.plot(beta[order], sel[f"theory_mean_{name}"].values[ok][order], color=color,
                lw=1.0, ls="--")
        idx = _points(beta)
        ax.plot(beta[idx], sel[f"median_{name}"].values[ok][idx], "o", ms=3.5, color=color)
        ax.plot(beta[idx], sel[f"mean_{name}"].values[ok][idx], "x", ms=4, color=color)
      ax.axhline(1.0, color="0.3", ls=":", lw=1.0)
      ax.set_ylabel(YLABELS[name])
      ax.set_xlabel(XLABELS[name])
      if row == 0:
        ax.set_title(f"{act}, " + r"$\sigma_w^2 = $" + f"{SETTINGS[act][0]:g}, "
                     + r"$\sigma_b^2 = $" + f"{SETTINGS[act][1]:g}",
                     color=_common.ACTIVATION_COLORS.get(act, "k"))
  axes[0, 0].legend(fontsize=8, loc="lower left")
  axes[1, 0].plot([], [], "k-", lw=1.6, label="theory median (thin: not trusted)")
  axes[1, 0].plot([], [], "k--", lw=1.0, label="theory mean")
  axes[1, 0].plot([], [], "ko", ms=3.5, label="measured median")
  axes[1, 0].plot([], [], "kx", ms=4, label="measured mean")
  axes[1, 0].plot([], [], color="0.3", ls=":", label="mean field")
  axes[1, 0].legend(fontsize=8, loc="lower left")
  fig.suptitle("Finite width: meanfield.finite_width_* (lines) against random networks "
               "(points)", fontsize=11)
  return fig


SECONDS = 90   # measured: default settings, 2-core CPU, one figure at a time


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  """Write ``finite_width.png`` and ``finite_width.nc``."""
  ds = compute(PAPER_PLAN if paper else PLAN, progress=progress)
  return _common.save(draw(ds), ds, pathlib.Path(outdir) / "finite_width")
