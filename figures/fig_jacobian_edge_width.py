"""The Jacobian's largest singular value at finite width: measured sigma_max against the infinite-width edge.

tanh at criticality (``sigma_b2 = 0.05``, ``sigma_w2`` on the critical line,
input at ``q = q*``), Gaussian and orthogonal weights, square networks of
width ``N`` in 32..256 (``paper=True``: 32..512). ``J = dx^L / dx^0``
(:mod:`empirical.jacobian`), float64 SVD of each network
(:func:`empirical.jacobian_spectra`); markers are the median over networks,
bars the 10-90% range.

What is theory here:

- the solid black line, ``sqrt(lambda_max)``
  (:func:`meanfield.jacobian_spectrum_edge`): the edge of the singular-value
  density in the limit ``N -> infinity`` at fixed ``L`` (Pennington,
  Schoenholz & Ganguli 2017, 2018). It is not a prediction for a network of
  finite width.
- the thin dotted lines (Gaussian weights only): the finite-width median of
  ``|J u|`` for a fixed unit vector ``u``, from
  :func:`meanfield.finite_width_jacobian` and
  :func:`meanfield.finite_width.finite_width_quantiles` (first order in ``1/N``
  with the third cumulant of the log: docs/finite_width.md). That function describes
  ``dh^{L+1}/dx^0``; since ``t_h^{L+1} = t_x^L W^{L+1}`` with ``W^{L+1}``
  Gaussian and independent of ``t_x^L``, ``log |J u|^2 = log |t_h^{L+1}|^2 -
  log sigma_w2 - log(chi^2_N / N)`` with the last term independent, so its
  cumulants are subtracted exactly (``psi(N/2) + log(2/N)`` and the polygammas
  ``psi^(j)(N/2)``, j = 1, 2, 3). The input length is matched (``|x^0|^2 / N = (q* -
  sigma_b2) / sigma_w2``, its own ``O(1/N)`` spread neglected). Since
  ``sigma_max >= |J u|`` for every unit ``u`` (an inequality), this median
  bounds the typical ``sigma_max`` from below; it is not a prediction of
  ``sigma_max``.

What is an observation (measured in the default run, not derived here):

- at fixed ``L`` the measured ``sigma_max`` rises towards the edge as ``N``
  grows, and falls below it once ``L / N`` is not small. Plotted against
  ``L / N`` (right panel) the Gaussian ratios of the four widths lie close
  to one curve (medians: ``L/N = 0.125``: 0.75-0.87; ``0.25``: 0.65-0.78;
  ``0.5``: 0.49-0.53; ``1``: 0.17-0.33), so ``L / N``, not ``L``, says when
  the infinite-width edge applies: within 10% only for ``L / N`` up to
  about 1/32 (medians 0.91-0.96 there). Orthogonal weights stay within 10% of the edge up to ``L / N
  = 0.25`` at every width and collapse less cleanly beyond (0.76-1.02 at
  ``L / N = 0.5``).
- for Gaussian weights at ``L`` beyond ``N`` the measured ``sigma_max``
  stops growing and then falls, at the rate of the dotted ``|J u|`` line
  (``N = 32``, ``L = 64 -> 128``: ``log sigma_max`` falls 0.026 per layer,
  the theory median of ``log |J u|`` 0.029). For products of i.i.d. random
  matrices ``(1/L) log sigma_max`` and ``(1/L) log |J u|`` converge to the
  same top Lyapunov exponent (Furstenberg & Kesten 1960; Oseledets 1968),
  which at finite ``N`` is below 0 here, while the edge grows like
  ``sqrt(L)``: the deep-and-narrow networks are in that regime. That the
  same holds for these data-dependent products ``D^l W^l`` is this
  observation, not a proof.
- below ``L / N`` about 1/4 the Gaussian gap is the Tracy-Widom shift at
  the theory's square-root edge, ``sigma_max / edge`` about
  ``sqrt(1 - 0.96 (L/N)^{2/3})`` for Gaussian products, a function of
  ``L / N`` alone (derived in docs/jacobian_edge.md and drawn in the
  ``jacobian_depth`` and ``jacobian_spectra`` figures).
"""

from __future__ import annotations

import pathlib

