"""Several processes of one ``jax.distributed`` run, on localhost, give the one-process results.

The slow tests start 2 and 3 processes with ``scripts/launch_local.py`` (CPU
collectives: gloo), each running ``_hosts_worker.py`` (every driver on a small
problem, with a shared store), and compare every process's Dataset bitwise
with a one-process run in this process; one kills a process mid-run and
resumes with 3. The default tests check the chunk split of
:func:`empirical.engine._run_split` in this process (as process 1 of 2) and
the launcher.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap
import threading
import time

import jax
import numpy as np
import pytest
import xarray as xr

from empirical import devices as _devices
from empirical import engine

ROOT = pathlib.Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "scripts" / "launch_local.py"
WORKER = ROOT / "tests" / "empirical" / "_hosts_worker.py"
DRIVERS = ("sweep", "spectra", "train", "diagnose")


def _launch(n, *args, env=None, timeout=300):
  """``launch_local.py -n n *args``; its exit status."""
  # The tests' compilation cache (conftest) for programs of 0.2 s or more, as here.
  env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS":
         str(jax.config.jax_persistent_cache_min_compile_time_secs), **(env or {})}
  return subprocess.run([sys.executable, str(LAUNCH), "-n", str(n), "--timeout", str(timeout),
                         *map(str, args)], env=env, cwd=ROOT, timeout=timeout + 60).returncode


# --- default tier: the split in this process, the launcher ----------------------------------

def _chunks(store, n_chunks, computed):
  bounds = [(2 * k, 2 * k + 2) for k in range(n_chunks)]

  def one_chunk(start, stop):
    computed.append(start // 2)
    return {"x": np.arange(start, stop, dtype=np.float32)}

  os.makedirs(store, exist_ok=True)
  return engine._Chunks(str(store), bounds, one_chunk, write=True)


def test_process_one_of_two_computes_its_chunks_reads_the_others_and_takes_over_a_dead_ones(
    tmp_path, monkeypatch):
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  monkeypatch.setattr(jax, "process_index", lambda: 1)
  monkeypatch.setattr(engine, "_PATIENCE", 0.3)
  computed, advanced = [], []
  chunks = _chunks(tmp_path, 5, computed)
  peer = {k: {"x": np.full(2, -k, np.float32)} for k in (0, 2)}   # process 0's, marked
  for k, arrays in peer.items():
    engine._write_chunk(chunks.store, chunks.path(k), arrays)
  # Process 0 writes chunk 4 late (still alive): read, not computed.
  late = threading.Timer(0.2, engine._write_chunk,
                         (chunks.store, chunks.path(4), {"x": np.full(2, -4, np.float32)}))
  late.start()
  parts = engine._run_split(chunks, advanced.append)
  late.join()
  assert computed == [1, 3]                                 # its own, once each
  np.testing.assert_array_equal(np.concatenate([p["x"] for p in parts]),
                                [0, 0, 2, 3, -2, -2, 6, 7, -4, -4])
  assert sum(advanced) == 10                                # the whole run's progress
  # A dead peer: process 0's chunks never come; process 1 computes them after waiting.
  computed.clear()
  chunks = _chunks(tmp_path / "dead", 4, computed)
  start = time.monotonic()
  parts = engine._run_split(chunks, advanced.append)
  assert computed == [1, 3, 0, 2] and time.monotonic() - start >= 1.0   # 3 x chunk time + 1 s
  assert sorted(os.listdir(chunks.store)) == [os.path.basename(chunks.path(k)) for k in range(4)]


def test_several_processes_without_a_store_raise(monkeypatch):
  assert not _devices.splits_processes(_devices.resolve(1))   # one process: no split
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  assert _devices.splits_processes(_devices.resolve(1))
  assert not _devices.splits_processes((*_devices.resolve(1), _Elsewhere()))
  with pytest.raises(ValueError, match=r"`store` must be a directory shared by the 2 processes"):
    engine.run_chunked(lambda i: {"x": i}, 4, chunk_size=2, progress=False)


class _Elsewhere:
  process_index = 1                       # another process's device


def test_launcher_gives_each_process_its_id_and_stops_all_when_one_fails(tmp_path):
  script = tmp_path / "child.py"
  script.write_text(textwrap.dedent("""
      import os, sys, time
      me, n = int(os.environ["JAX_PROCESS_ID"]), int(os.environ["JAX_NUM_PROCESSES"])
      open(os.path.join(sys.argv[1], f"{me}-of-{n}-" + os.environ["JAX_COORDINATOR_ADDRESS"]
                        .replace(":", "_")), "w").close()
      if sys.argv[2] == "fail":
        sys.exit(3) if me == 1 else time.sleep(60)
  """))
  assert _launch(3, "--grace", 1, script, tmp_path, "ok") == 0
  names = sorted(p.name for p in tmp_path.glob("*-of-3-*"))
  assert [n.split("-")[0] for n in names] == ["0", "1", "2"]
  assert len({n.split("-", 3)[-1] for n in names}) == 1 and "localhost_" in names[0]
  start = time.monotonic()
  assert _launch(2, "--grace", 1, script, tmp_path, "fail") == 3
  assert time.monotonic() - start < 30          # the sleeper was stopped, not waited for


# --- slow tier: real processes ---------------------------------------------------------------

@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
  """Every driver's result in this process (one process, no ``jax.distributed``)."""
  sys.path.insert(0, str(WORKER.parent))
  try:
    import _hosts_worker as worker
  finally:
    sys.path.remove(str(WORKER.parent))
  store = tmp_path_factory.mktemp("one")
  return {d: worker.run(d, str(store / d)) for d in DRIVERS}


