"""``python -m figures``: make every figure (or ``--only`` some) into one folder.

Each ``figures/fig_<name>.py`` module is one figure called ``<name>``; see
:mod:`figures` for the contract a module follows. A figure that raises is
reported (with its traceback) and the others still run; finished figures are
on disk as soon as they are done. The exit status is 1 if any figure failed,
and the failures are listed at the end.

Examples::

  python -m figures                          # all figures -> build/figures/
  python -m figures --only phase_diagram     # one figure (repeat or comma-separate for more)
  python -m figures --paper --out /tmp/figs  # paper-scale settings, elsewhere
  python -m figures --gallery                # refresh the README gallery, figures/output/
  python -m figures --list                   # names, estimated seconds and titles

Generated files go to ``build/figures/`` (ignored by git), so making the
figures leaves the checkout clean; the committed gallery in ``figures/output/``
changes only when it is refreshed on purpose with ``--gallery``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pathlib
import pkgutil
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from types import ModuleType

from tqdm import tqdm

from figures import _common

__all__ = ["DEFAULT_OUTDIR", "GALLERY", "PREFIX", "discover", "title", "seconds", "run", "main"]

#: Where ``python -m figures`` writes by default (ignored by git).
DEFAULT_OUTDIR = pathlib.Path(__file__).resolve().parent.parent / "build" / "figures"
#: The README gallery (committed); ``--gallery`` writes here.
GALLERY = pathlib.Path(__file__).resolve().parent / "output"
#: Figures made at once by the command line: the cores, at most 2 (a figure's XLA
#: programs use every core while they run, so more processes mostly contend).
DEFAULT_JOBS = max(1, min(2, os.cpu_count() or 1))
#: How much longer a figure takes when made beside another on a 2-core CPU (measured).
CONTENTION = 1.27
#: Estimate used for a module that states no ``SECONDS``.
UNKNOWN_SECONDS = 60.0
#: Module-name prefix that marks a figure module.
PREFIX = "fig_"


def discover(package: str = "figures") -> dict[str, ModuleType]:
  """Import every ``fig_*`` module of ``package``; returns ``{name: module}``, sorted.

  ``name`` is the module name without the ``fig_`` prefix. A module that
  fails to import is kept as the exception, so the runner can report it as a
  failed figure without losing the others.
  """
  pkg = importlib.import_module(package)
  found: dict[str, ModuleType] = {}
  for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
    if info.name.startswith(PREFIX) and not info.ispkg:
      name = info.name[len(PREFIX):]
      try:
        found[name] = importlib.import_module(f"{package}.{info.name}")
      except Exception as e:  # reported by `run`, like a figure that fails
        found[name] = e  # type: ignore[assignment]
  return found


def title(module: ModuleType | Exception) -> str:
  """The first line of a figure module's docstring (its one-line title)."""
  doc = getattr(module, "__doc__", None) if isinstance(module, ModuleType) else None
  return (doc or "").strip().splitlines()[0] if doc and doc.strip() else ""


def seconds(module: ModuleType | Exception, *, paper: bool = False) -> float:
  """A figure's stated run time in seconds (its module's ``SECONDS``; paper scale: ``PAPER_SECONDS``).

  The estimate is for default settings on a 2-core CPU, measured when the
  figure was last tuned; a module that states none counts as
  :data:`UNKNOWN_SECONDS`, an import failure as 0.
  """
  if not isinstance(module, ModuleType):
    return 0.0
  if paper:
    return float(getattr(module, "PAPER_SECONDS", 10 * seconds(module)))
  return float(getattr(module, "SECONDS", UNKNOWN_SECONDS))


def _plan(selected: Mapping[str, ModuleType], paper: bool, jobs: int = 1) -> str:
  """The plan printed before the first figure: each figure's estimate and the total."""
  rows = [f"  {name:24s} ~{_duration(seconds(m, paper=paper))}" for name, m in selected.items()]
  total = _makespan([seconds(m, paper=paper) for m in selected.values()], jobs)
  if jobs > 1:   # two figures on two cores each take about 1.27x longer (measured: 440 s, not 348)
    total *= CONTENTION
  at_once = f", {jobs} at a time" if jobs > 1 else ""
  return "\n".join([f"{len(selected)} figure(s), about {_duration(total)} in all{at_once} "
                    "(estimates from a 2-core CPU, one figure at a time):", *rows])


