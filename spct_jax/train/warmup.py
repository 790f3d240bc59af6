"""The warm-up stage: SFT on the synthetic teacher's critiques (the stand-in for a pretrained GRM).

Every training item is shown in a random response order, the teacher writes principles +
analysis + scores for that order, and the model learns the critique tokens (prompt masked).
At the end: greedy and voting@k accuracy on held-out items (another seed).
"""
from __future__ import annotations

import os
import time
from typing import Any

import jax
import numpy as np

from spct_jax import judge as judge_lib
from spct_jax import sampling as sampling_lib
from spct_jax.data import pipeline, sources, synthetic
from spct_jax.evaluate import judgement_metrics
from spct_jax.grm import prompts
from spct_jax.model import config as model_config
from spct_jax.model import transformer
from spct_jax.tokenizer import Tokenizer
from spct_jax.train import checkpoint as ckpt_lib
from spct_jax.train import loop as loop_lib
from spct_jax.train import mesh as mesh_lib
from spct_jax.train import sft
from spct_jax.train import stages
from spct_jax.train import state as state_lib
from spct_jax.train import step as step_lib

VAL_SEED_OFFSET = 1_000_003  # held-out items come from a different generator seed


def load_tokenizer(cfg, workdir: str | None = None) -> Tokenizer:
  """cfg.tokenizer, else the tokenizer.model of the model cfg.init starts from (a Hugging Face
  folder, an export, or another stage's final/ in `workdir`, which every stage writes), else the
  bundled one."""
  path = cfg.tokenizer
  kind, _, where = cfg.init.partition(":")
  folder = {"hf": where, "export": where}.get(kind)
  if kind == "stage" and workdir is not None:
    folder = os.path.join(stages.stage_dir(workdir, where), "final")
  if not path and folder:
    candidate = os.path.join(folder, "tokenizer.model")
    path = candidate if os.path.exists(candidate) else ""
  return Tokenizer.load(path or None)


def items(cfg, n: int, seed: int, split: str = "train") -> list:
  """Training or held-out items: synthetic ones from `seed`, or the user's file (cfg.data.source,
  any format `sources.load_examples` reads; the held-out split is cfg.data.val_source)."""
  source = cfg.data.source if split == "train" else cfg.data.get("val_source", "") or "synthetic"
  if source == "synthetic":
    return synthetic.generate(n, seed=seed, difficulty=cfg.data.difficulty, n_responses=tuple(cfg.data.n_responses))
  examples, stats = sources.load_examples(source, cfg.data.format or "auto", skip_invalid=cfg.data.get("skip_invalid", False))
  print(f"[data] {source}: {stats.summary() if hasattr(stats, 'summary') else stats}", flush=True)
  if not examples:
    raise ValueError(f"config data.source={source!r}: no usable example")
  order = np.random.default_rng(seed).permutation(len(examples))[:n]
  return [examples[i] for i in order]


def sft_rows(pairs, tok, *, max_len: int, variant: str, style: str, prompt_weight: float = 0.0
             ) -> tuple[dict[str, np.ndarray], int]:
  """(example as shown, critique) pairs -> right-padded SFT rows (`pipeline.batch_sft`) and the
  number of items left out as too long (reported, never silent).

  prompt_weight > 0: the prompt's tokens are targets too, with this weight (loss_mask becomes
  float32: 1 on the critique, prompt_weight on the prompt, 0 on padding). Training from scratch,
  this language-modelling signal on the tasks' own text (tables, dialogues, responses that copy
  facts) is the stand-in for pre-training: it teaches the model to read and copy, which judging
  needs; fine-tuning a pretrained model keeps the default 0 (completion tokens only)."""
  rows, stats = pipeline.batch_sft(pairs, tok, max_len=max_len, variant=variant, style=style)
  if prompt_weight:
    prompt = rows["pad_mask"] & ~rows["loss_mask"]
    rows["loss_mask"] = rows["loss_mask"].astype(np.float32) + np.float32(prompt_weight) * prompt
  if stats.truncated or stats.too_long:
    print(f"[data] length policy: {stats.summary()}", flush=True)
  if not len(rows["tokens"]):
    raise ValueError(f"all {stats.too_long} items are longer than data.max_len={max_len} tokens")
  return rows, stats.too_long


