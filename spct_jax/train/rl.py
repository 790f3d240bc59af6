"""The RL maths of GRPO (METHOD.md section 4) as small pure functions over arrays.

Shapes: R rollouts (B prompts x G samples, row-major), T token positions.
    rewards [R], group size G                      -> advantages [R]
    logp, logp_old, logp_ref, mask [R, T]          -> per-token terms [R, T]
Losses are returned as (sum, count) pairs so gradient accumulation stays exact:
    token-mean:                 sum over all masked tokens / number of masked tokens
    sequence-mean-token-mean:   sum over rows of (row's token mean) / number of rows (the paper)
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

KL_ESTIMATORS = ("k1", "k2", "k3")
AGGREGATIONS = ("token-mean", "sequence-mean-token-mean")


def group_advantages(rewards_R: jax.Array, group_size: int, eps: float = 1e-6) -> jax.Array:
  """A_i = (r_i - mean(r)) / (std(r) + eps) within each group of `group_size` consecutive rows."""
  r = rewards_R.reshape(-1, group_size).astype(jnp.float32)
  a = (r - r.mean(axis=1, keepdims=True)) / (r.std(axis=1, keepdims=True) + eps)
  return a.reshape(-1)


def kl_penalty(logp: jax.Array, logp_ref: jax.Array, estimator: str = "k3") -> jax.Array:
  """Per-token estimate of KL(pi_theta || pi_ref) from samples of pi_theta.

  k1 = log(pi/pi_ref); k2 = (log(pi/pi_ref))^2 / 2; k3 = pi_ref/pi - log(pi_ref/pi) - 1 (>= 0,
  unbiased, low variance; Schulman's estimator).
  """
  log_ratio = logp - logp_ref
  if estimator == "k1":
    return log_ratio
  if estimator == "k2":
    return 0.5 * log_ratio ** 2
  if estimator == "k3":
    return jnp.exp(-log_ratio) + log_ratio - 1.0
  raise ValueError(f"config grpo.kl_estimator={estimator!r}; expected one of {KL_ESTIMATORS}")


def clipped_surrogate(logp: jax.Array, logp_old: jax.Array, advantages_R: jax.Array,
                      clip_eps: float) -> tuple[jax.Array, jax.Array]:
  """PPO's per-token objective min(r A, clip(r, 1-eps, 1+eps) A) (to maximise) and where it clipped.

  r = exp(logp - logp_old). Returns (objective [R, T], clipped [R, T] bool: the clipped branch
  was the smaller one, so the token's gradient is zero).
  """
  ratio = jnp.exp(logp - logp_old)
  a = advantages_R[:, None]
  unclipped = ratio * a
  clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * a
  return jnp.minimum(unclipped, clipped), clipped < unclipped


def aggregate(per_token: jax.Array, mask: jax.Array, mode: str) -> tuple[jax.Array, jax.Array]:
  """(sum, count) of a per-token quantity under `mode` (see the module docstring)."""
  mask = mask.astype(jnp.float32)
  if mode == "token-mean":
    return (per_token * mask).sum(), mask.sum()
  if mode == "sequence-mean-token-mean":
    per_row = (per_token * mask).sum(axis=1) / jnp.maximum(mask.sum(axis=1), 1.0)
    has = (mask.sum(axis=1) > 0).astype(jnp.float32)
    return (per_row * has).sum(), has.sum()
  raise ValueError(f"config grpo.aggregation={mode!r}; expected one of {AGGREGATIONS}")


def grpo_token_loss(logp, logp_old, logp_ref, advantages_R, *, clip_eps: float, beta: float,
                    kl_estimator: str = "k3") -> tuple[jax.Array, dict]:
  """Per-token loss to minimise: -(clipped surrogate) + beta * KL, and its parts."""
  surr, was_clipped = clipped_surrogate(logp, logp_old, advantages_R, clip_eps)
  kl = kl_penalty(logp, logp_ref, kl_estimator)
  return -surr + beta * kl, {"kl": kl, "clipped": was_clipped.astype(jnp.float32)}
