"""Spreading the networks of a sweep over devices and hosts, with ``jax.sharding``.

A sweep's work is a list of items (networks, or a seed with a block of
settings), each computed from its own index only (its key is
``fold_in(key, i)``). :func:`empirical.engine.run_chunked` cuts the list into
chunks; with more than one device, each chunk is cut again into equal shards
along a one-dimensional :class:`jax.sharding.Mesh` whose only axis,
:data:`AXIS`, runs over the items, and :func:`jax.shard_map` runs the same
per-item program on every shard at once. Arguments shared by all items (the
base key, the inputs, the layer scales) are replicated. Per-item results are
small (per-layer statistics), so they are gathered onto every device and read
back on the host.

Every device runs exactly the program a single device runs on its part of
the chunk (the same shapes, the same vmapped groups), so results are
bitwise identical to a one-device run.

Devices are chosen with the ``devices`` option of :func:`empirical.sweep`
(and :func:`empirical.engine.run_chunked`):

- ``None``: every device JAX sees, ``jax.devices()`` (GPUs, TPUs); on the
  CPU the first one only, since one program already uses every core (ask for
  emulated CPU devices by number, e.g. ``devices=4``);
- an integer ``n``: the first ``n`` of them (``1``: no sharding);
- a sequence of ``jax.Device``.

Several GPUs on one machine need nothing more: ``empirical.sweep(key, ...)``
uses them all. On the CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count=4``
(set before JAX is imported) splits the host into 4 devices, used with
``devices=4``; this helps only where one program does not already use every
core.

Several hosts (multi-controller JAX): start the same script on every host,
and have each process call :func:`jax.distributed.initialize` first (with
``coordinator_address``, ``num_processes`` and ``process_id``, or with no
arguments on clusters JAX detects itself: Slurm, Open MPI, TPU pods). Every
process must make the same call with the same arguments and a ``store``
that all of them see (a network file system). By default (this process's
devices, :func:`splits_processes`) each process computes its own chunks on
its own devices and the processes share them through the store
(:func:`empirical.engine.run_chunked`); every process gets the whole
result. A ``devices`` sequence that spans processes (``jax.devices()``)
runs instead one program per chunk sharded over all of them, in step
(:func:`place` builds its arrays from each process's copy).
"""

from __future__ import annotations

import concurrent.futures
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["AXIS", "resolve", "splits_processes", "item_mesh", "shard_items", "place", "fetch",
           "check_local", "split_over"]

#: Name of the mesh axis that runs over a sweep's items.
AXIS = "net"

Devices = int | Sequence[jax.Device] | None


def resolve(devices: Devices) -> tuple[jax.Device, ...]:
  """The devices meant by a ``devices`` option (see the module docstring).

  ``None`` is every device, except on the CPU, where it is the first one.

  Raises:
    ValueError: for an integer outside ``1..len(jax.devices())``, an empty
      sequence, repeated devices or anything that is not a ``jax.Device``.
  """
  available = jax.local_devices()
  if devices is None:
    # CPU "devices" are emulated slices of one host (XLA_FLAGS=
    # --xla_force_host_platform_device_count); one program already uses
    # every core, so the default takes one there. Ask for more by number.
    return tuple(available[:1]) if available[0].platform == "cpu" else tuple(available)
  if isinstance(devices, int | np.integer) and not isinstance(devices, bool):
    if not 1 <= devices <= len(available):
      raise ValueError(
          f"`devices` must be None, a sequence of jax.Device or an integer in "
          f"1..{len(available)} (this process's devices), got {devices}")
    return tuple(available[:int(devices)])
  if isinstance(devices, jax.Device):
    devices = [devices]
  if not isinstance(devices, Sequence) or isinstance(devices, str):
    raise ValueError(
        f"`devices` must be None, an integer or a sequence of jax.Device, got {devices!r}")
  devices = tuple(devices)
  if not devices or not all(isinstance(d, jax.Device) for d in devices):
    raise ValueError(f"`devices` must be a non-empty sequence of jax.Device, got {devices!r}")
  if len(set(devices)) != len(devices):
    raise ValueError(f"`devices` must not repeat a device, got {devices!r}")
  return devices


def splits_processes(devices: tuple[jax.Device, ...]) -> bool:
  """Whether the processes of a ``jax.distributed`` run split the chunks among them.

  True with several processes when ``devices`` are all this process's own
  (each process then computes its own chunks, see
  :func:`empirical.engine.run_chunked`); False with one process, or when
  ``devices`` span processes (one sharded program over all of them).
  """
  return jax.process_count() > 1 and all(
      d.process_index == jax.process_index() for d in devices)


@functools.lru_cache(maxsize=16)
def item_mesh(devices: tuple[jax.Device, ...]) -> Mesh:
  """A one-dimensional mesh over ``devices`` with axis :data:`AXIS`."""
  return Mesh(np.array(devices, dtype=object), (AXIS,))


