from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from empirical import inits

FAN_IN, FAN_OUT = 300, 200
N = FAN_IN * FAN_OUT
KEY = jax.random.key(0)

# Definitions of E[W_ij^2] (torch.nn.init / Keras docs), sigma_w2 = 1.7 for
# schemes by variance.
SIGMA_W2 = 1.7
EXPECTED_VARIANCE = {
    "gaussian": SIGMA_W2 / FAN_IN,
    "uniform": SIGMA_W2 / FAN_IN,
    "truncated_normal": SIGMA_W2 / FAN_IN,
    "orthogonal": SIGMA_W2 / FAN_IN,
    "xavier_normal": 2.0 / (FAN_IN + FAN_OUT),
    "xavier_uniform": 2.0 / (FAN_IN + FAN_OUT),
    "he_normal": 2.0 / FAN_IN,
    "he_uniform": 2.0 / FAN_IN,
    "lecun_normal": 1.0 / FAN_IN,
    "zeros": 0.0,
}


def _draw(scheme, sigma_w2=None, shape=(FAN_IN, FAN_OUT)):
  s = inits.init(scheme)
  return np.asarray(s.initializer(sigma_w2 if s.uses_sigma_w2 else None)(KEY, shape))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED_VARIANCE))
def test_variance_matches_definition(name):
  w = _draw(name, SIGMA_W2)
  expected = EXPECTED_VARIANCE[name]
  assert w.shape == (FAN_IN, FAN_OUT) and w.dtype == np.float32
  # The sample second moment of N iid entries has relative standard error
  # sqrt((kurtosis - 1) / N) <= sqrt(2 / N) (normal; uniform and truncated
  # normal have lighter tails); 5 standard errors.
  np.testing.assert_allclose(np.mean(w**2), expected, rtol=5 * math.sqrt(2 / N), atol=0)
  np.testing.assert_allclose(np.mean(w), 0.0, atol=5 * math.sqrt(expected / N) + 1e-12)
  scheme = inits.init(name)
  np.testing.assert_allclose(
      scheme.sigma_w2_effective(SIGMA_W2, FAN_IN, FAN_OUT), expected * FAN_IN, rtol=1e-6)


@pytest.mark.parametrize("name", ["uniform", "xavier_uniform", "he_uniform"])
def test_uniform_is_bounded_at_sqrt3_std(name):
  w = _draw(name, SIGMA_W2)
  bound = math.sqrt(3 * EXPECTED_VARIANCE[name])
  assert np.max(np.abs(w)) <= bound * (1 + 1e-6)
  assert np.max(np.abs(w)) > 0.99 * bound


def test_truncated_normal_cut_at_two_std_before_rescaling():
  w = _draw("truncated_normal", SIGMA_W2)
  std_before = math.sqrt(SIGMA_W2 / FAN_IN) / 0.87962566103423978
  assert np.max(np.abs(w)) <= 2 * std_before * (1 + 1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(128, 128), (200, 100), (100, 200)])
def test_orthogonal(shape):
  w = _draw("orthogonal", SIGMA_W2, shape).astype(np.float64)
  fan_in, fan_out = shape
  if fan_in >= fan_out:   # orthonormal columns, scaled: W^T W = sigma_w2 I
    np.testing.assert_allclose(w.T @ w, SIGMA_W2 * np.eye(fan_out), atol=2e-5)
  else:                   # orthonormal rows: W W^T = sigma_w2 fan_out/fan_in I
    np.testing.assert_allclose(w @ w.T, SIGMA_W2 * fan_out / fan_in * np.eye(fan_in), atol=2e-5)
  # In every case E[W_ij^2] = sigma_w2 / fan_in (exactly, summed over the matrix).
  np.testing.assert_allclose(np.mean(w**2), SIGMA_W2 / fan_in, rtol=1e-5)


# Haar draws (orthogonal standard): exact laws, checked on M independent draws.
HAAR_N, HAAR_M = 80, 2000          # 80 = blocks of 32, 32 and 16 reflectors


