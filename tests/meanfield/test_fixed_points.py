"""fixed_point (q*, c*, chi_c, ...): published values, closed forms, fixedness, flags, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import meanfield as mf
from meanfield import _fixed_points


@pytest.mark.slow
def test_tanh_critical_point_published(tanh_c, x64):
  # Schoenholz et al. 2017: tanh, sigma_b2 = 0.05 is critical at sigma_w2 = 1.7610 (test_phase)
  # with q* = 0.5700; our critical value 1.76095464 (to 1e-8) gives chi_1 = 1 to ~1e-8
  sw2, fp, chi_c, chi_1, q, mapped = tanh_c
  np.testing.assert_allclose(q[1], 0.5700, atol=5e-5)
  np.testing.assert_allclose(chi_1[1], 1.0, atol=1e-7)


@pytest.mark.slow
def test_relu_closed_form_and_special_values(x64):
  sw2 = jnp.array([0.5, 1.0, 1.9, 1.5, 2.0, 2.5, 3.0])
  sb2 = jnp.array([0.1, 0.3, 0.1, 0.0, 0.1, 0.1, 0.0])
  fp = mf.fixed_point(sigma_w2=sw2, sigma_b2=sb2, activation="relu")
  want = np.array([0.1 / 0.75, 0.3 / 0.5, 0.1 / 0.05, 0.0, np.inf, np.inf, np.inf])
  np.testing.assert_allclose(fp.q_star, want, rtol=1e-13)
  assert np.all(fp.converged)
  # chi_1 = sigma_w2 / 2 for ReLU, also where q* is infinite
  np.testing.assert_allclose(mf.chi_1(sigma_w2=sw2, sigma_b2=sb2, activation="relu"), sw2 / 2)


GRID = dict(sigma_w2=np.array([0.6, 1.2, 1.75, 2.5, 4.0])[:, None],
            sigma_b2=np.array([0.0, 0.05, 0.3])[None, :])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tanh", pytest.param("erf", marks=pytest.mark.slow),
                                  pytest.param("hard_tanh", marks=pytest.mark.slow),
                                  pytest.param("softplus", marks=pytest.mark.slow),
                                  pytest.param("elu", marks=pytest.mark.slow),
                                  pytest.param("gelu", marks=pytest.mark.slow)])
def test_q_star_is_fixed_and_stable(name, x64):
  fp = mf.fixed_point(**GRID, activation=name)
  assert fp.q_star.shape == (5, 3) and np.all(fp.converged)
  q = fp.q_star
  finite = np.isfinite(q)
  qm = mf.q_map(jnp.where(finite, q, 1), **GRID, activation=name)
  np.testing.assert_allclose(np.where(finite, qm, q), q, rtol=1e-13, atol=1e-300)
  # stable: the q-map's slope is below 1 there (q* = 0 is a limit point: skipped)
  positive = finite & (q > 0)
  slope = mf.q_map_slope(jnp.where(positive, q, 1), **GRID, activation=name)
  assert np.all(np.asarray(slope)[positive] < 1)


@pytest.fixture(scope="module")
def tanh_c():
  with jax.enable_x64(True):
    sw2 = jnp.array([1.2, 1.76095464, 1.76095464 + 1e-4, 2.5, 4.0])
    sb2 = np.full(5, 0.05)    # the shapes of FIELDS: one compiled fixed_point for both
    fp = mf.fixed_point(sigma_w2=sw2, sigma_b2=sb2, activation="tanh")
    chi_c, chi_1, q = fp.chi_c, fp.chi_1, fp.q_star
    mapped = mf.c_map(fp.c_star, sigma_w2=sw2, sigma_b2=sb2, activation="tanh", q=q)
    return sw2, fp, chi_c, chi_1, q, mapped


def test_c_star_is_fixed(tanh_c, x64):
  sw2, fp, chi_c, chi_1, q, mapped = tanh_c
  assert np.all(fp.converged)
  assert fp.c_star[0] == 1.0                         # ordered
  assert 1 - fp.c_star[1] < 1e-6                     # critical (to 1e-8 in sigma_w2)
  assert np.all(fp.c_star[2:] < 1)                   # chaotic
  np.testing.assert_allclose(mapped, fp.c_star, rtol=1e-13)
  # just above criticality c* is close to 1 and 1 - c* is resolved: fixed to 1e-9 relative
  np.testing.assert_allclose(1 - mapped[2], 1 - fp.c_star[2], rtol=1e-9)
  assert 1 - fp.c_star[2] < 1e-3


def test_chi_c(tanh_c, x64):
  sw2, fp, chi_c, chi_1, q, _ = tanh_c
  np.testing.assert_allclose(chi_c[0], chi_1[0], rtol=1e-14)       # ordered: chi_c = chi_1
  assert np.all(chi_c[2:] < 1) and np.all(chi_1[2:] > 1)


@pytest.mark.slow
def test_chi_c_is_the_slope_at_c_star(tanh_c, x64):
  sw2, fp, chi_c, chi_1, q, _ = tanh_c
  f = lambda c: mf.c_map(c, sigma_w2=sw2[3], sigma_b2=0.05, activation="tanh", q=q[3])
  np.testing.assert_allclose(chi_c[3], jax.jvp(f, (fp.c_star[3],), (1.0,))[1], rtol=1e-10)


def test_c_star_closed_form_erf_against_bisection(x64):
  sw2 = 3.0
  c = mf.fixed_point(sigma_w2=sw2, sigma_b2=0.02, activation="erf").c_star
  q = float(mf.q_star(sigma_w2=sw2, sigma_b2=0.02, activation="erf"))
  cmap = lambda x: (sw2 * 2 / np.pi * np.arcsin(2 * q * x / (1 + 2 * q)) + 0.02) / q - x
  lo, hi = 0.0, 0.999
  for _ in range(200):
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if cmap(mid) > 0 else (lo, mid)
  np.testing.assert_allclose(c, lo, rtol=1e-13)


@pytest.mark.slow
def test_odd_activation_without_bias_has_c_star_zero(x64):
  c = mf.fixed_point(sigma_w2=jnp.array([2.0, 3.0]), sigma_b2=0.0, activation="erf").c_star
  np.testing.assert_allclose(c, 0.0, atol=1e-12)


def test_gradient_by_implicit_differentiation(x64):
  g = lambda sb2: mf.q_star(sigma_w2=1.0, sigma_b2=sb2, activation="relu")
  np.testing.assert_allclose(jax.grad(g)(0.3), 2.0, rtol=1e-12)


@pytest.mark.slow
def test_gradients_of_solutions(x64):
  h = 1e-5
  f = lambda sw2: mf.q_star(sigma_w2=sw2, sigma_b2=0.05, activation="tanh")
  # central differences: O(h^2) ~ 1e-10 truncation, 1e-16 / 1e-5 roundoff
  np.testing.assert_allclose(jax.grad(f)(1.5), (f(1.5 + h) - f(1.5 - h)) / (2 * h), rtol=1e-7)
  c = lambda sw2: mf.fixed_point(sigma_w2=sw2, sigma_b2=0.05, activation="erf").c_star
  np.testing.assert_allclose(jax.grad(c)(2.5), (c(2.5 + h) - c(2.5 - h)) / (2 * h), rtol=1e-6)


@pytest.mark.slow
@settings(max_examples=10)
@given(st.lists(st.floats(0.05, 5.0), min_size=4, max_size=4),
       st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4))
def test_property_q_star_fixed_float32(sw2, sb2):
  q = _tanh_q_star(jnp.asarray(sw2, jnp.float32), jnp.asarray(sb2, jnp.float32))
  assert q.dtype == jnp.float32 and np.all(np.isfinite(q))
  qm = mf.q_map(q, sigma_w2=jnp.asarray(sw2, jnp.float32), sigma_b2=jnp.asarray(sb2, jnp.float32),
                activation="tanh")
  np.testing.assert_allclose(qm, q, rtol=1e-5, atol=1e-7)


@jax.jit
def _tanh_q_star(sw2, sb2):
  return mf.q_star(sigma_w2=sw2, sigma_b2=sb2, activation="tanh")


@pytest.mark.slow
def test_float32_against_float64():
  got = mf.fixed_point(sigma_w2=jnp.float32(2.5), sigma_b2=jnp.float32(0.05),
                       activation="tanh").c_star
  assert got.dtype == jnp.float32
  with jax.enable_x64(True):
    want = mf.fixed_point(sigma_w2=2.5, sigma_b2=0.05, activation="tanh").c_star
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_throw_is_silent_when_converged(x64):
  fp = mf.fixed_point(sigma_w2=1.5, sigma_b2=0.1, activation="erf", throw=True)
  assert bool(fp.converged)


def test_bad_input():
  with pytest.raises(ValueError, match="`sigma_w2` must be >= 0"):
    mf.q_star(sigma_w2=-1.0, sigma_b2=0.1, activation="tanh")
  with pytest.raises(ValueError, match="`sigma_b2` must be >= 0"):
    mf.fixed_point(sigma_w2=1.0, sigma_b2=-0.1, activation="tanh")


@pytest.mark.slow
@settings(max_examples=10)
@given(st.lists(st.floats(0.05, 5.0), min_size=4, max_size=4),
       st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4))
def test_property_fixed_points_are_fixed(sw2, sb2):
  with jax.enable_x64(True):
    sw2, sb2 = np.asarray(sw2), np.asarray(sb2)
    q = mf.q_star(sigma_w2=sw2, sigma_b2=sb2, activation="erf")
    c = mf.fixed_point(sigma_w2=sw2, sigma_b2=sb2, activation="erf").c_star
    positive = np.asarray(q) > 0
    assert np.all(np.isfinite(q)) and np.all((c >= 0) & (c <= 1) | ~positive)
    np.testing.assert_allclose(mf.q_map(q, sigma_w2=sw2, sigma_b2=sb2, activation="erf"), q,
                               rtol=1e-13, atol=1e-300)
    safe_q, safe_c = np.where(positive, q, 1), np.where(positive, c, 0.5)
    mapped = mf.c_map(safe_c, sigma_w2=sw2, sigma_b2=sb2, activation="erf", q=safe_q)
    np.testing.assert_allclose(np.asarray(mapped)[positive], np.asarray(c)[positive],
                               rtol=1e-12, atol=1e-14)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tanh", "erf"])
def test_bounded_activation_q_star_at_huge_sigma_w2(name, x64):
  # sup phi^2 = 1: q* = sigma_w2 E[phi^2] + sigma_b2 ~ sigma_w2 (1 - O(q^-1/2)) at any finite
  # sigma_w2 (the bracketing ladder once ended at 1e16 and gave a confident inf beyond).
  # The q* solver's own report (private): at the float maximum fixed_point's converged is
  # False, honestly, as the c* solve there overflows (q_map(q*) = inf).
  sw2 = jnp.array([1e17, 1e100, 1e300, 1.7e308])
  fp = mf.fixed_point(sigma_w2=sw2, sigma_b2=0.05, activation=name)
  solver = _fixed_points.q_root(mf.activation(name), sw2, 0.05)
  assert np.all(solver.converged) and np.all(np.isfinite(fp.q_star))
  assert np.array_equal(solver.value, fp.q_star) and np.all(fp.converged[:3])
  rel = np.asarray(fp.q_star / sw2 - 1)
  assert np.all((rel <= 0) & (rel > -3 / np.sqrt(np.asarray(sw2))))
  np.testing.assert_allclose(mf.q_map(fp.q_star, sigma_w2=sw2, sigma_b2=0.05, activation=name),
                             fp.q_star, rtol=1e-13)
  with jax.enable_x64(False):                        # float32: up to its own maximum, 3.4e38
    fp32 = mf.fixed_point(sigma_w2=np.float32(1e30), sigma_b2=0.05, activation=name)
    solver32 = _fixed_points.q_root(mf.activation(name), np.float32(1e30), np.float32(0.05))
    assert solver32.converged and np.isclose(fp32.q_star, 1e30, rtol=1e-5)   # 32-bit accuracy


@pytest.mark.slow
def test_gradients_where_q_star_is_zero(x64):
  # tanh, sigma_b2 = 0, sigma_w2 = 0.5: q* = 0 is stable. Raising sigma_b2 gives
  # q* ~ sigma_b2 / (1 - q_map_slope(0)) = 2 sigma_b2; raising sigma_w2 leaves q* = 0.
  # chi_1 = sigma_w2 E[sech^4(sqrt(q) z)] = sigma_w2 (1 - 2q + ...), so dchi_1/dsigma_b2 = -2.
  w = 0.5
  q_b = lambda b: mf.q_star(sigma_w2=w, sigma_b2=b, activation="tanh")
  slope = mf.q_map_slope(0.0, sigma_w2=w, sigma_b2=0.0, activation="tanh")
  np.testing.assert_allclose(jax.grad(q_b)(0.0), 1 / (1 - slope), rtol=1e-12)
  np.testing.assert_allclose(jax.grad(q_b)(0.0), 2.0, rtol=1e-12)
  assert jax.grad(lambda v: mf.q_star(sigma_w2=v, sigma_b2=0.0, activation="tanh"))(w) == 0
  chi1 = lambda b: mf.chi_1(sigma_w2=w, sigma_b2=b, activation="tanh")
  np.testing.assert_allclose(jax.grad(chi1)(0.0), -2.0, rtol=1e-12)


@pytest.mark.slow    # ~2 min: gradients of the whole c* solve and of depth_scales compile slowly
def test_gradients_of_c_star_and_depth_scales_where_q_star_is_zero(x64):
  # as above; c* = 1 throughout the ordered phase, xi_q and xi_c against forward differences
  w, h = 0.5, 1e-7
  c_star = lambda b: mf.fixed_point(sigma_w2=w, sigma_b2=b, activation="tanh").c_star
  assert jax.grad(c_star)(0.0) == 0
  for field in ("xi_q", "xi_c"):
    xi = lambda b: getattr(mf.depth_scales(sigma_w2=w, sigma_b2=b, activation="tanh"), field)
    np.testing.assert_allclose(jax.grad(xi)(0.0), (xi(h) - xi(0.0)) / h, rtol=1e-5)


@pytest.mark.slow
def test_he_point_of_relu(x64):
  # (sigma_w2, sigma_b2) = (2, 0): q_map(q) = q for every q. q* = 0 (reached from small
  # lengths, the limit from the ordered side); the c-map is scale-free, its only fixed point
  # c* = 1 with slope chi_c = chi_1 = 1, so xi_q = xi_c = inf.
  kw = dict(sigma_w2=2.0, sigma_b2=0.0, activation="relu")
  fp = mf.fixed_point(**kw)
  assert fp.q_star == 0 and fp.c_star == 1 and fp.converged
  assert fp.chi_c == 1 and fp.chi_1 == 1 and mf.chi_1(**kw) == 1
  ds = mf.depth_scales(**kw)
  assert np.isinf(ds.xi_q) and np.isinf(ds.xi_c) and np.isinf(fp.xi_q) and np.isinf(fp.xi_c)
  c = jnp.array([-0.5, 0.0, 0.5, 0.9])
  np.testing.assert_allclose(mf.c_map(c, **kw), mf.c_map(c, **kw, q=1.0), rtol=1e-14)
  # just below, q* = 0 too, and xi_q = -1/log(0.995) (the one-sided slope, not the kink's 0)
  below = mf.depth_scales(sigma_w2=1.99, sigma_b2=0.0, activation="relu")
  np.testing.assert_allclose([below.xi_q, below.xi_c], -1 / np.log(0.995), rtol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tanh",                                        # Mehler series
                                  pytest.param("erf", marks=pytest.mark.slow)])  # closed forms
def test_near_criticality_c_star_is_linear_in_the_distance(name, x64):
  # To leading order 1 - c* = 2 (chi_1 - 1) / C''(1) and 1 - chi_c = chi_1 - 1: on the chaotic
  # side c* < 1, chi_c < 1, and (1 - c*) / (chi_1 - 1) is one constant from 1e-10 of the
  # critical line up to 1e-5 (its next term is O(1 - c*), below 1e-4 relative here). The
  # points straddle the switch between the solvers and the expansion at 1 - chi_1 = 1e-6,
  # so the two must agree. A solver alone returned noise (chi_c > 1, ratios off by 6x).
  crit = float(mf.critical_sigma_w2(sigma_b2=0.05, activation=name))
  sw2 = crit * (1 + np.array([1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 3e-6, 1e-5]))
  fp = mf.fixed_point(sigma_w2=sw2, sigma_b2=0.05, activation=name)
  chi_c, chi_1 = fp.chi_c, np.asarray(fp.chi_1)
  delta, distance = 1 - np.asarray(fp.c_star), chi_1 - 1
  assert np.all(fp.converged) and np.all(distance > 0)
  assert np.all(delta > 0) and np.all(np.asarray(chi_c) < 1)
  ratio = delta / distance
  # chi_1 - 1 itself is known to ~1e-16 absolute: relative 1e-6 at the closest point
  np.testing.assert_allclose(ratio, ratio[3], rtol=2e-4)
  np.testing.assert_allclose((1 - np.asarray(chi_c)) / distance, 1, rtol=2e-4)


@pytest.mark.slow
def test_relu_gradients_in_the_ordered_phase(x64):
  # ReLU is ordered below sigma_w2 = 2: c* = 1 (zero gradient), chi_c = chi_1 = sigma_w2 / 2,
  # xi_c = -1 / log(sigma_w2 / 2); with a bias q* > 0 and the closed forms' derivatives at
  # c = 1 are infinite, which leaked nan into every gradient.
  for sb2 in (0.0, 0.1):
    grad = lambda f: jax.grad(lambda s: f(sigma_w2=s, sigma_b2=sb2, activation="relu"))(1.5)
    assert float(grad(lambda **kw: mf.fixed_point(**kw).c_star)) == 0.0
    np.testing.assert_allclose(grad(lambda **kw: mf.fixed_point(**kw).chi_c), 0.5, rtol=1e-12)
    xi = lambda **kw: mf.depth_scales(**kw).xi_c
    np.testing.assert_allclose(grad(xi), 1 / (1.5 * np.log(1.5 / 2) ** 2), rtol=1e-10)


@pytest.mark.slow
def test_eager_and_traced_calls_agree_where_the_series_needs_quadrature(x64):
  # Eager calls run the Mehler-series program and, only for points its bound does not
  # certify (tanh at q* ~ 40, where phi(sqrt(q) z) is nearly a step), a separate 2-D
  # quadrature program; under jit both live in one program. Same numbers either way.
  sw2 = jnp.array([2.5, 40.0])
  eager = mf.fixed_point(sigma_w2=sw2, sigma_b2=0.05, activation="tanh")
  traced = jax.jit(lambda s: mf.fixed_point(sigma_w2=s, sigma_b2=0.05, activation="tanh"))(sw2)
  assert np.all(eager.converged) and np.all(traced.converged)
  np.testing.assert_allclose(eager.c_star, traced.c_star, rtol=1e-12)
  np.testing.assert_allclose(eager.chi_c, traced.chi_c, rtol=1e-12)
  assert 0 < float(eager.c_star[1]) < float(eager.c_star[0]) < 1


@pytest.mark.slow
def test_lengths_fixed_to_rounding_fall_to_zero_as_critical_init_says(x64):
  # hard_tanh at (1, 0): E[clip(sqrt(q) z)^2] < q for every q > 0, by less than rounding
  # below q ~ 0.02; leaky ReLU on its critical line at sigma_b2 = 0 is linear on lengths.
  # q_star gives the limit the length falls to, 0, as critical_init does (it gave 0.01 and
  # 1e-11, where F first rounded below 0).
  from meanfield.activations import LEAKY_RELU_SLOPE
  for name, sigma_w2 in [("hard_tanh", 1.0), ("leaky_relu", 2 / (1 + LEAKY_RELU_SLOPE ** 2))]:
    assert float(mf.q_star(sigma_w2=sigma_w2, sigma_b2=0.0, activation=name)) == 0.0
    assert float(mf.critical_init(name, sigma_b2=0.0).q_star) == 0.0
  # a genuine fixed point above a flat start stays: hard_tanh at sigma_w2 = 1.1 (F > 0 below it)
  q = float(mf.q_star(sigma_w2=1.1, sigma_b2=0.0, activation="hard_tanh"))
  assert q > 0.2
  np.testing.assert_allclose(float(mf.q_map(q, sigma_w2=1.1, sigma_b2=0.0, activation="hard_tanh")),
                             q, rtol=1e-10)


# The shapes of tanh_c's fixed_point (one compiled program for tanh).
FIELDS = dict(sigma_w2=np.array([0.8, 1.5, 2.5, 3.0, 4.0]),
              sigma_b2=np.array([0.0, 0.05, 0.1, 0.2, 0.05]))


@pytest.mark.parametrize("name", ["tanh", "relu", pytest.param("erf", marks=pytest.mark.slow)])
def test_fixed_point_fields_are_those_of_q_star_chi_1_and_depth_scales(name, x64):
  # the same programs: bitwise equal, at ordered and chaotic points (q* = 0 and q* = inf too)
  kw = dict(**FIELDS, activation=name)
  fp, ds = mf.fixed_point(**kw), mf.depth_scales(**kw)
  for got, want in [(fp.q_star, mf.q_star(**kw)), (fp.chi_1, mf.chi_1(**kw)),
                    (fp.xi_q, ds.xi_q), (fp.xi_c, ds.xi_c)]:
    assert np.asarray(got).tobytes() == np.asarray(want).tobytes()
  assert fp.extra is None                       # the MLP has no architecture-specific values
  assert all(getattr(fp, f).shape == (5,) for f in fp._fields if f != "extra")
  assert fp.converged.dtype == bool and np.all(fp.converged)


def test_fixed_point_gradient_of_c_star(x64):
  # chaotic erf (closed forms): c* < 1 moves with sigma_w2; central differences ~1e-10
  c = lambda sw2: mf.fixed_point(sigma_w2=sw2, sigma_b2=0.05, activation="erf").c_star
  h = 1e-5
  np.testing.assert_allclose(jax.grad(c)(2.5), (c(2.5 + h) - c(2.5 - h)) / (2 * h), rtol=1e-6)
  assert 0 < float(c(2.5)) < 1


def test_fixed_point_given_length(x64):
  # q: c* of the c-map at that length; the length fields stay those of q*
  kw = dict(sigma_w2=2.5, sigma_b2=0.05, activation="erf")
  fp, own = mf.fixed_point(**kw, q=0.7), mf.fixed_point(**kw)
  assert fp.q_star == own.q_star and fp.chi_1 == own.chi_1 and fp.xi_q == own.xi_q
  np.testing.assert_allclose(mf.c_map(fp.c_star, **kw, q=0.7), fp.c_star, rtol=1e-12)
  assert fp.c_star != own.c_star


def test_fixed_point_refuses_what_it_does_not_cover():
  kw = dict(sigma_w2=1.5, sigma_b2=0.05, activation="tanh")
  with pytest.raises(ValueError, match="`arch.norm` must be None or 'layer'.*got 'batch'"):
    mf.fixed_point(**kw, arch=mf.MLP(norm="batch"))
  for p in (0.0, 1.5, -0.2):
    with pytest.raises(ValueError, match=r"`keep_prob` must be in \(0, 1\]"):
      mf.fixed_point(**kw, arch=mf.MLP(keep_prob=p))
  with pytest.raises(ValueError, match="`arch.keep_prob` must be 1 with arch.norm='layer'.*0.9"):
    mf.fixed_point(**kw, arch=mf.MLP(norm="layer", keep_prob=0.9))
  with pytest.raises(ValueError, match="`q` must be None .* arch.norm='layer'"):
    mf.fixed_point(**kw, arch=mf.MLP(norm="layer"), q=0.5)
  with pytest.raises(ValueError, match="`q` must be None .* arch.keep_prob < 1"):
    mf.fixed_point(**kw, arch=mf.MLP(keep_prob=0.8), q=0.5)
  with pytest.raises(ValueError, match="`q` must be >= 0"):
    mf.fixed_point(**kw, q=-0.5)
  with pytest.raises(ValueError, match="residual=True, which `fixed_point` does not cover"):
    mf.fixed_point(mf.Network(**kw, arch=mf.MLP(residual=True)))
  for arch in (mf.MLP(residual=True), mf.MLP(residual=True, alpha=0.5)):   # as a keyword too
    with pytest.raises(ValueError, match="`arch` has residual=True.*which `fixed_point` does "
                                         "not cover"):
      mf.fixed_point(**kw, arch=arch)
  with pytest.raises(ValueError, match=r"`arch` of `fixed_point` must be meanfield.MLP\(...\)"):
    mf.fixed_point(**kw, arch=None)
