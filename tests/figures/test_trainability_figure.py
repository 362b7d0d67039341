"""figures/fig_trainability.py: the boundary read off a synthetic accuracy map is the one put in,
and its fitted multiple of xi_c is recovered (pure functions, no training)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from figures import _common, fig_trainability

CHANCE = 0.1
BEST = 0.95
K = 4.5
DEPTHS = np.array([1, 2, 3, 5, 8, 13, 21, 34, 55])
# A made-up xi_c per column (ordered side rising, chaotic side falling), with boundaries
# K * xi_c from 4.5 to 45, inside the depths; the last two columns lie outside the map
# (boundaries 0.45 and 450).
XI_C = np.array([1.0, 2.0, 4.0, 7.0, 10.0, 6.0, 3.0, 0.1, 100.0])
RAMP = np.log(4.0)   # the accuracy falls from BEST to CHANCE over log depth b / 4 .. 4 b


def _map(boundary):
  """Accuracy (depth, column): BEST, then linear in log depth down to CHANCE, crossing the
  half-way value (CHANCE + BEST) / 2 exactly at depth ``boundary``. Neighbouring depths are
  less than a factor 4 apart, so the two around a crossing lie on the ramp, where linear
  interpolation in log depth is exact; for boundaries >= 4 the shallowest depth 1 is at BEST,
  so the column's best is BEST."""
  x = (np.log(DEPTHS)[:, None] - np.log(boundary)[None, :]) / (2 * RAMP)
  return CHANCE + (BEST - CHANCE) * np.clip(0.5 - x, 0.0, 1.0)


def test_boundary_and_multiple_recovered():
  boundary = K * XI_C
  got = fig_trainability.trainable_depth(_map(boundary), DEPTHS, chance=CHANCE)
  inside = slice(0, 7)
  np.testing.assert_allclose(got[inside], boundary[inside], rtol=1e-12)
  # Column 7: boundary 0.45, below the map (chance at every depth): not resolved.
  # Column 8: boundary 450, beyond the map (trains at every depth): not resolved.
  assert np.all(np.isnan(got[7:]))
  k, se, n = fig_trainability.fit_multiple(got, XI_C)
  assert n == 7
  assert k == pytest.approx(K, rel=1e-12) and se == pytest.approx(0.0, abs=1e-9)


def test_multiple_is_geometric_mean_of_ratios():
  # With boundaries K * xi_c * exp(+-e) alternating, log k is the mean of the log ratios:
  # K itself when the +-e cancel, and se = K * e * sqrt(n / (n - 1)) / sqrt(n) from their spread.
  e = 0.2
  signs = np.array([1, -1, 1, -1, 1, -1])
  xi = XI_C[1:7]   # boundaries >= 9 exp(-0.2) > 4
  got = fig_trainability.trainable_depth(_map(K * xi * np.exp(e * signs)), DEPTHS,
                                         chance=CHANCE)
  k, se, n = fig_trainability.fit_multiple(got, xi)
  assert n == 6 and k == pytest.approx(K, rel=1e-12)
  assert se == pytest.approx(K * e * np.sqrt(6 / 5) / np.sqrt(6), rel=1e-9)


def test_noise_above_threshold_before_best_is_skipped():
  # A dip below the threshold at a depth shallower than the column's best is not the boundary:
  # the walk starts at the best depth.
  acc = _map(np.array([20.0]))
  acc[0, 0] = CHANCE
  got = fig_trainability.trainable_depth(acc, DEPTHS, chance=CHANCE)
  assert got[0] == pytest.approx(20.0, rel=1e-12)


def test_bad_arguments():
  with pytest.raises(ValueError, match="accuracy"):
    fig_trainability.trainable_depth(np.zeros((3, 2)), DEPTHS, chance=CHANCE)
  with pytest.raises(ValueError, match="depths"):
    fig_trainability.trainable_depth(np.zeros((2, 2)), [5, 3], chance=CHANCE)


def test_draw(tmp_path):
  # The drawing runs on a dataset of compute's layout (synthetic accuracy) and writes a PNG.
  sigma_w2 = np.linspace(0.25, 4.0, len(XI_C) - 2)
  xi = XI_C[:7]
  acc = _map(K * xi)
  boundary = fig_trainability.trainable_depth(acc, DEPTHS, chance=CHANCE)
  k, se, _ = fig_trainability.fit_multiple(boundary, xi)
  ds = xr.Dataset(
      {"test_accuracy": (("depth", "sigma_w2"), acc),
       "boundary_depth": (("sigma_w2",), boundary),
       "xi_c": (("sigma_w2_fine",), np.interp(np.linspace(0.25, 4, 50), sigma_w2, xi))},
      coords={"depth": DEPTHS, "sigma_w2": sigma_w2,
              "sigma_w2_fine": np.linspace(0.25, 4, 50)},
      attrs={"n_steps": 100, "n_seeds": 2, "k_ordered": k, "k_ordered_se": se,
             "k_ordered_se_seeds": se, "k_chaotic": k, "k_chaotic_se": se,
             "k_chaotic_se_seeds": se, "critical_sigma_w2": 1.76,
             "sigma_b2": 0.05, "chance": CHANCE, "width": 8, "eta": 1.0, "batch_size": 32})
  with _common.style():
    paths = _common.save(fig_trainability.draw(ds), ds, tmp_path / "trainability")
  assert any(p.suffix == ".png" and p.stat().st_size > 0 for p in paths)


def test_fit_phases():
  # Boundaries 8 xi_c on the ordered side and 4 xi_c on the chaotic side: each phase's multiple
  # is recovered; the critical column (xi_c 400: boundary beyond the map) is left out. Three
  # identical seeds: the seeds' jackknife error is zero.
  sigma_w2 = np.array([0.5, 0.75, 1.0, 1.75, 3.0, 3.5, 4.0])
  xi = np.array([1.2, 2.0, 3.6, 400.0, 9.0, 7.8, 7.0])
  multiple = np.where(sigma_w2 < 1.76, 8.0, 4.0)
  acc = np.broadcast_to(_map(multiple * xi), (3, DEPTHS.size, sigma_w2.size))
  boundary, fits = fig_trainability.fit_phases(acc, DEPTHS, sigma_w2, xi_c=xi,
                                               critical_sigma_w2=1.76, chance=CHANCE)
  np.testing.assert_allclose(np.delete(boundary, 3), np.delete(multiple * xi, 3), rtol=1e-12)
  assert np.isnan(boundary[3]) and fits["k_n_columns"] == 6
  assert fits["k_ordered"] == pytest.approx(8.0, rel=1e-12) and fits["k_ordered_n_columns"] == 3
  assert fits["k_chaotic"] == pytest.approx(4.0, rel=1e-12) and fits["k_chaotic_n_columns"] == 3
  assert fits["k"] == pytest.approx(np.sqrt(32.0), rel=1e-12)   # geometric mean of 8 and 4
  assert fits["k_ordered_se_seeds"] == pytest.approx(0.0, abs=1e-9)
