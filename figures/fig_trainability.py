"""Trainability of deep tanh networks on digits: the measured boundary is a multiple of xi_c.

After Schoenholz et al. 2017 (Sec. 6, Fig. 5/6): networks of ``depth`` tanh
layers at bias variance ``sigma_b2 = 0.05`` and weight variance ``sigma_w2``
are trained with SGD on scikit-learn's digits (:func:`empirical.train`, all
``sigma_w2`` and seeds of a depth vmapped together), and the colour is the
test accuracy after a fixed number of steps, the mean over seeds.

The boundary is measured from the map (:func:`trainable_depth`): per
``sigma_w2``, the depth at which the accuracy falls to half-way between
chance and the column's best, interpolated linearly in ``log depth`` between
the trained depths. Its multiple ``k`` of the correlation depth scale
``xi_c`` (:func:`meanfield.depth_scales`) is fitted in log space
(:func:`fit_multiple`), over all resolved columns and separately over the
ordered (``sigma_w2`` below critical) and the chaotic ones, whose multiples
differ. The map shows the measured boundary, the fitted ``k xi_c`` of each
phase, and ``6 xi_c``, Schoenholz et al.'s trainable depth, for reference
(reproductions with small training budgets find nearer ``4.5 xi_c`` or
less). At the critical line (:func:`meanfield.critical_sigma_w2`) ``xi_c``
diverges and every depth shown trains.

The learning rate is ``eta / L`` (``eta = 1``): at ``chi_1 = 1`` each of the
``L`` layers contributes ``O(1)`` to the squared norm of the loss gradient,
so the largest stable SGD step shrinks as ``1 / L``; with one rate for all
depths, either the deep critical networks diverge or the shallow ones crawl.
The budget (width, seeds, steps) is chosen so that the critical column
trains at every depth shown. A failed network predicts (nearly) one class
for every input: its accuracy is about that class's frequency in the test
split (0.097 to 0.103 for digits' 359 test examples), and a network whose
guesses are unrelated to the labels scatters about chance with binomial
standard error ``sqrt(0.1 * 0.9 / 359) = 0.016``, so a failed cell can lie a
little below chance ``0.1``; ``test_accuracy_se`` stores each cell's
standard error over seeds.
"""

from __future__ import annotations

import pathlib

import jax
from matplotlib import patheffects
import numpy as np
import xarray as xr

import empirical
import meanfield
from figures import _common

SECONDS = 58   # measured: default settings, 2-core CPU, one figure at a time

ACTIVATION = "tanh"
SIGMA_B2 = 0.05
#: The learning rate of depth ``L`` is ``ETA / L``.
ETA = 1.0
BATCH_SIZE = 32
#: Schoenholz et al. 2017's trainable depth, in units of xi_c (drawn for reference).
PAPER_MULTIPLE = 6.0


def trainable_depth(accuracy, depths, *, chance: float) -> np.ndarray:
  """Per column, the depth where accuracy falls to half-way between chance and its best.

  Args:
    accuracy: ``(n_depth, n_columns)`` accuracies, rows in increasing ``depths``.
    depths: ``(n_depth,)`` increasing positive depths.
    chance: the accuracy of guessing.

  Returns:
    ``(n_columns,)`` float: walking deeper from the column's best depth, the
    first crossing of the threshold ``(chance + best) / 2``, interpolated
    linearly in ``log depth`` between the two depths around it; ``nan`` where
    the boundary is not resolved: the accuracy stays above the threshold down
    to the deepest depth (boundary beyond the map), or the column's best is
    at the shallowest depth and not above ``chance`` by half the best
    column's gain (nothing trains: boundary below the map).
  """
  acc = np.asarray(accuracy, dtype=float)
  d = np.asarray(depths, dtype=float)
  if acc.ndim != 2 or acc.shape[0] != d.size:
    raise ValueError(f"`accuracy` must have shape (n_depth, n_columns) with n_depth = "
                     f"len(depths) = {d.size}, got shape {acc.shape}")
  if d.size < 2 or np.any(d <= 0) or np.any(np.diff(d) <= 0):
    raise ValueError(f"`depths` must be at least two increasing positive numbers, got {depths!r}")
  best_gain = np.max(acc) - chance
  out = np.full(acc.shape[1], np.nan)
  for j, column in enumerate(acc.T):
    top = int(np.argmax(column))
    if column[top] - chance < best_gain / 2:
      continue   # nothing in this column trains: the boundary lies below the map
    threshold = (chance + column[top]) / 2
    below = np.flatnonzero(column[top:] < threshold)
    if below.size == 0:
      continue   # trains down to the deepest depth: the boundary lies beyond the map
    i = top + int(below[0])
    a0, a1 = column[i - 1], column[i]
    frac = (a0 - threshold) / (a0 - a1)
    out[j] = np.exp(np.log(d[i - 1]) + frac * (np.log(d[i]) - np.log(d[i - 1])))
  return out


