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

from typing import Sequence

import jax
import numpy as np

from spct_jax import rm
from spct_jax.data import pipeline
from spct_jax.example import GRMExample
from spct_jax.model import reward
from spct_jax.train import loop as loop_lib
from spct_jax.train import scalar
from spct_jax.train import stage

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
  c, cm = pipeline.pad(chosen, tok.pad_id, width)
  r, rmask = pipeline.pad(rejected, tok.pad_id, width)
  return ({"chosen_tokens": c, "chosen_mask": cm, "rejected_tokens": r, "rejected_mask": rmask,
           "weight": np.ones(len(c), np.float32)}, stats.too_long)


def run(cfg, workdir: str) -> dict:
  s = stage.begin(cfg, workdir)
  items = stage.items(cfg, cfg.scalar_rm.n_items, stage.seed(cfg, "scalar_rm"))
  data, skipped = pair_rows(items, s.tok, max_len=cfg.data.max_len)
  print(f"[scalar_rm] {len(data['weight'])} preference pairs from {len(items)} items "
        f"({skipped} responses longer than data.max_len)", flush=True)
  params = reward.from_lm(s.params, s.mcfg, jax.random.key(stage.seed(cfg, "scalar_rm_head")))
  st, make_step = stage.train_state(cfg, s.mcfg, params, s.mesh, logical=reward.logical_axes(s.mcfg))
  fn = rm.score_fn(s.mcfg)
  val = stage.validation_examples(cfg)

  def eval_fn(state) -> dict:
    correct = rm.choice_correct(val, rm.response_scores(fn, state.params, val, s.tok, max_len=cfg.data.max_len))
    return {"val_accuracy": sum(correct) / max(len(correct), 1)}

  batches = loop_lib.batches_from(data, cfg.train.batch_size, stage.seed(cfg, "batches"))
  params, last = stage.fit(s, st, make_step(scalar.bt_loss_fn(s.mcfg), BATCH_KEYS), batches, eval_fn)
  return stage.finish(s, params, last, train_pairs=len(data["weight"]), skipped_too_long=skipped,
                      final_loss=last.get("loss"))