def _makespan(estimates: Sequence[float], jobs: int) -> float:
  """Wall time of the estimates run ``jobs`` at a time, longest first (as the runner does)."""
  loads = [0.0] * max(1, jobs)
  for t in sorted(estimates, reverse=True):
    loads[loads.index(min(loads))] += t
  return max(loads)


def _forget_programs(*, when_unknown: bool = True) -> None:
  """Drop the compiled programs held in memory when the process nears its memory-map limit.

  Each XLA CPU executable holds memory maps, and a process may have at most
  ``vm.max_map_count`` (65530 by default on Linux) of them: all figures in one
  process compile thousands of programs, and without this the run died in
  LLVM ("Cannot allocate memory") in the 23rd figure. Programs stay while
  there is room, since later figures reuse many of them (the theory's); where
  the count cannot be read (not Linux), they are dropped after every figure
  (``when_unknown=False`` keeps them there: the test harness, between tests).
  """
  import jax
  try:
    with open("/proc/self/maps") as f:
      n_maps = sum(1 for _ in f)
    with open("/proc/sys/vm/max_map_count") as f:
      limit = int(f.read())
  except (OSError, ValueError):
    if not when_unknown:
      return
    n_maps, limit = 1, 0
  if n_maps > limit // 2:
    jax.clear_caches()


#: JAX's on-disk compilation cache for the command line (ignored by git, like the output).
COMPILATION_CACHE = pathlib.Path(__file__).resolve().parent.parent / "build" / "jax-cache"
#: Its size limit in bytes. Any limit makes JAX take a file lock around every read and
#: write of the cache; without one (JAX's default, -1) entries are written in place,
#: unlocked, and a process of ``--jobs`` can read another's half-written program.
COMPILATION_CACHE_MAX_BYTES = 8 * 2 ** 30


def _use_compilation_cache() -> None:
  """Keep compiled programs on disk, unless the user set a cache already; lock it.

  The runner drops each figure's programs from memory (:func:`_forget_programs`);
  a program that a later figure (or a later run) needs again is then read
  back instead of compiled again. Results do not change. The worker processes
  of ``--jobs`` share the directory, so the cache gets a size limit
  (:data:`COMPILATION_CACHE_MAX_BYTES`, unless one is set), which is what makes
  JAX lock it (``filelock``) while an entry is read or written.
  """
  import jax
  # the environment for the worker processes of --jobs, the config for this one
  if not jax.config.jax_compilation_cache_dir:
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(COMPILATION_CACHE))
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
  if (jax.config.jax_compilation_cache_max_size == -1
      and "JAX_COMPILATION_CACHE_MAX_SIZE" not in os.environ):
    os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] = str(COMPILATION_CACHE_MAX_BYTES)
    jax.config.update("jax_compilation_cache_max_size", COMPILATION_CACHE_MAX_BYTES)


def _duration(s: float) -> str:
  return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"


def _maker(modules: Mapping[str, ModuleType], name: str) -> str:
  """The figure that makes ``name``: itself, or the module whose ``OUTPUTS`` list it
  (a module that writes several PNGs names their stems in ``OUTPUTS``)."""
  if name in modules:
    return name
  for figure, module in modules.items():
    if name in getattr(module, "OUTPUTS", ()):
      return figure
  return name


def _select(modules: Mapping[str, ModuleType], only: Sequence[str] | None) -> dict[str, ModuleType]:
  if not only:
    return dict(modules)
  wanted = []
  for item in only:
    for name in item.split(","):
      name = name.strip().removeprefix(PREFIX).removesuffix(".py").removesuffix(".png")
      if name:
        wanted.append(_maker(modules, name))
  if not wanted:
    raise ValueError(f"`only` must name at least one figure among {sorted(modules)}, got "
                     f"{list(only)}")
  unknown = [n for n in wanted if n not in modules]
  if unknown:
    raise ValueError(
        f"`only` must name figures among {sorted(modules)}, got unknown {unknown}")
  return {n: modules[n] for n in dict.fromkeys(wanted)}


