"""Supervised fine-tuning on critiques: cross-entropy on completion tokens only.

Used by the warm-up stage (teacher trajectories) and by RFT (kept trajectories). A batch is
    tokens    [B, T] int32  prompt + completion, right-padded
    pad_mask  [B, T] bool   True on real tokens
    loss_mask [B, T] bool   True on completion tokens (the targets), False on prompt and padding
                            (or float32 weights: the warm-up from scratch also weighs the prompt)
The loss is the summed negative log-likelihood of the masked tokens divided by their number in
the global batch (the sum of the weights; a (sum, count) pair, so gradient accumulation stays
exact).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def token_logprobs(model, params: Any, tokens: jax.Array, pad_mask: jax.Array | None = None,
                   temperature: float = 1.0, with_entropy: bool = False):
  """log p(tokens[:, t] | tokens[:, :t]) for t >= 1: [B, T-1] float32.

  The distribution is softmax(logits / temperature): the one the sampler draws from before any
  top-k/top-p truncation, so the trainer's recomputed log-probs match the sampler's.
  with_entropy: also return that distribution's entropy at each position, [B, T-1].
  """
  logits = model.apply({"params": params}, tokens, pad_mask=pad_mask)  # [B, T, V] float32
  logits = logits[:, :-1].astype(jnp.float32) / temperature
  logp = jax.nn.log_softmax(logits, axis=-1)
  lp = jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
  if with_entropy:
    return lp, -(jnp.exp(logp) * logp).sum(-1)
  return lp


def loss_fn(model):
  """The SFT (sum, count, aux) loss for `step.make_step`."""
  def fn(params, batch, rng):
    del rng
    lp = token_logprobs(model, params, batch["tokens"], batch["pad_mask"])  # [B, T-1]
    mask = batch["loss_mask"][:, 1:].astype(jnp.float32)
    return -(lp * mask).sum(), mask.sum(), {}
  return fn
