"""Random circular CNNs (empirical.conv) against the theory of meanfield.conv."""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import empirical
import meanfield
from meanfield.conv import spatial_modes
from empirical import _input_length, architectures, conv, streams
from tests.empirical._spies import interrupting_writes
from meanfield.network import Architecture


@pytest.mark.slow
def test_pure_forward_equals_flax_circular_conv(x64):
  p = conv.conv_params(jax.random.key(0), in_channels=2, width=8, depth=3, kernel_size=5,
                       init="gaussian", sigma_w2=1.3, sigma_b2=0.1)
  x = jax.random.normal(jax.random.key(1), (10, 2))
  model = conv.CNN(p, activation="tanh")
  np.testing.assert_allclose(np.asarray(model(x[None])[0]),
                             np.asarray(conv.conv_forward(p, x, activation="tanh")[-1]),
                             atol=1e-12)


@pytest.mark.slow
def test_kernel_schemes(x64):
  p = conv.conv_params(jax.random.key(0), in_channels=16, width=16, depth=2, kernel_size=3,
                       init="delta_orthogonal", sigma_w2=1.3)
  w = np.asarray(p.w[0])
  assert np.all(w[0] == 0) and np.all(w[2] == 0)
  np.testing.assert_allclose(w[1] @ w[1].T, 1.3 * np.eye(16), atol=1e-12)
  # Gaussian kernels: entries N(0, sigma_w2 / (k C)); the sample variance of 3*64*64 entries
  # has relative standard error sqrt(2 / 12288) = 1.3%; 5 of them allowed.
  g = conv.conv_params(jax.random.key(1), in_channels=64, width=64, depth=2, kernel_size=3,
                       init="gaussian", sigma_w2=2.0)
  assert float(jnp.var(g.w[0])) == pytest.approx(2.0 / (3 * 64), rel=5 * np.sqrt(2 / 12288))
  assert conv.kernel_init("delta_orthogonal").footprint == "delta"
  assert conv.kernel_init("he_normal").footprint == "uniform"
  with pytest.raises(ValueError, match="init"):
    conv.kernel_init("delta_nonsense")
  with pytest.raises(ValueError, match="kernel_size"):
    conv.conv_params(jax.random.key(0), in_channels=1, width=4, depth=2, kernel_size=2)


@pytest.mark.slow
@pytest.mark.parametrize("init", ["gaussian", "delta_orthogonal"])
def test_covariance_modes_and_gradients_against_theory(x64, init):
  # 32 networks of width 128, erf (closed-form K), n = 8 positions, 5 layers. Each network's
  # statistic is one sample; the mean over seeds has standard error sd / sqrt(32). We allow
  # 4.5 standard errors (t with 31 dof: two-sided tail about 1e-4 per comparison, 50 of them).
  # The finite-width bias is O(1/width), well below one standard error of sqrt(2/width)/sqrt(32).
  n, c0, depth, seeds, sw, sb = 8, 4, 5, 32, 1.5, 0.1
  x = np.asarray(jax.random.normal(jax.random.key(3), (n, c0)))
  # equal lengths at every position, so every layer's q^l is the same at each position and
  # the gradient factor chi_1(q^l) below is exact (not an average over positions)
  x = x / np.linalg.norm(x, axis=1, keepdims=True) * np.sqrt(c0)
  s = empirical.sweep(jax.random.key(0), arch=meanfield.Conv(kernel_size=3), inputs=x,
                      activation="erf", width=128, depth=depth, init=init, sigma_w2=sw,
                      sigma_b2=sb, n_seeds=seeds, progress=False)
  footprint = conv.kernel_init(init).footprint
  th = meanfield.propagate(covariance=x @ x.T / c0, depth=depth, sigma_w2=sw,
                           sigma_b2=sb, activation="erf",
                           arch=meanfield.Conv(kernel_size=3, footprint=footprint))
  # plus 1e-12 for rounding: with an orthogonal first layer some entries have no spread at all
  # (x W W^T x^T / C is exact), and then agree to rounding only
  tol = lambda a: 4.5 * np.std(a, axis=0, ddof=1) / np.sqrt(seeds) + 1e-12
  assert s.q.dims == ("seed", "layer") and s.covariance.dims[-2:] == ("position", "position_b")
  q_emp = s.q.values
  q_th = np.asarray(th.q).mean(-1)
  np.testing.assert_allclose(np.asarray(th.q), np.broadcast_to(q_th[:, None], (depth, n)), rtol=1e-12)
  assert np.all(np.abs(q_emp.mean(0) - q_th) <= tol(q_emp))
  # per-mode covariances: real parts of the diagonal Fourier modes at lags 1 and 2
  modes_emp = np.asarray(conv.spatial_modes(s.covariance.values))[..., :, 1:3].real
  modes_th = np.asarray(spatial_modes(th.extra["covariance"]))[..., :, 1:3].real
  assert np.all(np.abs(modes_emp.mean(0) - modes_th) <= tol(modes_emp))
  # gradients: |dL/dh^l|^2 = |dL/dh^{l+1}|^2 sigma_w2 E[phi'(h^l)^2] (chi_1 at q^l) on average
  g2 = s.grad_h.values ** 2
  ratio = g2[:, :-1].mean(0) / g2[:, 1:].mean(0)
  chi = np.asarray(meanfield.chi_1(sigma_w2=sw, sigma_b2=sb, activation="erf",
                                   q=np.asarray(th.q).mean(-1)[:-1]))
  # the ratio of two means: relative standard error about the sum of the two relative ones
  rel = (np.std(g2, axis=0, ddof=1) / g2.mean(0) / np.sqrt(seeds))
  assert np.all(np.abs(ratio / chi - 1) <= 4.5 * (rel[:-1] + rel[1:]))


