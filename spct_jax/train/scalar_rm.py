"""The scalar reward-model baseline (METHOD.md section 6, the seed's table): a Bradley-Terry head
on the same backbone and data as the GRM, so the SPCT rows have something to beat.

Input of a row: the chat-formatted context, then one response as the model's answer
(`pipeline.response_ids`). Training pairs: for every training item with n >= 2 responses, the
labelled best against each other response (n - 1 pairs); loss -log sigmoid(r_best - r_other).
The backbone starts from `init` (by default the warm-up model: the same starting point the GRM's
RFT and GRPO have); the whole model is fine-tuned. Held-out accuracy: the response with the
highest score is the labelled best (ties wrong), on the same validation items as the GRM stages.
"""
from __future__ import annotations

import os
import time
from typing import Sequence

import jax
import numpy as np

from spct_jax.data import pipeline
from spct_jax.data.example import GRMExample
from spct_jax.model import config as model_config
from spct_jax.model import reward
from spct_jax.train import checkpoint as ckpt_lib
from spct_jax.train import loop as loop_lib
from spct_jax.train import mesh as mesh_lib
from spct_jax.train import meta_rm
from spct_jax.train import scalar
from spct_jax.train import stages
from spct_jax.train import warmup

TRAIN_SEED_OFFSET = 4  # the scalar RM's training items come from their own generator seed
BATCH_KEYS = ("chosen_tokens", "chosen_mask", "rejected_tokens", "rejected_mask", "weight")


def pair_rows(items: Sequence[GRMExample], tok, *, max_len: int) -> tuple[dict[str, np.ndarray], int]:
  """Bradley-Terry rows (BATCH_KEYS; chosen and rejected padded to one width) and the number of
  pairs left out because a side is longer than max_len."""
  stats = pipeline.LengthStats()
  chosen, rejected = [], []
  for ex in items:
    if ex.n < 2:
      continue
    best = pipeline.response_ids(ex, ex.label, tok, max_len=max_len, stats=stats)
    for j in range(ex.n):
      if j == ex.label:
        continue
      other = pipeline.response_ids(ex, j, tok, max_len=max_len, stats=stats)
      if best is not None and other is not None:
        chosen.append(best)
        rejected.append(other)
  if not chosen:
    raise ValueError(f"scalar RM: no preference pair fits data.max_len={max_len} "
                     f"(items with n >= 2 responses: {sum(ex.n >= 2 for ex in items)})")
  width = max(max(map(len, chosen)), max(map(len, rejected)))
  c, cm = pipeline.pad_right(chosen, tok.pad_id, width)
  r, rm = pipeline.pad_right(rejected, tok.pad_id, width)
  return ({"chosen_tokens": c, "chosen_mask": cm, "rejected_tokens": r, "rejected_mask": rm,
           "weight": np.ones(len(c), np.float32)}, stats.too_long)


def response_scores(fn, params, examples: Sequence[GRMExample], tok, *, max_len: int,
                    batch_size: int = 32) -> list[list[float] | None]:
  """The scalar reward of every response of every example ([n] floats; None for an example with a
  response longer than max_len, which the caller counts)."""
  ids, owner = [], []
  out: list[list[float] | None] = [[0.0] * ex.n for ex in examples]
  for e, ex in enumerate(examples):
    for i in range(ex.n):
      x = pipeline.response_ids(ex, i, tok, max_len=max_len)
      if x is None:
        out[e] = None
      else:
        ids.append(x)
        owner.append((e, i))
  if ids:
    tokens, mask = pipeline.pad_right(ids, tok.pad_id)
    for (e, i), s in zip(owner, meta_rm.score_rows(fn, params, tokens, mask, batch_size)):
      if out[e] is not None:
        out[e][i] = float(s)
  return out


def choice_accuracy(examples: Sequence[GRMExample], scores: Sequence[list[float] | None]) -> float:
  """Share of n >= 2 examples whose unique highest-scored response is the label (ties, missing wrong)."""
  ranked = [(ex, s) for ex, s in zip(examples, scores) if ex.n >= 2]
  hits = 0
  for ex, s in ranked:
    if s is not None:
      top = max(s)
      hits += [i for i, v in enumerate(s) if v == top] == [ex.label]
  return hits / max(len(ranked), 1)


def run(cfg, workdir: str) -> dict:
  t_start = time.perf_counter()
  out_dir = stages.stage_dir(workdir, cfg.stage)
  os.makedirs(out_dir, exist_ok=True)
  tok = warmup.load_tokenizer(cfg, workdir)
  mcfg, lm_params = stages.initial_params(cfg, workdir)
  mesh = mesh_lib.make_mesh(tuple(cfg.mesh.shape))
  items = warmup.items(cfg, cfg.scalar_rm.n_items, cfg.seed + TRAIN_SEED_OFFSET)
  data, skipped = pair_rows(items, tok, max_len=cfg.data.max_len)
  print(f"[scalar_rm] {len(data['weight'])} preference pairs from {len(items)} items "
        f"({skipped} responses longer than data.max_len)", flush=True)
  params = reward.from_lm(lm_params, mcfg, jax.random.key(cfg.seed + 6))
  st, step = warmup.setup_training(cfg, mcfg, params, scalar.bt_loss_fn(mcfg), mesh, BATCH_KEYS,
                                   logical=reward.logical_axes(mcfg))
  fn = meta_rm.score_fn(mcfg)
  val = warmup.validation_examples(cfg)

  def eval_fn(state) -> dict:
    s = response_scores(fn, state.params, val, tok, max_len=cfg.data.max_len)
    return {"val_accuracy": choice_accuracy(val, s)}

  with mesh_lib.activation_sharding(mesh):
    st, last = loop_lib.run(out_dir, st, step, loop_lib.batches_from(data, cfg.train.batch_size, cfg.seed),
                            warmup.loop_config(cfg), mesh, eval_fn=eval_fn, desc="scalar_rm")
  ckpt_lib.export_params(jax.device_get(st.params), model_config.to_dict(mcfg), os.path.join(out_dir, "final"), tok)
  summary = {"stage": "scalar_rm", "train_pairs": len(data["weight"]), "skipped_too_long": skipped,
             "steps": cfg.train.steps, "final_loss": last.get("loss"),
             "wall_seconds": time.perf_counter() - t_start,
             **{k: v for k, v in last.items() if k.startswith("val_")}}
  warmup.print_summary(summary)
  return summary
