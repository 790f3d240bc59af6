"""Several processes, for real: the GRPO smoke chain (warm-up -> RFT -> GRPO) as 2 processes x 4 CPU
devices (`jax.distributed` on localhost, the JAX_* environment variables the README documents)
gives the same metrics and parameters as 1 process x 8 devices on the same (1, 2, 4) mesh."""
import json
import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from spct_jax.model import orbax_io

STAGES = ("warmup", "rft", "grpo")
ARGS = ["-m", "spct_jax.train", "--config=grpo", "--config.smoke=True", "--config.mesh.shape=(1,2,4)"]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(devices: int, **extra) -> dict:
  env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
  env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu", **extra)
  return env


def _metrics(workdir, stage):
  drop = ("wall", "second", "per_s", "time")
  return [{k: v for k, v in json.loads(line).items() if not any(d in k for d in drop)}
          for line in (workdir / stage / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  base = tmp_path_factory.mktemp("multihost")
  one, two = base / "one", base / "two"
  # each process writes to its own file, not a pipe: a pipe that is read only after another
  # process ends fills up (compiler warnings are enough), blocks its writer and, through the
  # writer's collectives, its peer too
  logs = [base / f"{name}.log" for name in ("one", "two_0", "two_1")]
  port = _free_port()
  envs = [_env(8)] + [_env(4, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
                           JAX_PROCESS_ID=str(i)) for i in range(2)]
  procs = []
  for env, log, workdir in zip(envs, logs, (one, two, two)):
    with open(log, "w") as f:
      procs.append(subprocess.Popen([sys.executable, *ARGS, f"--workdir={workdir}"], env=env, stdout=f,
                                    stderr=subprocess.STDOUT))
  deadline = time.monotonic() + 900  # the three together: 2.6 minutes alone on 2 CPU cores
  try:
    for p in procs:
      p.wait(timeout=max(1.0, deadline - time.monotonic()))
  except subprocess.TimeoutExpired:
    pass
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
      p.wait()
  outs = [log.read_text() for log in logs]
  for p, log, out in zip(procs, logs, outs):
    assert p.returncode == 0, f"{log.name} (rc {p.returncode}, killed after 900 s if negative):\n{out[-4000:]}"
  return one, two, outs


def test_two_processes_train_like_one(runs):
  one, two, outs = runs
  assert "Held-out accuracy by stage" in outs[1] and "Held-out accuracy by stage" in outs[2]
  for stage in STAGES:
    a, b = _metrics(one, stage), _metrics(two, stage)
    assert [m["step"] for m in a] == [m["step"] for m in b] and a, stage
    for ma, mb in zip(a, b):
      assert ma.keys() == mb.keys(), stage
      for key in ma:  # the same numbers up to the order of float sums across processes
        np.testing.assert_allclose(mb[key], ma[key], rtol=1e-5, atol=1e-6, err_msg=f"{stage} {key}")
    pa, _ = orbax_io.load(str(one / stage / "final"))
    pb, _ = orbax_io.load(str(two / stage / "final"))
    jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=0, atol=1e-5), pa, pb)


def test_only_process_zero_writes_the_summary(runs):
  one, two, _ = runs
  # one metrics file per stage with the lines of the one-process run, none twice (process 1 writes none)
  for stage in STAGES:
    assert [m["step"] for m in _metrics(two, stage)] == [m["step"] for m in _metrics(one, stage)]
  assert json.loads((two / "grpo" / "summary.json").read_text())["steps"] == 3
