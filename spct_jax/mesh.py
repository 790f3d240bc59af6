"""The device mesh and the one table that maps logical axis names to mesh axes.

Every parameter of the model carries logical axis names (`vocab`, `embed`, `heads`, `kv_heads`,
`head_dim`, `mlp`, `layers`); activations and batches use `batch` and `length`. `RULES` maps
each name to mesh axes (`data`, `fsdp`, `tensor`). Changing the parallelism is changing the mesh
shape in a config (`cfg.mesh.shape`), never the model code.

A dimension that a rule would split but that the mesh axes do not divide (e.g. 8 kv heads on a
tensor axis of 16) is replicated on those axes instead, and `shardings_for` reports it once, so a
preset runs on any mesh. Batches are the exception: a global batch that the data axes do not
divide is a config error (`check_batch`).
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Mapping, Sequence

from absl import logging
import flax.linen as nn
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")  # the batch is split over both data-parallel axes

# logical name -> mesh axes (a tuple; empty = replicated)
RULES: Mapping[str, tuple[str, ...]] = {
    "batch": BATCH_AXES,
    "length": (),
    "vocab": ("tensor",),
    "embed": ("fsdp",),
    "heads": ("tensor",),
    "kv_heads": ("tensor",),
    "head_dim": (),
    "mlp": ("tensor",),
    "layers": (),
}


def flax_rules(rules: Mapping[str, tuple[str, ...]] = RULES) -> tuple:
  """`RULES` in the form `flax.linen.logical_axis_rules` takes."""
  return tuple((name, axes[0] if len(axes) == 1 else (axes or None)) for name, axes in rules.items())


@contextlib.contextmanager
def activation_sharding(mesh: Mesh, rules: Mapping[str, tuple[str, ...]] = RULES):
  """Makes the model's activation annotations (`nn.with_logical_constraint`) take effect.

  Trace (first call of) a jitted step inside this context; outside it the annotations are
  no-ops, so single-device code needs nothing.
  """
  with jax.set_mesh(mesh), nn.logical_axis_rules(flax_rules(rules)):
    yield


def resolve_shape(shape: Sequence[int], n_devices: int) -> tuple[int, ...]:
  """Fills one `-1` in a (data, fsdp, tensor) shape so that the product is `n_devices`."""
  shape = tuple(int(s) for s in shape)
  if len(shape) != len(AXES):
    raise ValueError(f"mesh.shape={shape}: expected {len(AXES)} sizes for axes {AXES}")
  if shape.count(-1) > 1:
    raise ValueError(f"mesh.shape={shape}: at most one -1 may be filled")
  known = math.prod(s for s in shape if s != -1)
  if any(s == 0 or s < -1 for s in shape) or n_devices % known:
    raise ValueError(f"mesh.shape={shape} does not fit {n_devices} devices")
  shape = tuple(n_devices // known if s == -1 else s for s in shape)
  if math.prod(shape) != n_devices:
    raise ValueError(f"mesh.shape={shape} uses {math.prod(shape)} devices, but {n_devices} are present")
  return shape


def make_mesh(shape: Sequence[int] = (-1, 1, 1), devices: Sequence[Any] | None = None) -> Mesh:
  """A mesh over `devices` (default: all) with axes ("data", "fsdp", "tensor")."""
  devices = list(jax.devices() if devices is None else devices)
  shape = resolve_shape(shape, len(devices))
  return jax.make_mesh(shape, AXES, axis_types=(AxisType.Auto,) * len(AXES), devices=devices)


def logical_to_spec(names: Sequence[str | None], shape: Sequence[int] | None = None,
                    mesh: Mesh | None = None, rules: Mapping[str, tuple[str, ...]] = RULES) -> P:
  """PartitionSpec for one array with logical axis `names` (None = replicated dim).

  With `shape` and `mesh` given, a dim whose size the mesh axes do not divide is replicated.
  A mesh axis is used at most once per array (the first dim that claims it keeps it).
  """
  used: set[str] = set()
  spec = []
  for i, name in enumerate(names):
    if name is None:
      spec.append(None)
      continue
    if name not in rules:
      raise KeyError(f"logical axis {name!r} has no sharding rule; known: {sorted(rules)}")
    axes = tuple(a for a in rules[name] if a not in used)
    if mesh is not None:
      axes = tuple(a for a in axes if mesh.shape[a] > 1)
      if shape is not None and axes and shape[i] % math.prod(mesh.shape[a] for a in axes):
        axes = ()
    used.update(axes)
    spec.append(axes[0] if len(axes) == 1 else (axes or None))
  return P(*spec)


def shardings_for(logical_tree: Any, abstract_tree: Any, mesh: Mesh,
                  rules: Mapping[str, tuple[str, ...]] = RULES) -> Any:
  """NamedShardings for a pytree, from a same-structure tree of logical-name tuples.

  logical_tree: pytree whose leaves are tuples of logical names (or PartitionSpecs of names).
  abstract_tree: the arrays or `jax.ShapeDtypeStruct`s (for their shapes).
  """
  replicated = []

  def one(names, x):
    names = tuple(names)
    spec = logical_to_spec(names, x.shape, mesh, rules)
    wanted = logical_to_spec(names, None, mesh, rules)
    if spec != wanted:
      replicated.append(f"{names}{tuple(x.shape)}")
    return NamedSharding(mesh, spec)

  out = jax.tree.map(one, logical_tree, abstract_tree, is_leaf=_is_names)
  if replicated:
    logging.info("mesh %s does not divide %d arrays; replicated on those axes: %s",
                 dict(mesh.shape), len(replicated), ", ".join(sorted(set(replicated))[:8]))
  return out


def _is_names(x) -> bool:
  return (type(x) is tuple or isinstance(x, P)) and all(isinstance(n, (str, type(None))) for n in x)


def data_size(mesh: Mesh) -> int:
  """Number of ways the batch is split."""
  return math.prod(mesh.shape[a] for a in BATCH_AXES)


def check_batch(batch_size: int, mesh: Mesh, key: str = "batch_size") -> None:
  """Raises a config error when the global batch does not split over the data axes."""
  n = data_size(mesh)
  if batch_size % n:
    raise ValueError(f"config {key}={batch_size} is not divisible by the mesh's data axes "
                     f"{BATCH_AXES} of total size {n} (mesh {dict(mesh.shape)})")


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Rows (axis 0) over the data axes, other dims replicated; valid for any rank >= 1."""
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def put(tree: Any, shardings: Any, dtype: Any = None) -> Any:
  """Places host values (the same full value on every process) with `shardings` (one sharding,
  or a same-structure pytree). Each device's shard is read from the host value by its index
  (`jax.make_array_from_callback`), so a lazy host value (a view of a memory-mapped file, a
  `LazyStack`) is read only where a device of this process needs it, and on several processes
  each fills only its own devices; `dtype` casts host values (not device arrays) shard by
  shard as they are read.
  Arrays already on devices are resharded (a jitted identity across hosts)."""
  if isinstance(shardings, jax.sharding.Sharding):
    shardings = jax.tree.map(lambda _: shardings, tree)

  def one(x, sharding):
    if isinstance(x, jax.Array):
      if jax.process_count() == 1:
        return jax.device_put(x, sharding)
      if not x.is_fully_addressable:  # already global: reshard if needed
        return x if x.sharding == sharding else jax.jit(lambda a: a, out_shardings=sharding)(x)
      if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(one(jax.random.key_data(x), sharding), impl=jax.random.key_impl(x))
    on_device = isinstance(x, jax.Array)  # dtype casts host values only
    if not hasattr(x, "shape") or on_device:
      x = np.asarray(x)
    want = np.dtype(dtype) if dtype is not None and not on_device else x.dtype
    return jax.make_array_from_callback(x.shape, sharding, lambda index: np.asarray(x[index], dtype=want))
  return jax.tree.map(one, tree, shardings)


