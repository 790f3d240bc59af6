"""python -m spct_jax.plan: per-chip memory of every program of a stage on a mesh, without
allocating it: XLA:CPU on simulated devices always, the TPU compiler when libtpu is installed."""
import importlib.util
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
GIB = 2**30
HAS_LIBTPU = importlib.util.find_spec("libtpu") is not None


def _plan(*args, timeout=600):
  env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
  proc = subprocess.run([sys.executable, "-m", "spct_jax.plan", *args], cwd=ROOT, capture_output=True, text=True,
                        timeout=timeout, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout


def _parse(out):
  resident = {m[0]: float(m[1]) for m in re.findall(r"resident per chip: (\w[\w ]*?) \(.*?\)\s+([\d.]+) GiB", out)}
  programs = {}
  for name in ("train step", "reference pass", "sampler"):
    m = re.search(rf"^  {name}\s+([\d.]+) GiB\s+([\d.]+) GiB\s+([\d.]+) GiB\s+([\d.]+) GiB(.*)$", out, re.M)
    if m:
      programs[name] = [float(x) for x in m.groups()[:4]] + [m.group(5)]
  return resident, programs


def test_cpu_plan_of_the_27b_grpo_programs_with_scanned_layers():
  out = _plan("--config=grpo", "--config.model.preset=gemma2_27b", "--config.model.dtype=bfloat16",
              "--config.model.remat=True", "--config.model.scan_layers=True", "--mesh=1,16,4",
              "--config.grpo.prompts_per_step=4", "--config.grpo.group_size=16", "--config.grpo.max_new_tokens=256",
              "--config.grpo.sampler_batch=4", "--seq_len=1024")
  assert "mesh {'data': 1, 'fsdp': 16, 'tensor': 4}" in out
  assert "XLA:CPU (fallback estimate" in out and "compiled at full depth (46 layers)" in out
  n = float(re.search(r"\(([\d.]+)B params\)", out).group(1)) * 1e9
  resident, programs = _parse(out)
  # float32 master weights + two float32 AdamW moments, and a bf16 reference, each split 64 ways
  assert abs(resident["train state"] - n * 12 / 64 / GIB) < 0.02
  assert abs(resident["frozen reference"] - n * 2 / 64 / GIB) < 0.02
  assert set(programs) == {"train step", "reference pass", "sampler"}
  for args, outs, temp, peak, _ in programs.values():
    assert temp > 0
    assert abs(peak - (args + outs + temp + sum(resident.values()))) < 0.03


def test_unrolled_layers_extrapolate_from_two_and_four_layers():
  common = ("--config=warmup", "--config.model.preset=medium", "--mesh=2,2,2", "--config.train.batch_size=8",
            "--seq_len=256")
  out = _plan(*common)
  assert "extrapolated from 2 and 4 layers to 10" in out
  exact = _plan(*common, "--exact_layers")
  assert "compiled at full depth (10 layers)" in exact
  (_, est), (_, got) = _parse(out), _parse(exact)
  assert set(est) == set(got) == {"train step"}
  assert abs(est["train step"][2] - got["train step"][2]) <= 0.25 * got["train step"][2] + 0.01


def test_unknown_topology_names_the_flag():
  proc = subprocess.run([sys.executable, "-m", "spct_jax.plan", "--config=grpo", "--topology=v9z:1x1"], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0
  assert "--topology='v9z:1x1'" in proc.stderr and "tpu extra" in proc.stderr


@pytest.mark.skipif(not HAS_LIBTPU, reason="the TPU compiler needs the tpu extra (libtpu)")
@pytest.mark.parametrize("config, topology, kind, hbm", [
    ("grpo_gemma2_27b", "v5p:4x4x4", "TPU v5", 95),          # full fine-tuning, 64 v5p chips
    ("grpo_gemma2_27b_lora", "v5e:16x16", "TPU v5 lite", 16),  # LoRA rank 16, 256 v5e chips
])
def test_live_tpu_compiler_plan_of_the_27b_grpo_stage(config, topology, kind, hbm):
  """The seed-setting 27B GRPO step, its reference pass and its sampler fit the topology's chips
  with at least 20% of HBM free, as the TPU compiler itself reports, compiled within 5 minutes."""
  out = _plan(f"--config={config}", f"--topology={topology}", timeout=900)
  assert f"TPU compiler, {kind} ({topology})" in out and "compiled at full depth (46 layers)" in out
  assert float(re.search(r"compiled in (\d+) s", out).group(1)) <= 300
  _, programs = _parse(out)
  assert set(programs) == {"train step", "reference pass", "sampler"}
  for *_, peak, tail in programs.values():
    assert peak <= 0.8 * hbm and "yes" in tail, out