import jax
import matplotlib
import numpy as np
import scipy.special
import xarray as xr

import empirical
import meanfield
from meanfield.finite_width import finite_width_quantiles
from figures import _common

ACTIVATION = "tanh"
SIGMA_B2 = 0.05
WEIGHTS = ("gaussian", "orthogonal")
MARKERS = {"gaussian": "s", "orthogonal": "o"}
QUANTILES = (0.1, 0.5, 0.9)


def _settings(paper: bool) -> dict:
  if paper:
    return dict(widths=(32, 64, 128, 256, 512), n_seeds=(32, 24, 16, 8, 6),
                depths=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256))
  return dict(widths=(32, 64, 128, 256), n_seeds=(12, 12, 8, 4),
              depths=(1, 2, 4, 8, 16, 32, 64, 128))


def critical_network() -> meanfield.Network:
  """The tanh network on its critical line at ``SIGMA_B2`` (solve inside x64 for float64)."""
  net = meanfield.Network(activation=ACTIVATION, sigma_b2=SIGMA_B2)
  return net.replace(sigma_w2=float(meanfield.critical_sigma_w2(net)))


def edge(depths, *, init: str, net: meanfield.Network) -> np.ndarray:
  """Infinite-width ``sqrt(lambda_max)`` of ``net`` at ``q*`` for ``depths`` (float64 inside
  x64; every depth in one call, so the depth is a keyword beside the Network's fields)."""
  lam = meanfield.jacobian_spectrum_edge(init=init, activation=net.activation,
                                         sigma_w2=np.float64(net.sigma_w2),
                                         sigma_b2=np.float64(net.sigma_b2),
                                         depth=np.asarray(depths), q=None)
  return np.sqrt(np.asarray(lam))


def ju_quantiles(net: meanfield.Network, *, q_star: float) -> np.ndarray:
  """Finite-width quantiles ``QUANTILES`` of ``|J u|``, ``J = dx^L/dx^0``, ``L = 1..net.depth``.

  From :func:`meanfield.finite_width_jacobian` of ``net`` one layer deeper
  (which is ``dh^{L+1}/dx^0``) less the exact log cumulants of the independent last
  factor ``sigma_w2 chi^2_N / N``, ``N = net.width``, through
  :func:`meanfield.finite_width.finite_width_quantiles`. Returns ``(len(QUANTILES), net.depth)``.
  """
  sigma_w2 = np.float64(net.sigma_w2)
  stats = meanfield.finite_width_jacobian(net.replace(depth=net.depth + 1),
                                          q_input=np.float64((q_star - net.sigma_b2) / sigma_w2))
  n = np.float64(net.width)
  deeper = {k: np.asarray(v)[1:] for k, v in stats._asdict().items()}
  last = [scipy.special.polygamma(j, n / 2) for j in (1, 2, 3)]
  dx = stats._replace(**deeper)._replace(
      log_mean=deeper["log_mean"] - np.log(sigma_w2) - (scipy.special.digamma(n / 2)
                                                        + np.log(2 / n)),
      log_var=np.maximum(deeper["log_var"] - last[0], 0.0),
      log_k3=deeper["log_k3"] - last[1], log_k4=deeper["log_k4"] - last[2])
  return np.sqrt(np.asarray(finite_width_quantiles(dx, QUANTILES), np.float64))


def measure(key, net: meanfield.Network, *, n_seeds: int, depths
            ) -> tuple[xr.DataArray, float]:
  """Measured ``sigma_max`` of ``net`` at ``depths`` with dims ``(init, depth, seed)`` (``init``
  as ``WEIGHTS``; every depth and weight law in one call), and ``q*``."""
  ds = empirical.jacobian_spectra(key, depth=list(depths), init=list(WEIGHTS),
                                  **_common.network_keywords(net, "depth", "init"), q=None,
                                  n_seeds=n_seeds, progress=False, dtype=np.float64)
  return ds.sigma_max.sel(init=list(WEIGHTS)).transpose("init", "depth", "seed"), float(ds.q)


def _errorbar(ax, x, values, **kwargs):
  """Median marker with a 10-90% bar; ``values``: ``(len(x), seeds)``."""
  lo, med, hi = np.quantile(values, [0.1, 0.5, 0.9], axis=-1)
  ax.errorbar(x, med, yerr=[med - lo, hi - med], ls="none", capsize=0, elinewidth=0.8, **kwargs)


