"""Finite-width moments: closed forms, independent quadrature and Monte Carlo over networks.

The Monte Carlo networks are built here (a vmapped, scanned forward of one
input with its tangent), independently of ``meanfield`` and of
``empirical``: ``h^1 = x W^1 + b^1``, ``h^l = phi(h^{l-1}) W^l + b^l``,
``W_ij ~ N(0, sigma_w2 / N)``, ``t^l = (phi'(h^{l-1}) t^{l-1}) W^l``.

Tolerances: a sample variance of ``n`` draws with kurtosis ``k`` has
relative standard deviation ``sqrt((k - 1) / n)`` (``sqrt(2 / n)`` for a
Gaussian); we use the measured ``k`` and allow 4 standard deviations.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats

import meanfield
from meanfield.finite_width import batch_average, finite_width_quantiles


@functools.partial(jax.jit, static_argnames=("act", "width", "depth", "n_seeds"))
def _simulate(key, act, width, depth, n_seeds, q_input, sigma_w2, sigma_b2):
  """``(q^l, |J^l u|^2)``, each ``(n_seeds, depth)``; ``|x|^2 / N = q_input``, unit ``u _|_ x``."""
  phi = meanfield.activation(act)
  x = jnp.zeros(width).at[0].set(jnp.sqrt(q_input * width))
  u = jnp.zeros(width).at[1].set(1.0)

  def one(k):
    def layer(carry, l):
      h, t = carry
      kw, kb = jax.random.split(jax.random.fold_in(k, l))
      w = jax.random.normal(kw, (width, width)) * jnp.sqrt(sigma_w2 / width)
      b = jax.random.normal(kb, (width,)) * jnp.sqrt(sigma_b2)
      a, da = jnp.where(l == 0, h, phi.fn(h)), jnp.where(l == 0, t, phi.derivative(h) * t)
      h, t = a @ w + b, da @ w
      return (h, t), (jnp.mean(h * h), jnp.sum(t * t))

    _, out = jax.lax.scan(layer, (x, u), jnp.arange(depth))
    return out

  return jax.vmap(one)(jax.random.split(key, n_seeds))


def _var_and_error(samples):
  """Sample variance over axis 0 and its standard error from the measured kurtosis."""
  s = np.asarray(samples, np.float64)
  n = s.shape[0]
  var = s.var(0, ddof=1)
  kurt = np.mean((s - s.mean(0)) ** 4, 0) / s.var(0) ** 2
  return var, var * np.sqrt((kurt - 1) / n)


# --- closed forms and independent quadrature ----------------------------------------------


@pytest.mark.parametrize("width", [8, 64])
def test_linear_network_chi_square_products(x64, width):
  """Linear, no bias: ``q^l = q^1 sigma_w2^(l-1) prod chi^2_N / N`` exactly (product of chi-squares).

  Mean exact; ``Var / mean^2 = (1 + 2/N)^l - 1`` exactly; ``log`` cumulants
  are sums of ``psi(N/2) + log(2/N)``, ``psi_1(N/2)``, ``psi_2(N/2)``, ``psi_3(N/2)`` (scipy).
  """
  depth, sw, q_in = 6, 1.3, 0.7
  fw = meanfield.finite_width_q(q_input=q_in, depth=depth, width=width, sigma_w2=sw,
                                sigma_b2=0.0, activation="linear")
  ell = np.arange(1, depth + 1)
  mean = sw ** ell * q_in
  np.testing.assert_allclose(fw.mean, mean, rtol=1e-12)
  np.testing.assert_allclose(fw.var / mean ** 2, (1 + 2 / width) ** ell - 1, rtol=1e-10)
  log_factor = scipy.special.digamma(width / 2) + np.log(2 / width)
  np.testing.assert_allclose(fw.log_mean, np.log(mean) + ell * log_factor, rtol=1e-10)
  np.testing.assert_allclose(fw.log_var, ell * scipy.special.polygamma(1, width / 2), rtol=1e-10)
  np.testing.assert_allclose(fw.log_k3, ell * scipy.special.polygamma(2, width / 2), rtol=1e-10)
  np.testing.assert_allclose(fw.log_k4, ell * scipy.special.polygamma(3, width / 2), rtol=1e-10)


@pytest.mark.slow
def test_relu_exact_log_moments_and_hanin_nica(x64):
  """ReLU, no bias: ``log q^L`` is a sum of independent layer terms (binomial mixture of log chi^2).

  Checked against a scipy sum over ``K ~ Binomial(N, 1/2)``; at large width
  the variance is ``5 (L - 1)/N + 2/N`` (Hanin & Nica 2019: ``5 beta``) to
  ``O(L/N^2)``, and ``Var[q] / E[q]^2`` is ``(1 + 2/N)(1 + 5/N)^(L-1) - 1``.
  """
  width, depth, sw = 48, 10, 2.0
  fw = meanfield.finite_width_q(q_input=1.0, depth=depth, width=width, sigma_w2=sw,
                                sigma_b2=0.0, activation="relu")
  k = np.arange(1, width + 1)
  p = scipy.stats.binom.pmf(k, width, 0.5)
  p /= p.sum()
  a = scipy.special.digamma(k / 2) + np.log(2.0)
  hidden_mean = np.sum(p * a) - np.log(width) + np.log(sw)
  hidden_var = np.sum(p * (scipy.special.polygamma(1, k / 2) + a ** 2)) - np.sum(p * a) ** 2
  last = scipy.special.digamma(width / 2) + np.log(2 / width)
  ell = np.arange(depth)
  np.testing.assert_allclose(fw.log_mean, np.log(sw) + ell * hidden_mean + last, rtol=1e-10)
  np.testing.assert_allclose(fw.log_var, ell * hidden_var + scipy.special.polygamma(1, width / 2),
                             rtol=1e-10)
  exact = (1 + 2 / width) * (1 + 5 / width) ** ell - 1      # product of independent factors
  np.testing.assert_allclose(fw.var / fw.mean ** 2, exact, rtol=1e-10)
  np.testing.assert_allclose(fw.mean, fw.mean_field, rtol=1e-12)    # the length map is linear
  big = meanfield.finite_width_q(q_input=[[1.0], [3.0]], depth=depth, width=4096,
                                 sigma_w2=[sw, 1.0], sigma_b2=0.0, activation="relu")
  assert big.log_var.shape == (2, 2, depth)
  np.testing.assert_allclose(big.log_var, np.broadcast_to((5 * ell + 2) / 4096, (2, 2, depth)),
                             rtol=10 / 4096)


def test_one_and_two_steps_against_scipy_quadrature(x64):
  """tanh with bias: layer-2 variance and layer-3 mean shift from scipy integrals.

  ``Var[q^2] = (g2^2 + V2)(1 + 2/N) - g2^2``, ``V2 = sigma_w2^2 Var[phi(sqrt(g1) z)^2] / N``, and
  ``E[q^3] - g3 = f''(g2) V2 / 2``, ``V2 = sigma_w2^2 Var[phi^2] / N``, with
  ``f''`` by central differences of scipy's quad.
  """
  sw, sb, q_in, width = 2.0, 0.1, 0.8, 50
  fw = meanfield.finite_width_q(q_input=q_in, depth=3, width=width, sigma_w2=sw, sigma_b2=sb,
                                activation="tanh")
  expect = lambda f, g: scipy.integrate.quad(
      lambda z: f(np.sqrt(g) * z) * np.exp(-z * z / 2) / np.sqrt(2 * np.pi), -12, 12,
      epsabs=1e-14, epsrel=1e-13)[0]
  qmap = lambda g: sw * expect(lambda h: np.tanh(h) ** 2, g) + sb
  g1 = sw * q_in + sb
  g2 = qmap(g1)
  v2 = sw ** 2 * (expect(lambda h: np.tanh(h) ** 4, g1) - expect(lambda h: np.tanh(h) ** 2, g1) ** 2)
  v2 /= width
  # q^2 = G^2 chi^2_N / N with G^1 fixed: E[q^2] = g2, E[(q^2)^2] = (g2^2 + V2)(1 + 2/N) exactly
  np.testing.assert_allclose(fw.var[1], (g2 ** 2 + v2) * (1 + 2 / width) - g2 ** 2, rtol=1e-8)
  e = 1e-3
  f2 = (qmap(g2 + e) - 2 * qmap(g2) + qmap(g2 - e)) / e ** 2
  np.testing.assert_allclose(fw.mean[2] - fw.mean_field[2], f2 * v2 / 2, rtol=1e-5)
  np.testing.assert_allclose(fw.mean_field[2], qmap(g2), rtol=1e-10)


@pytest.mark.slow
def test_infinite_width_is_mean_field(x64):
  """``width=None``: the means are :func:`meanfield.propagate`'s and every variance is 0."""
  kw = dict(q_input=np.array([0.5, 1.5]), depth=7, sigma_w2=1.7, sigma_b2=0.05, activation="erf")
  fw = meanfield.finite_width_q(width=None, c_input=0.3, **kw)
  prop = meanfield.propagate(c_input=1.0, **kw)
  np.testing.assert_allclose(fw.mean, prop.q, rtol=1e-12)
  np.testing.assert_array_equal(fw.var, 0.0)
  np.testing.assert_array_equal(fw.log_var, 0.0)
  np.testing.assert_array_equal(fw.cov, 0.0)
  fj = meanfield.finite_width_jacobian(width=None, **kw)
  assert np.all(np.isnan(fj.cov))
  chi = np.concatenate([np.ones((2, 1)), np.cumprod(prop.chi_1[..., :-1], -1)], -1)
  np.testing.assert_allclose(fj.mean, kw["sigma_w2"] * chi, rtol=1e-10)
  quant = finite_width_quantiles(fw, (0.1, 0.5, 0.9))
  np.testing.assert_allclose(quant, np.broadcast_to(prop.q, (3, 2, 7)), rtol=1e-12)


