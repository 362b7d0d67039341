"""Variance simulator: the activation variance through 20 layers of width 128 for Xavier, He and a bad init, as a PNG and an animated GIF.

Feed Gaussian inputs through 20 layers of width 128 (zero biases) initialised
with Xavier (Glorot) normal, He (Kaiming) normal, or a bad init, the
unscaled ``normal(1.0)`` (``W_ij ~ N(0, 1)``, what ``torch.randn`` gives:
``sigma_w2 = 128``), and watch ``Var[a^l]``, the variance of the
post-activations, layer by layer: for tanh Xavier keeps it order one and
the bad init saturates every unit (``Var[a^l]`` near 1, ``a^l`` near
``+-1``); for ReLU He keeps it constant, Xavier halves it at every layer,
and the bad init multiplies it by 64 per layer until float32 overflows
(the line stops; grey: where the statistic, a mean over inputs and units
summed in float32, overflows). Lines: median over seeds, bands 10-90%, dashed: the
mean-field prediction.

``variance_simulator.gif`` shows the profile growing one layer per frame;
``variance_simulator.png`` is its last frame. To simulate other settings,
call :func:`compute` (any Gaussian schemes of :mod:`empirical.inits`,
activations, width, depth, seeds) and :func:`draw` / :func:`animate`.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import xarray as xr
from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.ticker import MaxNLocator

import empirical
import meanfield
from figures import _common, _seeds

WIDTH = 128
DEPTH = 20
ACTIVATIONS = ("tanh", "relu")
#: label -> scheme (Gaussian schemes only: they run as one sweep over sigma_w2)
SCHEMES = {"Xavier": "xavier_normal", "He": "he_normal", "bad: std 1.0": "normal(1)"}
COLORS = ("#1b9e77", "#7570b3", "#b2182b")


def compute(*, width: int = WIDTH, depth: int = DEPTH, n_seeds: int = 32, n_inputs: int = 16,
            schemes: dict[str, str] | None = None, activations=ACTIVATIONS,
            progress: bool = False) -> xr.Dataset:
  """``post_var`` (dims ``activation, sigma_w2, seed, layer``) and its theory.

  Args:
    width, depth: of the MLP (inputs have ``width`` features, so every layer
      has the same fan-in).
    n_seeds, n_inputs: networks per setting, Gaussian inputs per network.
    schemes: label -> Gaussian scheme name (``xavier_normal``,
      ``he_normal``, ``lecun_normal``, ``normal(std)``); default
      :data:`SCHEMES`. Schemes that give the same ``sigma_w2`` raise.
    activations: names from ``meanfield``'s table.
  """
  schemes = dict(SCHEMES if schemes is None else schemes)
  sigma_w2 = [_seeds.preset_sigma_w2(s, fan_in=width, fan_out=width) for s in schemes.values()]
  if len(set(np.round(sigma_w2, 12))) != len(sigma_w2):
    raise ValueError(f"`schemes` must have distinct variances, got sigma_w2 = {sigma_w2}")
  # The schemes are one Network's sigma_w2 axis; one sweep runs it for every activation
  # (one compiled program), so its other fields go in as keywords.
  grid = meanfield.Network(init="gaussian", sigma_w2=sigma_w2, sigma_b2=0.0, depth=depth,
                           width=width)
  ds = empirical.sweep(jax.random.key(4), activation=list(activations),
                       **_common.network_keywords(grid, "activation"), n_seeds=n_seeds,
                       n_inputs=n_inputs, in_features=width, progress=progress)
  with jax.enable_x64(True):
    th = empirical.overlay.theory(ds)
  post = np.stack([_seeds.theory_post_var(th.q.sel(activation=a).values, a)
                   for a in ds.activation.values])
  out = ds[["post_var", "q", "first_nonfinite"]]
  out["theory_post_var"] = (th.q.dims, post)
  out = out.assign_coords(scheme=("sigma_w2", list(schemes)))
  out.attrs = {k: v for k, v in ds.attrs.items() if k != "key"}
  out.attrs["band"] = "median over seeds and 10-90% quantiles"
  return out


def _setup(ds: xr.Dataset):
  fig, axes = _common.subplots(1, ds.sizes["activation"], figsize=(10.0, 4.4), squeeze=False)
  axes = axes[0]
  FigureCanvasAgg(fig)  # an Agg canvas, for the animation writer
  layer = ds.layer.values
  # The statistic is a mean over inputs and units, summed in float32 first.
  ceiling = _seeds.FLOAT32_MAX / (ds.attrs["n_inputs"] * ds.width.item())
  for ax, act in zip(axes, ds.activation.values):
    th = ds.theory_post_var.sel(activation=act).values
    finite = th[np.isfinite(th) & (th > 0)]
    ax.set_yscale("log")
    ax.set_xlim(0.5, layer[-1] + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(max(finite.min() / 30, 1e-45), min(finite.max() * 30, 1e45))
    if ceiling < ax.get_ylim()[1]:
      ax.axhspan(ceiling, ax.get_ylim()[1], color="0.88", lw=0, zorder=0)
    ax.set_xlabel(_common.LABELS["layer"])
    ax.set_ylabel(r"$\mathrm{Var}[a^l]$, $a^l = \phi(h^l)$")
    ax.set_title(str(act), color=_common.ACTIVATION_COLORS.get(str(act), "k"))
  return fig, axes


def _draw_upto(fig, axes, ds: xr.Dataset, upto: int):
  """Draw layers ``1..upto`` (clears the axes' lines and bands first)."""
  for ax, act in zip(axes, ds.activation.values):
    for artist in list(ax.lines) + list(ax.collections):
      artist.remove()
    sel = ds.sel(activation=act)
    layer = ds.layer.values[:upto]
    for k, label in enumerate(sel.scheme.values):
      s = sel.isel(sigma_w2=k)
      _seeds.band(ax, layer, s.post_var.transpose("seed", "layer").values[:, :upto],
                  color=COLORS[k % len(COLORS)], marker="o", ms=3,
                  label=rf"{label} ($\sigma_w^2 = {float(s.sigma_w2):g}$)")
      ax.plot(layer, s.theory_post_var.values[:upto], color=COLORS[k % len(COLORS)],
              ls="--", lw=1.0)
    ax.legend(fontsize=8, loc="upper left")
  fig.suptitle(f"Variance simulator: width {ds.width.item()}, {ds.sizes['seed']} seeds, "
               f"layer {upto} of {ds.sizes['layer']} (median, 10-90% band; dashed: theory; "
               "grey: overflows float32)", fontsize=10)


def draw(ds: xr.Dataset, upto: int | None = None):
  """The profile up to layer ``upto`` (default: all)."""
  fig, axes = _setup(ds)
  _draw_upto(fig, axes, ds, ds.sizes["layer"] if upto is None else upto)
  return fig


def animate(ds: xr.Dataset, path: str | pathlib.Path, *, fps: int = 4) -> pathlib.Path:
  """Write the GIF (one frame per layer, the last one repeated twice), atomically."""
  path = pathlib.Path(path)
  fig, axes = _setup(ds)
  n = ds.sizes["layer"]
  frames = list(range(1, n + 1)) + [n] * 2
  anim = FuncAnimation(fig, lambda k: _draw_upto(fig, axes, ds, k), frames=frames,
                       blit=False, cache_frame_data=False)
  # Atomic like _common.save; the temporary name keeps the .gif suffix, which
  # Pillow reads the format from.
  with empirical.engine.atomic_path(path) as tmp:
    anim.save(tmp, writer=PillowWriter(fps=fps), dpi=80)
  return path


SECONDS = 29   # measured: default settings, 2-core CPU, one figure at a time


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  """Write ``variance_simulator.png``/``.nc`` and ``variance_simulator.gif``."""
  ds = compute(n_seeds=256 if paper else 32, n_inputs=32 if paper else 16, progress=progress)
  outdir = pathlib.Path(outdir)
  paths = _common.save(draw(ds), ds, outdir / "variance_simulator")
  return paths + [animate(ds, outdir / "variance_simulator.gif")]