def _make_outdir(outdir: str | pathlib.Path) -> pathlib.Path:
  """``outdir`` as a folder that exists (made if missing); ``ValueError`` where it cannot be."""
  path = pathlib.Path(outdir)
  try:
    path.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    why = "a file is there" if path.exists() else (e.strerror or type(e).__name__)
    raise ValueError(f"`outdir` must be a folder (or where one can be made), got "
                     f"'{outdir}': {why}") from e
  return path


def run(modules: Mapping[str, ModuleType], *, outdir: str | pathlib.Path = DEFAULT_OUTDIR,
        only: Sequence[str] | None = None, paper: bool = False,
        progress: bool = True, jobs: int = 1) -> dict[str, str]:
  """Make each figure in ``modules`` into ``outdir``; returns ``{name: error}`` for failures.

  Args:
    modules: ``{name: module}`` as from :func:`discover` (a value may be an
      exception raised while importing the module: it counts as a failure).
    outdir: folder for the PNGs and their data (created if missing; a file
      there, or one that cannot be made, raises ``ValueError``).
    only: names (or comma-separated lists of names) to run; all if empty.
      Unknown names, or items that name nothing (``","``), raise
      ``ValueError`` before anything runs.
    paper: passed to each ``make`` (paper-scale settings).
    progress: show the plan (each figure's estimated time), a progress bar
      weighted by those estimates, one line per figure, and the figures' own
      progress bars (passed to each ``make`` as ``progress``).
    jobs: figures made at once, each in a process of its own (``>= 1``).
      With ``jobs > 1`` the figures' own bars are off (their lines would
      interleave); the runner's bar then advances inside each running
      figure by its elapsed time against its estimate, and names them. The
      modules must be importable by name (``figures.fig_<name>``).

  Returns:
    An empty dict when every figure succeeded, else failed name -> one-line
    reason (the full traceback is printed to stderr as it happens).
  """
  if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
    raise ValueError(f"`jobs` must be an integer >= 1, got {jobs!r}")
  selected = _select(modules, only)
  outdir = _make_outdir(outdir)
  if progress:
    tqdm.write(_plan(selected, paper, jobs), file=sys.stderr)
  bar = tqdm(total=sum(seconds(m, paper=paper) for m in selected.values()), desc="figures",
             unit="s", disable=not progress, file=sys.stderr,
             bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} estimated s [{elapsed}<{remaining}]")
  if jobs > 1 and len(selected) > 1:
    failures = _run_parallel(selected, outdir, paper, progress, jobs, bar)
  else:
    failures = {}
    for name, module in selected.items():
      bar.set_postfix_str(name)
      start = time.perf_counter()
      written, error = _make_one(module, outdir, paper, progress)
      _report(name, module, written, error, time.perf_counter() - start, paper, progress,
              failures)
      bar.update(seconds(module, paper=paper))
  bar.close()
  return failures


def _make_one(module: ModuleType | Exception, outdir: pathlib.Path, paper: bool,
              progress: bool) -> tuple[list, str | None]:
  """``(written paths, None)``, or ``([], "Type: message\n\ntraceback")`` if it failed."""
  try:
    if isinstance(module, Exception):
      raise module
    make = getattr(module, "make", None)
    if not callable(make):
      raise TypeError(f"figure module {module.__name__} has no "
                      "`make(outdir, *, paper, progress)` function")
    with _common.style():
      written = make(outdir, paper=paper, progress=progress)
    missing = [str(p) for p in written or [] if not pathlib.Path(p).exists()]
    if missing:
      raise RuntimeError(f"`make` returned paths that do not exist: {missing}")
    return [str(p) for p in written or []], None
  except Exception as e:
    return [], f"{type(e).__name__}: {e}\n\n" + "".join(traceback.format_exception(e))
  finally:
    _forget_programs()


def _report(name, module, written, error, elapsed, paper, progress, failures) -> None:
  """One line per figure (and the traceback of a failure, always)."""
  if error is not None:
    failures[name] = error.split("\n\n")[0]
    if progress:
      tqdm.write(f"FAILED {name} after {elapsed:.1f} s", file=sys.stderr)
    tqdm.write(error.split("\n\n", 1)[-1], file=sys.stderr)
  elif progress:
    files = ", ".join(pathlib.Path(p).name for p in written)
    tqdm.write(f"done   {name} in {elapsed:.1f} s "
               f"(estimated {seconds(module, paper=paper):.0f} s): {files}", file=sys.stderr)


