"""python -m spct_jax.plan: per-device memory of the gemma2_27b train step on a simulated 64-device
mesh, without allocating it (issue 6)."""
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_plan_prints_per_device_memory_of_gemma2_27b_on_64_devices():
  proc = subprocess.run([sys.executable, "-m", "spct_jax.plan", "--config=configs/warmup.py",
                         "--config.model.preset=gemma2_27b", "--config.model.dtype=bfloat16",
                         "--config.model.remat=True", "--mesh=1,16,4", "--config.train.batch_size=64",
                         "--seq_len=1024"], cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = proc.stdout
  assert "mesh {'data': 1, 'fsdp': 16, 'tensor': 4}" in out
  gib = {k: float(v) for k, v in re.findall(r"per device (\w+)\s+([\d.]+) GiB", out)}
  assert set(gib) == {"params", "opt_state", "batch", "temp", "total"}
  n = float(re.search(r"\(([\d.]+)B params\)", out).group(1)) * 1e9
  # float32 master weights split 64 ways; AdamW keeps two float32 moments
  assert abs(gib["params"] - n * 4 / 64 / 2**30) < 0.02
  assert abs(gib["opt_state"] - 2 * gib["params"]) < 0.02
  assert abs(gib["total"] - sum(gib[k] for k in ("params", "opt_state", "batch", "temp"))) < 0.02
  t2, t4 = (float(x) for x in re.search(r"2 layers \(([\d.]+) GiB\) and 4 layers \(([\d.]+) GiB\)", out).groups())
  # linear in depth over 46 layers; t2, t4 are printed to 0.01 GiB, which the 22x slope amplifies
  assert abs(gib["temp"] - (t2 + (t4 - t2) * (46 - 2) / 2)) < 0.25
