"""figures/fig_transformer_collapse.py at toy size: its data layout and what it claims."""

from __future__ import annotations

import numpy as np
import pytest

from figures import _common, fig_transformer_collapse as fig


@pytest.mark.slow
def test_transformer_collapse_figure_small(tmp_path):
  ds = fig.compute(width=32, tokens=8, depth=6, seeds=3)
  assert ds.c.dims == ("case", "seed", "layer") and ds.sizes["layer"] == 6
  th = ds.theory_c
  # Post-LN collapses fastest in theory, Pre-LN with 1/sqrt(L) branches slowest.
  assert th.sel(case="Post-LN")[-1] > th.sel(case="Pre-LN")[-1] > th.sel(
      case="Pre-LN, 1/sqrt(L)")[-1]
  # and so do the measured means, at this toy size too
  mean = ds.c.mean("seed")
  assert mean.sel(case="Post-LN")[-1] > mean.sel(case="Pre-LN")[-1] > mean.sel(
      case="Pre-LN, 1/sqrt(L)")[-1]
  assert np.all((ds.stable_rank >= 1) & (ds.stable_rank <= 8))
  with _common.style():
    paths = _common.save(fig.draw(ds), ds, tmp_path / "transformer_collapse")
  assert any(p.suffix == ".png" and p.stat().st_size > 0 for p in paths)