def fit_multiple(boundary, xi_c) -> tuple[float, float, int]:
  """``(k, se, n)``: the boundary as ``k xi_c``, fitted in log space over the resolved columns.

  ``log k`` is the mean of ``log(boundary / xi_c)`` over the ``n`` columns
  where both are finite; ``se`` is the standard error of ``k`` from the
  columns' scatter (``k`` times the standard error of that mean; ``nan`` for
  ``n < 2``). Columns' scatter measures both seed noise and any departure
  of the boundary from a constant multiple of ``xi_c``.
  """
  b, xi = np.asarray(boundary, dtype=float), np.asarray(xi_c, dtype=float)
  ok = np.isfinite(b) & np.isfinite(xi) & (xi > 0)
  n = int(ok.sum())
  if n == 0:
    return np.nan, np.nan, 0
  r = np.log(b[ok] / xi[ok])
  k = float(np.exp(r.mean()))
  se = float(k * r.std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan
  return k, se, n


def _jackknife_se(accuracy_seeds: np.ndarray, depths, xi_c, chance: float) -> float:
  """Standard error of the fitted ``k`` over seeds: leave-one-seed-out jackknife.

  ``accuracy_seeds``: ``(seed, depth, column)``; ``xi_c``: ``(column,)``, ``nan``
  where a column is left out of the fit.
  """
  n = accuracy_seeds.shape[0]
  if n < 2:
    return np.nan
  ks = np.array([fit_multiple(trainable_depth(np.delete(accuracy_seeds, s, 0).mean(0), depths,
                                              chance=chance), xi_c)[0] for s in range(n)])
  return float(np.sqrt((n - 1) / n * np.sum((ks - ks.mean()) ** 2)))


def _train_depth(net: meanfield.Network, *, n_seeds: int, n_steps: int,
                 progress: bool) -> tuple[xr.DataArray, dict]:
  """Final test accuracy ``(sigma_w2, seed)`` of ``net`` (one depth, a 1-d ``sigma_w2``),
  and the run's attrs."""
  ds = empirical.train(jax.random.key(0), network=net, data="digits", n_seeds=n_seeds,
                       optimizer="sgd", learning_rate=ETA / net.depth, n_steps=n_steps,
                       batch_size=BATCH_SIZE, record_steps=[n_steps], probe_size=16,
                       probes=False, progress=progress)
  return ds.test_accuracy.isel(step=-1).reset_coords(drop=True), ds.attrs


def compute(*, depths, sigma_w2, width: int, n_seeds: int, n_steps: int,
            progress: bool = True) -> xr.Dataset:
  """Test accuracy over depth x sigma_w2 x seed, the measured boundary, its fit, and theory.

  One :func:`empirical.train` per depth (its own learning rate ``ETA / depth``),
  then :func:`assemble`.
  """
  # One Network over the sigma_w2 axis, trained at each depth (its own learning rate).
  net = meanfield.Network(activation=ACTIVATION, sigma_w2=sigma_w2, sigma_b2=SIGMA_B2,
                          width=width)
  runs = [_train_depth(net.replace(depth=d), n_seeds=n_seeds, n_steps=n_steps,
                       progress=progress) for d in depths]
  acc = xr.concat([r[0] for r in runs], dim=xr.DataArray(list(depths), dims="depth",
                                                          name="depth"))
  return assemble(acc, chance=float(1.0 / runs[0][1]["n_classes"]), width=width,
                  n_steps=n_steps)


def fit_phases(accuracy_seeds, depths, sigma_w2, *, xi_c, critical_sigma_w2: float,
               chance: float) -> tuple[np.ndarray, dict[str, float]]:
  """The measured boundary and its multiples of ``xi_c``, overall and per phase (pure).

  Args:
    accuracy_seeds: ``(seed, depth, column)`` accuracies.
    depths: ``(depth,)`` increasing; sigma_w2, xi_c: ``(column,)``.
    critical_sigma_w2: columns below it are ordered, the others chaotic.
    chance: the accuracy of guessing.

  Returns:
    ``(boundary, attrs)``: the boundary (:func:`trainable_depth` of the
    mean over seeds), and for each fit (``k`` over all resolved columns,
    ``k_ordered``, ``k_chaotic``) the multiple (:func:`fit_multiple`), its
    standard error from the columns' scatter (``<name>_se``), over seeds
    (``<name>_se_seeds``, leave-one-seed-out jackknife) and the number of
    columns fitted (``<name>_n_columns``).
  """
  acc = np.asarray(accuracy_seeds, dtype=float)
  ordered = np.asarray(sigma_w2) < critical_sigma_w2
  boundary = trainable_depth(acc.mean(0), depths, chance=chance)
  attrs = {}
  for name, mask in (("k", np.ones_like(ordered)), ("k_ordered", ordered),
                     ("k_chaotic", ~ordered)):
    xi = np.where(mask, np.asarray(xi_c, dtype=float), np.nan)
    k, se, n = fit_multiple(boundary, xi)
    attrs.update({name: k, f"{name}_se": se,
                  f"{name}_se_seeds": _jackknife_se(acc, depths, xi, chance),
                  f"{name}_n_columns": n})
  return boundary, attrs


def assemble(accuracy: xr.DataArray, *, chance: float, width: int, n_steps: int) -> xr.Dataset:
  """The figure's dataset from final test accuracies ``(seed, depth, sigma_w2)``.

  Mean and standard error over seeds, ``xi_c`` on the grid and on a fine
  line (:func:`meanfield.depth_scales`), and the measured boundary with its
  multiples of ``xi_c`` (:func:`fit_phases`).
  """
  acc = accuracy.transpose("seed", "depth", "sigma_w2")
  depths = acc.depth.values
  sigma_w2 = acc.sigma_w2.values
  n_seeds = acc.sizes["seed"]
  fine = np.linspace(sigma_w2.min(), sigma_w2.max(), 400)
  # One Network for the fine line and the grid: one call, one compile.
  line = meanfield.Network(activation=ACTIVATION, sigma_w2=np.concatenate([fine, sigma_w2]),
                           sigma_b2=SIGMA_B2)
  with jax.enable_x64(True):
    xi = np.asarray(meanfield.depth_scales(line).xi_c)
    critical = float(meanfield.critical_sigma_w2(line))
  xi_fine, xi_grid = xi[:fine.size], xi[fine.size:]
  mean = acc.mean("seed")
  boundary, fits = fit_phases(acc.values, depths, sigma_w2, xi_c=xi_grid,
                              critical_sigma_w2=critical, chance=chance)
  se = (acc.std("seed", ddof=1) / np.sqrt(n_seeds) if n_seeds > 1
        else xr.full_like(mean, np.nan))
  return xr.Dataset(
      {
          "test_accuracy": mean.assign_attrs(description="mean over seeds"),
          "test_accuracy_se": se.assign_attrs(description="standard error over seeds"),
          "test_accuracy_seeds": acc,
          "learning_rate": (("depth",), ETA / depths.astype(float)),
          "boundary_depth": (("sigma_w2",), boundary,
                             {"description": "depth where the mean accuracy falls half-way "
                                             "from its best to chance (nan: not resolved)"}),
          "xi_c_grid": (("sigma_w2",), xi_grid),
          "xi_c": (("sigma_w2_fine",), xi_fine),
      },
      coords={"sigma_w2_fine": fine},
      attrs={"activation": ACTIVATION, "sigma_b2": SIGMA_B2, "critical_sigma_w2": critical,
             "width": width, "n_steps": n_steps, "n_seeds": n_seeds, "optimizer": "sgd",
             "learning_rate": f"{ETA:g} / depth", "eta": ETA, "batch_size": BATCH_SIZE,
             "data": "digits", "chance": chance, "paper_multiple": PAPER_MULTIPLE, **fits},
  )


def edges(values: np.ndarray, *, log: bool = False) -> np.ndarray:
  """Cell edges around (possibly uneven) grid values; geometric midpoints with ``log``."""
  v = np.log(values) if log else np.asarray(values, dtype=float)
  mid = (v[1:] + v[:-1]) / 2
  e = np.concatenate([[v[0] - (mid[0] - v[0])], mid, [v[-1] + (v[-1] - mid[-1])]])
  return np.exp(e) if log else e


def draw(ds: xr.Dataset):
  fig, ax = _common.subplots(figsize=(6.4, 5.0))
  w = ds.sigma_w2.values
  d = ds.depth.values.astype(float)
  acc = ds.test_accuracy.transpose("depth", "sigma_w2").values
  y_edges = edges(d, log=True)
  mesh = ax.pcolormesh(edges(w), y_edges, acc, cmap="viridis", vmin=0.0, vmax=1.0,
                       shading="flat")
  fig.colorbar(mesh, ax=ax, label=f"test accuracy (mean of {ds.attrs['n_seeds']} seeds)")
  xi = ds.xi_c.values
  top = y_edges[-1]
  fine = ds.sigma_w2_fine.values
  # White with a dark outline: visible on the map and in the legend below it.
  ax.plot(fine, np.minimum(PAPER_MULTIPLE * xi, 10 * top), color="white", lw=1.6, ls="--",
          path_effects=[patheffects.withStroke(linewidth=3.2, foreground="0.2")],
          label=fr"${PAPER_MULTIPLE:g}\,\xi_c$ (Schoenholz et al. 2017)")
  a = ds.attrs
  critical = a["critical_sigma_w2"]
  for phase, side, ls in (("ordered", fine < critical, "-"), ("chaotic", fine > critical, "-.")):
    k = a.get(f"k_{phase}", np.nan)
    if np.isfinite(k):
      err = np.nanmax([a.get(f"k_{phase}_se", np.nan), a.get(f"k_{phase}_se_seeds", np.nan)])
      ax.plot(fine[side], np.minimum(k * xi[side], 10 * top), color="#e7298a", lw=2, ls=ls,
              label=fr"fit, {phase}: $({k:.1f} \pm {err:.1f})\,\xi_c$")
  ax.plot(ds.sigma_w2.values, ds.boundary_depth.values, "o", color="#e7298a", mec="white",
          mew=1.2, ms=6, label="measured: accuracy half-way\nfrom its best to chance")
  ax.axvline(ds.attrs["critical_sigma_w2"], color=_common.PHASE_COLORS["critical"], lw=1.2,
             label=fr"critical $\sigma_w^2$ = {ds.attrs['critical_sigma_w2']:.3f}")
  ax.set_yscale("log")
  ax.set_ylim(y_edges[0], top)
  ax.set_yticks(d)   # the trained depths, at the centres of their rows
  ax.set_yticklabels([f"{v:g}" for v in d])
  ax.minorticks_off()
  ax.set_xlim(edges(w)[0], edges(w)[-1])
  ax.set_xlabel(_common.LABELS["sigma_w2"])
  ax.set_ylabel(_common.LABELS["depth"])
  ax.set_title(fr"tanh, $\sigma_b^2$ = {a['sigma_b2']}, digits (chance {a['chance']:g}): "
               f"width {a['width']}, {a['n_seeds']} seeds,\n{a['n_steps']} steps of SGD, "
               f"learning rate {a['eta']:g}/L, batch {a['batch_size']}")
  # Below the axes, so that it covers no cell.
  fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2,
             frameon=False)
  return fig


