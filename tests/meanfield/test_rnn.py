"""meanfield.RNN against closed forms (linear RNN) and independent Gauss-Hermite quadrature."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import meanfield
from meanfield.depth import depth_scale

STEPS = 12
TANH = dict(activation="tanh", sigma_w2=1.6, sigma_b2=0.05, sigma_u2=0.7, q_input=1.3,
            c_input=0.4)


def _propagate(*, steps, sigma_u2=1.0, q_input=1.0, c_input=0.0, **kw):
  return meanfield.propagate(depth=steps, q_input=q_input, c_input=c_input,
                             arch=meanfield.RNN(sigma_u2=sigma_u2), **kw)


def _fixed_point(*, sigma_u2=1.0, tied=True, **kw):
  return meanfield.fixed_point(arch=meanfield.RNN(sigma_u2=sigma_u2, tied=tied), **kw)


def _jacobian_moments(*, steps, sigma_u2=1.0, **kw):
  return meanfield.jacobian_moments(depth=np.arange(1, steps + 1),
                                    arch=meanfield.RNN(sigma_u2=sigma_u2), **kw)


def _reference(sigma_w2, sigma_b2, sigma_u2, q_input, c_input, steps, degree=240):
  """q_t, c_t, chi_1(q_t) of a tanh RNN by numpy Gauss-Hermite (1-D and 2-D), from h_0 = 0.

  240 nodes: tanh^2 at q ~ 2 is right to 1e-14 there (80 nodes: 5e-8, against scipy.quad).
  """
  z, w = np.polynomial.hermite_e.hermegauss(degree)
  w = w / w.sum()
  z1, z2 = np.meshgrid(z, z, indexing="ij")
  w2 = np.outer(w, w)
  q, c = sigma_u2 * q_input + sigma_b2, 1 - sigma_u2 * q_input * (1 - c_input) / (
      sigma_u2 * q_input + sigma_b2)
  qs, cs = [q], [c]
  for _ in range(steps - 1):
    u1 = np.sqrt(q) * z1
    u2 = np.sqrt(q) * (c * z1 + np.sqrt(1 - c * c) * z2)
    q_next = sigma_w2 * np.sum(w * np.tanh(np.sqrt(q) * z) ** 2) + sigma_u2 * q_input + sigma_b2
    cross = np.sum(w2 * np.tanh(u1) * np.tanh(u2))
    c = (sigma_w2 * cross + sigma_u2 * q_input * c_input + sigma_b2) / q_next
    q = q_next
    qs.append(q)
    cs.append(c)
  qs = np.array(qs)
  chi = sigma_w2 * np.array([np.sum(w / np.cosh(np.sqrt(qq) * z) ** 4) for qq in qs])
  return qs, np.array(cs), chi


@pytest.mark.slow
def test_tanh_against_quadrature(x64):
  th = _propagate(steps=STEPS, **TANH)
  args = {k: v for k, v in TANH.items() if k != "activation"}
  q, c, chi = _reference(steps=STEPS, **args)
  np.testing.assert_allclose(th.q, q, rtol=1e-10)
  np.testing.assert_allclose(th.c, c, rtol=1e-9)
  np.testing.assert_allclose(th.chi_1, chi, rtol=1e-9)
  grad = np.append(np.cumprod(chi[:-1][::-1])[::-1], 1.0)
  np.testing.assert_allclose(th.extra["grad_h2"], grad, rtol=1e-9)
  assert th.q.dtype == np.float64


def test_fixed_point_is_fixed_and_slope_is_chi_c(x64):
  fp = _fixed_point(**TANH)
  args = {k: v for k, v in TANH.items() if k != "activation"}
  # Long propagation reaches the fixed point (the map contracts: chi_c < 1 checked here).
  q, c, _ = _reference(steps=200, **args)
  assert 0 < fp.chi_c < 1
  np.testing.assert_allclose(fp.q_star, q[-1], rtol=1e-10)
  np.testing.assert_allclose(fp.c_star, c[-1], rtol=1e-9)
  # chi_c: the map's slope at c*, by a central difference of the independent quadrature map.
  z, w = np.polynomial.hermite_e.hermegauss(240)
  w2 = np.outer(w, w) / w.sum() ** 2
  z1, z2 = np.meshgrid(z, z, indexing="ij")

  def c_map(c, qq=float(fp.q_star)):
    u1, u2 = np.sqrt(qq) * z1, np.sqrt(qq) * (c * z1 + np.sqrt(1 - c * c) * z2)
    return (TANH["sigma_w2"] * np.sum(w2 * np.tanh(u1) * np.tanh(u2)) + TANH["sigma_u2"]
            * TANH["q_input"] * TANH["c_input"] + TANH["sigma_b2"]) / qq

  h = 1e-5
  slope = (c_map(float(fp.c_star) + h) - c_map(float(fp.c_star) - h)) / (2 * h)
  np.testing.assert_allclose(fp.chi_c, slope, rtol=1e-7)
  np.testing.assert_allclose(fp.xi_c, -1 / np.log(slope), rtol=1e-6)


@pytest.mark.slow
def test_linear_closed_forms(x64):
  sw2, sb2, su2, qi, ci = 0.8, 0.1, 0.5, 2.0, 0.3
  th = _propagate(activation="linear", sigma_w2=sw2, sigma_b2=sb2, sigma_u2=su2,
                         q_input=qi, c_input=ci, steps=STEPS)
  t = np.arange(1, STEPS + 1)
  geometric = (1 - sw2 ** t) / (1 - sw2)
  np.testing.assert_allclose(th.q, (su2 * qi + sb2) * geometric, rtol=1e-12)
  np.testing.assert_allclose(th.q * th.c, (su2 * qi * ci + sb2) * geometric, rtol=1e-12)
  np.testing.assert_allclose(th.extra["grad_h2"], sw2 ** (STEPS - t), rtol=1e-12)
  fp = _fixed_point(activation="linear", sigma_w2=sw2, sigma_b2=sb2, sigma_u2=su2,
                           q_input=qi, c_input=ci)
  np.testing.assert_allclose(fp.q_star, (su2 * qi + sb2) / (1 - sw2), rtol=1e-12)
  np.testing.assert_allclose(fp.c_star, (su2 * qi * ci + sb2) / (su2 * qi + sb2), rtol=1e-12)
  np.testing.assert_allclose([fp.chi_1, fp.chi_c], [sw2, sw2], rtol=1e-12)


@pytest.mark.slow
def test_without_input_the_feedforward_fixed_point(x64):
  # sigma_u2 = 0: the RNN's maps are the MLP's (chaotic tanh: c* < 1; ordered: c* = 1).
  sw2 = np.array([0.8, 3.0])
  fp = _fixed_point(activation="tanh", sigma_w2=sw2, sigma_b2=0.1, sigma_u2=0.0)
  np.testing.assert_allclose(fp.q_star, meanfield.q_star(activation="tanh", sigma_w2=sw2,
                                                         sigma_b2=0.1), rtol=1e-12)
  np.testing.assert_allclose(fp.c_star, meanfield.fixed_point(activation="tanh", sigma_w2=sw2,
                                                              sigma_b2=0.1).c_star,
                             rtol=1e-9, atol=1e-12)
  assert fp.c_star[0] == 1 and fp.c_star[1] < 0.99


def test_jacobian_moments_linear(x64):
  k = np.arange(1, 6)
  for init, variance in (("gaussian", k * 0.9 ** (2 * k)), ("orthogonal", 0 * k)):
    m = _jacobian_moments(activation="linear", sigma_w2=0.9, sigma_b2=0.1, steps=5,
                                 init=init)
    np.testing.assert_allclose(m.mean, 0.9 ** k, rtol=1e-12)
    np.testing.assert_allclose(m.variance, variance, rtol=1e-12, atol=1e-14)


def test_jacobian_moments_at_the_rnn_fixed_point(x64):
  # m_1 = chi_1(q*)^k at the RNN's own q* (the input acting as a bias), for tanh,
  # whose chi_1 depends on q: a q* at the wrong bias would fail.
  k = np.arange(1, 5)
  kw = dict(activation="tanh", sigma_w2=1.7, sigma_b2=0.05, sigma_u2=0.3, q_input=2.0)
  fp = _fixed_point(**kw)
  m = _jacobian_moments(steps=4, **kw)
  np.testing.assert_allclose(m.mean, float(fp.chi_1) ** k, rtol=1e-12)
  no_input = _fixed_point(**{**kw, "sigma_u2": 0.0})
  assert abs(float(no_input.chi_1) / float(fp.chi_1) - 1) > 1e-3


def test_network_depth_is_steps(x64):
  net = meanfield.Network(activation="linear", sigma_w2=0.8, sigma_b2=0.1, depth=7,
                          arch=meanfield.RNN())
  a = meanfield.propagate(net, q_input=1.0, c_input=0.2)
  b = _propagate(activation="linear", sigma_w2=0.8, sigma_b2=0.1, steps=7, q_input=1.0,
                 c_input=0.2)
  np.testing.assert_array_equal(a.q, b.q)
  assert a.q.shape == (7,)
  with pytest.raises(ValueError, match="depth"):
    meanfield.propagate(net, depth=3, q_input=1.0, c_input=0.2)
  with pytest.raises(ValueError, match=r"`arch` must be meanfield.MLP\(...\)"):
    net.replace(arch=None)         # the MLP is MLP(), not None
  with pytest.raises(ValueError, match="c_input"):        # propagate's inputs are required
    meanfield.propagate(net, q_input=1.0)
  # The network's init is the recurrent law: linear orthogonal, a point mass (variance 0);
  # its depth the lag k.
  m = meanfield.jacobian_moments(net.replace(init="orthogonal"))
  np.testing.assert_allclose(m.mean, 0.8 ** 7, rtol=1e-12)
  np.testing.assert_array_equal(m.variance, 0.0)
  fp = meanfield.fixed_point(net, q_input=1.0)
  np.testing.assert_allclose(fp.q_star, (1.0 + 0.1) / 0.2, rtol=1e-12)
  np.testing.assert_allclose(meanfield.depth_scales(net, q_input=1.0).xi_c, fp.xi_c)
  # The MLP's stationary state reads no input: q_input there is refused.
  with pytest.raises(ValueError, match="q_input"):
    meanfield.fixed_point(activation="tanh", sigma_w2=1.0, sigma_b2=0.0, q_input=1.0)
  with pytest.raises(ValueError, match="q_input"):
    meanfield.jacobian_moments(activation="tanh", sigma_w2=1.0, sigma_b2=0.0, depth=2,
                               q_input=1.0)


def test_tied_or_untied_two_time_steps(x64):
  # c_time: tied, the c-map's c*; untied, the inputs' and bias's share (sigma_u2 q_in c_in +
  # sigma_b2) / q*. Forward the two are the same.
  kw = dict(activation="tanh", sigma_w2=1.5, sigma_b2=0.3, sigma_u2=1.0, q_input=1.0,
            c_input=0.2)
  tied, untied = _fixed_point(**kw), _fixed_point(tied=False, **kw)
  np.testing.assert_array_equal(tied.extra["c_time"], tied.c_star)
  np.testing.assert_allclose(untied.extra["c_time"], (1.0 * 0.2 + 0.3) / untied.q_star,
                             rtol=1e-14)
  np.testing.assert_array_equal(untied.c_star, tied.c_star)
  assert bool(tied.converged) and tied.xi_q > 0


def test_float32_stays_float32():
  th = _propagate(activation="linear", sigma_w2=np.float32(0.5), sigma_b2=0.1, steps=3)
  assert th.q.dtype == np.float32 and th.extra["grad_h2"].dtype == np.float32
  np.testing.assert_allclose(th.q, 1.1 * (1 - 0.5 ** np.arange(1, 4)) / 0.5, rtol=1e-6)


@pytest.mark.parametrize("bad, match", [
    (dict(steps=0), "depth"), (dict(sigma_u2=-1.0), "sigma_u2"),
    (dict(c_input=1.5), "c_input"), (dict(q_input=-0.1), "q_input"),
    (dict(activation="nope"), "activation")])
def test_bad_input_raises(bad, match):
  kw = {**dict(activation="tanh", sigma_w2=1.0, sigma_b2=0.0, steps=3), **bad}
  with pytest.raises(ValueError, match=match):
    _propagate(**kw)


@pytest.mark.slow
@pytest.mark.parametrize("act, sigma_w2", [("relu", 1.5),   # closed forms: cheap
                                            pytest.param("tanh", 2.5, marks=pytest.mark.slow)])
def test_fixed_point_gradients_match_finite_differences(x64, act, sigma_w2):
  # Every differentiable output in every argument, with inputs that differ (c* < 1 from the
  # root-find, its gradient by the implicit function theorem); tanh at a chaotic point.
  # Central differences with h = 1e-5: truncation ~h^2 f''' ~ 1e-10, and the solvers' 16 eps
  # on the values ~4e-16 / h ~ 4e-11 of noise; rtol 1e-6 with atol 1e-8.
  names = ("sigma_w2", "sigma_b2", "sigma_u2", "q_input", "c_input")
  x0 = np.array([sigma_w2, 0.05, 0.7, 1.3, 0.4])
  fields = ("q_star", "c_star", "chi_1", "chi_c", "xi_c", "xi_grad")

  def f(x):
    fp = _fixed_point(activation=act, **dict(zip(names, x)))
    return jnp.stack([getattr(fp, k) if k != "xi_grad" else fp.extra[k] for k in fields])

  jac = np.asarray(jax.jacrev(f)(jnp.asarray(x0)))            # reverse mode, as jax.grad
  h = 1e-5
  for j, name in enumerate(names):
    step = np.eye(5)[j] * h
    fd = (np.asarray(f(x0 + step)) - np.asarray(f(x0 - step))) / (2 * h)
    for i, field in enumerate(fields):
      np.testing.assert_allclose(jac[i, j], fd[i], rtol=1e-6, atol=1e-8,
                                 err_msg=f"d {field} / d {name}")
  assert abs(jac[1, 0]) > 1e-3 and abs(jac[1, 4]) > 0.1        # dc*/dsigma_w2, dc*/dc_input
  if act == "relu":
    # no input (sigma_u2 = 0), ordered: c* = 1 is constant, and no nan from ReLU's c-map at 1
    jac = np.asarray(jax.jacrev(f)(jnp.asarray([sigma_w2, 0.05, 0.0, 1.3, 0.4])))
    assert np.all(np.isfinite(jac)) and np.all(jac[1] == 0)
    return
  # the reproducer: dc*/dsigma_w2 ~ -0.0037 and dc*/dc_input ~ 0.84 at (2.5, 0.05), default input
  g = jax.grad(lambda w, ci: _fixed_point(activation="tanh", sigma_w2=w, sigma_b2=0.05,
                                                 c_input=ci).c_star, argnums=(0, 1))(2.5, 0.0)
  assert abs(float(g[0])) > 1e-3 and abs(float(g[1])) > 0.5


@pytest.mark.slow    # an edge case; test_fixed_point_is_fixed_and_slope_is_chi_c checks the time scales
def test_time_scales_are_plus_inf_at_chi_1_equal_one(x64):
  # tanh at sigma_w2 = 1 without input or bias: q* = 0, chi_1 = chi_c = 1 exactly; -1/log(1)
  # is -inf with log(1) = +0.0, the docstring's (and depth_scale's) value is +inf.
  fp = _fixed_point(activation="tanh", sigma_w2=1.0, sigma_b2=0.0, sigma_u2=0.0)
  assert float(fp.q_star) == 0 and float(fp.c_star) == 1
  assert float(fp.chi_1) == float(fp.chi_c) == 1
  assert float(fp.xi_c) == float(fp.extra["xi_grad"]) == np.inf
  # growing gradients keep their negative sign; shrinking ones are depth_scale's
  fp = _fixed_point(activation="tanh", sigma_w2=np.array([0.8, 2.5]), sigma_b2=0.05,
                           sigma_u2=0.0)
  np.testing.assert_array_equal(fp.extra["xi_grad"], -1 / np.log(np.asarray(fp.chi_1)))
  assert fp.extra["xi_grad"][0] > 0 > fp.extra["xi_grad"][1]
  np.testing.assert_array_equal(fp.xi_c, depth_scale(fp.chi_c))