@functools.lru_cache(maxsize=64)
def shard_items(compute: Callable[..., Any], devices: tuple[jax.Device, ...]
                ) -> Callable[[tuple, jax.Array], Any]:
  """``compute(*shared, indices)`` run on shards of ``indices`` over ``devices``.

  Returns a jitted ``sharded(shared, indices)``: ``shared`` (a tuple of
  arrays) is replicated on every device, ``indices`` ``(n,)`` (``n`` a
  multiple of ``len(devices)``) is split into ``len(devices)`` equal
  contiguous shards, and each device computes ``compute(*shared, shard)``.
  The results (arrays with leading axis ``len(shard)``) are gathered along
  that axis, in device order, so the output is what ``compute(*shared,
  indices)`` returns on one device, replicated on every device (read it
  with :func:`fetch`). ``compute`` must be traceable (``jax.jit``-able) and
  is usually jitted itself. Cached per ``(compute, devices)``: a stable
  ``compute`` compiles once.
  """
  mesh = item_mesh(devices)

  def local(shared, indices):
    out = compute(*shared, indices)
    return jax.tree.map(lambda a: jax.lax.all_gather(a, AXIS, axis=0, tiled=True), out)

  # all_gather's result is the same on every device; check_vma=False lets
  # out_specs say so (shard_map cannot infer it for all_gather).
  return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(PartitionSpec(), PartitionSpec(AXIS)),
                               out_specs=PartitionSpec(), check_vma=False))


def place(shared: tuple, indices: np.ndarray, devices: tuple[jax.Device, ...]
          ) -> tuple[tuple, jax.Array]:
  """``shared`` replicated and ``indices`` split along :data:`AXIS` over ``devices``.

  Works across hosts: every process passes the same values (arrays not
  committed to a device: NumPy arrays or ordinary ``jax.numpy`` results;
  PRNG keys travel as their key data), and each builds its own shards
  (:func:`jax.make_array_from_callback`; ``jax.device_put`` refuses a
  sharding over other processes' devices).
  """
  mesh = item_mesh(devices)
  replicated = NamedSharding(mesh, PartitionSpec())
  split = NamedSharding(mesh, PartitionSpec(AXIS))
  if all(d.process_index == jax.process_index() for d in devices):
    return jax.device_put(shared, replicated), jax.device_put(np.asarray(indices), split)
  return jax.tree.map(lambda a: _put(a, replicated), shared), _put(indices, split)


def _put(a: Any, sharding: NamedSharding) -> jax.Array:
  """``a`` as a global array laid out by ``sharding``, from this process's copy of ``a``."""
  if jax.dtypes.issubdtype(getattr(a, "dtype", None), jax.dtypes.prng_key):
    data = _put(jax.random.key_data(a), sharding)
    return jax.random.wrap_key_data(data, impl=jax.random.key_impl(a))
  a = np.asarray(a, dtype=jnp.asarray(a).dtype)   # a Python number keeps JAX's dtype
  return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])


def fetch(tree: Any) -> Any:
  """NumPy copies of the arrays of ``tree``, each replicated on (at least) this process's devices."""
  return jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), tree)


def check_local(devices: tuple[jax.Device, ...]) -> tuple[jax.Device, ...]:
  """``devices`` if all belong to this process, else ``ValueError``."""
  local = jax.local_devices()
  if any(d not in local for d in devices):
    raise ValueError(
        f"`devices` must be this process's own devices (jax.local_devices(): {local}) for "
        f"a computation split by threads, got {list(devices)}")
  return devices


def split_over(compute: Callable[[np.ndarray], dict[str, np.ndarray]],
               devices: tuple[jax.Device, ...]) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
  """``compute(indices)`` run on equal parts of ``indices``, one per device, at once.

  For a ``compute`` that is not traceable as a whole (a training loop of
  several jitted programs with reads back to the host between them, as in
  :func:`empirical.train`): ``indices`` ``(n,)``, ``n`` a multiple of
  ``len(devices)``, is cut into ``len(devices)`` contiguous parts, and each
  part is computed in its own thread under ``jax.default_device`` of its
  device (JAX releases the interpreter lock while a program runs, so the
  devices work in parallel; the caller's ``jax.enable_x64`` and
  ``jax.default_matmul_precision`` settings, which are per thread, are
  carried into them). ``compute`` must return
  ``{name: np.ndarray}`` with leading axis ``len(part)``; the parts are
  concatenated in order.
  Each part is exactly a one-device call on ``n / len(devices)`` indices, so
  results are bitwise those of a one-device run whose chunks are that size.
  Local devices only (``jax.local_devices()``): across hosts use
  :func:`shard_items`, which needs a traceable ``compute``.
  """
  check_local(devices)
  if len(devices) == 1:
    return compute

  def split(indices):
    indices = np.asarray(indices)
    if indices.shape[0] % len(devices):
      raise ValueError(f"`indices` must split evenly over {len(devices)} devices, "
                       f"got {indices.shape[0]}")
    # JAX's context settings are per thread: carry the caller's 64-bit mode and
    # matrix-product precision.
    x64 = bool(jax.config.jax_enable_x64)
    precision = jax.config.jax_default_matmul_precision

    def one(device, part):
      with jax.enable_x64(x64), jax.default_matmul_precision(precision), \
          jax.default_device(device):
        return compute(part)

    parts = np.split(indices, len(devices))
    with concurrent.futures.ThreadPoolExecutor(len(devices)) as pool:
      outs = list(pool.map(one, devices, parts))
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

  return split
