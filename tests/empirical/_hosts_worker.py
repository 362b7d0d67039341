"""One process of a multi-process run for ``test_hosts.py`` (started by ``scripts/launch_local.py``).

  python tests/empirical/_hosts_worker.py STORE OUT DRIVER [DRIVER ...]

Runs each named driver (``sweep``, ``sweep_global``: one program over every
process's device, ``spectra``, ``train``, ``diagnose``) on its small problem
of :data:`RUNS` with ``store=STORE/<driver>`` and saves what it returns to
``OUT/<driver>-<process id>.nc``. Started without ``JAX_NUM_PROCESSES`` it is
a one-process run. With ``HOSTS_KILL_AFTER=<glob>`` process 1 kills itself
(SIGKILL) once a file matches the glob: a process killed mid-run.
"""

from __future__ import annotations

import glob
import os
import signal
import sys
import threading
import time

import jax

if "JAX_NUM_PROCESSES" in os.environ:      # as the README's recipe starts every process
  jax.distributed.initialize(num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
                             process_id=int(os.environ["JAX_PROCESS_ID"]))

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

import empirical  # noqa: E402
from empirical import data as data_lib  # noqa: E402

KEY = jax.random.key(7)
SWEEP = dict(activation="tanh", width=16, depth=4, sigma_w2=[1.0, 2.0], sigma_b2=0.05,
             n_seeds=10, n_inputs=3, in_features=5, chunk_size=2, progress=False)
SPECTRA = dict(activation="tanh", width=8, depth=3, sigma_w2=[1.2, 1.8], sigma_b2=0.05,
               n_seeds=7, q=0.5, chunk_size=2, progress=False)
TRAIN = dict(activation="tanh", width=8, depth=2, sigma_w2=[1.0, 1.5], n_seeds=3,
             learning_rate=0.1, n_steps=6, record_every=3, batch_size=16, chunk_size=2,
             progress=False)
X = jax.random.normal(jax.random.key(1), (4, 4))


class Tiny(nnx.Module):
  """Two dense tanh layers: the user's model that ``diagnose`` measures."""

  def __init__(self, rngs):
    self.a = nnx.Linear(4, 8, rngs=rngs)
    self.b = nnx.Linear(8, 8, rngs=rngs)

  def __call__(self, x):
    return self.b(jnp.tanh(self.a(x)))


def tiny(rngs):
  return Tiny(rngs)


def run(driver: str, store: str):
  """The Dataset of ``driver`` on its small problem, stored in ``store``."""
  if driver == "sweep":
    return empirical.sweep(KEY, store=store, **SWEEP)
  if driver == "sweep_global":
    return empirical.sweep(KEY, store=store, devices=jax.devices(), **SWEEP)
  if driver == "spectra":
    return empirical.jacobian_spectra(KEY, store=store, **SPECTRA)
  if driver == "train":
    data = data_lib.load_digits(key=jax.random.key(0))
    return empirical.train(KEY, data=data, store=store, **TRAIN)
  if driver == "diagnose":
    return empirical.diagnose(tiny, X, key=KEY, n_seeds=5, n_projections=1, chunk_size=2,
                              store=store, progress=False)
  raise ValueError(f"`driver` must be one of sweep, sweep_global, spectra, train, diagnose, "
                   f"got {driver!r}")


def _kill_when(pattern: str) -> None:
  def watch():
    while not glob.glob(pattern):
      time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGKILL)
  threading.Thread(target=watch, daemon=True).start()


def main(store: str, out: str, drivers: list[str]) -> None:
  if os.environ.get("HOSTS_KILL_AFTER") and jax.process_index() == 1:
    _kill_when(os.environ["HOSTS_KILL_AFTER"])
  os.makedirs(out, exist_ok=True)
  for driver in drivers:
    ds = run(driver, os.path.join(store, driver))
    ds.to_netcdf(os.path.join(out, f"{driver}-{jax.process_index()}.nc"))
  np.save(os.path.join(out, f"done-{jax.process_index()}.npy"), np.asarray(jax.process_count()))


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2], sys.argv[3:])
