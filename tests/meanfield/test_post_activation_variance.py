"""meanfield.post_activation_variance: Var[phi(sqrt(q) z)] against scipy and closed forms."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

import meanfield as mf
from tests.meanfield import quadrature_reference as ref

Q = np.array([0.0, 1e-3, 0.5, 2.0, 30.0])


@pytest.mark.parametrize("activation", ["tanh", "gelu", "softplus", "hard_tanh"])
def test_against_scipy_quadrature(x64, activation):
  # 64-bit theory agrees with QUADPACK (1e-13) to ~1e-10 relative (README); softplus and
  # gelu have a non-zero mean, so the E[phi]^2 term is tested too. The variance is a
  # difference of moments, so its absolute error is a few eps E[phi^2] (at q = 0,
  # softplus: log(2)^2 - log(2)^2 in floating point): atol = 4 eps E[phi^2].
  phi = ref.NUMPY_ACTIVATIONS[activation]
  kinks = mf.activation(activation).kinks
  m2 = np.array([ref.expectation(lambda h: phi(h) ** 2, q, kinks=kinks) for q in Q])
  want = m2 - np.array([ref.expectation(phi, q, kinks=kinks) for q in Q]) ** 2
  got = mf.post_activation_variance(Q, activation=activation)
  assert got.dtype == jnp.float64 and got.shape == Q.shape
  np.testing.assert_allclose(got[1:], want[1:], rtol=1e-10)    # q > 0: not dominated by that
  assert np.all(np.abs(np.asarray(got) - want) <= 1e-10 * want + 4 * np.finfo(float).eps * m2)


def test_relu_and_linear_closed_forms(x64):
  # relu(sqrt(q) z): E[phi^2] = q/2, E[phi] = sqrt(q / (2 pi)): Var = q (1/2 - 1/(2 pi)).
  np.testing.assert_allclose(mf.post_activation_variance(Q, activation="relu"),
                             Q * (0.5 - 0.5 / np.pi), rtol=1e-12, atol=1e-300)
  np.testing.assert_allclose(mf.post_activation_variance(Q, activation="linear"), Q, rtol=1e-12)


def test_network_dtype_nan_and_bad_input():
  net = mf.Network(activation="relu", sigma_w2=2.0, sigma_b2=0.0, depth=3)
  got = mf.post_activation_variance(np.float32(2.0), network=net)
  assert got.dtype == jnp.float32                                 # 32-bit stays 32-bit
  np.testing.assert_allclose(got, 2.0 * (0.5 - 0.5 / np.pi), rtol=1e-6)
  assert np.isnan(mf.post_activation_variance(np.nan, activation="tanh"))
  with pytest.raises(ValueError, match="`q` must be >= 0"):
    mf.post_activation_variance(-1.0, activation="tanh")
  with pytest.raises(ValueError, match="`activation` must be one of"):
    mf.post_activation_variance(1.0, activation="nope")
