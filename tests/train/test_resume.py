"""Preemption and exact resume of the train CLI, as a user meets them (subprocesses)."""
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np

from spct_jax.model import orbax_io

ROOT = pathlib.Path(__file__).resolve().parents[2]
STEPS = 10


def _cmd(workdir):
  return [sys.executable, "-m", "spct_jax.train", "--config=configs/warmup.py", f"--workdir={workdir}",
          "--config.model.preset=tiny", "--config.data.n_train=64", "--config.train.batch_size=8",
          f"--config.train.steps={STEPS}", "--config.train.ckpt_every=2", "--config.train.log_every=1",
          "--config.opt.warmup_steps=2", "--config.eval.n=4", "--config.eval.k=2",
          "--config.eval.max_new_tokens=8"]


def _env():
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)
  env["JAX_PLATFORMS"] = "cpu"
  return env


def _logged_step(workdir) -> int:
  path = pathlib.Path(workdir) / "warmup" / "metrics.jsonl"
  if not path.exists():
    return 0
  steps = [json.loads(l)["step"] for l in path.read_text().splitlines() if l.strip() and '"loss"' in l]
  return max(steps, default=0)


def _run_until(workdir, step, sig):
  proc = subprocess.Popen(_cmd(workdir), cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  deadline = time.time() + 240
  while _logged_step(workdir) < step and proc.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  assert proc.poll() is None, f"finished before step {step}: {proc.stdout.read()[-2000:]}"
  proc.send_signal(sig)
  out, _ = proc.communicate(timeout=240)
  return proc.returncode, out


def _final_params(workdir):
  params, _ = orbax_io.load(str(pathlib.Path(workdir) / "warmup" / "final"))
  return params


def test_sigkill_then_rerun_gives_the_uninterrupted_params_bit_for_bit(tmp_path):
  ref = subprocess.run(_cmd(tmp_path / "ref"), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
  assert ref.returncode == 0, ref.stderr[-3000:]
  kill_at = random.Random().randint(3, STEPS - 2)
  code, out = _run_until(tmp_path / "run", kill_at, signal.SIGKILL)
  assert code == -signal.SIGKILL, out[-2000:]
  rerun = subprocess.run(_cmd(tmp_path / "run"), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert "resumed from step" in rerun.stdout + rerun.stderr, f"killed at step {kill_at}"
  a, b = _final_params(tmp_path / "ref"), _final_params(tmp_path / "run")
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=f"killed at step {kill_at}")


def test_sigterm_saves_exits_143_and_the_rerun_logs_every_step_once(tmp_path):
  from spct_jax.train import loop
  code, out = _run_until(tmp_path, 3, signal.SIGTERM)
  assert code == loop.EXIT_PREEMPTED == 143, out[-2000:]  # documented in the README for requeueing
  assert "preempted; state saved at step" in out
  saved = int(out.split("state saved at step ")[1].split()[0])
  assert saved >= 3
  assert saved in [int(p.name) for p in (tmp_path / "warmup" / "checkpoints").iterdir() if p.name.isdigit()]
  rerun = subprocess.run(_cmd(tmp_path), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert f"resumed from step {saved}" in rerun.stdout
  rows = [json.loads(x) for x in (tmp_path / "warmup" / "metrics.jsonl").read_text().splitlines()]
  loss_steps = [r["step"] for r in rows if "loss" in r]
  assert loss_steps == list(range(1, STEPS + 1)), loss_steps  # no step logged twice, none missing


def test_a_rerun_after_the_last_logged_step_drops_the_lines_past_its_checkpoint(tmp_path):
  from spct_jax.train import metrics
  with metrics.MetricsWriter(str(tmp_path)) as w:
    for step in range(1, 8):
      w.write(step, {"loss": float(step)})
  with metrics.MetricsWriter(str(tmp_path), resumed_at=4) as w:
    w.write(5, {"loss": 50.0})
  rows = metrics.read_jsonl(str(tmp_path / "metrics.jsonl"))
  assert [(r["step"], r["loss"]) for r in rows] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 50.0)]
