"""DKS and TAT activation transforms: against deepmind/dks's published numbers and the theory's maps.

Reference values: deepmind/dks, ``tests/test_activation_transform.py``
(``test_parameter_computation`` and ``_run_value_tests``), computed there for a
ResNet-101-like network whose subnetwork maximising function is written out
below (``_resnet_subnet_max``, the network of that test: groups of 3, 4, 23, 3
blocks of three layers, shortcut weight 0.6, a layer on the first shortcut of
each group and one at the end).
"""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.stats

import meanfield
from meanfield.transforms import leaky_relu_c_map, mlp_subnet_max


def _resnet_subnet_max(x, r, shortcut_weight=0.6):
  for blocks in (3, 4, 23, 3):
    for j in range(blocks):
      branch = r(r(r(x)))
      shortcut = r(x) if j == 0 else x
      x = shortcut_weight ** 2 * shortcut + (1 - shortcut_weight ** 2) * branch
  return r(x)


# (method, activation): published parameters at DKS zeta = 1.2 (q_slope 1) and TAT eta = 0.75,
# tau = 0.2 (dks names: c_slope_1_target, local_q_slope_target, c_val_0_target, c_curve_target).
PUBLISHED = {
    ("dks", "softplus"): dict(input_scale=0.18761008168267976, input_shift=0.40688063442262007,
                              output_shift=-0.9213466151411376, output_scale=8.878672543665223),
    ("dks", "tanh"): dict(input_scale=0.07461073057540868, input_shift=0.5566915199964182,
                          output_shift=-0.5034378768692127, output_scale=18.002635964442558),
    ("dks", "relu"): dict(input_shift=1.0, input_scale=0.3685360046708044,
                          output_shift=-1.000373858553784, output_scale=2.721729988761473),
    ("dks", "leaky_relu"): dict(negative_slope=0.8761257073473065,
                                input_shift=-6.372924855154692e-13,
                                output_shift=-0.049418692997275034,
                                output_scale=1.0651832705682147),
    ("tat", "softplus"): dict(input_scale=0.15011489794748328, input_shift=0.5374599901127068,
                              output_shift=-0.996481014465811, output_scale=10.54880187880574),
    ("tat", "tanh"): dict(input_scale=0.0580205218578313, input_shift=0.5218639804099805,
                          output_shift=-0.4796430704354356, output_scale=22.36066261763117),
    ("tat", "leaky_relu"): dict(output_scale=1.196996549778802,
                                negative_slope=0.6291800290346146),
}

# phi_hat(0.6), phi_hat(-0.6) at DKS zeta = 12, q_slope = 0.97 and TAT eta = 0.95, tau = 4.5.
PUBLISHED_VALUES = {
    ("dks", "softplus"): [0.5205088334781294, -0.6970897398761904],
    ("dks", "tanh"): [0.6910746968773931, -0.5122335409369118],
    ("dks", "relu"): [0.6053339463256114, -0.6486764456443863],
    ("dks", "leaky_relu"): [0.5628988987673328, -0.6649764416535503],
    ("tat", "softplus"): [0.6923574763139374, -0.4935166367766701],
    ("tat", "tanh"): [0.6860178437500071, -0.49030275427738146],
    ("tat", "leaky_relu"): [0.7954047194402861, -0.2955187511683813],
}

# Smooth activations: dks stops its bisection for the local target at |M - target| < 1e-8 and
# its root solve at scipy's default relative xtol 1.5e-8; both move the parameters by O(1e-8)
# relative (observed <= 3e-8), so 1e-7 allows the two solvers' tolerances and no more.
RTOL_SMOOTH = 1e-7
# Kinked activations: dks integrates on 1e5 Gauss-Legendre nodes over [-10, 10] without a
# split at the kink, so a step in phi' costs up to half a node gap (pi * 10 / 1e5 / 2 = 1.6e-4)
# times the Gaussian density at the kink (0.01 for the ReLU case): ~1.6e-6 in C'(1), which the
# parameter's sensitivity (da/dC'(1) ~ 17, see test_dks_relu_meets_its_slope_exactly) turns
# into up to ~3e-5 in input_scale, ~1e-4 relative; our rule splits at the kink.
RTOL_KINKED = 1e-4


def _transform(method, name, **targets):
  fn = meanfield.dks_transform if method == "dks" else meanfield.tat_transform
  return fn(name, subnet_max=_resnet_subnet_max, **targets)


