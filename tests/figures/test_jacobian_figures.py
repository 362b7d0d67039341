"""The Jacobian-depth, isometry-q and weight-eigenvalue figures: their data and what they claim."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import integrate

from figures.__main__ import main
from figures.fig_weight_eigenvalues import marchenko_pastur


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


@pytest.mark.slow
def test_jacobian_depth_figure(tmp_path):
  assert main(["--only", "jacobian_depth", "--out", str(tmp_path), "--quiet"]) == 0
  with xr.open_dataset(tmp_path / "jacobian_depth.nc", engine="scipy") as ds:
    depth = ds["theory_depth"].values
    # Closed form at criticality for ReLU (chi_1 = 1): Var = L orthogonal, 2 L Gaussian.
    np.testing.assert_allclose(ds["relu_orthogonal_theory_variance"], depth, rtol=1e-8)
    np.testing.assert_allclose(ds["relu_gaussian_theory_variance"], 2 * depth, rtol=1e-8)
    # Depth 1, Gaussian, ReLU: the networks' largest singular value is near the theory edge
    # (largest-eigenvalue fluctuations are O(N^-2/3); 20% is several of them at N = 128).
    theory = float(ds["relu_gaussian_theory_sigma_max"].sel(theory_depth=1))
    measured = ds["relu_gaussian_sigma_max"].sel(depth=1).values
    assert np.all(np.abs(measured / theory - 1) < 0.2)


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
