"""The engine's shared pieces: streams, grid assembly, atomic writes, one validation module."""

from __future__ import annotations

import ast
import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from empirical import _checks, engine, inits, models, streams


def test_weights_and_biases_come_from_their_named_streams():
  k = jax.random.key(3)
  std = models.standard_params(k, in_features=3, width=4, depth=2, init="gaussian",
                               out_features=2)
  scheme = inits.init("gaussian")
  kw = jax.random.fold_in(k, streams.WEIGHTS)
  kb = jax.random.fold_in(k, streams.BIASES)
  # Jitted and eager scaling of one draw may round differently (one float32 ulp); a
  # different stream would give unrelated O(1) numbers.
  same = functools.partial(np.testing.assert_allclose, rtol=4 * 2.0**-23, atol=0)
  same(std.w_in, scheme.standard(jax.random.fold_in(kw, 1), (3, 4), jnp.float32))
  same(std.w[0], scheme.standard(jax.random.fold_in(kw, 2), (4, 4), jnp.float32))
  same(std.w_out, scheme.standard(jax.random.fold_in(kw, 3), (4, 2), jnp.float32))
  same(std.b_in, jax.random.normal(jax.random.fold_in(kb, 1), (4,)))
  # Network i of a sweep (or of any driver) draws from fold_in(key, i).
  np.testing.assert_array_equal(jax.random.key_data(models.network_key(k, 5)),
                                jax.random.key_data(jax.random.fold_in(k, 5)))


ROOT = pathlib.Path(__file__).resolve().parents[2]
STREAM_NAMES = [n for n in streams.__all__ if n != "SHARED"]


def _stream_uses():
  """``{function: stream names it reads}`` over every function of the packages, outermost
  functions holding their inner ones' (``streams.X``, ``_streams.X`` or an imported name)."""
  uses = {}
  for pkg in ("meanfield", "empirical", "figures", "benchmarks"):
    for path in sorted((ROOT / pkg).rglob("*.py")):
      if path.name == "streams.py" and pkg == "empirical":
        continue
      tree = ast.parse(path.read_text())
      alias, direct = set(), set()
      for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "empirical":
          alias |= {a.asname or a.name for a in node.names if a.name == "streams"}
        elif isinstance(node, ast.ImportFrom) and node.module == "empirical.streams":
          direct |= {a.asname or a.name for a in node.names}
        elif isinstance(node, ast.Import):
          alias |= {a.asname for a in node.names if a.name == "empirical.streams" and a.asname}
      for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
          uses[f"{path.relative_to(ROOT)}:{fn.name}"] = {
              n.attr for n in ast.walk(fn)
              if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
              and n.value.id in alias} | {
              n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and n.id in direct}
  return uses


def test_the_streams_table_shares_a_number_only_where_it_says_so():
  by_value = {}
  for name in STREAM_NAMES:
    value = getattr(streams, name)
    assert type(value) is int and value >= 0, name
    if name != "SWEEP_INPUTS":                  # an index into split(key), not a network stream
      by_value.setdefault(value, set()).add(name)
  shared = sorted(sorted(g) for g in by_value.values() if len(g) > 1)
  assert shared == sorted(sorted(g) for g in streams.SHARED)


def test_every_stream_of_the_table_is_drawn_and_no_function_draws_two_of_one_number():
  uses = _stream_uses()
  assert len(uses) > 100                        # the parser found the packages' functions
  drawn = set().union(*uses.values())
  assert sorted(set(STREAM_NAMES) - drawn) == []
  clash = [(f, sorted(used & set(group))) for f, used in uses.items()
           for group in streams.SHARED if len(used & set(group)) > 1]
  assert clash == []


def test_grid_variable_drops_single_values():
  full = np.arange(2 * 1 * 3 * 5).reshape(2, 1, 3, 5)
  swept = {"a": True, "b": False, "c": True}
  v = engine.grid_variable(full, ("a", "b", "c"), swept, ["seed"], "doc")
  assert v.dims == ("a", "c", "seed")
  np.testing.assert_array_equal(v.values, full[:, 0])
  assert v.attrs["description"] == "doc"


def test_grid_coords_skip_a_fixed_weight_variance():
  axes = {"width": [4, 8], "sigma_w2": [None], "sigma_b2": [0.1]}
  coords = engine.grid_coords(axes, {"width": True, "sigma_w2": False, "sigma_b2": False})
  assert coords == {"width": [4, 8], "sigma_b2": 0.1}


def test_stack_checks_its_lengths():
  results = [{"x": np.zeros((6, 2))} for _ in range(2)]
  assert engine.stack(results, "x", [2, 2, 3]).shape == (2, 2, 3, 2)
  with pytest.raises(ValueError, match="must multiply to 12"):
    engine.stack(results, "x", [5, 2])


def test_atomic_write_replaces_whole_files(tmp_path):
  path = tmp_path / "f.txt"
  engine.atomic_write(path, lambda f: f.write("one"), mode="w")
  with pytest.raises(RuntimeError):
    def broken(f):
      f.write("two")
      raise RuntimeError("killed")
    engine.atomic_write(path, broken, mode="w")
  assert path.read_text() == "one"
  assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


@pytest.mark.parametrize("call, match", [
    (lambda: _checks.check_int("depth", 0, 1), r"`depth` must be an integer >= 1, got 0"),
    (lambda: _checks.check_int("depth", True, 1), r"`depth` must be an integer >= 1, got True"),
    (lambda: _checks.check_int("depth", np.bool_(True), 1), r"must be an integer"),
    (lambda: _checks.check_number("momentum", 1.0, minimum=0.0, below=1.0),
     r"`momentum` must be a finite number >= 0 and < 1, got 1.0"),
    (lambda: _checks.check_number("memory_budget", "1e9", minimum=0, strict=True),
     r"`memory_budget` must be a finite number > 0, got '1e9'"),
    (lambda: _checks.float_dtype("int32"), r"`dtype` must be None or a floating dtype"),
    (lambda: _checks.check_key(np.zeros(2, np.int32)), r"`key` must be a PRNG key"),
])
def test_checks_name_the_argument(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_float_dtype_canonicalises_only_when_asked():
  assert _checks.float_dtype(None) == np.dtype(jnp.zeros(()).dtype)
  assert _checks.float_dtype("float64", canonicalize=False) == np.float64
  with jax.enable_x64(False):
    assert _checks.float_dtype("float64") == np.float32


def test_check_fits_names_the_deepest_item_that_fits():
  def cost(d):
    return 100 + 10 * d                  # linear in depth: 170 bytes at 7, 180 at 8
  engine.check_fits("net", cost, 7, 175, width=4)           # fits: no error
  with pytest.raises(ValueError, match=r"needs about 190 bytes .* depth <= 7 fits"):
    engine.check_fits("net", cost, 9, 175, width=4)
  with pytest.raises(ValueError, match=r"at width 4 depth <= 0 fits"):
    engine.check_fits("net", cost, 1, 50, width=4)
  assert engine.items_per_chunk(1000, 300) == 3 and engine.items_per_chunk(10, 300) == 1
