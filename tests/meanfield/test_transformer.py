"""meanfield.Transformer against closed-form kernels and quadrature written here in NumPy.

The reference block below is written from the maps of docs/transformer.md, in
``(q, p)`` (not the code's ``(q, q - p)``), with the ReLU arc-cosine and erf
arcsine kernels in closed form and tanh by NumPy Gauss-Legendre quadrature.
"""

import numpy as np
import pytest

import meanfield
from meanfield.depth import depth_scale

T = 16


def _relu_kernel(q1, q2, cov):
  """E[relu(u1) relu(u2)] (Cho & Saul 2009, arc-cosine of degree 1)."""
  c = np.clip(cov / np.sqrt(q1 * q2), -1, 1)
  return np.sqrt(q1 * q2) / (2 * np.pi) * (np.sqrt(1 - c * c) + (np.pi - np.arccos(c)) * c)


def _erf_kernel(q1, q2, cov):
  """E[erf(u1) erf(u2)] (Williams 1997, arcsine)."""
  return 2 / np.pi * np.arcsin(2 * cov / np.sqrt((1 + 2 * q1) * (1 + 2 * q2)))


def _quadrature_kernel(phi, nodes=800, cut=12.0):
  """E[phi(u1) phi(u2)] by 2-D Gauss-Legendre on [-cut, cut]^2 of the standard normals (Hermite
  nodes resolve tanh at the lengths q ~ 10-20 these blocks reach poorly)."""
  x, w = np.polynomial.legendre.leggauss(nodes)
  z, w = cut * x, cut * w * np.exp(-(cut * x) ** 2 / 2) / np.sqrt(2 * np.pi)

  def kernel(q1, q2, cov):
    c = np.clip(cov / np.sqrt(q1 * q2), -1, 1)
    u1 = np.sqrt(q1) * z[:, None]
    u2 = np.sqrt(q2) * (c * z[:, None] + np.sqrt(1 - c * c) * z[None, :])
    return float(w @ (phi(u1) * phi(u2)) @ w)

  return kernel


KERNELS = {"relu": _relu_kernel, "erf": _erf_kernel, "tanh": _quadrature_kernel(np.tanh)}


def _reference(kernel, norm, *, sigma_w2, sigma_b2, depth, q, p, tokens=T, beta=0.0,
               s=1.0, a_sa=1.0, a_mlp=1.0):
  """``(q^l, p^l)`` for blocks ``1..depth``: the block of the module docstring, in NumPy."""
  def attention(q, p):
    if beta == 0:
      m2 = (q + (tokens - 1) * p) / tokens             # the token mean's squared length
      return m2, m2
    beta_c = np.sqrt(2 / (q * (q - p))) if q > p else np.inf
    return p + (q - p) * max(0.0, 1 - beta_c / beta), p

  def mlp(q, p):
    qh, ph = sigma_w2 * q + sigma_b2, sigma_w2 * p + sigma_b2
    return (sigma_w2 * kernel(qh, qh, qh) + sigma_b2, sigma_w2 * kernel(qh, qh, ph) + sigma_b2)

  ln = lambda q, p: (1.0, p / q)
  out = []
  for _ in range(depth):
    qa, pa = attention(*(ln(q, p) if norm == "pre" else (q, p)))
    q, p = q + a_sa ** 2 * s * qa, p + a_sa ** 2 * s * pa
    if norm == "post":
      q, p = ln(q, p)
    qb, pb = mlp(*(ln(q, p) if norm == "pre" else (q, p)))
    q, p = q + a_mlp ** 2 * qb, p + a_mlp ** 2 * pb
    if norm == "post":
      q, p = ln(q, p)
    out.append((q, p))
  return np.array(out).T


def _net(activation, norm, *, sigma_w2=1.5, sigma_b2=0.1, depth=5, **arch):
  return meanfield.Network(activation=activation, sigma_w2=sigma_w2, sigma_b2=sigma_b2,
                           depth=depth, arch=meanfield.Transformer(tokens=T, norm=norm, **arch))


_SLOW = pytest.mark.slow      # tanh compiles its 2-D quadrature per norm: one in the default run


@pytest.mark.parametrize("activation, norm", [
    *((a, n) for a in ("relu", "erf") for n in ("pre", "post", None)), ("tanh", None),
    pytest.param("tanh", "pre", marks=_SLOW), pytest.param("tanh", "post", marks=_SLOW)])
def test_uniform_attention_matches_the_reference_block(x64, activation, norm):
  arch = dict(sigma_v2=0.8, sigma_o2=1.2, alpha_sa=0.7, alpha_mlp=0.9)
  prop = meanfield.propagate(_net(activation, norm, **arch), q_input=1.3, c_input=0.25)
  q, p = _reference(KERNELS[activation], norm, sigma_w2=1.5, sigma_b2=0.1, depth=5, q=1.3,
                    p=1.3 * 0.25, s=0.96, a_sa=0.7, a_mlp=0.9)
  tol = 1e-12 if activation != "tanh" else 1e-9
  np.testing.assert_allclose(prop.q, q, rtol=tol)
  np.testing.assert_allclose(prop.extra["p"], p, rtol=tol)
  np.testing.assert_allclose(prop.c, p / q, rtol=tol)
  assert prop.q.dtype == np.float64 and prop.q.shape == (5,)


