"""A griffe extension for the documentation site (mkdocs.yml loads it).

The project's docstrings are Google style with a few reST habits that
Markdown does not know. Before griffe parses a docstring, this rewrites, for
the site only (the source is untouched):

- grouped parameter items, ``sigma_w2, sigma_b2: variances ...``, which
  griffe reads as one parameter named ``"sigma_w2, sigma_b2"`` (and, in
  strict mode, fails on as unknown): one item per name, each with the full
  description, so the reference lists every parameter and griffe still
  checks every name against the signature;
- ``.. math::`` blocks and ``:math:`x``` roles: ``$$ ... $$`` and ``$x$``,
  typeset by MathJax (pymdownx.arithmatex);
- reST literal blocks (``... like this::`` and an indented block): a
  fenced Python block;
- Sphinx cross-reference roles (``:func:`~meanfield.q_star```): inline code
  with the name as written (the last component after ``~``), linked to the
  object's entry where the site has one.
"""

from __future__ import annotations

import functools
import importlib.util
import pathlib
import re
import textwrap

try:
  from griffe import Extension
except ImportError:  # the rewrites are plain functions; tests/test_docs.py runs them without griffe
  Extension = object

_SECTIONS = re.compile(r"^(\s*)(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|"
                       r"Other Parameters|Attributes):\s*$")
_GROUPED = re.compile(r"^(\s+)([A-Za-z_*][\w*]*(?:\s*,\s*[A-Za-z_*][\w*]*)+)(\s*(?:\([^)]*\))?\s*:.*)$")


def _indent(line: str) -> int:
  return len(line) - len(line.lstrip())


def split_grouped_params(text: str) -> str:
  """Rewrite ``a, b: description`` items of parameter sections as one item per name.

  Args:
    text: a Google-style docstring.

  Returns:
    The docstring with every grouped item repeated once per name, its
    continuation lines copied with it; everything else unchanged.
  """
  lines = text.split("\n")
  out: list[str] = []
  i, section_indent = 0, None
  while i < len(lines):
    line = lines[i]
    header = _SECTIONS.match(line)
    if header:
      section_indent = len(header.group(1))
    elif line.strip() and section_indent is not None and _indent(line) <= section_indent:
      section_indent = None
    grouped = _GROUPED.match(line) if section_indent is not None and not header else None
    if grouped and _indent(line) > section_indent:
      item_indent = len(grouped.group(1))
      j = i + 1
      while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > item_indent):
        j += 1
      while j > i + 1 and not lines[j - 1].strip():
        j -= 1
      body = lines[i + 1:j]
      for name in grouped.group(2).split(","):
        out += [f"{grouped.group(1)}{name.strip()}{grouped.group(3)}", *body]
      i = j
      continue
    out.append(line)
    i += 1
  return "\n".join(out)


_MATH_BLOCK = re.compile(r"^(\s*)\.\. math::\s*(.*)$")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")
PACKAGES = ("meanfield", "empirical")
_XREF_ROLE = re.compile(r":(?:func|class|meth|attr|mod|data|obj|exc|const):`(~?)([^`]+)`")


_SECTION_HEADER = re.compile(r"^[A-Z][\w ]*:\s*$")


def _in_section(lines: list[str], i: int) -> bool:
  """Whether line ``i`` lies inside a Google section (``Args:`` ... at column 0)."""
  for line in reversed(lines[:i]):
    if line.strip() and _indent(line) == 0:
      return bool(_SECTION_HEADER.match(line))
  return False


def _indented_block(lines: list[str], start: int, indent: int) -> tuple[list[str], int]:
  """The lines from ``start`` indented deeper than ``indent`` (blank lines inside kept), and the end."""
  j = start
  while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > indent):
    j += 1
  while j > start and not lines[j - 1].strip():
    j -= 1
  return lines[start:j], j


def _emit(out: list[str], indent: str, opening: str, body: list[str], closing: str) -> None:
  if out and out[-1].strip():
    out.append("")
  out += [f"{indent}{opening}", *(f"{indent}{b}" if b else "" for b in body), f"{indent}{closing}", ""]


def math_blocks(text: str) -> str:
  """Rewrite ``.. math::`` directives (content inline or indented below) as ``$$`` blocks.

  Outside a Google section the block starts at column 0 (Markdown reads a block
  indented by 2, the house indentation, as part of a paragraph); inside one it
  keeps its indentation, which the section needs.
  """
  lines = text.split("\n")
  out: list[str] = []
  i = 0
  while i < len(lines):
    directive = _MATH_BLOCK.match(lines[i])
    if not directive:
      out.append(lines[i])
      i += 1
      continue
    indent = directive.group(1)
    body, j = _indented_block(lines, i + 1, len(indent))
    body = [b.strip() for b in ([directive.group(2)] + body) if b.strip()]
    _emit(out, indent if _in_section(lines, i) else "", "$$", body, "$$")
    i = j + (j < len(lines) and not lines[j].strip())
  return "\n".join(out)


