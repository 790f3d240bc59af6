"""The warm-up stage: SFT on the synthetic teacher's critiques (the stand-in for a pretrained GRM).

Every training item is shown in a random response order, the teacher writes principles +
analysis + scores for that order, and the model learns the critique tokens (and, from scratch,
the prompt's tokens at `data.prompt_loss_weight`). At the end: greedy and voting@k accuracy on
held-out items (another seed).
"""
from __future__ import annotations

from spct_jax.train import stage


def run(cfg, workdir: str) -> dict:
  s = stage.begin(cfg, workdir)
  if cfg.data.source != "synthetic":
    raise ValueError(f"config data.source={cfg.data.source!r}: the warm-up trains on the synthetic "
                     "teacher's critiques; start later stages from your own data instead")
  train = stage.items(cfg, cfg.data.n_train, stage.seed(cfg, "warmup"))
  pairs = stage.teacher_pairs(cfg, train, stage.seed(cfg, "warmup"))
  rows, skipped = stage.sft_rows(pairs, s.tok, max_len=cfg.data.max_len, variant=cfg.data.variant,
                                 style=cfg.data.style, prompt_weight=cfg.data.get("prompt_loss_weight", 0.0))
  n_tokens = int((rows["loss_mask"] > 0).sum())
  print(f"[warmup] {len(rows['tokens'])} training critiques ({n_tokens} target tokens); "
        f"{skipped} skipped as longer than data.max_len={cfg.data.max_len}", flush=True)
  params, last = stage.fit_sft(s, s.params, rows)
  return stage.finish(s, params, last, train_items=len(rows["tokens"]), skipped_too_long=skipped,
                      final_loss=last.get("loss"))