def test_network_argument_dtype_and_validation():
  net = meanfield.Network(activation="relu", sigma_w2=2.0, sigma_b2=0.0, depth=4, width=16)
  a = meanfield.finite_width_q(net, q_input=1.0)
  b = meanfield.finite_width_q(q_input=1.0, depth=4, width=16, sigma_w2=2.0, sigma_b2=0.0,
                               activation="relu")
  np.testing.assert_array_equal(a.log_var, b.log_var)
  assert a.mean.dtype == jnp.float32 and a.mean.shape == (4,)
  with pytest.raises(ValueError, match="`width` must"):
    meanfield.finite_width_q(q_input=1.0, depth=4, width=0, sigma_w2=2.0, sigma_b2=0.0,
                             activation="relu")
  with pytest.raises(ValueError, match="`depth` must"):
    meanfield.finite_width_jacobian(q_input=1.0, depth=0, width=4, sigma_w2=2.0, sigma_b2=0.0,
                                    activation="relu")
  with pytest.raises(ValueError, match="`quantiles`"):
    finite_width_quantiles(a, (0.0, 0.5))
  with pytest.raises(ValueError, match="`n_inputs` must"):
    batch_average(a, 0)
  with pytest.raises(ValueError, match="c_input"):
    meanfield.finite_width_q(net, q_input=1.0, c_input=1.5)
  with pytest.raises(ValueError, match="residual"):
    meanfield.finite_width_q(net.replace(arch=net.arch.replace(residual=True)), q_input=1.0)


