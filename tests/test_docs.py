"""The documentation: every public name is documented, and every example runs.

- Every function and class that ``meanfield`` and ``empirical`` export (and
  every public method or property those classes define) has a docstring that
  opens with a summary line, and the API pages of the site
  (scripts/docs_hooks.py, which reads the packages' ``__init__`` imports)
  list exactly the names the packages export.
- Every ```python block in README.md and docs/*.md runs, doctest-style: the
  blocks of one file run in order in one namespace, so a block may use what an
  earlier one defined. A block right after a ``<!-- skip-test: why -->``
  comment is only compiled (e.g. the README's own-data example, which loads
  the user's ``x.npy``). A line whose comment states a value, ``# ~0.570``
  (rounds to it) or ``# 1.76095...`` (begins with it), is checked against it
  to the digits stated. A file listed in ``SLOW`` (the README: about a minute
  of compiling and sweeping) runs only under ``-m slow``; the default run
  compiles its blocks and runs every other file's.

The blocks run in a temporary working directory (the README writes stores
under ``runs/``), and the global 64-bit flag a block may switch on is restored
afterwards.
"""

import ast
import importlib.util
import inspect
import pathlib
import re
import textwrap
import types

import jax
import pytest

import empirical
import meanfield

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^([ \t]*)```(\w*)[^\n]*\n(.*?)^\1```[ \t]*$", re.MULTILINE | re.DOTALL)
_SKIP = re.compile(r"<!--\s*skip-test\b.*?-->\s*$")
# Files whose examples take long to run (CPU seconds on a 2-core machine, cold JAX caches):
# their run is `slow`; the default run still compiles their blocks.
SLOW = {
  "README.md": "about 65 s: the theory tour compiles ~15 theory functions (45 s), "
               "then a 192-network sweep and its theory (17 s)",
  "transformer.md": "about 10 s: a sweep of random transformer blocks and its theory",
  "ntk.md": "about 5 s: the NTK of a 64 x 3 grid over 200 layers",
}


def _script(name):
  spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _hooks():
  return _script("docs_hooks")


def _public(package):
  """The public names a package exports, without its submodules."""
  return {name: obj for name, obj in vars(package).items()
          if not name.startswith("_") and not isinstance(obj, types.ModuleType)}


def _documented_objects():
  """(qualified name, object) of every exported function and class, and their own methods."""
  for package in (meanfield, empirical):
    for name, obj in sorted(_public(package).items()):
      if not (inspect.isclass(obj) or callable(obj)):
        continue  # a constant: a value has no docstring of its own
      yield f"{package.__name__}.{name}", obj
      if inspect.isclass(obj):
        for attr, member in sorted(vars(obj).items()):
          if attr.startswith("_"):
            continue
          if isinstance(member, property):
            yield f"{package.__name__}.{name}.{attr}", member.fget
          elif inspect.isfunction(member) or isinstance(member, (staticmethod, classmethod)):
            yield f"{package.__name__}.{name}.{attr}", inspect.unwrap(getattr(obj, attr))