def literal_blocks(text: str) -> str:
  """Rewrite reST literal blocks (a paragraph ending in ``::``, then an indented block) as fences.

  The paragraph keeps one colon; the block becomes a fenced Python block,
  placed as :func:`math_blocks` places formulas.
  """
  lines = text.split("\n")
  out: list[str] = []
  i = 0
  while i < len(lines):
    line = lines[i]
    if line.rstrip().endswith("::") and not _MATH_BLOCK.match(line) and line.strip() != "::" \
        and i + 2 < len(lines) and not lines[i + 1].strip() \
        and _indent(lines[i + 2]) > _indent(line) and lines[i + 2].strip():
      out.append(line.rstrip()[:-1])
      body, j = _indented_block(lines, i + 2, _indent(line))
      body = textwrap.dedent("\n".join(body)).split("\n")
      indent = " " * _indent(line) if _in_section(lines, i) else ""
      _emit(out, indent, "```python", body, "```")
      i = j + (j < len(lines) and not lines[j].strip())
      continue
    out.append(line)
    i += 1
  return "\n".join(out)


def _identifier(target: str, module: str, exported: dict[str, str], scope: dict[str, str]) -> str:
  """The site's anchor for a role's target, seen from ``module`` (and a class, ``scope``).

  ``exported`` maps the package's exported names to the module that defines
  them (their entries are under that module: ``meanfield.q_star`` is
  ``meanfield.fixed_points.q_star`` on the site); ``scope`` maps the members of
  the class the docstring belongs to to that class's path.
  """
  parts = target.split(".")
  if parts[0] in PACKAGES:
    names = _exported(parts[0])
    if len(parts) > 1 and parts[1] in names and not (len(parts) > 2 and ".".join(parts[:2]) in names.values()):
      return ".".join([names[parts[1]], *parts[1:]])  # <package>.<name>..., not <package>.<module>.<name>
    return target
  if parts[0] in scope:
    return f"{scope[parts[0]]}.{target}"
  if parts[0] in exported:
    return f"{exported[parts[0]]}.{target}"
  return f"{module}.{target}" if len(parts) == 1 else target


def sphinx_roles(text: str, module: str | None = None, exported: dict[str, str] | None = None,
                 scope: dict[str, str] | None = None) -> str:
  """Rewrite ``:math:`` roles as ``$...$`` and cross-reference roles as (links to) inline code.

  Args:
    text: a docstring.
    module: the dotted module the docstring is in; without it the roles become
      plain inline code.
    exported: the names the module's package exports, each mapped to the
      module that defines it.
    scope: the members of the class the docstring belongs to, each mapped to
      the class's path.

  Returns:
    The docstring; a role becomes an optional autorefs link, which renders as
    plain code where its target is not on the site (e.g. ``jax.jit``).
  """
  text = _MATH_ROLE.sub(lambda m: f"${m.group(1).strip()}$", text)

  def role(match: re.Match) -> str:
    target = match.group(2).strip()
    code = f"<code>{target.split('.')[-1] if match.group(1) else target}</code>"
    if module is None:
      return code
    anchor = _identifier(target, module, exported or {}, scope or {})
    return f'<autoref identifier="{anchor}" optional>{code}</autoref>'
  return _XREF_ROLE.sub(role, text)


def rewrite(text: str, module: str | None = None, exported: dict[str, str] | None = None,
            scope: dict[str, str] | None = None) -> str:
  """All of this module's rewrites of one docstring (see :func:`sphinx_roles` for the arguments)."""
  return sphinx_roles(math_blocks(literal_blocks(split_grouped_params(text))), module, exported, scope)


class HouseDocstrings(Extension):
  """Apply :func:`rewrite` to every docstring griffe loads."""

  def on_instance(self, *, obj, **kwargs) -> None:
    if obj.docstring is not None:
      module = obj.module.path
      cls = obj if obj.is_class else obj.parent if obj.parent is not None and obj.parent.is_class else None
      scope = {name: cls.path for name in cls.members} if cls is not None else {}
      obj.docstring.value = rewrite(obj.docstring.value, module, _exported(module.split(".")[0]), scope)


@functools.cache
def _exported(package: str) -> dict[str, str]:
  if package not in PACKAGES:
    return {}
  spec = importlib.util.spec_from_file_location("docs_hooks", pathlib.Path(__file__).with_name("docs_hooks.py"))
  hooks = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(hooks)
  return {name: module for module, names in hooks.exports(package).items() for name in names}
