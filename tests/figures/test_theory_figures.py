"""The theory figures run end to end through the runner (slow: they compile the theory solvers)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from figures.__main__ import main


@pytest.mark.slow
def test_critical_lines_figure(tmp_path):
  assert main(["--only", "critical_lines", "--out", str(tmp_path), "--quiet"]) == 0
  assert (tmp_path / "critical_lines.png").stat().st_size > 10_000
  with xr.open_dataset(tmp_path / "critical_lines.nc", engine="scipy") as ds:
    at_zero = ds["critical_sigma_w2"].sel(sigma_b2=0.0)
    # sigma_b2 = 0: q* = 0, so chi_1 = sigma_w2 phi'(0)^2 (ReLU: sigma_w2 / 2); quadrature-level match.
    np.testing.assert_allclose(at_zero.sel(activation=["tanh", "erf", "relu"]),
                               [1.0, math.pi / 4, 2.0], rtol=1e-8)
    # Schoenholz et al. 2017: tanh is critical at sigma_w2 = 1.76 for sigma_b2 = 0.05 (two digits).
    tanh = ds["critical_sigma_w2"].sel(activation="tanh")
    assert abs(np.interp(0.05, ds["sigma_b2"], tanh) - 1.76) < 0.005
