import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from spct_jax import mesh as mesh_lib


def test_resolve_shape_fills_minus_one():
  assert mesh_lib.resolve_shape((-1, 4, 2), 8) == (1, 4, 2)
  assert mesh_lib.resolve_shape((2, -1, 1), 8) == (2, 4, 1)
  with pytest.raises(ValueError, match="does not fit 8 devices"):
    mesh_lib.resolve_shape((3, -1, 1), 8)
  with pytest.raises(ValueError, match="at most one -1"):
    mesh_lib.resolve_shape((-1, -1, 1), 8)
  with pytest.raises(ValueError, match="uses 4 devices, but 8"):
    mesh_lib.resolve_shape((2, 2, 1), 8)


def test_logical_to_spec_rules_and_divisibility():
  mesh = mesh_lib.make_mesh((1, 4, 2))
  assert dict(mesh.shape) == {"data": 1, "fsdp": 4, "tensor": 2}
  assert mesh_lib.logical_to_spec(("embed", "mlp"), (8, 6), mesh) == P("fsdp", "tensor")
  # 3 kv heads are not divisible by tensor=2: replicated on that dim.
  assert mesh_lib.logical_to_spec(("embed", "kv_heads", "head_dim"), (8, 3, 4), mesh) == P("fsdp", None, None)
  # batch goes over data and fsdp; data has size 1, so only fsdp remains.
  assert mesh_lib.logical_to_spec(("batch", "length"), (8, 5), mesh) == P("fsdp", None)
  with pytest.raises(KeyError, match="'nope' has no sharding rule"):
    mesh_lib.logical_to_spec(("nope",), (4,), mesh)


def test_shardings_for_places_a_tree():
  mesh = mesh_lib.make_mesh((2, 2, 2))
  tree = {"w": jnp.ones((4, 6)), "b": jnp.ones((6,))}
  names = {"w": ("embed", "mlp"), "b": ("mlp",)}
  sh = mesh_lib.shardings_for(names, tree, mesh)
  placed = jax.device_put(tree, sh)
  assert placed["w"].sharding.spec == P("fsdp", "tensor")
  np.testing.assert_array_equal(np.asarray(placed["w"]), np.ones((4, 6)))


def test_batch_must_divide_data_axes():
  mesh = mesh_lib.make_mesh((2, 2, 2))
  with pytest.raises(ValueError, match=r"batch_size=6 is not divisible by the mesh's data axes"):
    mesh_lib.check_batch(6, mesh)
  batch = mesh_lib.shard_batch({"tokens": np.arange(32).reshape(8, 4)}, mesh)
  assert batch["tokens"].sharding.spec == P(("data", "fsdp"))
  with pytest.raises(ValueError, match="batch_size=6"):
    mesh_lib.shard_batch({"tokens": np.zeros((6, 4))}, mesh)


def test_distributed_init_needs_all_three_settings(monkeypatch):
  for name in mesh_lib.DISTRIBUTED_ENV + ("TPU_WORKER_HOSTNAMES", "SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE"):
    monkeypatch.delenv(name, raising=False)
  mesh_lib.maybe_initialize_distributed()  # one host: nothing to do
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:1234")
  with pytest.raises(ValueError, match="a several-process run needs JAX_NUM_PROCESSES, JAX_PROCESS_ID"):
    mesh_lib.maybe_initialize_distributed()
  monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
  with pytest.raises(ValueError, match="JAX_NUM_PROCESSES='two': expected an integer"):
    mesh_lib.maybe_initialize_distributed()


def test_put_fills_each_shard_from_a_lazy_stack_reading_only_that_shard():
  """mesh.put reads a host value by each device's index: a LazyStack of layers reads only the
  layers and the slice of a shard (never the whole), and dtype casts as it reads."""
  reads = []

  class Recorded:  # a host array that records what is read from it
    def __init__(self, a):
      self.a, self.shape, self.dtype = a, a.shape, a.dtype

    def __getitem__(self, index):
      out = self.a[index]
      reads.append(out.size)
      return out

  layers = [np.arange(16 * 3, dtype=np.int32).reshape(16, 3) + 100 * i for i in range(4)]
  stack = mesh_lib.LazyStack([Recorded(a) for a in layers])
  mesh = mesh_lib.make_mesh((1, 8, 1))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "fsdp"))
  out = mesh_lib.put({"w": stack}, {"w": sharding}, dtype=np.float32)["w"]
  assert out.sharding == sharding and out.dtype == np.float32
  np.testing.assert_array_equal(np.asarray(out), np.stack(layers).astype(np.float32))
  assert reads and set(reads) == {16 * 3 // 8}  # each read is one layer's slice of one shard
  assert len(reads) == 8 * 4