@functools.cache
def _haar(shape, m=HAAR_M, dtype=jnp.float32):
  """``m`` draws of ``shape`` (float64 copies; cached: tests share them, never write)."""
  standard = inits.init("orthogonal").standard
  keys = jax.random.split(jax.random.key(11), m)
  return np.asarray(jax.vmap(lambda k: standard(k, shape, dtype))(keys)).astype(np.float64)


@pytest.mark.slow
@pytest.mark.parametrize("shape", [pytest.param((256, 256), marks=pytest.mark.slow),
                                   (80, 33), (33, 80), (1, 1)])
def test_haar_draw_is_orthonormal_to_rounding(shape):
  q = _haar(shape, m=16)
  if shape[0] < shape[1]:
    q = np.swapaxes(q, 1, 2)          # orthonormal rows: check Q Q^T
  gram = np.einsum("mij,mik->mjk", q, q)
  # Observed: at most 1.3e-6 over 512 draws of 256 x 256 (LAPACK QR: 8e-7).
  np.testing.assert_allclose(gram, np.broadcast_to(np.eye(q.shape[2]), gram.shape), atol=2e-6)


@pytest.mark.slow
def test_haar_draw_in_float64(x64):
  standard = inits.init("orthogonal").standard
  for shape in [(70, 70), (70, 30)]:
    q = standard(KEY, shape, jnp.float64)
    assert q.dtype == jnp.float64
    q = np.asarray(q)
    np.testing.assert_allclose(q.T @ q, np.eye(shape[1]), atol=1e-13)


def _entry_cdf(n):
  # A row (or column) of a Haar matrix is uniform on the sphere S^{n-1}, so
  # an entry x has x^2 ~ Beta(1/2, (n-1)/2), with a symmetric sign.
  return lambda x: 0.5 + 0.5 * np.sign(x) * stats.beta.cdf(x * x, 0.5, (n - 1) / 2)


@pytest.mark.slow
@pytest.mark.parametrize("shape, entries", [
    ((HAAR_N, HAAR_N), [(0, 0), (79, 79), (5, 70), (70, 5), (40, 41)]),
    ((HAAR_N, 30), [(0, 0), (79, 29)]),
    ((30, HAAR_N), [(29, 79), (0, 40)])])
def test_haar_entries_follow_the_exact_law(shape, entries):
  q = _haar(shape)
  for i, j in entries:
    # Kolmogorov-Smirnov against the exact law, M independent draws; at
    # level 1e-3 per entry (fixed keys, so not flaky).
    result = stats.kstest(q[:, i, j], _entry_cdf(max(shape)))
    assert result.pvalue > 1e-3, ((i, j), result)
  # sqrt(n) Q_ij has variance exactly 1; n x^2 has variance 2 (n - 1) / (n + 2) < 2.
  second = np.mean(q[:, entries[0][0], entries[0][1]] ** 2) * max(shape)
  assert abs(second - 1) < 5 * math.sqrt(2 / HAAR_M)


def test_haar_trace_moments():
  # For Haar O(N): E[tr Q^k] = 1 for even k, 0 for odd k, and tr Q^k has
  # variance k (Diaconis & Shahshahani 1994; exact while the total order is
  # small against N); E[tr(Q)^2] = 1 with variance 2. tr Q^k = sum_j
  # cos(k theta_j) over the eigenvalue phases: these are the phases' low
  # Fourier moments. det Q = +-1 with probability 1/2 each.
  q = _haar((HAAR_N, HAAR_N))
  power = q
  for k in range(1, 5):
    tr = np.trace(power, axis1=1, axis2=2)
    assert abs(tr.mean() - (k + 1) % 2) < 5 * math.sqrt(k / HAAR_M), (k, tr.mean())
    if k == 1:
      assert abs(np.mean(tr**2) - 1) < 5 * math.sqrt(2 / HAAR_M), np.mean(tr**2)
    power = power @ q
  sign, _ = np.linalg.slogdet(q)
  assert abs(sign.mean()) < 5 / math.sqrt(HAAR_M)


