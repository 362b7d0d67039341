"""figures/fig_critical_init: drawing (light) and the training claim it shows (slow)."""

import numpy as np
import pytest
import xarray as xr

from figures import fig_critical_init


def test_draw_from_a_dataset():
  steps = np.arange(0, 101, 50)
  runs = [f"{f}_{n}" for f, n in [("relu", "default"), ("relu", "critical"), ("relu", "tat"),
                                  ("tanh", "default"), ("tanh", "critical"),
                                  ("tanh", "critical_orthogonal")]]
  ds = xr.Dataset({r: (("seed", "step"), np.full((2, steps.size), 0.5)) for r in runs},
                  coords={"step": steps},
                  attrs={"depth": 5, "width": 8, "n_seeds": 2, "tanh_sigma_w2": 1.76,
                         "tanh_sigma_b2": 0.05})
  fig = fig_critical_init.draw(ds)
  assert [len(ax.get_lines()) for ax in fig.axes] == [4, 4]   # three runs and chance, per panel


@pytest.mark.slow
def test_critical_and_tat_train_where_the_default_does_not():
  ds = fig_critical_init.compute(depth=50, width=64, n_seeds=3, n_steps=600, progress=False)
  final = {name: float(ds[name].isel(step=-1).mean()) for name in ds.data_vars}
  # ten classes: chance is 0.1; a network whose signal has died stays there exactly
  assert final["relu_default"] < 0.12
  assert final["relu_critical"] > 0.2 and final["relu_tat"] > 0.2
  assert final["tanh_critical_orthogonal"] > final["tanh_default"] + 0.2
