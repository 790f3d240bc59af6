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


LOGIT_CHUNK = 256  # positions whose logits exist at once in token_logprobs


def token_logprobs(model, params: Any, tokens: jax.Array, pad_mask: jax.Array | None = None,
                   temperature: float = 1.0, with_entropy: bool = False, start: int = 0,
                   chunk: int = LOGIT_CHUNK):
  """log p(tokens[:, t] | tokens[:, :t]) for t >= start + 1: [B, T-1-start] float32.

  The distribution is softmax(logits / temperature): the one the sampler draws from before any
  top-k/top-p truncation, so the trainer's recomputed log-probs match the sampler's.
  with_entropy: also return that distribution's entropy at each position, [B, T-1-start].
  start: the first position whose next token is scored (a completion after a prompt of P tokens:
    start = P - 1); the LM head runs on those positions only.
  The head runs `chunk` positions at a time as logit[target] - logsumexp(logits), rematerialised
  in the backward pass, so no [B, T, V] float32 array exists (the vocabulary is 256k for Gemma).
  """
  from spct_jax.model import transformer
  cfg = model.cfg
  hidden = model.apply({"params": params}, tokens, pad_mask=pad_mask, head=False)[:, start:-1]
  targets = tokens[:, start + 1:]
  weight = transformer.head_weight(cfg, params)
  b, n, d = hidden.shape
  c = max(1, min(chunk, n))
  m = -(-n // c)
  hidden = jnp.pad(hidden, ((0, 0), (0, m * c - n), (0, 0))).reshape(b, m, c, d).swapaxes(0, 1)
  targets = jnp.pad(targets, ((0, 0), (0, m * c - n))).reshape(b, m, c).swapaxes(0, 1)

  @jax.checkpoint
  def one(xs):
    h, t = xs
    logits = transformer.head_logits(cfg, h, weight) / temperature  # [B, c, V] float32
    lse = jax.nn.logsumexp(logits, axis=-1)
    lp = jnp.take_along_axis(logits, t[..., None], axis=-1)[..., 0] - lse
    ent = lse - (jax.nn.softmax(logits, axis=-1) * logits).sum(-1)
    return lp, ent

  lp, ent = jax.lax.map(one, (hidden, targets))  # [M, B, c]
  lp, ent = (x.swapaxes(0, 1).reshape(b, m * c)[:, :n] for x in (lp, ent))
  return (lp, ent) if with_entropy else lp


def loss_fn(model):
  """The SFT (sum, count, aux) loss for `step.make_step`."""
  def fn(params, batch, rng):
    del rng
    lp = token_logprobs(model, params, batch["tokens"], batch["pad_mask"])  # [B, T-1]
    mask = batch["loss_mask"][:, 1:].astype(jnp.float32)
    return -(lp * mask).sum(), mask.sum(), {}
  return fn
