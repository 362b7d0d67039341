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