@pytest.mark.slow
def test_delta_orthogonal_jacobian_is_orthogonal_mlp_per_position(x64):
  # A linear delta-orthogonal CNN with sigma_w2 = 1 is exactly orthogonal: all singular values 1.
  spectra = lambda init: empirical.jacobian_spectra(
      jax.random.key(0), arch=meanfield.Conv(kernel_size=3, spatial_size=4),
      activation="linear", width=8, depth=6, init=init, sigma_w2=1.0, q=1.0, n_seeds=1,
      progress=False).singular_values.values
  np.testing.assert_allclose(spectra("delta_orthogonal"), 1.0, atol=1e-12)
  # with Gaussian kernels it is not isometric
  sv_g = spectra("gaussian")
  assert float(sv_g.max() / sv_g.min()) > 10


def _counting_programs(monkeypatch) -> list[int]:
  """Record the number of items of every chunk a CNN sweep computes (not loads)."""
  computed, program = [], conv._sweep_program

  def counting(*config):
    compute = program(*config)

    def run(key, x, settings, idx):
      computed.append(len(idx))
      return compute(key, x, settings, idx)

    return run

  monkeypatch.setattr(conv, "_sweep_program", counting)
  return computed


@pytest.mark.slow
def test_sweep_grid_chunks_and_store_resume(tmp_path, monkeypatch):
  # The engine's contract for the CNN sweep: a list makes a dimension (layers beyond a depth are
  # nan); each network comes from its own key, so an item of a padded chunk of 4 equals the
  # same network measured alone; a rerun on the store computes only the chunks missing from
  # it and reads the others back bitwise; a different computation refuses it.
  computed = _counting_programs(monkeypatch)
  x = jax.random.normal(jax.random.key(1), (6, 2))
  store = tmp_path / "store"
  args = dict(width=8, depth=[2, 3], init="delta_orthogonal", sigma_w2=[1.0, 2.0],
              sigma_b2=0.1, n_seeds=3, chunk_size=4, store=str(store))
  ds = _conv_sweep(x, **args)
  assert computed == [4, 4, 4, 4]              # 2 depths x 6 networks in chunks of 4 (padded)
  chunks = sorted(store.glob("config-*/chunk-*.npz"))
  assert len(chunks) == 4
  assert ds.q.dims == ("depth", "sigma_w2", "seed", "layer")
  assert np.all(np.isnan(ds.q.sel(depth=2, layer=3))) and not np.any(np.isnan(ds.q.sel(depth=3)))
  k = jax.random.fold_in(jax.random.key(0), 1)                   # seed 1
  alone = conv.conv_measure(
      conv.conv_params(jax.random.fold_in(k, 0), in_channels=2, width=8, depth=3,
                       kernel_size=3, init="delta_orthogonal", sigma_w2=2.0, sigma_b2=0.1,
                       dtype=x.dtype),
      x, _unit_readout(jax.random.fold_in(k, 1), 8))
  item = ds.sel(depth=3, sigma_w2=2.0, seed=1)                   # item 4: the second chunk
  for name in ("covariance", "q", "grad_h"):                     # float32 rounding only
    np.testing.assert_allclose(item[name].values, getattr(alone, name), rtol=1e-5, atol=1e-7)
  # Resume: one chunk lost, the others kept (their times set back to tell a rewrite).
  chunks[1].unlink()
  for c in chunks[:1] + chunks[2:]:
    os.utime(c, (1.0, 1.0))
  again = _conv_sweep(x, **args)
  assert computed == [4, 4, 4, 4, 4]           # the lost chunk only
  assert chunks[1].exists()
  assert [os.path.getmtime(c) for c in chunks[:1] + chunks[2:]] == [1.0, 1.0, 1.0]
  for name in ("covariance", "q", "grad_h"):
    np.testing.assert_array_equal(again[name].values, ds[name].values)
  whole = _conv_sweep(x, **args)
  assert computed == [4, 4, 4, 4, 4]           # everything read from the store
  for name in ("covariance", "q", "grad_h"):
    np.testing.assert_array_equal(whole[name].values, ds[name].values)
  with pytest.raises(ValueError, match="different computation"):
    _conv_sweep(x, **{**args, "sigma_b2": 0.2})


