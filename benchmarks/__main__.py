"""``python -m benchmarks``: run every benchmark (or ``--only`` some) and record the results.

Each ``benchmarks/bench_<name>.py`` module is one benchmark called ``<name>``;
see :mod:`benchmarks` for the contract. Results go to
``<out>/<device>-results.json`` and ``<out>/<device>-results.md``, merged with
the results already there for benchmarks not run this time. A failing
benchmark is reported and the others still run; the exit status is 1 if any
failed.

Examples::

  python -m benchmarks                         # all -> benchmarks/results/
  python -m benchmarks --only phase_diagram    # one (repeat or comma-separate for more)
  python -m benchmarks --quick --out /tmp/b    # smoke-test sizes
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import pathlib
import pkgutil
import platform
import re
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from importlib import metadata
from types import ModuleType
from typing import Any

import jax

from benchmarks._common import format_number, format_seconds
from empirical import engine

__all__ = ["DEFAULT_OUTDIR", "PREFIX", "discover", "environment", "device_slug", "run", "main"]

#: Where results are written by default (committed, one file pair per device).
DEFAULT_OUTDIR = pathlib.Path(__file__).resolve().parent / "results"
#: Module-name prefix that marks a benchmark module.
PREFIX = "bench_"


def discover(package: str = "benchmarks") -> dict[str, ModuleType | Exception]:
  """Import every ``bench_*`` module of ``package``; ``{name: module}``, sorted.

  A module that fails to import is kept as its exception (reported as a
  failed benchmark by :func:`run`).
  """
  pkg = importlib.import_module(package)
  found: dict[str, ModuleType | Exception] = {}
  for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
    if info.name.startswith(PREFIX) and not info.ispkg:
      try:
        found[info.name[len(PREFIX):]] = importlib.import_module(f"{package}.{info.name}")
      except Exception as e:
        found[info.name[len(PREFIX):]] = e
  return found


def _cpu_model() -> str:
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def device_slug() -> str:
  """A file-name-safe name for the default JAX device: ``cpu-2core``, ``nvidia-h100-80gb-hbm3``."""
  device = jax.devices()[0]
  kind = device.device_kind if device.platform != "cpu" else f"cpu-{os.cpu_count()}core"
  return re.sub(r"[^a-z0-9]+", "-", kind.lower()).strip("-")


def _version(dist: str) -> str:
  try:
    return metadata.version(dist)
  except metadata.PackageNotFoundError:
    return "not installed"


def environment() -> dict[str, Any]:
  """Where and with what the numbers were taken."""
  devices = jax.devices()
  return {
      "device": device_slug(),
      "device_kind": devices[0].device_kind,
      "platform": devices[0].platform,
      "device_count": len(devices),
      "cpu_model": _cpu_model(),
      "cpu_count": os.cpu_count(),
      "python": platform.python_version(),
      **{name: _version(name) for name in ("jax", "jaxlib", "flax", "numpy", "scipy")},
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  }


def _select(modules: Mapping[str, Any], only: Sequence[str] | None) -> dict[str, Any]:
  if not only:
    return dict(modules)
  wanted = [n.strip().removeprefix(PREFIX).removesuffix(".py")
            for item in only for n in item.split(",") if n.strip()]
  unknown = [n for n in wanted if n not in modules]
  if unknown:
    raise ValueError(
        f"`only` must name benchmarks among {sorted(modules)}, got unknown {unknown}")
  return {n: modules[n] for n in dict.fromkeys(wanted)}


def _write_atomic(path: pathlib.Path, text: str) -> None:
  engine.atomic_write(path, lambda f: f.write(text), mode="w")


def render_markdown(results: Mapping[str, Any]) -> str:
  """The results JSON as a markdown page: one section per benchmark."""
  lines = [f"# Benchmark results: {results['device']}", ""]
  for name, entry in sorted(results["benchmarks"].items()):
    env = entry["environment"]
    lines += [f"## {name}", ""]
    if entry.get("title"):
      lines += [entry["title"], ""]
    lines += [
        f"{env['date']} on {env['device_kind']} ({env['platform']}, {env['device_count']} device(s)); "
        f"CPU {env['cpu_model']}, {env['cpu_count']} cores; Python {env['python']}, "
        f"jax {env['jax']}, jaxlib {env['jaxlib']}, flax {env['flax']}, numpy {env['numpy']}, "
        f"scipy {env['scipy']}." + (" Quick (smoke-test) sizes." if entry.get("quick") else ""), ""]
    if entry.get("error"):
      lines += [f"**Failed:** `{entry['error']}`", ""]
      continue
    report = entry["report"]
    if report["params"]:
      lines += ["Parameters: " + ", ".join(f"`{k}` = {v}" for k, v in report["params"].items()), ""]
    if report["timings"]:
      lines += ["| timing | median | min | max | repeats x calls | compile / first call | note |",
                "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
      for t in report["timings"]:
        lines.append(f"| {t['name']} | {format_seconds(t['median_s'])} | {format_seconds(t['min_s'])} | "
                     f"{format_seconds(t['max_s'])} | {t['repeats']} x {t['number']} | "
                     f"{format_seconds(t['compile_s']) if t['compile_s'] is not None else ''} | {t['note']} |")
      lines.append("")
    if report["comparisons"]:
      lines += ["| comparison | ratio | slower / faster | note |", "| --- | ---: | --- | --- |"]
      for c in report["comparisons"]:
        lines.append(f"| {c['name']} | {c['ratio']:.3g}x | {c['slower']} / {c['faster']} | {c['note']} |")
      lines.append("")
    if report["metrics"]:
      lines += ["| metric | value | note |", "| --- | ---: | --- |"]
      for m in report["metrics"]:
        value = format_number(m["value"]) + (f" {m['unit']}" if m["unit"] else "")
        lines.append(f"| {m['name']} | {value} | {m['note']} |")
      lines.append("")
  return "\n".join(lines)


def run(modules: Mapping[str, Any], *, outdir: str | pathlib.Path = DEFAULT_OUTDIR,
        only: Sequence[str] | None = None, quick: bool = False) -> tuple[dict[str, str], pathlib.Path]:
  """Run the benchmarks and merge their reports into ``outdir``'s results files.

  Returns ``({name: error} for failures, path of the JSON file)``. The JSON
  is rewritten after each benchmark, so finished results are never lost.
  """
  selected = _select(modules, only)
  outdir = pathlib.Path(outdir)
  outdir.mkdir(parents=True, exist_ok=True)
  env = environment()
  stem = f"{env['device']}-results" + ("-quick" if quick else "")
  json_path, md_path = outdir / f"{stem}.json", outdir / f"{stem}.md"
  failures: dict[str, str] = {}
  for i, (name, module) in enumerate(selected.items(), 1):
    print(f"[{i}/{len(selected)}] {name}", flush=True)
    entry: dict[str, Any] = {"environment": environment(), "quick": quick}
    start = time.perf_counter()
    try:
      if isinstance(module, Exception):
        raise module
      entry["title"] = (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else ""
      entry["report"] = module.run(quick=quick).to_dict()
    except Exception as e:
      failures[name] = f"{type(e).__name__}: {e}"
      entry["error"] = failures[name]
      traceback.print_exception(e, file=sys.stderr)
    entry["wall_s"] = time.perf_counter() - start
    print(f"[{i}/{len(selected)}] {name} {'FAILED' if name in failures else 'done'} "
          f"in {entry['wall_s']:.1f} s", flush=True)
    # Merge into what is on disk now (not when this run started), so runs of other
    # benchmarks that finished meanwhile keep their entries.
    results = json.loads(json_path.read_text()) if json_path.exists() else {"benchmarks": {}}
    results["device"] = env["device"]
    results["benchmarks"][name] = entry
    _write_atomic(json_path, json.dumps(results, indent=1, allow_nan=True) + "\n")
    _write_atomic(md_path, render_markdown(results) + "\n")
  return failures, json_path


def main(argv: Sequence[str] | None = None) -> int:
  """Command-line entry point; returns the exit status (0 if every benchmark ran)."""
  parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--only", action="append", metavar="NAME",
                      help="run only this benchmark (repeat, or comma-separate, for more)")
  parser.add_argument("--quick", action="store_true",
                      help="tiny sizes and few repeats (smoke test; results go to *-results-quick.*)")
  parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUTDIR, metavar="DIR",
                      help=f"results folder (default: {DEFAULT_OUTDIR})")
  parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
  args = parser.parse_args(argv)

  modules = discover()
  if args.list:
    for name, module in modules.items():
      doc = getattr(module, "__doc__", None) or f"(failed to import: {module!r})"
      print(f"{name:24s} {doc.strip().splitlines()[0]}")
    return 0
  try:
    failures, json_path = run(modules, outdir=args.out, only=args.only, quick=args.quick)
  except ValueError as e:
    parser.error(str(e))
  print(f"results: {json_path} and {json_path.with_suffix('.md')}")
  if failures:
    print(f"\n{len(failures)} benchmark(s) failed:", file=sys.stderr)
    for name, reason in failures.items():
      print(f"  {name}: {reason}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