def test_uniform_attention_closed_form_collapse(x64):
  """No MLP (sigma_w2 = sigma_b2 = 0), no LN: 1 - c shrinks by q / (q + alpha^2 s m2) per block."""
  prop = meanfield.propagate(_net("relu", None, sigma_w2=0.0, sigma_b2=0.0, depth=4),
                             q_input=1.0, c_input=0.5)
  q, p, expected = 1.0, 0.5, []
  for _ in range(4):
    m2 = (q + (T - 1) * p) / T
    expected.append((1 - p / q) * q / (q + m2))
    q, p = q + m2, p + m2
  np.testing.assert_allclose(1 - prop.c, expected, rtol=1e-12)


def test_post_ln_equals_no_ln_for_a_homogeneous_mlp(x64):
  """ReLU without biases is scale free, so a LayerNorm changes q, never c."""
  kw = dict(sigma_w2=2.0, sigma_b2=0.0, depth=8)
  post = meanfield.propagate(_net("relu", "post", **kw), q_input=2.0, c_input=0.1)
  plain = meanfield.propagate(_net("relu", None, **kw), q_input=2.0, c_input=0.1)
  np.testing.assert_allclose(post.c, plain.c, rtol=1e-12)
  np.testing.assert_allclose(post.q, 1.0)
  assert np.all(np.diff(plain.q) > 0)


def test_softmax_large_t_matches_giorlandino_goldt_post_ln(x64):
  """Their Post-LN ReLU block (skip scaled by alpha_A, value variance var_v, no biases)."""
  var_w, var_v, alpha_a = 0.2, 0.2, 1.0
  for beta in (0.5, 3.0):
    prop = meanfield.propagate(
        _net("relu", "post", sigma_w2=var_w, sigma_b2=0.0, depth=12, beta=beta,
             sigma_v2=var_v, sigma_o2=1.0 / alpha_a ** 2), q_input=1.0, c_input=0.3)
    c, expected = 0.3, []
    for _ in range(12):
      beta_c = np.sqrt(2 / (1 - c))
      q_att = c + (1 - c) * (1 - beta_c / beta) if beta > beta_c else c
      c = (var_v * c + alpha_a ** 2 * c) / (var_v * q_att + alpha_a ** 2)
      q1, p1 = var_w, var_w * c
      c = (var_w * _relu_kernel(q1, q1, p1) + c) / (var_w * q1 / 2 + 1)
      expected.append(c)
    np.testing.assert_allclose(prop.c, expected, rtol=1e-12)


def test_post_ln_fixed_point_is_fixed_and_slopes_are_derivatives(x64):
  """erf with a weak attention branch: chi_1 > 1, so c* < 1; check by the NumPy map."""
  arch = dict(alpha_sa=0.3, sigma_v2=1.0, sigma_o2=1.0)
  net = _net("erf", "post", sigma_w2=4.0, sigma_b2=0.05, **arch)
  fp = meanfield.fixed_point(net)

  def c_map(c):
    q, p = _reference(KERNELS["erf"], "post", sigma_w2=4.0, sigma_b2=0.05, depth=1, q=1.0,
                      p=c, a_sa=0.3)
    return p[0] / q[0]

  c = float(fp.c_star)
  assert 0 < c < 1 and bool(fp.converged) and float(fp.chi_1) > 1
  np.testing.assert_allclose(c_map(c), c, atol=1e-9)
  h = 1e-5
  np.testing.assert_allclose(fp.chi_c, (c_map(c + h) - c_map(c - h)) / (2 * h), rtol=1e-5)
  np.testing.assert_allclose((1 - c_map(1 - 1e-7)) / 1e-7, fp.chi_1, rtol=1e-4)
  np.testing.assert_allclose(fp.xi_c, depth_scale(fp.chi_c))
  np.testing.assert_allclose(meanfield.depth_scales(net).xi_c, fp.xi_c)
  assert float(fp.q_star) == 1.0 and float(fp.xi_q) == 0.0


def test_post_ln_collapse_rate_and_grid(x64):
  """chi_1 <= 1: c* = 1, and 1 - c shrinks by chi_1 per block near 1 (ReLU: 1/(1 + alpha^2 s))."""
  net = _net("relu", "post", sigma_w2=np.array([1.0, 2.0, 3.0]), sigma_b2=0.0, depth=20)
  fp = meanfield.fixed_point(net)
  np.testing.assert_allclose(fp.c_star, 1.0)
  np.testing.assert_allclose(fp.chi_1, 0.5, rtol=1e-12)
  prop = meanfield.propagate(net.replace(sigma_w2=2.0), q_input=1.0, c_input=0.0)
  # the arc-cosine kernel's next term is of relative order sqrt(1 - c)
  gap = 1 - float(prop.c[-2])
  assert 1e-9 < gap < 1e-4
  np.testing.assert_allclose(prop.extra["rate"][-1], 0.5, rtol=3 * np.sqrt(gap))
  assert abs(prop.extra["rate"][-1] - 0.5) < abs(prop.extra["rate"][5] - 0.5)


