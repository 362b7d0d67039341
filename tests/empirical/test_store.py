"""Stores shared by several writers, and stores that cannot be written.

Two runs that open one fresh store with different specs: exactly one
proceeds, the other raises naming the store and the differing setting (never
mixed results). Two with the same spec both finish with the same result. A
run that ends deletes only dead writers' temporaries. The cheap tests race
threads in this process; the slow ones race real processes.
"""

from __future__ import annotations

import errno
import glob
import os
import subprocess
import sys
import textwrap
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import empirical
from empirical import engine

META = os.sep + "meta.json"


def _both_look_first(monkeypatch):
  """Make two threads that ask whether a store's meta.json exists wait for each
  other before going on: the interleaving where both find a fresh store."""
  barrier = threading.Barrier(2, timeout=10)
  exists = os.path.exists

  def hooked(path):
    found = exists(path)
    if os.fspath(path).endswith(META):
      try:
        barrier.wait()
      except threading.BrokenBarrierError:
        pass
    return found

  monkeypatch.setattr(os.path, "exists", hooked)


def _in_threads(*calls):
  """Run each ``call()`` in its own thread; their results or exceptions, in order."""
  out = [None] * len(calls)

  def run(i, call):
    try:
      out[i] = call()
    except Exception as e:  # pylint: disable=broad-except
      out[i] = e

  threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(60)
  return out


def _times(factor):
  def compute(idx):
    return {"v": np.asarray(idx) * factor}
  return compute


def _race_two_specs(store, monkeypatch):
  """Two runs with different specs open one fresh store at once; their results or errors."""
  _both_look_first(monkeypatch)
  return _in_threads(*[
      lambda f=f: engine.run_chunked(_times(f), 2, chunk_size=1, store=store,
                                     spec={"factor": f}, progress=False)
      for f in (2, 3)])


@pytest.mark.slow
def test_two_specs_on_one_fresh_store_one_wins(tmp_path, monkeypatch):
  store = str(tmp_path / "store")
  out = _race_two_specs(store, monkeypatch)
  errors = [r for r in out if isinstance(r, Exception)]
  assert len(errors) == 1, out
  assert isinstance(errors[0], ValueError)
  assert store in str(errors[0]) and "factor: stored" in str(errors[0])
  (winner,) = [(f, r) for f, r in zip((2, 3), out) if not isinstance(r, Exception)]
  np.testing.assert_array_equal(winner[1]["v"], np.arange(2) * winner[0])
  again = engine.run_chunked(_times(0), 2, chunk_size=1, store=store,
                             spec={"factor": winner[0]}, progress=False)
  np.testing.assert_array_equal(again["v"], np.arange(2) * winner[0])   # loaded, not recomputed


def test_without_hard_links_one_spec_still_wins(tmp_path, monkeypatch):
  def no_links(src, dst):
    raise OSError(errno.EPERM, os.strerror(errno.EPERM))
  monkeypatch.setattr(os, "link", no_links)      # e.g. a FAT or SMB mount
  store = str(tmp_path / "store")
  out = _race_two_specs(store, monkeypatch)
  assert sum(isinstance(r, ValueError) and "factor: stored" in str(r) for r in out) == 1, out
  assert not glob.glob(os.path.join(store, ".tmp-*"))


def test_one_spec_twice_on_one_fresh_store_both_finish(tmp_path, monkeypatch):
  store = str(tmp_path / "store")
  _both_look_first(monkeypatch)
  out = _in_threads(*[
      lambda: engine.run_chunked(_times(2), 2, chunk_size=1, store=store,
                                 spec={"factor": 2}, progress=False)] * 2)
  for r in out:
    assert not isinstance(r, Exception), r
    np.testing.assert_array_equal(r["v"], np.arange(2) * 2)


def test_a_finishing_run_keeps_a_live_writers_temporary(tmp_path):
  store = str(tmp_path / "store")
  engine.run_chunked(_times(2), 2, chunk_size=1, store=store, spec={"factor": 2},
                     progress=False)
  path = os.path.join(store, "chunk-000000000-000000001.npz")
  os.remove(path)
  writing, finished = threading.Event(), threading.Event()

  def slow_writer():                     # a writer mid-write while another run ends
    with engine.atomic_path(path) as tmp:
      np.savez(tmp, v=np.arange(1) * 2)
      writing.set()
      assert finished.wait(30)

  out = _in_threads(slow_writer, lambda: (
      writing.wait(30), engine.run_chunked(_times(2), 2, chunk_size=1, store=store,
                                           spec={"factor": 2}, progress=False),
      finished.set()))
  assert out[0] is None, out[0]          # its temporary was still there to move into place
  assert not isinstance(out[1], Exception), out[1]
  assert not glob.glob(os.path.join(store, ".tmp-*"))


