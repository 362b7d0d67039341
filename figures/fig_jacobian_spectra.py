"""Singular-value densities of the input-output Jacobian at criticality: theory against random networks.

After Pennington, Schoenholz & Ganguli 2017 (Figs. 1-2). For tanh at
criticality (``sigma_b2 = 0.05``, ``sigma_w2`` on the critical line, q*
from :func:`meanfield.q_star`), ReLU (``sigma_w2 = 2``, ``sigma_b2 = 0``)
and a linear network (``sigma_w2 = 1``), with orthogonal (top row) and
Gaussian (bottom row) weights, at depths 2, 8 and 32: the density of the
singular values ``sigma`` of ``J = dx^L/dx^0`` from free probability
(:func:`meanfield.jacobian_spectrum` on a log-spaced grid, finer towards
the edge; line) over histograms of the exact singular values of 256 random
networks of width 64 per panel (:func:`empirical.jacobian_spectra`, float64
SVD; the networks of :mod:`figures._jacobian`, shared with
``jacobian_depth``). The axis is ``log10 sigma`` and the densities are per
unit ``log10 sigma`` (``p(sigma) sigma ln 10``), so a spectrum spread over
decades stays readable; each panel's axis starts at the networks' 0.1%
quantile of their nonzero singular values, or at ``sigma = 1e-10``.

Written in each panel: the mass below the axis where it is above 0.5%
(the theory's, atoms included, against the networks' fraction), and atoms.
A linear network with orthogonal weights is exactly isometric (``J`` is a
product of orthogonal matrices): its spectrum is a point mass at ``sigma =
1``, drawn as a vertical line, with the networks' largest distance from 1.
ReLU's atom at ``sigma = 0`` is 1/2 at infinite width; at width ``N`` the
rank of ``J`` is the fewest active units in any layer, so the zero fraction
is ``1 - E[min_l n_l] / N`` with ``n_l`` independent ``Binomial(N, 1/2)``
(:func:`figures._jacobian.relu_zero_fraction`: 0.535, 0.589, 0.629 at depths
2, 8, 32), which the networks match; their continuous part is lower than
the theory's by as much.

The dotted vertical line (up to ``L = N/4``, where the edge is a square
root) is the expected largest singular value at width ``N``
(Tracy-Widom scaling at the theory's edge,
:func:`figures._jacobian.sigma_max_expected`, docs/jacobian_edge.md): the
histograms end below the theory's edge by this finite-width amount, as in
the ``jacobian_depth`` and ``jacobian_edge_width`` figures.

One PNG per activation: ``jacobian_spectra_<activation>.png``.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import xarray as xr

from figures import _common
from figures import _jacobian
import meanfield

SECONDS = 23   # measured: default settings, 2-core CPU, one figure at a time
DEPTHS = (2, 8, 32)
WEIGHTS = _jacobian.WEIGHTS
CASES = tuple(_jacobian.CASES)
#: The PNGs this module writes (``python -m figures --only`` finds any of them).
OUTPUTS = tuple(f"jacobian_spectra_{name}" for name in CASES)
LOG10_MIN = -10.0          # the axes start no lower than this, in log10 sigma
QUANTILE = 1e-3            # ... and at the networks' 0.1% quantile of their nonzero sigma
SHOW_BELOW = 5e-3          # write the mass below the axis where it is above this
N_LOG = 120                # theory points, log-spaced across the panel
EDGE_DELTA = np.geomspace(1e-4, 0.3, 32)   # and at lambda_max (1 - delta) near the edge
BINS = 60
ZERO = 1e-14               # a singular value below this times the network's largest is a zero


def _axis(sv: np.ndarray, edge: float) -> tuple[float, float]:
  """``(left, right)`` in ``log10 sigma``: from the networks' small quantile to past the edge.

  Singular values below ``1e-12`` of the largest are rounding zeros (ReLU's
  atom at 0) and are left out of the quantile.
  """
  nonzero = sv[sv > 1e-12 * sv.max()]
  left = np.floor(2 * np.log10(np.quantile(nonzero, QUANTILE))) / 2
  return max(LOG10_MIN, left), max(np.log10(sv.max()), np.log10(edge)) + 0.15


def _grid(left: float, edge: float) -> np.ndarray:
  """Theory points: log-spaced on ``[left, edge)``, finer towards the edge, and the edge points."""
  delta = np.concatenate([EDGE_DELTA, _jacobian.EDGE_OFFSETS])
  near = edge * np.sqrt(1 - delta)
  return np.sort(np.concatenate([np.logspace(left, np.log10(near.min()), N_LOG, endpoint=False),
                                 near]))


def _theory(name: str, weights: str, depth: int, q: float, sv: np.ndarray, width: int,
            swept: tuple[int, ...]) -> dict:
  """The theory of one panel on its own axis (one compiled program per activation).

  ``swept``: the sweep's depths; the edge is computed at all of them, as in
  ``jacobian_depth``, so both figures share that compiled program.
  """
  kwargs = dict(_jacobian.theory_kwargs(name, q), init=weights)
  lam_max = float(np.asarray(meanfield.jacobian_spectrum_edge(
      depth=np.array(swept), **kwargs))[swept.index(depth)])
  edge = np.sqrt(lam_max) if lam_max > 0 else 1.0     # no density (a point mass): any grid
  left, right = _axis(sv, edge)
  sigma = _grid(left, edge)
  spec = meanfield.jacobian_spectrum(depth=np.array([depth]), sigma=sigma, **kwargs)
  out = {k: np.asarray(getattr(spec, k))[0] for k in (
      "singular_value_density", "eigenvalue_density", "converged", "zero_mass", "atom_mass",
      "atom_lambda")}
  rho_edge = [out["eigenvalue_density"][np.flatnonzero(np.isclose(sigma, edge * np.sqrt(1 - d),
                                                                  rtol=1e-14))[0]]
              for d in _jacobian.EDGE_OFFSETS]
  gamma = _jacobian.edge_gamma(lam_max, rho_edge)
  dens = np.nan_to_num(out["singular_value_density"])
  # Mass of the continuous part above ``left`` (trapezoid in log sigma; the
  # density vanishes at the edge, and the last point is within 1e-5 of it).
  inside = float(np.sum(0.5 * (dens[1:] * sigma[1:] + dens[:-1] * sigma[:-1])
                        * np.diff(np.log(sigma))))
  below = max(1.0 - float(out["zero_mass"]) - float(out["atom_mass"]) - inside, 0.0)
  expected = float(_jacobian.tracy_widom_sigma_max(lam_max, gamma, width))
  zero_at_width = (float(_jacobian.relu_zero_fraction(width, depth)) if name == "relu"
                   else float(out["zero_mass"]))
  return dict(out, sigma=sigma, left=left, right=right, edge=edge,
              expected=expected if depth <= _jacobian.MAX_DEPTH_RATIO * width else np.nan,
              below=below + float(out["zero_mass"]), zero_at_width=zero_at_width)


def _panel(ax, sv, th, *, depth, weights, color, width):
  """One panel; ``sv``: ``(seed, index)`` singular values of the networks."""
  sigma_max_mean = float(np.mean(np.nanmax(sv, axis=-1)))
  zeros = float(np.mean(sv < ZERO * np.nanmax(sv, axis=-1, keepdims=True)))
  sv = sv[np.isfinite(sv)]
  n = sv.size
  zero, atom = float(th["zero_mass"]), float(th["atom_mass"])
  if atom > 0.99:
    return _point_mass(ax, sv, th, depth=depth, weights=weights, color=color)
  left, right, sigma = th["left"], th["right"], th["sigma"]
  edges = np.linspace(left, right, BINS + 1)
  counts, _ = np.histogram(np.log10(np.maximum(sv, 1e-300)), bins=edges)
  hist = counts / (n * np.diff(edges))
  ax.stairs(hist, edges, fill=True, color=color, alpha=0.4, label=f"networks ($N = {width}$)")
  per_log = np.where(th["converged"], th["singular_value_density"] * sigma * np.log(10), np.nan)
  line_x = np.append(np.log10(sigma), np.log10(th["edge"]))
  ax.plot(line_x, np.append(per_log, 0.0), color="k", lw=1.3, label=r"theory ($N = \infty$)")
  if np.isfinite(th["expected"]):
    ax.axvline(np.log10(th["expected"]), color="k", lw=1.0, ls=":",
               label=f"expected $\\sigma_{{\\max}}$ at $N = {width}$ (Tracy-Widom)")
  lines = []
  if zero > 1e-6:
    lines.append(f"atom at $\\sigma = 0$: theory {zero:.2f} ($N = \\infty$), "
                 f"{th['zero_at_width']:.3f} ($N = {width}$);\n  networks {zeros:.3f} "
                 f"($\\sigma < 10^{{-14}} \\sigma_{{\\max}}$)")
  if atom > 1e-6:
    loc = np.sqrt(float(th["atom_lambda"]))
    ax.axvline(np.log10(loc), color="k", lw=1.3, ls="--")
    lines.append(f"atom at $\\sigma = {loc:.3g}$: {atom:.2f}")
  below_emp = float(np.mean(sv < 10 ** left))
  if max(th["below"], below_emp) > SHOW_BELOW:
    lines.append(f"mass at $\\sigma < 10^{{{left:g}}}$:\n  theory {th['below']:.3f}, "
                 f"networks {below_emp:.3f}")
  if not np.all(th["converged"]):
    lines.append(f"theory unconverged at {np.sum(~th['converged'])} points")
  ax.text(0.03, 0.97, "\n".join(lines), transform=ax.transAxes, va="top", fontsize=8)
  ax.set_xlim(left, right)
  # The theory's mass per bin (its density can diverge, as orthogonal ReLU's at L = 2).
  cdf = np.concatenate([[0.0], np.cumsum(0.5 * np.diff(sigma) * (
      np.nan_to_num(th["singular_value_density"][1:]) + np.nan_to_num(
          th["singular_value_density"][:-1])))])
  per_bin = np.diff(np.interp(10 ** edges, sigma, cdf)) / np.diff(edges)
  ax.set_ylim(0, 1.5 * max(per_bin.max(), hist.max()))
  ax.set_title(f"{weights}, $L = {depth}$")
  return dict(left=left, below_theory=th["below"], below_networks=below_emp,
              edge=th["edge"], expected=th["expected"], sigma_max_mean=sigma_max_mean,
              zeros=zeros)


def _point_mass(ax, sv, th, *, depth, weights, color):
  """A spectrum that is one atom (linear, orthogonal): a vertical line, and what the networks did."""
  loc = np.sqrt(float(th["atom_lambda"]))
  spread = float(np.max(np.abs(sv / loc - 1)))
  # The networks' singular values as a wide bar (they coincide to 1e-15), the theory on top.
  ax.vlines(np.log10(sv), 0, 0.6, color=color, lw=8, alpha=0.6)
  ax.axvline(np.log10(loc), color="k", lw=1.4, label="theory: point mass (exact)")
  ax.text(0.03, 0.97,
          f"theory (exact): all mass {float(th['atom_mass']):.0f}\nat $\\sigma = {loc:.3g}$ "
          f"($J$ orthogonal)\nnetworks: every $\\sigma$ has\n"
          f"$|\\sigma - 1| \\leq {spread:.0e}$", transform=ax.transAxes, va="top", fontsize=8)
  ax.set_xlim(-1, 1)
  ax.set_ylim(0, 1)
  ax.set_yticks([])
  ax.set_title(f"{weights}, $L = {depth}$")
  return dict(left=-1.0, below_theory=0.0, below_networks=float(np.mean(sv < 0.1)),
              edge=loc, expected=loc, sigma_max_mean=float(sv.max()), zeros=0.0)


def _figure(name, ds, theory, *, width, n_seeds):
  fig, axes = _common.subplots(len(WEIGHTS), len(DEPTHS), figsize=(12, 6.2))
  color = _common.ACTIVATION_COLORS.get(name, "C0")
  notes = {}
  for r, weights in enumerate(WEIGHTS):
    for j, depth in enumerate(DEPTHS):
      ax = axes[r, j]
      notes[weights, depth] = _panel(
          ax, ds.singular_values.sel(init=weights, depth=depth).values, theory[weights, depth],
          depth=depth, weights=weights, color=color, width=width)
      ax.set_xlabel(r"$\log_{10} \sigma$ (singular value of $J$)")
      if j == 0:
        ax.set_ylabel(r"density per unit $\log_{10}\sigma$"
                      if float(theory[weights, depth]["atom_mass"]) < 0.99 else "point mass")
  handles = {}
  for ax in axes.ravel():
    for h, lab in zip(*ax.get_legend_handles_labels()):
      handles.setdefault(lab, h)
  fig.legend(list(handles.values()), list(handles), loc="outside lower center",
             ncol=len(handles), fontsize=9)
  fig.suptitle(
      f"{name}: $\\sigma_w^2 = {_jacobian.network(name).sigma_w2:.4g}$, "
      f"$\\sigma_b^2 = {_jacobian.network(name).sigma_b2:g}$; width $N = {width}$, "
      f"{n_seeds} networks per panel ({n_seeds * width} singular values)")
  return fig, notes


def _dataset(name, ds, theory, notes, width) -> xr.Dataset:
  def grid(field):
    return xr.DataArray(np.array([[theory[w, d][field] for d in DEPTHS] for w in WEIGHTS]),
                        dims=("init", "depth", "point")[:2 + np.ndim(theory[WEIGHTS[0], DEPTHS[0]][field])])

  def note(field):
    return xr.DataArray(np.array([[notes[w, d][field] for d in DEPTHS] for w in WEIGHTS]),
                        dims=("init", "depth"))

  return xr.Dataset({
      "singular_values": ds.singular_values,
      "theory_sigma": grid("sigma"),
      "theory_singular_value_density": grid("singular_value_density"),
      "theory_zero_mass": grid("zero_mass"),
      "theory_atom_mass": grid("atom_mass"),
      "theory_atom_sigma": np.sqrt(grid("atom_lambda")),
      "axis_left": note("left"),
      "theory_mass_below": note("below_theory"),
      "networks_mass_below": note("below_networks"),
      "theory_edge": note("edge"),
      "expected_sigma_max": note("expected"),
      "networks_sigma_max_mean": note("sigma_max_mean"),
      "networks_zero_fraction": note("zeros"),
      "zero_fraction_at_width": grid("zero_at_width"),
  }, coords={"init": list(WEIGHTS), "depth": list(DEPTHS)},
     attrs={"activation": name, "sigma_w2": _jacobian.network(name).sigma_w2,
            "sigma_b2": _jacobian.network(name).sigma_b2, "width": width, "q": float(ds.q)})


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  settings = _jacobian.settings(paper)
  width, n_seeds = settings["width"], settings["n_seeds"]
  written = []
  with jax.enable_x64(True):
    for name in CASES:
      ds = _jacobian.networks(name, progress=progress, **settings).sel(depth=list(DEPTHS))
      theory = {(w, d): _theory(name, w, d, float(ds.q), ds.singular_values.sel(
                    init=w, depth=d).values.ravel(), width, tuple(settings["depths"]))
                for w in WEIGHTS for d in DEPTHS}
      fig, notes = _figure(name, ds, theory, width=width, n_seeds=n_seeds)
      written += _common.save(fig, _dataset(name, ds, theory, notes, width),
                              pathlib.Path(outdir) / f"jacobian_spectra_{name}")
  return written
