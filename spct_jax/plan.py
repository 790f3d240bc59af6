"""Scale on paper: per-chip memory of every program a stage runs, on a mesh, before you rent it.

    python -m spct_jax.plan --config=configs/grpo_gemma2_27b.py --topology=v5p:4x4x4
    python -m spct_jax.plan --config=configs/warmup.py --config.model.preset=gemma2_27b \
        --config.model.dtype=bfloat16 --mesh=1,16,4 --config.train.batch_size=64 --seq_len=2048

Compiles, ahead of time and without allocating anything, the programs of the config's stage:
the train step (the stage's loss: SFT, or GRPO's clipped surrogate + KL), and for GRPO also the
reference pass (the frozen policy in the compute dtype, log-probs of the completion slots) and
the sampler (G rollouts per prompt with their KV cache), each with the shardings the run uses.
For each it prints per-chip bytes of its arguments, outputs and temporaries as the compiler's
memory analysis reports them, and the peak on a chip while it runs: the program's own memory
plus what stays resident beside it (the train state, the reference), against the chip's HBM.

--topology=v5p:4x4x4 (v4:..., v5e:..., v6e:...) compiles with the real TPU compiler on any host
(the `tpu` extra brings libtpu; no TPU is needed) for that topology's chips. Without it the
programs are compiled by XLA:CPU for as many simulated CPU devices as the mesh needs: a labelled
fallback that overestimates temporaries severalfold (no TPU fusion or memory scheduling).

Depth: with scanned layers (`model.scan_layers`, the large configs' setting) the programs are
compiled at full depth, in a time that does not grow with it. Unrolled layers make the compile
grow with depth, so those programs are compiled with 2 and 4 layers and every quantity is
extrapolated linearly (`--exact_layers` compiles the full depth instead). Params and optimizer
state are exact from the shardings either way.
"""
from __future__ import annotations

import math
import re
import sys
import time

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "stage config file (configs/*.py)")
_MESH = flags.DEFINE_string("mesh", "", "mesh shape data,fsdp,tensor (-1 fills; default: the config's mesh.shape)")
_DEVICES = flags.DEFINE_integer("devices", 0, "number of simulated CPU devices without --topology (0: product "
                                "of --mesh, or the local device count when --mesh has -1)")
_SEQ = flags.DEFINE_integer("seq_len", 0, "tokens per sequence (0: config.data.max_len)")
_EXACT = flags.DEFINE_bool("exact_layers", False, "compile every layer instead of extrapolating from 2 and 4")
_TOPOLOGY = flags.DEFINE_string("topology", "", "TPU topology for the TPU compiler, e.g. v5p:4x4x4, v5e:16x16 "
                                "(needs the tpu extra); empty: XLA:CPU estimate")

# HBM per chip by the device kind the TPU compiler reports (public chip specifications).
HBM_GIB = {"TPU v4": 32, "TPU v5 lite": 16, "TPU v5": 95, "TPU v5p": 95, "TPU v6 lite": 32, "TPU v6e": 32}
FREE_TARGET = 0.2  # a plan "fits" with at least this share of HBM left for the runtime and fragmentation
_FIELDS = ("args", "out", "temp")


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


def topology_devices(name: str) -> list:
  """The chips of a TPU topology (e.g. "v5p:4x4x4"), for ahead-of-time compilation on any host."""
  try:
    from jax.experimental import topologies
    return list(topologies.get_topology_desc(platform="tpu", topology_name=name).devices)
  except Exception as e:  # noqa: BLE001  (no libtpu, or a name libtpu does not know)
    raise ValueError(f"--topology={name!r}: the TPU compiler could not describe it ({type(e).__name__}: "
                     f"{str(e).splitlines()[0] if str(e) else ''}); install the tpu extra "
                     "(pip install '.[tpu]') and use a name like v5p:4x4x4, v5e:16x16, v4:2x2x2, v6e:8x8") from e