def test_stale_temporaries_are_removed(tmp_path):
  store = tmp_path / "store"
  engine.run_chunked(_times(2), 2, chunk_size=1, store=store, spec={}, progress=False)
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True, check=True)
  mine = store / os.path.basename(engine._temporary(str(store), "chunk-0-1.npz"))
  ended = store / mine.name.replace(f".tmp-{os.getpid()}@", f".tmp-{dead.stdout.strip()}@")
  old = store / ".tmp-unknown-chunk-0-1.npz"       # names no process: judged by age
  young = store / ".tmp-unknown-chunk-1-2.npz"
  for p in (mine, ended, old, young):
    p.write_bytes(b"partial")
  os.utime(old, (1.0, 1.0))
  engine.run_chunked(_times(2), 2, chunk_size=1, store=store, spec={}, progress=False)
  assert sorted(p.name for p in store.glob(".tmp-*")) == sorted([mine.name, young.name])


# --- stores that cannot be written -------------------------------------------------

def test_a_store_under_a_file_names_the_store(tmp_path):
  (tmp_path / "file").write_text("x")
  store = str(tmp_path / "file" / "store")
  with pytest.raises(ValueError, match=r"`store` '.*file/store' cannot be written"):
    engine.run_chunked(_times(2), 2, chunk_size=1, store=store, spec={}, progress=False)


def _refuse_writes(monkeypatch, err):
  def refuse(*args, **kwargs):
    raise OSError(err, os.strerror(err))
  monkeypatch.setattr(engine.tempfile, "mkstemp", refuse)


def test_a_read_only_store_names_the_store(tmp_path, monkeypatch):
  # As root, chmod does not stop writes, so the refusal is simulated where the
  # engine creates files (this shows the error, not the file system's behavior;
  # the test below uses a real read-only directory where it can).
  store = str(tmp_path / "store")
  with monkeypatch.context() as m:
    _refuse_writes(m, errno.EROFS)
    with pytest.raises(ValueError, match=r"`store` '.*store' cannot be written .*"
                                         r"Read-only file system"):
      engine.run_chunked(_times(2), 2, chunk_size=1, store=store, spec={}, progress=False)
  done = engine.run_chunked(_times(2), 2, chunk_size=1, store=store, spec={}, progress=False)
  # A finished store is only read: it resumes even where nothing can be written.
  _refuse_writes(monkeypatch, errno.EROFS)
  again = engine.run_chunked(_times(0), 2, chunk_size=1, store=store, spec={}, progress=False)
  np.testing.assert_array_equal(again["v"], done["v"])
  os.remove(os.path.join(store, "chunk-000000001-000000002.npz"))
  with pytest.raises(ValueError, match=r"`store` '.*store' cannot be written \(writing "
                                       r"chunk-000000001-000000002.npz"):
    engine.run_chunked(_times(2), 2, chunk_size=1, store=store, spec={}, progress=False)


def test_a_full_disk_names_the_store(tmp_path, monkeypatch):
  def full(path, write, mode="wb"):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  monkeypatch.setattr(engine, "atomic_write", full)
  with pytest.raises(ValueError, match=r"`store` .* cannot be written .*No space left"):
    engine.run_chunked(_times(2), 2, chunk_size=1, store=tmp_path, spec={}, progress=False)


def test_a_read_only_directory_names_the_store(tmp_path):
  store = tmp_path / "store"
  store.mkdir()
  store.chmod(0o555)
  try:
    if os.access(store, os.W_OK):
      pytest.skip("chmod does not stop writes here (running as root)")
    with pytest.raises(ValueError, match=r"`store` .* cannot be written .*Permission denied"):
      engine.run_chunked(_times(2), 2, chunk_size=1, store=store, spec={}, progress=False)
  finally:
    store.chmod(0o755)


# --- real processes (slow: each imports JAX and compiles a sweep) ------------------

SWEEP = dict(activation="tanh", width=4, depth=2, sigma_w2=1.0, n_seeds=2, n_inputs=2,
             in_features=3, chunk_size=1, progress=False)

