"""Scale on paper: per-device memory of a stage's train step on a mesh, without allocating it.

    python -m spct_jax.plan --config=configs/warmup.py --config.model.preset=gemma2_27b \
        --config.model.dtype=bfloat16 --mesh=1,16,4 --config.train.batch_size=64 --seq_len=2048

Builds abstract params, optimizer state and batch (`jax.ShapeDtypeStruct`s with shardings from
the logical-axis rules) and prints per-device bytes of params, optimizer state and batch (exact,
from the shardings) and of the step's temporaries (activations, gradients), as XLA's memory
analysis reports them for the compiled, partitioned step. Compiling all layers of a large model
for 64 devices takes long on a CPU, so the temporaries are measured by compiling the same step
with 2 and 4 layers and extrapolating linearly in depth (layers are identical pairs of one local
and one global layer; `--exact_layers` compiles the full depth instead). On a CPU host the mesh
is simulated with as many CPU devices as it needs (set before JAX starts), so a 64-device TPU
plan runs on a laptop.
"""
from __future__ import annotations

import math
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "stage config file (configs/*.py)")
_MESH = flags.DEFINE_string("mesh", "1,-1,1", "mesh shape data,fsdp,tensor (-1 fills)")
_DEVICES = flags.DEFINE_integer("devices", 0, "number of devices to plan for (0: product of --mesh, "
                                "or the local device count when --mesh has -1)")
_SEQ = flags.DEFINE_integer("seq_len", 0, "tokens per sequence (0: config.data.max_len)")
_EXACT = flags.DEFINE_bool("exact_layers", False, "compile every layer instead of extrapolating from 2 and 4")


def _spec_shards(sharding) -> int:
  spec, mesh = sharding.spec, sharding.mesh
  n = 1
  for axes in spec:
    for a in (axes if isinstance(axes, tuple) else (axes,)):
      if a is not None:
        n *= mesh.shape[a]
  return n


def per_device_bytes(abstract_tree) -> int:
  """Bytes one device holds of a tree of sharded ShapeDtypeStructs (even shards)."""
  import jax
  return sum(math.prod(x.shape) * x.dtype.itemsize // _spec_shards(x.sharding)
             for x in jax.tree.leaves(abstract_tree))


def plan(cfg, mesh_shape, seq_len: int, exact_layers: bool = False) -> dict:
  """Per-device bytes by kind of the SFT step on `mesh_shape` (see the module docstring)."""
  from spct_jax.model import config as model_config
  mcfg = model_config.get_config(cfg.model.preset, dtype=cfg.model.dtype, param_dtype="float32",
                                 remat=cfg.model.remat)
  if exact_layers or mcfg.n_layers <= 4:
    out = _compiled(cfg, mcfg, mesh_shape, seq_len)
    out["temp_method"] = "compiled"
  else:
    out = _compiled(cfg, mcfg, mesh_shape, seq_len, compile_step=False)
    t2 = _compiled(cfg, model_config.replace(mcfg, n_layers=2), mesh_shape, seq_len)["temp_bytes"]
    t4 = _compiled(cfg, model_config.replace(mcfg, n_layers=4), mesh_shape, seq_len)["temp_bytes"]
    out["temp_bytes"] = int(t2 + (t4 - t2) * (mcfg.n_layers - 2) / 2)
    out["temp_method"] = (f"extrapolated from 2 layers ({t2 / 2**30:.2f} GiB) and 4 layers "
                          f"({t4 / 2**30:.2f} GiB)")
  out["total_bytes"] = out["params_bytes"] + out["opt_state_bytes"] + out["batch_bytes"] + max(out["temp_bytes"], 0)
  return out


def _compiled(cfg, mcfg, mesh_shape, seq_len: int, compile_step: bool = True) -> dict:
  import jax
  import jax.numpy as jnp
  from spct_jax.model import transformer
  from spct_jax import mesh as mesh_lib
  from spct_jax.train import sft
  from spct_jax.train import stage
  from spct_jax.train import state as state_lib
  from spct_jax.train import step as step_lib

  mesh = mesh_lib.make_mesh(mesh_shape)
  batch_size = cfg.train.batch_size
  mesh_lib.check_batch(batch_size, mesh, "train.batch_size")
  tx, _ = stage.optimizer(cfg)
  params = transformer.abstract_params(mcfg)
  abstract_state = jax.eval_shape(lambda p: state_lib.create(p, tx, jax.random.key(0)), params)
  names = state_lib.logical_axes(tx, transformer.logical_axes(mcfg), params)
  state_sh = mesh_lib.shardings_for(names, abstract_state, mesh)
  state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract_state, state_sh)
  bsh = mesh_lib.batch_sharding(mesh)
  batch = {k: jax.ShapeDtypeStruct((batch_size, seq_len), dt, sharding=bsh)
           for k, dt in (("tokens", jnp.int32), ("pad_mask", jnp.bool_), ("loss_mask", jnp.bool_))}
  step = step_lib.make_step(sft.loss_fn(transformer.Transformer(mcfg)), tx,
                            micro_batches=cfg.train.micro_batches,
                            state_shardings=state_sh, batch_shardings={k: bsh for k in batch})
  with mesh_lib.activation_sharding(mesh):
    mem = step.lower(state, batch).compile().memory_analysis() if compile_step else None
  out = {
      "preset": cfg.model.preset, "params": transformer.param_count(mcfg),
      "mesh": dict(mesh.shape), "batch_size": batch_size, "seq_len": seq_len,
      "micro_batches": cfg.train.micro_batches,
      "params_bytes": per_device_bytes(state.params),
      "opt_state_bytes": per_device_bytes(state.opt_state),
      "batch_bytes": per_device_bytes(batch),
      "temp_bytes": int(mem.temp_size_in_bytes) if mem is not None else -1,
  }
  return out


def _gib(b: int) -> str:
  return f"{b / 2**30:8.2f} GiB"


def main(argv):
  del argv
  cfg = _CONFIG.value
  r = plan(cfg, tuple(int(s) for s in _MESH.value.split(",")), _SEQ.value or cfg.data.max_len, _EXACT.value)
  print(f"plan: {r['preset']} ({r['params'] / 1e9:.2f}B params), mesh {r['mesh']}, "
        f"global batch {r['batch_size']} x {r['seq_len']} tokens, {r['micro_batches']} micro-batches")
  for k in ("params_bytes", "opt_state_bytes", "batch_bytes", "temp_bytes", "total_bytes"):
    print(f"  per device {k[:-6]:<10s}{_gib(r[k])}")
  print(f"  (temporaries: {r['temp_method']}; params and optimizer state exact from the shardings)")


def _set_device_count(argv) -> None:
  """Before JAX starts: enough simulated CPU devices for the requested mesh."""
  mesh = next((a.split("=", 1)[1] for a in argv if a.startswith("--mesh=")), _MESH.default)
  devices = next((int(a.split("=", 1)[1]) for a in argv if a.startswith("--devices=")), 0)
  shape = [int(s) for s in mesh.split(",")]
  n = devices or (math.prod(shape) if -1 not in shape else 0)
  import jax
  if n and jax.config.jax_platforms in (None, "", "cpu"):
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", n)


if __name__ == "__main__":
  from spct_jax import configs
  sys.argv = configs.resolve_argv(sys.argv)
  _set_device_count(sys.argv)
  app.run(main)