# --- Monte Carlo over networks ----------------------------------------------------------------


@pytest.mark.slow
def test_variance_of_q_across_networks_tanh():
  """tanh with bias, width 32, depth 4: measured ``Var[q^l]`` within 4 s.e. of the prediction.

  The neglected ``O(1/N^2)`` is a few per cent here (the slow test measures
  it); the sampling error of 1500 seeds is about 4% (kurtosis about 3-4).
  """
  sw, sb, width, depth, n = 2.0, 0.1, 32, 4, 1500
  q, _ = _simulate(jax.random.key(1), "tanh", width, depth, n, 1.0, sw, sb)
  var, err = _var_and_error(q)
  fw = meanfield.finite_width_q(q_input=1.0, depth=depth, width=width, sigma_w2=sw,
                                sigma_b2=sb, activation="tanh")
  np.testing.assert_array_less(np.abs(var - np.asarray(fw.var)), 4 * err)


@pytest.mark.slow
def test_relu_log_normal_at_beta_one():
  """ReLU (He, no bias), width 32, depth 32 (``beta = 1``): ``Var[log q^l]`` and the median.

  Infinite-width theory says ``q^l = 1``; at ``beta = 1`` the median is about
  ``exp(-5 beta / 2)`` of it. ``log q`` is near Gaussian: the sample
  variance's s.e. uses the measured kurtosis; the sample median's s.e. is
  ``sqrt(pi / 2) sd / sqrt(n)`` on the log scale.
  """
  width, depth, n = 32, 32, 600
  q, _ = _simulate(jax.random.key(2), "relu", width, depth, n, 1.0, 2.0, 0.0)
  logq = np.log(np.asarray(q, np.float64))
  var, err = _var_and_error(logq)
  fw = meanfield.finite_width_q(q_input=1.0, depth=depth, width=width, sigma_w2=2.0,
                                sigma_b2=0.0, activation="relu")
  np.testing.assert_array_less(np.abs(var - np.asarray(fw.log_var)), 4 * err)
  med = np.median(logq, 0)
  med_err = np.sqrt(np.pi / 2) * np.sqrt(np.asarray(fw.log_var) / n)
  predicted = np.log(np.asarray(finite_width_quantiles(fw, 0.5)[0], np.float64))
  np.testing.assert_array_less(np.abs(med - predicted), 4 * med_err)
  assert abs(med[-1] - 0.0) > 10 * med_err[-1]       # mean-field's median (q = 1) is far off


