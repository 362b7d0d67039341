"""figures/fig_transformer_training.py at toy size: its data layout and what it claims."""

from __future__ import annotations

import numpy as np
import pytest

from figures import _common, fig_transformer_training as fig


@pytest.mark.slow
def test_transformer_training_figure_small(tmp_path):
  ds = fig.compute(width=16, depths=(1, 8), steps=20, seeds=1)
  assert ds.test_accuracy.dims == ("case", "depth", "seed")
  assert np.all((ds.test_accuracy >= 0) & (ds.test_accuracy <= 1))
  # one block: both cases are the same network (alpha = 1 = 1/sqrt(1))
  np.testing.assert_array_equal(ds.test_accuracy.sel(depth=1).values[0],
                                ds.test_accuracy.sel(depth=1).values[1])
  # at depth 8 unit strengths align the tokens more than 1/sqrt(L) ones, in theory and measured
  for name in ("theory_c", "c_init"):
    deep = ds[name].sel(depth=8)
    assert float(deep.sel(case=fig.CASES[0]).mean()) > float(deep.sel(case=fig.CASES[1]).mean())
  with _common.style():
    paths = _common.save(fig.draw(ds), ds, tmp_path / "transformer_training")
  assert any(p.suffix == ".png" and p.stat().st_size > 0 for p in paths)