def _conv_sweep(x, kernel_size=3, **args):
  """``empirical.sweep`` of circular CNNs on the input ``x`` ``(n, C_0)``, key 0."""
  return empirical.sweep(jax.random.key(0), arch=meanfield.Conv(kernel_size=kernel_size),
                         inputs=x, progress=False, **args)


def _unit_readout(key, width):
  r = jax.random.normal(key, (6, width))
  return r / jnp.linalg.norm(r)


def test_theory_of_a_network_reads_the_kernel_schemes_footprint(x64):
  x = np.random.default_rng(0).normal(size=(5, 3))
  cov = x @ x.T / 3
  nets = {}
  for name, footprint in (("delta_orthogonal", "delta"), ("gaussian", "uniform")):
    net = meanfield.Network(activation="erf", sigma_w2=1.5, sigma_b2=0.05, depth=3,
                            init=conv.kernel_init(name), arch=meanfield.Conv(kernel_size=3))
    nets[name] = net
    got = meanfield.propagate(net, covariance=cov)
    want = meanfield.propagate(covariance=cov, depth=3, sigma_w2=1.5, sigma_b2=0.05,
                               activation="erf",
                               arch=meanfield.Conv(kernel_size=3, footprint=footprint))
    np.testing.assert_array_equal(np.asarray(got.extra["covariance"]),
                                  np.asarray(want.extra["covariance"]))
  ds = meanfield.depth_scales(nets["delta_orthogonal"].replace(
      arch=meanfield.Conv(kernel_size=3, spatial_size=4)))
  np.testing.assert_array_equal(np.asarray(ds.extra["eigenvalue"]), 1.0)
  with pytest.raises(ValueError, match="footprint"):
    meanfield.propagate(nets["delta_orthogonal"].replace(
        arch=meanfield.Conv(kernel_size=3, footprint="uniform")), covariance=cov)


def test_validation_of_jacobian_spectra_and_sweep_inputs():
  key = jax.random.key(0)
  small = dict(arch=meanfield.Conv(kernel_size=3, spatial_size=3), width=2, depth=1,
               sigma_w2=1.0, q=1.0, progress=False)
  for kw, pattern in ((dict(q=-1.0), r"`q` must be .*>= 0, got -1\.0"),
                      (dict(sigma_b2=-0.5), r"`sigma_b2` must be .*>= 0, got -0\.5"),
                      (dict(n_seeds=0), r"`n_seeds` must be .*>= 1, got 0"),
                      (dict(arch=meanfield.Conv(kernel_size=3)), r"`arch` must give spatial_size"),
                      (dict(warmup=3), r"`warmup` must be None"),
                      (dict(chunk_size=0), r"`chunk_size` must be .*>= 1, got 0"),
                      (dict(method="projection"), r"`method` must keep the default")):
    with pytest.raises(ValueError, match=pattern):
      empirical.jacobian_spectra(key, **{**small, **kw})
  x = np.ones((4, 2), np.float32)
  x[1, 0] = np.nan
  with pytest.raises(ValueError, match=r"`inputs` must be finite.*nan"):
    _conv_sweep(x, width=2, depth=1, n_seeds=1)
  with pytest.raises(ValueError, match=r"`inputs` must have at least one position.*\(0, 2\)"):
    _conv_sweep(np.zeros((0, 2), np.float32), width=2, depth=1, n_seeds=1)