SECONDS = 42   # measured: default settings, 2-core CPU, one figure at a time


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  settings = _settings(paper)
  widths, depths = settings["widths"], np.array(settings["depths"])
  net = critical_network()
  sigma_w2 = net.sigma_w2
  colors = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, len(widths)))
  theory_depths = np.unique(np.round(np.geomspace(1, depths.max(), 40)).astype(np.int64))
  fig, axes = _common.subplots(1, 3, figsize=(15.5, 4.8))
  data = {}
  with jax.enable_x64(True):
    edges = {w: edge(depths, init=w, net=net) for w in WEIGHTS}
    theory_edges = {w: edge(theory_depths, init=w, net=net) for w in WEIGHTS}
    for i, (width, n_seeds) in enumerate(zip(widths, settings["n_seeds"])):
      sigma_max, q_star = measure(jax.random.key(i), net.replace(width=width),
                                  n_seeds=n_seeds, depths=depths)
      ju = ju_quantiles(net.replace(depth=int(depths.max()), width=width), q_star=q_star)
      data[f"sigma_max_{width}"] = xr.DataArray(sigma_max.values,
                                                dims=("init", "depth", f"seed_{width}"))
      data[f"ju_quantiles_{width}"] = xr.DataArray(ju, dims=("quantile", "ju_depth"))
      for j, weights in enumerate(WEIGHTS):
        values = sigma_max.sel(init=weights).values
        style = dict(marker=MARKERS[weights], ms=4.5, color=colors[i],
                     mfc="white" if weights == "gaussian" else colors[i])
        _errorbar(axes[j], depths * (1 + 0.03 * (i - len(widths) / 2)), values,
                  label=f"N = {width}", **style)
        _errorbar(axes[2], depths / width, values / edges[weights][:, None], **style)
        if weights == "gaussian":
          axes[j].plot(np.arange(1, depths.max() + 1), ju[1], ls=":", lw=1.1, color=colors[i])
  for j, weights in enumerate(WEIGHTS):
    ax = axes[j]
    ax.plot(theory_depths, theory_edges[weights], color="k", lw=1.4,
            label=r"edge $\sqrt{\lambda_{\max}}$, $N = \infty$")
    if weights == "gaussian":
      ax.plot([], [], ls=":", color="0.3", label=r"median $|Ju|$, finite $N$ (theory)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(_common.LABELS["depth"])
    ax.set_ylabel(r"largest singular value $\sigma_{\max}$ of $J$")
    ax.set_title(f"{weights} weights")
    ax.legend(loc="lower left", fontsize=7.5)
  ax = axes[2]
  ax.axhline(1.0, color="k", lw=0.8)
  ax.set_xscale("log")
  ax.set_xlabel(r"depth / width  $L / N$")
  ax.set_ylabel(r"$\sigma_{\max}$ / edge")
  ax.set_title("ratio against L/N (filled: orthogonal, open: Gaussian)")
  fig.suptitle(f"{ACTIVATION} at criticality: $\\sigma_w^2 = {sigma_w2:.4g}$, "
               f"$\\sigma_b^2 = {SIGMA_B2:g}$, $q = q^* = {q_star:.3g}$; median and 10-90% "
               f"of {', '.join(map(str, settings['n_seeds']))} networks")
  for weights in WEIGHTS:
    data[f"edge_{weights}"] = xr.DataArray(edges[weights], dims=("depth",))
    data[f"theory_edge_{weights}"] = xr.DataArray(theory_edges[weights], dims=("theory_depth",))
  dataset = xr.Dataset(data, coords={"depth": depths, "theory_depth": theory_depths,
                                     "ju_depth": np.arange(1, depths.max() + 1),
                                     "quantile": np.asarray(QUANTILES),
                                     "init": list(WEIGHTS)})
  dataset.attrs.update(sigma_w2=sigma_w2, sigma_b2=SIGMA_B2, q_star=q_star,
                       widths=np.asarray(widths))
  return _common.save(fig, dataset, pathlib.Path(outdir) / "jacobian_edge_width")
