"""Stage 2 of SPCT: rule-based online RL with GRPO (METHOD.md section 4).

Each step: B training items, G critiques each from the current policy (response order shuffled,
spread over several orders per item as in `judge`), rule rewards +1/-1, group-normalised
advantages, then `mu` updates of the clipped surrogate plus beta * KL to the frozen reference
(the stage it starts from), in one jitted, sharded step with the state donated.

The ratio's denominator pi_old is the rollout policy: at the first inner update it is the current
params themselves (stop-gradient of the recomputed log-probs, so the ratio is exactly 1 and the
gradient is REINFORCE with a group baseline plus the KL term); later inner updates use the
sampler's log-probs of the rollout (same distribution: after temperature, before truncation).

The policy's and the reference's passes run each prompt once for the rollouts that share it
(`sft.shared_token_logprobs`): the batch is grouped by prompt, k rows per prompt (`build_batch`),
where k is what the item's orders allow (G / P samples per order, `judge.orders_per_item`; the
batch's k divides every order's count).
"""
from __future__ import annotations

import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from spct_jax import judge as judge_lib
from spct_jax import mesh as mesh_lib
from spct_jax import sampling as sampling_lib
from spct_jax.data import pipeline
from spct_jax.grm import scores as scores_lib
from spct_jax.model import config as config_lib
from spct_jax.model import transformer
from spct_jax.train import rl
from spct_jax.train import sft
from spct_jax.train import stage
from spct_jax.train import state as state_lib
from spct_jax.train import step as step_lib

BATCH_KEYS = ("prompts", "prompt_mask", "completions", "completion_mask", "old_logprobs", "ref_logprobs",
              "advantages")


def loss_fn(model, *, temperature: float, clip_eps: float, beta: float, kl_estimator: str,
            aggregation: str, on_policy: bool):
  """GRPO (sum, count, aux) loss over a batch of rollouts (see `build_batch`), each prompt run once
  for its k completions (`sft.shared_token_logprobs`)."""
  def fn(params, batch, rng):
    del rng
    p, k, n = batch["completions"].shape
    mask = batch["completion_mask"].reshape(p * k, n).astype(jnp.float32)
    lp, ent = sft.shared_token_logprobs(model, params, batch["prompts"], batch["prompt_mask"], batch["completions"],
                                        batch["completion_mask"], temperature, with_entropy=True)
    lp, ent = lp.reshape(p * k, n), ent.reshape(p * k, n)
    old = jax.lax.stop_gradient(lp) if on_policy else batch["old_logprobs"].reshape(p * k, n)
    per_tok, parts = rl.grpo_token_loss(lp, old, batch["ref_logprobs"].reshape(p * k, n),
                                        batch["advantages"].reshape(p * k), clip_eps=clip_eps, beta=beta,
                                        kl_estimator=kl_estimator)
    s, c = rl.aggregate(per_tok, mask, aggregation)
    aux = {"kl": (parts["kl"] * mask).sum(), "clipped": (parts["clipped"] * mask).sum(),
           "entropy": (ent * mask).sum(), "tokens": mask.sum()}
    return s, c, aux
  return fn


def reference_params(params: Any, mcfg) -> Any:
  """The frozen reference policy: a copy of `params` in the compute dtype (bf16 on TPU/GPU: half
  the float32 master weights), sharded like them. The forward pass casts to that dtype anyway,
  so the reference's log-probs are the same as from the float32 copy."""
  dtype = jnp.dtype(mcfg.dtype)  # a real copy either way: the train step donates `params`
  return jax.tree.map(lambda x: x.astype(dtype) if x.dtype == jnp.float32 and dtype != x.dtype else x.copy(),
                      params)


def reference_pass(model, temperature: float, micro_batches: int = 1):
  """jit(ref_params, prompts [P, Tp], prompt_mask, completions [P, k, N], completion_mask) -> the
  reference's log-probs of the completions, [P, k, N] float32 (each prompt run once for its k
  completions, `sft.shared_token_logprobs`), `micro_batches` blocks of prompts at a time (strided
  as the train step splits them)."""
  def fn(params, prompts, prompt_mask, completions, completion_mask):
    def one(b):
      return sft.shared_token_logprobs(model, params, b["prompts"], b["prompt_mask"], b["completions"],
                                       b["completion_mask"], temperature)
    batch = {"prompts": prompts, "prompt_mask": prompt_mask, "completions": completions,
             "completion_mask": completion_mask}
    if micro_batches == 1:
      return one(batch)
    out = jax.lax.map(one, step_lib.split_micro(batch, micro_batches))  # [M, P/M, k, N]
    return jnp.swapaxes(out, 0, 1).reshape(completions.shape)
  return jax.jit(fn)