def _make_by_name(module_name: str, outdir: str, paper: bool) -> tuple[list, str | None, float]:
  """A worker process's task: import the figure module and make it, no bars;
  ``(written, error, seconds taken)``."""
  start = time.perf_counter()
  try:
    module = importlib.import_module(module_name)
  except Exception as e:
    module = e
  return (*_make_one(module, pathlib.Path(outdir), paper, False), time.perf_counter() - start)


def _run_parallel(selected, outdir, paper, progress, jobs, bar) -> dict[str, str]:
  """:func:`run` with ``jobs`` worker processes, the longest figures first."""
  import concurrent.futures
  import multiprocessing

  failures: dict[str, str] = {}
  order = sorted(selected, key=lambda n: -seconds(selected[n], paper=paper))
  context = multiprocessing.get_context("spawn")   # a fresh interpreter, no forked JAX state
  # The task by its importable name: under `python -m figures` this module is `__main__`,
  # which a spawned worker cannot look functions up in.
  task = importlib.import_module("figures.__main__")._make_by_name
  with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=context) as pool:
    started = {}
    futures = {}
    for name in order:
      module = selected[name]
      if isinstance(module, Exception):
        _report(name, module, [], f"{type(module).__name__}: {module}\n\n", 0.0, paper,
                progress, failures)
        continue
      futures[pool.submit(task, module.__name__, str(outdir), paper)] = name
    done_seconds = 0.0
    pending = set(futures)
    while pending:
      finished, pending = concurrent.futures.wait(pending, timeout=0.5)
      now = time.perf_counter()
      for future in finished:
        name = futures[future]
        written, error, elapsed = future.result()
        _report(name, selected[name], written, error, elapsed, paper, progress, failures)
        done_seconds += seconds(selected[name], paper=paper)
      running = [futures[f] for f in pending if f.running()]
      for name in running:
        started.setdefault(name, now)
      inside = sum(min(now - started[n], seconds(selected[n], paper=paper)) for n in running)
      bar.n = done_seconds + inside
      bar.set_postfix_str(", ".join(
          f"{n} {now - started[n]:.0f}/{seconds(selected[n], paper=paper):.0f} s"
          for n in running))
  bar.n = done_seconds
  bar.refresh()
  return failures


def main(argv: Sequence[str] | None = None) -> int:
  """Command-line entry point; returns the exit status (0 if all figures were made)."""
  description = __doc__.split("\n\n")[0].replace("``", "`")
  parser = argparse.ArgumentParser(prog="python -m figures", description=description,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--only", action="append", metavar="NAME",
                      help="make only this figure (repeat, or comma-separate, for more)")
  parser.add_argument("--paper", action="store_true", help="paper-scale settings (slower)")
  where = parser.add_mutually_exclusive_group()
  where.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUTDIR, metavar="DIR",
                     help=f"output folder (default: {DEFAULT_OUTDIR}, ignored by git)")
  where.add_argument("--gallery", action="store_true",
                     help=f"write into the committed README gallery, {GALLERY}")
  parser.add_argument("--list", action="store_true",
                      help="list the figures (name, estimated time, title) and exit")
  parser.add_argument("--quiet", action="store_true", help="no progress output")
  parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS, metavar="N",
                      help=f"figures made at once, each in its own process (default "
                           f"{DEFAULT_JOBS}: this machine's cores, at most 2; 1 shows "
                           "each figure's own progress bars)")
  args = parser.parse_args(argv)
  outdir = GALLERY if args.gallery else args.out
  _use_compilation_cache()

  modules = discover()
  if args.list:
    for name, module in modules.items():
      label = title(module) or f"(failed to import: {module!r})"
      print(f"{name:24s} ~{_duration(seconds(module, paper=args.paper)):>8s}  {label}")
    return 0
  try:
    failures = run(modules, outdir=outdir, only=args.only, paper=args.paper,
                   progress=not args.quiet, jobs=args.jobs)
  except ValueError as e:
    parser.error(str(e))
  if failures:
    print(f"\n{len(failures)} figure(s) failed:", file=sys.stderr)
    for name, reason in failures.items():
      print(f"  {name}: {reason}", file=sys.stderr)
    return 1
  if not args.quiet:
    print(f"all figures written to {outdir}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
