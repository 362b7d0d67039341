"""A new architecture added in this file alone: its theory, its sweep with store and resume,
and the overlay of one on the other (issue #24, "Done when").

The toy is an MLP whose every layer is scaled by a constant gain ``g``:
``h^1 = g (W^1 x + b^1)``, ``h^l = g (W^l phi(h^{l-1}) + b^l)``. Its mean-field
theory is the MLP's with ``sigma_w2 -> g^2 sigma_w2`` and ``sigma_b2 -> g^2
sigma_b2``: two small classes, no edit to the packages.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import empirical
import meanfield
from empirical import architectures
from empirical.sweeping import make_inputs
from meanfield.network import Architecture


@dataclasses.dataclass(frozen=True)
class Gain(Architecture):
  """The theory mirror: the MLP's maps at the variances times ``gain^2``."""

  gain: float = 1.0
  inputs = ("q_input", "c_input")

  def propagate(self, act, depth, sigma_w2, sigma_b2, *, q_input, c_input):
    g2 = self.gain ** 2
    return meanfield.propagate(q_input=q_input, c_input=c_input, depth=depth,
                               sigma_w2=g2 * sigma_w2, sigma_b2=g2 * sigma_b2, activation=act)

  def fixed_point(self, act, sigma_w2, sigma_b2):
    g2 = self.gain ** 2
    return meanfield.fixed_point(sigma_w2=g2 * sigma_w2, sigma_b2=g2 * sigma_b2, activation=act)


class GainMirror(architectures.Mirror):
  """The experiment mirror: one network's parameters from a key, and its forward pass."""

  name = "gain_toy"

  def __init__(self, fail: bool = False):
    self.fail = fail           # raise if ever run: proves that a store was only read

  def draw(self, key, arch, *, in_features, width, depth, init, sigma_w2, sigma_b2, dtype):
    def layer(l, fan_in):
      kw, kb = jax.random.split(jax.random.fold_in(key, l))
      w = init.standard(kw, (fan_in, width), dtype) * init.scale(sigma_w2, fan_in, width)
      return w.astype(dtype), jax.random.normal(kb, (width,), dtype) * jnp.sqrt(sigma_b2)

    return [layer(0, in_features)] + [layer(l, width) for l in range(1, depth)]

  def forward(self, arch, params, x, phi, shift):
    if self.fail:
      raise AssertionError("the store was complete: nothing should have been computed")
    hs, a = [], x
    for l, (w, b) in enumerate(params):
      hs.append(arch.gain * (a @ w + b[None, :]) + shift[l])
      a = phi.fn(hs[-1])
    return jnp.stack(hs)


@pytest.fixture
def gain_mirror():
  """The toy registered for one test, removed from MIRRORS afterwards."""
  entry = GainMirror()
  architectures.register(Gain, entry)
  yield entry
  architectures.MIRRORS.pop(Gain, None)


def test_the_toy_gets_propagate_and_the_fixed_point_from_its_hooks():
  net = meanfield.Network(activation="tanh", sigma_w2=1.5, sigma_b2=0.05, depth=5,
                          arch=Gain(gain=1.2))
  prop = meanfield.propagate(net, q_input=0.8, c_input=0.3)
  g2 = 1.44
  # Layer 1 is affine in the input: q^1 = g^2 (sigma_w2 q_input + sigma_b2).
  np.testing.assert_allclose(prop.q[0], g2 * (1.5 * 0.8 + 0.05), rtol=1e-6)
  # Each later layer is the q-map at the scaled variances.
  q_next = meanfield.q_map(prop.q[:-1], sigma_w2=g2 * 1.5, sigma_b2=g2 * 0.05, activation="tanh")
  np.testing.assert_allclose(prop.q[1:], q_next, rtol=1e-6)
  plain = meanfield.propagate(net.replace(arch=Gain(gain=1.0)), q_input=0.8, c_input=0.3)
  mlp = meanfield.propagate(net.replace(arch=meanfield.MLP()), q_input=0.8, c_input=0.3)
  np.testing.assert_array_equal(plain.q, mlp.q)
  fp = meanfield.fixed_point(net)
  q_star = meanfield.q_map(fp.q_star, sigma_w2=g2 * 1.5, sigma_b2=g2 * 0.05, activation="tanh")
  np.testing.assert_allclose(q_star, fp.q_star, rtol=1e-5)
  assert not np.isclose(fp.q_star, meanfield.fixed_point(net.replace(arch=meanfield.MLP())).q_star)


# 2 variances x 8 seeds = 16 networks of width 128, in chunks of 4: one compiled program.
N, SEEDS = 128, 8
GRID = dict(activation="tanh", width=N, depth=3, sigma_w2=[1.0, 1.5], sigma_b2=0.05,
            n_seeds=SEEDS, chunk_size=4, progress=False)


def _inputs():
  return make_inputs(jax.random.key(1), n_inputs=4, in_features=32, q_input=1.0, c_input=0.5)


_PROGRAM = architectures._program            # the default sweep's per-configuration program