def test_pre_ln_collapses_slowly_against_post_ln(x64):
  kw = dict(sigma_w2=2.0, sigma_b2=0.0, depth=30)
  pre = meanfield.propagate(_net("relu", "pre", **kw), q_input=1.0, c_input=0.0)
  post = meanfield.propagate(_net("relu", "post", **kw), q_input=1.0, c_input=0.0)
  assert 1 - post.c[-1] < 1e-6 < 1e-2 < 1 - pre.c[-1]
  scaled = meanfield.propagate(_net("relu", "pre", alpha_sa=30 ** -0.5, alpha_mlp=30 ** -0.5,
                                    **kw), q_input=1.0, c_input=0.0)
  assert 1 - scaled.c[-1] > 1 - pre.c[-1]


@pytest.mark.parametrize("field, value", [
    ("tokens", 1), ("tokens", 2.0), ("heads", 0), ("beta", -1.0), ("sigma_v2", -0.1),
    ("sigma_o2", float("nan")), ("alpha_sa", 0.0), ("alpha_mlp", "1"), ("norm", "mid"),
    ("causal", 1)])
def test_bad_fields_raise(field, value):
  with pytest.raises(ValueError, match=f"`{field}`"):
    meanfield.Transformer(**{"tokens": 4, field: value})


def test_bad_inputs_and_uncovered_cases_raise():
  net = _net("tanh", "pre")
  with pytest.raises(ValueError, match="c_input"):
    meanfield.propagate(net, q_input=1.0, c_input=-0.5)           # below -1/(T - 1)
  with pytest.raises(ValueError, match="q_input"):
    meanfield.propagate(net, q_input=-1.0, c_input=0.0)
  with pytest.raises(ValueError, match="causal"):
    meanfield.propagate(net.replace(arch=net.arch.replace(causal=True)), q_input=1.0,
                        c_input=0.0)
  with pytest.raises(ValueError, match="`norm` must be 'post'"):
    meanfield.fixed_point(net)
  with pytest.raises(ValueError, match="`norm` must be 'post'"):
    meanfield.depth_scales(net.replace(arch=net.arch.replace(norm=None)))


def test_value_semantics():
  a = meanfield.Transformer(tokens=8, beta=1, heads=2)
  assert a == meanfield.Transformer(tokens=8, beta=1.0, heads=2) and hash(a) == hash(
      meanfield.Transformer(tokens=8, beta=1.0, heads=2))
  assert isinstance(a.beta, float) and a != a.replace(norm="post")


def test_pre_ln_collapse_is_a_power_law(x64):
  """ReLU, sigma_b2 = 0, sigma_w2 = 2, unit strengths: 1 - c ~ l^{-1/3} (docs/transformer.md)."""
  c = np.asarray(meanfield.propagate(_net("relu", "pre", sigma_w2=2.0, sigma_b2=0.0,
                                          depth=4000), q_input=1.0, c_input=0.2).c)
  local = [-np.log((1 - c[2 * a - 1]) / (1 - c[a - 1])) / np.log(2) for a in (100, 1000, 2000)]
  assert np.all(np.diff(local) < 0) and 1 / 3 < local[-1] < local[0] < 0.4


def test_post_ln_fixed_point_is_where_propagate_goes(x64):
  """From each c_input, c* is the limit of the block's iterates (uniform and softmax)."""
  for beta, sigma_w2, c_input in ((0.0, 4.0, 0.0), (3.0, 4.0, 0.9), (6.0, 2.0, -0.05)):
    net = _net("erf", "post", sigma_w2=sigma_w2, sigma_b2=0.05, depth=400, beta=beta,
               alpha_sa=0.3)
    fp = meanfield.fixed_point(net, c_input=c_input)
    c = meanfield.propagate(net, q_input=1.0, c_input=c_input).c
    np.testing.assert_allclose(fp.c_star, c[-1], atol=1e-8)
    assert float(fp.c_star) < 1 and float(fp.chi_c) < 1


def test_critical_inverse_temperature_of_each_block(x64):
  """beta_c = sqrt(2 / (q (q - p))) of each block's attention input (Pre-LN: LN'd, q = 1)."""
  for norm in ("pre", "post"):
    prop = meanfield.propagate(_net("relu", norm, depth=3, beta=2.0), q_input=1.5, c_input=0.2)
    q = np.concatenate([[1.5], np.asarray(prop.q)[:-1]])
    p = np.concatenate([[0.3], np.asarray(prop.extra["p"])[:-1]])
    q_in, p_in = (np.ones(3), p / q) if norm == "pre" else (q, p)
    np.testing.assert_allclose(prop.extra["beta_c"], np.sqrt(2 / (q_in * (q_in - p_in))),
                               rtol=1e-12)