@pytest.mark.slow
def test_delta_orthogonal_reinit_names_the_layer_and_the_condition():
  from flax import nnx

  class Model(nnx.Module):
    def __init__(self, rngs):
      self.wide = nnx.Conv(4, 8, kernel_size=(3,), rngs=rngs)
      self.narrow = nnx.Conv(8, 4, kernel_size=(3,), rngs=rngs)

  init = meanfield.critical_init("tanh", sigma_b2=0.05, init="orthogonal")
  with pytest.raises(ValueError, match=r"layer narrow .*in_channels <= out_channels.*"
                                       r"in_channels 8 > out_channels 4"):
    empirical.reinit(Model(nnx.Rngs(0)), init, key=jax.random.key(1))


def test_layer_lengths_and_jacobian_of_one_cnn():
  # conv_layer_q is the mean square of conv_forward's pre-activations per layer (over a
  # batch of two), and
  # conv_jacobian is d phi(h^L) / dx, checked against a finite difference along one direction.
  p = conv.conv_params(jax.random.key(0), in_channels=2, width=3, depth=2, kernel_size=3,
                       sigma_w2=1.5, sigma_b2=0.1)
  x = jax.random.normal(jax.random.key(1), (5, 2))
  h = np.asarray(conv.conv_forward(p, x, activation="tanh"))
  x2 = jax.random.normal(jax.random.key(3), (5, 2))
  h2 = np.asarray(conv.conv_forward(p, x2, activation="tanh"))
  np.testing.assert_allclose(np.asarray(conv.conv_layer_q(p, jnp.stack([x, x2]), activation="tanh")),
                             (np.mean(h ** 2, axis=(1, 2)) + np.mean(h2 ** 2, axis=(1, 2))) / 2,
                             rtol=1e-6)
  j = np.asarray(conv.conv_jacobian(p, x, activation="tanh"))
  assert j.shape == (5 * 3, 5 * 2)
  v = np.asarray(jax.random.normal(jax.random.key(2), (5, 2)))
  eps = 1e-2
  out = lambda x_: np.tanh(np.asarray(conv.conv_forward(p, x_, activation="tanh"))[-1]).ravel()
  central = (out(x + eps * v) - out(x - eps * v)) / (2 * eps)
  # float32 central difference: truncation O(eps^2) and rounding O(1e-7 / eps)
  np.testing.assert_allclose(j @ v.ravel(), central, atol=2e-3)


