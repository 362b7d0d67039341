"""figures/fig_residual.py at toy size: its data layout, theory beside measurement, and a PNG."""

from __future__ import annotations

import numpy as np

from figures import _common, fig_residual
import pytest


@pytest.mark.slow
def test_residual_figure_small(tmp_path):
  ds = fig_residual.compute(width=32, depth=4, n_seeds=2, n_inputs=4, long=30)
  assert ds.q.dims[-1] == "layer" and ds.sizes["layer"] == 4 and ds.sizes["long_layer"] == 30
  # Theory and measurement of the first layer: q^1 = sigma_w2 q_input + sigma_b2 exactly in
  # theory; measured over 32 units x 4 inputs x 2 seeds (relative error about sqrt(2/256)).
  np.testing.assert_allclose(ds.theory_q.sel(layer=1), 1.05)
  np.testing.assert_allclose(ds.q.sel(layer=1).mean("seed"), 1.05, rtol=5 * np.sqrt(2 / 256))
  # The long theory: ReLU's correlation rises towards 1, tanh's falls.
  assert np.all(np.diff(ds.long_relu_c.values) > 0) and ds.long_tanh_c.values[-1] < 0.45
  with _common.style():
    paths = _common.save(fig_residual.draw(ds), ds, tmp_path / "residual")
  assert any(p.suffix == ".png" and p.stat().st_size > 0 for p in paths)
