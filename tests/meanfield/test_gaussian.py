"""Split Gauss-Legendre Gaussian expectations against adaptive scipy quadrature."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import meanfield as mf
from meanfield.gaussian import DEFAULT_DEGREE, bivariate_expectation, gaussian_expectation
from tests.meanfield import quadrature_reference as ref

QS = (1e-3, 0.5, 5.0, 100.0)


def _second_moment(name, q, degree=DEFAULT_DEGREE):
  act = mf.activation(name)
  return gaussian_expectation(lambda h: act.fn(h) ** 2, jnp.asarray(q), kinks=act.kinks,
                              degree=degree)


@pytest.mark.slow
@pytest.mark.parametrize("name", mf.activation_names())
def test_second_moment_against_scipy(name, x64):
  phi = ref.NUMPY_ACTIVATIONS[name]
  kinks = mf.activation(name).kinks
  qs = QS + ((1e4,) if name == "tanh" else ())
  got = _second_moment(name, np.array(qs))
  want = [ref.expectation(lambda h: phi(h) ** 2, q, kinks=kinks) for q in qs]
  # the reference is good to ~1e-13; the rule converges to ~1e-14 (see the degree test)
  np.testing.assert_allclose(got, want, rtol=1e-12)


def test_tanh_published_value(x64):
  # E[tanh(z)^2] for z ~ N(0, 1) (issue: 0.3942944904)
  np.testing.assert_allclose(_second_moment("tanh", 1.0), 0.3942944904, rtol=0, atol=5e-11)


@pytest.mark.slow
def test_error_falls_geometrically_with_degree(x64):
  # an analytic integrand on each panel: the error drops by orders of magnitude per step
  exact = _second_moment("tanh", np.array(QS), degree=40)
  errors = [np.max(np.abs(_second_moment("tanh", np.array(QS), degree=d) / exact - 1))
            for d in (4, 8, 12)]
  assert errors[0] > 1e3 * errors[1] > 1e3 * 1e2 * errors[2] / 1e2
  assert errors[2] < 1e-11


BIVARIATE_CASES = [
    ("tanh", 100.0, 0.3), ("tanh", 3.0, 0.999), ("hard_tanh", 3.0, 0.999),
    pytest.param("tanh", 0.5, -0.7, marks=pytest.mark.slow),
    pytest.param("hard_tanh", 0.5, -0.7, marks=pytest.mark.slow),
    pytest.param("hard_tanh", 100.0, 0.3, marks=pytest.mark.slow),
    pytest.param("elu", 3.0, 0.999, marks=pytest.mark.slow),
    pytest.param("selu", 0.5, -0.7, marks=pytest.mark.slow),
    pytest.param("elu", 100.0, 0.3, marks=pytest.mark.slow),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,q,c", BIVARIATE_CASES)
def test_bivariate_against_nested_scipy(name, q, c, x64):
  act = mf.activation(name)
  phi = ref.NUMPY_ACTIVATIONS[name]
  got = bivariate_expectation(lambda a, b: act.fn(a) * act.fn(b), q, q, q * c,
                              kinks=act.kinks)
  want = ref.bivariate(lambda a, b: phi(a) * phi(b), q, c, kinks=act.kinks)
  # measured 2e-12 worst case at degree 10 (tanh, q = 100, c = 0.999); the claim is 1e-10
  np.testing.assert_allclose(got, want, rtol=1e-10)


def test_bivariate_unequal_variances_against_closed_form(x64):
  erf = mf.activation("erf")
  q11, q22, q12 = np.array([0.3, 2.0]), np.array([4.0, 0.1]), np.array([0.5, -0.2])
  got = bivariate_expectation(lambda a, b: erf.fn(a) * erf.fn(b), q11, q22, q12)
  np.testing.assert_allclose(got, erf.closed_forms["cross_moment"](q11, q22, q12), rtol=1e-12)


def test_pytree_valued_integrand_and_mean(x64):
  a, b = gaussian_expectation(lambda h: (h, h * h), 2.0, mean=0.5)
  np.testing.assert_allclose([a, b], [0.5, 2.25], rtol=1e-14)


def test_zero_variance_evaluates_at_the_mean(x64):
  got = gaussian_expectation(jnp.tanh, 0.0, mean=0.7)
  np.testing.assert_allclose(got, np.tanh(0.7), rtol=1e-14)


def test_float32_accuracy_and_dtype():
  q = jnp.asarray([0.5, 5.0, 100.0], jnp.float32)
  got = _second_moment("tanh", q)
  assert got.dtype == jnp.float32
  with jax.enable_x64(True):
    want = np.asarray(_second_moment("tanh", np.asarray(q, np.float64)))
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_broadcasting_shapes():
  got = bivariate_expectation(lambda a, b: a * b, jnp.ones((3, 1)), jnp.ones((1, 2)),
                              jnp.full((1, 1), 0.5))
  assert got.shape == (3, 2)
  np.testing.assert_allclose(got, 0.5, rtol=1e-5)


def test_degree_must_be_positive():
  with pytest.raises(ValueError, match="`degree` must be an integer >= 1, got 0"):
    gaussian_expectation(jnp.tanh, 1.0, degree=0)


def test_jit_and_grad(x64):
  f = lambda q: gaussian_expectation(lambda h: jnp.tanh(h) ** 2, q)
  np.testing.assert_allclose(jax.jit(f)(1.3), f(1.3), rtol=1e-14)
  # d/dq E[phi(sqrt(q) z)^2] = E[phi'^2 + phi phi''] (Price's theorem)
  want = gaussian_expectation(
      lambda h: (1 - jnp.tanh(h) ** 2) ** 2 - 2 * jnp.tanh(h) ** 2 * (1 - jnp.tanh(h) ** 2), 1.3)
  np.testing.assert_allclose(jax.grad(f)(1.3), want, rtol=1e-11)


def test_kinks_and_degree_as_numpy_or_jax_scalars(x64):
  # They key the compiled rule: any real scalars are read as Python numbers, so a
  # kink given as a JAX scalar gives the rule of the same float.
  relu2 = lambda h: jnp.maximum(h, 0) ** 2
  want = gaussian_expectation(relu2, 2.0, kinks=(0.0,), degree=16)
  got = gaussian_expectation(relu2, 2.0, kinks=[jnp.asarray(0.0)], degree=np.int64(16))
  assert float(got) == float(want) and abs(float(want) - 1.0) < 1e-13   # E[relu(h)^2] = q/2
  pair = lambda a, b: jnp.maximum(a, 0) * jnp.maximum(b, 0)
  want = bivariate_expectation(pair, 1.0, 1.0, 0.5, kinks=(0.0,))
  got = bivariate_expectation(pair, 1.0, 1.0, 0.5, kinks=[np.float32(0.0)], degree=np.int64(10))
  theta = np.arccos(0.5)       # the arc-cosine kernel of order 1 (Cho and Saul 2009)
  assert float(got) == float(want)
  np.testing.assert_allclose(float(want), (np.sin(theta) + (np.pi - theta) * np.cos(theta))
                             / (2 * np.pi), rtol=1e-12)


@pytest.mark.parametrize("kw, match", [
    (dict(degree=2.5), r"`degree` must be an integer >= 1, got 2.5"),
    (dict(degree=0), r"`degree` must be an integer >= 1, got 0"),
    (dict(degree=True), r"`degree` must be an integer >= 1, got True"),
    (dict(kinks=None), r"`kinks` must be a sequence of finite real numbers, got None"),
    (dict(kinks=["x"]), r"`kinks` must be a sequence of finite real numbers, got \['x'\]"),
    (dict(kinks=[np.nan]), r"`kinks` must be a sequence of finite real numbers, got \[nan\]"),
])
def test_bad_kinks_or_degree_raise(kw, match):
  with pytest.raises(ValueError, match=match):
    gaussian_expectation(jnp.tanh, 1.0, **kw)
  with pytest.raises(ValueError, match=match):
    bivariate_expectation(jnp.multiply, 1.0, 1.0, 0.5, **kw)


@pytest.mark.slow
def test_merge_of_panel_cuts_is_the_sorted_union(x64):
  """The rule's merge of two sorted rows (a constant one, and one per point) is their
  sorted union, exactly, with ties, infinities and a batch of rows; and its gradient
  reaches the values it selects."""
  from meanfield.gaussian import _merge
  rng = np.random.default_rng(0)
  a = np.sort(rng.normal(size=7))
  b = np.sort(rng.normal(size=(5, 9)), axis=-1)
  b[0] = np.sort(np.r_[a[:3], rng.normal(size=6)])  # ties between the rows
  b[1, -1] = np.inf
  b[2, 0] = -np.inf
  merged = np.asarray(_merge(a, jnp.asarray(b)))
  expected = np.sort(np.concatenate([np.broadcast_to(a, (5, 7)), b], axis=-1), axis=-1)
  np.testing.assert_array_equal(merged, expected)
  # a per-point first row too (the bivariate rule's extra cuts)
  a2 = np.sort(rng.normal(size=(5, 4)), axis=-1)
  np.testing.assert_array_equal(np.asarray(_merge(jnp.asarray(a2), jnp.asarray(b))),
                                np.sort(np.concatenate([a2, b], axis=-1), axis=-1))
  # d(sum of merged)/db = 1 for every finite entry of b (each is selected once)
  g = jax.grad(lambda v: jnp.sum(_merge(a, v)))(jnp.asarray(b[3:]))
  np.testing.assert_allclose(g, 1.0)
