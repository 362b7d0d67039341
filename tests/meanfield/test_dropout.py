"""Dropout at initialisation: maps against quadrature, c* < 1 and finite xi_c, ReLU's critical
line sigma_w2 = 2p, and wide networks with dropout (empirical.models.forward) against theory."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import brentq

import meanfield
from empirical import models
from empirical.sweeping import make_inputs
from tests.meanfield import arch_reference as ref


@pytest.mark.slow
@pytest.mark.parametrize("act", ["relu", "erf", "tanh"])
def test_maps_against_reference(x64, act):
  q = np.array([0.5, 2.0])[:, None]
  c = np.array([-0.3, 0.4, 0.99, 1.0])[None, :]
  p = 0.7
  kw = dict(sigma_w2=1.3, sigma_b2=0.1, activation=act, arch=meanfield.MLP(keep_prob=p))
  got_q = meanfield.q_map(q, **kw)
  got_c = meanfield.c_map(c, q=q, **kw)
  for i in range(2):
    for j in range(4):
      m2, cross, _ = ref.moments(act, q[i, 0], c[0, j])
      np.testing.assert_allclose(got_q[i, 0], 1.3 / p * m2 + 0.1, rtol=1e-10)
      np.testing.assert_allclose(got_c[i, j], (1.3 * cross + 0.1) / (1.3 / p * m2 + 0.1),
                                 rtol=1e-9)
  assert np.all(got_c[:, -1] < 1)                       # c = 1 is no longer fixed
  if act == "tanh":
    return                  # (one compile of tanh's maps is enough)
  # keep_prob = 1 is the plain network (an array: the dropout map, at p = 1)
  at_one = {**kw, "arch": meanfield.MLP(keep_prob=np.ones(1))}
  np.testing.assert_allclose(meanfield.c_map(c, q=q, **at_one),
                             meanfield.c_map(c, q=q, sigma_w2=1.3, sigma_b2=0.1, activation=act),
                             rtol=1e-12)


@pytest.mark.slow
def test_fixed_points(x64):
  sigma_w2 = np.array([0.5, 1.0, 2.0, 4.0])[:, None]
  keep = np.array([0.5, 0.9])[None, :]
  # erf: closed forms (tanh's maps are checked against quadrature above; the solver is
  # the same code for every activation)
  fp = meanfield.fixed_point(sigma_w2=sigma_w2, sigma_b2=0.05, activation="erf",
                             arch=meanfield.MLP(keep_prob=keep))
  assert fp.c_star.shape == (4, 2)
  np.testing.assert_allclose(fp.q_star, meanfield.q_star(sigma_w2=sigma_w2 / keep,
                                                         sigma_b2=0.05, activation="erf"))
  c_next = meanfield.c_map(fp.c_star, q=fp.q_star, sigma_w2=sigma_w2, sigma_b2=0.05,
                           activation="erf", arch=meanfield.MLP(keep_prob=keep))
  np.testing.assert_allclose(c_next, fp.c_star, atol=1e-13)
  assert np.all(fp.c_star < 1) and np.all(fp.chi_c < 1) and np.all(np.isfinite(fp.xi_c))
  # chi_c = sigma_w2 E[phi'(u1) phi'(u2)] at (q*, c*), against the reference quadrature
  for i, j in [(0, 0), (3, 1)]:
    _, _, dd = ref.moments("erf", fp.q_star[i, j], fp.c_star[i, j])
    np.testing.assert_allclose(fp.chi_c[i, j], sigma_w2[i, 0] * dd, rtol=1e-9)
    _, _, d2 = ref.moments("erf", fp.q_star[i, j], 1.0)
    np.testing.assert_allclose(fp.chi_1[i, j], sigma_w2[i, 0] / keep[0, j] * d2, rtol=1e-9)
    # xi_q from the dropout q-map's slope at q*, by central differences (error ~1e-10)
    q_map = lambda q: meanfield.q_map(q, sigma_w2=sigma_w2[i, 0], sigma_b2=0.05,
                                      activation="erf", arch=meanfield.MLP(keep_prob=keep[0, j]))
    h = 1e-5 * fp.q_star[i, j]
    slope = (q_map(fp.q_star[i, j] + h) - q_map(fp.q_star[i, j] - h)) / (2 * h)
    np.testing.assert_allclose(fp.xi_q[i, j], -1 / np.log(slope), rtol=1e-8)
  assert fp.converged.dtype == bool and np.all(fp.converged)


def test_finite_xi_c_at_criticality(x64):
  # Schoenholz et al. 2017, Sec. 6: on the line where gradients are critical (chi_1 = 1)
  # the correlation depth scale stays finite for p < 1 (and diverges as p -> 1).
  kw = dict(sigma_b2=0.05, activation="erf")
  fixed_point = lambda sw2, p: meanfield.fixed_point(
      sigma_w2=np.full((4, 2), sw2), arch=meanfield.MLP(keep_prob=p), **kw)   # shape as above
  chi_1 = lambda sw2, p: float(fixed_point(sw2, p).chi_1[0, 0]) - 1
  xi = []
  for p in (0.8, 0.99):
    sw2 = brentq(chi_1, 0.5, 4.0, args=(p,), xtol=1e-12)
    fp = jax.tree.map(lambda v: v[0, 0], fixed_point(sw2, p))
    np.testing.assert_allclose(fp.chi_1, 1.0, atol=1e-9)
    assert fp.chi_c < 1 and np.isfinite(fp.xi_c) and fp.c_star < 1
    xi.append(float(fp.xi_c))
  assert xi[0] < 5 < xi[1]


@pytest.mark.slow
def test_relu_critical_line(x64):
  # Pretorius et al. 2018: sigma_w2 = 2p. chi_1 = sigma_w2 / (2p) exactly; q* = sigma_b2 /
  # (1 - sigma_w2 / (2p)) below the line, infinite above.
  p = np.array([0.5, 0.8])
  sigma_w2 = np.array([0.6, 0.9999, 1.0001, 1.5])[:, None] * 2 * p[None, :]
  fp = meanfield.fixed_point(sigma_w2=sigma_w2, sigma_b2=0.1, activation="relu",
                             arch=meanfield.MLP(keep_prob=p[None, :]))
  np.testing.assert_allclose(fp.chi_1, sigma_w2 / (2 * p[None, :]), rtol=1e-12)
  below = sigma_w2 < 2 * p[None, :]
  np.testing.assert_allclose(fp.q_star[below], (0.1 / (1 - sigma_w2 / (2 * p)))[below],
                             rtol=1e-9)
  assert np.all(np.isinf(fp.q_star[~below])) and np.all(np.isnan(fp.c_star[~below]))
  assert np.all(fp.c_star[below] < 1)


def test_network_and_validation():
  net = meanfield.Network("relu", sigma_w2=1.2, sigma_b2=0.1, depth=5,
                          arch=meanfield.MLP(keep_prob=0.6))
  a = meanfield.propagate(net, q_input=1.0, c_input=0.5)
  b = meanfield.propagate(q_input=1.0, c_input=0.5, depth=5, sigma_w2=1.2, sigma_b2=0.1,
                          activation="relu", arch=meanfield.MLP(keep_prob=0.6))
  np.testing.assert_array_equal(a.q, b.q)
  np.testing.assert_allclose(a.chi_1, 1.2 / 0.6 / 2, rtol=1e-6)
  for bad in (0.0, 1.5):
    with pytest.raises(ValueError, match="keep_prob"):
      meanfield.q_map(1.0, sigma_w2=1.0, sigma_b2=0.0, activation="relu",
                      arch=meanfield.MLP(keep_prob=bad))
  with pytest.raises(ValueError, match="keep_prob"):
    meanfield.Network("relu", arch=meanfield.MLP(keep_prob=0.0))
  residual = net.replace(arch=net.arch.replace(residual=True))
  with pytest.raises(ValueError, match="residual"):     # a residual network has no q*
    meanfield.c_map(0.3, network=residual)
  # residual with dropout: the skip adds q to the dropout branch (alpha = 1)
  np.testing.assert_allclose(meanfield.q_map(1.0, network=residual),
                             1.0 + meanfield.q_map(1.0, network=net), rtol=1e-15)


# --- wide networks with dropout --------------------------------------------------------

N, DEPTH, SEEDS, PAIRS, P = 512, 8, 16, 4, 0.7


def _measure(key, x, *, activation, sigma_w2, sigma_b2):
  """``(q^l, c^l)`` of one network with dropout (its masks from its own stream)."""
  std = models.standard_params(key, in_features=x.shape[1], width=N, depth=DEPTH)
  params = models.scale_params(std, *models.layer_scales(
      "gaussian", sigma_w2, sigma_b2, in_features=x.shape[1], width=N, depth=DEPTH))

  def probe(h, a, a_in):
    h1, h2 = h[0, 0::2], h[0, 1::2]
    cos = jnp.sum(h1 * h2, -1) / jnp.sqrt(jnp.sum(h1 * h1, -1) * jnp.sum(h2 * h2, -1))
    return jnp.mean(h * h), jnp.mean(cos)

  _, (q, c) = models.forward(params, x, activation=activation, probe=probe, keep_prob=P,
                             dropout_key=jax.random.fold_in(key, models.DROPOUT_STREAM))
  return q, c


@pytest.mark.slow
@pytest.mark.parametrize("act,sigma_w2,kappa", [("erf", 2.0, 2.0), ("relu", 2 * P, 5.0)])
def test_wide_networks_with_dropout_follow_theory(act, sigma_w2, kappa):
  x = make_inputs(jax.random.key(0), n_inputs=2 * PAIRS, in_features=128,
                  q_input=1.0, c_input=0.5)
  keys = jax.vmap(lambda i: models.network_key(jax.random.key(9), i))(jnp.arange(SEEDS))
  q, c = jax.vmap(lambda k: _measure(k, x, activation=act, sigma_w2=sigma_w2,
                                     sigma_b2=0.05))(keys)
  th = meanfield.propagate(q_input=1.0, c_input=0.5, depth=DEPTH, sigma_w2=sigma_w2,
                           sigma_b2=0.05, activation=act, arch=meanfield.MLP(keep_prob=P))
  layers = np.arange(1, DEPTH + 1)
  # erf, like tanh, compresses the tails: kappa <= 2. As in test_residual.py, with the
  # masks' extra spread: the mean square of (m/p) phi over N units has relative variance
  # (1 + kappa)/p - 1 (E[(m/p)^4] = 1/p^3).
  kappa_p = (1 + kappa) / P - 1
  se_q = np.sqrt((2 + kappa_p) * layers / (N * SEEDS))
  err_q = np.log(np.mean(np.asarray(q), 0)) - np.log(np.asarray(th.q))
  assert np.all(np.abs(err_q) < 5 * se_q), err_q
  se_c = np.sqrt((1 + kappa_p) * layers / (N * SEEDS * PAIRS))
  err_c = np.mean(np.asarray(c), 0) - np.asarray(th.c)
  assert np.all(np.abs(err_c) < 5 * se_c), err_c
  # Not vacuous: without dropout's 1/p on the diagonal c would be off by far more.
  plain = meanfield.propagate(q_input=1.0, c_input=0.5, depth=DEPTH, sigma_w2=sigma_w2,
                              sigma_b2=0.05, activation=act, arch=meanfield.MLP(keep_prob=1.0))
  assert np.abs(np.asarray(plain.c) - np.asarray(th.c))[-1] > 10 * se_c[-1]


@pytest.mark.slow
def test_forward_dropout_keys():
  x = jnp.ones((4, 16))
  key = jax.random.key(1)
  params = models.standard_params(key, in_features=16, width=32, depth=3)
  plain = models.forward(params, x, activation="tanh")[0]
  np.testing.assert_array_equal(models.forward(params, x, activation="tanh", keep_prob=1.0)[0],
                                plain)
  k = jax.random.fold_in(key, models.DROPOUT_STREAM)
  a = models.forward(params, x, activation="tanh", keep_prob=0.5, dropout_key=k)[0]
  b = models.forward(params, x, activation="tanh", keep_prob=0.5, dropout_key=k)[0]
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, plain)
  with pytest.raises(ValueError, match="dropout_key"):
    models.forward(params, x, activation="tanh", keep_prob=0.5)
  with pytest.raises(ValueError, match="keep_prob"):
    models.forward(params, x, activation="tanh", keep_prob=0.0, dropout_key=k)


@pytest.mark.slow
def test_fixed_point_gradients(x64):
  # c* and chi_c carry implicit-function gradients (the bisection itself has none):
  # jax.grad against central differences of the values.
  def c_star_at(sw2, p):
    return meanfield.fixed_point(sigma_w2=sw2, sigma_b2=0.05, activation="erf",
                                 arch=meanfield.MLP(keep_prob=p)).c_star

  for argnum in (0, 1):
    g = jax.grad(c_star_at, argnums=argnum)(1.5, 0.8)
    h = 1e-6
    args = [1.5, 0.8]
    up = list(args); up[argnum] += h
    down = list(args); down[argnum] -= h
    fd = (c_star_at(*up) - c_star_at(*down)) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-5)
    assert abs(float(g)) > 1e-3


@pytest.mark.slow    # an edge case; the default tier checks dropout's fixed_point in test_finite_xi_c_at_criticality
def test_fixed_point_where_q_star_is_zero(x64):
  # sigma_b2 = 0 in the ordered phase: q* = 0, and c*, chi_c, xi_c are the limit q -> 0+
  # (the README's edge case), not the slopes at q = 0 itself (which are 0).
  kw = dict(sigma_w2=1.0, sigma_b2=0.0, activation="tanh")
  # the dropout theory (keep_prob not all 1) at keep_prob = 1: the plain MLP's values
  fp = jax.tree.map(lambda v: v[0], meanfield.fixed_point(
      arch=meanfield.MLP(keep_prob=np.array([1.0, 0.9])), **kw))
  plain = meanfield.fixed_point(**kw)
  assert float(fp.q_star) == float(plain.q_star) == 0.0
  assert float(fp.c_star) == float(plain.c_star) == 1.0
  assert float(fp.chi_c) == float(plain.chi_c) == 1.0
  assert float(fp.xi_c) == float(meanfield.depth_scales(**kw).xi_c) == np.inf
  # p < 1: c* is the fixed point of the limit c-map (c_map with keep_prob at q = 0), chi_c its slope
  # there by central differences (error ~h^2 C''' + eps / h, below 1e-9)
  for act, sigma_w2, keep, c_want, chi_want in [("relu", 1.5, 0.9, 0.62715, 0.6442),
                                                ("tanh", 0.5, 0.9, 0.0, 0.9)]:
    kw = dict(sigma_w2=sigma_w2, sigma_b2=0.0, activation=act, arch=meanfield.MLP(keep_prob=keep))
    fp = meanfield.fixed_point(**kw)
    assert float(fp.q_star) == 0.0
    c_map = lambda c: meanfield.c_map(c, q=0.0, **kw)
    np.testing.assert_allclose(c_map(fp.c_star), fp.c_star, atol=1e-13)
    np.testing.assert_allclose(fp.c_star, c_want, atol=1e-5)
    h = 1e-6
    slope = (c_map(fp.c_star + h) - c_map(fp.c_star - h)) / (2 * h)
    np.testing.assert_allclose(fp.chi_c, slope, rtol=1e-8)
    np.testing.assert_allclose(fp.chi_c, chi_want, rtol=1e-4)    # the limit map: tanh's is p c
    np.testing.assert_allclose(fp.xi_c, -1 / np.log(slope), rtol=1e-8)
