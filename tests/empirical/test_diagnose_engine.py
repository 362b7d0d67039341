"""empirical.diagnose on the experiment engine: chunks, devices, a store keyed by content.

The result of a run cut into any chunks, over two devices, or resumed from a
store after an interruption is bitwise that of one uninterrupted run; a rerun
on a finished store measures nothing; a store holds one computation only, so
a different model (other parameters, or the same parameters and another
forward pass), other inputs or other settings raise. The kill of a real
process is in ``tests/empirical/test_kill.py`` (slow tier).
"""

import os

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

import empirical
from empirical import engine
from tests.empirical._spies import count_measured

KEY = jax.random.key(11)
X = jax.random.normal(jax.random.key(1), (4, 4))
ARGS = dict(key=KEY, n_seeds=5, n_projections=1, progress=False)


class Tiny(nnx.Module):
  """Two dense layers; ``init`` and ``act`` make other models of the same shapes."""

  def __init__(self, rngs, init=nnx.initializers.lecun_normal(), act=jnp.tanh):
    self.a = nnx.Linear(4, 8, kernel_init=init, rngs=rngs)
    self.b = nnx.Linear(8, 8, kernel_init=init, rngs=rngs)
    self.act = act

  def __call__(self, x):
    return self.b(self.act(self.a(x)))


def tiny(rngs):
  return Tiny(rngs)


@pytest.fixture(scope="module")
def whole():
  return empirical.diagnose(tiny, X, **ARGS)


def _chunks(store) -> dict[str, int]:
  """Each chunk file of ``store`` with its modification time (ns)."""
  return {n: os.stat(os.path.join(store, n)).st_mtime_ns for n in os.listdir(store)
          if n.startswith("chunk-")}


def test_chunks_and_devices_do_not_change_the_result(whole):
  assert whole.sizes["seed"] == 5
  for chunk_size in (1, 3):
    assert empirical.diagnose(tiny, X, chunk_size=chunk_size, **ARGS).identical(whole)
  assert empirical.diagnose(tiny, X, devices=2, **ARGS).identical(whole)


def test_a_rerun_on_a_finished_store_measures_nothing(whole, tmp_path, monkeypatch):
  store = tmp_path / "store"
  assert empirical.diagnose(tiny, X, chunk_size=2, store=store, **ARGS).identical(whole)
  written = _chunks(store)
  assert len(written) == 3
  measured = count_measured(monkeypatch)
  # Another object computing the same model: the store is keyed by content, not identity.
  again = empirical.diagnose(lambda rngs: Tiny(rngs), X, chunk_size=2, store=store, **ARGS)
  assert measured == []
  assert _chunks(store) == written
  assert again.identical(whole)


def test_an_interrupted_run_resumes_to_the_same_result(whole, tmp_path, monkeypatch):
  store = tmp_path / "store"
  write, writes = engine.atomic_write, []

  def killed_at_the_second_chunk(path, fn, mode="wb"):
    writes.append(path)
    if len(writes) == 2:
      raise KeyboardInterrupt
    write(path, fn, mode)

  monkeypatch.setattr(engine, "atomic_write", killed_at_the_second_chunk)
  with pytest.raises(KeyboardInterrupt):
    empirical.diagnose(tiny, X, chunk_size=2, store=store, **ARGS)
  assert len(_chunks(store)) == 1
  monkeypatch.setattr(engine, "atomic_write", write)
  measured = count_measured(monkeypatch)
  resumed = empirical.diagnose(tiny, X, chunk_size=2, store=store, **ARGS)
  assert measured == [2, 2]                  # the two missing chunks only
  assert resumed.identical(whole)


@pytest.mark.parametrize("model, x, kwargs, differs", [
    # other parameters (another init), the same shapes and forward pass
    (lambda rngs: Tiny(rngs, init=nnx.initializers.normal(0.5)), X, {}, "parameter_values"),
    # the same parameters, another forward pass
    (lambda rngs: Tiny(rngs, act=jax.nn.relu), X, {}, "values"),
    (tiny, X + 1, {}, "x"),
    (tiny, X, dict(n_projections=2), "n_projections"),
    (tiny, X, dict(n_seeds=4), "n_items"),
])
def test_another_computation_on_the_store_raises(tmp_path, monkeypatch, model, x, kwargs,
                                                 differs):
  store = tmp_path / "store"
  empirical.diagnose(tiny, X, store=store, **{**ARGS, "n_seeds": 2})
  measured = count_measured(monkeypatch)
  with pytest.raises(ValueError, match=rf"`store` .* holds results of a different "
                                       rf"computation \(.*\b{differs}: stored"):
    empirical.diagnose(model, x, store=store, **{**ARGS, "n_seeds": 2, **kwargs})
  assert measured == []                      # refused before any work


def test_a_model_that_ignores_its_key_makes_no_store(tmp_path):
  store = tmp_path / "store"
  with pytest.raises(ValueError, match="`model` builds identical networks"):
    empirical.diagnose(lambda rngs: Tiny(nnx.Rngs(0)), X, store=store, **ARGS)
  assert not os.path.exists(store / "meta.json")
