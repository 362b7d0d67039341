"""Residual MLPs: maps against closed forms and quadrature, asymptotic laws, wide networks."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import brentq
from scipy.special import erf

import empirical
import meanfield
from tests.meanfield import arch_reference as ref


def test_reference_trapezoid_is_accurate():
  # The NumPy reference's grid against erf's closed forms, at the largest length used below.
  for q, c in [(0.5, 0.3), (45.0, 0.4), (45.0, 0.999)]:
    got = ref.trapezoid(erf, lambda u: 2 / np.sqrt(np.pi) * np.exp(-u * u), q, c)
    np.testing.assert_allclose(got, ref.moments("erf", q, c), rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("act", ["relu", "linear", pytest.param("erf", marks=pytest.mark.slow),
                                 pytest.param("tanh", marks=pytest.mark.slow)])
def test_maps_against_reference(x64, act):
  q = np.array([0.3, 1.0, 4.0])[:, None]
  c = np.array([-0.6, 0.2, 0.9, 0.999])[None, :]
  alpha = np.array([0.5, 1.0, 1.3])[:, None]
  kw = dict(sigma_w2=1.7, sigma_b2=0.1, activation=act,
            arch=meanfield.MLP(residual=True, alpha=alpha))
  got_q = meanfield.q_map(q, **kw)
  got_c = meanfield.c_map(c, q=q, **kw)
  assert got_c.shape == (3, 4) and got_q.shape == (3, 1)
  for i in range(3):
    for j in range(4):
      m2, cross, _ = ref.moments(act, q[i, 0], c[0, j])
      q_next = q[i, 0] + alpha[i, 0] ** 2 * (1.7 * m2 + 0.1)
      c_next = (q[i, 0] * c[0, j] + alpha[i, 0] ** 2 * (1.7 * cross + 0.1)) / q_next
      np.testing.assert_allclose(got_q[i, 0], q_next, rtol=1e-10)
      np.testing.assert_allclose(got_c[i, j], c_next, rtol=1e-9, atol=1e-10)
  np.testing.assert_array_equal(meanfield.c_map(1.0, q=q, **kw), 1.0)


@pytest.mark.slow
@given(c=st.floats(-1, 1), q=st.floats(0, 50), sigma_w2=st.floats(0, 5),
       sigma_b2=st.floats(0, 2), alpha=st.floats(0.05, 3))
def test_c_map_maps_into_unit_interval(c, q, sigma_w2, sigma_b2, alpha):
  # A correlation stays a correlation, and the length grows (property, erf's closed forms).
  kw = dict(sigma_w2=sigma_w2, sigma_b2=sigma_b2, activation="erf",
            arch=meanfield.MLP(residual=True, alpha=alpha))
  q32 = np.float32(q)                      # what the map sees: below ~1e-45, zero
  out = float(meanfield.c_map(np.float32(c), q=q32, **kw))
  assert -1 - 1e-6 <= out <= 1 + 1e-6 or (q32 == 0 and np.isnan(out) and sigma_b2 == 0)
  assert float(meanfield.q_map(np.float32(q), **kw)) >= np.float32(q) * (1 - 1e-6)


@pytest.mark.slow
def test_theory_md_check_value(x64):
  # THEORY.md: tanh, sigma_w2 = 1, sigma_b2 = 0.05, c_input = 0.5: c^50 about 0.40, drifting down.
  kw = dict(q_input=1.0, c_input=0.5, depth=50, sigma_w2=1.0, sigma_b2=0.05)
  p = meanfield.propagate(activation="tanh", arch=meanfield.MLP(residual=True), **kw)
  q_ref, c_ref = ref.propagate("tanh", residual=True, **kw)
  np.testing.assert_allclose(p.q, q_ref, rtol=1e-9)
  np.testing.assert_allclose(p.c, c_ref, rtol=1e-8)
  assert abs(float(p.c[-1]) - 0.40) < 0.005
  assert np.all(np.diff(np.asarray(p.c)[20:]) < 0)
  # Layer 1 is affine in the input, and the gradient factor is 1 + sigma_w2 E[phi'^2].
  np.testing.assert_allclose(p.q[0], 1.05)
  _, _, d2 = ref.moments("tanh", float(p.q[10]), 1.0)
  np.testing.assert_allclose(p.chi_1[10], 1 + d2, rtol=1e-9)


def test_relu_laws(x64):
  # sigma_b2 = 0: q grows by 1 + a per layer, a = alpha^2 sigma_w2 / 2, and
  # 1 - c^l ~ 9 pi^2 (1 + a)^2 / (2 a^2 l^2) (docs/architectures.md), with a
  # relative error O(log(l) / l). A tiny input length keeps q^3000 in range
  # (ReLU's c-map does not depend on q).
  a = 0.5
  p = meanfield.propagate(q_input=1e-300, c_input=0.5, depth=3000, sigma_w2=1.0,
                          sigma_b2=0.0, activation="relu", arch=meanfield.MLP(residual=True))
  q, c = np.asarray(p.q), np.asarray(p.c)
  np.testing.assert_allclose(q[1:] / q[:-1], 1 + a, rtol=1e-12)
  law = 9 * np.pi**2 * (1 + a) ** 2 / (2 * a**2)
  err = lambda l: abs((1 - c[l - 1]) * l**2 / law - 1)
  assert err(3000) < 0.04 and err(3000) < err(1000) / 2 < err(300) / 4
  assert np.all(np.diff(c) > 0)


def test_sign_limit_laws(x64):
  # erf (like tanh) tends to a sign function as q grows: q^l - q^{l-1} ->
  # alpha^2 (sigma_w2 + sigma_b2) (error O(q^{-1/2})) and c^l -> c_inf, the stable root of
  # g(c) = ((2/pi) sigma_w2 arcsin c + sigma_b2) / (sigma_w2 + sigma_b2) = c, as
  # l^{-(1 - g'(c_inf))}; corrections of relative order l^{-(1/2 - exponent)} slow the
  # approach of the local exponent (docs/architectures.md).
  sw2, sb2 = 1.0, 0.05
  p = meanfield.propagate(q_input=1.0, c_input=0.5, depth=100_000, sigma_w2=sw2,
                          sigma_b2=sb2, activation="erf",
                          arch=meanfield.MLP(residual=True, alpha=0.7))
  q, c = np.asarray(p.q), np.asarray(p.c)
  v = 0.49 * (sw2 + sb2)
  np.testing.assert_allclose(q[-1] - q[-2], v, rtol=3 / np.sqrt(q[-1]))
  g = lambda x: (2 / np.pi * sw2 * np.arcsin(x) + sb2) / (sw2 + sb2)
  c_inf = brentq(lambda x: g(x) - x, 0.0, 0.9)
  exponent = 1 - 2 / np.pi * sw2 / (sw2 + sb2) / np.sqrt(1 - c_inf**2)
  gaps = c[[999, 9999, 99_999]] - c_inf
  assert np.all(gaps > 0)
  local = -np.log10(gaps[1:] / gaps[:-1])
  assert abs(local[1] - exponent) < abs(local[0] - exponent) and abs(local[1] / exponent - 1) < 0.1


def test_network_and_validation():
  arch = meanfield.MLP(residual=True, alpha=0.5)
  net = meanfield.Network("relu", sigma_w2=1.5, sigma_b2=0.1, depth=6, arch=arch)
  a = meanfield.propagate(net, q_input=1.0, c_input=0.3)
  b = meanfield.propagate(q_input=1.0, c_input=0.3, depth=6, sigma_w2=1.5, sigma_b2=0.1,
                          activation="relu", arch=arch)
  np.testing.assert_array_equal(a.c, b.c)
  np.testing.assert_array_equal(meanfield.q_map(2.0, network=net),
                                meanfield.q_map(2.0, sigma_w2=1.5, sigma_b2=0.1,
                                                activation="relu", arch=arch))
  with pytest.raises(ValueError, match="residual"):
    meanfield.propagate(q_input=1.0, c_input=0.3, depth=6, sigma_w2=1.5, sigma_b2=0.1,
                        activation="relu", arch=meanfield.MLP(residual=1))
  with pytest.raises(ValueError, match=r"`q` must be given .* arch=MLP\(residual=True\)"):
    meanfield.c_map(0.3, network=net)          # a residual network has no fixed length
  with pytest.raises(ValueError, match="alpha"):
    meanfield.q_map(1.0, sigma_w2=1.0, sigma_b2=0.0, activation="relu",
                    arch=meanfield.MLP(residual=True, alpha=0.0))
  with pytest.raises(ValueError, match="alpha"):          # alpha scales the residual branch
    meanfield.q_map(1.0, sigma_w2=1.0, sigma_b2=0.0, activation="relu",
                    arch=meanfield.MLP(alpha=0.5))
  with pytest.raises(ValueError, match="norm"):
    meanfield.propagate(net.replace(arch=arch.replace(norm="batch")), q_input=1.0, c_input=0.3)
  with pytest.raises(ValueError, match="depth"):
    meanfield.propagate(q_input=1.0, c_input=0.3, depth=0, sigma_w2=1.5, sigma_b2=0.1,
                        activation="relu", arch=meanfield.MLP(residual=True))


N, DEPTH, SEEDS, PAIRS = 256, 10, 8, 4
# Var(phi^2) / E[phi^2]^2 of a Gaussian pre-activation: <= 2 for tanh, 5 for ReLU.
KAPPA = {"tanh": 2.0, "relu": 5.0}


@pytest.fixture(scope="module")
def measured():
  ds = empirical.sweep(jax.random.key(3), activation=["tanh", "relu"], width=N, depth=DEPTH,
                       sigma_w2=1.0, sigma_b2=0.05, n_seeds=SEEDS, n_inputs=2 * PAIRS,
                       in_features=128, q_input=1.0, c_input=0.5,
                       arch=meanfield.MLP(residual=True), progress=False)
  with jax.enable_x64(True):   # the program test_theory_md_check_value compiles, sliced
    theory = {act: jax.tree.map(lambda v: np.asarray(v)[:DEPTH], meanfield.propagate(
        q_input=1.0, c_input=0.5, depth=50, sigma_w2=1.0, sigma_b2=0.05, activation=act,
        arch=meanfield.MLP(residual=True)))
              for act in KAPPA}
  return ds, theory


@pytest.mark.slow
@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_wide_residual_networks_follow_theory(measured, act):
  ds, theory = measured
  th = theory[act]
  ds = ds.sel(activation=act)
  layers = ds.layer.values
  # Tolerances as in tests/empirical/test_overlay.py: given layer l-1 the branch's N units
  # are iid, their mean square has relative variance (2 + kappa)/N; the skip adds no noise
  # and the residual q-map's elasticity is <= 1, so the variances at most add over layers:
  # (2 + kappa) l / N per network; seeds are independent networks.
  se_q = np.sqrt((2 + KAPPA[act]) * layers / (N * SEEDS))
  err_q = np.log(ds.q.mean("seed").values) - np.log(np.asarray(th.q))
  assert np.all(np.abs(err_q) < 5 * se_q), err_q
  # c: a width-N sample correlation has sd <= 1/sqrt(N) (plus the q noise), adding up over
  # layers; pairs have independent input directions.
  se_c = np.sqrt((1 + KAPPA[act]) * layers / (N * SEEDS * PAIRS))
  err_c = ds.c.mean("seed").values - np.asarray(th.c)
  assert np.all(np.abs(err_c) < 5 * se_c), err_c
  # Gradients: |delta^l|^2 / |delta^L|^2 against the product of the factors 1 + chi^k; each
  # backward layer adds relative variance <= (2 + 2 + 2 + kappa)/N (as in test_overlay).
  g2 = (ds.grad_h**2).values
  emp = np.mean(g2 / g2[:, -1:], axis=0)
  pred = np.cumprod(np.asarray(th.chi_1)[::-1])[::-1] / np.asarray(th.chi_1)[-1]
  se_g = np.sqrt((6 + KAPPA[act]) * (DEPTH - layers) / (N * SEEDS))
  assert np.all(np.abs(np.log(emp) - np.log(pred)) <= 5 * se_g + 1e-6), emp / pred
  assert pred[0] > 3         # the skip makes gradients grow backwards: not a vacuous check
