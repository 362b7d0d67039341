"""Tests for empirical.jacobian: Jacobians, their singular values and estimates."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from empirical import jacobian as jac

# tanh at criticality with sigma_b2 = 0.05 (THEORY.md's Monte Carlo anchor).
TANH_CRIT = dict(sigma_w2=1.7610, sigma_b2=0.05)
Q_STAR = 0.5700

SMALL_WIDTH, SMALL_DEPTH = 48, 6


def _params(key, depth, width, kind, dtype, *, sigma_w2=1.7610, sigma_b2=0.05):
  kw, kb = jax.random.split(key)
  if kind == "gaussian":
    w = jax.random.normal(kw, (depth, width, width), dtype) * math.sqrt(sigma_w2 / width)
  else:
    init = jax.nn.initializers.orthogonal(math.sqrt(sigma_w2))
    w = jax.vmap(lambda k: init(k, (width, width), dtype))(jax.random.split(kw, depth))
  b = jax.random.normal(kb, (depth, width), dtype) * math.sqrt(sigma_b2)
  return w.astype(dtype), b.astype(dtype)


def _small(dtype, kind="gaussian"):
  w, b = _params(jax.random.key(0), SMALL_DEPTH, SMALL_WIDTH, kind, dtype)
  x = jac.jacobian_input(key=jax.random.key(1), activation="tanh", q=Q_STAR,
                         width=SMALL_WIDTH, dtype=dtype)
  return w, b, x


def _network_fn(w, b):
  def f(x):
    for l in range(w.shape[0]):
      x = jnp.tanh(x @ w[l] + b[l])
    return x
  return f


@pytest.mark.parametrize("kind", ["gaussian", "orthogonal"])
def test_jacobian_is_autodiff_jacobian(x64, kind):
  w, b, x = _small(jnp.float64, kind)
  expected = jax.jacfwd(_network_fn(w, b))(x)
  got = jac.jacobian(w, b, x, activation="tanh")
  # Same product of L matrices in a different order: float64 rounding only.
  np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-13)


def test_forward_and_dtype_preserved():
  w, b, x = _small(jnp.float32)
  out, d = jac.forward(w, b, x, activation="tanh")
  np.testing.assert_allclose(out, _network_fn(w, b)(x), rtol=1e-5, atol=1e-6)
  assert d.shape == (SMALL_DEPTH, SMALL_WIDTH)
  assert out.dtype == d.dtype == jnp.float32
  assert jac.jacobian(w, b, x, activation="tanh").dtype == jnp.float32
  assert jac.singular_values(w, b, x, activation="tanh").dtype == jnp.float32


def test_singular_values_at_several_depths_match_prefix_networks(x64):
  w, b, x = _small(jnp.float64)
  got = jac.singular_values(w, b, x, activation="tanh", depths=(1, 3, SMALL_DEPTH))
  assert got.shape == (3, SMALL_WIDTH)
  for row, depth in zip(got, (1, 3, SMALL_DEPTH)):
    expected = np.linalg.svd(np.asarray(jax.jacfwd(_network_fn(w[:depth], b[:depth]))(x)),
                             compute_uv=False)
    np.testing.assert_allclose(row, expected, rtol=1e-9, atol=1e-14)
  assert np.all(np.diff(got, axis=1) <= 0)  # descending


@pytest.mark.parametrize("kind", ["gaussian", "orthogonal"])
def test_moment_estimates_within_their_standard_errors(x64, kind):
  w, b, x = _small(jnp.float64, kind)
  lam = np.asarray(jac.singular_values(w, b, x, activation="tanh")) ** 2
  exact = np.array([np.mean(lam ** k) for k in (1, 2, 3)])
  est, err = jac.moment_estimates(w, b, x, activation="tanh", key=jax.random.key(7),
                                  num_probes=256, max_order=3)
  assert est.shape == err.shape == (3,)
  # The estimator is unbiased with the stated standard error (sample std over
  # 256 probes / 16, itself accurate to about 1/sqrt(2 * 256) = 4%); 4 of them
  # bound a two-sided deviation at about 6e-5 per comparison.
  assert np.all(np.abs(est - exact) < 4 * err), (est, exact, err)
  # and the stated error has the size theory gives: sqrt(2 m_2k / N / P).
  predicted = np.sqrt(2 * np.array([np.mean(lam ** (2 * k)) for k in (1, 2, 3)])
                      / SMALL_WIDTH / 256)
  np.testing.assert_allclose(err, predicted, rtol=0.5)


@pytest.mark.parametrize("kind", ["gaussian", "orthogonal"])
def test_lanczos_largest_singular_value(x64, kind):
  w, b, x = _small(jnp.float64, kind)
  sv = np.asarray(jac.singular_values(w, b, x, activation="tanh"))
  sigmas, errors = jac.extreme_singular_values(w, b, x, activation="tanh",
                                               key=jax.random.key(3), num_iterations=24)
  # Ritz values interlace: theta_max <= lambda_max, theta_min >= lambda_min.
  assert sigmas[0] <= sv[0] * (1 + 1e-12)
  assert sigmas[1] >= sv[-1] * (1 - 1e-12)
  # The residual bound holds for the top end, and is small there.
  assert abs(sigmas[0] - sv[0]) <= errors[0] + 1e-12 * sv[0]
  assert errors[0] < 1e-3 * sv[0]


def test_lanczos_full_space_is_exact(x64):
  w, b, x = _small(jnp.float64, "orthogonal")
  sv = np.asarray(jac.singular_values(w, b, x, activation="tanh"))
  sigmas, _ = jac.extreme_singular_values(w, b, x, activation="tanh", key=jax.random.key(3),
                                          num_iterations=SMALL_WIDTH)
  np.testing.assert_allclose(sigmas, [sv[0], sv[-1]], rtol=1e-6)


def test_input_is_at_the_fixed_point_length():
  # Fed through a critical tanh layer, x^0 = tanh(sqrt(q*) z) gives
  # pre-activations of length q*; width-N estimate: relative spread sqrt(2/N),
  # 5 standard errors.
  width = 4096
  x = jac.jacobian_input(key=jax.random.key(0), activation="tanh", q=Q_STAR, width=width)
  w, b = _params(jax.random.key(1), 1, width, "gaussian", jnp.float32)
  q1 = float(jnp.mean((x @ w[0] + b[0]) ** 2))
  assert abs(q1 / Q_STAR - 1) < 5 * math.sqrt(2 / width)


@pytest.mark.parametrize("call, match", [
    (lambda w, b, x: jac.jacobian(w[0], b, x, activation="tanh"), "`weights` must have shape"),
    (lambda w, b, x: jac.jacobian(w, b[:, :-1], x, activation="tanh"), "`biases` must have shape"),
    (lambda w, b, x: jac.jacobian(w, b, x[:-1], activation="tanh"), "`x` must have shape"),
    (lambda w, b, x: jac.jacobian(w, b, x, activation="tahn"), "`activation` must be one of"),
    (lambda w, b, x: jac.singular_values(w, b, x, activation="tanh", depths=(3, 2)),
     "`depths` must increase"),
    (lambda w, b, x: jac.singular_values(w, b, x, activation="tanh", depths=(0,)),
     "`depths` must be an integer >= 1"),
    (lambda w, b, x: jac.singular_values(w, b, x, activation="tanh", depths=(99,)),
     "not exceed"),
    (lambda w, b, x: jac.moment_estimates(w, b, x, activation="tanh", key=jax.random.key(0),
                                          num_probes=1), "`num_probes` must be an integer >= 2"),
    (lambda w, b, x: jac.moment_estimates(w, b, x, activation="tanh", key=jax.random.key(0),
                                          max_order=0), "`max_order` must be an integer >= 1"),
    (lambda w, b, x: jac.extreme_singular_values(w, b, x, activation="tanh",
                                                 key=jax.random.key(0), num_iterations=0),
     "`num_iterations` must be an integer in"),
    (lambda w, b, x: jac.jacobian_input(key=jax.random.key(0), activation="tanh", q=-1.0,
                                        width=4), "`q` must be a finite scalar > 0"),
    (lambda w, b, x: jac.jacobian_input(key=jax.random.key(0), activation="tanh", q=1.0,
                                        width=0), "`width` must be an integer >= 1"),
])
def test_bad_input_raises(call, match):
  w, b, x = _small(jnp.float32)
  with pytest.raises(ValueError, match=match):
    call(w, b, x)
