"""figures/fig_norm_dropout.py at toy size: measured c^l of LayerNorm and dropout MLPs agrees with
theory within sampling error, dropout pulls c^l below the dropout-free network's, and a PNG."""

from __future__ import annotations

import numpy as np
import pytest

from figures import _common, fig_norm_dropout

N_SEEDS = 8


@pytest.fixture(scope="module")
def ds():
  return fig_norm_dropout.compute(width=64, depth=8, n_seeds=N_SEEDS, n_inputs=4)


def _mean_and_se(c):
  """Mean over seeds and its standard error from the seed spread (seeds are independent)."""
  c = np.asarray(c)
  return c.mean(), c.std(ddof=1) / np.sqrt(c.size)


# K = 5 standard errors of the seed mean, the SE estimated from the spread of the 8 independent
# seeds: P(|t_7| > 5) is about 0.002 per check. The finite-width bias of c is O(1/N), about 0.02
# at N = 64, small against 5 SE (a correlation over N units has sampling error of order
# (1 - c^2) / sqrt(N), about 0.1 here, so SE is about 0.1 / sqrt(8) = 0.035).
K = 5


@pytest.mark.slow
def test_last_layer_c_matches_theory(ds):
  last = ds.layer.values[-1]
  for sw2 in ds.ln_sigma_w2.values:
    sel = ds.sel(ln_sigma_w2=sw2, layer=last)
    mean, se = _mean_and_se(sel.ln_c)
    assert abs(mean - float(sel.ln_theory_c)) < K * se, (sw2, mean, se, float(sel.ln_theory_c))
  for p in ds.keep_prob.values:
    sel = ds.sel(keep_prob=p, layer=last)
    mean, se = _mean_and_se(sel.do_c)
    assert abs(mean - float(sel.do_theory_c)) < K * se, (p, mean, se, float(sel.do_theory_c))


@pytest.mark.slow
def test_dropout_lowers_c_and_keeps_xi_finite(ds, tmp_path):
  last = ds.layer.values[-1]
  # The claim of the middle panel: with keep_prob 0.8 the measured c^L sits far below the
  # dropout-free network's theory at the same weights (more than K standard errors), near c*.
  mean, se = _mean_and_se(ds.do_c.sel(keep_prob=0.8, layer=last))
  assert mean < float(ds.do_theory_c.sel(keep_prob=1.0, layer=last)) - K * se
  # Without dropout c* = 1 and xi_c = inf at the critical point, to float32 rounding: the
  # critical sigma_w2 is itself a float32 number, so chi_1 - 1 is a few eps either side and
  # 1 - c* and 1/xi_c (both linear in chi_1 - 1 there) are too (the figure's grid call gives
  # c* = 1 - eps and xi_c = inf, a scalar call c* = 1 and xi_c = 8e6).
  eps = np.finfo(np.float32).eps
  assert float(ds.do_c_star.sel(keep_prob=0.8)) < 0.5
  assert float(ds.do_c_star.sel(keep_prob=1.0)) >= 1 - 8 * eps
  # The right panel: xi_c diverges at the critical point only without dropout.
  assert float(ds.do_xi_c.sel(keep_prob=1.0)) >= 1 / (8 * eps)
  assert np.isfinite(ds.do_xi_c.sel(keep_prob=0.8)) and float(ds.do_xi_c.sel(keep_prob=0.8)) < 1e3
  assert np.all(np.isfinite(ds.xi_c.sel(xi_keep_prob=0.8)))
  with _common.style():
    paths = _common.save(fig_norm_dropout.draw(ds), ds, tmp_path / "norm_dropout")
  assert any(p.suffix == ".png" and p.stat().st_size > 0 for p in paths)
