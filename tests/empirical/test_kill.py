"""A sweep or a diagnosis killed with SIGKILL mid-run resumes to exactly the uninterrupted result."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

import empirical

ARGS = dict(activation="tanh", width=8, depth=3, sigma_w2=[1.0, 2.0], n_seeds=12,
            n_inputs=4, in_features=4, chunk_size=2, progress=False)

# The child writes each chunk, then pauses before moving it into place, so a
# kill that lands after the first chunk is on disk finds it mid-run (often
# with a temporary file of the next chunk left behind).
SLOW_WRITES = textwrap.dedent("""
    import sys, time
    import jax
    import empirical
    from empirical import engine

    write = engine.atomic_write
    def slow_write(path, fn, mode="wb"):
      def slow(f):
        fn(f)
        time.sleep(0.2)
      write(path, slow, mode)
    engine.atomic_write = slow_write
""")
SCRIPT = SLOW_WRITES + "empirical.sweep(jax.random.key(0), store=sys.argv[1], **{args})\n"
# A user's model from the tests, built in the child by its own code objects: the store
# is keyed by what the model computes, so the parent resumes it.
DIAGNOSE_SCRIPT = SLOW_WRITES + textwrap.dedent("""
    from tests.empirical.test_diagnose_engine import X, tiny
    empirical.diagnose(tiny, X, store=sys.argv[1], **{args})
""")


def _kill_after_a_chunk(tmp_path, script_text, chunks):
  """Run ``script_text`` (argv[1]: the store) in a child, SIGKILL it once a file matches
  ``chunks`` (a glob), and return how many did."""
  script = tmp_path / "child.py"
  script.write_text(script_text)
  root = os.path.dirname(os.path.dirname(empirical.__file__))
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
  child = subprocess.Popen([sys.executable, str(script), str(tmp_path / "store")], env=env,
                           cwd=root)
  deadline = time.monotonic() + 120
  try:
    while not glob.glob(chunks):
      assert child.poll() is None, "the child ended before writing a chunk"
      assert time.monotonic() < deadline, "no chunk written within 120 s"
      time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL
  finally:
    if child.poll() is None:
      child.kill()
  return len(glob.glob(chunks))


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_is_bitwise_uninterrupted(tmp_path):
  store = tmp_path / "store"
  chunks = str(store / "config-0000" / "chunk-*.npz")
  done = _kill_after_a_chunk(tmp_path, SCRIPT.format(args=repr(ARGS)), chunks)
  assert 1 <= done < 12                    # killed mid-run: some chunks, not all (one seed each)
  resumed = empirical.sweep(jax.random.key(0), store=store, **ARGS)
  whole = empirical.sweep(jax.random.key(0), **ARGS)
  assert set(resumed.data_vars) == set(whole.data_vars)
  for name in whole.data_vars:
    np.testing.assert_array_equal(resumed[name].values, whole[name].values, err_msg=name)
  assert len(glob.glob(chunks)) == 12
  assert not glob.glob(str(store / "config-0000" / ".tmp-*"))


@pytest.mark.slow
def test_a_killed_diagnosis_resumes_bitwise_uninterrupted(tmp_path):
  from tests.empirical.test_diagnose_engine import X, tiny
  args = dict(key=jax.random.key(11), n_seeds=12, n_projections=1, chunk_size=2,
              progress=False)
  store = tmp_path / "store"
  child_args = "dict(" + ", ".join(
      ["key=jax.random.key(11)"] + [f"{k}={v!r}" for k, v in args.items() if k != "key"]) + ")"
  done = _kill_after_a_chunk(tmp_path, DIAGNOSE_SCRIPT.format(args=child_args),
                             str(store / "chunk-*.npz"))
  assert 1 <= done < 6                     # killed mid-run: some chunks, not all
  resumed = empirical.diagnose(tiny, X, store=store, **args)
  assert len(glob.glob(str(store / "chunk-*.npz"))) == 6
  assert not glob.glob(str(store / ".tmp-*"))
  assert resumed.identical(empirical.diagnose(tiny, X, **args))
