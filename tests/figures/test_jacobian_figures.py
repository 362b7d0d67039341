"""The Jacobian-spectra, Jacobian-depth, isometry-q and weight-eigenvalue figures: their data and what they claim."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import integrate, stats

from figures import _jacobian
from figures.__main__ import main
from figures.fig_weight_eigenvalues import marchenko_pastur


@pytest.mark.slow
def test_edge_coefficient_of_gaussian_products_is_fuss_catalan_closed_form(x64):
  # Linear network, Gaussian weights, sigma_w2 = 1: J is a product of L Ginibre matrices,
  # whose M-transform inverse is z(w) = w^(L+1) / (w - 1)^L with m(w) = 1 / (w - 1). The edge
  # is the stationary point w_e = L + 1, lambda_max = (L+1)^(L+1) / L^L, and expanding
  # z(w) to second order there gives rho ~ gamma^(3/2) sqrt(lambda_max - lambda) / pi with
  # gamma = (2 L (L+1))^(1/3) / (L^(4/3) lambda_max): independent of the theory's solver.
  depth = np.array([1, 2, 4, 8, 16])
  lam = (depth + 1.0) ** (depth + 1) / depth.astype(np.float64) ** depth
  gamma = (2 * depth * (depth + 1.0)) ** (1 / 3) / (depth ** (4 / 3) * lam)
  edge, expected = _jacobian.sigma_max_expected("linear", "gaussian", depth, 64)
  np.testing.assert_allclose(edge, np.sqrt(lam), rtol=1e-10)
  # The density is good to ~1e-6 relative 1e-5 below the edge (its eps = 1e-7 smoothing);
  # the extrapolation in delta leaves O(delta^2).
  np.testing.assert_allclose(expected, np.sqrt(lam + _jacobian.TW1_MEAN / (gamma * 64 ** (2 / 3))),
                             rtol=1e-5)
  # L = 1 is a real Wishart matrix: lambda_max ~ 4 + 2^(4/3) N^(-2/3) TW_1 (Johnstone 2001).
  assert abs(expected[0] ** 2 - (4 + 2 ** (4 / 3) * 64 ** (-2 / 3) * _jacobian.TW1_MEAN)) < 1e-4


def test_edge_gamma_rejects_an_edge_that_is_not_a_square_root():
  # A density that diverges at its edge, rho ~ (lambda_max - lambda)^(-1/2), has no
  # Tracy-Widom edge: nan. A square-root one gives (pi A)^(2/3) exactly.
  delta = np.asarray(_jacobian.EDGE_OFFSETS)
  assert np.isnan(_jacobian.edge_gamma(1.0, 0.3 / np.sqrt(delta)))
  np.testing.assert_allclose(_jacobian.edge_gamma(2.0, 0.5 * np.sqrt(2.0 * delta)),
                             (np.pi * 0.5) ** (2 / 3), rtol=1e-12)


def test_relu_zero_fraction_is_the_rank_deficit_of_random_relu_networks():
  # Monte Carlo of the claim itself: J = D^L W^L ... D^1 W^1 of bias-free ReLU networks,
  # rank by SVD. The fraction of zero singular values of one network is (N - rank) / N;
  # the mean over n networks has standard error sd / sqrt(n): 5 of them.
  rng = np.random.default_rng(0)
  width, depth, n = 16, 3, 400
  zero = []
  for _ in range(n):
    x = np.abs(rng.standard_normal(width))
    jac = np.eye(width)
    for _ in range(depth):
      w = rng.standard_normal((width, width)) * np.sqrt(2 / width)
      h = x @ w
      jac = jac @ w * (h > 0)[None, :]
      x = np.maximum(h, 0)
    sv = np.linalg.svd(jac, compute_uv=False)
    zero.append(np.mean(sv < 1e-10 * sv.max()))
  zero = np.asarray(zero)
  expected = _jacobian.relu_zero_fraction(width, depth)
  assert abs(zero.mean() - expected) < 5 * zero.std() / np.sqrt(n)
  # Depth 1: exactly 1/2 (binomial symmetry); deeper, above 1/2 and tending to 1/2 as N grows.
  assert abs(_jacobian.relu_zero_fraction(64, 1) - 0.5) < 1e-12
  assert _jacobian.relu_zero_fraction(1024, 8) < _jacobian.relu_zero_fraction(64, 8)


def test_marchenko_pastur_is_a_density_with_mean_sigma_w2():
  # Square case: mass 1, mean sigma_w2, second moment 2 sigma_w2^2 (Catalan numbers);
  # quad on the integrable 1/sqrt singularity at 0, to its default accuracy (1e-8).
  sigma_w2 = 2.0
  moments = [integrate.quad(lambda x, k=k: x ** k * marchenko_pastur(x, sigma_w2), 0.0,
                            4 * sigma_w2, limit=200)[0] for k in range(3)]
  np.testing.assert_allclose(moments, [1.0, sigma_w2, 2 * sigma_w2 ** 2], rtol=1e-6)
  assert marchenko_pastur(np.array([-1.0, 0.0, 4 * sigma_w2, 9.0]), sigma_w2).tolist() == [0.0] * 4


@pytest.mark.slow
def test_weight_eigenvalues_figure(tmp_path):
  assert main(["--only", "weight_eigenvalues", "--out", str(tmp_path), "--quiet"]) == 0
  with xr.open_dataset(tmp_path / "weight_eigenvalues.nc", engine="scipy") as ds:
    sigma_w2 = ds.attrs["sigma_w2"]
    # Orthogonal W with W^T W = sigma_w2 I: every eigenvalue on the circle (float64 roundoff).
    modulus = np.hypot(ds["eig_orthogonal_real"], ds["eig_orthogonal_imag"])
    np.testing.assert_allclose(modulus, np.sqrt(sigma_w2), rtol=1e-10)
    # tr(W^T W)/N for Gaussian W has mean sigma_w2 and relative sd sqrt(2)/N per matrix; 5 sd.
    n = ds.attrs["width"]
    mean = float(ds["eig_wtw_gaussian"].mean())
    assert abs(mean / sigma_w2 - 1) < 5 * np.sqrt(2) / n / np.sqrt(ds.sizes["matrix"])


def _min_binomial_sd(width: int, depth: int) -> float:
  """sd of min of ``depth`` independent Binomial(width, 1/2): E[M^2] = sum_k (2k - 1) P(M >= k)."""
  k = np.arange(1, width + 1)
  tail = stats.binom.sf(k - 1, width, 0.5) ** depth
  mean = tail.sum()
  return float(np.sqrt(np.sum((2 * k - 1) * tail) - mean ** 2))


@pytest.mark.slow
def test_jacobian_depth_figure(tmp_path):
  assert main(["--only", "jacobian_depth", "--out", str(tmp_path), "--quiet"]) == 0
  with xr.open_dataset(tmp_path / "jacobian_depth.nc", engine="scipy") as ds:
    depth = ds["theory_depth"].values
    n = ds.sizes["seed"]
    # Closed form at criticality for ReLU (chi_1 = 1): Var = L orthogonal, 2 L Gaussian.
    np.testing.assert_allclose(ds["relu_orthogonal_theory_variance"], depth, rtol=1e-8)
    np.testing.assert_allclose(ds["relu_gaussian_theory_variance"], 2 * depth, rtol=1e-8)
    for name in ("tanh", "relu"):
      prefix = f"{name}_gaussian"
      sigma_max = ds[f"{prefix}_sigma_max"].sel(depth=[8, 16]).values
      mean, se = sigma_max.mean(-1), sigma_max.std(-1) / np.sqrt(n)
      edge = ds[f"{prefix}_theory_edge"].sel(depth=[8, 16]).values
      expected = ds[f"{prefix}_expected_sigma_max"].sel(depth=[8, 16]).values
      # The gap below the infinite-width edge is real (many SEs) ...
      assert np.all(edge - mean > 5 * se)
      # ... and the finite-width expectation accounts for it: leading order in N^(-2/3),
      # so allow the next order, O(1/N) relative, 3 / N, plus 5 SEs of the mean.
      width = float(ds["width"])
      assert np.all(np.abs(expected - mean) < 3 / width * expected + 5 * se)


@pytest.mark.slow
def test_jacobian_spectra_figure(tmp_path):
  assert main(["--only", "jacobian_spectra", "--out", str(tmp_path), "--quiet"]) == 0
  with xr.open_dataset(tmp_path / "jacobian_spectra_relu.nc", engine="scipy") as ds:
    width, n = int(ds.attrs["width"]), ds.sizes["seed"]
    for depth in (2, 8):
      # Zero singular values are the rank deficit min_l n_l; the mean over n networks has
      # SE sd(min) / (N sqrt(n)): 5 of them.
      se = _min_binomial_sd(width, depth) / width / np.sqrt(n)
      measured = ds["networks_zero_fraction"].sel(depth=depth).values
      expected = ds["zero_fraction_at_width"].sel(depth=depth).values
      assert np.all(np.abs(measured - expected) < 5 * se)
  with xr.open_dataset(tmp_path / "jacobian_spectra_linear.nc", engine="scipy") as ds:
    # Orthogonal linear networks are isometries: every singular value 1 to rounding.
    sv = ds["singular_values"].sel(init="orthogonal").values
    np.testing.assert_allclose(sv, 1.0, atol=1e-12)
    np.testing.assert_allclose(ds["theory_atom_mass"].sel(init="orthogonal"), 1.0, atol=1e-12)


@pytest.mark.slow
def test_isometry_q_figure(tmp_path):
  assert main(["--only", "isometry_q", "--out", str(tmp_path), "--quiet"]) == 0
  with xr.open_dataset(tmp_path / "isometry_q.nc", engine="scipy") as ds:
    # Small q* stays near isometry: the spectral variance grows with q* at every depth.
    variance = ds["theory_variance"].values
    assert np.all(np.diff(variance, axis=0) > 0)
    # Slope mu_2/mu_1^2 - 1 = 8 q*^2 + O(q*^3) for tanh (phi'^2 = 1 - 2 h^2 + ...).
    slope = variance[0, 0]
    q = float(ds["q_star"][0])
    assert abs(slope / (8 * q ** 2) - 1) < 20 * q
