"""Theory of circular CNNs (meanfield.conv) against closed forms, Monte Carlo and iteration."""

import jax
import numpy as np
import pytest

import meanfield
from meanfield import conv


def test_published_critical_point_of_xiao_et_al(x64):
  # Xiao et al. 2018 train 10,000-layer tanh CNNs at (sigma_w2, sigma_b2) = (1.05, 2.01e-5):
  # q* about 0.0259 (published to 3 figures: tolerance half a unit in the last) and
  # chi_1 = 1 to 1e-6.
  q = float(meanfield.q_star(sigma_w2=1.05, sigma_b2=2.01e-5, activation="tanh"))
  chi = float(meanfield.chi_1(sigma_w2=1.05, sigma_b2=2.01e-5, activation="tanh"))
  assert abs(q - 0.0259) <= 0.00005
  assert abs(chi - 1) <= 1e-6


@pytest.mark.parametrize("k, n", [(3, 8), (5, 12), (1, 5), (7, 7)])
def test_uniform_eigenvalues_are_the_dirichlet_kernel(k, n):
  lam = conv.mode_eigenvalues(kernel_size=k, spatial_size=n)
  f = np.arange(1, n)
  np.testing.assert_allclose(lam[1:], np.sin(np.pi * f * k / n) / (k * np.sin(np.pi * f / n)),
                             atol=1e-13)
  assert lam[0] == pytest.approx(1.0)
  np.testing.assert_allclose(conv.mode_eigenvalues(kernel_size=k, spatial_size=n,
                                                   footprint="delta"), 1.0)


def test_covariance_map_against_monte_carlo(x64):
  # One layer of the map, K by sampling u ~ N(0, Sigma): tanh goes through 2-D quadrature
  # with unequal variances. Each entry of the MC mean has standard error s / sqrt(M); we allow
  # 5 standard errors (64 entries; a 5-sigma excursion has probability about 4e-5 in total).
  n, m = 4, 200_000
  a = np.random.default_rng(0).normal(size=(n, 3))
  sigma = a @ a.T / 3 + 0.1 * np.eye(n)
  out = np.asarray(meanfield.Conv(kernel_size=3).covariance_map(sigma, sigma_w2=1.7,
                                                                 sigma_b2=0.2, activation="tanh"))
  u = np.random.default_rng(1).multivariate_normal(np.zeros(n), sigma, size=m)
  prod = np.tanh(u)[:, :, None] * np.tanh(u)[:, None, :]
  k_mc, k_se = prod.mean(0), prod.std(0) / np.sqrt(m)
  avg = lambda k_: sum(np.roll(k_, (-b, -b), axis=(0, 1)) for b in (-1, 0, 1)) / 3
  expected = 1.7 * avg(k_mc) + 0.2
  # the standard error of an average of correlated entries is at most the average of theirs
  assert out.shape == (n, n)
  assert np.all(np.abs(out - expected) <= 5 * 1.7 * avg(k_se))


