"""Run ``python -m benchmarks`` as a user does: a fresh process without the tests' on-disk
compilation cache (the benchmarks time first calls, which that cache would answer from disk;
and an executable is then never serialized in the middle of a timed run)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run_quick(args: list[str]) -> int:
  """``python -m benchmarks --quick *args`` in the repository root; its exit status."""
  env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
  env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
  done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", *args], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=3600)
  if done.returncode != 0:
    print(done.stdout[-4000:], done.stderr[-4000:])
  return done.returncode
