"""meanfield.Network on the experiment's side: network=, networks(ds), Init.law, module names."""

from __future__ import annotations

import importlib

import jax
import numpy as np
import pytest
import xarray as xr

import empirical
import meanfield
from meanfield.network import weight_law
from empirical import inits

KEY = jax.random.key(5)
TINY = dict(n_seeds=2, n_inputs=2, in_features=4, progress=False)
NET = meanfield.Network(activation="tanh", sigma_w2=1.5, sigma_b2=0.1, depth=2, width=4)


def test_module_names_are_modules():
  # Importing a driver's module gives the module; the package's names stay functions.
  for name, fn in (("sweeping", "sweep"), ("training", "train"), ("engine", "run_chunked")):
    module = importlib.import_module(f"empirical.{name}")
    assert type(module).__name__ == "module"
    assert callable(getattr(module, fn))
  assert callable(empirical.sweep) and callable(empirical.train)


@pytest.mark.parametrize("name", inits.init_names())
def test_every_scheme_names_its_weight_law(name):
  scheme = inits.init(name)
  expected = {"orthogonal": "orthogonal", "zeros": None}.get(name, "gaussian")
  assert scheme.law == expected
  if expected is None:
    with pytest.raises(ValueError, match="`init` must be one of"):
      weight_law(scheme)
  else:
    assert weight_law(scheme) == expected


def test_parametrised_schemes_name_their_law():
  assert inits.normal(0.1).law == "gaussian"
  assert inits.constant(0.5).law is None


@pytest.mark.slow
def test_network_fills_the_keywords_bitwise():
  by_net = empirical.sweep(KEY, network=NET, **TINY)
  by_kw = empirical.sweep(KEY, activation="tanh", sigma_w2=1.5, sigma_b2=0.1, depth=2,
                          width=4, **TINY)
  assert by_net.identical(by_kw)
  # ... and the Dataset gives the same network back (init as the scheme object).
  back = empirical.networks(by_net)
  assert back.dims == () and back.item() == NET.replace(init=inits.init("gaussian"))


@pytest.mark.slow
def test_networks_of_a_grid_and_of_presets():
  ds = empirical.sweep(KEY, activation="relu", init=["he_normal", "lecun_normal"], width=4,
                       depth=2, **TINY)
  nets = empirical.networks(ds)
  assert nets.dims == ("init",)
  for init_name, sigma_w2 in (("he_normal", 2.0), ("lecun_normal", 1.0)):
    net = nets.sel(init=init_name).item()
    # The preset's own variance in the theory's terms (hidden layer, fan_in = width).
    assert net.sigma_w2 == pytest.approx(sigma_w2, rel=1e-12)
    assert (net.depth, net.width, net.init.name, net.activation) == (2, 4, init_name, "relu")
    assert weight_law(net.init) == "gaussian"


def test_network_of_a_preset_leaves_sigma_w2_to_the_scheme():
  net = meanfield.Network(activation="relu", sigma_w2=2.0, depth=2, width=4,
                          init=inits.init("he_normal"))
  by_net = empirical.sweep(KEY, network=net, **TINY)
  by_kw = empirical.sweep(KEY, activation="relu", init="he_normal", depth=2, width=4, **TINY)
  assert by_net.identical(by_kw)


