"""The activation table: lookup, derivatives and closed-form Gaussian integrals."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import meanfield as mf
from tests.meanfield import quadrature_reference as ref

NAMES = mf.activation_names()
# points away from every kink
X = np.array([-3.1, -1.7, -0.6, -0.2, 0.3, 0.8, 1.4, 2.9])


def test_table_has_the_required_activations():
  required = {"linear", "relu", "leaky_relu", "tanh", "hard_tanh", "erf", "sigmoid",
              "softplus", "gelu", "silu", "selu", "elu"}
  assert required <= set(NAMES)
  assert all(mf.activation(n).name == n for n in NAMES)


def test_unknown_name_lists_the_known_ones():
  with pytest.raises(ValueError, match="`activation` must be one of .*tanh.*got 'tanhh'"):
    mf.activation("tanhh")
  with pytest.raises(ValueError, match="`activation`"):
    mf.activation(3)


def test_callable_is_wrapped_as_smooth():
  act = mf.activation(jnp.sin)
  assert act.kinks == () and act.closed_forms == {}
  np.testing.assert_allclose(act.derivative(jnp.asarray(X)), np.cos(X), rtol=1e-6)
  assert mf.activation(act) is act


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_explicit_derivatives_match_autodiff(name, x64):
  act = mf.activation(name)
  x = jnp.asarray(X)
  auto1 = jnp.vectorize(jax.grad(act.fn))(x)
  auto2 = jnp.vectorize(jax.grad(jax.grad(act.fn)))(x)
  np.testing.assert_allclose(act.derivative(x), auto1, rtol=1e-13, atol=1e-15)
  np.testing.assert_allclose(act.second_derivative(x), auto2, rtol=1e-12, atol=1e-14)
  np.testing.assert_allclose(act(x), ref.NUMPY_ACTIVATIONS[name](X), rtol=1e-14, atol=1e-15)


CLOSED_1D = [(n, q) for n in ("linear", "relu", "leaky_relu", "erf", "hard_tanh")
             for q in (1e-4, 0.3, 2.0, 150.0)]


@pytest.mark.parametrize("name,q", CLOSED_1D)
def test_closed_form_second_moments_against_scipy(name, q, x64):
  act = mf.activation(name)
  phi = ref.NUMPY_ACTIVATIONS[name]
  d = {"linear": lambda x: np.ones_like(x), "leaky_relu": lambda x: np.where(x > 0, 1.0, 0.01),
       **ref.NUMPY_DERIVATIVES}[name]
  kinks = act.kinks
  want = ref.expectation(lambda h: phi(h) ** 2, q, kinks=kinks)
  want_d = ref.expectation(lambda h: d(h) ** 2, q, kinks=kinks)
  forms = act.closed_forms
  # quadrature reference good to ~1e-13 relative
  np.testing.assert_allclose(forms["second_moment"](jnp.float64(q)), want, rtol=1e-11)
  np.testing.assert_allclose(forms["derivative_second_moment"](jnp.float64(q)), want_d, rtol=1e-11)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["linear", "relu", "leaky_relu", "erf"])
@pytest.mark.parametrize("c", [-0.6, pytest.param(0.4, marks=pytest.mark.slow), 0.999])
def test_closed_form_pair_moments_against_scipy(name, c, x64):
  q = 0.8
  act = mf.activation(name)
  phi = ref.NUMPY_ACTIVATIONS[name]
  forms = act.closed_forms
  want = ref.bivariate(lambda a, b: phi(a) * phi(b), q, c, kinks=act.kinks)
  want_diff = ref.bivariate(lambda a, b: (phi(a) - phi(b)) ** 2, q, c, kinks=act.kinks)
  q64, c64 = jnp.float64(q), jnp.float64(c)
  np.testing.assert_allclose(forms["cross_moment"](q64, q64, q64 * c64), want, rtol=1e-10)
  np.testing.assert_allclose(forms["squared_difference"](q64, c64), want_diff, rtol=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["relu", "leaky_relu", "erf", "linear"])
def test_closed_form_derivative_cross_moment_is_the_c_derivative(name, x64):
  # Price's theorem: d E[phi(u1) phi(u2)] / d q12 = E[phi'(u1) phi'(u2)].
  forms = mf.activation(name).closed_forms
  q11, q22 = jnp.float64(0.7), jnp.float64(1.9)
  q12 = jnp.linspace(-0.9, 0.9, 7) * jnp.sqrt(q11 * q22)
  grad = jax.vmap(jax.grad(lambda x: forms["cross_moment"](q11, q22, x)))(q12)
  np.testing.assert_allclose(forms["derivative_cross_moment"](q11, q22, q12), grad, rtol=1e-12)


def test_squared_difference_has_no_cancellation_near_one(x64):
  # E[(phi(u1) - phi(u2))^2] ~ q (1 - c) chi for c -> 1: its ratio to (1 - c) must stay smooth.
  for name in ("relu", "leaky_relu", "erf", "linear"):
    forms = mf.activation(name).closed_forms
    eps = jnp.asarray([1e-4, 1e-8, 1e-12])
    ratio = forms["squared_difference"](jnp.float64(1.0), 1 - eps) / (2 * eps)
    # -> E[phi'^2] q; the next term is O(sqrt(eps)) (kinks) or O(eps)
    np.testing.assert_allclose(ratio[1:], forms["derivative_second_moment"](jnp.float64(1.0)),
                               rtol=1e-3)
    assert np.all(np.isfinite(ratio))


def _reference_derivatives(name, x):
  """``(phi'(x), phi''(x))`` from closed forms in long double (numpy) and scipy's ndtr."""
  from scipy import special
  x = np.asarray(x, np.longdouble)
  sig = lambda t: 1 / (1 + np.exp(-t))
  pdf = np.exp(-x * x / 2) / np.sqrt(np.longdouble(2) * np.pi)
  ndtr = np.asarray(special.ndtr(np.asarray(x, np.float64)), np.longdouble)
  if name == "tanh":
    d1 = 1 / np.cosh(x) ** 2
    return d1, -2 * np.tanh(x) * d1
  if name == "erf":
    return 2 / np.sqrt(np.pi) * np.exp(-x * x), -4 / np.sqrt(np.pi) * x * np.exp(-x * x)
  if name == "sigmoid":
    d1 = sig(x) * sig(-x)
    return d1, d1 * (sig(-x) - sig(x))
  if name == "softplus":
    return sig(x), sig(x) * sig(-x)
  if name == "silu":
    d1 = sig(x) * (1 + x * sig(-x))
    return d1, sig(x) * sig(-x) * (2 + x * (sig(-x) - sig(x)))
  if name == "gelu":
    return ndtr + x * pdf, (2 - x * x) * pdf
  raise KeyError(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tanh", "erf", "sigmoid", "softplus", "silu", "gelu"])
def test_derivatives_keep_relative_accuracy_in_the_tails(name, x64):
  # phi' and phi'' against long-double closed forms out to |x| = 300: relative error below
  # 1e-12 wherever the value is a normal float64 (1 - tanh^2 gave 0 at x = 20, true 1.7e-17).
  # gelu' has a root near x = -0.75, where only an absolute error of eps is meaningful;
  # the grid avoids it (x = -0.5 is far enough: |gelu'| = 0.13).
  x = np.array([-300.0, -40.0, -20.0, -5.0, -0.5, 0.0, 0.7, 3.0, 20.0, 40.0, 300.0])
  act = mf.activation(name)
  for got, want in zip((act.derivative(jnp.asarray(x)), act.second_derivative(jnp.asarray(x))),
                       _reference_derivatives(name, x)):
    want = np.asarray(want, np.float64)
    normal = np.abs(want) > np.finfo(np.float64).tiny
    np.testing.assert_allclose(np.asarray(got)[normal], want[normal], rtol=1e-12)
    np.testing.assert_array_less(np.abs(np.asarray(got)[~normal]), 1e-300)