def shared_group(runs: list[int], multiple: int = 1) -> int:
  """k, the rows per prompt of a batch whose consecutive rows share a prompt in `runs` (lengths of
  the runs of one prompt, in row order): the largest k that divides every run and leaves a number of
  prompt groups sum(runs) / k divisible by `multiple` (the data axes' size times the micro-batches,
  so the groups split over both). 1 when no two rows share a prompt."""
  rows, k0 = sum(runs), math.gcd(*runs)
  return max(k for k in range(1, k0 + 1) if k0 % k == 0 and (rows // k) % multiple == 0)


def build_batch(rollouts: list[judge_lib.Critique], rewards: np.ndarray, *, pad_id: int, G: int,
                multiple: int = 1) -> dict:
  """Rollouts, G consecutive ones per item (the samples of one prompt consecutive within it) -> the
  batch of `loss_fn`, grouped by prompt: k rows per prompt (`shared_group`), P = R / k groups.
      prompts, prompt_mask           [P, Tp]     left-padded to a bucket
      completions, completion_mask   [P, k, N]   right-padded; the mask is True on the completion
                                                 (stop token included): the loss positions
      old_logprobs                   [P, k, N]   the sampler's log-probs (what `loss_fn` recomputes)
      advantages                     [P, k]      group-normalised over each item's G rows
  Row r of the rollouts is [r // k, r % k]."""
  R = len(rollouts)
  runs = [1]
  for a, b in zip(rollouts, rollouts[1:]):
    if b.prompt == a.prompt:
      runs[-1] += 1
    else:
      runs.append(1)
  k = shared_group(runs, multiple)
  P, tp, n = R // k, pipeline.bucket_length(max(len(c.prompt) for c in rollouts)), rollouts[0].tokens.shape[0]
  prompts = np.full((P, tp), pad_id, np.int32)
  prompt_mask = np.zeros((P, tp), bool)
  completions = np.full((R, n), pad_id, np.int32)
  completion_mask = np.zeros((R, n), bool)
  old = np.zeros((R, n), np.float32)
  for i, c in enumerate(rollouts):
    if i % k == 0:
      prompts[i // k, tp - len(c.prompt):] = c.prompt
      prompt_mask[i // k, tp - len(c.prompt):] = True
    completions[i, :c.length] = c.tokens[:c.length]
    completion_mask[i, :c.length] = True
    old[i, :c.length] = c.logprobs[:c.length]
  adv = np.asarray(rl.group_advantages(jnp.asarray(rewards), G), np.float32)
  return {"prompts": prompts, "prompt_mask": prompt_mask, "completions": completions.reshape(P, k, n),
          "completion_mask": completion_mask.reshape(P, k, n), "old_logprobs": old.reshape(P, k, n),
          "advantages": adv.reshape(P, k)}


def batch_shapes(rows: int, prompt_len: int, new_tokens: int, k: int = 1, sharding: Any = None) -> dict:
  """jax.ShapeDtypeStruct of each BATCH_KEYS leaf for `rows` rollouts, k per prompt, to lower the
  step ahead of time (k = 1, each row its own prompt: the largest batch, what a memory plan holds)."""
  p = rows // k
  shapes = {"prompts": ((p, prompt_len), jnp.int32), "prompt_mask": ((p, prompt_len), jnp.bool_),
            "completions": ((p, k, new_tokens), jnp.int32), "completion_mask": ((p, k, new_tokens), jnp.bool_),
            "old_logprobs": ((p, k, new_tokens), jnp.float32), "ref_logprobs": ((p, k, new_tokens), jnp.float32),
            "advantages": ((p, k), jnp.float32)}
  return {name: jax.ShapeDtypeStruct(shape, dt, sharding=sharding) for name, (shape, dt) in shapes.items()}


def sampled_batch(prompts: Any, prompt_mask: Any, out: sampling_lib.SampleOutput) -> dict:
  """The prompt and completion keys of `build_batch` from one sampler call on [P, Tp] left-padded
  prompts: each prompt with its k samples (old_logprobs: the sampler's)."""
  p, k, n = out.tokens.shape
  return {"prompts": jnp.asarray(prompts, jnp.int32), "prompt_mask": jnp.asarray(prompt_mask, bool),
          "completions": out.tokens, "completion_mask": jnp.arange(n) < out.lengths[..., None],
          "old_logprobs": out.logprobs}


def run(cfg, workdir: str) -> dict:
  s = stage.begin(cfg, workdir)
  g = cfg.grpo
  G, B = g.group_size, g.prompts_per_step
  if cfg.train.batch_size != B * G:
    raise ValueError(f"config train.batch_size={cfg.train.batch_size} must equal grpo.prompts_per_step * "
                     f"grpo.group_size = {B * G} (rollout rows per step; the GRPO configs derive it, so "
                     "set those two and leave train.batch_size alone)")
  model = transformer.Transformer(s.mcfg)
  common = dict(temperature=g.temperature, clip_eps=g.clip_eps, beta=g.beta, kl_estimator=g.kl_estimator,
                aggregation=g.aggregation)
  st, make_step = stage.train_state(cfg, s.mcfg, s.params, s.mesh)
  step_first = make_step(loss_fn(model, on_policy=True, **common), BATCH_KEYS)
  step_later = make_step(loss_fn(model, on_policy=False, **common), BATCH_KEYS) if g.mu > 1 else None
  if s.mcfg.lora_rank:  # the start model is the frozen base (fresh adapters are zero): no copy
    ref_model, ref_params = transformer.Transformer(config_lib.replace(s.mcfg, lora_rank=0)), None
  else:
    ref_model, ref_params = model, reference_params(st.params, s.mcfg)
  ref_logprobs = reference_pass(ref_model, g.temperature, cfg.train.micro_batches)
  items = stage.items(cfg, g.n_items, stage.seed(cfg, "grpo"))
  sampler = sampling_lib.Temperature(g.temperature)

  def get_batch(step: int, state) -> tuple[dict, dict]:
    t0 = time.perf_counter()
    idx = np.random.default_rng([cfg.seed, step]).choice(len(items), size=B, replace=False)
    chosen = [items[i] for i in idx]
    rollouts = judge_lib.sample_critiques(
        chosen, G, cfg.seed * stage.GRPO_ORDERS + step, sample_seed=cfg.seed * stage.GRPO_SAMPLES + step,
        cfg=s.mcfg, params=state_lib.model_params(state), tok=s.tok, sampling=sampler, max_new_tokens=g.max_new_tokens,
        variant=cfg.data.variant, style=cfg.data.style, batch_size=g.sampler_batch, mesh=s.mesh)
    rollouts.sort(key=lambda c: c.item)  # G consecutive rows per item (stable: request order within one)
    rewards = np.asarray([scores_lib.rule_reward(c.parsed, c.shown.label, c.shown.n) for c in rollouts], np.float32)
    batch = build_batch(rollouts, rewards, pad_id=s.tok.pad_id, G=G,
                        multiple=mesh_lib.data_size(s.mesh) * cfg.train.micro_batches)
    placed = mesh_lib.shard_batch({k: batch[k] for k in BATCH_KEYS[:4]}, s.mesh)
    batch["ref_logprobs"] = mesh_lib.fetch(ref_logprobs(state.frozen if ref_params is None else ref_params,
                                                        *(placed[k] for k in BATCH_KEYS[:4])))
    dt = time.perf_counter() - t0
    lengths = np.asarray([c.length for c in rollouts])
    return batch, {"reward": float(rewards.mean()), "accuracy": float((rewards > 0).mean()),
                   "signal_groups": float((rewards.reshape(-1, G).std(axis=1) > 0).mean()),
                   "valid_rate": float(np.mean([c.valid for c in rollouts])),
                   "critique_length": float(lengths.mean()), "rollout_tokens_per_s": float(lengths.sum() / dt)}

  def step_fn(state, batch):
    t0 = time.perf_counter()
    state, m = step_first(state, batch)
    for _ in range(g.mu - 1):
      state, m = step_later(state, batch)
    m = mesh_lib.fetch(m)
    tokens = max(float(m["tokens_sum"]), 1.0)
    return state, {"loss": m["loss"], "kl": m["kl_sum"] / tokens, "clip_fraction": m["clipped_sum"] / tokens,
                   "entropy": m["entropy_sum"] / tokens, "grad_norm": m["grad_norm"], "lr": m.get("lr", 0.0),
                   "update_tokens_per_s": g.mu * tokens / (time.perf_counter() - t0), "count": tokens}

  params, last = stage.fit(s, st, step_fn, get_batch, stage.heldout(s))
  return stage.finish(s, params, last, **{k: last[k] for k in ("reward", "accuracy", "valid_rate", "kl") if k in last})
