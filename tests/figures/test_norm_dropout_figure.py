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
  assert float(ds.do_c_star.sel(keep_prob=0.8)) < 0.5 and ds.do_c_star.sel(keep_prob=1.0) == 1
  # The right panel: xi_c diverges at the critical point only without dropout.
  assert np.isinf(ds.do_xi_c.sel(keep_prob=1.0)) and np.isfinite(ds.do_xi_c.sel(keep_prob=0.8))
  assert np.all(np.isfinite(ds.xi_c.sel(xi_keep_prob=0.8)))
  with _common.style():
    paths = _common.save(fig_norm_dropout.draw(ds), ds, tmp_path / "norm_dropout")
  assert any(p.suffix == ".png" and p.stat().st_size > 0 for p in paths)
