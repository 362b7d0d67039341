"""LayerNorm MLPs (maps, fixed point, wide networks) and BatchNorm's gradient explosion."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import empirical
import meanfield
from empirical import models
from tests.meanfield import arch_reference as ref


@pytest.mark.slow
@pytest.mark.parametrize("act", ["relu", "erf", "tanh"])
def test_c_map_against_reference(x64, act):
  c = np.array([-0.5, 0.0, 0.3, 0.95, 0.9999])
  sigma_w2 = np.array([0.8, 2.5])[:, None]
  got = meanfield.c_map(c, sigma_w2=sigma_w2, sigma_b2=0.2, activation=act,
                        arch=meanfield.MLP(norm="layer"))
  for i, sw2 in enumerate(sigma_w2[:, 0]):
    m2 = ref.moments(act, 1.0, 1.0)[0]
    want = [(sw2 * ref.moments(act, 1.0, cj)[1] + 0.2) / (sw2 * m2 + 0.2) for cj in c]
    np.testing.assert_allclose(got[i], want, rtol=1e-10, atol=1e-12)


def test_fixed_point(x64):
  sigma_w2 = np.array([0.2, 1.0, 2.0, 6.0])    # erf: ordered below sigma_w2 = 0.478
  # erf (closed forms, cheap to compile; tanh's c-map is checked against quadrature above,
  # and the solver is the same code for every activation)
  fp = meanfield.fixed_point(sigma_w2=sigma_w2, sigma_b2=0.05, activation="erf",
                             arch=meanfield.MLP(norm="layer"))
  c_next = meanfield.c_map(fp.c_star, sigma_w2=sigma_w2, sigma_b2=0.05, activation="erf",
                           arch=meanfield.MLP(norm="layer"))
  np.testing.assert_allclose(c_next, fp.c_star, atol=1e-13)          # fixed
  # the q-map after a LayerNorm is the constant q_LN, whatever q
  q_next = meanfield.q_map(np.array([[0.0], [0.3], [7.0]]), sigma_w2=sigma_w2, sigma_b2=0.05,
                           activation="erf", arch=meanfield.MLP(norm="layer"))
  assert q_next.shape == (3, 4)
  np.testing.assert_allclose(q_next, np.broadcast_to(fp.q_star, (3, 4)), rtol=1e-14)
  for sw2, c, chi_c, chi_1, q in zip(sigma_w2, fp.c_star, fp.chi_c, fp.chi_1, fp.q_star):
    m2, _, d2 = ref.moments("erf", 1.0, 1.0)
    np.testing.assert_allclose(q, sw2 * m2 + 0.05, rtol=1e-11)
    np.testing.assert_allclose(chi_1, sw2 * d2 / q, rtol=1e-10)
    assert (c == 1.0) == (chi_1 <= 1) and chi_c <= 1
    if c < 1:    # chi_c against a centred difference of the reference map (else chi_c = chi_1)
      big_c = lambda x: (sw2 * ref.moments("erf", 1.0, x)[1] + 0.05) / q
      h = 1e-5
      np.testing.assert_allclose(chi_c, (big_c(c + h) - big_c(c - h)) / (2 * h), rtol=1e-7)
    else:
      np.testing.assert_allclose(chi_c, chi_1)
  np.testing.assert_allclose(fp.xi_c, -1 / np.log(fp.chi_c))
  # the length after a LayerNorm layer does not depend on the one before: slope 0, xi_q = 0
  np.testing.assert_array_equal(fp.xi_q, 0.0)
  assert fp.converged.dtype == bool and np.all(fp.converged)
  assert fp.c_star[0] == 1 and np.all(fp.c_star[1:] < 1)
  # ReLU: chi_1 = (sigma_w2 / 2) / (sigma_w2 / 2 + sigma_b2) < 1: always ordered.
  relu = meanfield.fixed_point(sigma_w2=sigma_w2, sigma_b2=0.05, activation="relu",
                               arch=meanfield.MLP(norm="layer"))
  np.testing.assert_allclose(relu.chi_1, sigma_w2 / 2 / (sigma_w2 / 2 + 0.05), rtol=1e-12)
  np.testing.assert_array_equal(relu.c_star, 1.0)


@pytest.mark.slow
def test_propagate_and_network(x64):
  net = meanfield.Network("tanh", sigma_w2=2.0, sigma_b2=0.05, depth=8,
                          arch=meanfield.MLP(norm="layer"))
  p = meanfield.propagate(net, q_input=1.5, c_input=0.2)
  q_ref, c_ref = ref.propagate("tanh", q_input=1.5, c_input=0.2, depth=8, sigma_w2=2.0,
                               sigma_b2=0.05, layer_norm=True)
  np.testing.assert_allclose(p.q, q_ref, rtol=1e-10)
  np.testing.assert_allclose(p.c, c_ref, rtol=1e-10)
  m2, _, d2 = ref.moments("tanh", 1.0, 1.0)
  np.testing.assert_allclose(p.chi_1[1:], 2.0 * d2 / (2.0 * m2 + 0.05), rtol=1e-10)
  batch = net.replace(arch=net.arch.replace(norm="batch"))
  with pytest.raises(ValueError, match="`arch.norm` must be None or 'layer'.*got 'batch'"):
    meanfield.propagate(batch, q_input=1.0, c_input=0.2)
  with pytest.raises(ValueError, match="norm"):
    meanfield.c_map(0.3, sigma_w2=2.0, sigma_b2=0.05, activation="tanh",
                    arch=meanfield.MLP(norm="group"))
  with pytest.raises(ValueError, match="norm"):
    meanfield.fixed_point(batch)
  # LayerNorm with a residual connection: q grows by exactly sigma_w2 E[phi(z)^2] + sigma_b2.
  r = meanfield.propagate(net.replace(arch=net.arch.replace(residual=True), activation="relu"),
                          q_input=1.5, c_input=0.2)
  np.testing.assert_allclose(np.diff(r.q), 2.0 / 2 + 0.05, rtol=1e-12)


N, DEPTH, SEEDS, PAIRS = 256, 10, 8, 4


@pytest.mark.slow
def test_wide_layernorm_networks_follow_theory():
  ds = empirical.sweep(jax.random.key(5), activation="erf", width=N, depth=DEPTH,
                       sigma_w2=[1.0, 3.0], sigma_b2=0.05, n_seeds=SEEDS, n_inputs=2 * PAIRS,
                       in_features=128, q_input=1.0, c_input=0.3, arch=meanfield.MLP(norm="layer"),
                       progress=False)
  th = meanfield.propagate(q_input=1.0, c_input=0.3, depth=DEPTH,
                           sigma_w2=np.array([1.0, 3.0]), sigma_b2=0.05, activation="erf",
                           arch=meanfield.MLP(norm="layer"))
  assert th.q.shape == (2, DEPTH)
  ds = ds.transpose("seed", "sigma_w2", "layer")
  layers = ds.layer.values
  kappa = 2.0     # Var(erf^2) / E[erf^2]^2 <= 2, as tanh's (test_overlay.py)
  # q^l: one layer of N iid units given the normalised input (length exactly 1 up to
  # O(1/N)): relative variance (2 + kappa)/N, not accumulating; bound it by the
  # accumulating form of test_residual.py all the same.
  se_q = np.sqrt((2 + kappa) * layers / (N * SEEDS))
  err_q = np.log(ds.q.mean("seed").values) - np.log(np.asarray(th.q))
  assert np.all(np.abs(err_q) < 5 * se_q), err_q
  se_c = np.sqrt((1 + kappa) * layers / (N * SEEDS * PAIRS))
  err_c = ds.c.mean("seed").values - np.asarray(th.c)
  assert np.all(np.abs(err_c) < 5 * se_c), err_c
  # The length is fixed after one layer (not a vacuous check: q^1 differs).
  assert abs(float(th.q[1, 0] - th.q[1, 1])) > 0.5 and np.ptp(np.asarray(th.q)[:, 1:]) < 2


def _batchnorm_gradients(key, *, activation, sigma_w2, batch, width, depth):
  """``|dL/dh^l|^2`` (summed over the batch) of one BatchNorm MLP, ``L = sum_a r_a . a^L_a``.

  One random projection per input: the sweep's loss ``sum_a r . a^L_a`` is 0
  identically for a linear BatchNorm network (each unit's outputs sum to 0
  over the batch), so it cannot measure the gradient there.
  """
  std = models.standard_params(key, in_features=width, width=width, depth=depth, norm="batch")
  ws, bs = models.layer_scales("gaussian", sigma_w2, 0.1, in_features=width, width=width,
                               depth=depth)
  params = models.scale_params(std, ws, bs)
  x = jax.random.normal(jax.random.fold_in(key, 7), (batch, width))
  r = jax.random.normal(jax.random.fold_in(key, 8), (batch, width))

  def loss(shift):
    out, _ = models.forward(params, x, activation=activation, norm="batch", h_shift=shift)
    return jnp.sum(out * r)

  delta = jax.grad(loss)(jnp.zeros((depth, 1, batch, width)))
  return jnp.sum(delta**2, axis=(1, 2, 3))


@pytest.mark.slow
def test_batchnorm_linear_gradient_explosion():
  batch, width, depth, seeds, skip = 8, 256, 26, 8, 4
  keys = jax.random.split(jax.random.key(11), seeds)
  rate = float(np.log(meanfield.MLP(norm="batch").gradient_factor(n_inputs=batch)))
  np.testing.assert_allclose(rate, np.log(6 / 5), rtol=1e-6)    # float32
  for sigma_w2 in (0.5, 2.0):          # the rate does not depend on the variances
    g = jax.vmap(lambda k: _batchnorm_gradients(k, activation="linear", sigma_w2=sigma_w2,
                                                batch=batch, width=width, depth=depth))(keys)
    lg = np.log(np.asarray(g))
    k = depth - 2 * skip                  # layers between the two ends of the fit
    slope = (lg[:, skip] - lg[:, depth - skip]) / k
    # Per backward layer, log |delta|^2 moves by the mean over N units of the projection
    # (chi-square, B-2 of B-1 directions: relative variance 2/((B-2) N)) times 1/std^2
    # (inverse chi-square with B-1 degrees: relative variance 2/(B-5)), and W^T
    # (2/N): at most (2 + 2/(B-5) + 2/(B-2)) / N per layer, adding up over the k
    # layers: the slope's variance is that over k per network.
    se = np.sqrt((2 + 2 / (batch - 5) + 2 / (batch - 2)) / (width * k * seeds))
    assert abs(slope.mean() - rate) < 5 * se, (slope.mean(), rate, se)
    assert 5 * se < rate / 2             # the test resolves the explosion


def test_batchnorm_factor_validation():
  bn = meanfield.MLP(norm="batch")
  got = bn.gradient_factor(n_inputs=np.array([4, 8, 16]))
  # two roundings of (B-2) and (B-3), exact integers, and one division: a few eps of the dtype
  np.testing.assert_allclose(got, [2 / 1, 6 / 5, 14 / 13], rtol=4 * np.finfo(got.dtype).eps)
  with pytest.raises(ValueError, match=r"`activation` must be 'linear' .*got 'tanh'"):
    bn.gradient_factor(n_inputs=8, activation="tanh")
  for bad in (3, 8.0, np.array([8, 2])):
    with pytest.raises(ValueError, match=r"`n_inputs` must be an integer > 3"):
      bn.gradient_factor(n_inputs=bad)


def test_batchnorm_factor_of_a_network():
  net = meanfield.Network(activation="linear", sigma_w2=2.0, depth=5,
                          arch=meanfield.MLP(norm="batch"))
  assert float(net.arch.gradient_factor(n_inputs=8, activation=net.activation)) == \
      pytest.approx(6 / 5)
  for arch in (meanfield.MLP(), meanfield.MLP(norm="layer"),
               meanfield.MLP(norm="batch", keep_prob=0.9)):
    with pytest.raises(ValueError, match=r"`gradient_factor` is the BatchNorm MLP's closed form: "
                                         r"the MLP must be MLP\(norm='batch'\) .*got "
                                         r"MLP\(residual=False"):
      arch.gradient_factor(n_inputs=8)
