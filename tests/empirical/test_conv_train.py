"""empirical.train(arch=meanfield.Conv(...)): CNNs on the digits through the MLPs' training path."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import empirical
import meanfield
from empirical import conv
from empirical import data as data_lib

KEY = jax.random.key(0)


@pytest.fixture(scope="module")
def digits():
  return data_lib.load_digits(key=KEY)


@pytest.mark.slow
def test_two_dimensional_forward_equals_flax_circular_conv():
  p = conv.conv_params(jax.random.key(0), in_channels=2, width=4, depth=2, kernel_size=3,
                       init="gaussian", sigma_w2=1.3, sigma_b2=0.1, dtype=jnp.float32)
  k = conv.kernel_init("gaussian")
  p = p._replace(w_in=k.kernel(jax.random.key(2), (3, 3, 2, 4), 1.3, jnp.float32),
                 w=jax.vmap(lambda kk: k.kernel(kk, (3, 3, 4, 4), 1.3, jnp.float32))(
                     jax.random.split(jax.random.key(3), 1)),
                 w_out=jax.random.normal(jax.random.key(4), (4, 3)),
                 b_out=jax.random.normal(jax.random.key(5), (3,)))
  x = jax.random.normal(jax.random.key(1), (5, 6, 7, 2))     # non-square images, batch 5
  model = conv.CNN(p, activation="tanh", out_features=3, rngs=nnx.Rngs(0))
  model.readout.kernel[...] = p.w_out
  model.readout.bias[...] = p.b_out
  # float32 sums of 36 products of order 1: rounding ~1e-6.
  np.testing.assert_allclose(np.asarray(model(x)), np.asarray(conv.conv_logits(p, x)),
                             atol=2e-5)
  delta = conv.kernel_init("delta_orthogonal").kernel(KEY, (3, 3, 4, 4), 2.0, jnp.float32)
  centre = np.asarray(delta[1, 1])
  assert np.count_nonzero(np.asarray(delta)) == np.count_nonzero(centre)
  np.testing.assert_allclose(centre @ centre.T, 2.0 * np.eye(4), atol=1e-5)


@pytest.mark.slow
def test_cnn_trains_above_chance_and_reruns_bitwise(digits):
  run = lambda: empirical.train(
      KEY, data=digits, arch=meanfield.Conv(kernel_size=3), init=["delta_orthogonal", "gaussian"],
      activation="tanh", depth=3, width=8, sigma_w2=1.05, sigma_b2=2.01e-5, n_seeds=2,
      optimizer="adam", learning_rate=1e-2, n_steps=60, batch_size=16,
      record_steps=[0, 60], probe_size=32, progress=False)
  ds = run()
  assert ds.attrs["architecture"] == "conv" and list(ds.attrs["input_shape"]) == [8, 8, 1]
  assert list(ds.init.values) == ["delta_orthogonal", "gaussian"]
  loss = ds.train_loss.values                                   # (init, seed, step)
  assert np.all(loss[..., -1] < loss[..., 0])
  # Chance: a prediction that ignores the input scores at most the largest class share p;
  # require 5 binomial standard errors above it (se = sqrt(p (1 - p) / n_test) = 0.016).
  n_test = digits.n_test
  p = np.bincount(np.asarray(digits.y_test)).max() / n_test
  assert np.all(ds.test_accuracy.values[..., -1] > p + 5 * math.sqrt(p * (1 - p) / n_test))
  again = run()
  for name in ("train_loss", "test_accuracy", "q", "loss_grad_w"):
    np.testing.assert_array_equal(ds[name].values, again[name].values)


@pytest.mark.slow
@pytest.mark.parametrize("init, footprint", [("delta_orthogonal", "delta"),
                                             ("gaussian", "uniform")])
def test_initial_lengths_follow_the_covariance_map(digits, init, footprint):
  # 1-D CNN over the digits' rows (8 positions, 8 pixel channels). The recorded q^l is the
  # mean of h^2 over 32 probe examples, positions and channels; its expectation over networks
  # is the mean over those examples and positions of the theory's Sigma^l_aa(x)
  # (meanfield.propagate with arch=meanfield.Conv, from Sigma^0_ab = x_a . x_b / 8). Networks differ by a relative
  # O(sqrt(2 / (8 C))) per layer; the mean over 12 seeds has standard error s / sqrt(12), and
  # we allow 4.5 of them (t, 11 dof: two-sided tail ~1e-3 for each of 10 comparisons). The
  # finite-width bias is O(1/C) times the q-map's curvature, well below that at C = 48.
  depth, seeds = 5, 12
  arch = meanfield.Conv(kernel_size=3, spatial_size=8, footprint=footprint)
  ds = empirical.train(KEY, data=digits, arch=arch, input_shape=(8, 8), init=init,
                       depth=depth, width=48, sigma_w2=1.5, sigma_b2=0.05, n_seeds=seeds,
                       learning_rate=0.0, n_steps=0, probe_size=32, progress=False)
  q = ds.q.isel(step=0).values                                  # (seed, layer)
  x = np.asarray(digits.x_train[:32], np.float64).reshape(32, 8, 8)
  theory = meanfield.propagate(covariance=x @ x.transpose(0, 2, 1) / 8, depth=depth,
                               sigma_w2=1.5, sigma_b2=0.05, activation="tanh",
                               arch=arch)
  expected = np.asarray(theory.q).mean(axis=(0, 2))              # (layer,)
  tol = 4.5 * q.std(axis=0, ddof=1) / np.sqrt(seeds)
  assert np.all(np.abs(q.mean(axis=0) - expected) <= tol), (q.mean(0), expected, tol)


class _Toy(meanfield.network.Architecture):
  """An architecture with no training."""


def test_conv_arguments_are_checked(digits):
  conv3 = meanfield.Conv(kernel_size=3)
  common = dict(data=digits, arch=conv3, depth=2, width=4, sigma_w2=1.0,
                learning_rate=0.1, n_steps=1, progress=False)
  with pytest.raises(ValueError, match=r"`arch` of `empirical.train` must be meanfield.MLP.* or "
                                       r"meanfield.Conv\(kernel_size=...\).*got 'conv'"):
    empirical.train(KEY, **{**common, "arch": "conv"})
  with pytest.raises(ValueError, match=r"`arch` of `empirical.train` .* training has no "
                                       r"networks of .*_Toy"):
    empirical.train(KEY, **{**common, "arch": _Toy()})
  with pytest.raises(TypeError, match="residual"):     # the MLP's variants are MLP's fields
    empirical.train(KEY, residual=True, **common)
  with pytest.raises(ValueError, match="input_shape"):
    empirical.train(KEY, input_shape=(8, 9), **common)
  with pytest.raises(ValueError, match="init"):
    empirical.train(KEY, init="delta_nonsense", **common)
  with pytest.raises(ValueError, match=r"`init` must be kernel schemes of the footprint of "
                                       r"Conv\(kernel_size=3, spatial_size=None, "
                                       r"footprint='delta'\) .*got 'gaussian' \(footprint "
                                       r"'uniform'\)"):
    empirical.train(KEY, init="gaussian", **{**common, "arch": meanfield.Conv(
        kernel_size=3, footprint="delta")})
  with pytest.raises(ValueError, match=r"`arch.spatial_size` must be None or the positions "
                                       r"of a 1-D CNN's input_shape .* got Conv\(kernel_size="
                                       r"3, spatial_size=8.*input_shape \(8, 8, 1\)"):
    empirical.train(KEY, **{**common, "arch": meanfield.Conv(kernel_size=3, spatial_size=8)})
  with pytest.raises(ValueError, match=r"`sv_quantile` does not apply to arch=Conv"):
    empirical.train(KEY, sv_quantile=(0.5,), **common)


def test_network_carries_its_arch(digits):
  # A Network with arch=Conv trains the CNN its fields describe, as the keywords do.
  kw = dict(data=digits, learning_rate=0.1, n_steps=2, batch_size=8, record_steps=[0, 2],
            probe_size=8, input_shape=(8, 8), progress=False)
  scheme = conv.kernel_init("delta_orthogonal")
  net = meanfield.Network(activation="tanh", sigma_w2=1.5, sigma_b2=0.05, depth=2, width=4,
                          init=scheme, arch=meanfield.Conv(kernel_size=3, spatial_size=8))
  by_net = empirical.train(KEY, network=net, **kw)
  by_kw = empirical.train(KEY, arch=meanfield.Conv(kernel_size=3, spatial_size=8),
                          activation="tanh", sigma_w2=1.5, sigma_b2=0.05, depth=2, width=4,
                          init="delta_orthogonal", **kw)
  assert by_net.attrs["architecture"] == "conv" and by_net.attrs["kernel_size"] == 3
  assert by_net.identical(by_kw)
  assert empirical.networks(by_net).item() == net.replace(
      arch=meanfield.Conv(kernel_size=3, spatial_size=8))