@pytest.mark.slow
@pytest.mark.parametrize("act, sw, sb", [("gelu", 1.0, 0.0), ("tanh", 2.0, 0.0)])
def test_one_over_width_scaling(act, sw, sb):
  """``N (E[.] - mean-field)`` and ``N Var[.]`` fitted as ``a + b / N`` over widths 16-128.

  The intercept ``a`` is the first-order coefficient; it must match the
  theory's ``N x`` (first-order) prediction within 4 standard errors of the
  weighted least-squares fit (errors from the seeds), for ``q^l`` and
  ``|J^l u|^2`` at every layer.
  """
  widths, depth, n = np.array([16, 32, 64, 128]), 5, 4000
  rows = {k: ([], []) for k in ("q_mean", "q_var", "j_mean", "j_var")}
  theory = {}
  for width in widths:
    q, j = _simulate(jax.random.key(int(width)), act, int(width), depth, n, 1.0, sw, sb)
    kw = dict(q_input=1.0, depth=depth, width=int(width), sigma_w2=sw, sigma_b2=sb,
              activation=act)
    for name, samples, fw in (("q", q, meanfield.finite_width_q(**kw)),
                              ("j", j, meanfield.finite_width_jacobian(**kw))):
      s = np.asarray(samples, np.float64)
      mf0 = np.asarray(fw.mean_field, np.float64)
      var, err = _var_and_error(s)
      rows[f"{name}_mean"][0].append(width * (s.mean(0) - mf0) / mf0)
      rows[f"{name}_mean"][1].append(width * s.std(0) / np.sqrt(n) / mf0)
      rows[f"{name}_var"][0].append(width * var / mf0 ** 2)
      rows[f"{name}_var"][1].append(width * err / mf0 ** 2)
  for name, f in (("q", meanfield.finite_width_q), ("j", meanfield.finite_width_jacobian)):
    big = 10 ** 7                                     # N x (.) at N -> infinity: first order
    with jax.enable_x64(True):
      fw = f(q_input=1.0, depth=depth, width=big, sigma_w2=sw, sigma_b2=sb, activation=act)
    mf0 = np.asarray(fw.mean_field, np.float64)
    theory[f"{name}_mean"] = big * (np.asarray(fw.mean, np.float64) - mf0) / mf0
    theory[f"{name}_var"] = big * np.asarray(fw.var, np.float64) / mf0 ** 2
  design = np.stack([np.ones(len(widths)), 1.0 / widths], -1)
  for key, (y, e) in rows.items():
    y, e = np.array(y), np.array(e)
    for layer in range(1, depth):
      w = 1 / e[:, layer] ** 2
      cov = np.linalg.inv(design.T @ (w[:, None] * design))
      a, _ = cov @ design.T @ (w * y[:, layer])
      assert abs(a - theory[key][layer]) < 4 * np.sqrt(cov[0, 0]) + 1e-12, (key, layer)


@functools.partial(jax.jit, static_argnames=("width", "depth", "n_seeds"))
def _simulate_pair(key, width, depth, n_seeds, c_input, sigma_w2, sigma_b2):
  """``q^l`` of two inputs (length 1, cosine ``c_input``) through tanh networks: ``(n_seeds, depth, 2)``."""
  x = jnp.zeros((2, width)).at[0, 0].set(1.0).at[1, 0].set(c_input)
  x = x.at[1, 1].set(jnp.sqrt(1 - c_input ** 2)) * jnp.sqrt(width)

  def one(k):
    def layer(h, l):
      kw, kb = jax.random.split(jax.random.fold_in(k, l))
      w = jax.random.normal(kw, (width, width)) * jnp.sqrt(sigma_w2 / width)
      b = jax.random.normal(kb, (width,)) * jnp.sqrt(sigma_b2)
      h = jnp.where(l == 0, h, jnp.tanh(h)) @ w + b[None]
      return h, jnp.mean(h * h, axis=1)

    return jax.lax.scan(layer, x, jnp.arange(depth))[1]

  return jax.vmap(one)(jax.random.split(key, n_seeds))