# The child waits for its sibling before and after it looks for the store's
# meta.json (the interleaving where both find a fresh store), sweeps, and
# saves ``q`` or the error's message.
CHILD = textwrap.dedent("""
    import os, sys, time, traceback
    import jax, numpy as np
    import empirical
    from empirical import engine

    store, meet, me, out = sys.argv[1:5]
    kwargs = eval(sys.argv[5])

    def rendezvous(tag):
      open(os.path.join(meet, f"{tag}-{me}"), "w").close()
      deadline = time.monotonic() + 60
      while len([n for n in os.listdir(meet) if n.startswith(tag + "-")]) < 2:
        if time.monotonic() > deadline:
          return
        time.sleep(0.01)

    exists = os.path.exists
    def hooked(path):
      found = exists(path)
      if os.fspath(path).endswith(os.sep + "meta.json"):
        rendezvous("meta")
      return found

    if kwargs.pop("hold", False):      # block mid-write of the first chunk until told
      write = engine.atomic_write
      def held(path, fn, mode="wb"):
        if "chunk-" not in os.path.basename(path):
          return write(path, fn, mode)
        def slow(f):
          fn(f)
          open(os.path.join(meet, "writing"), "w").close()
          deadline = time.monotonic() + 120
          while not exists(os.path.join(meet, "go")) and time.monotonic() < deadline:
            time.sleep(0.02)
        engine.atomic_write = write
        write(path, slow, mode)
      engine.atomic_write = held
    else:
      os.path.exists = hooked
      rendezvous("start")
    try:
      ds = empirical.sweep(jax.random.key(0), store=store, **kwargs)
      np.save(out + ".npy", ds.q.values)
    except Exception as e:
      open(out + ".err", "w").write(f"{type(e).__name__}: {e}")
""")


def _children(tmp_path, settings):
  """Start one child per ``settings`` (sweep keywords) on one store."""
  script, meet = tmp_path / "child.py", tmp_path / "meet"
  script.write_text(CHILD)
  meet.mkdir()
  env = {**os.environ, "PYTHONPATH": os.pathsep.join(
      [os.path.dirname(os.path.dirname(empirical.__file__)), os.environ.get("PYTHONPATH", "")])}
  store = tmp_path / "store"
  return store, meet, [
      subprocess.Popen([sys.executable, str(script), str(store), str(meet), str(i),
                        str(tmp_path / f"out{i}"), repr({**SWEEP, **s})], env=env)
      for i, s in enumerate(settings)]


def _results(tmp_path, children):
  for c in children:
    assert c.wait(timeout=300) == 0
  out = []
  for i in range(len(children)):
    err = tmp_path / f"out{i}.err"
    out.append(err.read_text() if err.exists() else np.load(tmp_path / f"out{i}.npy"))
  return out


@pytest.mark.slow
def test_two_processes_with_different_settings_one_wins(tmp_path):
  settings = [{"sigma_b2": 0.0}, {"sigma_b2": 0.5}]
  store, _, children = _children(tmp_path, settings)
  out = _results(tmp_path, children)
  errors = [r for r in out if isinstance(r, str)]
  assert len(errors) == 1, out
  assert errors[0].startswith("ValueError: `store` ") and str(store) in errors[0]
  assert "sigma_b2: stored" in errors[0]
  (i,) = [i for i, r in enumerate(out) if not isinstance(r, str)]
  alone = empirical.sweep(jax.random.key(0), **{**SWEEP, **settings[i]})
  np.testing.assert_array_equal(out[i], alone.q.values)


@pytest.mark.slow
def test_two_processes_with_one_spec_both_finish(tmp_path):
  _, _, children = _children(tmp_path, [{}, {}])
  out = _results(tmp_path, children)
  alone = empirical.sweep(jax.random.key(0), **SWEEP)
  for r in out:
    assert not isinstance(r, str), r
    np.testing.assert_array_equal(r, alone.q.values)


@pytest.mark.slow
def test_a_finishing_process_keeps_another_writers_temporary(tmp_path):
  store, meet, (child,) = _children(tmp_path, [{"hold": True}])
  try:
    while not (meet / "writing").exists():
      assert child.poll() is None, "the child ended before writing a chunk"
      threading.Event().wait(0.05)
    assert glob.glob(str(store / "config-0000" / ".tmp-*.npz"))
    mine = empirical.sweep(jax.random.key(0), store=store, **SWEEP)   # ends meanwhile
  finally:
    (meet / "go").touch()
  (theirs,) = _results(tmp_path, [child])
  assert not isinstance(theirs, str), theirs       # its os.replace found its file
  np.testing.assert_array_equal(theirs, mine.q.values)
  assert not glob.glob(str(store / "config-0000" / ".tmp-*"))


# --- store keys: what a callable computes, not its bytecode ------------------------

def _tanh_steps(x):
  y = jnp.tanh(x)
  return y


def test_a_callable_is_keyed_by_what_it_computes():
  from empirical import _grid
  from meanfield.activations import Activation
  # Other code (other bytecode), same values: one key; and the key is this digest
  # in any process and Python version.
  one = _grid.activation_key(Activation("f", lambda x: jnp.tanh(x)), need_content=True)
  assert one == _grid.activation_key(Activation("f", _tanh_steps), need_content=True)
  assert one == "f@" + GOLDEN_TANH


GOLDEN_TANH = "0c26d5009f02526ad408"