@pytest.mark.slow
def test_haar_draw_under_vmap_is_the_single_draw():
  # A batch of one (a sweep's group of one network on the CPU) is drawn as a
  # single matrix, bit for bit; larger batches agree to rounding.
  standard = inits.init("orthogonal").standard
  keys = jax.random.split(KEY, 3)
  draw = jax.jit(jax.vmap(lambda k: standard(k, (70, 40), jnp.float32)))
  single = [np.asarray(jax.jit(lambda k: standard(k, (70, 40), jnp.float32))(k)) for k in keys]
  np.testing.assert_array_equal(draw(keys[:1])[0], single[0])
  np.testing.assert_allclose(draw(keys), np.stack(single), atol=1e-6)


def test_haar_draw_calls_no_lapack():
  # jaxlib's CPU LAPACK kernels can deadlock on batches of matrices; the draw
  # must be plain XLA operations, safe under vmap and on several devices.
  standard = inits.init("orthogonal").standard
  text = jax.jit(lambda k: standard(k, (64, 40), jnp.float32)).lower(KEY).as_text()
  assert "custom_call" not in text and "lapack" not in text.lower()


def test_absolute_schemes():
  w = _draw(inits.normal(0.01))
  np.testing.assert_allclose(np.std(w), 0.01, rtol=5 * math.sqrt(2 / N) / 2 + 1e-3)
  np.testing.assert_array_equal(_draw("constant(0.5)"), np.full((FAN_IN, FAN_OUT), 0.5, np.float32))
  assert inits.init("normal(0.01)") == inits.normal(0.01)
  assert inits.normal(1e-4).name == "normal(0.0001)"
  assert inits.init(inits.normal(1e-4).name) == inits.normal(1e-4)
  np.testing.assert_allclose(inits.normal(0.1).sigma_w2_effective(None, 256, 256), 2.56, rtol=1e-6)


@pytest.mark.parametrize("name", ["gaussian", "uniform", "truncated_normal", "orthogonal"])
def test_scale_is_applied_to_one_standard_draw(name):
  # Common random numbers: the same key gives the same standard draw, and
  # every sigma_w2 only rescales it.
  a = _draw(name, 1.0)
  b = _draw(name, 4.0)
  np.testing.assert_allclose(b, 2.0 * a, rtol=1e-6)


def test_dtype_preserved(x64):
  w = inits.init("gaussian").initializer(1.0)(KEY, (4, 3), jnp.float64)
  assert w.dtype == jnp.float64
  b = inits.bias_initializer(0.5)(KEY, (1000,), jnp.float64)
  assert b.dtype == jnp.float64
  np.testing.assert_allclose(np.var(np.asarray(b)), 0.5, rtol=5 * math.sqrt(2 / 1000))


def test_bias_zero_variance_gives_zeros():
  np.testing.assert_array_equal(inits.bias_initializer(0.0)(KEY, (5,)), np.zeros(5, np.float32))


def test_errors():
  with pytest.raises(ValueError, match=r"`init` must be one of .*gaussian.*he_normal.*got 'he'"):
    inits.init("he")
  with pytest.raises(ValueError, match=r"`sigma_w2` must be a finite number >= 0, got -1"):
    inits.init("gaussian").initializer(-1.0)
  with pytest.raises(ValueError, match=r"`sigma_w2` must be given"):
    inits.init("orthogonal").initializer()
  with pytest.raises(ValueError, match=r"`sigma_w2` must be None for init 'he_normal'"):
    inits.init("he_normal").initializer(2.0)
  with pytest.raises(ValueError, match=r"`std` must be a finite number >= 0, got -0.1"):
    inits.normal(-0.1)
  with pytest.raises(ValueError, match=r"`sigma_b2` must be a finite number >= 0, got nan"):
    inits.bias_initializer(float("nan"))