@pytest.mark.slow
@pytest.mark.parametrize("c_input", [0.0, 0.8])
def test_covariance_of_two_inputs_and_batch_average(c_input):
  """Two inputs sharing the weights: ``Cov[q_a^l, q_b^l]`` within 4 s.e. of the prediction,
  and the variance of their average (:func:`meanfield.finite_width.batch_average`).

  s.e. of a sample covariance of ``n`` near-Gaussian pairs:
  ``sqrt((Var_a Var_b + Cov^2) / n)``; of the sample variance of the average:
  from its measured kurtosis.
  """
  sw, sb, width, depth, n = 2.0, 0.1, 32, 4, 1500
  q = np.asarray(_simulate_pair(jax.random.key(5), width, depth, n, c_input, sw, sb), np.float64)
  fw = meanfield.finite_width_q(q_input=1.0, depth=depth, width=width, sigma_w2=sw,
                                sigma_b2=sb, activation="tanh", c_input=c_input)
  a, b = q[..., 0], q[..., 1]
  cov = np.mean((a - a.mean(0)) * (b - b.mean(0)), 0) * n / (n - 1)
  err = np.sqrt((a.var(0) * b.var(0) + cov ** 2) / n)
  np.testing.assert_array_less(np.abs(cov - np.asarray(fw.cov)), 4 * err)
  var, var_err = _var_and_error(q.mean(-1))
  avg = batch_average(fw, 2)
  np.testing.assert_array_less(np.abs(var - np.asarray(avg.var)), 4 * var_err)


@pytest.mark.slow
def test_zero_input_without_biases(x64):
  # q_input = 0, sigma_b2 = 0: h = 0 at every layer where phi(0) = 0, so q = 0 exactly
  # (log q = -inf, a point mass); with phi(0) != 0 the second layer restarts at
  # sigma_w2 phi(0)^2, the limit of small inputs.
  for name in ("relu", "tanh", "linear"):
    fw = meanfield.finite_width_q(q_input=0.0, depth=4, width=64, sigma_w2=1.5, sigma_b2=0.0,
                                  activation=name, c_input=0.5)
    for field in ("mean", "var", "mean_field", "cov", "log_var"):
      np.testing.assert_array_equal(getattr(fw, field), 0.0, err_msg=f"{name} {field}")
    np.testing.assert_array_equal(fw.log_mean, -np.inf)
  kw = dict(depth=4, width=64, sigma_w2=1.5, sigma_b2=0.0, activation="sigmoid")
  zero = meanfield.finite_width_q(q_input=0.0, c_input=0.5, **kw)
  small = meanfield.finite_width_q(q_input=1e-10, c_input=0.5, **kw)
  for field in ("mean", "var", "cov", "mean_field"):      # they differ by O(sigma_w2 q_input)
    np.testing.assert_allclose(getattr(zero, field), getattr(small, field), rtol=1e-8, atol=1e-9)
  jac = meanfield.finite_width_jacobian(q_input=0.0, depth=3, width=64, sigma_w2=2.0,
                                        sigma_b2=0.0, activation="relu")
  assert np.all(np.isfinite(jac.mean)) and np.all(np.isfinite(jac.var))


@pytest.mark.slow
def test_huge_width_in_small_memory(x64):
  # width 1e9 (the N -> infinity check): the exact ReLU log moments sum over the binomial's
  # mass only, and agree with infinite width to O(depth / N)
  import tracemalloc
  tracemalloc.start()
  fw = meanfield.finite_width_q(q_input=1.0, depth=5, width=10 ** 9, sigma_w2=2.0,
                                sigma_b2=0.0, activation="relu")
  peak = tracemalloc.get_traced_memory()[1]
  tracemalloc.stop()
  assert peak < 200 * 2 ** 20
  np.testing.assert_allclose(fw.log_mean, np.log(np.asarray(fw.mean_field)), atol=50 / 10 ** 9)
  assert np.all(fw.log_var < 50 / 10 ** 9)