@pytest.mark.slow
@pytest.mark.parametrize("method, name", list(PUBLISHED))
def test_parameters_match_dks(method, name):
  t = _transform(method, name, **({"zeta": 1.2} if method == "dks" else {"eta": 0.75, "tau": 0.2}))
  rtol = RTOL_SMOOTH if name in ("tanh", "softplus") or method == "tat" else RTOL_KINKED
  for field, value in PUBLISHED[(method, name)].items():
    np.testing.assert_allclose(getattr(t, field), value, rtol=rtol, atol=1e-10, err_msg=field)


@pytest.mark.parametrize("method, name", list(PUBLISHED_VALUES))
def test_values_match_dks(x64, method, name):
  targets = {"zeta": 12.0, "q_slope": 0.97} if method == "dks" else {"eta": 0.95, "tau": 4.5}
  t = _transform(method, name, **targets)
  out = np.asarray(t(np.asarray([0.6, -0.6])))
  assert out.dtype == np.float64
  rtol = RTOL_SMOOTH if name in ("tanh", "softplus") or method == "tat" else RTOL_KINKED
  np.testing.assert_allclose(out, PUBLISHED_VALUES[(method, name)], rtol=rtol)


def test_dks_relu_meets_its_slope_exactly():
  """Closed-form ReLU moments: our parameters meet C'(1) = xi to rounding; dks's miss by ~5e-7."""
  def slope(a, b=1.0):
    t = b / a
    cdf, pdf = scipy.stats.norm.cdf(t), scipy.stats.norm.pdf(t)
    m1, m2 = b * cdf + a * pdf, (a * a + b * b) * cdf + a * b * pdf
    return a * a * cdf / (m2 - m1 * m1)

  t = _transform("dks", "relu", zeta=1.2)
  assert abs(slope(t.input_scale) - t.local_target) < 1e-12
  published = PUBLISHED[("dks", "relu")]["input_scale"]
  miss = slope(published) - t.local_target
  assert 1e-7 < abs(miss) < 2e-6
  sensitivity = 2e-6 / (slope(t.input_scale + 1e-6) - slope(t.input_scale - 1e-6))
  np.testing.assert_allclose(published - t.input_scale, miss * sensitivity, rtol=0.05)


def _expect(f):
  return scipy.integrate.quad(lambda z: f(z) * np.exp(-z * z / 2) / np.sqrt(2 * np.pi),
                              -30, 30, epsabs=1e-13, epsrel=1e-12, limit=400)[0]


@pytest.mark.slow
def test_dks_mlp_conditions_on_the_theory_maps(x64):
  depth, zeta = 20, 1.5
  t = meanfield.dks_transform("tanh", depth=depth, zeta=zeta)
  np.testing.assert_allclose(t.local_target, zeta ** (1 / depth), rtol=1e-13)
  kw = dict(sigma_w2=1.0, sigma_b2=0.0, activation=t.activation)
  np.testing.assert_allclose(meanfield.q_map(1.0, **kw), 1, rtol=1e-10)
  np.testing.assert_allclose(meanfield.q_map_slope(1.0, **kw), 1, rtol=1e-9)
  np.testing.assert_allclose(meanfield.chi_1(q=1.0, **kw), zeta ** (1 / depth), rtol=1e-9)
  # C(0) = 0: phi_hat has mean zero (scipy)
  phi = lambda z: t.output_scale * (np.tanh(t.input_scale * z + t.input_shift) + t.output_shift)
  assert abs(_expect(phi)) < 1e-10
  assert t.input_scale > 0 and t.output_scale > 0


def test_tat_smooth_conditions(x64):
  depth, tau = 20, 0.3
  t = meanfield.tat_transform("tanh", depth=depth, tau=tau)
  a, b, d, g = t.input_scale, t.input_shift, t.output_shift, t.output_scale
  phi = lambda z: g * (np.tanh(a * z + b) + d)
  dphi = lambda z: g * a / np.cosh(a * z + b) ** 2
  ddphi = lambda z: -2 * g * a * a * np.tanh(a * z + b) / np.cosh(a * z + b) ** 2
  # Q(1) = 1, Q'(1) = E[z phi phi'] = 1, C'(1) = E[phi'^2] = 1, C''(1) = E[phi''^2] = tau / depth
  got = [_expect(lambda z: phi(z) ** 2), _expect(lambda z: z * phi(z) * dphi(z)),
         _expect(lambda z: dphi(z) ** 2), _expect(lambda z: ddphi(z) ** 2)]
  np.testing.assert_allclose(got, [1, 1, 1, tau / depth], rtol=1e-9)
  np.testing.assert_allclose(meanfield.chi_1(q=1.0, sigma_w2=1.0, sigma_b2=0.0,
                                             activation=t.activation), 1, rtol=1e-9)