@pytest.mark.parametrize("qualname,obj", list(_documented_objects()),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_public_names_have_a_summary_line(qualname, obj):
  doc = inspect.getdoc(obj)
  assert doc and doc.strip(), f"{qualname} has no docstring"
  lines = doc.strip().splitlines()
  assert lines[0].strip(), f"{qualname}: the docstring does not open with a summary line"
  # Google style: the summary is one line, then a blank line (or nothing).
  assert len(lines) == 1 or not lines[1].strip(), \
      f"{qualname}: the summary line runs on ({lines[1].strip()!r}); end it and leave a blank line"


@pytest.mark.parametrize("package", [meanfield, empirical], ids=lambda p: p.__name__)
def test_api_pages_list_every_export(package):
  listed = [name for names in _hooks().exports(package.__name__).values() for name in names]
  assert len(listed) == len(set(listed)), "a name is imported twice in __init__"
  assert set(listed) == set(_public(package)), \
      "the API page (from the __init__ imports) and the package's public names differ"


def test_docstring_rewrites_for_the_site():
  # scripts/docs_griffe.py: what the site's renderer sees in place of the house reST habits.
  rewrite = _script("docs_griffe").rewrite
  doc = ("Summary.\n\nArgs:\n  sigma_w2, sigma_b2: variances,\n    never standard deviations.\n"
         "  depth: layers.\n\nReturns:\n  q.\n")
  assert rewrite(doc) == ("Summary.\n\nArgs:\n  sigma_w2: variances,\n    never standard deviations.\n"
                          "  sigma_b2: variances,\n    never standard deviations.\n"
                          "  depth: layers.\n\nReturns:\n  q.\n")
  assert rewrite("Map\n\n.. math::\n\n  q = \\sigma_w^2\n\nafter") == "Map\n\n$$\nq = \\sigma_w^2\n$$\n\nafter"
  assert rewrite("Like this::\n\n  x = f(1)\n  y = 2\n\nThen") == \
      "Like this:\n\n```python\nx = f(1)\ny = 2\n```\n\nThen"
  assert rewrite("See :func:`~meanfield.q_star`, :mod:`empirical` and :math:`\\chi_1`.") == \
      "See <code>q_star</code>, <code>empirical</code> and $\\chi_1$."
  # Seen from a module, a role links to the entry of the object it names: an exported
  # name's entry is under the module that defines it.
  link = rewrite(":func:`meanfield.q_star`", "meanfield.maps", {"q_map": "meanfield.maps"})
  assert link == '<autoref identifier="meanfield.fixed_points.q_star" optional><code>meanfield.q_star</code></autoref>'


def _blocks(path):
  """(code, skipped) of every ```python block in a Markdown file, in order."""
  text = path.read_text()
  blocks = []
  for match in _FENCE.finditer(text):
    if match.group(2) not in ("python", "py"):
      continue
    before = text[:match.start()].rstrip().splitlines()
    blocks.append((textwrap.dedent(match.group(3)), bool(before) and bool(_SKIP.search(before[-1]))))
  return blocks


def test_the_block_parser_sees_the_readme_examples():
  # Guards the parser itself: the README's tour has Python blocks, its own-data
  # example among them (marked to skip, as it loads the user's files).
  blocks = _blocks(ROOT / "README.md")
  assert len(blocks) >= 4
  assert any("mf.q_star" in code and not skipped for code, skipped in blocks)
  assert all(skipped for code, skipped in blocks if 'np.load("x.npy")' in code)


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.name)
def test_doc_blocks_compile(path):
  for i, (code, _) in enumerate(_blocks(path)):
    compile(code, f"{path.name}, python block {i + 1}", "exec")


# A value a block's line states in its comment: "# ~0.570" (the value rounds to it) or
# "# 1.76095..." (the value's decimals begin with these).
_STATED = re.compile(r"#\s*(~?)([-+]?\d+\.(\d+))(\.\.\.)?(?=\s|$)")


def _check_stated(value, comment, where):
  """Assert that ``value`` is what a "# ~0.570" or "# 1.76095..." comment says it is."""
  approx, number, decimals, truncated = _STATED.match(comment).groups()
  value, step = float(value), 10.0 ** -len(decimals)
  if truncated:
    assert abs(value) >= abs(float(number)) and abs(value) - abs(float(number)) < step, \
        f"{where}: the comment says {number}..., the value is {value!r}"
  else:
    # "~x" and a plain "x": x is the value rounded to the stated decimals.
    assert abs(value - float(number)) <= step / 2, f"{where}: the comment says {comment}, the value is {value!r}"


def _exec_block(code, where, namespace):
  """Run a block statement by statement, checking the values comments state."""
  lines = code.splitlines()
  for stmt in ast.parse(code).body:
    comment = lines[stmt.end_lineno - 1][stmt.end_col_offset:].strip()
    if isinstance(stmt, ast.Expr) and _STATED.match(comment):
      value = eval(compile(ast.Expression(stmt.value), where, "eval"), namespace)
      _check_stated(value, comment, f"{where}, line {stmt.lineno}")
    else:
      exec(compile(ast.Module([stmt], type_ignores=[]), where, "exec"), namespace)


def _run(path, monkeypatch, tmp_path):
  """Run the unskipped blocks of one file, in order, in one namespace."""
  monkeypatch.chdir(tmp_path)
  namespace = {"__name__": "__doc_example__"}
  x64 = jax.config.jax_enable_x64
  try:
    for i, (code, skipped) in enumerate(_blocks(path)):
      if not skipped:
        _exec_block(code, f"{path.name}, python block {i + 1}", namespace)
  finally:
    jax.config.update("jax_enable_x64", x64)


def test_stated_values_are_checked():
  # The checker itself: a comment's value must match, to the digits it states.
  _check_stated(0.5703, "# ~0.570", "here")
  _check_stated(1.7609512, "# 1.76095...", "here")
  with pytest.raises(AssertionError):
    _check_stated(0.5713, "# ~0.570", "here")
  with pytest.raises(AssertionError):
    _check_stated(1.76094, "# 1.76095...", "here")
  with pytest.raises(AssertionError):
    _exec_block("x = 2\nx + 1   # 4.0\n", "here", {})


def _run_marks(path):
  return [pytest.mark.slow] if path.name in SLOW else []


@pytest.mark.parametrize("path", [pytest.param(p, id=p.name, marks=_run_marks(p)) for p in DOC_FILES])
def test_doc_blocks_run(path, monkeypatch, tmp_path):
  _run(path, monkeypatch, tmp_path)
