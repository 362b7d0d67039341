"""Transformer blocks over (beta, alpha): rank collapse against the attention's temperature.

Post-LN transformer blocks (``arch=meanfield.Transformer(norm="post")``) with a
ReLU MLP (``sigma_w2 = 0.5``, ``sigma_b2 = 0``), unit value and output
variances, ``alpha_mlp = 1``, tokens of cosine ``c_input = 0.2``:

- Left: the token correlation after ``L`` blocks over the scores' inverse
  temperature ``beta`` and the attention branch's strength ``alpha_sa``:
  theory (colour, contours at ``c = 0.5, 0.9, 0.99``; Giorlandino & Goldt's
  large-T theory for ``beta > 0``, exact uniform attention at ``beta = 0``)
  and random blocks (discs, the same colour scale: mean over seeds). The
  dashed line is ``beta_c = sqrt(2 / (1 - c_input))`` of the first block: to
  its left attention averages over the tokens and collapses them at every
  strength; to its right it condenses on few keys, keeps part of each
  token's own direction and slows the collapse, most where the branch is
  strong. A weak attention branch (small ``alpha_sa``) collapses slowly at
  every ``beta``.
- Right: the attention entropy of the first block over ``log T`` (mean over
  queries, heads and seeds; the first block's input does not depend on
  ``alpha_sa``) against ``beta``: 1 for uniform attention, falling as ``beta``
  nears ``beta_c`` (entropy collapse). The REM's annealed entropy ``log T (1 -
  (beta / beta_c)^2)`` below ``beta_c``, ``o(log T)`` above (line), is the
  ``T -> infinity`` limit; at ``T = 64`` the measured entropy stays well above it
  beyond ``beta_c`` (about 0.36 ``log T`` at ``beta = 2``).

The theory is the ``T -> infinity`` limit at ``beta > 0``: at ``T = 64`` the
blocks collapse faster than it says where ``beta`` is large and the branch strong
(measured 0.98 against 0.83 at ``beta = 6``, ``alpha_sa = 1``, 12 blocks; they agree
within 0.02 at ``beta <= 2``): finite-T corrections (docs/transformer.md), which at
``T = 256`` are within sampling error over three blocks (tests/empirical).
CPU-sized default: width 128, 64 tokens, 12 blocks, 4 seeds; ``--paper``: width
512, 256 tokens, 24 blocks, 8 seeds.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import xarray as xr

import empirical
import meanfield
from figures import _common

SECONDS = 30   # measured: 24 s on the default settings, 2-core CPU shared with other work

HYPER = dict(activation="relu", sigma_w2=0.5, sigma_b2=0.0)
C_INPUT = 0.2
BETAS = (0.0, 2.0, 4.0, 6.0)
ALPHAS = (0.25, 0.5, 1.0)


def _settings(paper: bool) -> dict:
  if paper:
    return dict(width=512, tokens=256, depth=24, seeds=8)
  return dict(width=128, tokens=64, depth=12, seeds=4)


def compute(*, width: int, tokens: int, depth: int, seeds: int,
            betas=BETAS, alphas=ALPHAS) -> xr.Dataset:
  """Theory ``c^L`` on a fine (beta, alpha) grid; measured ``c^L`` and entropy on a coarse one."""
  fine_beta, fine_alpha = np.linspace(0, 8, 41), np.linspace(0.05, 1.2, 24)
  theory = np.zeros((fine_beta.size, fine_alpha.size))
  with jax.enable_x64(True):
    for i, b in enumerate(fine_beta):
      for j, a in enumerate(fine_alpha):
        net = meanfield.Network(depth=depth, arch=meanfield.Transformer(
            tokens=tokens, norm="post", beta=float(b), alpha_sa=float(a)), **HYPER)
        theory[i, j] = float(meanfield.propagate(net, q_input=1.0, c_input=C_INPUT).c[-1])
  c = np.zeros((len(betas), len(alphas), seeds))
  entropy = np.zeros((len(betas), len(alphas), seeds))
  for i, b in enumerate(betas):
    for j, a in enumerate(alphas):
      net = meanfield.Network(depth=depth, width=width, arch=meanfield.Transformer(
          tokens=tokens, norm="post", beta=b, alpha_sa=a), **HYPER)
      ds = empirical.sweep(jax.random.key(7), network=net, n_seeds=seeds, c_input=C_INPUT,
                           progress=False)
      c[i, j], entropy[i, j] = ds.c.values[:, -1], ds.entropy.values[:, 0]
  entropy_beta = np.linspace(0, max(betas), 13)
  first = np.zeros((entropy_beta.size, seeds))          # one block: its attention's entropy
  for i, b in enumerate(entropy_beta):
    net = meanfield.Network(depth=1, width=width, arch=meanfield.Transformer(
        tokens=tokens, norm="post", beta=float(b)), **HYPER)
    first[i] = empirical.sweep(jax.random.key(8), network=net, n_seeds=seeds, c_input=C_INPUT,
                               progress=False).entropy.values[:, 0]
  return xr.Dataset(
      {"theory_c": (("fine_beta", "fine_alpha"), theory),
       "c": (("beta", "alpha", "seed"), c), "entropy": (("beta", "alpha", "seed"), entropy),
       "first_entropy": (("entropy_beta", "seed"), first)},
      coords={"fine_beta": fine_beta, "fine_alpha": fine_alpha, "beta": list(betas),
              "entropy_beta": entropy_beta,
              "alpha": list(alphas), "seed": np.arange(seeds)},
      attrs=dict(width=width, tokens=tokens, depth=depth, c_input=C_INPUT,
                 beta_c=float(np.sqrt(2 / (1 - C_INPUT))), **HYPER))


def draw(ds: xr.Dataset):
  fig, (left, right) = _common.subplots(1, 2, figsize=(9.5, 3.8))
  mesh = left.pcolormesh(ds.fine_beta, ds.fine_alpha, ds.theory_c.T, vmin=C_INPUT, vmax=1,
                         cmap="viridis", shading="nearest")
  lines = left.contour(ds.fine_beta, ds.fine_alpha, ds.theory_c.T, levels=[0.5, 0.9, 0.99],
                       colors="white", linewidths=0.8)
  left.clabel(lines, fontsize=7)
  b, a = np.meshgrid(ds.beta, ds.alpha, indexing="ij")
  left.scatter(b.ravel(), a.ravel(), c=ds.c.mean("seed").values.ravel(), vmin=C_INPUT, vmax=1,
               cmap="viridis", s=70, edgecolors="white", linewidths=1.2, zorder=3)
  left.axvline(ds.attrs["beta_c"], color="white", ls="--", lw=1)
  left.set_xlabel(r"inverse temperature $\beta$")
  left.set_ylabel(r"attention branch strength $\alpha_{SA}$")
  left.set_title(f"Post-LN: $c$ after {ds.attrs['depth']} blocks (T={ds.attrs['tokens']}, "
                 f"d={ds.attrs['width']}; discs measured)", fontsize=8)
  fig.colorbar(mesh, ax=left, label="token correlation $c^L$")
  beta_c, log_t = ds.attrs["beta_c"], np.log(ds.attrs["tokens"])
  fine = np.linspace(0, float(ds.beta.max()), 200)
  right.plot(fine, np.maximum(0, 1 - (fine / beta_c) ** 2), color="k", lw=1.2,
             label=r"REM, $T\to\infty$: $1 - (\beta/\beta_c)^2$")
  right.plot(ds.entropy_beta, ds.first_entropy.mean("seed") / log_t, "o", color="#b2182b",
             ms=5, label=f"measured, T={ds.attrs['tokens']}")
  right.axvline(beta_c, color="gray", lw=0.8, ls="--", label=r"$\beta_c$")
  right.set_xlabel(r"inverse temperature $\beta$")
  right.set_ylabel(r"attention entropy / $\log T$, block 1")
  right.set_title("entropy collapse beyond the critical temperature", fontsize=8)
  right.legend(fontsize=7, frameon=False)
  return fig


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  ds = compute(**_settings(paper))
  return _common.save(draw(ds), ds, pathlib.Path(outdir) / "transformer_phase")
