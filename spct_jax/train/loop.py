"""The Python loop around a jitted step: resume, log, checkpoint, evaluate, survive preemption.

Batches come from `get_batch(step, state) -> dict of host numpy arrays` (or `(batch, host
metrics)`), a pure function of the step and the state: a grain `MapDataset` indexed by step for
SFT, rollouts of the current policy with keys folded from the step for GRPO. So the data position
is the step itself: resuming at step s reads exactly what an uninterrupted run would have read.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

from etils import epath
import grain
import jax
import numpy as np
from tqdm.auto import tqdm

from spct_jax import mesh as mesh_lib
from spct_jax import progress
from spct_jax.train import checkpoint as ckpt_lib
from spct_jax.train import metrics as metrics_lib


# The exit code of a preempted run (the state is saved; rerun the same command to resume): 143 =
# 128 + SIGTERM, what a scheduler sees from a process SIGTERM ended; it differs from 0 (done) and
# from 1 (a failure), so a retry policy can requeue on exactly this code.
EXIT_PREEMPTED = 143


class Preempted(Exception):
  """Raised after the state was saved because SIGTERM arrived; rerun the same command to resume."""


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  steps: int                  # total updates of this stage
  log_every: int = 10         # metrics to JSONL/TensorBoard every n steps
  ckpt_every: int = 100       # save every n steps (and at the end)
  eval_every: int = 0         # run eval_fn every n steps (0: only at the end)
  keep_last: int = 3
  keep_best: int = 1
  async_save: bool = True


def run(stage_dir: str, state: Any, step_fn: Callable, get_batch: Callable[[int, Any], Any],
        cfg: LoopConfig, mesh, *, eval_fn: Callable[[Any], dict] | None = None,
        desc: str = "train", tokens_key: str = "count") -> tuple[Any, dict]:
  """Trains from the latest checkpoint in `stage_dir` (or from `state`) to `cfg.steps`.

  Returns (final state, last metrics). Writes <stage_dir>/checkpoints, metrics.jsonl, tb/.
  `tokens_key` names the step metric that counts trained tokens (for tokens/s).

  Preemption: on one host, SIGTERM sets a flag; on several, every host stops at the same step,
  the one Orbax's preemption sync point (JAX's preemption service) names. Either way the state is
  saved, then `Preempted` is raised (the CLI exits with EXIT_PREEMPTED for the scheduler to requeue).
  Progress: a bar on a terminal or in a notebook, else one log line per logged step.
  """
  mngr = ckpt_lib.manager(epath.Path(stage_dir) / "checkpoints", keep_last=cfg.keep_last,
                          keep_best=cfg.keep_best, async_save=cfg.async_save)
  restored = ckpt_lib.restore_latest(mngr, ckpt_lib.abstract_like(state))
  start = 0
  if restored is not None:
    state, meta, start = restored
    print(f"[{desc}] resumed from step {start} ({mngr.directory})", flush=True)
  last: dict = {}
  writer = metrics_lib.MetricsWriter(stage_dir, resumed_at=start)
  several_hosts = jax.process_count() > 1
  bar = tqdm(total=cfg.steps, initial=start, desc=desc, dynamic_ncols=True) if progress.interactive() else None
  try:
    with ckpt_lib.Preemption(enabled=not several_hosts) as pre:
      t0, tokens = time.perf_counter(), 0.0
      for step in range(start, cfg.steps):
        batch = get_batch(step, state)
        host_metrics = {}
        if isinstance(batch, tuple):
          batch, host_metrics = batch
        state, m = step_fn(state, mesh_lib.shard_batch(batch, mesh))
        m = {**m, **host_metrics}
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
          m = {k: float(v) for k, v in mesh_lib.fetch(m).items()}
          tokens += m.get(tokens_key, 0.0) * min(cfg.log_every, done - start)
          dt = time.perf_counter() - t0
          m["tokens_per_s"] = tokens / dt if dt > 0 else 0.0
          writer.write(done, m)
          shown = {k: f"{m[k]:.4g}" for k in ("loss", "reward", "accuracy") if k in m}
          if bar is not None:
            bar.set_postfix(shown)
          else:
            print(f"[{desc}] step {done}/{cfg.steps} " + " ".join(f"{k} {v}" for k, v in shown.items()), flush=True)
          last = m
          t0, tokens = time.perf_counter(), 0.0
        if bar is not None:
          bar.update(1)
        evaluated = None
        if eval_fn is not None and (done == cfg.steps or (cfg.eval_every and done % cfg.eval_every == 0)):
          evaluated = eval_fn(state)
          writer.write(done, evaluated)
          last = {**last, **evaluated}
        stop = mngr.reached_preemption(done) if several_hosts else pre.requested
        if done % cfg.ckpt_every == 0 or done == cfg.steps or stop:
          ckpt_lib.save(mngr, done, state, meta={"data_position": done},
                        metrics=evaluated if evaluated and "val_accuracy" in evaluated else None,
                        force=True)
        if stop:
          mngr.wait_until_finished()
          raise Preempted(f"{desc}: preempted; state saved at step {done} in {mngr.directory}")
  finally:
    if bar is not None:
      bar.close()
    mngr.wait_until_finished()
    mngr.close()
    writer.close()
  return state, last


def batches_from(encoded: dict[str, np.ndarray], batch_size: int, seed: int,
                 trim_multiple: int = 0) -> Callable[[int, Any], dict]:
  """A get_batch(step) over in-memory rows (dict of arrays with the same leading size N).

  trim_multiple: with right-padded [N, T] rows and a `pad_mask`, cut each batch's columns to its
  longest row rounded up to a multiple of this (a few length buckets, so a few compilations,
  instead of always paying for T); per-row arrays ([N] or [N, other]) are left whole.

  Row order is a grain shuffle of [0, N) reshuffled every epoch from `seed`, repeated and
  batched, so batch `step` is a pure function of (seed, step): every host builds the same global
  batch, and `mesh.shard_batch` puts each host's rows on its own devices.
  """
  n = len(next(iter(encoded.values())))
  if n == 0:
    raise ValueError("no training rows")
  rows = grain.MapDataset.range(n).shuffle(seed=seed).repeat().batch(batch_size)

  def get(step: int, state: Any = None) -> dict:
    del state
    batch = {k: v[np.asarray(rows[step])] for k, v in encoded.items()}
    if trim_multiple:
      longest = int(batch["pad_mask"].any(axis=0).nonzero()[0].max()) + 1
      t = min(-(-longest // trim_multiple) * trim_multiple, batch["pad_mask"].shape[1])
      width = batch["pad_mask"].shape[1]
      batch = {k: v[:, :t] if v.ndim == 2 and v.shape[1] == width else v for k, v in batch.items()}
    return batch
  return get
