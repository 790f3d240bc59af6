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

BATCH_KEYS = ("tokens", "pad_mask", "loss_mask", "old_logprobs", "ref_logprobs", "advantages")


def loss_fn(model, *, temperature: float, clip_eps: float, beta: float, kl_estimator: str,
            aggregation: str, on_policy: bool):
  """GRPO (sum, count, aux) loss over a batch of rollouts (see BATCH_KEYS; [R, T] and [R])."""
  def fn(params, batch, rng):
    del rng
    n = batch["old_logprobs"].shape[1]  # completion slots: the LM head runs on those only
    mask = batch["loss_mask"][:, -n:].astype(jnp.float32)
    lp, ent = sft.token_logprobs(model, params, batch["tokens"], batch["pad_mask"], temperature,
                                 with_entropy=True, start=batch["tokens"].shape[1] - 1 - n, where=mask > 0)
    old = jax.lax.stop_gradient(lp) if on_policy else batch["old_logprobs"]
    per_tok, parts = rl.grpo_token_loss(lp, old, batch["ref_logprobs"], batch["advantages"],
                                        clip_eps=clip_eps, beta=beta, kl_estimator=kl_estimator)
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
  """jit(ref_params, tokens [R, T], pad_mask [R, T], n_new=N) -> the reference's log-probs of the
  last N slots, [R, N] float32, `micro_batches` row blocks at a time (strided as the train step
  splits them), the LM head on those slots only and in chunks (`sft.token_logprobs`)."""
  def fn(params, tokens, pad_mask, n_new):
    def one(t, m):
      return sft.token_logprobs(model, params, t, m, temperature, start=t.shape[1] - 1 - n_new,
                                where=m[:, -n_new:])
    if micro_batches == 1:
      return one(tokens, pad_mask)
    micro = step_lib.split_micro({"tokens": tokens, "pad_mask": pad_mask}, micro_batches)
    out = jax.lax.map(lambda mb: one(mb["tokens"], mb["pad_mask"]), micro)  # [M, R/M, N]
    return jnp.swapaxes(out, 0, 1).reshape(tokens.shape[0], n_new)
  return jax.jit(fn, static_argnames="n_new")


def build_batch(rollouts: list[judge_lib.Critique], rewards: np.ndarray, *, pad_id: int, G: int) -> dict:
  """Rollouts, G consecutive ones per item -> left-padded prompts (to a bucket) + completions:
  tokens, pad_mask, loss_mask [R, Tp + N]; the sampler's log-probs of the completion slots
  old_logprobs [R, N] (what `sft.token_logprobs(..., start=Tp - 1)` recomputes); advantages [R]."""
  tp = pipeline.bucket_length(max(len(c.prompt) for c in rollouts))
  n = rollouts[0].tokens.shape[0]
  R = len(rollouts)
  tokens = np.full((R, tp + n), pad_id, np.int32)
  pad_mask = np.zeros((R, tp + n), bool)
  loss_mask = np.zeros((R, tp + n), bool)
  old = np.zeros((R, n), np.float32)
  for i, c in enumerate(rollouts):
    prompt, length = c.prompt, c.length
    tokens[i, tp - len(prompt):tp] = prompt
    pad_mask[i, tp - len(prompt):tp] = True
    tokens[i, tp:tp + length] = c.tokens[:length]
    pad_mask[i, tp:tp + length] = True
    loss_mask[i, tp:tp + length] = True
    old[i, :length] = c.logprobs[:length]
  adv = np.asarray(rl.group_advantages(jnp.asarray(rewards), G))
  return {"tokens": tokens, "pad_mask": pad_mask, "loss_mask": loss_mask, "old_logprobs": old,
          "advantages": adv.astype(np.float32)}


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
    batch = build_batch(rollouts, rewards, pad_id=s.tok.pad_id, G=G)
    placed = mesh_lib.shard_batch({k: batch[k] for k in ("tokens", "pad_mask")}, s.mesh)
    batch["ref_logprobs"] = mesh_lib.fetch(ref_logprobs(state.frozen if ref_params is None else ref_params,
                                                        placed["tokens"], placed["pad_mask"],
                                                        n_new=batch["old_logprobs"].shape[1]))
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