def _assert_bitwise(a: xr.Dataset, b: xr.Dataset, what: str):
  assert set(a.data_vars) == set(b.data_vars), what
  for name in a.data_vars:
    np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=f"{what}: {name}")
  assert {k: str(v) for k, v in a.attrs.items()} == {k: str(v) for k, v in b.attrs.items()}


def _check(out, n, drivers, one_process):
  for d in drivers:
    for p in range(n):
      got = xr.load_dataset(out / f"{d}-{p}.nc")
      _assert_bitwise(one_process[d.removesuffix("_global")], got, f"{d}, process {p} of {n}")


@pytest.mark.slow
@pytest.mark.parametrize("n, drivers", [(2, (*DRIVERS, "sweep_global")), (3, DRIVERS)])
def test_every_driver_on_several_processes_is_bitwise_one_process(tmp_path, one_process, n,
                                                                  drivers):
  assert _launch(n, WORKER, tmp_path / "store", tmp_path / "out", *drivers) == 0
  _check(tmp_path / "out", n, drivers, one_process)
  # The shared store holds the 10 chunks and the spec, and no temporary is left.
  names = sorted(c.name for c in (tmp_path / "store" / "sweep" / "config-0000").iterdir())
  assert names[-1] == "meta.json" and len(names) == 11 and not any(".tmp-" in n for n in names)


@pytest.mark.slow
def test_a_process_killed_mid_run_then_three_resume_bitwise(tmp_path, one_process):
  store, out = tmp_path / "store", tmp_path / "out"
  pattern = str(store / "sweep" / "config-0000" / "chunk-*.npz")
  status = _launch(2, "--grace", 1, WORKER, store, out, "sweep",
                   env={"HOSTS_KILL_AFTER": pattern})
  assert status == 128 + 9                        # process 1 SIGKILLed; process 0 stopped
  before = {c.name: (c.stat().st_ino, c.stat().st_mtime_ns)
            for c in (store / "sweep" / "config-0000").glob("chunk-*.npz")}
  assert 1 <= len(before) < 10                    # mid-run: some chunks of 10, not all
  assert _launch(3, WORKER, store, out, "sweep") == 0
  _check(out, 3, ["sweep"], one_process)
  after = {c.name: (c.stat().st_ino, c.stat().st_mtime_ns)
           for c in (store / "sweep" / "config-0000").glob("chunk-*.npz")}
  assert len(after) == 10 and all(after[k] == v for k, v in before.items())  # kept, not redone
