"""Rank collapse in transformer blocks: Post-LN, Pre-LN, no LN and 1/sqrt(L) scaling.

Random transformer blocks (``arch=meanfield.Transformer``: :mod:`meanfield.transformer`,
:mod:`empirical.transformer`) with uniform attention (``beta = 0``), a ReLU MLP
(``sigma_w2 = 2``, ``sigma_b2 = 0.05``), unit value and output variances, from
tokens of cosine ``c_input = 0.2``:

- Left: the token correlation ``c`` (mean pairwise cosine) after each block.
  Theory (lines, :func:`meanfield.propagate`) over measured bands (mean ± one
  standard deviation over seeds). Post-LN and no-LN blocks with unit residual
  strengths align the tokens geometrically (``1 - c`` about halves per block);
  Pre-LN drifts slowly (a power law, docs/transformer.md); Pre-LN with both
  branches scaled by ``1/sqrt(L)`` keeps the tokens apart over the whole stack.
- Right: ``1 - c`` on a log scale (lines theory, markers measured means): the
  straight lines of geometric collapse against the bending power law of Pre-LN.
  At width 64 the measured ``1 - c`` of Post-LN and no-LN blocks falls a little
  more slowly than the theory's factor 1/2 per block once it is below about
  ``1e-2``: a finite-width effect (the infinite-width maps have no fluctuations
  to keep the tokens apart), not examined further here.

CPU-sized default: width 64, 16 tokens, 16 blocks, 8 seeds; ``--paper``: width 256,
64 tokens, 48 blocks, 16 seeds.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import xarray as xr

import empirical
import meanfield
from figures import _common

SECONDS = 60   # measured: 71 s on the default settings, 2-core CPU shared with other work

HYPER = dict(activation="relu", sigma_w2=2.0, sigma_b2=0.05)
C_INPUT = 0.2
CASES = ("Post-LN", "Pre-LN", "no LN", "Pre-LN, 1/sqrt(L)")
COLORS = {"Post-LN": "#b2182b", "Pre-LN": "#2166ac", "no LN": "#ef8a62",
          "Pre-LN, 1/sqrt(L)": "#1b7837"}


def _settings(paper: bool) -> dict:
  if paper:
    return dict(width=256, tokens=64, depth=48, seeds=16)
  return dict(width=64, tokens=16, depth=16, seeds=8)


def _arch(case: str, tokens: int, depth: int) -> meanfield.Transformer:
  norm = {"Post-LN": "post", "no LN": None}.get(case, "pre")
  alpha = depth ** -0.5 if "sqrt" in case else 1.0
  return meanfield.Transformer(tokens=tokens, norm=norm, alpha_sa=alpha, alpha_mlp=alpha)


def compute(*, width: int, tokens: int, depth: int, seeds: int) -> xr.Dataset:
  """Measured ``c`` and stable rank per (case, seed, layer), with the theory's ``c``."""
  c, rank, theory = [], [], []
  for i, case in enumerate(CASES):
    net = meanfield.Network(depth=depth, width=width, arch=_arch(case, tokens, depth), **HYPER)
    ds = empirical.sweep(jax.random.key(i), network=net, n_seeds=seeds, c_input=C_INPUT,
                         progress=False)
    c.append(ds.c.values)
    rank.append(ds.stable_rank.values)
    theory.append(np.asarray(empirical.theory(ds).c.values))
  dims = ("case", "seed", "layer")
  return xr.Dataset(
      {"c": (dims, np.array(c)), "stable_rank": (dims, np.array(rank)),
       "theory_c": (("case", "layer"), np.array(theory))},
      coords={"case": list(CASES), "seed": np.arange(seeds), "layer": np.arange(1, depth + 1)},
      attrs=dict(width=width, tokens=tokens, c_input=C_INPUT, **HYPER))


def draw(ds: xr.Dataset):
  fig, (left, right) = _common.subplots(1, 2, figsize=(9.0, 3.6))
  layer = ds.layer.values
  for case in ds.case.values:
    color = COLORS[str(case)]
    measured = ds.c.sel(case=case)
    mean, std = measured.mean("seed").values, measured.std("seed").values
    left.fill_between(layer, mean - std, mean + std, color=color, alpha=0.25, lw=0)
    left.plot(layer, ds.theory_c.sel(case=case), color=color, lw=1.4, label=str(case))
    right.semilogy(layer, 1 - ds.theory_c.sel(case=case), color=color, lw=1.4, label=str(case))
    right.semilogy(layer, 1 - mean, "o", color=color, ms=3, ls="none")
  left.set_xlabel("block $l$")
  left.set_ylabel("token correlation $c^l$")
  left.set_ylim(0, 1.02)
  left.set_title(f"theory (lines), measured mean ± sd (bands); d={ds.attrs['width']}, "
                 f"T={ds.attrs['tokens']}", fontsize=8)
  left.legend(fontsize=7, frameon=False)
  right.set_xlabel("block $l$")
  right.set_ylabel("$1 - c^l$")
  right.set_title("rate of rank collapse (markers: measured means)", fontsize=8)
  return fig


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  ds = compute(**_settings(paper))
  return _common.save(draw(ds), ds, pathlib.Path(outdir) / "transformer_collapse")
