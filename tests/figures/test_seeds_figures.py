"""Cheap checks of the seed-experiment figures: their helpers and the one-layer table."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from figures import _common, _seeds, fig_one_layer_table


def test_preset_sigma_w2_matches_the_schemes_definitions():
  # Xavier: 2 / (fan_in + fan_out) per entry; He: 2 / fan_in; normal(std): std^2.
  assert _seeds.preset_sigma_w2("xavier_normal", fan_in=256, fan_out=256) == pytest.approx(1.0)
  assert _seeds.preset_sigma_w2("xavier_normal", fan_in=100, fan_out=300) == pytest.approx(0.5)
  assert _seeds.preset_sigma_w2("he_normal", fan_in=128, fan_out=128) == pytest.approx(2.0)
  assert _seeds.preset_sigma_w2("normal(0.01)", fan_in=256, fan_out=256) == pytest.approx(0.0256)
  with pytest.raises(ValueError, match="`name` must be a Gaussian scheme"):
    _seeds.preset_sigma_w2("he_uniform", fan_in=8, fan_out=8)


def test_band_skips_overflowed_and_underflowed_seeds():
  values = np.array([[1.0, 10.0, np.inf, 0.0],
                     [2.0, 20.0, np.inf, 0.0],
                     [3.0, 30.0, np.inf, 0.0]])
  med, lo, hi = _seeds.quantiles(values)
  np.testing.assert_allclose(med[:2], [2.0, 20.0])
  np.testing.assert_allclose([lo[0], hi[0]], [1.2, 2.8])   # 10% and 90% of 1, 2, 3 (linear)
  fig, ax = _common.subplots()
  ax.set_yscale("log")
  line = _seeds.band(ax, np.arange(4), values, color="k")
  y = line.get_ydata()
  assert np.isfinite(y[:2]).all() and np.isnan(y[2:]).all()  # inf and 0 leave gaps on a log axis


def test_theory_post_var_closed_forms():
  # ReLU: Var[relu(sqrt(q) z)] = q (1/2 - 1/(2 pi)), at any scale (the figures span
  # 1e-57..1e63); quadrature in 64-bit is good to ~1e-10, 1e-8 leaves room.
  q = np.array([1e-50, 0.5, 2.0, 1e60, np.inf])
  relu = _seeds.theory_post_var(q, "relu")
  np.testing.assert_allclose(relu[:4], q[:4] * (0.5 - 0.5 / np.pi), rtol=1e-8)
  assert np.isnan(relu[4])


@pytest.mark.slow
def test_one_layer_table_shows_the_symmetry_problem():
  ds = fig_one_layer_table.compute(n_inputs=32, in_features=24, width=16)
  distinct = ds.distinct_neuron_grads
  for act in ("tanh", "relu"):
    # Zero and constant inits: every neuron gets the same gradient.
    assert int(distinct.sel(activation=act, init="zero")) == 1
    assert int(distinct.sel(activation=act, init="constant 0.01")) == 1
    assert float(ds.neuron_grad_spread.sel(activation=act, init="constant 0.01")) == 0.0
    # Random inits: each of the 16 neurons its own.
    for init in ("Xavier", "He", "large (std 1.0)"):
      assert int(distinct.sel(activation=act, init=init)) == 16
  assert float(ds.grad_std.sel(activation="tanh", init="zero")) == 0.0
  rows = list(csv.DictReader(io.StringIO(fig_one_layer_table.to_csv(ds))))
  assert len(rows) == 2 * len(fig_one_layer_table.SCHEMES)
  assert float(rows[3]["pre_std"]) == pytest.approx(float(ds.pre_std.sel(activation="tanh", init="Xavier")))
  md = fig_one_layer_table.to_markdown(ds)
  assert md.count("\n| tanh |") == len(fig_one_layer_table.SCHEMES)
  assert "symmetry problem" in md