class LazyStack:
  """Host arrays (or views of memory-mapped files) stacked on a new leading axis without reading
  them: `x[index]` reads only the layers and the slice `index` asks for, which is how `put`
  fills each shard (transformer.stack_layers(..., stack=LazyStack) builds the scanned layout)."""

  def __init__(self, parts):
    self.parts = list(parts)
    self.shape = (len(self.parts), *self.parts[0].shape)
    self.dtype = np.dtype(self.parts[0].dtype)
    self.ndim = len(self.shape)

  def __getitem__(self, index):
    index = index if isinstance(index, tuple) else (index,)
    first, rest = (index[0], index[1:]) if index else (slice(None), ())
    if not isinstance(first, slice):
      return np.asarray(self.parts[first][rest])
    return np.stack([np.asarray(p[rest]) for p in self.parts[first]])

  def __array__(self, dtype=None, copy=None):
    del copy
    return np.stack([np.asarray(p, dtype=dtype) for p in self.parts])


def fetch(tree: Any) -> Any:
  """The global value of every array leaf as host numpy, on every process (`jax.device_get` on
  one process; an all-gather of the shards on several)."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  from jax.experimental import multihost_utils
  return jax.tree.map(lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True))
                      if isinstance(x, jax.Array) else x, tree)


def shard_batch(batch: Any, mesh: Mesh) -> Any:
  """Places a pytree of host numpy arrays [B, ...] (the global batch, the same on every process)
  on the mesh, rows over the data axes; each process fills its own devices' rows."""
  def one(x):
    x = np.asarray(x)
    check_batch(x.shape[0], mesh)
    return put(x, batch_sharding(mesh))
  return jax.tree.map(one, batch)


