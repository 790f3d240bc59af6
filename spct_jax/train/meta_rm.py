"""The meta RM (METHOD.md section 5): a scalar head on the GRM's backbone that rates sampled
critiques, trained with binary cross-entropy to predict whether a critique is correct (the rule of
section 2), so that meta-RM guided voting lets only the top k_meta of k samples vote.

Training samples: `meta_rm.samples_per_item` critiques of each of `meta_rm.n_items` training items
(their own generator seed) from the GRM the stage starts from (`init`, by default the GRPO model),
at the voting temperature, response order shuffled per sample as in `judge`; label 1 when the
critique is correct, 0 otherwise (invalid ones included, as the paper's samples are). The RFT
trajectories are not reused: RFT keeps only correct ones, so they carry no negative.

Input of a row (`rm.meta_input_ids`, i.e. `prompts.render(..., variant="meta")`): "Please score the responses.", the
context and the responses in the order the critique saw them, then the critique as the answer.
The head starts from the GRM's backbone (`reward.from_lm`); the whole model is fine-tuned.
Held-out: samples of the validation items, scored by accuracy and ROC-AUC of the meta score.
"""
from __future__ import annotations

import time
from typing import Sequence

import jax
import numpy as np

from spct_jax import judge as judge_lib
from spct_jax import rm
from spct_jax import sampling as sampling_lib
from spct_jax.data import pipeline
from spct_jax.evaluate import metrics
from spct_jax.model import reward
from spct_jax.train import loop as loop_lib
from spct_jax.train import scalar
from spct_jax.train import stage

BATCH_KEYS = ("tokens", "pad_mask", "label", "weight")


def rows(samples: Sequence[judge_lib.Critique], tok, *, max_len: int, style: str) -> tuple[dict[str, np.ndarray], int]:
  """Right-padded training rows (BATCH_KEYS; label 1 for a correct critique) and the number of
  critiques left out as too long."""
  stats = pipeline.LengthStats()
  ids, labels = [], []
  for c in samples:
    x = rm.meta_input_ids(c.shown, c.text, tok, max_len=max_len, style=style, stats=stats)
    if x is not None:
      ids.append(x)
      labels.append(float(c.correct))
  if not ids:
    raise ValueError(f"meta RM: all {len(samples)} samples are longer than data.max_len={max_len}")
  tokens, pad_mask = pipeline.pad(ids, tok.pad_id)
  return {"tokens": tokens, "pad_mask": pad_mask, "label": np.asarray(labels, np.float32),
          "weight": np.ones(len(ids), np.float32)}, stats.too_long


def run(cfg, workdir: str) -> dict:
  s = stage.begin(cfg, workdir)
  m = cfg.meta_rm
  common = dict(sampling=sampling_lib.Temperature(m.temperature), max_new_tokens=m.max_new_tokens,
                cfg=s.mcfg, params=s.params, tok=s.tok, variant=cfg.data.variant, style=cfg.data.style,
                batch_size=m.sampler_batch, mesh=s.mesh, desc="meta RM samples")
  t0 = time.perf_counter()
  train = judge_lib.sample_critiques(stage.items(cfg, m.n_items, stage.seed(cfg, "meta_rm")), m.samples_per_item,
                                     stage.seed(cfg, "meta_rm"), **common)
  val = judge_lib.sample_critiques(stage.validation_examples(cfg), m.samples_per_item,
                                   stage.seed(cfg, "validation"), **common)
  data, skipped = rows(train, s.tok, max_len=cfg.data.max_len, style=cfg.data.style)
  val_data, _ = rows(val, s.tok, max_len=cfg.data.max_len, style=cfg.data.style)
  base_rate = float(data["label"].mean())
  print(f"[meta_rm] sampled {len(train)} training critiques ({100 * base_rate:.1f}% correct, "
        f"{sum(not c.valid for c in train)} invalid; {skipped} left out as longer than data.max_len) "
        f"and {len(val)} held-out ones in {time.perf_counter() - t0:.0f}s", flush=True)

  params = reward.from_lm(s.params, s.mcfg, jax.random.key(stage.seed(cfg, "meta_rm_head")))
  st, make_step = stage.train_state(cfg, s.mcfg, params, s.mesh, logical=reward.logical_axes(s.mcfg))
  fn = rm.score_fn(s.mcfg)

  def eval_fn(state) -> dict:
    scores = rm.score_rows(fn, state.params, val_data["tokens"], val_data["pad_mask"])
    y = val_data["label"] > 0.5
    return {"val_meta_accuracy": float(((scores > 0) == y).mean()), "val_meta_auc": metrics.roc_auc(scores, y),
            "val_meta_base_rate": float(y.mean())}

  batches = loop_lib.batches_from(data, cfg.train.batch_size, stage.seed(cfg, "batches"), trim_multiple=64)
  params, last = stage.fit(s, st, make_step(scalar.bce_loss_fn(s.mcfg), BATCH_KEYS), batches, eval_fn)
  return stage.finish(s, params, last, train_samples=len(data["label"]), train_correct_rate=base_rate,
                      skipped_too_long=skipped, final_loss=last.get("loss"))
