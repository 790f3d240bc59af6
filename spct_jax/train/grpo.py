"""Stage 2 of SPCT: rule-based online RL with GRPO (METHOD.md section 4).

Each step: B training items, G critiques each from the current policy (response order shuffled,
spread over several orders per item as in `judge`), rule rewards +1/-1, group-normalised
advantages, then `mu` updates of the clipped surrogate plus beta * KL to the frozen reference
(the stage it starts from), in one jitted, sharded step with the state donated.

The ratio's denominator pi_old is the rollout policy: at the first inner update it is the current
params themselves (stop-gradient of the recomputed log-probs, so the ratio is exactly 1 and the
gradient is REINFORCE with a group baseline plus the KL term); later inner updates use the
sampler's log-probs of the rollout (same distribution: after temperature, before truncation).
"""
from __future__ import annotations

import functools
import os
import time


import jax
import jax.numpy as jnp
import numpy as np

from spct_jax import judge as judge_lib
from spct_jax import sampling as sampling_lib
from spct_jax.grm import prompts
from spct_jax.grm import scores as scores_lib
from spct_jax.model import config as model_config
from spct_jax.model import transformer
from spct_jax.train import checkpoint as ckpt_lib
from spct_jax.train import loop as loop_lib
from spct_jax.train import mesh as mesh_lib
from spct_jax.train import rl
from spct_jax.train import sft
from spct_jax.train import stages
from spct_jax.train import warmup

BATCH_KEYS = ("tokens", "pad_mask", "loss_mask", "old_logprobs", "ref_logprobs", "advantages")
TRAIN_SEED_OFFSET = 2  # GRPO's training items come from their own generator seed


def loss_fn(model, *, temperature: float, clip_eps: float, beta: float, kl_estimator: str,
            aggregation: str, on_policy: bool):
  """GRPO (sum, count, aux) loss over a batch of rollouts (see BATCH_KEYS; [R, T] and [R])."""
  def fn(params, batch, rng):
    del rng
    lp, ent = sft.token_logprobs(model, params, batch["tokens"], batch["pad_mask"], temperature,
                                 with_entropy=True)
    mask = batch["loss_mask"][:, 1:].astype(jnp.float32)
    old = jax.lax.stop_gradient(lp) if on_policy else batch["old_logprobs"]
    per_tok, parts = rl.grpo_token_loss(lp, old, batch["ref_logprobs"], batch["advantages"],
                                        clip_eps=clip_eps, beta=beta, kl_estimator=kl_estimator)
    s, c = rl.aggregate(per_tok, mask, aggregation)
    aux = {"kl": (parts["kl"] * mask).sum(), "clipped": (parts["clipped"] * mask).sum(),
           "entropy": (ent * mask).sum(), "tokens": mask.sum()}
    return s, c, aux
  return fn


def rollout_rows(results, requests) -> list[tuple]:
  """One row per sample, item-major (G consecutive rows per item):
  (item, prompt ids, completion [N], length, logprobs [N], request, done)."""
  rows = []
  for r, o in zip(requests, results):
    for s in range(r.n_samples):
      rows.append((r.item, o["prompt"], np.asarray(o["tokens"][s]), int(o["lengths"][s]),
                   np.asarray(o["logprobs"][s]), r, bool(o["done"][s])))
  rows.sort(key=lambda x: x[0])  # stable: request order kept within an item
  return rows


def build_batch(rows, rewards: np.ndarray, *, pad_id: int, G: int) -> dict:
  """Left-padded prompts (to a bucket) + completions: [R, Tp + N] arrays and per-row advantages."""
  tp = sampling_lib.bucket_length(max(len(r[1]) for r in rows))
  n = rows[0][2].shape[0]
  R = len(rows)
  tokens = np.full((R, tp + n), pad_id, np.int32)
  pad_mask = np.zeros((R, tp + n), bool)
  loss_mask = np.zeros((R, tp + n), bool)
  old = np.zeros((R, tp + n - 1), np.float32)
  for i, (_, prompt, comp, length, lps, _, _) in enumerate(rows):
    tokens[i, tp - len(prompt):tp] = prompt
    pad_mask[i, tp - len(prompt):tp] = True
    tokens[i, tp:tp + length] = comp[:length]
    pad_mask[i, tp:tp + length] = True
    loss_mask[i, tp:tp + length] = True
    old[i, tp - 1:tp - 1 + length] = lps[:length]
  adv = np.asarray(rl.group_advantages(jnp.asarray(rewards), G))
  return {"tokens": tokens, "pad_mask": pad_mask, "loss_mask": loss_mask, "old_logprobs": old,
          "advantages": adv.astype(np.float32)}


