from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from empirical import models, probes
from meanfield import activation

IN, WIDTH, DEPTH, BATCH = 6, 24, 5, 4
KEY = jax.random.key(7)
X = jax.random.normal(jax.random.key(8), (BATCH, IN))
MEASURE = jax.jit(probes.measure, static_argnames=("activation", "residual", "norm"))


def _params(init="gaussian", sigma_w2=1.8, sigma_b2=0.2, depth=DEPTH, width=WIDTH):
  s = models.standard_params(KEY, in_features=IN, width=width, depth=depth, init=init)
  ws, bs = models.layer_scales(init, sigma_w2, sigma_b2, in_features=IN, width=width,
                               depth=depth)
  return models.scale_params(s, ws, bs)


def _reference(p, x, r, act):
  """Independent per-layer loop (float64) and per-example autodiff for the gradients."""
  phi = activation(act).fn
  hs, ins = [], []
  a = np.asarray(x, np.float64)
  for l in range(DEPTH):
    w, b = (p.w_in, p.b_in) if l == 0 else (p.w[l - 1], p.b[l - 1])
    ins.append(a)
    h = a @ np.asarray(w, np.float64) + np.asarray(b, np.float64)
    hs.append(h)
    a = np.asarray(phi(h))
  hs = np.stack(hs)                                                # (L, B, N)
  post = np.asarray(phi(hs))

  def loss(prm, xa):
    return models.forward(prm, xa[None], activation=act)[0][0] @ r

  per_example = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(p, x)  # Params with leading B
  gw = [np.sum(np.asarray(per_example.w_in) ** 2, axis=(1, 2))] + [
      np.sum(np.asarray(per_example.w)[:, l] ** 2, axis=(1, 2)) for l in range(DEPTH - 1)]
  gb = [np.sum(np.asarray(per_example.b_in) ** 2, axis=1)] + [
      np.sum(np.asarray(per_example.b)[:, l] ** 2, axis=1) for l in range(DEPTH - 1)]
  h1, h2 = hs[:, 0::2], hs[:, 1::2]
  cos = np.sum(h1 * h2, -1) / np.linalg.norm(h1, axis=-1) / np.linalg.norm(h2, axis=-1)
  return dict(
      q=np.mean(hs**2, axis=(1, 2)), c=np.mean(cos, axis=1),
      pre_mean=hs.mean(axis=(1, 2)), pre_var=hs.var(axis=(1, 2)),
      post_mean=post.mean(axis=(1, 2)), post_var=post.var(axis=(1, 2)),
      zero=np.mean(post == 0, axis=(1, 2)), dead=np.mean(np.all(post == 0, axis=1), axis=1),
      saturated=np.mean(np.abs(post) > 0.99, axis=(1, 2)) if act == "tanh" else 0 * hs[:, 0, 0],
      grad_w=np.sqrt(np.mean(np.stack(gw), axis=1)), grad_h=np.sqrt(np.mean(np.stack(gb), axis=1)))


@pytest.mark.parametrize("act", [pytest.param("tanh", marks=pytest.mark.slow), "relu"])
def test_measure_matches_independent_computation(act):
  p = _params(sigma_w2=3.0 if act == "tanh" else 2.0)
  r = probes.readout(jax.random.key(9), WIDTH)
  np.testing.assert_allclose(jnp.linalg.norm(r), 1.0, rtol=1e-6)
  stats = MEASURE(p, X, r, activation=act)
  ref = _reference(p, X, r, act)
  for name, expected in ref.items():
    got = getattr(stats, name)
    assert got.shape == (DEPTH, 1), name
    np.testing.assert_allclose(got[:, 0], expected, rtol=2e-4, atol=2e-6, err_msg=name)
  np.testing.assert_array_equal(stats.first_nonfinite, [0])
  if act == "relu":
    assert np.all(np.asarray(stats.zero) > 0.2)     # about half the ReLUs are off
  else:
    assert np.sum(np.asarray(stats.saturated)) > 0


@pytest.mark.slow
def test_settings_equal_separate_networks():
  std = models.standard_params(KEY, in_features=IN, width=WIDTH, depth=DEPTH)
  sw2, sb2 = jnp.array([0.5, 2.5]), jnp.array([0.3, 0.0])
  ws, bs = models.layer_scales("gaussian", sw2, sb2, in_features=IN, width=WIDTH, depth=DEPTH)
  r = probes.readout(jax.random.key(9), WIDTH)
  both = MEASURE(std, X, r, activation="tanh", w_scale=ws, b_scale=bs)
  for s in range(2):
    one = MEASURE(models.scale_params(std, ws[:, s], bs[:, s]), X, r, activation="tanh")
    for name in probes.Stats._fields:
      np.testing.assert_allclose(getattr(both, name)[..., s], getattr(one, name)[..., 0],
                                 rtol=2e-5, atol=1e-7, err_msg=name)


