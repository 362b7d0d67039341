"""critical_init: points on chi_1 = 1 against independent scipy quadrature; initialisers by sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.optimize
import scipy.special

import meanfield
from meanfield.initialise import bias_initializer, kernel_initializer


def _gauss(f, q):
  """E[f(sqrt(q) z)] by adaptive scipy quadrature (independent of meanfield's rules)."""
  s = np.sqrt(q)
  return scipy.integrate.quad(lambda z: f(s * z) * np.exp(-z * z / 2) / np.sqrt(2 * np.pi),
                              -np.inf, np.inf, epsabs=1e-14, epsrel=1e-13, limit=200)[0]


PHI = {"erf": (scipy.special.erf, lambda h: 2 / np.sqrt(np.pi) * np.exp(-h * h)),
       "tanh": (np.tanh, lambda h: 4 * np.exp(-2 * abs(h)) / (1 + np.exp(-2 * abs(h))) ** 2)}


def _reference_point(name, sigma_b2):
  """(sigma_w2, q*) with chi_1 = 1 by scipy: solve sigma_b2 = q - E[phi^2] / E[phi'^2] for q."""
  phi, dphi = PHI[name]
  bias = lambda q: q - _gauss(lambda h: phi(h) ** 2, q) / _gauss(lambda h: dphi(h) ** 2, q)
  q = scipy.optimize.brentq(lambda q: bias(q) - sigma_b2, 1e-9, 50, xtol=1e-15, rtol=1e-14)
  return 1 / _gauss(lambda h: dphi(h) ** 2, q), q


@pytest.mark.slow
@pytest.mark.parametrize("name", ["erf", "tanh"])
def test_bias_variance_point_is_critical(x64, name):
  ci = meanfield.critical_init(name, sigma_b2=0.05, depth=12)
  sigma_w2, q = _reference_point(name, 0.05)
  np.testing.assert_allclose([ci.sigma_w2, ci.q_star], [sigma_w2, q], rtol=1e-9)
  phi, dphi = PHI[name]
  chi = ci.sigma_w2 * _gauss(lambda h: dphi(h) ** 2, ci.q_star)
  np.testing.assert_allclose(chi, 1, rtol=1e-9)
  np.testing.assert_allclose(ci.chi_1, 1, rtol=1e-9)
  # q* is a fixed point of the q-map (scipy)
  np.testing.assert_allclose(ci.sigma_w2 * _gauss(lambda h: phi(h) ** 2, ci.q_star) + 0.05,
                             ci.q_star, rtol=1e-9)
  assert ci.xi_c == np.inf and 0 < ci.xi_q < np.inf
  # Jacobian mean chi_1^L = 1 and Gaussian variance L mu_2 / mu_1^2 (Pennington et al. 2017)
  mu1 = _gauss(lambda h: dphi(h) ** 2, ci.q_star)
  mu2 = _gauss(lambda h: dphi(h) ** 4, ci.q_star)
  np.testing.assert_allclose(ci.jacobian_mean, 1, rtol=1e-8)
  np.testing.assert_allclose(ci.jacobian_variance, 12 * mu2 / mu1 ** 2, rtol=1e-8)
  net = ci.network(width=64)
  assert (net.sigma_w2, net.sigma_b2, net.depth, net.width, net.init) == (
      ci.sigma_w2, 0.05, 12, 64, "gaussian")
  np.testing.assert_allclose(meanfield.chi_1(net), 1, rtol=1e-9)
  again = meanfield.critical_init(network=net.replace(sigma_w2=1.0))
  assert (again.sigma_w2, again.sigma_b2, again.depth) == (ci.sigma_w2, 0.05, 12)


@pytest.mark.slow
def test_orthogonal_choice_is_the_least_spread_point(x64):
  # erf: phi'^2 = (4/pi) exp(-2 h^2) flattens as q -> 0, so the per-layer relative variance
  # mu_2/mu_1^2 - 1 = (1 + 4q) / sqrt(1 + 8q) - 1 grows with q: the choice is q* = q_min.
  dphi = PHI["erf"][1]
  spread = lambda q: (_gauss(lambda h: dphi(h) ** 4, q) / _gauss(lambda h: dphi(h) ** 2, q) ** 2
                      - 1)
  grid = np.geomspace(0.1, 1.0, 7)
  assert np.all(np.diff([spread(q) for q in grid]) > 0)
  ci = meanfield.critical_init("erf", init="orthogonal", q_min=0.1, q_max=1.0, depth=20)
  np.testing.assert_allclose(ci.q_star, 0.1, rtol=1e-9)
  np.testing.assert_allclose(ci.sigma_w2 * _gauss(lambda h: dphi(h) ** 2, ci.q_star), 1, rtol=1e-9)
  np.testing.assert_allclose(ci.jacobian_variance, 20 * spread(0.1), rtol=1e-8)
  assert ci.init == "orthogonal" and ci.sigma_b2 > 0
  # without a lower bound the least-spread point is the linear limit (sigma_w2, sigma_b2) = (pi/4, 0)
  linear = meanfield.critical_init("erf", init="orthogonal", q_max=1.0)
  np.testing.assert_allclose([linear.sigma_w2, linear.sigma_b2, linear.q_star],
                             [np.pi / 4, 0, 0], atol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("init", ["gaussian", "orthogonal"])
@pytest.mark.parametrize("shape", [(256, 512), (512, 256)])
def test_kernel_variance_is_sigma_w2_over_fan_in(init, shape):
  sigma_w2 = 1.7
  w = kernel_initializer(sigma_w2, init)(jax.random.key(0), shape, jnp.float32)
  assert w.shape == shape and w.dtype == jnp.float32
  n = w.size
  # the mean of n squares of N(0, v) entries has relative sd sqrt(2/n) (orthogonal: smaller)
  np.testing.assert_allclose(np.mean(np.square(w)) * shape[0], sigma_w2,
                             rtol=5 * np.sqrt(2 / n))


def test_orthogonal_kernels_are_scaled_isometries():
  sigma_w2 = 1.3
  w = np.asarray(kernel_initializer(sigma_w2, "orthogonal")(jax.random.key(1), (128, 128),
                                                            jnp.float32))
  np.testing.assert_allclose(w.T @ w, sigma_w2 * np.eye(128), atol=1e-5)
  conv = np.asarray(kernel_initializer(sigma_w2, "orthogonal")(jax.random.key(2), (3, 3, 16, 32),
                                                               jnp.float32))
  centre = conv[1, 1]
  np.testing.assert_allclose(np.delete(conv.reshape(9, 16, 32), 4, axis=0), 0)
  # rows orthonormal, scaled so that E[W_ij^2] = sigma_w2 / in_channels
  np.testing.assert_allclose(centre @ centre.T, sigma_w2 * 32 / 16 * np.eye(16), atol=1e-5)


def test_bias_initializer():
  b = bias_initializer(0.05)(jax.random.key(3), (20000,), jnp.float32)
  np.testing.assert_allclose(np.var(b), 0.05, rtol=5 * np.sqrt(2 / 20000))
  assert not np.any(bias_initializer(0.0)(jax.random.key(3), (10,), jnp.float32))


@pytest.mark.slow
def test_validation():
  with pytest.raises(ValueError, match=r"sigma_b2.*relu.*infinite"):
    meanfield.critical_init("relu", sigma_b2=0.1)
  with pytest.raises(ValueError, match="exactly one of `sigma_b2`"):
    meanfield.critical_init("tanh")
  with pytest.raises(ValueError, match="exactly one of `sigma_b2`"):
    meanfield.critical_init("tanh", sigma_b2=0.1, q_max=1.0)
  with pytest.raises(ValueError, match="`q_max` must be >"):
    meanfield.critical_init("tanh", init="orthogonal", q_min=1.0, q_max=0.5)
  with pytest.raises(ValueError, match="`sigma_b2` must be >= 0"):
    meanfield.critical_init("tanh", sigma_b2=-1.0)
  with pytest.raises(ValueError, match="`init`"):
    meanfield.critical_init("tanh", sigma_b2=0.1, init="uniform")
  with pytest.raises(ValueError, match="`activation`"):
    meanfield.critical_init("nope", sigma_b2=0.1)
  with pytest.raises(ValueError, match="`depth`"):
    meanfield.critical_init("tanh", sigma_b2=0.1, depth=0)
  relu = meanfield.critical_init("relu", sigma_b2=0.0)
  assert (relu.sigma_w2, relu.chi_1) == (2.0, 1.0)


@pytest.mark.slow
def test_unstable_points_of_the_line_are_refused(x64):
  # GELU: at small q the critical line passes through unstable fixed points of the q-map
  # (slope > 1), where the network's length runs to another q* with chi_1 != 1
  with pytest.raises(ValueError, match="unstable fixed point"):
    meanfield.critical_init("gelu", sigma_b2=1e-4)
  ci = meanfield.critical_init("gelu", init="orthogonal", q_min=0.01, q_max=4.0)
  gelu_slope = lambda h: scipy.special.ndtr(h) + h * np.exp(-h * h / 2) / np.sqrt(2 * np.pi)
  np.testing.assert_allclose(ci.sigma_w2 * _gauss(lambda h: gelu_slope(h) ** 2, ci.q_star), 1,
                             rtol=1e-8)
  # a callable activation (no registry entry) works the same way
  sin = meanfield.critical_init(jnp.sin, sigma_b2=0.05)
  np.testing.assert_allclose(sin.sigma_w2 * _gauss(lambda h: np.cos(h) ** 2, sin.q_star), 1,
                             rtol=1e-8)


@pytest.mark.slow
def test_lengths_fixed_to_rounding_give_their_limit(x64):
  # hard_tanh at (1, 0): E[clip(sqrt(q) z)^2] < q at every q > 0, so q* = 0, though every
  # q below about 0.02 is fixed to rounding; leaky ReLU at sigma_b2 = 0: the q-map is the
  # identity, q* = 0 as for ReLU at the He point.
  for name, sigma_w2 in (("hard_tanh", 1.0), ("leaky_relu", 2 / (1 + 0.01 ** 2))):
    ci = meanfield.critical_init(name, sigma_b2=0.0)
    assert ci.q_star == 0.0, name
    np.testing.assert_allclose(ci.sigma_w2, sigma_w2, rtol=1e-12)
    np.testing.assert_allclose(ci.chi_1, 1.0, rtol=1e-12)
    assert ci.xi_q == np.inf


# --- transformers: the residual strength that keeps the tokens apart -------------------

def _post_ln_relu_c(alpha, tokens, depth, c):
  """Post-LN blocks of uniform attention and a ReLU MLP (sigma_w2 = 2, no biases), in NumPy:
  the token correlation after ``depth`` blocks (docs/transformer.md; the arc-cosine kernel
  E[relu(u) relu(v)] = q (sin t + (pi - t) cos t) / (2 pi), Cho & Saul 2009)."""
  a2 = alpha ** 2
  for _ in range(depth):
    gap = 1 - c                               # q = 1 after each LayerNorm
    q = 1 + a2 * (c + gap / tokens)           # attention: the token mean, gap untouched
    gap /= q
    theta = np.arccos(np.clip(1 - gap, -1, 1))
    p_b = 2 * 2 * (np.sin(theta) + (np.pi - theta) * np.cos(theta)) / (2 * np.pi)
    q_b = 2.0                                  # sigma_w2 E[relu(u)^2] at q_h = 2
    gap = (gap + a2 * (q_b - p_b)) / (1 + a2 * q_b)
    c = 1 - gap
  return c


def test_critical_init_of_a_transformer_keeps_the_tokens_apart():
  arch = meanfield.Transformer(tokens=16, norm="post")
  with jax.enable_x64(True):
    ci = meanfield.critical_init("relu", sigma_b2=0.0, depth=12, arch=arch, c_max=0.9)
    again = meanfield.critical_init(network=meanfield.Network(
        activation="relu", sigma_w2=1.0, sigma_b2=0.0, depth=12, arch=arch), c_max=0.9)
  assert ci.sigma_w2 == pytest.approx(2.0, rel=1e-12)     # the MLP at its own critical point
  alpha = ci.arch.alpha_sa
  assert ci.arch.alpha_mlp == alpha and ci.extra["strength"] == alpha
  assert again.arch == ci.arch
  # the answer does what it says, by an independent NumPy iteration of the block map ...
  assert _post_ln_relu_c(alpha, 16, 12, 0.0) == pytest.approx(0.9, abs=1e-8)
  assert ci.extra["c"] == pytest.approx(0.9, abs=1e-8)
  # ... and it is the largest such strength: unit strengths collapse the tokens
  assert _post_ln_relu_c(1.0, 16, 12, 0.0) > 0.99 and ci.extra["c_given"] > 0.99
  assert _post_ln_relu_c(alpha * 1.01, 16, 12, 0.0) > 0.9
  # strengths already small enough are kept
  with jax.enable_x64(True):
    kept = meanfield.critical_init("relu", sigma_b2=0.0, depth=2, arch=arch, c_max=0.9)
  assert kept.arch == arch and kept.extra["strength"] == 1.0
  with pytest.raises(ValueError, match="`depth` must be given"):
    meanfield.critical_init("relu", sigma_b2=0.0, arch=arch)
  with pytest.raises(ValueError, match="`c_max` must be in"):
    meanfield.critical_init("relu", sigma_b2=0.0, depth=4, arch=arch, c_max=0.5, c_input=0.6)
  with pytest.raises(ValueError, match="`arch` must be"):
    meanfield.critical_init("relu", sigma_b2=0.0, depth=4, arch=meanfield.Conv(kernel_size=3))
  with pytest.raises(ValueError, match="`causal`"):
    meanfield.critical_init("relu", sigma_b2=0.0, depth=4, arch=arch.replace(causal=True))
