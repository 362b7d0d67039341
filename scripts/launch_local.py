"""Start N processes of one script on this machine as one ``jax.distributed`` run.

  python scripts/launch_local.py -n 3 my_sweep.py [its arguments ...]

Each process gets, in its environment, ``JAX_COORDINATOR_ADDRESS``
(``localhost:<a free port>``, which :func:`jax.distributed.initialize` reads
itself), ``JAX_NUM_PROCESSES`` (N) and ``JAX_PROCESS_ID`` (0..N-1), so the
script starts with::

  import os, jax
  jax.distributed.initialize(num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
                             process_id=int(os.environ["JAX_PROCESS_ID"]))

the same lines that start it on several hosts over SSH (see the README's
"Many devices and hosts"). On the CPU, JAX's cross-process collectives are
gloo (``jax_cpu_collectives_implementation``, JAX's default). The processes
share this terminal's output. When one process ends with an error (or is
killed), the others are stopped (SIGTERM, then SIGKILL after ``--grace``
seconds, default 3: under ``jax.distributed`` JAX takes SIGTERM for a
preemption notice and carries on), as a cluster's job ends; the launcher's exit status is the first
failure's (a killed process's ``128 + signal``), else 0. Each process is
started in the current directory with this Python.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time


def free_port() -> int:
  """A TCP port on localhost that no one listens on now."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("localhost", 0))
    return int(s.getsockname()[1])


def environments(n: int, port: int, base: dict[str, str] | None = None) -> list[dict[str, str]]:
  """The environment of each of ``n`` processes: ``base`` (default ``os.environ``) plus
  the coordinator's address, the process count and the process's id."""
  base = dict(os.environ if base is None else base)
  return [{**base, "JAX_COORDINATOR_ADDRESS": f"localhost:{port}",
           "JAX_NUM_PROCESSES": str(n), "JAX_PROCESS_ID": str(i)} for i in range(n)]


def _status(code: int) -> int:
  return 128 - code if code < 0 else code      # killed by signal s: 128 + s, as a shell says


def _stop(children: list[subprocess.Popen], grace: float) -> None:
  for child in children:
    if child.poll() is None:
      child.send_signal(signal.SIGTERM)
  deadline = time.monotonic() + grace
  for child in children:
    try:
      child.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      child.kill()
      child.wait()


def launch(n: int, script: str, args: list[str], *, grace: float = 3.0,
           timeout: float | None = None) -> int:
  """Run ``python script *args`` as processes ``0..n-1`` of one run; the exit status.

  Stops all when one fails (or when ``timeout`` seconds pass: status 124).
  """
  if n < 1:
    raise ValueError(f"`n` must be >= 1, got {n}")
  envs = environments(n, free_port())
  children = [subprocess.Popen([sys.executable, script, *args], env=env) for env in envs]
  deadline = None if timeout is None else time.monotonic() + timeout
  try:
    while True:
      codes = [child.poll() for child in children]
      failed = [c for c in codes if c not in (None, 0)]
      if failed:
        _stop(children, grace)
        return _status(failed[0])
      if all(c == 0 for c in codes):
        return 0
      if deadline is not None and time.monotonic() > deadline:
        _stop(children, grace)
        return 124
      time.sleep(0.05)
  finally:
    for child in children:            # interrupted (Ctrl-C): leave nothing running
      if child.poll() is None:
        child.kill()
        child.wait()


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("-n", "--processes", type=int, default=2, help="how many (default 2)")
  parser.add_argument("--grace", type=float, default=3.0,
                      help="seconds the others get to stop when one fails (default 3)")
  parser.add_argument("--timeout", type=float, default=None,
                      help="stop all after this many seconds (exit status 124)")
  parser.add_argument("script")
  parser.add_argument("args", nargs=argparse.REMAINDER)
  ns = parser.parse_args(argv)
  return launch(ns.processes, ns.script, ns.args, grace=ns.grace, timeout=ns.timeout)


if __name__ == "__main__":
  sys.exit(main())