def _counting(monkeypatch, kill_after: int | None = None) -> list[int]:
  """Record the items of every chunk the default sweep computes (not loads); with
  ``kill_after``, the run dies (RuntimeError) when it starts the chunk after that many."""
  computed, program = [], _PROGRAM

  def counting(*config):
    compute = program(*config)

    def run(key, x, settings, idx):
      if kill_after is not None and len(computed) == kill_after:
        raise RuntimeError("killed")
      computed.append(len(idx))
      return compute(key, x, settings, idx)

    return run

  monkeypatch.setattr(architectures, "_program", counting)
  return computed


def test_the_toy_sweeps_on_the_engine_resumes_and_overlays_its_theory(gain_mirror, tmp_path,
                                                                       monkeypatch):
  x, arch, store = _inputs(), Gain(gain=1.2), tmp_path / "store"
  killed = _counting(monkeypatch, kill_after=2)
  with pytest.raises(RuntimeError, match="killed"):
    empirical.sweep(jax.random.key(0), arch=arch, inputs=x, store=str(store), **GRID)
  assert killed == [4, 4]
  chunks = sorted(store.glob("config-*/chunk-*.npz"))
  assert len(chunks) == 2
  for c in chunks:
    os.utime(c, (1.0, 1.0))                     # times set back to tell a rewrite
  computed = _counting(monkeypatch)
  ds = empirical.sweep(jax.random.key(0), arch=arch, inputs=x, store=str(store), **GRID)
  assert computed == [4, 4]                     # the two chunks the kill left out only
  assert [os.path.getmtime(c) for c in chunks] == [1.0, 1.0]
  whole = empirical.sweep(jax.random.key(0), arch=arch, inputs=x, **GRID)   # no store
  assert ds.identical(whole) and computed == [4] * 6
  # A complete store is only read: a mirror that raises if run gives the same Dataset.
  architectures.register(Gain, GainMirror(fail=True))
  again = empirical.sweep(jax.random.key(0), arch=arch, inputs=x, store=str(store), **GRID)
  assert computed == [4] * 6 and again.identical(ds)
  architectures.register(Gain, gain_mirror)
  # Another value of the architecture is another computation: its store is refused.
  with pytest.raises(ValueError, match=r"holds results of a different computation.*arch.*1\.3"):
    empirical.sweep(jax.random.key(0), arch=Gain(gain=1.3), inputs=x, store=str(store), **GRID)

  # The MLP sweep's schema where it applies.
  mlp = empirical.sweep(jax.random.key(0), inputs=x, **{**GRID, "n_seeds": 1})
  assert set(ds.data_vars) == set(mlp.data_vars) - {"grad_w", "layer_sigma_w2"}
  assert ds.q.dims == mlp.q.dims == ("sigma_w2", "seed", "layer")
  assert ds.first_nonfinite.dims == ("sigma_w2", "seed")
  assert ds.attrs["architecture"] == "gain_toy" and ds.attrs["n_inputs"] == 4
  assert (float(ds.q_input), float(ds.c_input)) == (float(mlp.q_input), float(mlp.c_input))
  assert {n.arch for n in empirical.networks(ds).values} == {arch}

  # The overlay: measured q against the toy's theory. Across seeds q^l has a standard
  # error sem = std / sqrt(SEEDS) (4 sem: a false failure about once in 10^4 per value);
  # its mean also differs from the infinite-width value by O(1/N) (q^l of a width-N layer
  # averages N units: relative variance about 2/N, which Jensen turns into a bias of
  # that order): tolerance 4 sem + 2 q / N.
  th = empirical.theory(ds)
  assert th.q.dims == ("sigma_w2", "layer")
  g2 = 1.44
  np.testing.assert_allclose(th.q.isel(layer=0), g2 * (np.array([1.0, 1.5]) * float(ds.q_input)
                                                       + 0.05), rtol=1e-12)
  mean, sem = ds.q.mean("seed"), ds.q.std("seed", ddof=1) / np.sqrt(SEEDS)
  assert np.all(np.abs(mean - th.q) <= 4 * sem + 2 * th.q / N)
  # ... and it is the toy's theory, not the MLP's: those differ by far more.
  mlp_q = meanfield.propagate(q_input=float(ds.q_input), c_input=float(ds.c_input), depth=3,
                              sigma_w2=np.array([1.0, 1.5]), sigma_b2=0.05,
                              activation="tanh").q
  assert np.all(np.abs(mean.values - mlp_q) > 4 * sem.values + 2 * mlp_q / N)


def test_a_mirror_without_hooks_or_name_is_refused(gain_mirror):
  with pytest.raises(ValueError, match=r"`entry` must have a `name`"):
    architectures.register(Gain, architectures.Mirror())
  with pytest.raises(ValueError, match=r"`inputs` must be a floating array of shape \(batch, "
                                       r"in_features\).*arch=Gain\(gain=1.0\)"):
    empirical.sweep(jax.random.key(0), arch=Gain(), inputs=np.ones(3, np.float32), **GRID)


def test_the_default_overlay_needs_the_hooks(monkeypatch):
  ds = xr.Dataset(attrs={"architecture": "bare"})
  bare = architectures.Mirror()
  bare.name = "bare"
  monkeypatch.setitem(architectures.MIRRORS, Gain, bare)
  with pytest.raises(NotImplementedError, match=r"`empirical.theory` has no experiment for "
                                                r"'bare' Datasets \(its mirror Mirror lacks"):
    empirical.theory(ds)