def run(cfg, workdir: str) -> dict:
  t_start = time.perf_counter()
  out_dir = stages.stage_dir(workdir, cfg.stage)
  tok = warmup.load_tokenizer(cfg, workdir)
  mcfg, params = stages.initial_params(cfg, workdir)
  mesh = mesh_lib.make_mesh(tuple(cfg.mesh.shape))
  g = cfg.grpo
  G, B = g.group_size, g.prompts_per_step
  if cfg.train.batch_size != B * G:
    raise ValueError(f"config train.batch_size={cfg.train.batch_size} must equal "
                     f"grpo.prompts_per_step * grpo.group_size = {B * G} (rollout rows per step)")
  model = transformer.Transformer(mcfg)
  temperature = g.temperature
  common = dict(temperature=temperature, clip_eps=g.clip_eps, beta=g.beta, kl_estimator=g.kl_estimator,
                aggregation=g.aggregation)
  st, step_first = warmup.setup_training(cfg, mcfg, params, loss_fn(model, on_policy=True, **common),
                                         mesh, BATCH_KEYS)
  _, step_later = warmup.setup_training(cfg, mcfg, params, loss_fn(model, on_policy=False, **common),
                                        mesh, BATCH_KEYS) if g.mu > 1 else (None, None)
  ref_params = jax.tree.map(lambda x: x.copy(), st.params)  # frozen, sharded like the policy
  ref_logprobs = jax.jit(functools.partial(sft.token_logprobs, model, temperature=temperature))
  items = warmup.items(cfg, g.n_items, cfg.seed + TRAIN_SEED_OFFSET)
  sampler = sampling_lib.Temperature(temperature)

  def get_batch(step: int, state) -> tuple[dict, dict]:
    t0 = time.perf_counter()
    idx = np.random.default_rng([cfg.seed, step]).choice(len(items), size=B, replace=False)
    chosen = [items[i] for i in idx]
    requests = judge_lib.plan_requests(chosen, G, seed=cfg.seed * 1_000_003 + step)
    results = judge_lib.sample_all(requests, seed=cfg.seed * 7919 + step, cfg=mcfg, params=state.params,
                                   tok=tok, sampling=sampler, max_new_tokens=g.max_new_tokens,
                                   variant=cfg.data.variant, style=cfg.data.style, batch_size=g.sampler_batch,
                                   mesh=mesh)
    rows = rollout_rows(results, requests)
    rewards, valid = [], []
    for item, _, comp, length, _, req, done in rows:
      text = judge_lib.completion_text(tok, comp, length, done)
      parsed = scores_lib.parse_scores(text, req.example.n)
      sc = prompts.unshuffle(parsed, req.perm)
      rewards.append(scores_lib.rule_reward(sc, chosen[item].label, chosen[item].n))
      valid.append(parsed is not None)
    rewards = np.asarray(rewards, np.float32)
    batch = build_batch(rows, rewards, pad_id=tok.pad_id, G=G)
    batch["ref_logprobs"] = np.asarray(ref_logprobs(ref_params, batch["tokens"], batch["pad_mask"]))
    dt = time.perf_counter() - t0
    lengths = np.asarray([r[3] for r in rows])
    return batch, {"reward": float(rewards.mean()), "accuracy": float((rewards > 0).mean()),
                   "valid_rate": float(np.mean(valid)), "critique_length": float(lengths.mean()),
                   "rollout_tokens_per_s": float(lengths.sum() / dt)}

  def step_fn(state, batch):
    t0 = time.perf_counter()
    state, m = step_first(state, batch)
    for _ in range(g.mu - 1):
      state, m = step_later(state, batch)
    m = jax.device_get(m)
    tokens = max(float(m["tokens_sum"]), 1.0)
    return state, {"loss": m["loss"], "kl": m["kl_sum"] / tokens, "clip_fraction": m["clipped_sum"] / tokens,
                   "entropy": m["entropy_sum"] / tokens, "grad_norm": m["grad_norm"], "lr": m.get("lr", 0.0),
                   "update_tokens_per_s": g.mu * tokens / (time.perf_counter() - t0), "count": tokens}

  val = warmup.validation_examples(cfg)
  eval_fn = lambda s: warmup.heldout_accuracy(cfg, mcfg, s.params, tok, val, mesh=mesh,
                                              variant=cfg.data.variant, style=cfg.data.style)
  with mesh_lib.activation_sharding(mesh):
    st, last = loop_lib.run(out_dir, st, step_fn, get_batch, warmup.loop_config(cfg), mesh,
                            eval_fn=eval_fn, desc="grpo")
  ckpt_lib.export_params(jax.device_get(st.params), model_config.to_dict(mcfg), os.path.join(out_dir, "final"), tok)
  summary = {"stage": "grpo", "steps": cfg.train.steps, "wall_seconds": time.perf_counter() - t_start,
             **{k: last[k] for k in ("reward", "accuracy", "valid_rate", "kl") if k in last},
             **{k: v for k, v in last.items() if k.startswith("val_")}}
  warmup.print_summary(summary)
  return summary
