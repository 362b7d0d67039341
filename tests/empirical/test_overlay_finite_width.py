"""The finite-width band of ``empirical.theory``: measured quantiles of q^l over seeds against it.

Tolerance: the sample p-quantile of ``n`` draws has standard error
``sqrt(p (1 - p) / n) / density``; on the log scale, for ``log q`` near
Gaussian with standard deviation ``s``, ``s sqrt(p (1 - p) / n) / pdf(z_p)``
(``z_p`` the standard normal quantile). We allow 4 standard errors.
"""

import jax
import numpy as np
import scipy.stats

import empirical
import pytest


@pytest.mark.slow
def test_band_matches_measured_quantiles_relu():
  """ReLU (He, no bias), width 16, depth 16 (``beta = 1``), one input: median and 10-90% band."""
  n = 400
  ds = empirical.sweep(jax.random.key(3), activation="relu", sigma_w2=2.0, sigma_b2=0.0,
                       width=16, depth=16, n_seeds=n, n_inputs=1, in_features=16, q_input=1.0,
                       progress=False)
  th = empirical.theory(ds)
  logq = np.log(ds.q.transpose("seed", "layer").values.astype(np.float64))
  log_sd = (np.log(th.q_hi.values) - np.log(th.q_lo.values)) / (2 * scipy.stats.norm.ppf(0.9))
  for p, name in ((0.1, "q_lo"), (0.5, "q_median"), (0.9, "q_hi")):
    measured = np.quantile(logq, p, axis=0)
    err = log_sd * np.sqrt(p * (1 - p) / n) / scipy.stats.norm.pdf(scipy.stats.norm.ppf(p))
    np.testing.assert_array_less(np.abs(measured - np.log(th[name].values)), 4 * err)
  # the measured median is far below mean-field's q = 2 at the last layer
  median_err = log_sd[-1] * np.sqrt(np.pi / 2 / n)
  assert np.log(th.q.values[-1]) - np.median(logq[:, -1]) > 10 * median_err


@pytest.mark.slow
def test_band_is_nan_for_orthogonal_weights_and_has_the_sweep_dims():
  ds = empirical.sweep(jax.random.key(4), activation="tanh", init=["gaussian", "orthogonal"],
                       sigma_w2=[1.0, 2.0], sigma_b2=0.05, width=8, depth=3, n_seeds=2,
                       n_inputs=2, in_features=8, progress=False)
  th = empirical.theory(ds)
  assert th.q_median.dims == th.q.dims
  assert np.all(np.isnan(th.q_median.sel(init="orthogonal").values))
  gauss = th.sel(init="gaussian")
  assert np.all(np.isfinite(gauss.q_median.values))
  assert np.all((gauss.q_lo < gauss.q_median).values & (gauss.q_median < gauss.q_hi).values)


@pytest.mark.slow
def test_gradient_band_matches_measured_quantiles_relu():
  """ReLU (He, no bias), width 16, depth 12, one input: the ``grad_h`` median and 10-90% band
  against the sweep's seeds (4 s.e. of a sample quantile, on the log scale, plus the stated
  Cornish-Fisher error at width 16, 0.025 in probability: the top layers' laws, a few
  binomial mixtures, are far from Gaussian); nan for B > 1."""
  n = 400
  ds = empirical.sweep(jax.random.key(5), activation="relu", sigma_w2=2.0, sigma_b2=0.0,
                       width=16, depth=12, n_seeds=n, n_inputs=1, in_features=16, q_input=1.0,
                       progress=False)
  th = empirical.theory(ds)
  g = ds.grad_h.transpose("seed", "layer").values.astype(np.float64)
  logg = np.log(g[np.all(g > 0, axis=1)])
  log_sd = (np.log(th.grad_hi.values) - np.log(th.grad_lo.values)) / (2 * scipy.stats.norm.ppf(0.9))
  for p, name in ((0.1, "grad_lo"), (0.5, "grad_median"), (0.9, "grad_hi")):
    measured = np.quantile(logg, p, axis=0)
    per_prob = log_sd / scipy.stats.norm.pdf(scipy.stats.norm.ppf(p))
    tol = per_prob * (4 * np.sqrt(p * (1 - p) / len(logg)) + 0.025)
    np.testing.assert_array_less(np.abs(measured - np.log(th[name].values)), tol)
  two = empirical.sweep(jax.random.key(6), activation="relu", sigma_w2=2.0, sigma_b2=0.0,
                        width=8, depth=3, n_seeds=2, n_inputs=2, in_features=8, progress=False)
  assert np.all(np.isnan(empirical.theory(two).grad_median.values))
