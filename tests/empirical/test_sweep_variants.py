"""empirical.sweep(arch=meanfield.MLP(...)) and empirical.theory for residual, LayerNorm and
dropout sweeps."""

from __future__ import annotations

import functools
import glob
import json

import jax
import numpy as np
import pytest

import empirical
import meanfield
from empirical import inits
from tests.empirical import _tiny
from tests.empirical._lazy import LazySweeps

KEY = jax.random.key(7)
N, DEPTH, SEEDS, PAIRS = 256, 6, 8, 4
COMMON = dict(width=N, depth=DEPTH, n_seeds=SEEDS, n_inputs=2 * PAIRS, in_features=64,
              q_input=1.0, c_input=0.5, sigma_b2=0.05, progress=False)
P = 0.8
VARIANTS = {
    "residual-tanh": dict(activation="tanh", sigma_w2=1.5, arch=meanfield.MLP(residual=True)),
    "layernorm-erf": dict(activation="erf", sigma_w2=2.0, arch=meanfield.MLP(norm="layer")),
    "dropout-erf": dict(activation="erf", sigma_w2=1.5, arch=meanfield.MLP(keep_prob=P)),
}
# Var(phi(h)^2) / E[phi(h)^2]^2 for h Gaussian is at most 2 (a linear phi's) for
# tanh and erf, which compress the tails. With dropout the layer input is
# m phi(h) / p, m ~ Bernoulli(p): E[(m/p)^4 phi^4] / E[(m/p)^2 phi^2]^2 - 1 =
# (1 + 2) / p - 1.
KAPPA = {"residual-tanh": 2.0, "layernorm-erf": 2.0, "dropout-erf": 3.0 / P - 1.0}


# The default tier sweeps the residual variant; LayerNorm and dropout (a program each to
# compile) run in the slow tier.
DEFAULT_TIER = ["residual-tanh"] + [pytest.param(n, marks=pytest.mark.slow)
                                    for n in VARIANTS if n != "residual-tanh"]


@pytest.fixture(scope="module")
def sweeps():
  return LazySweeps({name: functools.partial(empirical.sweep, KEY, **COMMON, **kw)
                     for name, kw in VARIANTS.items()})


@pytest.mark.slow
@pytest.mark.parametrize("name", list(VARIANTS))
def test_q_follows_the_variant_theory(sweeps, name):
  # As in test_overlay.py: given layer l-1, the mean square of the N fresh
  # Gaussian units of the branch has relative variance 2/N, its variance
  # (from the N units of the layer input) at most kappa/N; the maps'
  # elasticity in q^{l-1} is at most 1 (a residual q^l = q^{l-1} + branch
  # has relative error at most the larger of the two terms'; LayerNorm resets
  # the length each layer), so the relative variances at most add over l
  # layers; the inputs share the weights (one sample per network), seeds
  # are independent networks.
  ds, th = sweeps[name]
  se = np.sqrt((2 + KAPPA[name]) * ds.layer.values / (N * SEEDS))
  err = np.log(ds.q.mean("seed")) - np.log(th.q)
  assert np.all(np.abs(err) < 5 * se), err.values


@pytest.mark.parametrize("name", DEFAULT_TIER)
def test_c_follows_the_variant_theory(sweeps, name):
  # A width-N sample correlation has standard deviation <= 1/sqrt(N); through
  # l layers (slope <= 1, plus the q noise above) variances at most add;
  # pairs use independent input directions, seeds independent weights.
  ds, th = sweeps[name]
  se = np.sqrt((1 + KAPPA[name]) * ds.layer.values / (N * SEEDS * PAIRS))
  err = ds.c.mean("seed") - th.c
  assert np.all(np.abs(err) < 5 * se), err.values


@pytest.mark.parametrize("name", DEFAULT_TIER)
def test_variant_theory_is_the_matching_meanfield_function(sweeps, name):
  ds, th = sweeps[name]
  net = empirical.networks(ds).item()
  assert net == meanfield.Network(**{**VARIANTS[name], "sigma_b2": 0.05, "depth": DEPTH,
                                     "width": N, "init": inits.init("gaussian")})
  with jax.enable_x64(True):
    # theory reads each layer's variance from the sweep's layer_sigma_w2 (the
    # same in every layer for the gaussian init, sigma_w2 up to float32 rounding).
    sigma_w2 = float(ds.layer_sigma_w2.isel(layer=1))
    np.testing.assert_allclose(ds.layer_sigma_w2, sigma_w2, rtol=0)
    prop = meanfield.propagate(net.replace(sigma_w2=sigma_w2), q_input=float(ds.q_input),
                               c_input=float(ds.c_input))
  np.testing.assert_allclose(th.q, prop.q, rtol=1e-12)
  np.testing.assert_allclose(th.c, prop.c, rtol=1e-12)
  np.testing.assert_allclose(th.chi_1, prop.chi_1, rtol=1e-12)
  derived = ("grad_h", "grad_w") if name.startswith("dropout") else ()
  for v in ("grad_h", "grad_w", "q_lo", "q_median", "q_hi"):    # not derived: nan
    if v in derived:     # dropout's: tests/empirical/test_dropout_gradients.py
      assert np.all(np.isfinite(th[v])), (name, v)
    else:
      assert np.all(np.isnan(th[v])), (name, v)


