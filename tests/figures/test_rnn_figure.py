"""The rnn_gradients figure: its data and what it claims."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from figures.__main__ import main


@pytest.mark.slow
def test_rnn_gradients_figure(tmp_path):
  assert main(["--only", "rnn_gradients", "--out", str(tmp_path), "--quiet"]) == 0
  with xr.open_dataset(tmp_path / "rnn_gradients.nc", engine="scipy") as ds:
    chi = ds["chi_1_star"]
    np.testing.assert_allclose(float(chi.sel(regime="critical")), 1.0, atol=1e-4)
    assert chi.sel(regime="ordered") < 1 < chi.sel(regime="chaotic")
    # Theory: the spread grows linearly in k, Gaussian faster by exactly 1 per step (s_1).
    k = ds["k"].values
    th = ds["relative_variance_theory"]
    slope = th / k
    np.testing.assert_allclose(slope, slope.isel(k=0).broadcast_like(slope), rtol=1e-4)
    np.testing.assert_allclose(slope.sel(init="gaussian") - slope.sel(init="orthogonal"), 1.0,
                               rtol=1e-4)
    # Networks: median spread within 25% of the theory from lag 5 on (each network's own
    # spectrum of N = 128 squared singular values, a few networks), and orthogonal below
    # Gaussian at every lag: the claim of the figure.
    emp = ds["relative_variance"].sel(k=slice(5, None))
    ratio = emp / th.sel(k=slice(5, None))
    assert np.all(np.abs(ratio - 1) < 0.25), ratio.values
    assert np.all(ds["relative_variance"].sel(init="orthogonal")
                  < ds["relative_variance"].sel(init="gaussian"))
    # Gradients at step T: |dL/dh_T|^2 = 1 exactly (unit readout).
    np.testing.assert_allclose(ds["grad_h2"].sel(lag=0), 1.0, rtol=1e-5)
