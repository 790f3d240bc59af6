"""The Python loop around a jitted step: resume, log, checkpoint, evaluate, survive preemption.

Batches come from `get_batch(step, state) -> dict of host numpy arrays` (or `(batch, host
metrics)`), a pure function of the step and the state: a grain `MapDataset` indexed by step for
SFT, rollouts of the current policy with keys folded from the step for GRPO. So the data position
is the step itself: resuming at step s reads exactly what an uninterrupted run would have read.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable

import grain
import jax
import numpy as np
from tqdm import tqdm

from spct_jax.train import checkpoint as ckpt_lib
from spct_jax import mesh as mesh_lib
from spct_jax.train import metrics as metrics_lib


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
  """
  mngr = ckpt_lib.manager(os.path.join(stage_dir, "checkpoints"), keep_last=cfg.keep_last,
                          keep_best=cfg.keep_best, async_save=cfg.async_save)
  restored = ckpt_lib.restore_latest(mngr, ckpt_lib.abstract_like(state))
  start = 0
  if restored is not None:
    state, meta, start = restored
    print(f"[{desc}] resumed from step {start} ({mngr.directory})", flush=True)
  last: dict = {}
  writer = metrics_lib.MetricsWriter(stage_dir)
  try:
    with ckpt_lib.Preemption() as pre:
      bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc=desc,
                 dynamic_ncols=True, disable=None)
      t0, tokens = time.perf_counter(), 0.0
      for step in bar:
        batch = get_batch(step, state)
        host_metrics = {}
        if isinstance(batch, tuple):
          batch, host_metrics = batch
        state, m = step_fn(state, mesh_lib.shard_batch(batch, mesh))
        m = {**m, **host_metrics}
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
          m = {k: float(v) for k, v in jax.device_get(m).items()}
          tokens += m.get(tokens_key, 0.0) * min(cfg.log_every, done - start)
          dt = time.perf_counter() - t0
          m["tokens_per_s"] = tokens / dt if dt > 0 else 0.0
          writer.write(done, m)
          bar.set_postfix({k: f"{m[k]:.4g}" for k in ("loss", "reward", "accuracy") if k in m})
          last = m
          t0, tokens = time.perf_counter(), 0.0
        evaluated = None
        if eval_fn is not None and (done == cfg.steps or (cfg.eval_every and done % cfg.eval_every == 0)):
          evaluated = eval_fn(state)
          writer.write(done, evaluated)
          last = {**last, **evaluated}
        if done % cfg.ckpt_every == 0 or done == cfg.steps or pre.requested:
          ckpt_lib.save(mngr, done, state, meta={"data_position": done},
                        metrics=evaluated if evaluated and "val_accuracy" in evaluated else None,
                        force=True)
        if pre.requested:
          mngr.wait_until_finished()
          raise Preempted(f"{desc}: preempted; state saved at step {done} in {mngr.directory}")
  finally:
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
  batched, so batch `step` is a pure function of (seed, step). On several hosts each host takes
  its contiguous share of every global batch.
  """
  n = len(next(iter(encoded.values())))
  if n == 0:
    raise ValueError("no training rows")
  rows = grain.MapDataset.range(n).shuffle(seed=seed).repeat().batch(batch_size)
  per_host = batch_size // jax.process_count()
  offset = jax.process_index() * per_host

  def get(step: int, state: Any = None) -> dict:
    del state
    idx = np.asarray(rows[step])[offset:offset + per_host]
    batch = {k: v[idx] for k, v in encoded.items()}
    if trim_multiple and jax.process_count() == 1:
      longest = int(batch["pad_mask"].any(axis=0).nonzero()[0].max()) + 1
      t = min(-(-longest // trim_multiple) * trim_multiple, batch["pad_mask"].shape[1])
      width = batch["pad_mask"].shape[1]
      batch = {k: v[:, :t] if v.ndim == 2 and v.shape[1] == width else v for k, v in batch.items()}
    return batch
  return get
