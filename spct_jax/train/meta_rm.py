"""The meta RM (METHOD.md section 5): a scalar head on the GRM's backbone that rates sampled
critiques, trained with binary cross-entropy to predict whether a critique is correct (the rule of
section 2), so that meta-RM guided voting lets only the top k_meta of k samples vote.

Training samples: `meta_rm.samples_per_item` critiques of each of `meta_rm.n_items` training items
(their own generator seed) from the GRM the stage starts from (`init`, by default the GRPO model),
at the voting temperature, response order shuffled per sample as in `judge`; label 1 when the
critique is correct, 0 otherwise (invalid ones included, as the paper's samples are). The RFT
trajectories are not reused: RFT keeps only correct ones, so they carry no negative.

Input of a row (`prompts.render(..., variant="meta")`): "Please score the responses.", the
context and the responses in the order the critique saw them, then the critique as the answer.
The head starts from the GRM's backbone (`reward.from_lm`); the whole model is fine-tuned.
Held-out: samples of the validation items, scored by accuracy and ROC-AUC of the meta score.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Sequence

import jax
import numpy as np

from spct_jax import judge as judge_lib
from spct_jax import sampling as sampling_lib
from spct_jax import evaluate
from spct_jax.data import pipeline
from spct_jax.data.example import GRMExample
from spct_jax.grm import scores as scores_lib
from spct_jax.model import config as model_config
from spct_jax.model import reward
from spct_jax.train import checkpoint as ckpt_lib
from spct_jax.train import loop as loop_lib
from spct_jax.train import mesh as mesh_lib
from spct_jax.train import scalar
from spct_jax.train import stages
from spct_jax.train import warmup

TRAIN_SEED_OFFSET = 3  # the meta RM's training items come from their own generator seed
BATCH_KEYS = ("tokens", "pad_mask", "label", "weight")


@dataclasses.dataclass
class Sample:
  """One sampled critique: the example as the GRM saw it (responses shuffled), its text, and
  whether it is correct by the rule (invalid critiques are not)."""
  shown: GRMExample
  text: str
  correct: bool
  valid: bool


def sample_critiques(items: Sequence[GRMExample], *, k: int, seed: int, sampling, max_new_tokens: int,
                     **sample_kwargs) -> list[Sample]:
  """k critiques per item (shuffled orders as `judge.plan_requests`), labelled by the rule."""
  requests = judge_lib.plan_requests(items, k, seed)
  results = judge_lib.sample_all(requests, seed=seed, sampling=sampling, max_new_tokens=max_new_tokens,
                                 desc="meta RM samples", **sample_kwargs)
  out = []
  for r, o in zip(requests, results):
    for s in range(r.n_samples):
      text = judge_lib.completion_text(sample_kwargs["tok"], o["tokens"][s], int(o["lengths"][s]), bool(o["done"][s]))
      parsed = scores_lib.parse_scores(text, r.example.n)
      out.append(Sample(r.example, text, scores_lib.is_correct(parsed, r.example.label, r.example.n),
                        parsed is not None))
  return out


def encode(shown: GRMExample, critique: str, tok, *, max_len: int, style: str,
           stats: pipeline.LengthStats | None = None) -> list[int] | None:
  """Ids of the meta RM's input for one critique (None when too long; counted in stats)."""
  enc = pipeline.encode_sft(shown, critique, tok, max_len=max_len, variant="meta", style=style, stats=stats)
  return None if enc is None else enc[0].tolist()


def rows(samples: Sequence[Sample], tok, *, max_len: int, style: str) -> tuple[dict[str, np.ndarray], int]:
  """Right-padded training rows (BATCH_KEYS) and the number of samples left out as too long."""
  stats = pipeline.LengthStats()
  ids, labels = [], []
  for s in samples:
    x = encode(s.shown, s.text, tok, max_len=max_len, style=style, stats=stats)
    if x is not None:
      ids.append(x)
      labels.append(float(s.correct))
  if not ids:
    raise ValueError(f"meta RM: all {len(samples)} samples are longer than data.max_len={max_len}")
  tokens, pad_mask = pipeline.pad_right(ids, tok.pad_id)
  return {"tokens": tokens, "pad_mask": pad_mask, "label": np.asarray(labels, np.float32),
          "weight": np.ones(len(ids), np.float32)}, stats.too_long


