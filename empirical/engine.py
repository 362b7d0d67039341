"""The experiment engine: what every driver of :mod:`empirical` runs on.

A driver (:func:`empirical.sweep`, :func:`empirical.train`,
:func:`empirical.jacobian_spectra`, :func:`empirical.diagnose`) is an *item program* plus a *result
schema*: it validates its arguments, builds one program per combination of
the discrete hyperparameters (a *configuration*: activation, init, width,
depth) and says how the arrays its items return become labelled variables.
Everything around that lives here, once:

- :func:`run_chunked`: the chunk loop. Items (networks, or a seed with a
  block of settings) are computed in fixed-size chunks, each from its own
  index only (its key ``fold_in(key, i)``), so results do not depend on the
  chunking; chunks are split over devices (:mod:`empirical.devices`).
- Storing and resuming: with ``store`` each finished chunk is written
  atomically (:func:`atomic_write`: a temporary file, then ``os.replace``;
  :func:`atomic_path` for writers that take a path, as the figures' do)
  beside a ``meta.json`` spec; a rerun with the same spec loads the chunks
  that exist and computes only the missing ones, so a run killed at any
  moment ends, when rerun, with exactly the result of an uninterrupted one.
- :func:`run_configs`: the loop over configurations, one progress bar, one
  store directory ``config-<k>`` each.
- The memory plan: :func:`check_fits` (one item must fit ``memory_budget``,
  else a ``ValueError`` saying the deepest that would), :func:`items_per_chunk`
  and :data:`DEFAULT_MEMORY_BUDGET`; each driver counts its own bytes.
- Dataset assembly: :func:`grid_variable` and :func:`grid_coords` put the
  configurations' arrays on the grid axes :data:`SWEPT` (a list makes a
  dimension, a single value a scalar coordinate), :func:`provenance` the
  attributes every Dataset carries.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import socket
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from tqdm import tqdm

from empirical import _checks
from empirical import _grid
from empirical import devices as _devices

__all__ = ["SWEPT", "DEFAULT_MEMORY_BUDGET", "run_chunked", "matmul_precision", "atomic_write", "atomic_path", "run_configs",
           "config_store", "check_fits", "items_per_chunk", "swept", "stack", "grid_variable", "grid_coords", "provenance"]

Array = jax.Array

#: The grid axes of every experiment, in the order of a Dataset's dims (a driver
#: may add its own after them, as :func:`empirical.train` adds ``learning_rate``).
SWEPT = ("activation", "init", "width", "depth", "sigma_w2", "sigma_b2")
#: Bytes per device a chunk may hold, unless a driver is told otherwise.
DEFAULT_MEMORY_BUDGET = 1 << 30
_FORMAT = 1


# --- chunking, storing, resuming ------------------------------------------------

def _tree_dict(out) -> dict[str, Any]:
  if isinstance(out, dict):
    return dict(out)
  if hasattr(out, "_asdict"):
    return dict(out._asdict())
  raise TypeError(f"`compute` must return a dict or a NamedTuple of arrays, got {type(out)}")


#: A store's temporary file older than this many seconds (since last written) is a
#: dead writer's: a run that ends deletes it (see :func:`_remove_temporaries`).
_STALE_AGE = 3600
_OWNED = re.compile(r"\.tmp-(\d+)@([A-Za-z0-9_]+)-")


def _host() -> str:
  return re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"


def _temporary(directory: str, name: str) -> str:
  """A new empty file ``.tmp-<pid>@<host>-<random><name>`` in ``directory``: the
  writer's process and host in the name say whose it is, the suffix keeps ``name``'s."""
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".tmp-{os.getpid()}@{_host()}-",
                             suffix=name)
  os.close(fd)
  return tmp


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
  """A temporary path beside ``path`` to write to, moved onto ``path`` (``os.replace``)
  when the block ends, deleted if it raises: a reader sees the old file or the new one,
  never a part. The temporary name is ``.tmp-<pid>@<host>-<random><name>``, so it
  keeps the suffix (writers that read the format from it work) and says whose it is."""
  path = os.fspath(path)
  tmp = _temporary(os.path.dirname(path) or ".", os.path.basename(path))
  try:
    yield tmp
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> None:
  """Write ``path`` at once, so a reader never sees half a file.

  ``write(f)`` runs on a file opened with ``mode`` at an :func:`atomic_path`,
  synced to disk before it replaces ``path``.
  """
  with atomic_path(path) as tmp:
    with open(tmp, mode) as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())


def _load_chunk(path: str, n: int) -> dict[str, np.ndarray] | None:
  """The arrays of a finished chunk, or None if missing or unreadable."""
  if not os.path.exists(path):
    return None
  try:
    with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
      arrays = {k: f[k] for k in f.files}
  except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
    return None                            # damaged outside this code: redo
  if not arrays or any(a.shape[:1] != (n,) for a in arrays.values()):
    return None
  return arrays


def _differences(old: dict, new: dict) -> list[str]:
  """``"name: stored X, now Y"`` for each field whose value differs."""
  out = []
  for name in sorted(set(old) | set(new)):
    a, b = old.get(name, "(absent)"), new.get(name, "(absent)")
    if json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):
      show = [json.dumps(v, sort_keys=True) for v in (a, b)]
      show = [v if len(v) <= 80 else v[:77] + "..." for v in show]
      out.append(f"{name}: stored {show[0]}, now {show[1]}")
  return out


def _unwritable(store: str, e: OSError, what: str) -> ValueError:
  return ValueError(
      f"`store` {store!r} cannot be written ({what}: {e.strerror or e}); give a writable "
      f"directory with free space (chunks already there are kept: a rerun resumes from them)")


def _create_exclusive(path: str, text: str) -> bool:
  """Create ``path`` holding ``text`` unless it exists; whether this call created it.

  The text is written to a temporary file first and hard-linked to ``path``,
  which fails if ``path`` exists: of several processes only one creates it,
  and no reader sees it half written. On a file system without hard links,
  ``O_CREAT | O_EXCL`` (still one creator; a reader in the instant of the
  write may find the file unreadable, an error, never another run's results).
  """
  tmp = _temporary(os.path.dirname(path), os.path.basename(path))
  try:
    with open(tmp, "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    try:
      os.link(tmp, path)
      return True
    except FileExistsError:
      return False
    except OSError as e:
      if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS,
                         errno.EMLINK, errno.EXDEV):
        raise
    try:
      fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
      return False
    try:
      with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    except BaseException:
      os.remove(path)                      # not left half written
      raise
    return True
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)


def _read_meta(store: str, meta_path: str) -> dict:
  try:
    with open(meta_path) as f:
      old = json.load(f)
    if not isinstance(old, dict) or not isinstance(old.get("chunk_size"), int):
      raise ValueError("not a store's meta.json")
  except (OSError, ValueError) as e:   # json.JSONDecodeError is a ValueError
    raise ValueError(
        f"`store` {store!r} has an unreadable {meta_path!r} ({type(e).__name__}: {e}); "
        f"it was damaged outside this code: delete that directory (its results are lost) "
        f"or give a new `store` path") from None
  return old


def _open_store(store: str, spec: dict, chunk_size: int, n_items: int) -> int:
  """Create or check ``store/meta.json``; return the chunk size to use there.

  The spec is created exclusively (:func:`_create_exclusive`) before any
  chunk is read or written, so of several processes that open one fresh
  store with different specs exactly one proceeds and the others raise.
  An existing store is only read here (a finished store may be read-only).
  """
  if os.path.exists(store) and not os.path.isdir(store):
    raise ValueError(f"`store` must be a directory (created if missing), got {store!r}, "
                     f"which is a file")
  meta_path = os.path.join(store, "meta.json")
  meta = {"format": _FORMAT, "spec": spec, "chunk_size": chunk_size, "n_items": n_items}
  if not os.path.exists(meta_path):
    try:
      os.makedirs(store, exist_ok=True)
      if _create_exclusive(meta_path, json.dumps(meta, sort_keys=True, indent=1)):
        return chunk_size
    except OSError as e:
      raise _unwritable(store, e, f"creating {meta_path!r}") from e
  old = _read_meta(store, meta_path)
  stored = {"format": old.get("format"), "n_items": old.get("n_items"),
            **(old.get("spec") if isinstance(old.get("spec"), dict) else {})}
  differ = _differences(stored, {"format": _FORMAT, "n_items": n_items, **spec})
  if differ:
    raise ValueError(
        f"`store` {store!r} holds results of a different computation ("
        + "; ".join(differ) + "); give a new path (or delete it) to start this one")
  return int(old["chunk_size"])      # resume with the stored chunk geometry


def run_chunked(compute: Callable[[Array], Any], n_items: int, *, chunk_size: int,
                store: str | os.PathLike | None = None, spec: dict | None = None,
                progress: bool | tqdm = True, units_per_item: int = 1,
                desc: str | None = None, multiple: int = 1, shared: tuple = (),
                devices: _devices.Devices = 1) -> dict[str, np.ndarray]:
  """Map ``compute`` over ``n_items`` in fixed-size chunks, storing and resuming.

  Args:
    compute: ``compute(indices) -> dict | NamedTuple`` of arrays with leading
      axis ``len(indices)``; called with int32 ``indices`` of shape
      ``(chunk_size,)`` rounded up to a multiple of ``multiple`` (the last
      chunk padded by repeating its last index; the padding is dropped), so
      it compiles once. Item ``i``'s result must
      depend on ``i`` only (e.g. its key ``fold_in(key, i)``), which makes
      results independent of ``chunk_size``. Jit it (this function doesn't).
    n_items: number of items, ``>= 1``.
    chunk_size: items per call.
    store: a directory; each finished chunk is written there atomically
      (``chunk-<start>-<stop>.npz``) and reused by a later call with the same
      ``spec``, which computes only missing (or unreadable) chunks with the
      chunk size stored at the first call. Several processes may share a
      store: the first to open a fresh store fixes its spec (created
      exclusively, before any chunk is read or written), and the others
      resume or raise as below. Stray temporary files of a killed run are
      ignored, and deleted once every chunk is done (those whose name names
      an ended process of this host, or last written over an hour ago;
      never a live writer's). A store that cannot be written (read-only,
      full) raises ``ValueError`` naming it when a chunk must be written.
    spec: JSON-serialisable description of everything the results depend
      on; a store made with a different spec raises ``ValueError`` naming
      the store and the fields that differ (a damaged ``meta.json`` raises
      too).
    progress: show a tqdm bar, or an existing bar to update.
    units_per_item: bar units per item (e.g. networks per item).
    desc: the bar's label.
    multiple: calls get a multiple of this many indices. (XLA may compile a
      vmap over a different number of items differently, changing the last
      bits of results; :func:`sweep` loops over fixed-size vmapped groups
      inside ``compute`` and passes the group size here.)
    shared: arrays passed to every call before the indices,
      ``compute(*shared, indices)`` (replicated on every device).
    devices: ``1`` (default): one device, this process's first; ``None``:
      all of this process's devices (``jax.local_devices()``; the first
      only on the CPU, see :func:`empirical.devices.resolve`); an integer
      ``n``: the first ``n`` of them; or a sequence of ``jax.Device``.
      With several, each chunk (rounded up to a multiple of ``multiple``
      times the number of devices) is split evenly over them
      (:mod:`empirical.devices`), and ``compute`` must then be traceable
      (``jax.jit``-able; a stable function compiles once). Results are those
      of a one-device run. Under ``jax.distributed`` with several
      processes, each process computes its own chunks (chunk ``k`` on
      process ``k mod P``), writes them to ``store``, which must be shared
      by all processes (``ValueError`` without one), and reads the others'
      there (computing itself any that stop appearing: a killed process's);
      every process returns the whole result, and only process 0 shows the
      progress bar, counting every process's chunks. A sequence of devices
      spanning processes runs instead one sharded program per chunk on all
      of them in step (every process computes every chunk; process 0 writes).

  Returns:
    ``{name: np.ndarray}`` with leading axis ``n_items``.
  """
  n_items = _checks.check_int("n_items", n_items, 1)
  chunk_size = min(_checks.check_int("chunk_size", chunk_size, 1), n_items)
  devs = _devices.resolve(devices)
  sharded = _devices.shard_items(compute, devs) if len(devs) > 1 else None
  step = multiple * len(devs)
  split = _devices.splits_processes(devs)
  precision = matmul_precision()
  if store is not None:
    store = os.fspath(store)
    spec = {} if spec is None else spec
    if precision != "highest":            # stores of full-precision runs keep their spec
      spec = {**spec, "matmul_precision": precision}
    chunk_size = _open_store(store, spec, chunk_size, n_items)
  elif split:
    raise ValueError(
        f"`store` must be a directory shared by the {jax.process_count()} processes of this "
        f"jax.distributed run (each computes its own chunks and reads the others' there), "
        f"got None")

  def one_chunk(start: int, stop: int) -> dict[str, np.ndarray]:
    idx = np.arange(start, start + -(-chunk_size // step) * step)
    idx = np.minimum(idx, n_items - 1).astype(np.int32)
    with jax.default_matmul_precision(precision):
      if sharded is None:
        out = jax.device_get(_tree_dict(compute(*shared, jnp.asarray(idx))))
      else:
        out = _devices.fetch(_tree_dict(sharded(*_devices.place(shared, idx, devs))))
    return {k: np.asarray(v)[: stop - start] for k, v in out.items()}

  bounds = [(a, min(a + chunk_size, n_items)) for a in range(0, n_items, chunk_size)]
  chunks = _Chunks(store, bounds, one_chunk, write=split or jax.process_index() == 0)
  bar = progress if isinstance(progress, tqdm) else tqdm(
      total=n_items * units_per_item, unit="net", desc=desc, disable=_quiet(progress))
  try:
    if split:
      parts = _run_split(chunks, lambda n: bar.update(n * units_per_item))
    else:
      parts = []
      for k, (start, stop) in enumerate(bounds):
        parts.append(chunks.get(k))
        bar.update((stop - start) * units_per_item)
  finally:
    if bar is not progress:
      bar.close()
  if store is not None and jax.process_index() == 0:
    _remove_temporaries(store)
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def matmul_precision() -> str:
  """The precision of the experiment's matrix products: the caller's, else ``"highest"``.

  :func:`run_chunked` computes every chunk under
  ``jax.default_matmul_precision(matmul_precision())``: full float32
  (``"highest"``) unless the caller chose another around the call
  (``with jax.default_matmul_precision("tensorfloat32"): empirical.sweep(...)``,
  or ``JAX_DEFAULT_MATMUL_PRECISION``), which then enters the store's spec.
  On GPUs JAX's own default rounds float32 products' inputs to about 10
  bits (TF32-class); on the CPU every choice computes in full float32.
  """
  chosen = jax.config.jax_default_matmul_precision
  return "highest" if chosen is None else str(chosen)


def _quiet(progress: bool) -> bool:
  """Whether to hide a progress bar: when not asked for, and on every process but the
  first of a ``jax.distributed`` run (whose bar counts every process's chunks)."""
  return not progress or jax.process_index() != 0


class _Chunks:
  """The chunks of one :func:`run_chunked` call: each loaded from ``store`` when there,
  else computed by ``one_chunk(start, stop)`` (and written there when ``write``)."""

  def __init__(self, store: str | None, bounds: list[tuple[int, int]],
               one_chunk: Callable[[int, int], dict[str, np.ndarray]], write: bool):
    self.store, self.bounds, self.one_chunk, self.write = store, bounds, one_chunk, write
    self.seconds: list[float] = []          # wall time of each chunk computed here

  def path(self, k: int) -> str | None:
    start, stop = self.bounds[k]
    return None if self.store is None else os.path.join(
        self.store, f"chunk-{start:09d}-{stop:09d}.npz")

  def size(self, k: int) -> int:
    return self.bounds[k][1] - self.bounds[k][0]

  def load(self, k: int) -> dict[str, np.ndarray] | None:
    path = self.path(k)
    return None if path is None else _load_chunk(path, self.size(k))

  def done(self, k: int) -> bool:
    path = self.path(k)
    return path is not None and os.path.exists(path)

  def compute(self, k: int) -> dict[str, np.ndarray]:
    begin = time.perf_counter()
    arrays = self.one_chunk(*self.bounds[k])
    if self.write and self.store is not None:
      _write_chunk(self.store, self.path(k), arrays)
    self.seconds.append(time.perf_counter() - begin)
    return arrays

  def get(self, k: int) -> dict[str, np.ndarray]:
    arrays = self.load(k)
    return self.compute(k) if arrays is None else arrays


#: Seconds a process of a ``jax.distributed`` run waits, with no new chunk appearing in the
#: store, before it computes a missing chunk of another process itself (that process may
#: have been killed), when it has no chunk time of its own to go by (see :func:`_run_split`).
_PATIENCE = 30.0
_POLL = 0.05


def _run_split(chunks: _Chunks, advance: Callable[[int], None]) -> list[dict[str, np.ndarray]]:
  """The chunks of a ``jax.distributed`` run in which each process computes its own.

  Process ``p`` of ``P`` first does chunks ``p, p + P, ...`` (loading those
  already in the store), then collects the rest from the store in order. A
  chunk still missing is waited for while others keep appearing; once none
  has appeared for three times the longest chunk time of this process plus a second
  (:data:`_PATIENCE` if it computed none), it is computed here and written
  too (its owner may be dead; if not, both write the same bytes, each
  atomically). No collective runs, so a killed process stops no other, and
  every chunk's result is the one-process result. ``advance(n)`` is called
  with the number of items of each chunk first seen finished in the store
  (the whole run's progress).
  """
  n, procs, me = len(chunks.bounds), jax.process_count(), jax.process_index()
  parts: dict[int, dict[str, np.ndarray]] = {}
  seen: set[int] = set()

  def look() -> bool:                       # count newly finished chunks; any new?
    new = [k for k in range(n) if k not in seen and (k in parts or chunks.done(k))]
    seen.update(new)
    advance(sum(chunks.size(k) for k in new))
    return bool(new)

  for k in range(me, n, procs):
    parts[k] = chunks.get(k)
    look()
  last = time.monotonic()
  for k in range(n):
    while k not in parts:
      arrays = chunks.load(k)
      patience = 3 * max(chunks.seconds) + 1.0 if chunks.seconds else _PATIENCE
      if arrays is None and time.monotonic() - last > patience:
        arrays = chunks.compute(k)
      if arrays is not None:
        parts[k] = arrays
        last = time.monotonic()
      elif look():
        last = time.monotonic()
      else:
        time.sleep(_POLL)
    look()
  return [parts[k] for k in range(n)]


def _write_chunk(store: str, path: str, arrays: dict[str, np.ndarray]) -> None:
  try:
    atomic_write(path, lambda f: np.savez(f, **arrays))
  except OSError as e:
    raise _unwritable(store, e, f"writing {os.path.basename(path)}") from e


def _owner_gone(name: str) -> bool:
  """Whether ``name`` says it is a temporary of a process of this host that has ended."""
  match = _OWNED.match(name)
  if match is None or match.group(2) != _host() or os.name != "posix":
    return False
  pid = int(match.group(1))
  if pid == os.getpid():
    return False
  try:
    os.kill(pid, 0)                        # signal 0: only asks whether it exists
  except ProcessLookupError:
    return True
  except OSError:
    return False                           # it exists (another user's)
  return False


def _remove_temporaries(store: str) -> None:
  """Delete the ``.tmp-*`` files of dead writers in ``store`` (all chunks are done).

  Another live writer's temporaries stay (it moves them into place itself). A
  temporary is a dead writer's when its name names a process of this host
  that has ended, or when it was last written more than ``_STALE_AGE``
  seconds (an hour) ago.
  """
  now = time.time()
  for name in os.listdir(store):
    if not (name.startswith(".tmp-") and (name.endswith(".npz") or name.endswith("meta.json"))):
      continue
    path = os.path.join(store, name)
    try:
      if _owner_gone(name) or now - os.stat(path).st_mtime > _STALE_AGE:
        os.remove(path)
    except OSError:                        # gone already, or not ours to delete
      pass


# --- the memory plan ---------------------------------------------------------------

def check_fits(what: str, bytes_at_depth: Callable[[int], int], depth: int, budget: int, *,
               width: int) -> None:
  """Raise ``ValueError`` unless one item of ``depth`` layers fits ``budget`` bytes.

  ``bytes_at_depth(d)``: the driver's count of the bytes one item of depth
  ``d`` holds, linear in ``d``; the message says the deepest item that fits.
  """
  need = bytes_at_depth(depth)
  if need > budget:
    one, two = bytes_at_depth(1), bytes_at_depth(2)
    deepest = max(0, 1 + (budget - one) // (two - one)) if budget >= one else 0
    raise ValueError(
        f"`memory_budget` = {budget} bytes is too small for one {what}, which needs about "
        f"{need} bytes ({need / 2**30:.3g} GiB); at width {width} depth <= {deepest} fits, "
        f"or raise `memory_budget`")


def items_per_chunk(budget: int, item_bytes: int) -> int:
  """How many items of ``item_bytes`` bytes a chunk of ``budget`` bytes holds (at least 1)."""
  return max(1, budget // item_bytes)


# --- the loop over configurations ------------------------------------------------

def config_store(store: str | None, k: int) -> str | None:
  """The store directory of configuration ``k`` (None without a store)."""
  return None if store is None else os.path.join(store, f"config-{k:04d}")


def run_configs(configs: Sequence[Any], run: Callable[[int, Any, tqdm], dict[str, np.ndarray]],
                *, total: int, desc: str, progress: bool) -> list[dict[str, np.ndarray]]:
  """``[run(k, config, bar) for k, config in enumerate(configs)]`` under one progress bar.

  ``run`` computes configuration ``k`` (usually by :func:`run_chunked` with
  ``progress=bar`` and ``store=config_store(store, k)``); ``total`` is the
  bar's length in networks.
  """
  bar = tqdm(total=total, unit="net", desc=desc, disable=_quiet(progress))
  try:
    return [run(k, config, bar) for k, config in enumerate(configs)]
  finally:
    bar.close()


# --- Dataset assembly -------------------------------------------------------------

def swept(names: Sequence[str], given: Sequence[Any]) -> dict[str, bool]:
  """Which axes were given as lists (they become dimensions)."""
  return {n: _grid.is_list(v) for n, v in zip(names, given)}


def stack(results: Sequence[dict[str, np.ndarray]], name: str,
          lengths: Sequence[int]) -> np.ndarray:
  """The configurations' arrays ``name`` stacked, their leading axes cut into ``lengths``.

  ``results[k][name]`` has shape ``(m, *rest)``; the stack ``(len(results),
  m, *rest)`` is reshaped to ``(*lengths, *rest)``.
  """
  a = np.stack([r[name] for r in results])
  n_lead = int(np.prod(a.shape[:2]))
  if int(np.prod(lengths)) != n_lead:
    raise ValueError(f"`lengths` {tuple(lengths)} must multiply to {n_lead}")
  return a.reshape(*lengths, *a.shape[2:])


def grid_variable(full: np.ndarray, names: Sequence[str], swept: dict[str, bool],
                  trailing: Sequence[str], description: str) -> xr.Variable:
  """A variable from ``full``, whose leading axes are the grid axes ``names`` in full.

  Axes not swept (a single value) are dropped (they are scalar coordinates);
  the dims are the swept ``names`` then ``trailing``.
  """
  keep = tuple(slice(None) if swept[n] else 0 for n in names)
  return xr.Variable([n for n in names if swept[n]] + list(trailing), full[keep],
                     {"description": description})


def grid_coords(axes: dict[str, list], swept: dict[str, bool]) -> dict[str, Any]:
  """Coordinates of the grid axes: a list where swept, else its one value.

  ``sigma_w2`` of schemes that fix the variance (``[None]``) has no coordinate.
  """
  coords = {}
  for n, values in axes.items():
    if n == "sigma_w2" and values == [None]:
      continue
    coords[n] = values if swept[n] else values[0]
  return coords


def provenance(grid: _grid.NetworkGrid, dtype: Any, *,
               seed_key: str = "network i uses jax.random.fold_in(key, i)") -> dict[str, Any]:
  """The attributes every experiment's Dataset carries: dtype, key, seed rule, activations."""
  return {"dtype": np.dtype(dtype).name, "key": " ".join(map(str, grid.key_data)),
          "seed_key": seed_key, "activation_keys": grid.schemes.keys_attr()}


def base_spec(grid: _grid.NetworkGrid, dtype: Any) -> dict[str, Any]:
  """The part of a store's spec every experiment shares (key, grid, dtype)."""
  return {"key": grid.key_data, "activation": grid.schemes.activation_keys,
          "init": grid.schemes.init_keys, "width": grid.widths, "depth": grid.depths,
          "sigma_w2": grid.sigma_w2, "sigma_b2": grid.sigma_b2, "n_seeds": grid.n_seeds,
          "dtype": np.dtype(dtype).name}