def plan(cfg, mesh_shape, seq_len: int, *, exact_layers: bool = False, topology: str = "") -> dict:
  """Per-chip bytes of every program of cfg.stage on `mesh_shape` (see the module docstring).

  Returns {"preset", "params", "mesh", "compiler", "hbm_bytes" (None on CPU), "depth",
  "resident": {name: bytes}, "programs": {name: {args, out, temp, peak}}, "compile_seconds", ...}:
  per-chip bytes; a program's args/out/temp are its own (`_stats`), its peak adds what is resident.
  """
  from spct_jax.model import config as model_config
  from spct_jax import mesh as mesh_lib
  devices = topology_devices(topology) if topology else None
  mesh = mesh_lib.make_mesh(mesh_shape, devices)
  from spct_jax.train import stage
  mcfg = model_config.get_config(cfg.model.preset, param_dtype="float32", **stage.model_overrides(cfg))
  t0 = time.perf_counter()
  if exact_layers or mcfg.scan_layers or mcfg.n_layers <= 4:
    out = _programs(cfg, mcfg, mesh, seq_len)
    depth = f"compiled at full depth ({mcfg.n_layers} layers)"
  else:
    out = _programs(cfg, model_config.replace(mcfg, n_layers=2), mesh, seq_len)
    four = _programs(cfg, model_config.replace(mcfg, n_layers=4), mesh, seq_len)
    scale = (mcfg.n_layers - 2) / 2
    for name, p in out["programs"].items():
      for f in _FIELDS:
        p[f] = int(p[f] + (four["programs"][name][f] - p[f]) * scale)
    full = _programs(cfg, mcfg, mesh, seq_len, compile_programs=False)
    out["resident"], out["trained_count"] = full["resident"], full["trained_count"]
    depth = f"extrapolated from 2 and 4 layers to {mcfg.n_layers}"
  resident_total = sum(out["resident"].values())
  for p in out["programs"].values():
    p["peak"] = p["args"] + p["out"] + p["temp"] + resident_total
  kind = mesh.devices.flat[0].device_kind
  hbm = HBM_GIB.get(kind) if topology else None
  return {"preset": cfg.model.preset, "params": out["param_count"], "trained": out["trained_count"],
          "lora_rank": mcfg.lora_rank, "mesh": dict(mesh.shape),
          "compiler": f"TPU compiler, {kind} ({topology})" if topology else
          "XLA:CPU (fallback estimate: temporaries severalfold too high; use --topology)",
          "hbm_bytes": None if hbm is None else hbm * 2**30, "depth": depth, "resident": out["resident"],
          "programs": out["programs"], "compile_seconds": time.perf_counter() - t0,
          "stage": cfg.stage, "batch_size": cfg.train.batch_size, "seq_len": seq_len,
          "micro_batches": cfg.train.micro_batches}


def _abstract(tree, shardings):
  import jax
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def _stats(lowered, resident: dict, reads: tuple[str, ...]) -> dict:
  """A program's own per-chip bytes: arguments beyond the resident buffers it reads, outputs not
  aliased to a donated input, temporaries. A TPU compile that runs out of HBM is reported with
  the temporaries the compiler says it needed (arguments and outputs then unknown: 0)."""
  import jax
  try:
    mem = lowered.compile().memory_analysis()
  except jax.errors.JaxRuntimeError as e:
    need = re.search(r"HLO temporaries \(([\d.]+)([KMGT])\)", str(e))
    if "RESOURCE_EXHAUSTED" not in str(e) or need is None:
      raise
    scale = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}[need.group(2)]
    return {"args": 0, "out": 0, "temp": int(float(need.group(1)) * scale), "oom": True}
  return {"args": int(mem.argument_size_in_bytes) - sum(resident[r] for r in reads),
          "out": int(mem.output_size_in_bytes) - int(mem.alias_size_in_bytes),
          "temp": int(mem.temp_size_in_bytes)}