def test_module_logits_statistics_and_modes_of_one_small_cnn():
  # The Flax module holds the same network as conv_forward; conv_logits pools phi(h^L) over
  # positions before the readout; conv_measure's covariance is h^l h^l^T / C with q its
  # mean diagonal, and grad_h the norm of d(r . phi(h^L))/dh^l; spatial_modes of a circulant
  # matrix M[a, b] = m(b - a) puts m on the zero frequency and nothing elsewhere.
  p = conv.conv_params(jax.random.key(0), in_channels=2, width=3, depth=2, kernel_size=3,
                       sigma_w2=1.5, sigma_b2=0.1)
  x = jax.random.normal(jax.random.key(1), (5, 2))
  h = np.asarray(conv.conv_forward(p, x, activation="tanh"))                # (L, n, C)
  np.testing.assert_allclose(np.asarray(conv.CNN(p, activation="tanh")(x[None])[0]), h[-1],
                             atol=1e-5)
  w_out, b_out = np.ones((3, 2), np.float32), np.array([0.5, -0.5], np.float32)
  logits = np.asarray(conv.conv_logits(p._replace(w_out=w_out, b_out=b_out), x[None]))
  np.testing.assert_allclose(logits[0], np.tanh(h[-1]).mean(0) @ w_out + b_out, rtol=1e-5)
  r = np.asarray(jax.random.normal(jax.random.key(2), (5, 3)))
  stats = conv.conv_measure(p, x, r, activation="tanh")
  cov = np.einsum("lac,lbc->lab", h, h) / 3
  np.testing.assert_allclose(np.asarray(stats.covariance), cov, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(np.asarray(stats.q), np.einsum("laa->l", cov) / 5, rtol=1e-5)
  # The last layer's gradient: d(r . tanh(h^L))/dh^L = r (1 - tanh^2 h^L).
  np.testing.assert_allclose(float(stats.grad_h[-1]),
                             np.linalg.norm(r * (1 - np.tanh(h[-1]) ** 2)), rtol=1e-5)
  m = np.arange(1.0, 6.0)
  circulant = m[(np.arange(5)[None, :] - np.arange(5)[:, None]) % 5]
  modes = np.asarray(conv.spatial_modes(circulant))          # a float32 FFT of entries <= 5
  np.testing.assert_allclose(modes[0], m, atol=1e-5)
  np.testing.assert_allclose(modes[1:], 0, atol=1e-5)


def test_kernel_init_names_are_the_schemes_and_their_delta_forms():
  names = conv.kernel_init_names()
  assert "gaussian" in names and "delta_orthogonal" in names
  assert all(conv.kernel_init(n).delta == n.startswith("delta_") for n in names)


@dataclasses.dataclass(frozen=True)
class Toy(Architecture):
  """An architecture with no experiment."""

  size: int = 2


def test_sweep_dispatches_on_the_architecture_and_refuses_what_it_does_not_run(monkeypatch):
  x = np.ones((4, 2), np.float32)
  with pytest.raises(NotImplementedError, match=r"`empirical.sweep` has no experiment for the "
                                                r"Toy\(size=2\) architecture.*MIRRORS"):
    empirical.sweep(jax.random.key(0), arch=Toy(), inputs=x)
  monkeypatch.setitem(architectures.MIRRORS, Toy, architectures.Mirror())   # no hooks
  with pytest.raises(NotImplementedError, match=r"`empirical.sweep` has no experiment for the "
                                                r"Toy\(size=2\) architecture \(its mirror"):
    empirical.sweep(jax.random.key(0), arch=Toy(), inputs=x)
  conv3 = meanfield.Conv(kernel_size=3)
  for kw, pattern in ((dict(dtype="float32"), r"`dtype` must keep the plain value \(dtype="
                                              r"None\) with arch=Conv\(kernel_size=3.*float32"),
                      (dict(n_inputs=4, devices=1), r"`n_inputs`, `devices` must keep"),
                      (dict(n_inputs=4), r"`n_inputs` must keep the plain value")):
    with pytest.raises(ValueError, match=pattern):
      empirical.sweep(jax.random.key(0), arch=conv3, inputs=x, **kw)
  with pytest.raises(TypeError, match="residual"):     # the MLP's variants are MLP's fields
    empirical.sweep(jax.random.key(0), arch=conv3, inputs=x, residual=True)
  with pytest.raises(ValueError, match=r"`arch` of `empirical.sweep` must be meanfield.MLP"):
    empirical.sweep(jax.random.key(0), arch="conv", inputs=x)
  with pytest.raises(ValueError, match=r"`init` must be kernel schemes of the footprint"):
    empirical.sweep(jax.random.key(0), arch=meanfield.Conv(kernel_size=3, footprint="delta"),
                    inputs=x, init="gaussian", sigma_w2=1.0)
  with pytest.raises(ValueError, match=r"`inputs` must have arch.spatial_size = 5 positions"):
    empirical.sweep(jax.random.key(0), arch=meanfield.Conv(kernel_size=3, spatial_size=5),
                    inputs=x, sigma_w2=1.0)


def test_a_networks_arch_runs_the_sweep_of_the_keywords():
  x = np.asarray(jax.random.normal(jax.random.key(1), (4, 2)))
  net = meanfield.Network(activation="tanh", sigma_w2=1.5, sigma_b2=0.1, depth=2, width=3,
                          init=conv.kernel_init("delta_orthogonal"),
                          arch=meanfield.Conv(kernel_size=3))
  by_net = empirical.sweep(jax.random.key(0), network=net, inputs=x, n_seeds=2, progress=False)
  by_kw = _conv_sweep(x, activation="tanh", sigma_w2=1.5, sigma_b2=0.1, depth=2, width=3,
                      init="delta_orthogonal", n_seeds=2)
  assert by_net.identical(by_kw) and by_net.attrs == by_kw.attrs
  assert by_net.covariance.dims == ("seed", "layer", "position", "position_b")
  # The Dataset gives its networks back (arch with the number of positions, the kernel
  # scheme as init), whose theory reads the scheme's footprint; the overlay needs the input.
  back = empirical.networks(by_net).item()
  assert back == net.replace(arch=meanfield.Conv(kernel_size=3, spatial_size=4))
  th = meanfield.propagate(back, covariance=x @ x.T / 2)
  np.testing.assert_array_equal(np.asarray(th.extra["covariance"]), np.asarray(
      meanfield.propagate(covariance=x @ x.T / 2, depth=2, sigma_w2=1.5, sigma_b2=0.1,
                          activation="tanh",
                          arch=meanfield.Conv(kernel_size=3, footprint="delta")
                          ).extra["covariance"]))
  with pytest.raises(NotImplementedError, match=r"`empirical.theory` has no overlay for a CNN "
                                                r"sweep's Dataset.*meanfield.propagate"):
    empirical.theory(by_net)


def test_networks_of_datasets_of_other_architectures_are_named():
  import xarray as xr
  coords = dict(activation="tanh", init="gaussian", width=4, depth=2, sigma_w2=1.0,
                sigma_b2=0.0)
  images = xr.Dataset(coords=coords, attrs={"architecture": "conv", "kernel_size": 3,
                                            "input_shape": [8, 8, 1]})
  with pytest.raises(ValueError, match=r"CNNs of 2 spatial axes \(input_shape \[8, 8, 1\]\)"):
    empirical.networks(images)
  rows = images.assign_attrs(input_shape=[8, 2])
  assert empirical.networks(rows).item().arch == meanfield.Conv(kernel_size=3, spatial_size=8)
  with pytest.raises(NotImplementedError, match=r"`empirical.networks` has no experiment for "
                                                r"'toy' Datasets"):
    empirical.networks(images.assign_attrs(architecture="toy"))


_SPECTRA = dict(arch=meanfield.Conv(kernel_size=3, spatial_size=4), activation="tanh", width=3,
                depth=[2, 3], sigma_w2=1.2, sigma_b2=0.01, n_seeds=4, progress=False)


def _reference_singular_values(key, *, width, n, depth, sigma_w2, sigma_b2, q, n_seeds):
  """The spectra network by network from the public pieces: conv_params of the weight stream,
  z from the CONV_INPUT stream, SVD of conv_jacobian, ``(n_seeds, n C)``."""
  out = []
  for i in range(n_seeds):
    k = jax.random.fold_in(key, i)
    p = conv.conv_params(jax.random.fold_in(k, streams.WEIGHTS), in_channels=width,
                         width=width, depth=depth, kernel_size=3, sigma_w2=sigma_w2,
                         sigma_b2=sigma_b2)
    z = jax.random.normal(jax.random.fold_in(k, streams.CONV_INPUT), (n, width))
    x = jnp.tanh(jnp.sqrt(q) * z)
    out.append(np.linalg.svd(np.asarray(conv.conv_jacobian(p, x, activation="tanh")),
                             compute_uv=False))
  return np.stack(out)


def test_jacobian_spectra_of_a_cnn_are_its_jacobians_singular_values(x64):
  # jacobian_spectra with arch=Conv against the singular values computed network by network,
  # at q* (the default) of the setting; the MLP driver's variables and dims.
  ds = empirical.jacobian_spectra(jax.random.key(2), chunk_size=3, **_SPECTRA)
  q = float(meanfield.q_star(sigma_w2=1.2, sigma_b2=0.01, activation="tanh"))
  assert float(ds.q) == q
  assert ds.singular_values.dims == ("depth", "seed", "index")
  assert ds.moment.dims == ("depth", "seed", "order") and ds.sigma_max.dims == ("depth", "seed")
  assert ds.singular_values.dtype == np.float64 and ds.sizes["index"] == 12
  for d in (2, 3):
    ref = _reference_singular_values(jax.random.key(2), width=3, n=4, depth=d, sigma_w2=1.2,
                                     sigma_b2=0.01, q=q, n_seeds=4)
    sv = ds.singular_values.sel(depth=d).values
    np.testing.assert_allclose(sv, ref, rtol=1e-10, atol=1e-14)
    np.testing.assert_array_equal(ds.sigma_max.sel(depth=d).values, sv[:, 0])
    np.testing.assert_allclose(ds.moment.sel(depth=d, order=2).values,
                               np.mean(sv ** 4, axis=-1), rtol=1e-14)


def test_cnn_spectra_at_q_star_zero_use_the_mlps_limit_and_infinite_q_star_raises(x64):
  # tanh without bias in the ordered phase: q* = 0. The CNN, as the MLP, measures at the
  # stand-in Q_LIMIT of the limit q -> 0+ (the singular values of the networks at that length),
  # and both refuse a setting whose q* is infinite (ReLU above the He point with a bias).
  ordered = dict(_SPECTRA, depth=2, sigma_w2=0.5, sigma_b2=0.0, n_seeds=2)
  assert float(meanfield.q_star(sigma_w2=0.5, sigma_b2=0.0, activation="tanh")) == 0.0
  ds = empirical.jacobian_spectra(jax.random.key(2), **ordered)
  mlp = empirical.jacobian_spectra(jax.random.key(2), **{**ordered, "arch": meanfield.MLP(), "width": 4})
  assert float(ds.q) == float(mlp.q.squeeze()) == _input_length.Q_LIMIT
  ref = _reference_singular_values(jax.random.key(2), width=3, n=4, depth=2, sigma_w2=0.5,
                                   sigma_b2=0.0, q=_input_length.Q_LIMIT, n_seeds=2)
  np.testing.assert_allclose(ds.singular_values.values, ref, rtol=1e-10, atol=1e-14)
  assert float(ds.sigma_max.min()) > 0
  chaotic = dict(ordered, activation="relu", sigma_w2=3.0, sigma_b2=0.1)
  assert np.isinf(float(meanfield.q_star(sigma_w2=3.0, sigma_b2=0.1, activation="relu")))
  for arch in (_SPECTRA["arch"], meanfield.MLP()):
    with pytest.raises(ValueError, match=r"`q` must be given for activation 'relu' at "
                                         r"sigma_w2=3\.0, sigma_b2=0\.1: .*q_star = inf\)"):
      empirical.jacobian_spectra(jax.random.key(2), **{**chaotic, "arch": arch})


def test_cnn_jacobian_spectra_resume_and_a_rerun_recomputes_nothing(tmp_path, monkeypatch):
  # A run killed after 3 chunks (of 2 depths x 2 chunks) leaves them in the store; the rerun
  # computes only the missing one (the kept are not rewritten: their times stay set back)
  # and ends bitwise at the uninterrupted result, which a rerun on the full store reads back
  # without computing anything; another kernel size refuses the store.
  args = dict(_SPECTRA, q=1.0, chunk_size=2)
  whole = empirical.jacobian_spectra(jax.random.key(0), **args)
  store = tmp_path / "store"
  with monkeypatch.context() as m:
    interrupting_writes(m, after=3)
    with pytest.raises(KeyboardInterrupt):
      empirical.jacobian_spectra(jax.random.key(0), store=str(store), **args)
  kept = sorted(store.glob("config-*/chunk-*.npz"))
  assert len(kept) == 3
  for c in kept:
    os.utime(c, (1.0, 1.0))
  resumed = empirical.jacobian_spectra(jax.random.key(0), store=str(store), **args)
  np.testing.assert_array_equal(resumed.singular_values.values, whole.singular_values.values)
  assert [os.path.getmtime(c) for c in kept] == [1.0] * 3
  chunks = sorted(store.glob("config-*/chunk-*.npz"))
  assert len(chunks) == 4
  for c in chunks:
    os.utime(c, (2.0, 2.0))
  with monkeypatch.context() as m:
    interrupting_writes(m, after=0)              # any chunk computed would raise here
    again = empirical.jacobian_spectra(jax.random.key(0), store=str(store), **args)
  np.testing.assert_array_equal(again.singular_values.values, whole.singular_values.values)
  assert all(os.path.getmtime(c) == 2.0 for c in chunks)
  with pytest.raises(ValueError, match="different computation"):
    empirical.jacobian_spectra(jax.random.key(0), store=str(store),
                               **{**args, "arch": meanfield.Conv(kernel_size=1, spatial_size=4)})