@pytest.mark.slow
def test_residual_theory_rejects_the_plain_prediction(sweeps):
  # Non-vacuity: the skip makes q grow; the plain MLP's q is far outside the band.
  ds, th = sweeps["residual-tanh"]
  plain = meanfield.propagate(q_input=float(ds.q_input), c_input=float(ds.c_input),
                              depth=DEPTH, sigma_w2=1.5, sigma_b2=0.05, activation="tanh")
  se = np.sqrt(4 * ds.layer.values / (N * SEEDS))
  err = np.log(ds.q.mean("seed")) - np.log(np.asarray(plain.q))
  assert np.all(np.abs(err[1:]) > 5 * se[1:])


TINY = dict(activation="tanh", width=8, depth=3, sigma_w2=[1.0, 2.0], n_seeds=3, n_inputs=4,
            in_features=4, progress=False)


@pytest.mark.parametrize("keep_prob, message", [
    (0, r"`keep_prob` must be in \(0, 1\]"), (-0.5, r"`keep_prob` must be in \(0, 1\]"),
    (1.5, r"`keep_prob` must be in \(0, 1\]"), (float("nan"), r"`keep_prob` must be in \(0, 1\]"),
    (True, "`keep_prob` must be a real number"), ("0.5", "`keep_prob` must be a real number"),
    (None, "`keep_prob` must be a real number"),
    (np.array([0.5, 0.8]), r"`arch.keep_prob` must be a number in \(0, 1\] for `empirical.sweep`"),
])
def test_bad_keep_prob_raises_before_work(tmp_path, keep_prob, message):
  # MLP refuses what is no keep probability; the sweep what is not one number
  store = tmp_path / "store"
  with pytest.raises(ValueError, match=message):
    empirical.sweep(KEY, arch=meanfield.MLP(keep_prob=keep_prob), store=store, **TINY)
  assert not store.exists()


def _identical(a, b):
  assert set(a.data_vars) == set(b.data_vars)
  for v in a.data_vars:
    assert a[v].dtype == b[v].dtype
    assert a[v].values.tobytes() == b[v].values.tobytes(), v


@pytest.mark.slow
def test_keep_prob_one_is_bitwise_the_default():
  default = empirical.sweep(KEY, **TINY)
  _identical(empirical.sweep(KEY, arch=meanfield.MLP(keep_prob=1.0), **TINY), default)
  _identical(empirical.sweep(KEY, arch=meanfield.MLP(keep_prob=1), **TINY), default)
  assert empirical.networks(default).isel(sigma_w2=0).item().arch == meanfield.MLP()


@pytest.mark.slow
def test_dropout_by_network_is_the_keyword_and_comes_back():
  net = meanfield.Network(activation="tanh", sigma_w2=1.5, sigma_b2=0.1, depth=3, width=8,
                          arch=meanfield.MLP(keep_prob=0.5))
  tiny = {k: v for k, v in TINY.items() if k not in ("activation", "width", "depth",
                                                     "sigma_w2")}
  by_net = empirical.sweep(KEY, network=net, **tiny)
  by_kw = empirical.sweep(KEY, activation="tanh", sigma_w2=1.5, sigma_b2=0.1, depth=3,
                          width=8, arch=meanfield.MLP(keep_prob=0.5), **tiny)
  assert by_net.identical(by_kw)
  assert empirical.networks(by_net).item() == net.replace(init=inits.init("gaussian"))
  # The masks act: layer 1 sees the undropped input, the layers above differ.
  plain = empirical.sweep(KEY, network=net.replace(arch=meanfield.MLP()), **tiny)
  np.testing.assert_array_equal(by_net.q.isel(layer=0), plain.q.isel(layer=0))
  assert np.all(by_net.q.isel(layer=slice(1, None)) != plain.q.isel(layer=slice(1, None)))


def test_store_spec_names_keep_prob_only_below_one(tmp_path):
  # keep_prob = 1 writes the spec of a sweep without the keyword, so stores
  # made before it existed resume; a dropout sweep never reuses them.
  # (the smallest sweep, the one test_sweep.py's default tests compile)
  store = tmp_path / "store"
  first = empirical.sweep(KEY, store=store, **_tiny.TINY)
  metas = glob.glob(str(store / "**" / "meta.json"), recursive=True)
  assert metas
  for m in metas:
    with open(m) as f:
      assert "keep_prob" not in json.load(f)["spec"]
  assert empirical.sweep(KEY, store=store, arch=meanfield.MLP(keep_prob=1.0),
                         **_tiny.TINY).identical(first)
  with pytest.raises(ValueError, match="keep_prob"):
    empirical.sweep(KEY, store=store, arch=meanfield.MLP(keep_prob=P), **_tiny.TINY)