def teacher_pairs(examples, seed: int, error_rate: float, variant: str):
  """Each example in a random order with the teacher's critique for that order."""
  rng = np.random.default_rng(seed)
  pairs = []
  for ex in examples:
    shown, _ = prompts.shuffle(ex, rng)
    critique = synthetic.teacher_critique(shown, rng, error_rate=error_rate)
    if variant == "no_principles":
      critique = critique.split("\n", 1)[1] if critique.startswith(prompts.PRINCIPLES_LABEL) else critique
    pairs.append((shown, critique))
  return pairs


def setup_training(cfg, mcfg: model_config.ModelConfig, params: Any, loss_fn, mesh,
                   batch_keys=("tokens", "pad_mask", "loss_mask"), logical: Any = None):
  """(state, jitted step) with the state sharded on `mesh` by the logical rules and batches
  (dicts of [B, ...] arrays under `batch_keys`) split over the data axes.

  logical: the params' logical axis names (default: the transformer's, transformer.logical_axes)."""
  opt = dict(cfg.opt)
  opt["total_steps"] = opt["total_steps"] or cfg.train.steps
  opt_cfg = state_lib.OptimConfig.from_dict(opt)
  tx = state_lib.make_optimizer(opt_cfg)
  mesh_lib.check_batch(cfg.train.batch_size, mesh, "train.batch_size")
  st = state_lib.create(params, tx, jax.random.key(cfg.seed + 1))
  logical = transformer.logical_axes(mcfg) if logical is None else logical
  names = state_lib.logical_axes(tx, logical, st.params)
  shardings = mesh_lib.shardings_for(names, st, mesh)
  st = jax.device_put(st, shardings)
  step = step_lib.make_step(loss_fn, tx, micro_batches=cfg.train.micro_batches,
                            state_shardings=shardings,
                            batch_shardings={k: mesh_lib.batch_sharding(mesh) for k in batch_keys},
                            schedule=state_lib.schedule(opt_cfg))
  return st, step


def heldout_accuracy(cfg, mcfg, params, tok, examples, *, mesh, variant: str, style: str) -> dict:
  """Greedy and voting@k (sum) accuracy on held-out items."""
  common = dict(cfg=mcfg, params=params, tok=tok, max_new_tokens=cfg.eval.max_new_tokens,
                seed=cfg.seed, variant=variant, style=style, mesh=mesh)
  t0 = time.perf_counter()
  greedy = judge_lib.judge(examples, k=1, sampling=sampling_lib.Greedy(), desc="held-out greedy", **common)
  voted = judge_lib.judge(examples, k=cfg.eval.k, sampling=sampling_lib.Temperature(cfg.eval.temperature),
                          desc=f"held-out k={cfg.eval.k}", **common)
  g, v = judgement_metrics(examples, greedy), judgement_metrics(examples, voted)
  return {"val_accuracy": g["accuracy"], "val_valid_rate": g["valid_rate"],
          "val_chance": float(np.mean([1.0 / ex.n if ex.n >= 2 else 0.0 for ex in examples])),
          f"val_voting@{cfg.eval.k}_accuracy": v["accuracy"], f"val_voting@{cfg.eval.k}_valid_rate": v["valid_rate"],
          "eval_seconds": time.perf_counter() - t0}


def validation_examples(cfg):
  """Held-out items (pairwise and multi-response when synthetic): the same for every stage."""
  if (cfg.data.get("val_source", "") or "synthetic") == "synthetic":
    return synthetic.generate(cfg.eval.n, seed=cfg.seed + VAL_SEED_OFFSET, difficulty=cfg.data.difficulty,
                              n_responses=(2, 3, 4))
  return items(cfg, cfg.eval.n, cfg.seed + VAL_SEED_OFFSET, split="val")