def _programs(cfg, mcfg, mesh, seq_len: int, compile_programs: bool = True) -> dict:
  import jax
  import jax.numpy as jnp
  from spct_jax import mesh as mesh_lib
  from spct_jax import sampling as sampling_lib
  from spct_jax.model import config as model_config
  from spct_jax.model import transformer
  from spct_jax.train import grpo
  from spct_jax.train import sft
  from spct_jax.train import stage
  from spct_jax.train import state as state_lib
  from spct_jax.train import step as step_lib

  rows = cfg.train.batch_size
  mesh_lib.check_batch(rows, mesh, "train.batch_size")
  params = transformer.abstract_params(mcfg)
  tx, _, create, state_sh = stage.state_layout(cfg, mcfg, params, mesh)
  state = _abstract(jax.eval_shape(create, params), state_sh)
  resident = {"state": per_device_bytes(state)}
  is_grpo = cfg.stage == "grpo"
  if is_grpo and mcfg.lora_rank:  # the reference is the frozen base, part of the state
    ref, ref_model = state.frozen, transformer.Transformer(model_config.replace(mcfg, lora_rank=0))
  elif is_grpo:
    ref = _abstract(jax.eval_shape(lambda p: grpo.reference_params(p, mcfg), params), state_sh.params)
    ref_model = transformer.Transformer(mcfg)
    resident["reference"] = per_device_bytes(ref)
  out = {"param_count": transformer.param_count(mcfg), "resident": resident, "programs": {},
         "trained_count": sum(math.prod(x.shape) for x in jax.tree.leaves(state.params))}
  if not compile_programs:
    return out

  model = transformer.Transformer(mcfg)
  bsh = mesh_lib.batch_sharding(mesh)
  if is_grpo:  # every rollout with its own prompt (k = 1): the largest GRPO batch
    g = cfg.grpo
    n = g.max_new_tokens
    batch = grpo.batch_shapes(rows, seq_len - n, n, sharding=bsh)
    loss = grpo.loss_fn(model, on_policy=False, temperature=g.temperature, clip_eps=g.clip_eps, beta=g.beta,
                        kl_estimator=g.kl_estimator, aggregation=g.aggregation)
  else:
    batch = {k: jax.ShapeDtypeStruct((rows, seq_len), dt, sharding=bsh)
             for k, dt in (("tokens", jnp.int32), ("pad_mask", jnp.bool_), ("loss_mask", jnp.bool_))}
    loss = sft.loss_fn(model)
  step = step_lib.make_step(loss, tx, micro_batches=cfg.train.micro_batches, state_shardings=state_sh,
                            batch_shardings={k: bsh for k in batch})
  programs = out["programs"]
  with mesh_lib.activation_sharding(mesh):
    programs["train step"] = _stats(step.lower(state, batch), resident, ("state",))
    if is_grpo:
      ref_pass = grpo.reference_pass(ref_model, g.temperature, cfg.train.micro_batches)
      programs["reference pass"] = _stats(ref_pass.lower(ref, *(batch[k] for k in grpo.BATCH_KEYS[:4])),
                                          {"reference": per_device_bytes(ref)}, ("reference",))
      b = min(g.sampler_batch, g.prompts_per_step)
      rep = mesh_lib.replicated(mesh)
      prompts = jax.ShapeDtypeStruct((b, seq_len - n), jnp.int32, sharding=rep)
      keys = jax.ShapeDtypeStruct((b,), jax.eval_shape(lambda: jax.random.key(0)).dtype, sharding=rep)
      model_params = _abstract(jax.eval_shape(state_lib.model_params, state),
                               state_lib.model_params(state_sh))
      lowered = sampling_lib._sample_jit.lower(
          model_params, prompts, jax.ShapeDtypeStruct(prompts.shape, jnp.bool_, sharding=rep), keys,
          cfg=mcfg, k=g.group_size, max_new_tokens=n, sampling=sampling_lib.Temperature(g.temperature),
          stop_ids=(1,), pad_id=0, mesh=mesh, share_prefix=True)
      # the sampler reads the policy's params (in the train state, which stays resident)
      programs["sampler"] = _stats(lowered, {"params": per_device_bytes(model_params)}, ("params",))
  return out


