from __future__ import annotations

import jax
import numpy as np
import pytest

import empirical.sweeping as sweep
from empirical import overlay
from tests.empirical._lazy import LazySweeps

N, DEPTH, SEEDS, PAIRS = 1024, 10, 16, 4
# tanh with sigma_b2 = 0.05: ordered (chi_1 < 1), critical (sigma_w2 = 1.7610,
# docs/theory.md), chaotic; ReLU at its critical point sigma_w2 = 2.
TANH_SIGMA_W2 = [1.0, 1.761, 4.0]
# Var(phi(h)^2) / E[phi(h)^2]^2 for h Gaussian: 2 for a linear phi, less for
# tanh (it compresses the tails), 5 for ReLU (E relu^4 / (E relu^2)^2 = 6).
KAPPA = {"tanh": 2.0, "relu": 5.0}


@pytest.fixture(scope="module")
def sweeps():
  common = dict(width=N, depth=DEPTH, n_seeds=SEEDS, n_inputs=2 * PAIRS, in_features=256,
                q_input=1.0, c_input=0.5, progress=False)
  return LazySweeps({
      "tanh": lambda: sweep.sweep(jax.random.key(1), activation="tanh",
                                  sigma_w2=TANH_SIGMA_W2, sigma_b2=0.05, **common),
      "relu": lambda: sweep.sweep(jax.random.key(2), activation="relu", sigma_w2=[2.0],
                                  sigma_b2=0.0, **common),
      # Haar weights: W a is uniform on the sphere of radius sqrt(sigma_w2) |a|, so the
      # weights add no spread of their own to |h|^2, to inner products or to |W^T delta|^2;
      # the Gaussian bounds below hold with room to spare. Narrower and fewer (compile and
      # draws cost more); the errors below scale with both.
      "tanh-orthogonal": lambda: sweep.sweep(
          jax.random.key(4), activation="tanh", init="orthogonal", sigma_w2=TANH_SIGMA_W2,
          sigma_b2=0.05, **{**common, "width": N // 2, "n_seeds": SEEDS // 2}),
  })


# The default tier checks tanh with Gaussian weights; ReLU and Haar weights run in the slow tier.
ACTS = ["tanh", pytest.param("relu", marks=pytest.mark.slow),
        pytest.param("tanh-orthogonal", marks=pytest.mark.slow)]


def _relative_standard_error(kappa, layers, n, seeds):
  """Standard error of log of the seed mean of q^l (or |delta^l|^2) at width N.

  Given layer l-1, the N units of h^l are iid Gaussian: their mean square has
  relative variance 2/N. The variance of that Gaussian, sigma_w2 |a^{l-1}|^2/N
  + sigma_b2, has relative variance at most kappa/N from the N units of
  a^{l-1}. The q-map's elasticity d log q^l / d log q^{l-1} is at most 1
  (tanh's q-map is concave through sigma_b2 >= 0; ReLU's is linear), so the
  contributions of the layers at most add up: (2 + kappa) l / N per network,
  counting the inputs of a batch as one sample (they share the weights).
  Seeds are independent networks.
  """
  return np.sqrt((2 + kappa) * layers / (n * seeds))


@pytest.mark.parametrize("act", ACTS)
def test_q_follows_theory(sweeps, act):
  kappa = KAPPA[act.split("-")[0]]
  ds, th = sweeps[act]
  n, seeds = int(ds.width), ds.sizes["seed"]
  layers = ds.layer.values
  emp = np.log(ds.q.mean("seed"))
  pred = np.log(th.q)
  se = _relative_standard_error(kappa, layers, n, seeds)
  assert np.all(np.abs(emp - pred) < 5 * se), (emp - pred).values
  # The spread across seeds is as small as derived (a bug adding noise fails here).
  spread = (ds.q / th.q).std("seed")
  assert np.all(spread < 2 * se * np.sqrt(seeds))


@pytest.mark.parametrize("act", ACTS)
def test_c_follows_theory(sweeps, act):
  kappa = KAPPA[act.split("-")[0]]
  # A width-N sample correlation has standard deviation (1 - c^2)/sqrt(N) <=
  # 1/sqrt(N) (Fisher); through l layers of c-map (slope <= 1 near the
  # visited c, plus the q noise above) the variance at most adds up over
  # layers; pairs use independent input directions and seeds independent
  # weights.
  ds, th = sweeps[act]
  layers = ds.layer.values
  se = np.sqrt((1 + kappa) * layers / (int(ds.width) * ds.sizes["seed"] * PAIRS))
  err = ds.c.mean("seed") - th.c
  assert np.all(np.abs(err) < 5 * se), err.values
  np.testing.assert_allclose(float(ds.c_input), 0.5, atol=1e-6)


@pytest.mark.parametrize("act", ACTS)
def test_gradient_profile_follows_chi(sweeps, act):
  kappa = KAPPA[act.split("-")[0]]
  # Ratios |delta^l|^2 / |delta^L|^2 against prod_{k=l}^{L-1} chi^k: each
  # backward layer adds relative variance (2 + kappa')/N with kappa' <= 2
  # for phi'^2 (tanh: sech^4 averages; ReLU: Bernoulli(1/2), 1), and the
  # chi^k themselves carry the forward q error above; bound both by
  # (2 + 2 + 2 + kappa) (L - l) / N per network.
  ds, th = sweeps[act]
  n, seeds = int(ds.width), ds.sizes["seed"]
  top = ds.layer.values[-1]
  emp = (ds.grad_h**2 / (ds.grad_h**2).sel(layer=top)).mean("seed")
  pred = (th.grad_h / th.grad_h.sel(layer=top)) ** 2
  se = np.sqrt((6 + kappa) * (top - ds.layer.values) / (n * seeds))
  assert np.all(np.abs(np.log(emp) - np.log(pred)) <= 5 * se + 1e-6), (emp / pred).values
  if act != "relu":      # ordered: vanishing; chaotic: exploding
    ratio = pred.sel(layer=1)
    assert ratio.sel(sigma_w2=1.0) < 0.5 and ratio.sel(sigma_w2=4.0) > 2.0
  # Weight gradients: |a^{l-1}|^2 |delta^l|^2, each factor as above.
  w_err = np.log((ds.grad_w**2).mean("seed")) - np.log(th.grad_w**2)
  se_w = np.sqrt((6 + kappa) * DEPTH / (n * seeds))
  assert np.all(np.abs(w_err) < 5 * se_w), w_err.values


def test_theory_layout(sweeps):
  ds, th = sweeps["tanh"]
  assert th.q.dims == ("sigma_w2", "layer")
  assert set(th.data_vars) >= {"q", "c", "chi_1", "grad_h", "grad_w"}
  np.testing.assert_array_equal(th.sigma_w2, ds.sigma_w2)
  # Critical tanh: chi_1 -> 1 at the fixed point.
  np.testing.assert_allclose(th.chi_1.sel(sigma_w2=1.761).isel(layer=-1), 1.0, atol=0.02)


@pytest.mark.slow
def test_presets_layout_and_theory():
  ds = sweep.sweep(jax.random.key(3), activation="relu", init=["xavier_normal", "normal(0.1)"],
                   width=16, depth=3, n_seeds=2, inputs=np.eye(2, 5), progress=False)
  assert ds.q.dims == ("init", "seed", "layer")
  assert "sigma_w2" not in ds.coords                  # fixed by the inits
  # Xavier's first layer: 2 fan_in / (fan_in + fan_out); normal(0.1): fan_in 0.01.
  np.testing.assert_allclose(ds.layer_sigma_w2.sel(init="xavier_normal"), [2 * 5 / 21, 1.0, 1.0])
  np.testing.assert_allclose(ds.layer_sigma_w2.sel(init="normal(0.1)"), [0.05, 0.16, 0.16])
  np.testing.assert_allclose([float(ds.q_input), float(ds.c_input)], [0.2, 0.0])
  th = overlay.theory(ds)
  assert th.q.dims == ("init", "layer")
  # q^1 = sigma_w2^1 q_input (no biases); ReLU halves the length per hidden layer
  # before sigma_w2 = 1 (Xavier, square) or 0.16 (normal(0.1), N = 16) scales it.
  np.testing.assert_allclose(th.q.sel(init="xavier_normal"),
                             [0.2 * 10 / 21, 0.2 * 10 / 21 / 2, 0.2 * 10 / 21 / 4], rtol=1e-5)
  np.testing.assert_allclose(th.q.sel(init="normal(0.1)"),
                             [0.01, 0.01 * 0.08, 0.01 * 0.08**2], rtol=1e-5)


@pytest.mark.slow
def test_depth_grid_layout():
  ds = sweep.sweep(jax.random.key(3), activation="tanh", sigma_w2=1.5, width=16, depth=[2, 3],
                   n_seeds=2, n_inputs=4, in_features=5, progress=False)
  assert ds.q.dims == ("depth", "seed", "layer")
  assert np.all(np.isnan(ds.q.sel(depth=2, layer=3)))  # beyond the network's depth
  assert not np.any(np.isnan(ds.q.sel(depth=3)))
  th = overlay.theory(ds)
  assert th.q.dims == ("depth", "layer")
  assert np.all(np.isnan(th.q.sel(depth=2, layer=3)))
  assert not np.any(np.isnan(th.grad_w.sel(depth=3)))
  np.testing.assert_allclose(th.q.sel(depth=2, layer=[1, 2]), th.q.sel(depth=3, layer=[1, 2]))


def test_batchnorm_has_no_theory(sweeps):
  # Residual, LayerNorm and dropout sweeps have one (tests/empirical/test_sweep_variants.py).
  ds = sweeps["tanh"][0].assign_attrs(norm="batch")
  with pytest.raises(ValueError, match=r"`ds` must be a sweep without BatchNorm"):
    overlay.theory(ds)


@pytest.mark.slow
def test_theory_of_a_custom_activation():
  import jax.numpy as jnp
  ds = sweep.sweep(jax.random.key(3), activation=jnp.sin, width=16, depth=3, sigma_w2=1.5,
                   n_inputs=2, in_features=8, progress=False)
  th = overlay.theory(ds)
  np.testing.assert_array_equal(th.q.values, overlay.theory(ds, activation=jnp.sin).q.values)
  assert np.all(np.isfinite(th.q.values)) and np.all(np.isfinite(th.grad_w.values))
  # A Dataset read from a file has lost the callable: say how to pass it again.
  loaded = ds.assign_attrs(activation_keys="{}")
  with pytest.raises(ValueError, match=r"custom activation 'sin'.*activation=<the callable>"):
    overlay.theory(loaded)


@pytest.mark.slow
def test_theory_of_a_float32_sweep_beyond_float32():
  # ReLU at sigma_w2 = 256: q^l leaves float32 near layer 19, but the theory
  # (in float64) of the gradient profile is finite at every layer.
  ds = sweep.sweep(jax.random.key(0), activation="relu", sigma_w2=256.0, depth=30, width=64,
                   n_inputs=16, in_features=16, progress=False)
  th = overlay.theory(ds)
  for name in ("grad_h", "grad_w", "chi_1"):
    assert np.all(np.isfinite(th[name].values)), name
  assert np.all(np.isfinite(ds.grad_w.values)) and np.all(np.isfinite(ds.c.values))