@pytest.mark.slow
def test_pair_correlation_of_known_pairs():
  # Input pairs (x, x) and (x, -x): with no biases c^1 is exactly 1 and -1.
  p = _params(sigma_b2=0.0)
  x = jnp.stack([X[0], X[0], X[1], -X[1]])
  h = models.forward(p, x, activation="tanh", probe=lambda h, a, a_in: h)[1][0, 0]
  np.testing.assert_allclose(probes._pair_correlation(h[None, :2]), [1.0], rtol=1e-6)
  np.testing.assert_allclose(probes._pair_correlation(h[None, 2:]), [-1.0], rtol=1e-6)
  assert np.isnan(probes._pair_correlation(h[None, :1])[0])


@pytest.mark.slow
def test_overflow_is_data():
  # ReLU with std 1 weights (sigma_w2 = 64): q grows 32-fold per layer and
  # leaves float32 (3e38) around layer 25; measuring must not crash.
  depth = 40
  s = models.standard_params(KEY, in_features=IN, width=64, depth=depth, init="normal(1)")
  ws, bs = models.layer_scales("normal(1)", None, 0.0, in_features=IN, width=64, depth=depth)
  stats = MEASURE(models.scale_params(s, ws, bs), X, probes.readout(KEY, 64), activation="relu")
  first = int(stats.first_nonfinite[0])
  assert 15 < first < depth
  q = np.asarray(stats.q[:, 0])
  assert np.all(np.isfinite(q[: first - 1])) and not np.any(np.isfinite(q[first - 1:]))


@pytest.mark.parametrize("name,levels,tol", [
    ("tanh", (-1.0, 1.0), 0.01), ("sigmoid", (0.0, 1.0), 0.01), ("elu", (-1.0,), 0.01),
    ("relu", (0.0,), 0.0), ("linear", (), 0.0)])
def test_saturation_levels(name, levels, tol):
  got_levels, got_tol = probes.saturation_levels(activation(name))
  np.testing.assert_allclose(got_levels, levels, atol=1e-6)
  assert got_tol == pytest.approx(tol)


@pytest.mark.slow
def test_statistics_are_not_finite_only_where_their_values_are_not(x64):
  # ReLU, sigma_w2 = 256, depth 30, width 64, 16 inputs: q grows 128-fold per
  # layer, so the mean squares leave float32 (3.4e38) at about layer 19 while
  # the gradients stay below 1e32. The float32 statistics must be finite
  # exactly where the float64 ones fit in float32, and agree with them there
  # to float32 rounding through 30 layers (relative 1e-6 per layer, times the
  # sqrt(64) units summed in each product: 1e-3 holds with room).
  depth, width, batch = 30, 64, 16
  std = models.standard_params(KEY, in_features=IN, width=width, depth=depth,
                               dtype=jnp.float32)
  ws, bs = models.layer_scales("gaussian", 256.0, 0.0, in_features=IN, width=width, depth=depth,
                               dtype=jnp.float32)
  x = jax.random.normal(jax.random.key(8), (batch, IN), jnp.float32)
  r = probes.readout(KEY, width, jnp.float32)
  p32 = models.scale_params(std, ws, bs)
  p64 = jax.tree.map(lambda a: a.astype(jnp.float64), p32)
  s32 = MEASURE(p32, x, r, activation="relu")
  s64 = MEASURE(p64, x.astype(jnp.float64), r.astype(jnp.float64), activation="relu")
  big = float(np.finfo(np.float32).max)
  for name in ("q", "c", "pre_mean", "pre_var", "post_mean", "post_var", "grad_h", "grad_w"):
    got, want = np.asarray(getattr(s32, name))[:, 0], np.asarray(getattr(s64, name))[:, 0]
    fits = np.abs(want) <= big
    np.testing.assert_array_equal(np.isfinite(got), fits, err_msg=name)
    np.testing.assert_allclose(got[fits], want[fits], rtol=1e-3, err_msg=name)
  assert np.all(np.isfinite(np.asarray(s32.c)))
  q64 = np.asarray(s64.q)[:, 0]
  assert int(s32.first_nonfinite[0]) == int(np.argmax(q64 > big)) + 1 > 15
  assert np.all(np.asarray(s64.grad_w) < 1e33)


def test_pair_correlation_of_tiny_and_huge_vectors():
  # Scaled vectors: finite whenever both vectors are finite and nonzero.
  h = jax.random.normal(jax.random.key(1), (1, 2, 32), jnp.float32)
  cos = probes._pair_correlation(h)
  for scale in (1e-30, 1e30):
    np.testing.assert_allclose(probes._pair_correlation(h * scale), cos, rtol=1e-6)