def _gib(b: int) -> str:
  return f"{b / 2**30:8.2f} GiB"


def report(r: dict) -> str:
  """The plan as the command prints it."""
  count = f"{r['params'] / 1e9:.2f}B" if r["params"] >= 1e9 else f"{r['params'] / 1e6:.1f}M"
  lines = [f"plan: {r['stage']} of {r['preset']} ({count} params), mesh {r['mesh']}, "
           f"global batch {r['batch_size']} x {r['seq_len']} tokens, {r['micro_batches']} micro-batches",
           f"  compiler: {r['compiler']}; depth {r['depth']}; compiled in {r['compile_seconds']:.0f} s"]
  if r["lora_rank"]:
    lines.append(f"  LoRA rank {r['lora_rank']}: {r['trained'] / 1e6:.1f}M trained params (adapters), the base "
                 "frozen in the compute dtype (it is also the GRPO reference)")
  names = {"state": "train state (params + optimizer)" + (" + frozen base" if r["lora_rank"] else ""),
           "reference": "frozen reference (compute dtype)"}
  for name, b in r["resident"].items():
    lines.append(f"  resident per chip: {names[name]:<34s}{_gib(b)}")
  hbm = r["hbm_bytes"]
  lines.append(f"  {'program':<16s}{'arguments':>13s}{'outputs':>13s}{'temporaries':>13s}{'peak/chip':>13s}"
               + (f"{'HBM/chip':>13s}{'free':>7s}  fits" if hbm else ""))
  for name, p in r["programs"].items():
    row = f"  {name:<16s}" + "".join(f"{_gib(p[f]):>13s}" for f in ("args", "out", "temp", "peak"))
    if hbm:
      free = 1 - p["peak"] / hbm
      row += f"{_gib(hbm):>13s}{free:>6.0%}  " + ("yes" if free >= FREE_TARGET else
                                                   "tight (< 20% free)" if free >= 0 else "NO")
    if p.get("oom"):
      row += "  (the compiler ran out of HBM: temporaries as it reported them, the rest not counted)"
    lines.append(row)
  lines.append("  (per chip; arguments: the program's own, beyond the resident buffers it reads; outputs: those "
               "not aliased to a donated input; peak: the program plus everything resident)")
  return "\n".join(lines)


def main(argv):
  del argv
  cfg = _CONFIG.value
  shape = tuple(int(s) for s in _MESH.value.split(",")) if _MESH.value else tuple(cfg.mesh.shape)
  if not _TOPOLOGY.value and not _MESH.value and not _DEVICES.value:
    raise app.UsageError("without --topology, give --mesh=data,fsdp,tensor (or --devices=N): the simulated "
                         "CPU devices are created before JAX starts")
  r = plan(cfg, shape, _SEQ.value or cfg.data.max_len, exact_layers=_EXACT.value, topology=_TOPOLOGY.value)
  print(report(r))


def _set_device_count(argv) -> None:
  """Before JAX starts: the CPU platform (a TPU topology is compiled for from the CPU too), and
  without --topology enough simulated CPU devices for the requested mesh."""
  mesh = next((a.split("=", 1)[1] for a in argv if a.startswith("--mesh=")), "")
  devices = next((int(a.split("=", 1)[1]) for a in argv if a.startswith("--devices=")), 0)
  topology = next((a.split("=", 1)[1] for a in argv if a.startswith("--topology=")), "")
  import jax
  if jax.config.jax_platforms not in (None, "", "cpu"):
    return
  jax.config.update("jax_platforms", "cpu")
  shape = [int(s) for s in mesh.split(",")] if mesh else []
  n = devices or (math.prod(shape) if shape and -1 not in shape else 0)
  if n and not topology:
    jax.config.update("jax_num_cpu_devices", n)


if __name__ == "__main__":
  from spct_jax import configs
  sys.argv = configs.resolve_argv(sys.argv)
  _set_device_count(sys.argv)
  app.run(main)
