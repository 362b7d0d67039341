"""empirical.theory's gradient norms for dropout sweeps against wide networks.

Derivation: docs/architectures.md, "Dropout's gradient norms".
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import empirical
import meanfield

N, DEPTH, SEEDS, P = 256, 10, 16, 0.8
SIGMA_W2 = [1.5, 2.5]


@pytest.fixture(scope="module")
def dropout():
  ds = empirical.sweep(jax.random.key(3), activation="erf", sigma_w2=SIGMA_W2, sigma_b2=0.05,
                       arch=meanfield.MLP(keep_prob=P), width=N, depth=DEPTH, n_seeds=SEEDS,
                       n_inputs=4, in_features=32, q_input=1.0, c_input=0.5, progress=False)
  return ds, empirical.theory(ds)


def _spread_bound(layers):
  """Bound on the relative standard deviation of one network's ``|delta^l|^2`` (and of
  ``|a^{l-1}|^2 |delta^l|^2``) about the mean-field value, at width N.

  Given ``delta^{l+1}``, ``|delta^l|^2`` is a sum over N units of
  ``phi'(h_i)^2 (m_i / p)^2 g_i^2`` with ``g = W^T delta^{l+1}`` Gaussian:
  relative variance ``(3 (1 + kappa') / p - 1) / N``, ``kappa' =
  Var(phi'^2) / E[phi'^2]^2 <= 1`` for erf at the lengths here
  (``(1 + 2q) / sqrt(1 + 4q) - 1``, ``q* < 3``). Each factor ``chi^k`` carries the
  forward noise of ``q^k``, relative variance at most ``(2 + 3/p - 1) / N``
  (tests/empirical/test_sweep_variants.py) times an elasticity below 1. The
  ``L - l + 1`` layers' variances at most add (the weight gradient's input
  ``|m phi / p|^2`` is one more such term).
  """
  per_layer = (3 * 2 / P - 1) + (2 + 3 / P - 1)
  return np.sqrt(per_layer * (DEPTH - layers + 2) / N)


@pytest.mark.slow
@pytest.mark.parametrize("stat", ["grad_h", "grad_w"])
def test_dropout_gradient_norms_follow_theory(dropout, stat):
  ds, th = dropout
  layers = ds.layer.values
  ratio = ds[stat] ** 2 / th[stat] ** 2                     # (sigma_w2, seed, layer)
  # Seeds are independent networks: the seed mean of the ratio has the standard
  # error std / sqrt(seeds), estimated from the seeds themselves; the spread is
  # first checked against the derived bound, so noise added by a bug cannot
  # widen the tolerance unnoticed.
  spread = ratio.std("seed", ddof=1)
  assert np.all(spread < 2 * _spread_bound(layers)), spread.values
  se = spread / np.sqrt(SEEDS)
  err = np.log(ratio.mean("seed"))
  assert np.all(np.abs(err) < 5 * se), (err / se).values
  # Non-vacuity: without dropout's 1/p per backward layer (chi_1 of the plain
  # network at the same q^l), the prediction is off by p^(L - l), rejected at the
  # bottom layers; without the 1/p of the weight gradient's input |m phi / p|^2,
  # off by p at every layer >= 2, rejected where the backward error is small.
  no_p = err - (DEPTH - layers) * np.log(P)
  assert np.all(np.abs(no_p.sel(layer=slice(1, DEPTH - 3))) > 5 * se.sel(layer=slice(1, DEPTH - 3)))
  if stat == "grad_w":
    no_input_p = err + np.log(P)
    assert np.all(np.abs(no_input_p.sel(layer=DEPTH)) > 5 * se.sel(layer=DEPTH))


def test_dropout_theory_has_no_nan(dropout):
  ds, th = dropout
  for v in ("q", "c", "chi_1", "grad_h", "grad_w"):
    assert np.all(np.isfinite(th[v])), v
  # The finite-width band is for plain MLPs only (documented nan).
  assert np.all(np.isnan(th.q_median))
  # The chain rule of the gradients: grad_h^l / grad_h^(l+1) = sqrt(chi^l).
  np.testing.assert_allclose((th.grad_h.isel(layer=slice(None, -1)).values
                              / th.grad_h.isel(layer=slice(1, None)).values) ** 2,
                             th.chi_1.isel(layer=slice(None, -1)).values, rtol=1e-12)


@pytest.mark.slow
def test_dropout_theory_on_a_depth_grid():
  ds = empirical.sweep(jax.random.key(4), activation="tanh", sigma_w2=1.5, width=16,
                       depth=[2, 3], arch=meanfield.MLP(keep_prob=P), n_seeds=2, n_inputs=4,
                       in_features=5, progress=False)
  th = empirical.theory(ds)
  for v in ("grad_h", "grad_w"):
    assert np.all(np.isnan(th[v].sel(depth=2, layer=3)))   # beyond the network's depth
    assert np.all(np.isfinite(th[v].sel(depth=3)))
    assert np.all(np.isfinite(th[v].sel(depth=2, layer=[1, 2])))