@pytest.mark.slow
def test_tailored_relu_network_c_map_hits_eta(x64):
  depth, eta = 10, 0.8
  t = meanfield.tat_transform("relu", depth=depth, eta=eta)
  np.testing.assert_allclose(t.output_scale, np.sqrt(2 / (1 + t.negative_slope ** 2)), rtol=1e-14)
  # propagate: layer 1 is affine (c^1 = c_input at sigma_w2 = 1, sigma_b2 = 0), then `depth`
  # applications of the c-map of the leaky ReLU, integrated by the theory's own quadrature
  prop = meanfield.propagate(q_input=1.0, c_input=0.0, depth=depth + 1, sigma_w2=1.0,
                             sigma_b2=0.0, activation=t.activation)
  np.testing.assert_allclose(prop.q[-1], 1, rtol=1e-10)
  np.testing.assert_allclose(prop.c[-1], eta, rtol=1e-8)


def test_leaky_relu_c_map_against_quadrature(x64):
  slope = 0.3
  act = meanfield.Activation("leaky_relu_0.3", lambda h: jnp.where(h > 0, h, slope * h),
                             kinks=(0.0,))
  c = np.asarray([-0.9, -0.3, 0.0, 0.4, 0.95])
  theory = meanfield.c_map(c, sigma_w2=1.0, sigma_b2=0.0, q=1.0, activation=act)
  np.testing.assert_allclose(leaky_relu_c_map(c, slope), theory, rtol=1e-9, atol=1e-12)


def test_residual_network_targets():
  """Residual blocks w^2 x + (1 - w^2) r^k(x): closed-form largest slope and curvature."""
  n, k, w = 8, 2, 0.8
  net = meanfield.residual_subnet_max(n_blocks=n, branch_depth=k, shortcut_weight=w)
  xi = meanfield.dks_transform("softplus", subnet_max=net, zeta=1.5).local_target
  np.testing.assert_allclose((w * w + (1 - w * w) * xi ** k) ** n, 1.5, rtol=1e-13)
  kappa = meanfield.tat_transform("softplus", subnet_max=net, tau=0.3).local_target
  np.testing.assert_allclose(n * (1 - w * w) * k * kappa, 0.3, rtol=1e-13)
  with pytest.raises(ValueError, match="`shortcut_weight` must be in"):
    meanfield.residual_subnet_max(n_blocks=2, branch_depth=1, shortcut_weight=1.0)


def test_validation():
  with pytest.raises(ValueError, match="`zeta` must be > 1"):
    meanfield.dks_transform("tanh", depth=5, zeta=1.0)
  with pytest.raises(ValueError, match="exactly one of `depth`"):
    meanfield.dks_transform("tanh")
  with pytest.raises(ValueError, match="exactly one of `depth`"):
    meanfield.tat_transform("tanh", depth=3, subnet_max=_resnet_subnet_max)
  with pytest.raises(ValueError, match="`eta` = 0.9 is not reached"):
    meanfield.tat_transform("leaky_relu", depth=2, eta=0.9)
  with pytest.raises(ValueError, match="`eta` must be in"):
    meanfield.tat_transform("leaky_relu", depth=2, eta=1.0)
  with pytest.raises(ValueError, match="`tau` must be > 0"):
    meanfield.tat_transform("tanh", depth=2, tau=0.0)
  with pytest.raises(ValueError, match="`activation`"):
    meanfield.tat_transform("nope", depth=2)
  with pytest.raises(ValueError, match="`depth`"):
    meanfield.dks_transform("tanh", depth=0)


def test_activation_without_slope_is_refused():
  # sign has phi' = 0 almost everywhere: no transform can set the local C'(1)
  for fn in (lambda: meanfield.dks_transform(jnp.sign, depth=10),
             lambda: meanfield.tat_transform(jnp.sign, depth=10)):
    with pytest.raises(ValueError, match="`activation`.*derivative is zero almost everywhere"):
      fn()


def test_mlp_subnet_max_composes_depth_times():
  m = mlp_subnet_max(3)
  r = lambda x: 2 * x + 1
  assert m(1.0, r) == r(r(r(1.0)))
  with pytest.raises(ValueError, match="depth"):
    mlp_subnet_max(0)
