"""empirical.ntk: the contraction is J J^T, and wide networks match meanfield.ntk.

Tolerances: over S seeds the mean of an NTK entry has standard error se = sd / sqrt(S) (sd
measured over the seeds, O(1/sqrt(N)) of the entry), and its finite-width bias is O(d / N)
of the entry (Hanin & Nica 2019 for ReLU; the 1/N correction of the NTK): an entry must be
within 4 se + (d / N) |Theta| of the theory.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import empirical
import meanfield
from empirical import models
from empirical.tangent import _one_network, condition_numbers


def _inputs(m=4, n0=8, seed=1):
  return np.asarray(jax.random.normal(jax.random.PRNGKey(seed), (m, n0)))


def test_the_contraction_is_j_j_transpose_over_the_parameters(x64):
  """Theta from delta and the layer inputs equals J J^T with J materialised (jax.jacrev) in
  the NTK parametrisation W = sqrt(sigma_w2 / fan_in) omega, b = sigma_b omega_b."""
  key, x = jax.random.PRNGKey(0), _inputs()
  sw, sb, width, depth = 1.5, 0.1, 6, 3
  std = models.standard_params(key, in_features=8, width=width, depth=depth, dtype=np.float64)
  ws, bs = models.layer_scales("gaussian", sw, sb, in_features=8, width=width, depth=depth,
                               dtype=np.float64)

  def units(omega, xs):
    p = models.Params(omega[0] * np.sqrt(sw / 8), omega[1] * np.sqrt(sb),
                      omega[2] * np.sqrt(sw / width), omega[3] * np.sqrt(sb))
    return models.forward(p, xs, activation="tanh", probe=lambda h, a, a_in: h[0, :, 0])[1]

  omega = (std.w_in * np.sqrt(8), std.b_in, std.w * np.sqrt(width), std.b)
  jac = jax.jacrev(units)(omega, x)                     # leaves (L, m, ...)
  flat = np.concatenate([np.asarray(j).reshape(depth, 4, -1) for j in jac], -1)
  direct = np.einsum("lap,lbp->lab", flat, flat)
  got = _one_network(models.scale_params(std, ws, bs), x, meanfield.activation("tanh"), sw, sb,
                     (1, 2, 3))["ntk"]
  np.testing.assert_allclose(got, direct, rtol=1e-13, atol=1e-14 * np.abs(direct).max())


def _agree(ds, theory, depths):
  n, width = ds.sizes["seed"], ds.attrs["width"]
  mean, se = ds.ntk.mean("seed").values, ds.ntk.std("seed").values / np.sqrt(n)
  for i, d in enumerate(depths):
    expected = theory[d - 1]
    bound = 4 * se[i] + d / width * np.abs(expected) + 1e-6 * np.abs(expected).max()
    assert np.all(np.abs(mean[i] - expected) <= bound), (d, mean[i], expected, bound)


@pytest.mark.slow
def test_wide_networks_match_the_theory_within_sampling_error():
  x = _inputs()
  kw = dict(activation="tanh", sigma_w2=1.8, sigma_b2=0.1)
  ds = empirical.ntk(jax.random.PRNGKey(3), x=x, width=256, depth=[2, 4], n_seeds=8,
                     progress=False, **kw)
  assert ds.ntk.dims == ("seed", "depth", "input_a", "input_b") and ds.ntk.dtype == np.float32
  with jax.enable_x64(True):
    theory = np.asarray(meanfield.ntk(gram=x @ x.T / x.shape[1], depth=4, **kw).ntk)
  _agree(ds, theory, [2, 4])
  # the test can tell: the theory of another sigma_w2 is rejected
  with jax.enable_x64(True):
    other = np.asarray(meanfield.ntk(gram=x @ x.T / x.shape[1], depth=4, activation="tanh",
                                     sigma_w2=2.4, sigma_b2=0.1).ntk)
  with pytest.raises(AssertionError):
    _agree(ds, other, [2, 4])


@pytest.mark.slow
def test_results_do_not_depend_on_chunking():
  kw = dict(x=_inputs(), activation="relu", width=32, depth=[1, 3], sigma_w2=2.0,
            sigma_b2=0.05, n_seeds=5, progress=False)
  a = empirical.ntk(jax.random.PRNGKey(4), **kw)
  b = empirical.ntk(jax.random.PRNGKey(4), chunk_size=2, **kw)
  np.testing.assert_array_equal(a.ntk.values, b.ntk.values)


def test_condition_numbers_flag_what_is_beyond_resolution():
  k = np.array([[[2.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [1.0, 1.0 + 1e-14]]])
  np.testing.assert_array_equal(condition_numbers(k, eps=2.0 ** -52), [2.0, np.inf])


@pytest.mark.parametrize("kw, match", [
    (dict(x=np.ones(3)), "`x` must be real inputs of shape"),
    (dict(depth=[3, 2]), "`depth` must be one integer >= 1 or an increasing list"),
    (dict(arch=meanfield.MLP(residual=True)), "residual=True"),
    (dict(init="he_normal", sigma_w2=1.0), "`init` must be a scheme by variance"),
    (dict(sigma_w2=-1.0), "sigma_w2"),
])
def test_bad_input_raises_before_any_work(kw, match):
  args = dict(x=_inputs(), width=8, depth=2, n_seeds=1, progress=False) | kw
  with pytest.raises(ValueError, match=match):
    empirical.ntk(jax.random.PRNGKey(0), **args)


@pytest.mark.slow
def test_digits_condition_numbers_follow_the_theory_in_both_phases(x64):
  data = empirical.load_digits(key=jax.random.PRNGKey(0), dtype=np.float64)
  x = np.asarray(data.x_train[:6])
  for sw in (0.7, 3.0):
    kw = dict(activation="tanh", sigma_w2=sw, sigma_b2=0.05)
    ds = empirical.ntk(jax.random.PRNGKey(5), x=x, width=1024, depth=[2, 6], n_seeds=16,
                       progress=False, dtype=np.float64, **kw)
    theory = np.asarray(meanfield.ntk(gram=x @ x.T / x.shape[1], depth=6, **kw).ntk)
    _agree(ds, theory, [2, 6])


def test_a_network_reads_as_the_keyword_call():
  net = meanfield.Network(activation="relu", sigma_w2=2.0, sigma_b2=0.05, depth=3, width=32)
  a = empirical.ntk(jax.random.PRNGKey(4), network=net, x=_inputs(), n_seeds=2, progress=False)
  b = empirical.ntk(jax.random.PRNGKey(4), x=_inputs(), activation="relu", width=32, depth=3,
                    sigma_w2=2.0, sigma_b2=0.05, n_seeds=2, progress=False)
  np.testing.assert_array_equal(a.ntk.values, b.ntk.values)
