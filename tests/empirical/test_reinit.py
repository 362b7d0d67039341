"""empirical.reinit on small nnx models: kernel variances and the measured q^l against q*."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import meanfield
from empirical import reinit

WIDTH, DEPTH, BATCH = 1024, 6, 8


class TanhMLP(nnx.Module):
  """``DEPTH`` tanh layers of width ``WIDTH``; returns every layer's pre-activations."""

  def __init__(self, rngs):
    self.layers = nnx.List([nnx.Linear(WIDTH, WIDTH, rngs=rngs) for _ in range(DEPTH)])

  def __call__(self, x):
    hs = []
    for layer in self.layers:
      h = layer(x)
      hs.append(h)
      x = jnp.tanh(h)
    return hs


@pytest.fixture(scope="module")
def critical():
  return meanfield.critical_init("tanh", sigma_b2=0.05)


def _q(model, q_star):
  # inputs phi(sqrt(q*) z): the first layer then has q^1 = sigma_w2 E[phi^2] + sigma_b2 = q*
  x = jnp.tanh(np.sqrt(q_star) * jax.random.normal(jax.random.key(7), (BATCH, WIDTH)))
  return np.asarray([jnp.mean(h * h) for h in model(x)])


@pytest.mark.slow
def test_reinit_sets_variances_and_keeps_q_at_q_star(critical):
  model = TanhMLP(nnx.Rngs(0))
  default_q = _q(model, critical.q_star)
  paths = reinit(model, critical, key=jax.random.key(1))
  assert paths == [("layers", i) for i in range(DEPTH)]
  n = WIDTH * WIDTH
  for layer in model.layers:
    w, b = np.asarray(layer.kernel[...]), np.asarray(layer.bias[...])
    assert w.dtype == np.float32
    # mean of n squares of N(0, v): relative sd sqrt(2/n); of WIDTH biases: sqrt(2/WIDTH)
    np.testing.assert_allclose(np.mean(w * w) * WIDTH, critical.sigma_w2, rtol=5 * np.sqrt(2 / n))
    np.testing.assert_allclose(np.mean(b * b), critical.sigma_b2, rtol=5 * np.sqrt(2 / WIDTH))
  q = _q(model, critical.q_star)
  # Given layer l-1, the WIDTH pre-activations of one input are i.i.d. Gaussian, so q^l has fresh
  # relative noise sqrt(2/WIDTH) per layer; the q-map's slope s = exp(-1/xi_q) < 1 at q* damps
  # it, so its stationary sd is at most sqrt(2 / (WIDTH (1 - s^2))) (averaging over the batch
  # only lowers it). Every layer within 4 sd.
  s = np.exp(-1 / critical.xi_q)
  tol = 4 * np.sqrt(2 / (WIDTH * (1 - s * s)))
  np.testing.assert_allclose(q, critical.q_star, rtol=tol)
  # the default Flax init (variance 1/fan_in, zero bias) lets q drift off q* by more than that
  assert np.max(np.abs(default_q / critical.q_star - 1)) > 2 * tol


def test_reinit_is_reproducible_and_filters(critical):
  a, b = TanhMLP(nnx.Rngs(0)), TanhMLP(nnx.Rngs(5))
  reinit(a, critical, key=jax.random.key(3))
  reinit(b, critical, key=jax.random.key(3))
  np.testing.assert_array_equal(a.layers[2].kernel[...], b.layers[2].kernel[...])
  before = np.asarray(a.layers[0].kernel[...])
  paths = reinit(a, critical, key=jax.random.key(4), where=lambda path, _: path[-1] != 0)
  assert ("layers", 0) not in paths and len(paths) == DEPTH - 1
  np.testing.assert_array_equal(a.layers[0].kernel[...], before)


@pytest.mark.slow
def test_reinit_conv_orthogonal_and_no_bias():
  class Net(nnx.Module):
    def __init__(self, rngs):
      self.conv = nnx.Conv(8, 16, (3, 3), rngs=rngs)
      self.dense = nnx.Linear(16, 16, use_bias=False, rngs=rngs)

  ci = meanfield.critical_init("tanh", sigma_b2=0.05, init="orthogonal")
  net = Net(nnx.Rngs(0))
  reinit(net, ci, key=jax.random.key(0))
  k = np.asarray(net.conv.kernel[...])
  # delta-orthogonal: centre tap only, rows orthonormal scaled to E[W^2] = sigma_w2 / in_channels
  np.testing.assert_allclose(k[1, 1] @ k[1, 1].T, ci.sigma_w2 * 16 / 8 * np.eye(8), atol=1e-5)
  assert np.count_nonzero(k) == np.count_nonzero(k[1, 1])
  w = np.asarray(net.dense.kernel[...])
  np.testing.assert_allclose(w.T @ w, ci.sigma_w2 * np.eye(16), atol=1e-5)
  assert net.dense.bias is None


def test_validation(critical):
  model = TanhMLP(nnx.Rngs(0))
  with pytest.raises(ValueError, match="`key`"):
    reinit(model, critical, key=0)
  with pytest.raises(ValueError, match="`init` must have"):
    reinit(model, "tanh", key=jax.random.key(0))
  with pytest.raises(ValueError, match="not both"):
    reinit(model, critical, key=jax.random.key(0), kernel_init=critical.kernel_init)
  with pytest.raises(ValueError, match="`kernel_init`"):
    reinit(model, key=jax.random.key(0))
  with pytest.raises(ValueError, match="`model`"):
    reinit([1], critical, key=jax.random.key(0))
  with pytest.raises(ValueError, match="selected by `where`"):
    reinit(model, critical, key=jax.random.key(0), where=lambda *_: False)
