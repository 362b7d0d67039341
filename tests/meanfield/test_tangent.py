"""meanfield.ntk: the NNGP and NTK of a data set against closed forms and independent recursions.

The references are written here in NumPy: the recursion of docs/ntk.md in plain float64,
with the erf and ReLU kernels in closed form (Williams 1997; Cho & Saul 2009) and, for tanh,
a Gauss-Hermite product rule over the Cholesky factor of each pair's covariance.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy import optimize, special

import meanfield
from meanfield import tangent

# --- independent references ------------------------------------------------------


def _erf_pairs(s):
  """``E[erf(u) erf(v)]`` and ``E[erf'(u) erf'(v)]`` for every pair of ``Sigma`` (Williams 1997)."""
  d = np.diag(s)
  a, b = d[:, None], d[None, :]
  cross = 2 / np.pi * np.arcsin(2 * s / np.sqrt((1 + 2 * a) * (1 + 2 * b)))
  dcross = 4 / np.pi / np.sqrt((1 + 2 * a) * (1 + 2 * b) - 4 * s * s)
  return cross, dcross


def _relu_pairs(s):
  d = np.sqrt(np.diag(s))
  norm = d[:, None] * d[None, :]
  c = np.clip(s / norm, -1, 1)
  theta = np.arccos(c)
  return norm * (np.sin(theta) + (np.pi - theta) * c) / (2 * np.pi), (np.pi - theta) / (2 * np.pi)


_Z, _W = np.polynomial.hermite_e.hermegauss(300)
_W = _W / np.sqrt(2 * np.pi)


def _tanh_pairs(s):
  m = s.shape[0]
  cross, dcross = np.empty_like(s), np.empty_like(s)
  for i in range(m):
    for j in range(m):
      a = np.sqrt(s[i, i])
      r = s[i, j] / a
      t = np.sqrt(max(s[j, j] - r * r, 0.0))
      u = a * _Z[:, None] + 0 * _Z[None, :]
      v = r * _Z[:, None] + t * _Z[None, :]
      w = _W[:, None] * _W[None, :]
      cross[i, j] = np.sum(w * np.tanh(u) * np.tanh(v))
      dcross[i, j] = np.sum(w / np.cosh(u) ** 2 / np.cosh(v) ** 2)
  return cross, dcross


PAIRS = {"erf": _erf_pairs, "relu": _relu_pairs, "tanh": _tanh_pairs}


def _reference(name, gram, depth, sw, sb, *, residual=False, alpha=1.0, layer_norm=False,
               keep_prob=1.0):
  """``(Sigma^l, Theta^l)`` for l = 1..depth, plain float64 (docs/ntk.md)."""
  sigma = sw * gram + sb
  theta = sigma.copy()
  out = [(sigma, theta)]
  eye = np.eye(gram.shape[0], dtype=bool)
  for _ in range(depth - 1):
    d = np.sqrt(np.diag(sigma))
    if layer_norm:
      norm = d[:, None] * d[None, :]
      cross, dcross = PAIRS[name](sigma / norm)
    else:
      norm = np.ones_like(sigma)
      cross, dcross = PAIRS[name](sigma)
    scale = np.where(eye, 1 / keep_prob, 1.0)
    b = sw * cross * scale + sb
    dot = sw * dcross * scale / norm
    skip = 1.0 if residual else 0.0
    sigma, theta = skip * sigma + alpha ** 2 * b, skip * theta + alpha ** 2 * (b + dot * theta)
    out.append((sigma, theta))
  return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])


GRAM = np.array([[0.9, 0.3, -0.2], [0.3, 0.5, 0.1], [-0.2, 0.1, 1.3]])


def _ntk_matrix(k):
  return np.asarray(k.ntk)


# --- closed forms ------------------------------------------------------------------


def test_relu_he_point_gives_theta_equal_to_the_layer_index(x64):
  """ReLU, sigma_w2 = 2, sigma_b2 = 0, q^1 = 1: Theta^l_aa = l (Arora et al. 2019's L + 1 with
  L = l - 1 hidden layers), and off the diagonal the arc-cosine recursion."""
  gram = np.array([[0.5, 0.2], [0.2, 0.5]])
  k = meanfield.ntk(gram=gram, depth=12, sigma_w2=2.0, sigma_b2=0.0, activation="relu")
  np.testing.assert_allclose(np.exp(k.log_ntk_diagonal), np.arange(1, 13)[:, None] * [1, 1],
                             rtol=1e-13)
  sigma, theta = _reference("relu", gram, 12, 2.0, 0.0)
  np.testing.assert_allclose(_ntk_matrix(k), theta, rtol=1e-12)
  np.testing.assert_allclose(k.nngp, sigma, rtol=1e-12)


@pytest.mark.parametrize("variant", [
    {}, {"residual": True, "alpha": 0.6}, {"norm": "layer"}, {"keep_prob": 0.8},
    {"residual": True, "norm": "layer", "keep_prob": 0.9}])
def test_erf_arcsine_kernel_and_variants_match_the_reference(x64, variant):
  k = meanfield.ntk(gram=GRAM, depth=9, sigma_w2=1.7, sigma_b2=0.2, activation="erf",
                    arch=meanfield.MLP(**variant))
  sigma, theta = _reference("erf", GRAM, 9, 1.7, 0.2, residual=variant.get("residual", False),
                            alpha=variant.get("alpha", 1.0),
                            layer_norm=variant.get("norm") == "layer",
                            keep_prob=variant.get("keep_prob", 1.0))
  np.testing.assert_allclose(k.nngp, sigma, rtol=1e-12, atol=1e-14)
  np.testing.assert_allclose(_ntk_matrix(k), theta, rtol=1e-12, atol=1e-14)
  np.testing.assert_allclose(k.nngp[0], k.ntk[0], rtol=1e-14)      # Theta^1 = Sigma^1


def test_tanh_matches_an_independent_gauss_hermite_recursion(x64):
  k = meanfield.ntk(gram=GRAM, depth=6, sigma_w2=1.3, sigma_b2=0.05, activation="tanh")
  sigma, theta = _reference("tanh", GRAM, 6, 1.3, 0.05)
  np.testing.assert_allclose(k.nngp, sigma, rtol=1e-10, atol=1e-13)
  np.testing.assert_allclose(_ntk_matrix(k), theta, rtol=1e-10, atol=1e-13)


@pytest.mark.slow
def test_long_inputs_fall_back_to_quadrature_and_match_scipy(x64):
  """At q ~ 50 Mehler's series for tanh is not certified: the 2-D rule answers; one input's
  second layer against 1-D scipy quadrature (tests/meanfield/quadrature_reference.py)."""
  from tests.meanfield import quadrature_reference as qr
  sw, sb, q_in = 1.3, 0.05, 39.0
  act = meanfield.activation("tanh")
  q1 = sw * q_in + sb
  s = np.full((1, 1), q1)
  assert not bool(tangent._series_moments(act, s, s, s)[2])
  k = meanfield.ntk(gram=[[q_in]], depth=2, sigma_w2=sw, sigma_b2=sb, activation="tanh")
  sigma2 = sw * qr.expectation(lambda h: np.tanh(h) ** 2, q1) + sb
  theta2 = sigma2 + sw * qr.expectation(lambda h: np.cosh(h) ** -4, q1) * q1
  np.testing.assert_allclose(k.nngp[1, 0, 0], sigma2, rtol=1e-10)
  np.testing.assert_allclose(np.exp(k.log_ntk_diagonal[1, 0]), theta2, rtol=1e-9)


def test_two_inputs_nngp_is_propagate(x64):
  """The NNGP of two inputs of one length is q^l c^l of meanfield.propagate."""
  gram = 0.8 * np.array([[1.0, 0.4], [0.4, 1.0]])
  k = meanfield.ntk(gram=gram, depth=8, sigma_w2=1.5, sigma_b2=0.05, activation="tanh")
  p = meanfield.propagate(q_input=0.8, c_input=0.4, depth=8, sigma_w2=1.5, sigma_b2=0.05,
                          activation="tanh")
  np.testing.assert_allclose(k.nngp[:, 0, 0], p.q, rtol=1e-10)
  np.testing.assert_allclose(k.nngp[:, 0, 1], p.q * p.c, rtol=1e-10)


# --- deep: log space, both phases ----------------------------------------------------


def _erf_fixed_point(sw, sb):
  """``(q*, c*, chi_1, chi_c*)`` of erf by root finding on the closed forms."""
  q = optimize.brentq(lambda q: sw * 2 / np.pi * np.arcsin(2 * q / (1 + 2 * q)) + sb - q,
                      1e-12, 1e3, xtol=1e-15)
  cmap = lambda c: (sw * 2 / np.pi * np.arcsin(2 * q * c / (1 + 2 * q)) + sb) / q
  chi_1 = sw * 4 / np.pi / np.sqrt(1 + 4 * q)
  if chi_1 <= 1:
    return q, 1.0, chi_1, chi_1
  c = optimize.brentq(lambda c: cmap(c) - c, 0.0, 1 - 1e-9, xtol=1e-15)
  chi_c = sw * 4 / np.pi / np.sqrt((1 + 2 * q) ** 2 - 4 * q * q * c * c)
  return q, c, chi_1, chi_c


def test_depth_1000_chaotic_is_finite_and_follows_the_direct_recursion_and_the_law(x64):
  sw, sb, gram = 25.0, 0.1, np.array([[1.0, 0.6], [0.6, 1.0]])
  k = meanfield.ntk(gram=gram, depth=1000, sigma_w2=sw, sigma_b2=sb, activation="erf")
  assert np.all(np.isfinite(k.log_ntk_diagonal)) and not np.any(np.isnan(k.ntk_correlation))
  with np.errstate(over="ignore", invalid="ignore"):
    _, theta = _reference("erf", gram, 1000, sw, sb)
  ok = np.isfinite(theta[:, 0, 0]) & (theta[:, 0, 0] < 1e300)
  assert 100 < ok.sum() < 1000                       # the direct recursion overflows
  np.testing.assert_allclose(k.log_ntk_diagonal[ok, 0], np.log(theta[ok, 0, 0]), rtol=1e-12)
  np.testing.assert_allclose(k.ntk_correlation[ok, 0, 1], theta[ok, 0, 1] / theta[ok, 0, 0],
                             rtol=1e-9)
  q, c, chi_1, chi_c = _erf_fixed_point(sw, sb)
  # the diagonal grows by chi_1 per layer; the off-diagonal tends to q* c* / (1 - chi_c*)
  np.testing.assert_allclose(np.diff(k.log_ntk_diagonal[-100:, 0]), np.log(chi_1), rtol=1e-12)
  assert chi_c < 1
  corr = np.asarray(k.ntk_correlation[200:, 0, 1])
  seen = corr > 1e-290                               # before it underflows (correctly) to 0
  assert seen.sum() > 100
  off = np.exp(np.log(corr[seen]) + np.asarray(k.log_ntk_diagonal[200:, 0])[seen])
  np.testing.assert_allclose(off, q * c / (1 - chi_c), rtol=1e-9)
  np.testing.assert_allclose(k.ntk_condition[-1], 1.0, rtol=1e-12)


def test_depth_1000_ordered_tends_to_the_constant_kernel_and_conditions_blow_up(x64):
  sw, sb, gram = 0.8, 0.2, np.array([[1.0, 0.3], [0.3, 1.0]])
  k = meanfield.ntk(gram=gram, depth=1000, sigma_w2=sw, sigma_b2=sb, activation="erf")
  q, _, chi_1, _ = _erf_fixed_point(sw, sb)
  np.testing.assert_allclose(k.ntk[-1], q / (1 - chi_1) * np.ones((2, 2)), rtol=1e-12)
  _, theta = _reference("erf", gram, 60, sw, sb)
  np.testing.assert_allclose(_ntk_matrix(k)[:60], theta, rtol=1e-11)
  cond = np.asarray(k.ntk_condition)
  finite = np.isfinite(cond)
  # finite while resolvable (relative error below 1e-3), then inf, never a wrong finite number
  last = np.flatnonzero(finite)[-1]
  assert finite[:last + 1].all() and not finite[last + 1:].any() and cond[last] > 1e11
  assert np.all(np.diff(cond[finite]) > 0)
  # Xiao et al. 2020: 1/condition ~ l chi_1^l: successive ratios times l/(l+1) tend to chi_1
  l = np.arange(1, 1001)
  ratio = cond[39:55] / cond[40:56] * l[39:55] / l[40:56]
  np.testing.assert_allclose(ratio, chi_1, rtol=1e-3)


def test_float32_depth_1000_is_finite_in_both_phases():
  for sw in (0.8, 6.0):
    k = meanfield.ntk(gram=np.float32([[1.0, 0.6], [0.6, 1.0]]), depth=1000, sigma_w2=sw,
                      sigma_b2=0.1, activation="erf")
    assert k.log_ntk_diagonal.dtype == np.float32
    assert np.all(np.isfinite(k.log_ntk_diagonal)) and np.all(np.isfinite(k.ntk_correlation))


# --- data set: predictor, grid, depth scales -------------------------------------------------


def test_predictor_is_kernel_regression_and_its_data_dependence_decays(x64):
  """Chaotic phase: the predictions at two test inputs differ by ~ l (chi_c* / chi_1)^l
  (Xiao et al. 2020's xi_*): successive ratios times l / (l + 1) tend to chi_c* / chi_1."""
  gram = np.array([[1.0, 0.5, 0.4, 0.2], [0.5, 1.0, 0.3, 0.1], [0.4, 0.3, 1.0, 0.6],
                   [0.2, 0.1, 0.6, 1.0]])
  k = meanfield.ntk(gram=gram, depth=80, sigma_w2=3.0, sigma_b2=0.05, activation="erf",
                    n_train=2)
  theta = _ntk_matrix(k)
  direct = np.linalg.solve(theta[:, :2, :2], theta[:, :2, 2:]).transpose(0, 2, 1)
  np.testing.assert_allclose(k.predictor, direct, rtol=1e-10)
  assert k.predictor.shape == (80, 2, 2) and k.ntk_condition.shape == (80,)
  _, _, chi_1, chi_c = _erf_fixed_point(3.0, 0.05)
  spread = np.abs(k.predictor[:, 0] - k.predictor[:, 1]).sum(-1)
  l = np.arange(1, 81)
  np.testing.assert_allclose(spread[-5:] / spread[-6:-1] * l[-6:-1] / l[-5:], chi_c / chi_1,
                             rtol=1e-3)


def test_a_grid_is_one_program_and_every_layer_false_keeps_conditions(x64):
  sw = np.linspace(0.5, 4.0, 5)[:, None]
  sb = np.array([0.0, 0.1])[None, :]
  k = meanfield.ntk(gram=GRAM, depth=20, sigma_w2=sw, sigma_b2=sb, activation="erf",
                    every_layer=False)
  assert k.nngp.shape == (5, 2, 3, 3) and k.ntk_condition.shape == (5, 2, 20)
  one = meanfield.ntk(gram=GRAM, depth=20, sigma_w2=float(sw[3, 0]), sigma_b2=0.1,
                      activation="erf")
  np.testing.assert_allclose(k.ntk_condition[3, 1], one.ntk_condition, rtol=1e-12)
  np.testing.assert_allclose(k.ntk[3, 1], one.ntk[-1], rtol=1e-12)
  before = tangent._kernels._cache_size()
  meanfield.ntk(gram=GRAM, depth=20, sigma_w2=sw + 0.1, sigma_b2=sb, activation="erf",
                every_layer=False)
  assert tangent._kernels._cache_size() == before


def test_a_network_gives_its_fields(x64):
  net = meanfield.Network(activation="erf", sigma_w2=1.5, sigma_b2=0.1, depth=7,
                          arch=meanfield.MLP(keep_prob=0.9))
  a = meanfield.ntk(net, gram=GRAM)
  b = meanfield.ntk(gram=GRAM, depth=7, sigma_w2=1.5, sigma_b2=0.1, activation="erf",
                    arch=meanfield.MLP(keep_prob=0.9))
  np.testing.assert_array_equal(a.ntk, b.ntk)


def test_depth_scales_xi_1_and_xi_star_against_erf_closed_forms(x64):
  for sw, sb in ((0.9, 0.1), (2.5, 0.1), (4.0, 0.3)):
    ds = meanfield.depth_scales(sigma_w2=sw, sigma_b2=sb, activation="erf")
    _, c, chi_1, chi_c = _erf_fixed_point(sw, sb)
    if chi_1 < 1:
      np.testing.assert_allclose(ds.xi_1, -1 / np.log(chi_1), rtol=1e-9)
      assert ds.xi_star == np.inf
    else:
      assert ds.xi_1 == np.inf
      np.testing.assert_allclose(ds.xi_star, -1 / (np.log(chi_c) - np.log(chi_1)), rtol=1e-8)


@pytest.mark.parametrize("kw, match", [
    (dict(gram=np.ones(3)), "`gram` must be a square matrix"),
    (dict(gram=np.array([[1.0, 0.2], [0.3, 1.0]])), "`gram` must be symmetric"),
    (dict(gram=np.array([[-1.0, 0.0], [0.0, 1.0]])), "`gram` must have a non-negative"),
    (dict(n_train=0), "`n_train` must be an integer in \\[1, 3\\]"),
    (dict(n_train=4), "`n_train` must be an integer in \\[1, 3\\]"),
    (dict(depth=0), "`depth` must be"),
    (dict(sigma_w2=-1.0), "`sigma_w2` must be >= 0"),
    (dict(activation="nope"), "nope"),
    (dict(arch=meanfield.MLP(norm="batch")), "`arch.norm` must be None or 'layer'"),
    (dict(arch=meanfield.Conv(kernel_size=3)), "`arch` of `ntk` must be a meanfield.MLP"),
    (dict(every_layer="yes"), "`every_layer` must be True or False"),
])
def test_bad_input_raises_before_any_work(kw, match):
  args = dict(gram=GRAM, depth=3, sigma_w2=1.0, sigma_b2=0.0, activation="erf") | kw
  with pytest.raises(ValueError, match=match):
    meanfield.ntk(**args)


@pytest.mark.slow
def test_jit_and_grad_against_finite_differences(x64):
  gram = np.array([[1.0, 0.3], [0.3, 1.0]])
  f = lambda s: meanfield.ntk(gram=gram, depth=5, sigma_w2=s, sigma_b2=0.1,     # noqa: E731
                              activation="erf").log_ntk_diagonal[-1, 0]
  np.testing.assert_array_equal(jax.jit(f)(1.5), f(1.5))
  h = 1e-5
  np.testing.assert_allclose(jax.grad(f)(1.5), (f(1.5 + h) - f(1.5 - h)) / (2 * h), rtol=1e-7)
