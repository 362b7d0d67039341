"""scripts/golden.py, the before/after bit comparison of a refactor: its table and its comparison.

Running the entries is the tool's job (minutes, and bits differ between CPU
kinds); here only that the table can be built and names what exists, and
that the comparison means "same bits, NaN equal to NaN".
"""

import ast
import importlib.util
import pathlib

import numpy as np
import xarray as xr

import empirical
import meanfield

PATH = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "golden.py"


def _golden():
  spec = importlib.util.spec_from_file_location("golden", PATH)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_the_entry_table_names_callables_that_exist():
  golden = _golden()
  assert len(golden.ENTRIES) >= 10
  for name, fn in golden.ENTRIES.items():
    assert callable(fn) and fn.__name__ == name
  # Every package attribute the entries use exists (a renamed function fails here, not
  # minutes into a save).
  packages = {"empirical": empirical, "meanfield": meanfield}
  for node in ast.walk(ast.parse(PATH.read_text())):
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
        and node.value.id in packages:
      assert hasattr(packages[node.value.id], node.attr), f"{node.value.id}.{node.attr}"


def test_identical_is_bits_with_nan_equal_to_nan():
  golden = _golden()
  a = np.array([1.0, np.nan, 0.0])
  other_nan = np.array([1.0, -np.nan, 0.0])          # another NaN bit pattern
  assert golden.identical(a, other_nan)
  assert not golden.identical(a, np.array([1.0, np.nan, -0.0]))    # -0.0 has other bits
  assert not golden.identical(a, a.astype(np.float32))
  assert not golden.identical(a, a[None])
  assert not golden.identical(a, np.nextafter(a, 2.0))


def test_flatten_reads_datasets_namedtuples_and_labels():
  golden = _golden()
  ds = xr.Dataset({"q": (("activation", "layer"), np.ones((2, 3)))},
                  coords={"activation": np.array(["tanh", "relu"], object), "layer": [1, 2, 3]})
  flat = golden.flatten({"ds": ds, "fp": meanfield.FixedPoint(*[np.zeros(2)] * len(
      meanfield.FixedPoint._fields)), "fn": len})
  assert set(flat) == {"ds/var/q", "ds/coord/activation", "ds/coord/layer"} | {
      f"fp/{f}" for f in meanfield.FixedPoint._fields}
  assert flat["ds/coord/activation"].dtype.kind == "U"
  saved = dict(flat)
  saved["ds/var/q"] = saved["ds/var/q"] + 1
  assert golden.differences(saved, flat) == ["differs: ds/var/q: 6 of 6 values differ"]