def score_fn(mcfg):
  """jit(params, tokens, pad_mask) -> [B] meta scores."""
  return jax.jit(lambda p, t, m: reward.scores(mcfg, p, t, m))


def score_rows(fn, params, tokens: np.ndarray, pad_mask: np.ndarray, batch_size: int = 32) -> np.ndarray:
  """Scores of [N, T] rows in batches of `batch_size` (the last one filled with copies, so one
  shape compiles), trimmed to each batch's longest row rounded up to 64."""
  out = []
  for start in range(0, len(tokens), batch_size):
    t, m = tokens[start:start + batch_size], pad_mask[start:start + batch_size]
    real = len(t)
    if real < batch_size:
      t = np.concatenate([t, np.repeat(t[:1], batch_size - real, 0)])
      m = np.concatenate([m, np.repeat(m[:1], batch_size - real, 0)])
    width = min(-(-int(m.any(0).nonzero()[0].max() + 1) // 64) * 64, m.shape[1])
    out.append(np.asarray(fn(params, t[:, :width], m[:, :width]))[:real])
  return np.concatenate(out) if out else np.zeros((0,), np.float32)


def run(cfg, workdir: str) -> dict:
  t_start = time.perf_counter()
  out_dir = stages.stage_dir(workdir, cfg.stage)
  os.makedirs(out_dir, exist_ok=True)
  tok = warmup.load_tokenizer(cfg, workdir)
  mcfg, grm_params = stages.initial_params(cfg, workdir)
  mesh = mesh_lib.make_mesh(tuple(cfg.mesh.shape))
  m = cfg.meta_rm
  common = dict(k=m.samples_per_item, sampling=sampling_lib.Temperature(m.temperature),
                max_new_tokens=m.max_new_tokens, cfg=mcfg, params=grm_params, tok=tok,
                variant=cfg.data.variant, style=cfg.data.style, batch_size=m.sampler_batch, mesh=mesh)
  t0 = time.perf_counter()
  train = sample_critiques(warmup.items(cfg, m.n_items, cfg.seed + TRAIN_SEED_OFFSET),
                           seed=cfg.seed + TRAIN_SEED_OFFSET, **common)
  val = sample_critiques(warmup.validation_examples(cfg), seed=cfg.seed + warmup.VAL_SEED_OFFSET, **common)
  data, skipped = rows(train, tok, max_len=cfg.data.max_len, style=cfg.data.style)
  val_data, _ = rows(val, tok, max_len=cfg.data.max_len, style=cfg.data.style)
  base_rate = float(data["label"].mean())
  print(f"[meta_rm] sampled {len(train)} training critiques ({100 * base_rate:.1f}% correct, "
        f"{sum(not s.valid for s in train)} invalid; {skipped} left out as longer than data.max_len) "
        f"and {len(val)} held-out ones in {time.perf_counter() - t0:.0f}s", flush=True)

  params = reward.from_lm(grm_params, mcfg, jax.random.key(cfg.seed + 5))
  st, step = warmup.setup_training(cfg, mcfg, params, scalar.bce_loss_fn(mcfg), mesh, BATCH_KEYS,
                                   logical=reward.logical_axes(mcfg))
  fn = score_fn(mcfg)

  def eval_fn(state) -> dict:
    s = score_rows(fn, state.params, val_data["tokens"], val_data["pad_mask"])
    y = val_data["label"] > 0.5
    return {"val_meta_accuracy": float(((s > 0) == y).mean()), "val_meta_auc": evaluate.roc_auc(s, y),
            "val_meta_base_rate": float(y.mean())}

  with mesh_lib.activation_sharding(mesh):
    st, last = loop_lib.run(out_dir, st, step, loop_lib.batches_from(data, cfg.train.batch_size, cfg.seed, trim_multiple=64),
                            warmup.loop_config(cfg), mesh, eval_fn=eval_fn, desc="meta_rm")
  params = jax.device_get(st.params)
  ckpt_lib.export_params(params, model_config.to_dict(mcfg), os.path.join(out_dir, "final"), tok)
  summary = {"stage": "meta_rm", "train_samples": len(data["label"]), "train_correct_rate": base_rate,
             "skipped_too_long": skipped, "steps": cfg.train.steps, "final_loss": last.get("loss"),
             "wall_seconds": time.perf_counter() - t_start,
             **{k: v for k, v in last.items() if k.startswith("val_")}}
  warmup.print_summary(summary)
  return summary