def test_different_callables_get_different_keys():
  from empirical import _grid
  from meanfield.activations import Activation

  @jax.custom_jvp
  def steep(x):                          # tanh's values, another slope
    return jnp.tanh(x)
  steep.defjvp(lambda p, t: (jnp.tanh(p[0]), 2 * t[0]))
  a, b = jnp.asarray(2.0), jnp.asarray(3.0)
  fns = [lambda x: jnp.tanh(x), lambda x: jnp.tanh(1.0000001 * x), lambda x: jnp.sin(x),
         lambda x: jnp.tanh(a * x), lambda x: jnp.tanh(b * x), steep,
         lambda x: jnp.maximum(x, 0.0), lambda x: jnp.maximum(x, 0.01 * x)]
  keys = [_grid.activation_key(Activation("f", f), need_content=True) for f in fns]
  assert len(set(keys)) == len(fns), keys
  kinked = _grid.activation_key(Activation("f", fns[0], kinks=(0.0,)), need_content=True)
  assert kinked not in keys


@pytest.mark.slow
def test_different_inits_get_different_keys():
  import dataclasses
  from empirical import _grid, inits
  gaussian = inits.init("gaussian")
  keys = {_grid.init_key(dataclasses.replace(gaussian, name="w", **kw), need_content=True)
          for kw in ({}, {"standard": inits.init("uniform").standard},
                     {"scale_fn": lambda s, i, o: jnp.sqrt(2 * s / i)})}
  assert len(keys) == 3


@pytest.mark.slow
def test_a_callable_that_cannot_be_evaluated_names_the_argument(tmp_path):
  def f32_only(x):
    if x.dtype != jnp.float32:
      raise TypeError(f"wants float32, got {x.dtype}")
    return jnp.tanh(x)
  kw = dict(width=4, depth=2, sigma_w2=1.0, n_inputs=2, in_features=3, progress=False)
  with pytest.raises(ValueError, match=r"`activation` 'f32_only' must give values at float64 "
                                       r"inputs to key a store .*TypeError: wants float32"):
    empirical.sweep(jax.random.key(0), activation=f32_only, store=tmp_path, **kw)
  empirical.sweep(jax.random.key(0), activation=f32_only, **kw)     # without a store: runs


KEY_CHILD = textwrap.dedent("""
    import sys
    import jax, jax.numpy as jnp, numpy as np
    import empirical
    from empirical import _grid
    from meanfield.activations import Activation
    act = lambda x: jnp.tanh(1.5 * x) + 0.1 * x
    print(_grid.activation_key(Activation("<lambda>", act), need_content=True))
    ds = empirical.sweep(jax.random.key(0), activation=act, store=sys.argv[1], **eval(sys.argv[2]))
    np.save(sys.argv[1] + ".npy", ds.q.values)
""")


@pytest.mark.slow
def test_a_lambda_store_resumes_in_a_new_process(tmp_path):
  from empirical import _grid
  from meanfield.activations import Activation
  act = lambda x: jnp.tanh(1.5 * x) + 0.1 * x  # noqa: E731
  script, store = tmp_path / "child.py", tmp_path / "store"
  script.write_text(KEY_CHILD)
  env = {**os.environ, "PYTHONPATH": os.pathsep.join(
      [os.path.dirname(os.path.dirname(empirical.__file__)), os.environ.get("PYTHONPATH", "")])}
  kw = {k: v for k, v in SWEEP.items() if k != "activation"}
  child = subprocess.run([sys.executable, str(script), str(store), repr(kw)], env=env,
                         capture_output=True, text=True, timeout=300)
  assert child.returncode == 0, child.stderr
  assert child.stdout.strip() == _grid.activation_key(Activation("<lambda>", act),
                                                      need_content=True)
  chunks = sorted(glob.glob(str(store / "config-0000" / "chunk-*.npz")))
  for c in chunks:
    os.utime(c, (1.0, 1.0))
  resumed = empirical.sweep(jax.random.key(0), activation=act, store=store, **kw)
  assert [os.path.getmtime(c) for c in chunks] == [1.0] * len(chunks)   # all loaded
  np.testing.assert_array_equal(resumed.q.values, np.load(str(store) + ".npy"))


def test_last_bit_noise_far_below_the_largest_value_does_not_change_the_key():
  # A slope of 1e-11 where the largest is 1 has only ~5 digits the platform does not decide
  # (tanh' at |x| = 13, computed as 1 - tanh^2): its last bits must not enter the key.
  from empirical import _grid
  base = np.array([1.0, 0.5, 6.969758103979663e-12, -0.25])
  noisy = base + np.array([0.0, 0.0, 2.2e-16, 0.0])
  assert _grid._digest([base]) == _grid._digest([noisy])
  # ... while a change in the 10th digit of the largest value does.
  assert _grid._digest([base]) != _grid._digest([base * (1 + 1e-9)])
