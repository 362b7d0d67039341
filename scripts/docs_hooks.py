"""MkDocs hooks: the pages made at build time from the repository (see mkdocs.yml).

- ``readme.md``: README.md, its figure paths pointed at the site's copies.
- ``api/<package>.md``: one section per module that ``<package>/__init__.py``
  imports from, rendering exactly the names it imports (mkdocstrings
  ``members:``), so a new export appears in the reference with no edit here.
- ``gallery.md``: every PNG/GIF in figures/output/, captioned with the first
  line of the docstring of the figure script that makes it.
- the navigation: the theory notes are every ``docs/*.md`` (theory.md first),
  so a new note needs no edit here either.

``exports`` is also used by tests/test_docs.py, which checks it against the
names the packages really export.
"""

from __future__ import annotations

import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("meanfield", "empirical")
FIGURES = ROOT / "figures" / "output"
IMAGE_SUFFIXES = (".png", ".gif")
GENERATED = {"readme.md", "gallery.md"}


def exports(package: str) -> dict[str, list[str]]:
  """The public names ``<package>/__init__.py`` imports, by the module they come from.

  Args:
    package: a top-level package of this repository, e.g. ``"meanfield"``.

  Returns:
    ``{module: [name, ...]}`` in the order of the import statements, for every
    ``from <package>.<module> import name`` whose name does not start with ``_``.
  """
  tree = ast.parse((ROOT / package / "__init__.py").read_text())
  found: dict[str, list[str]] = {}
  for node in tree.body:
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 \
        and node.module.split(".")[0] == package:
      names = [a.asname or a.name for a in node.names if not (a.asname or a.name).startswith("_")]
      if any(a.asname and a.asname != a.name for a in node.names):
        raise ValueError(f"{package}/__init__.py renames an import ({node.module}); "
                         "the API page cannot document it under its new name")
      found.setdefault(node.module, []).extend(names)
  return found


def _summary(path: pathlib.Path) -> str:
  doc = ast.get_docstring(ast.parse(path.read_text())) or ""
  return doc.strip().split("\n\n")[0].replace("\n", " ")


def api_page(package: str) -> str:
  """The Markdown of one package's API page (mkdocstrings directives)."""
  lines = [f"# `{package}`", "", _summary(ROOT / package / "__init__.py"), "",
           f"Every name on this page is importable from `{package}` itself "
           f"(`{package}.<name>`); it is listed under the module that defines it. "
           "Helpers, constants and parameter containers that only the drivers use are "
           "not exported: they stay importable from their modules "
           f"(`from {package}.<module> import <name>`), with their docstrings there.", ""]
  for module, names in exports(package).items():
    lines += [f"::: {module}", "    options:", "      members:"]
    lines += [f"        - {name}" for name in names]
    lines.append("")
  return "\n".join(lines)


def _figure_scripts() -> dict[str, pathlib.Path]:
  return {p.stem[len("fig_"):]: p for p in sorted((ROOT / "figures").glob("fig_*.py"))}


def _caption(stem: str, scripts: dict[str, pathlib.Path]) -> tuple[str, str]:
  """(script name, first docstring line) of the figure script that makes ``stem``."""
  prefixes = [name for name in scripts if stem == name or stem.startswith(name + "_")]
  if prefixes:
    name = max(prefixes, key=len)
    return scripts[name].name, _summary(scripts[name])
  for name, path in scripts.items():
    if f"{stem}." in path.read_text():
      return path.name, _summary(path)
  return "", ""


def _images() -> list[pathlib.Path]:
  return sorted(p for p in FIGURES.glob("*") if p.suffix in IMAGE_SUFFIXES)


def gallery_page() -> str:
  """The Markdown of the gallery: every figure in figures/output/ with its caption."""
  lines = ["# Gallery", "",
           "Every figure `scripts/figures.sh` has made in `figures/output/` (default, "
           "CPU-sized settings unless `--paper` was given), with the first line of the "
           "docstring of the script that makes it; the data behind each figure "
           "(`.nc`, `.csv`, `.md`) lies beside it there.", ""]
  images = _images()
  if not images:
    lines.append("No figures yet: run `scripts/figures.sh`, then rebuild the site.")
  scripts = _figure_scripts()
  for image in images:
    script, caption = _caption(image.stem, scripts)
    lines += [f"## {image.stem}", "", f"![{image.stem}](figures/{image.name})", ""]
    if script:
      lines += [f"{caption} (`figures/{script}`)", ""]
  return "\n".join(lines)


def readme_page() -> str:
  """README.md with its figure links pointed at the site's copies (or a note where missing)."""
  def image(match: re.Match) -> str:
    alt, name = match.group(1), match.group(2)
    if (FIGURES / name).exists():
      return f"![{alt}](figures/{name})"
    return f"*({alt}: `figures/output/{name}` not made yet; run `scripts/figures.sh`)*"
  return re.sub(r"!\[([^\]]*)\]\(figures/output/([^)\s]+)\)", image,
                (ROOT / "README.md").read_text())


def theory_notes(docs_dir: pathlib.Path) -> list[str]:
  """The theory notes: every Markdown file in docs/ but the index, theory.md first."""
  notes = sorted(p.name for p in docs_dir.glob("*.md") if p.name not in {"index.md"} | GENERATED)
  return sorted(notes, key=lambda name: name != "theory.md")


def on_config(config):
  notes = theory_notes(pathlib.Path(config["docs_dir"]))
  config["nav"] = [
    {"Home": "index.md"},
    {"README": "readme.md"},
    {"Theory notes": notes},
    {"API reference": [{package: f"api/{package}.md"} for package in PACKAGES]},
    {"Gallery": "gallery.md"},
  ]
  return config


def on_files(files, config):
  from mkdocs.structure.files import File

  for uri, content in [("readme.md", readme_page()), ("gallery.md", gallery_page())] + \
      [(f"api/{package}.md", api_page(package)) for package in PACKAGES]:
    files.append(File.generated(config, uri, content=content))
  for image in _images():
    files.append(File.generated(config, f"figures/{image.name}", abs_src_path=str(image)))
  return files