def train_sft(cfg, mcfg, params, rows: dict, out_dir: str, tok, mesh, desc: str) -> tuple[Any, dict]:
  """SFT on `rows` for cfg.train.steps (resuming from out_dir), evaluated on held-out items at the end.

  Returns (host params, last metrics including val_*)."""
  model = transformer.Transformer(mcfg)
  st, step = setup_training(cfg, mcfg, params, sft.loss_fn(model), mesh)
  val = validation_examples(cfg)
  eval_fn = lambda s: heldout_accuracy(cfg, mcfg, s.params, tok, val, mesh=mesh,
                                       variant=cfg.data.variant, style=cfg.data.style)
  with mesh_lib.activation_sharding(mesh):
    st, last = loop_lib.run(out_dir, st, step, loop_lib.batches_from(rows, cfg.train.batch_size, cfg.seed, trim_multiple=64),
                            loop_config(cfg), mesh, eval_fn=eval_fn, desc=desc)
  return jax.device_get(st.params), last


def loop_config(cfg) -> loop_lib.LoopConfig:
  return loop_lib.LoopConfig(steps=cfg.train.steps, log_every=cfg.train.log_every,
                             ckpt_every=cfg.train.ckpt_every, eval_every=cfg.train.eval_every,
                             keep_last=cfg.checkpoint.keep_last, keep_best=cfg.checkpoint.keep_best,
                             async_save=cfg.checkpoint.async_save)


def run(cfg, workdir: str) -> dict:
  t_start = time.perf_counter()
  out_dir = stages.stage_dir(workdir, cfg.stage)
  tok = load_tokenizer(cfg, workdir)
  mcfg, params = stages.initial_params(cfg, workdir)
  if mcfg.vocab_size < tok.vocab_size:
    raise ValueError(f"tokenizer has {tok.vocab_size} pieces but the model's vocab_size is {mcfg.vocab_size}")
  mesh = mesh_lib.make_mesh(tuple(cfg.mesh.shape))
  if cfg.data.source != "synthetic":
    raise ValueError(f"config data.source={cfg.data.source!r}: the warm-up trains on the synthetic "
                     "teacher's critiques; start later stages from your own data instead")
  train = synthetic.generate(cfg.data.n_train, seed=cfg.seed, difficulty=cfg.data.difficulty,
                             n_responses=tuple(cfg.data.n_responses))
  pairs = teacher_pairs(train, cfg.seed, cfg.data.error_rate, cfg.data.variant)
  rows, skipped = sft_rows(pairs, tok, max_len=cfg.data.max_len, variant=cfg.data.variant, style=cfg.data.style,
                           prompt_weight=cfg.data.get("prompt_loss_weight", 0.0))
  n_tokens = int((rows["loss_mask"] > 0).sum())
  print(f"[warmup] {len(rows['tokens'])} training critiques ({n_tokens} target tokens); "
        f"{skipped} skipped as longer than data.max_len={cfg.data.max_len}", flush=True)
  params, last = train_sft(cfg, mcfg, params, rows, out_dir, tok, mesh, "warmup")
  ckpt_lib.export_params(params, model_config.to_dict(mcfg), os.path.join(out_dir, "final"), tok)
  summary = {"stage": "warmup", "train_items": len(rows["tokens"]), "skipped_too_long": skipped,
             "steps": cfg.train.steps, "final_loss": last.get("loss"),
             "wall_seconds": time.perf_counter() - t_start,
             **{k: v for k, v in last.items() if k.startswith("val_")}}
  print_summary(summary)
  return summary


def print_summary(summary: dict) -> None:
  print(f"\n== {summary['stage']} ==")
  for k, v in summary.items():
    if k != "stage":
      print(f"  {k:<32s}{v:.4f}" if isinstance(v, float) else f"  {k:<32s}{v}")
  print(flush=True)