@pytest.mark.slow
def test_delta_footprint_is_the_mlp_per_pair(x64):
  # With a delta footprint no positions mix: each pair follows the MLP's (q, c) maps.
  rng = np.random.default_rng(2)
  x = rng.normal(size=(5, 3))
  x /= np.linalg.norm(x, axis=1, keepdims=True) / np.sqrt(3)    # equal lengths q_input = 1
  cov = x @ x.T / 3
  got = meanfield.propagate(covariance=cov, depth=6, sigma_w2=1.4, sigma_b2=0.1,
                            activation="erf", arch=meanfield.Conv(kernel_size=3, footprint="delta"))
  mlp = meanfield.propagate(q_input=1.0, c_input=np.clip(cov[0, 1:], -1, 1), depth=6,
                            sigma_w2=1.4, sigma_b2=0.1, activation="erf")
  np.testing.assert_allclose(np.asarray(got.c)[:, 0, 1:], np.asarray(mlp.c).T, rtol=1e-10)
  np.testing.assert_allclose(np.asarray(got.q)[:, 0], np.asarray(mlp.q)[0], rtol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("activation, sigma_w2, sigma_b2", [("erf", 1.2, 0.1),    # ordered
                                                            ("erf", 3.0, 0.05)])  # chaotic
def test_mode_slopes_against_iterating_the_full_map(x64, activation, sigma_w2, sigma_b2):
  # A small perturbation of the fixed point in mode f (off-diagonal, or on the diagonal)
  # shrinks by slope_c[f] (slope_q[f]) per layer: the linearisation of docs/conv.md. The
  # perturbation is 1e-6 of q*, so second-order terms are ~1e-6 relative.
  n, k = 8, 3
  arch = meanfield.Conv(kernel_size=k, spatial_size=n)
  fp = meanfield.fixed_point(sigma_w2=sigma_w2, sigma_b2=sigma_b2, activation=activation,
                             arch=arch)
  ds = meanfield.depth_scales(sigma_w2=sigma_w2, sigma_b2=sigma_b2, activation=activation,
                              arch=arch)
  star = np.asarray(fp.extra["covariance"])
  a = np.arange(n)
  for f in (0, 1, 3):
    wave = np.cos(2 * np.pi * f * a / n)
    eps = 1e-6 * float(fp.q_star)
    for lag, pert, slope in ((1, eps * (wave[:, None] + wave[None, :]) / 2 * (1 - np.eye(n)),
                              ds.extra["slope_c"][f]),
                             (0, eps * np.diag(wave), ds.extra["slope_q"][f])):
      before = star + pert
      after = np.asarray(arch.covariance_map(before, sigma_w2=sigma_w2, sigma_b2=sigma_b2,
                                             activation=activation))
      m0 = np.asarray(conv.spatial_modes(before - star))[f, lag]
      m1 = np.asarray(conv.spatial_modes(after - star))[f, lag]
      assert m1.real / m0.real == pytest.approx(float(slope), rel=1e-4, abs=1e-9)


@pytest.mark.slow   # phase_diagram compiles its solvers: about 30 s on a loaded 2-core CPU
def test_phase_diagram_modes_match_depth_scales(x64):
  sw, sb = np.array([0.8, 1.5, 3.0]), np.array([0.05, 0.3])
  arch = meanfield.Conv(kernel_size=3, spatial_size=6)
  ds = meanfield.phase_diagram(sigma_w2=sw, sigma_b2=sb, activation="erf", arch=arch)
  np.testing.assert_allclose(ds.xi_c_mode.values[..., 0], ds.xi_c.values, rtol=1e-10)
  direct = meanfield.depth_scales(sigma_w2=sw[:, None], sigma_b2=sb[None, :], activation="erf",
                                  arch=arch)
  np.testing.assert_allclose(ds.xi_c_mode.values, np.asarray(direct.xi_c), rtol=1e-8)
  np.testing.assert_allclose(ds.xi_q_mode.values, np.asarray(direct.xi_q), rtol=1e-8)
  # modes with |lambda_f| < 1 have finite depth scales even where xi_c is long
  assert np.all(ds.xi_c_mode.values[..., 1:] < ds.xi_c.values[..., None] + 1e-12)


@pytest.mark.slow
def test_depth_scales_of_a_network_and_their_broadcast(x64):
  # xi_c of mode f is -1/log|chi_c lambda_f|; mode 0 is the MLP's xi_c
  net = meanfield.Network(activation="erf", sigma_w2=1.5, sigma_b2=0.1)
  a = meanfield.depth_scales(net.replace(arch=meanfield.Conv(kernel_size=3, spatial_size=4)))
  mlp = meanfield.depth_scales(net)
  assert float(a.xi_c[0]) == pytest.approx(float(mlp.xi_c), rel=1e-10)
  lam = conv.mode_eigenvalues(kernel_size=3, spatial_size=4)
  chi = float(meanfield.fixed_point(net).chi_c)
  np.testing.assert_allclose(np.asarray(a.xi_c), -1 / np.log(np.abs(chi * lam)), rtol=1e-10)
  fp = meanfield.fixed_point(sigma_w2=np.array([1.5, 1.2]), sigma_b2=0.1, activation="erf",
                             arch=meanfield.Conv(kernel_size=3, spatial_size=3))
  assert fp.extra["covariance"].shape == (2, 3, 3)


def test_validation():
  net = meanfield.Network(activation="erf", sigma_w2=1.5, sigma_b2=0.1)
  with pytest.raises(ValueError, match="kernel_size"):
    conv.footprint_weights(kernel_size=4)
  with pytest.raises(ValueError, match="footprint"):
    conv.footprint_weights(kernel_size=3, footprint="wide")
  with pytest.raises(ValueError, match="footprint"):
    conv.footprint_weights(kernel_size=3, footprint=[0.5, 0.5, 0.0])
  with pytest.raises(ValueError, match="kernel_size"):
    meanfield.Conv(kernel_size=4)
  with pytest.raises(ValueError, match="footprint"):
    meanfield.Conv(kernel_size=3, footprint="wide")
  with pytest.raises(ValueError, match="spatial_size"):
    meanfield.Conv(kernel_size=3, spatial_size=0)
  arch = meanfield.Conv(kernel_size=3)
  with pytest.raises(ValueError, match="covariance"):
    meanfield.propagate(covariance=np.ones((2, 3)), depth=2, sigma_w2=1.0, sigma_b2=0.0,
                        activation="tanh", arch=arch)
  with pytest.raises(ValueError, match="depth"):
    meanfield.propagate(covariance=np.eye(3), depth=0, sigma_w2=1.0, sigma_b2=0.0,
                        activation="tanh", arch=arch)
  with pytest.raises(ValueError, match=r"`arch` must be meanfield.MLP\(...\) .* got 'conv'"):
    net.replace(arch="conv")
  with pytest.raises(ValueError, match=r"`covariance` must be \(4, 4\)"):
    meanfield.propagate(covariance=np.eye(3), depth=2, sigma_w2=1.0, sigma_b2=0.0,
                        activation="tanh", arch=meanfield.Conv(kernel_size=3, spatial_size=4))
  with pytest.raises(ValueError, match="`spatial_size` of Conv must be given for `depth_scales`"):
    meanfield.depth_scales(net.replace(arch=arch))


# tanh (the NaN of the issue) and erf (always finite) by default; ReLU and GELU compile
# their own programs (about 20 s each): slow tier.
@pytest.mark.slow
@pytest.mark.parametrize("activation", ["tanh", pytest.param("relu", marks=pytest.mark.slow),
                                        pytest.param("gelu", marks=pytest.mark.slow), "erf"])
def test_gradients_of_propagate_match_finite_differences(x64, activation):
  # jax.grad in sigma_w2, sigma_b2 and the input covariance against central differences with
  # step h = 1e-5: truncation h^2 f''' / 6 ~ 1e-11 and rounding eps |f| / h ~ 1e-11, so
  # 1e-7 relative leaves a wide margin. The diagonal of K sits at correlation 1.
  import jax.numpy as jnp
  rng = np.random.default_rng(4)
  x, d = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
  r = rng.normal(size=(5, 5))
  cov_at = lambda t: (x + t * d) @ (x + t * d).T / 3      # stays positive semi-definite

  def f(w, b, t):
    p = meanfield.propagate(covariance=cov_at(t), depth=3, sigma_w2=w, sigma_b2=b,
                            activation=activation, arch=meanfield.Conv(kernel_size=3))
    return jnp.sum(r * p.c[-1]) + jnp.sum(r * p.extra["covariance"][-1])

  grads = jax.grad(f, argnums=(0, 1, 2))(1.5, 0.1, 0.0)
  assert np.all(np.isfinite(grads))
  h = 1e-5
  for i, g in enumerate(grads):
    at = [1.5, 0.1, 0.0]
    up, down = list(at), list(at)
    up[i] += h
    down[i] -= h
    fd = (float(f(*up)) - float(f(*down))) / (2 * h)
    assert float(g) == pytest.approx(fd, rel=1e-7, abs=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["tanh", "relu", pytest.param("gelu", marks=pytest.mark.slow),
                                        "erf"])
def test_map_derivative_at_the_ordered_fixed_point(x64, activation):
  # At an ordered fixed point (c* = 1) every pair of positions is perfectly correlated.
  # Directional derivatives of the map there, against differences: along the rank-one curve
  # q* (1 + h u)(1 + h u)^T (central, h = 1e-5: error ~1e-10), and along Sigma* + h I, which
  # lowers the correlations (one-sided, second order). K is smooth in c at c = 1 except for
  # ReLU's (1 - c)^(3/2) term, whose error in the one-sided formula is 0.59 sqrt(h/q*) relative
  # to that term: h = 1e-10 q* gives ~6e-6, and rounding eps/h ~ 2e-6; 1e-4 covers both.
  import jax.numpy as jnp
  n, sw, sb = 4, 1.2, 0.1
  arch = meanfield.Conv(kernel_size=3, spatial_size=n)
  fp = meanfield.fixed_point(sigma_w2=sw, sigma_b2=sb, activation=activation, arch=arch)
  assert float(fp.c_star) == 1
  q, star = float(fp.q_star), np.asarray(fp.extra["covariance"])
  m = lambda s: np.asarray(arch.covariance_map(s, sigma_w2=sw, sigma_b2=sb,
                                               activation=activation))
  u = np.random.default_rng(5).normal(size=n)
  one = np.ones(n)
  _, along = jax.jvp(lambda s: arch.covariance_map(
      s, sigma_w2=sw, sigma_b2=sb, activation=activation),
      (jnp.asarray(star),), (jnp.asarray(q * (np.outer(u, one) + np.outer(one, u))),))
  h = 1e-5
  curve = lambda t: q * np.outer(one + t * u, one + t * u)
  fd = (m(curve(h)) - m(curve(-h))) / (2 * h)
  assert np.all(np.isfinite(np.asarray(along)))
  np.testing.assert_allclose(np.asarray(along), fd, rtol=1e-7, atol=1e-9)
  _, diag = jax.jvp(lambda s: arch.covariance_map(
      s, sigma_w2=sw, sigma_b2=sb, activation=activation),
      (jnp.asarray(star),), (jnp.eye(n),))
  smooth = activation != "relu"
  h, tol = (1e-5 * q, 1e-7) if smooth else (1e-10 * q, 1e-4)
  fd = (-3 * m(star) + 4 * m(star + h * np.eye(n)) - m(star + 2 * h * np.eye(n))) / (2 * h)
  assert np.all(np.isfinite(np.asarray(diag)))
  np.testing.assert_allclose(np.asarray(diag), fd, rtol=tol, atol=tol * np.max(np.abs(fd)))


@pytest.mark.slow
def test_fixed_point_reports_the_solvers_flags(x64):
  # hard-tanh just above its critical sigma_w2 (1.16554...) at sigma_b2 = 0.05: closer to
  # criticality than the c* solver resolves (its kink), so fixed_point reports converged=False
  w, sb = np.array([1.1655446896370, 1.5]), 0.05
  want = np.asarray(meanfield.fixed_point(sigma_w2=w, sigma_b2=sb, activation="hard_tanh")
                    .converged)
  assert not want[0] and want[1]
  fp = meanfield.fixed_point(sigma_w2=w, sigma_b2=sb, activation="hard_tanh",
                             arch=meanfield.Conv(kernel_size=3, spatial_size=3))
  np.testing.assert_array_equal(np.asarray(fp.converged), want)


def test_fixed_point_without_a_fixed_length(x64):
  # ReLU above sigma_w2 = 2: the length diverges; q* = inf and c* = nan, not an error
  arch = meanfield.Conv(kernel_size=3, spatial_size=3)
  fp = meanfield.fixed_point(sigma_w2=2.5, sigma_b2=0.3, activation="relu", arch=arch)
  assert np.isinf(float(fp.q_star)) and np.isnan(float(fp.c_star))
  ds = meanfield.depth_scales(sigma_w2=2.5, sigma_b2=0.3, activation="relu", arch=arch)
  assert np.all(np.isnan(np.asarray(ds.extra["slope_c"])))


def test_validation_of_covariance_and_sizes():
  with pytest.raises(ValueError, match=r"`covariance` must be positive semi-definite.*1\.97"):
    meanfield.propagate(covariance=np.array([[1.0, 1.97], [1.97, 1.0]]), depth=2, sigma_w2=1.0,
                        sigma_b2=0.0, activation="tanh", arch=meanfield.Conv(kernel_size=3))
  with pytest.raises(ValueError, match=r"`spatial_size`.*2\*\*27.*spatial_size=1000000"):
    meanfield.fixed_point(sigma_w2=1.5, sigma_b2=0.05, activation="tanh",
                          arch=meanfield.Conv(kernel_size=3, spatial_size=10**6))
  with pytest.raises(ValueError, match=r"`spatial_size`"):
    meanfield.fixed_point(sigma_w2=np.linspace(1, 2, 10**4), sigma_b2=0.05, activation="tanh",
                          arch=meanfield.Conv(kernel_size=3, spatial_size=200))


def test_phase_diagram_is_the_depth_scales_on_a_grid():
  # The cheap default-tier sibling of the 64-bit check above: ReLU (closed forms), float32.
  sw, sb = np.array([1.5, 2.5], np.float32), np.array([0.1], np.float32)
  arch = meanfield.Conv(kernel_size=3, spatial_size=4)
  ds = meanfield.phase_diagram(sigma_w2=sw, sigma_b2=sb, activation="relu", arch=arch)
  assert ds.xi_c_mode.dims[:2] == ("sigma_w2", "sigma_b2")
  direct = meanfield.depth_scales(sigma_w2=sw[:, None], sigma_b2=sb[None, :], activation="relu",
                                  arch=arch)
  np.testing.assert_allclose(ds.xi_c_mode.values, np.asarray(direct.xi_c), rtol=1e-5)


_COV = 0.5 * np.eye(4) + 0.2
_RELU = dict(sigma_w2=1.5, sigma_b2=0.1, activation="relu")    # closed forms: cheap to compile


@pytest.mark.slow   # the MLP's fixed-point solvers compile for several seconds
def test_the_fixed_point_fields_are_the_mlps(x64):
  # mode 0: q*, c*, chi_1, chi_c, xi_q, xi_c and converged as meanfield.fixed_point's
  arch = meanfield.Conv(kernel_size=3, spatial_size=4)
  fp, mlp = meanfield.fixed_point(arch=arch, **_RELU), meanfield.fixed_point(**_RELU)
  assert isinstance(fp, meanfield.FixedPoint) and mlp.extra is None
  for name in meanfield.FixedPoint._fields[:-1]:
    np.testing.assert_allclose(np.asarray(getattr(fp, name)), np.asarray(getattr(mlp, name)),
                               rtol=1e-12)


def test_propagate_gives_a_propagation_with_chi_1_per_position(x64):
  p = meanfield.propagate(covariance=_COV, depth=3, arch=meanfield.Conv(kernel_size=3), **_RELU)
  assert p.q.shape == p.chi_1.shape == (3, 4) and p.c.shape == p.extra["covariance"].shape
  np.testing.assert_allclose(np.asarray(p.chi_1), np.asarray(meanfield.chi_1(q=p.q, **_RELU)),
                             rtol=1e-14)


def test_footprint_from_a_kernel_scheme_of_the_network(x64):
  # depth 3 in 64-bit: the program of the test above, compiled once
  class Scheme:                       # as empirical's kernel schemes: a law and a footprint
    law, footprint = "gaussian", "delta"
  net = meanfield.Network(**_RELU, depth=3, init=Scheme(), arch=meanfield.Conv(kernel_size=3))
  got = meanfield.propagate(net, covariance=_COV)
  want = meanfield.propagate(covariance=_COV, depth=3, **_RELU,
                             arch=meanfield.Conv(kernel_size=3, footprint="delta"))
  np.testing.assert_array_equal(np.asarray(got.extra["covariance"]),
                                np.asarray(want.extra["covariance"]))
  # one of its own that differs raises; an array is stored as a tuple (the value stays hashable)
  own = meanfield.Conv(kernel_size=3, footprint=np.array([0.25, 0.5, 0.25]))
  assert own.footprint == (0.25, 0.5, 0.25)
  assert hash(own) == hash(meanfield.Conv(kernel_size=3, footprint=(0.25, 0.5, 0.25)))
  with pytest.raises(ValueError, match="`footprint` must agree with the network's kernel"):
    meanfield.propagate(net.replace(arch=own), covariance=_COV)


def test_inputs_and_variants_of_the_generic_functions_raise_for_conv():
  arch = meanfield.Conv(kernel_size=3, spatial_size=4)
  with pytest.raises(ValueError, match="`q_input`, `c_input` must not be given to `propagate`"):
    meanfield.propagate(q_input=1.0, c_input=0.3, covariance=_COV, depth=2, arch=arch, **_RELU)
  with pytest.raises(ValueError, match="`covariance` must be given to `propagate`"):
    meanfield.propagate(depth=2, arch=arch, **_RELU)
  with pytest.raises(ValueError, match="`covariance` must not be given to `propagate`"):
    meanfield.propagate(q_input=1.0, c_input=0.3, covariance=_COV, depth=2, **_RELU)
  # the MLP's variants are fields of meanfield.MLP, not keywords beside another arch
  with pytest.raises(TypeError, match="keep_prob"):
    meanfield.propagate(covariance=_COV, depth=2, arch=arch, keep_prob=0.9, **_RELU)
  with pytest.raises(ValueError, match="`q` must be None for `fixed_point` with arch=Conv"):
    meanfield.fixed_point(arch=arch, q=0.5, **_RELU)
  with pytest.raises(ValueError, match=r"`arch` of `phase_diagram` must be meanfield.MLP\(...\)"):
    meanfield.phase_diagram(sigma_w2=[1.0], sigma_b2=[0.1], activation="relu", arch="conv")
  net = meanfield.Network(**_RELU, arch=arch)
  with pytest.raises(ValueError, match="'arch' both from `network`"):
    meanfield.fixed_point(net, arch=arch)
  with pytest.raises(ValueError, match="arch=Conv.*which `q_star` does not cover"):
    meanfield.q_star(net)