@pytest.mark.parametrize("call, match", [
    (lambda: empirical.sweep(KEY, network=NET, sigma_w2=1.0, **TINY),
     r"got 'sigma_w2' both from `network` and as keywords"),
    (lambda: empirical.sweep(KEY, network=NET.replace(width=None), **TINY),
     r"`network.width` must be a number"),
    (lambda: empirical.train(KEY, network=NET.replace(arch=meanfield.MLP(keep_prob=0.5)),
                             learning_rate=0.1),
     r"`network` has keep_prob=0.5, which `train` does not run"),
    (lambda: empirical.jacobian_spectra(KEY,
                                        network=NET.replace(arch=meanfield.MLP(residual=True))),
     r"`network` has residual=True, which `jacobian_spectra` does not run"),
    (lambda: empirical.sweep(KEY, network=NET.replace(arch=meanfield.MLP(residual=True, alpha=2.0)),
                             **TINY),
     r"`network` has alpha=2.0, which `sweep` does not run"),
    # the same variants by keyword: the drivers' bodies check what they run
    (lambda: empirical.train(KEY, arch=meanfield.MLP(keep_prob=0.5), learning_rate=0.1),
     r"`arch` has keep_prob=0.5, which `empirical.train` does not run"),
    (lambda: empirical.jacobian_spectra(KEY, arch=meanfield.MLP(norm="layer")),
     r"`arch` has norm='layer', which `empirical.jacobian_spectra` does not run"),
    (lambda: empirical.sweep(KEY, arch=meanfield.MLP(residual=True, alpha=2.0), **TINY),
     r"`arch` has alpha=2.0, which `empirical.sweep` does not run"),
    (lambda: empirical.sweep(KEY, arch=None, **TINY),
     r"`arch` of `empirical.sweep` must be meanfield.MLP\(...\) .*got None"),
    (lambda: empirical.train(KEY, network=NET.replace(arch=meanfield.Conv(kernel_size=3)),
                             arch=meanfield.MLP(), learning_rate=0.1),
     r"`train` got 'arch' both from `network` and as keywords"),
    (lambda: empirical.sweep(KEY, network=NET.replace(arch=meanfield.Conv(kernel_size=3)),
                             **TINY),
     r"`n_inputs`, `in_features` must keep the plain value \(n_inputs=None, in_features=None\) "
     r"with arch=Conv\(kernel_size=3"),
    (lambda: empirical.train(KEY, network="tanh", learning_rate=0.1),
     r"`network` of `train` must be a meanfield.Network"),
])
def test_bad_network_raises_before_work(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_networks_of_what_is_not_an_experiment_grid_is_named():
  with pytest.raises(ValueError, match=r"`ds` must be an xarray.Dataset of empirical.sweep, "
                                       r"train or jacobian_spectra, got dict"):
    empirical.networks({"activation": "tanh"})
  # A diagnose result (its coordinates: seed, layer, name, ...; none of the grid's).
  diag = xr.Dataset({"q": (("seed", "layer"), np.ones((2, 3)))},
                    coords={"seed": [0, 1], "layer": [1, 2, 3]}, attrs={"verdict": "critical"})
  with pytest.raises(ValueError, match=r"`ds` must be a Dataset of empirical.sweep, train or "
                                       r"jacobian_spectra, .* got one without activation, init, "
                                       r"width, depth, sigma_b2"):
    empirical.networks(diag)


def test_networks_needs_a_custom_activation_again():
  ds = empirical.sweep(KEY, network=NET, **TINY)
  ds.attrs["activation_keys"] = '{"tanh": "tanh@not-this-session"}'
  with pytest.raises(ValueError, match="custom activation 'tanh'"):
    empirical.networks(ds)
  net = empirical.networks(ds, activation=meanfield.activation("erf")).item()
  assert net.phi.name == "erf"


@pytest.mark.slow
def test_networks_of_spectra_have_the_dataset_coordinates():
  ds = empirical.jacobian_spectra(KEY, activation="tanh", width=4, depth=[1, 2],
                                  sigma_w2=[1.0, 2.0], n_seeds=1, q=1.0, progress=False)
  nets = empirical.networks(ds)
  assert nets.dims == ("depth", "sigma_w2")
  assert [n.sigma_w2 for n in nets.sel(depth=2).values] == [1.0, 2.0]
  assert np.all([n.arch == meanfield.MLP() for n in nets.values.flat])


def test_a_network_of_1d_variance_arrays_is_the_keyword_grid():
  net = NET.replace(sigma_w2=np.array([1.0, 1.5]), sigma_b2=np.array([0.0, 0.1]))
  by_net = empirical.sweep(KEY, network=net, **TINY)
  by_kw = empirical.sweep(KEY, activation="tanh", sigma_w2=[1.0, 1.5], sigma_b2=[0.0, 0.1],
                          depth=2, width=4, **TINY)
  assert by_net.identical(by_kw)
  assert by_net.sizes["sigma_w2"] == 2 and by_net.sizes["sigma_b2"] == 2
  # ... and its Networks are one point each, as for any grid
  nets = empirical.networks(by_net)
  assert nets.sel(sigma_w2=1.5, sigma_b2=0.1).item() == NET.replace(init=inits.init("gaussian"))


@pytest.mark.parametrize("changes, message", [
    (dict(sigma_w2=np.ones((2, 1))), r"`network.sigma_w2` must be a number or a 1-d array "
                                     r"for `sweep`, got shape \(2, 1\): .*outer product"),
    (dict(sigma_b2=np.zeros((1, 2))), r"`network.sigma_b2` .* shape \(1, 2\)"),
    (dict(sigma_w2=np.array([1.0, 2.0]), init=inits.init("he_normal")),
     "`network.sigma_w2` must be one number for `sweep` with init="),
])
def test_a_network_grid_an_experiment_cannot_run_raises(changes, message):
  with pytest.raises(ValueError, match=message):
    empirical.sweep(KEY, network=NET.replace(**changes), **TINY)
