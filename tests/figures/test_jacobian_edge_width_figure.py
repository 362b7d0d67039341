"""The finite-width Jacobian-edge figure: a tiny run, and the claims its data must obey."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy.special import ndtri

import meanfield
from figures import fig_jacobian_edge_width as fig


@pytest.mark.slow    # a wide network
def test_ju_median_is_the_mean_field_value_at_large_width(x64):
  # At criticality and q = q* every layer has chi_1 = 1, so the mean-field |J u|^2 of
  # J = dx^L/dx^0 is 1 at every depth; the median moves by O(L/N) (1e-6 * L here). A wrong
  # depth shift in ju_quantiles (dh^{L+1} instead of dx^L) would give sigma_w2 = 1.76.
  net = fig.critical_network()
  q_star = float(meanfield.q_star(net))
  lo, med, hi = fig.ju_quantiles(net.replace(depth=6, width=10 ** 6), q_star=q_star)
  np.testing.assert_allclose(med, 1.0, atol=1e-4)
  assert np.all(lo < med) and np.all(med < hi)


def test_jacobian_lognormal_median_keeps_the_width_factor(x64):
  # log_mean is log(mean) - log_var / 2 - log_k3 / 6 (FiniteWidth docstring), for the
  # Jacobian as for q: exp(log_mean + log_var / 2 + log_k3 / 6) must give back `mean`
  # (|J u|^2 carries a factor N; the tanh path once dropped it from log_mean).
  fw = meanfield.finite_width_jacobian(q_input=0.3, depth=5, width=64, sigma_w2=1.76,
                                       sigma_b2=0.05, activation="tanh")
  np.testing.assert_allclose(np.exp(fw.log_mean + fw.log_var / 2 + fw.log_k3 / 6), fw.mean,
                             rtol=1e-10)


@pytest.mark.slow
def test_tiny_figure_depth_one_orthogonal_edge(tmp_path, monkeypatch):
  widths, n_seeds = (16, 64), (3, 3)
  monkeypatch.setattr(fig, "_settings", lambda paper: dict(widths=widths, n_seeds=n_seeds,
                                                           depths=(1,)))
  paths = fig.make(tmp_path)
  assert {p.name for p in paths} == {"jacobian_edge_width.png", "jacobian_edge_width.nc"}
  with xr.open_dataset(tmp_path / "jacobian_edge_width.nc", engine="scipy") as ds:
    q_star = ds.attrs["q_star"]
    for width in widths:
      ratio = (ds[f"sigma_max_{width}"].sel(init="orthogonal", depth=1)
               / ds["edge_orthogonal"].sel(depth=1)).values
      # Depth 1, orthogonal: J = D W^T with W^T W = sigma_w2 I, so sigma_max =
      # sqrt(sigma_w2) max_i tanh'(h_i) and the edge is sqrt(sigma_w2) (tanh' <= 1, = 1 at 0):
      # ratio = 1 - tanh^2(min_i |h_i|) <= 1 exactly. Lower bound: h_i ~ N(0, q*) (sd taken
      # 1.5 sqrt(q*) to cover the O(N^-1/2) spread of |x^0|^2); all N units beyond t sd
      # has probability (1 - P(|z| < t))^N, set to 1e-8 per network.
      p = 1 - 1e-8 ** (1 / width)
      t = 1.5 * np.sqrt(q_star) * ndtri((1 + p) / 2)
      assert np.all(ratio <= 1 + 1e-9)
      assert np.all(ratio >= 1 - np.tanh(t) ** 2)
      # The finite-width |J u| median sits below the measured sigma_max (sigma_max >= |J u|
      # for every unit u, so for the medians); the median |J u| is near 1, sigma_max near
      # the edge (about 2), so sampling noise of 4 networks cannot reverse it.
      gaussian = ds[f"sigma_max_{width}"].sel(init="gaussian", depth=1).values
      assert np.median(gaussian) > ds[f"ju_quantiles_{width}"].sel(quantile=0.5, ju_depth=1)
