"""A sweep killed with SIGKILL mid-run resumes to exactly the uninterrupted result."""

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
SCRIPT = textwrap.dedent("""
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
    empirical.sweep(jax.random.key(0), store=sys.argv[1], **{args})
""")


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_is_bitwise_uninterrupted(tmp_path):
  store = tmp_path / "store"
  script = tmp_path / "child.py"
  script.write_text(SCRIPT.format(args=repr(ARGS)))
  env = {**os.environ, "PYTHONPATH": os.pathsep.join(
      [os.path.dirname(os.path.dirname(empirical.__file__)), os.environ.get("PYTHONPATH", "")])}
  child = subprocess.Popen([sys.executable, str(script), str(store)], env=env)
  chunks = str(store / "config-0000" / "chunk-*.npz")
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
  done = len(glob.glob(chunks))
  assert 1 <= done < 12                    # killed mid-run: some chunks, not all (one seed each)
  resumed = empirical.sweep(jax.random.key(0), store=store, **ARGS)
  whole = empirical.sweep(jax.random.key(0), **ARGS)
  assert set(resumed.data_vars) == set(whole.data_vars)
  for name in whole.data_vars:
    np.testing.assert_array_equal(resumed[name].values, whole[name].values, err_msg=name)
  assert len(glob.glob(chunks)) == 12
  assert not glob.glob(str(store / "config-0000" / ".tmp-*"))