# What `maybe_initialize_distributed` reads when no argument is given (besides the cluster
# variables jax discovers itself: Cloud TPU pods, SLURM, ...).
DISTRIBUTED_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
_CLUSTERS = ("TPU_WORKER_HOSTNAMES", "SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE")


def maybe_initialize_distributed(coordinator: str | None = None, num_processes: int | None = None,
                                 process_id: int | None = None) -> None:
  """`jax.distributed.initialize` for multi-host runs; a no-op on one host.

  The arguments default to the environment variables JAX_COORDINATOR_ADDRESS (host:port of
  process 0), JAX_NUM_PROCESSES and JAX_PROCESS_ID; on Cloud TPU pods and SLURM/MPI clusters jax
  discovers all three itself. A coordinator without the other two (and no cluster to ask) is an
  error naming what is missing. Must be called before any other JAX call.
  """
  import os
  env = os.environ

  def from_env(name):
    value = env.get(name, "").strip()
    if not value:
      return None
    try:
      return int(value)
    except ValueError:
      raise ValueError(f"environment variable {name}={value!r}: expected an integer") from None

  coordinator = coordinator or env.get("JAX_COORDINATOR_ADDRESS", "").strip() or None
  num_processes = num_processes if num_processes is not None else from_env("JAX_NUM_PROCESSES")
  process_id = process_id if process_id is not None else from_env("JAX_PROCESS_ID")
  cluster = any(k in env for k in _CLUSTERS)
  if coordinator is None and num_processes in (None, 1) and not cluster:
    return
  if not cluster:
    missing = [name for name, v in zip(DISTRIBUTED_ENV, (coordinator, num_processes, process_id)) if v is None]
    if missing:
      raise ValueError(f"a several-process run needs {', '.join(missing)} (environment variables, or the "
                       "--coordinator_address / --num_processes / --process_id flags)")
  jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                             process_id=process_id)


def define_distributed_flags():
  """absl flags --coordinator_address, --num_processes, --process_id for a CLI; returns a function
  that calls `maybe_initialize_distributed` with them (unset flags fall back to the environment)."""
  from absl import flags
  addr = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (or JAX_COORDINATOR_ADDRESS)")
  count = flags.DEFINE_integer("num_processes", None, "number of processes (or JAX_NUM_PROCESSES)")
  index = flags.DEFINE_integer("process_id", None, "this process's index (or JAX_PROCESS_ID)")
  return lambda: maybe_initialize_distributed(addr.value, count.value, index.value)
