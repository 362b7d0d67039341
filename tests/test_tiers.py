"""The default test tier checks every public function at least once.

The default run (``scripts/test.sh``) leaves the ``slow`` tests out. This file
reads the test sources with ``ast`` (nothing is run) and lists the public
functions and classes of ``meanfield`` and ``empirical`` that no default-tier
test reaches: neither a test function without the ``slow`` mark (its body, its
decorators, the module-level helpers, fixtures and constants it uses, followed
through the file) nor a Python block of ``docs/*.md`` that the default run
executes. Result types (``NamedTuple`` classes and dataclasses that users do
not build themselves) are reached through the functions that return them and
are not listed. Public means exported by the package (``meanfield.<name>``,
``empirical.<name>``): a helper that stays in its module
(``empirical.engine.run_chunked``) is not listed.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import pathlib
import types

import empirical
import meanfield

ROOT = pathlib.Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
# Frozen dataclasses that users construct themselves (the rest are results).
_BUILT_BY_USERS = {"Network", "Init", "DataSplit"}


def _public_callables() -> set[str]:
  names = set()
  for package in (meanfield, empirical):
    for name, obj in vars(package).items():
      if name.startswith("_") or isinstance(obj, types.ModuleType) or not callable(obj):
        continue
      if inspect.isclass(obj) and (dataclasses.is_dataclass(obj) or hasattr(obj, "_fields")):
        if name not in _BUILT_BY_USERS:
          continue  # a result type: reached through what returns it
      names.add(name)
  return names


def _is_slow_mark(node: ast.expr) -> bool:
  """``pytest.mark.slow`` (or ``mark.slow``), bare or called."""
  if isinstance(node, ast.Call):
    node = node.func
  return isinstance(node, ast.Attribute) and node.attr == "slow"


def _file_is_slow(tree: ast.Module) -> bool:
  for stmt in tree.body:
    if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark"
                                            for t in stmt.targets):
      marks = stmt.value.elts if isinstance(stmt.value, (ast.List, ast.Tuple)) else [stmt.value]
      if any(_is_slow_mark(m) for m in marks):
        return True
  return False


def _referenced(node: ast.AST) -> set[str]:
  """Every plain name and attribute name used under ``node``."""
  out = set()
  for sub in ast.walk(node):
    if isinstance(sub, ast.Name):
      out.add(sub.id)
    elif isinstance(sub, ast.Attribute):
      out.add(sub.attr)
    elif isinstance(sub, ast.arg):
      out.add(sub.arg)  # a fixture requested by name
  return out


def _definitions(tree: ast.Module) -> dict[str, list[ast.AST]]:
  """Module-level functions, classes and assignments of a test file, by the name they bind."""
  defs: dict[str, list[ast.AST]] = {}
  for stmt in tree.body:
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
      defs.setdefault(stmt.name, []).append(stmt)
    elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
      targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
      for target in targets:
        for sub in ast.walk(target):
          if isinstance(sub, ast.Name):
            defs.setdefault(sub.id, []).append(stmt)
  return defs


def _default_tests(tree: ast.Module) -> list[ast.AST]:
  """The test functions (and test-class methods) of a file that the default tier runs."""
  if _file_is_slow(tree):
    return []
  found = []
  for stmt in tree.body:
    functions = [stmt] if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) else []
    if isinstance(stmt, ast.ClassDef) and stmt.name.startswith("Test"):
      if any(_is_slow_mark(d) for d in stmt.decorator_list):
        continue
      functions = [f for f in stmt.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for f in functions:
      if f.name.startswith("test_") and not any(_is_slow_mark(d) for d in f.decorator_list):
        found.append(f)
  return found


def _reached_in_file(tree: ast.Module, shared: dict[str, list[ast.AST]]) -> set[str]:
  """Names the default-tier tests of one file use, through the file's own definitions and
  the fixtures of ``conftest.py`` files (``shared``)."""
  defs = {**shared, **_definitions(tree)}
  reached, todo, seen = set(), list(_default_tests(tree)), set()
  while todo:
    node = todo.pop()
    if id(node) in seen:
      continue
    seen.add(id(node))
    names = _referenced(node)
    reached |= names
    for name in names:
      todo.extend(defs.get(name, []))
  return reached


def _reached_by_docs() -> set[str]:
  from tests import test_docs  # the docs' blocks and which files the default run executes
  reached = set()
  for path in test_docs.DOC_FILES:
    if path.name in test_docs.SLOW:
      continue
    for code, skipped in test_docs._blocks(path):
      if not skipped:
        reached |= _referenced(ast.parse(code))
  return reached


def _reached_by_default_tier() -> set[str]:
  shared = {}
  for conftest in sorted(TESTS.rglob("conftest.py")):
    shared.update(_definitions(ast.parse(conftest.read_text())))
  reached = _reached_by_docs()
  for path in sorted(TESTS.rglob("test_*.py")):
    reached |= _reached_in_file(ast.parse(path.read_text()), shared)
  return reached


def test_the_reader_sees_marks_and_helpers():
  # Guards the reader itself on a small file: a slow test's names are not reached, a
  # default test's are, also through a helper, a constant and a fixture.
  source = (
      "import pytest\n"
      "CASES = [mf.alpha]\n"
      "def _helper():\n  return mf.beta()\n"
      "@pytest.fixture\ndef thing():\n  return mf.gamma()\n"
      "@pytest.mark.parametrize('c', CASES)\ndef test_a(c, thing):\n  _helper()\n"
      "@pytest.mark.slow\ndef test_b():\n  mf.delta()\n")
  tree = ast.parse(source)
  assert [f.name for f in _default_tests(tree)] == ["test_a"]
  reached = _reached_in_file(tree, {})
  assert {"alpha", "beta", "gamma"} <= reached and "delta" not in reached
  assert _file_is_slow(ast.parse("import pytest\npytestmark = pytest.mark.slow\n"))


def test_the_user_built_classes_are_public():
  # _BUILT_BY_USERS names exported classes; one that left a package's namespace (or was
  # renamed) would silently drop out of the check below.
  exported = {name for package in (meanfield, empirical) for name in vars(package)}
  assert _BUILT_BY_USERS <= exported, sorted(_BUILT_BY_USERS - exported)


def test_every_public_function_is_checked_by_the_default_tier():
  missing = sorted(_public_callables() - _reached_by_default_tier())
  assert not missing, ("public names that no default-tier test (or run docs block) calls: "
                       f"{missing}; give each a cheap check outside the slow tier")