def settings(paper: bool) -> dict:
  """:func:`compute`'s keywords for the default (CPU-sized) or the ``paper`` run; the
  figures that redraw this training (``fig_ntk_trainability``) take the same."""
  if paper:
    return dict(depths=[4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128],
                sigma_w2=np.linspace(0.25, 4.0, 31), width=256, n_seeds=4, n_steps=2000)
  return dict(depths=[4, 6, 10, 16, 26, 42], sigma_w2=np.linspace(0.25, 4.0, 16), width=64,
              n_seeds=3, n_steps=250)


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  """Write ``trainability.png`` and ``trainability.nc``.

  Default: width 64, depths 4 to 42, 16 ``sigma_w2`` in ``[0.25, 4]``, 3
  seeds, 250 steps, the cheapest budget found on a 2-core CPU in which the
  critical column trains at every depth and the boundary is resolved on both
  sides (width 32 trains the deep critical networks poorly: at depth 48,
  accuracy 0.3 to 0.66 per seed after 400 steps, against 0.75 to 0.87 at
  width 64). ``paper``: width 256, depths 4 to 128, 31 ``sigma_w2``, 4 seeds,
  2000 steps.
  """
  ds = compute(**settings(paper), progress=progress)
  return _common.save(draw(ds), ds, pathlib.Path(outdir) / "trainability")
