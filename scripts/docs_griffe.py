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
- Sphinx cross-reference roles (``:func:`~meanfield.q_star```): inline code
  with the name as written (the last component after ``~``).
"""

from __future__ import annotations

import re

import griffe

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
_XREF_ROLE = re.compile(r":(?:func|class|meth|attr|mod|data|obj|exc|const):`(~?)([^`]+)`")


def math_blocks(text: str) -> str:
  """Rewrite ``.. math::`` directives (content inline or indented below) as ``$$`` blocks."""
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
    body = [directive.group(2)] if directive.group(2).strip() else []
    j = i + 1
    while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > len(indent)):
      body.append(lines[j].strip())
      j += 1
    while body and not body[-1]:
      body.pop()
    while body and not body[0]:
      body.pop(0)
    out += ([""] if out and out[-1].strip() else []) + [f"{indent}$$"] + \
        [f"{indent}{b}" for b in body if b] + [f"{indent}$$", ""]
    i = j
  return "\n".join(out)


def sphinx_roles(text: str) -> str:
  """Rewrite ``:math:`` roles as ``$...$`` and cross-reference roles as inline code."""
  text = _MATH_ROLE.sub(lambda m: f"${m.group(1).strip()}$", text)
  return _XREF_ROLE.sub(lambda m: f"`{m.group(2).split('.')[-1] if m.group(1) else m.group(2)}`",
                        text)


def rewrite(text: str) -> str:
  """All of this module's rewrites of one docstring."""
  return sphinx_roles(math_blocks(split_grouped_params(text)))


class HouseDocstrings(griffe.Extension):
  """Apply :func:`rewrite` to every docstring griffe loads."""

  def on_instance(self, *, obj, **kwargs) -> None:
    if obj.docstring is not None:
      obj.docstring.value = rewrite(obj.docstring.value)
