"""q-map, c-map, chi_1 and propagate: published values, scipy, invariants, transforms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import meanfield as mf
from tests.meanfield import quadrature_reference as ref

ERF = dict(sigma_w2=2.25, sigma_b2=0.0025, activation="erf")


def test_erf_nngp_kernel_published_value(x64):
  # infinite-width NNGP kernel of a depth-11 erf network (issue 2), q^1 = sigma_w2 q_input + sigma_b2
  p = mf.propagate(q_input=1.0, c_input=0.5, depth=11, **ERF)
  np.testing.assert_allclose(p.q[-1], 1.0809269941896273, rtol=1e-14)
  np.testing.assert_allclose(p.q[-1] * p.c[-1], 0.22222791899346617, rtol=1e-14)


def test_propagate_quadrature_path_matches_closed_form(x64):
  # erf wrapped as a plain callable is integrated by quadrature, not the arcsine kernel
  p = mf.propagate(q_input=1.0, c_input=0.5, depth=11, sigma_w2=2.25, sigma_b2=0.0025,
                   activation=jax.scipy.special.erf)
  np.testing.assert_allclose(p.q[-1], 1.0809269941896273, rtol=1e-12)
  np.testing.assert_allclose(p.q[-1] * p.c[-1], 0.22222791899346617, rtol=1e-11)


@pytest.mark.slow
def test_propagate_layer_convention_and_chi(x64):
  sw2, sb2 = jnp.array([1.2, 2.5]), 0.1
  p = mf.propagate(q_input=0.7, c_input=0.3, depth=4, sigma_w2=sw2[:, None],
                   sigma_b2=jnp.array([[sb2]]), activation="tanh")
  assert p.q.shape == p.c.shape == p.chi_1.shape == (2, 1, 4)
  q1 = sw2 * 0.7 + sb2
  np.testing.assert_allclose(p.q[:, 0, 0], q1, rtol=1e-15)
  np.testing.assert_allclose(p.c[:, 0, 0], (sw2 * 0.7 * 0.3 + sb2) / q1, rtol=1e-15)
  q2 = mf.q_map(p.q[:, 0, 0], sigma_w2=sw2, sigma_b2=sb2, activation="tanh")
  np.testing.assert_allclose(p.q[:, 0, 1], q2, rtol=1e-15)
  c2 = mf.c_map(p.c[:, 0, 0], sigma_w2=sw2, sigma_b2=sb2, activation="tanh", q=p.q[:, 0, 0])
  np.testing.assert_allclose(p.c[:, 0, 1], c2, rtol=1e-14)
  chi = mf.chi_1(sigma_w2=sw2[None, :], sigma_b2=sb2, activation="tanh", q=p.q[:, 0, :].T).T
  np.testing.assert_allclose(p.chi_1[:, 0, :], chi, rtol=1e-14)


@pytest.mark.parametrize("q", [0.3, 100.0])
def test_q_map_and_chi_1_against_scipy(q, x64):
  sw2, sb2 = 1.7, 0.05
  want = sw2 * ref.expectation(lambda h: np.tanh(h) ** 2, q) + sb2
  np.testing.assert_allclose(mf.q_map(q, sigma_w2=sw2, sigma_b2=sb2, activation="tanh"), want,
                             rtol=1e-12)
  want = sw2 * ref.expectation(lambda h: (1 - np.tanh(h) ** 2) ** 2, q)
  np.testing.assert_allclose(mf.chi_1(sigma_w2=sw2, sigma_b2=sb2, activation="tanh", q=q), want,
                             rtol=1e-12)


def test_c_map_against_scipy_and_near_one(x64):
  sw2, sb2, q = 1.9, 0.05, 0.8
  q_out = sw2 * ref.expectation(lambda h: np.tanh(h) ** 2, q) + sb2
  for c in (0.2, 0.99999):
    cross = ref.bivariate(lambda a, b: np.tanh(a) * np.tanh(b), q, c)
    diff = ref.bivariate(lambda a, b: (np.tanh(a) - np.tanh(b)) ** 2, q, c)
    got = mf.c_map(c, sigma_w2=sw2, sigma_b2=sb2, activation="tanh", q=q)
    np.testing.assert_allclose(got, (sw2 * cross + sb2) / q_out, rtol=1e-11)
    # 1 - C(c) = sigma_w2 E[(phi(u1) - phi(u2))^2] / (2 q_out): relative accuracy of 1 - c
    np.testing.assert_allclose(1 - got, sw2 * diff / (2 * q_out), rtol=1e-9)


def test_relu_closed_form_c_map_and_chi(x64):
  c = jnp.linspace(-1, 1, 9)
  got = mf.c_map(c, sigma_w2=2.0, sigma_b2=0.0, activation="relu", q=1.0)
  theta = np.arccos(np.asarray(c))
  np.testing.assert_allclose(got, (np.sin(theta) + (np.pi - theta) * c) / np.pi, atol=1e-15)
  np.testing.assert_allclose(mf.chi_1(sigma_w2=1.3, sigma_b2=0.2, activation="relu", q=5.0), 0.65)


@pytest.mark.slow
@settings(max_examples=10)
@given(st.lists(st.floats(-1, 1), min_size=8, max_size=8),
       st.sampled_from(["relu", "erf"]))
def test_c_map_maps_the_interval_into_itself(cs, name):
  _check_c_map_interval(cs, name)


@pytest.mark.slow
@settings(max_examples=10)
@given(st.lists(st.floats(-1, 1), min_size=8, max_size=8), st.sampled_from(["tanh", "hard_tanh"]))
def test_c_map_maps_the_interval_into_itself_quadrature(cs, name):
  _check_c_map_interval(cs, name)


def _check_c_map_interval(cs, name):
  c = jnp.asarray(cs + [1.0], jnp.float32)
  out = _c_map_jit(c, name)
  assert np.all(np.abs(out) <= 1 + 1e-6)
  np.testing.assert_allclose(out[-1], 1.0, rtol=1e-6)
  # increasing on [0, 1] (non-negative Mehler coefficients)
  pos = np.sort(np.abs(np.asarray(c)))
  outs = np.asarray(_c_map_jit(jnp.asarray(pos), name))
  assert np.all(np.diff(outs) >= -1e-6)


@jax.jit
def _c_map_tanh(c):
  return mf.c_map(c, sigma_w2=2.5, sigma_b2=0.1, activation="tanh", q=1.3)


def _c_map_jit(c, name):
  if name == "tanh":
    return _c_map_tanh(c)
  return mf.c_map(c, sigma_w2=2.5, sigma_b2=0.1, activation=name, q=1.3)


def test_jit_matches_eager_and_grad_matches_finite_differences(x64):
  h = 1e-5
  qmap = lambda sw2, q: mf.q_map(q, sigma_w2=sw2, sigma_b2=0.05, activation="tanh")
  np.testing.assert_allclose(jax.jit(qmap)(2.0, 0.9), qmap(2.0, 0.9), rtol=1e-14)
  g = jax.grad(qmap, argnums=(0, 1))(2.0, 0.9)
  # central differences: error O(h^2) ~ 1e-10, so 1e-8 relative is a real check
  fd = [(qmap(2.0 + h, 0.9) - qmap(2.0 - h, 0.9)) / (2 * h),
        (qmap(2.0, 0.9 + h) - qmap(2.0, 0.9 - h)) / (2 * h)]
  np.testing.assert_allclose(g, fd, rtol=1e-8)
  np.testing.assert_allclose(g[1], mf.q_map_slope(0.9, sigma_w2=2.0, sigma_b2=0.05,
                                                  activation="tanh"), rtol=1e-12)


@pytest.mark.slow
def test_c_map_jit_and_derivative(x64):
  f = lambda c: mf.c_map(c, sigma_w2=2.0, sigma_b2=0.05, activation="tanh", q=0.9)
  np.testing.assert_allclose(jax.jit(f)(0.4), f(0.4), rtol=1e-14)
  h = 1e-5
  _, slope = jax.jvp(f, (0.4,), (1.0,))
  np.testing.assert_allclose(slope, (f(0.4 + h) - f(0.4 - h)) / (2 * h), rtol=1e-8)


def test_dtype_is_preserved():
  q = jnp.asarray([0.5, 2.0], jnp.float32)
  assert mf.q_map(q, sigma_w2=1.5, sigma_b2=0.1, activation="tanh").dtype == jnp.float32
  p = mf.propagate(q_input=q, c_input=0.5, depth=2, sigma_w2=1.5, sigma_b2=0.1, activation="relu")
  assert p.q.dtype == p.c.dtype == p.chi_1.dtype == jnp.float32


def test_dtype_float64_under_x64(x64):
  assert mf.q_map(1.0, sigma_w2=1.5, sigma_b2=0.1, activation="tanh").dtype == jnp.float64


def test_float32_accuracy():
  got = mf.propagate(q_input=1.0, c_input=0.5, depth=11, **ERF)
  np.testing.assert_allclose(got.q[-1], 1.0809269941896273, rtol=1e-5)
  np.testing.assert_allclose(got.q[-1] * got.c[-1], 0.22222791899346617, rtol=1e-5)


@pytest.mark.parametrize("call,match", [
    (lambda: mf.q_map(-1.0, sigma_w2=1, sigma_b2=0, activation="tanh"), "`q` must be >= 0"),
    (lambda: mf.q_map(1.0, sigma_w2=-1, sigma_b2=0, activation="tanh"), "`sigma_w2` must be >= 0.*-1"),
    (lambda: mf.c_map(1.5, sigma_w2=1, sigma_b2=0, activation="tanh", q=1.0), r"`c` must lie in \[-1, 1\].*1.5"),
    (lambda: mf.propagate(q_input=1, c_input=0.5, depth=0, sigma_w2=1, sigma_b2=0,
                          activation="tanh"), "`depth` must be an integer >= 1, got 0"),
    (lambda: mf.propagate(q_input=1, c_input=0.5, depth=2, sigma_w2=1, sigma_b2=-0.1,
                          activation="tanh"), "`sigma_b2` must be >= 0"),
    (lambda: mf.q_map(1.0, sigma_w2=1, sigma_b2=0, activation="tanhh"), "must be one of"),
])
def test_bad_input_raises(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_depth_beyond_a_scan_length_is_refused():
  # scans count layers in 32-bit integers: a clear error naming depth, before any work
  kw = dict(q_input=1.0, sigma_w2=1.5, sigma_b2=0.1, activation="tanh")
  for fn in (lambda d: mf.propagate(c_input=0.5, depth=d, **kw),
             lambda d: mf.propagate(c_input=0.5, depth=d, arch=mf.MLP(residual=True), **kw),
             lambda d: mf.propagate(c_input=0.5, depth=d, arch=mf.MLP(norm="layer"), **kw),
             lambda d: mf.finite_width_q(depth=d, width=64, **kw),
             lambda d: mf.finite_width_jacobian(depth=d, width=64, **kw)):
    with pytest.raises(ValueError, match=r"`depth` must be an integer in \[1, 2147483647\]"):
      fn(10 ** 12)


# The MLP's variant fields at their plain values, as numbers, NumPy scalars and a Network gives them.
_PLAIN_VALUES = [mf.MLP(residual=False, alpha=1.0, norm=None, keep_prob=1.0),
                 mf.MLP(alpha=1, keep_prob=np.float64(1.0)), mf.MLP(alpha=np.float32(1.0))]


def test_plain_variant_values_run_the_plain_code_bit_for_bit(x64, caplog):
  # The Network's values and one set of shapes throughout: the calls by network and the
  # c_map at a given length reuse the programs the keyword calls compiled.
  kw = dict(sigma_w2=1.5, sigma_b2=0.05, activation="tanh")
  q, c = np.array([[0.3], [2.0]]), np.array([[-0.4], [0.9]])
  calls = {
      "q_map": lambda **v: mf.q_map(q, **kw, **v),
      "c_map": lambda **v: mf.c_map(c, **kw, **v),
      "c_map at q": lambda **v: mf.c_map(c, q=np.float64(0.7), **kw, **v),
      "propagate": lambda **v: mf.propagate(q_input=1.2, c_input=0.3, depth=6, **kw, **v),
  }
  net = mf.Network("tanh", sigma_w2=1.5, sigma_b2=0.05, depth=6)
  by_network = {"q_map": (lambda: mf.q_map(q, network=net), calls["q_map"]),
                "propagate": (lambda: mf.propagate(net, q_input=1.2, c_input=0.3),
                              calls["propagate"])}
  for name, call in calls.items():
    plain = jax.block_until_ready(call())
    # the same compiled program: the plain call compiled it, the plain MLP values reuse it
    with caplog.at_level("WARNING", logger="jax"), jax.log_compiles(True):
      for values in _PLAIN_VALUES:
        got = call(arch=values)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(plain)):
          assert a.dtype == b.dtype and a.shape == b.shape, name
          np.testing.assert_array_equal(a, b, err_msg=f"{name} {values}")
    assert not [r for r in caplog.records if r.getMessage().startswith("Compiling")], name
  for name, (with_net, with_keywords) in by_network.items():
    caplog.clear()
    with caplog.at_level("WARNING", logger="jax"), jax.log_compiles(True):
      for a, b in zip(jax.tree.leaves(with_net()), jax.tree.leaves(with_keywords())):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert not [r for r in caplog.records if r.getMessage().startswith("Compiling")], name


_BASE = dict(sigma_w2=1.5, sigma_b2=0.05, activation="tanh")
_UNSUPPORTED = [   # (MLP fields, message naming the argument, value and what is allowed)
    (dict(norm="batch"), r"`arch.norm` must be None or 'layer' for `{fn}`, got 'batch': BatchNorm"),
    (dict(alpha=0.5), r"`arch.alpha` must be 1 without a residual connection .*, got 0.5"),
    (dict(alpha=np.array([1.0, 2.0])), r"`arch.alpha` must be 1 without a residual .*, got .*2.0"),
    # refused by MLP itself, before the call
    (dict(norm="group", residual=True), r"`norm` must be one of None, 'layer', 'batch', got "
                                        r"'group'"),
    (dict(residual=True, alpha=0.0), r"`alpha` must be > 0 \(the residual branch scale\), got 0.0"),
    (dict(keep_prob=0.0), r"`keep_prob` must be in \(0, 1\] .*, got 0.0"),
    (dict(keep_prob=1.5, norm="layer"), r"`keep_prob` must be in \(0, 1\] .*, got 1.5"),
    (dict(residual=1), r"`residual` must be True or False, got 1"),
    (dict(residual="yes"), r"`residual` must be True or False, got 'yes'"),
]


@pytest.mark.parametrize("variant,match", _UNSUPPORTED)
def test_unsupported_variant_combinations_raise(variant, match):
  calls = {"q_map": lambda: mf.q_map(1.0, **_BASE, arch=mf.MLP(**variant)),
           "c_map": lambda: mf.c_map(0.5, q=1.0, **_BASE, arch=mf.MLP(**variant)),
           "propagate": lambda: mf.propagate(q_input=1.0, c_input=0.5, depth=3, **_BASE,
                                             arch=mf.MLP(**variant))}
  for fn, call in calls.items():
    with pytest.raises(ValueError, match=match.format(fn=fn)):
      call()


def test_variant_maps_need_what_they_read():
  # a residual network's length grows: no q* for c_map's default
  with pytest.raises(ValueError, match=r"`q` must be given to `c_map` with "
                                       r"arch=MLP\(residual=True\)"):
    mf.c_map(0.5, **_BASE, arch=mf.MLP(residual=True))
  # a Network with BatchNorm is refused by name, as the keyword is
  net = mf.Network("tanh", sigma_w2=1.5, sigma_b2=0.05, depth=3, arch=mf.MLP(norm="batch"))
  for call in (lambda: mf.q_map(1.0, network=net), lambda: mf.c_map(0.5, network=net),
               lambda: mf.propagate(net, q_input=1.0, c_input=0.5)):
    with pytest.raises(ValueError, match="`arch.norm` must be None or 'layer'.*got 'batch'"):
      call()
  # LayerNorm without a skip: c_map does not need q, and q only broadcasts
  kw = dict(**_BASE, arch=mf.MLP(norm="layer"))
  np.testing.assert_array_equal(mf.c_map(0.5, q=np.array([0.1, 9.0]), **kw),
                                np.full(2, mf.c_map(0.5, **kw)))


def test_the_maps_are_the_mlps():
  # q_map and c_map are the fully connected MLP's maps: another architecture (or None) is
  # refused by name, pointing to what to use
  for arch in (None, mf.Conv(kernel_size=3)):
    for fn, call in (("q_map", lambda: mf.q_map(1.0, **_BASE, arch=arch)),
                     ("c_map", lambda: mf.c_map(0.5, q=1.0, **_BASE, arch=arch))):
      with pytest.raises(ValueError, match=rf"`arch` of `{fn}` must be a meanfield.MLP .*"
                                           r"Conv.covariance_map\), got " + repr(arch)[:4]):
        call()
  with pytest.raises(ValueError, match=r"`arch` of `propagate` must be meanfield.MLP\(...\)"):
    mf.propagate(q_input=1.0, c_input=0.5, depth=3, **_BASE, arch=None)


@pytest.mark.slow
@pytest.mark.parametrize("name,slope_at_zero", [("elu", 1.0), ("tanh", 1.0), ("relu", 0.5 ** 0.5)])
def test_chi_1_at_zero_length_is_the_limit_of_the_slope(name, slope_at_zero, x64):
  # q* = 0 (sigma_b2 = 0, ordered): chi_1 is sigma_w2 times the limit of E[phi'(sqrt(q) z)^2]
  # as q -> 0+, which is phi'(0)^2 where phi' is continuous (ELU's slope is 1 on both sides;
  # autodiff at the kink itself gives 1/2 through jnp.minimum's tie rule) and the mean of the
  # one-sided squares at ReLU's jump.
  sigma_w2 = 0.8
  assert float(mf.q_star(sigma_w2=sigma_w2, sigma_b2=0.0, activation=name)) == 0.0
  chi = float(mf.chi_1(sigma_w2=sigma_w2, sigma_b2=0.0, activation=name))
  np.testing.assert_allclose(chi, sigma_w2 * slope_at_zero ** 2, rtol=1e-12)
  # and it is the limit: the slope at a small positive length is next to it
  near = float(mf.q_map_slope(1e-10, sigma_w2=sigma_w2, sigma_b2=0.0, activation=name))
  assert abs(chi - near) < 1e-4
