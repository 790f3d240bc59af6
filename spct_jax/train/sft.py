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
import numpy as np


LOGIT_CHUNK = 32  # positions whose logits exist at once in token_logprobs (measured best of 32-256 on CPU)


def token_logprobs(model, params: Any, tokens: jax.Array, pad_mask: jax.Array | None = None,
                   temperature: float = 1.0, with_entropy: bool = False, start: int = 0,
                   chunk: int = LOGIT_CHUNK, where: jax.Array | None = None):
  """log p(tokens[:, t] | tokens[:, :t]) for t >= start + 1: [B, T-1-start] float32.

  The distribution is softmax(logits / temperature): the one the sampler draws from before any
  top-k/top-p truncation, so the trainer's recomputed log-probs match the sampler's.
  with_entropy: also return that distribution's entropy at each position, [B, T-1-start].
  start: the first position whose next token is scored (a completion after a prompt of P tokens:
    start = P - 1); the LM head runs on those positions only.
  where: [B, T-1-start] bool, the positions whose values are needed (a loss mask); the others
    come back as 0. Each row's needed positions are gathered to its front, and a chunk that no
    row needs is skipped at run time (`lax.cond`), so the head costs what the longest row needs.
  The head runs `chunk` positions at a time as logit[target] - logsumexp(logits), and again chunk by
  chunk in the backward pass (`_chunked_head`), so no [B, T, V] float32 array exists (the vocabulary
  is 262k for Gemma 3) and the head's weight gradient is one [D, V] sum, not one per chunk.
  """
  hidden = model.apply({"params": params}, tokens, pad_mask=pad_mask, head=False)[:, start:-1]
  return head_logprobs(model.cfg, params, hidden, tokens[:, start + 1:], temperature, with_entropy, chunk, where)


def shared_token_logprobs(model, params: Any, prompts: jax.Array, prompt_mask: jax.Array,
                          completions: jax.Array, completion_mask: jax.Array, temperature: float = 1.0,
                          with_entropy: bool = False, chunk: int = LOGIT_CHUNK):
  """log p(completions[p, j, t] | prompt p, completions[p, j, :t]): [P, k, N] float32, with each
  prompt run once for its k completions (0 where completion_mask is False).

  prompts, prompt_mask: [P, Tp], left-padded (the last slot real); completions, completion_mask:
  [P, k, N], right-padded (True on the completion's tokens, stop token included). Equal to
  `token_logprobs` on the [P*k, Tp+N] rows that repeat each prompt k times (start=Tp-1,
  where=completion_mask), values and gradients, at a fraction of the cost: the prompt is prefilled
  once into a cache (`transformer.init_cache`), the k completions read its keys and values once per
  prompt (`transformer.share_prefix`, the sampler's shared prefix), and the gradients of the k
  completions meet in the prompt's one copy. with_entropy, chunk: as in `token_logprobs`.
  """
  from spct_jax.model import transformer
  cfg = model.cfg
  p, tp = prompts.shape
  _, k, n = completions.shape
  last = transformer._concrete(prompt_mask)  # checked outside jit only
  if last is not None and not last[:, -1].astype(bool).all():
    raise ValueError(f"prompt_mask: prompt row {int(np.argmin(last[:, -1]))} does not end with a real token "
                     "(prompts must be left-padded)")
  cache = transformer.init_cache(cfg, p, tp)
  prompt_hidden, cache = model.apply({"params": params}, prompts, pad_mask=prompt_mask, cache=cache, head=False)
  rows, mask = completions.reshape(p * k, n), completion_mask.reshape(p * k, n).astype(bool)
  hidden, _ = model.apply({"params": params}, rows, pad_mask=mask, cache=transformer.share_prefix(cfg, cache, k, n),
                          head=False)
  # the prompt's last position predicts each completion's first token, completion t its token t + 1
  hidden = jnp.concatenate([jnp.repeat(prompt_hidden[:, -1:], k, axis=0), hidden[:, :-1]], axis=1)
  out = head_logprobs(cfg, params, hidden, rows, temperature, with_entropy, chunk, where=mask)
  return jax.tree.map(lambda x: x.reshape(p, k, n), out)


def head_logprobs(cfg, params: Any, hidden: jax.Array, targets: jax.Array, temperature: float = 1.0,
                  with_entropy: bool = False, chunk: int = LOGIT_CHUNK, where: jax.Array | None = None):
  """log p(targets) [B, N] float32 from the hidden states that predict them, hidden [B, N, D]
  (after the final norm; the model's output with head=False); temperature, with_entropy, chunk
  and where as in `token_logprobs`, which is this applied to a forward pass."""
  from spct_jax.model import transformer
  weight = transformer.head_weight(cfg, params)
  b, n, d = hidden.shape
  if where is not None:  # needed positions first in each row (stable: in order), then the rest
    order = jnp.argsort(~where.astype(bool), axis=1, stable=True)
    hidden = jnp.take_along_axis(hidden, order[..., None], axis=1)
    targets = jnp.take_along_axis(targets, order, axis=1)
    needed = jnp.arange(n)[None, :] < where.astype(bool).sum(axis=1, keepdims=True)
  else:
    needed = jnp.ones((b, n), bool)
  c = max(1, min(chunk, n))
  m = -(-n // c)
  hidden = jnp.pad(hidden, ((0, 0), (0, m * c - n), (0, 0))).reshape(b, m, c, d).swapaxes(0, 1)
  targets = jnp.pad(targets, ((0, 0), (0, m * c - n))).reshape(b, m, c).swapaxes(0, 1)
  needed = jnp.pad(needed, ((0, 0), (0, m * c - n))).reshape(b, m, c).swapaxes(0, 1)

  lp, ent = _chunked_head(cfg, temperature, skip=where is not None)(hidden, weight, targets, needed)  # [M, B, c]
  lp, ent = (x.swapaxes(0, 1).reshape(b, m * c)[:, :n] for x in (lp, ent))
  if where is not None:  # back to the positions' own places; 0 where not needed
    back = jnp.argsort(order, axis=1)
    lp, ent = (jnp.where(where, jnp.take_along_axis(x, back, axis=1), 0.0) for x in (lp, ent))
  return (lp, ent) if with_entropy else lp


def _chunked_head(cfg, temperature: float, skip: bool):
  """f(hidden [M, B, c, D], weight [D, V], targets [M, B, c], needed [M, B, c]) -> (log-prob,
  entropy) [M, B, c] of the M chunks, with its own backward pass: a scan over the chunks that
  recomputes each chunk's logits, forms their gradient in one pass (the log-softmax's and the
  entropy's, written out), takes the logits' vjp and adds the weight's gradient into one [D, V]
  float32 sum (differentiating a map over the chunks instead keeps one [D, V] cotangent per chunk:
  9 GiB for Gemma 3's 262k vocabulary at 14 chunks). skip: a chunk no row needs is skipped
  (`lax.cond`) both ways, its values 0."""
  from spct_jax.model import transformer

  def head(h, w, t):
    logits = transformer.head_logits(cfg, h, w) / temperature  # [B, c, V] float32
    lse = jax.nn.logsumexp(logits, axis=-1, keepdims=True)
    lp = jnp.take_along_axis(logits, t[..., None], axis=-1)[..., 0] - lse[..., 0]
    ent = lse[..., 0] - (jnp.exp(logits - lse) * logits).sum(-1)
    return lp, ent

  def forward(h_m, w, t_m, need_m):
    def one(xs):
      h, t, need = xs
      if not skip:
        return head(h, w, t)
      zeros = jnp.zeros(t.shape, jnp.float32)
      return jax.lax.cond(need.any(), lambda: head(h, w, t), lambda: (zeros, zeros))
    return jax.lax.map(one, (h_m, t_m, need_m))

  @jax.custom_vjp
  def f(h_m, w, t_m, need_m):
    return forward(h_m, w, t_m, need_m)

  def fwd(h_m, w, t_m, need_m):
    return forward(h_m, w, t_m, need_m), (h_m, w, t_m, need_m)

  def bwd(res, cts):
    h_m, w, t_m, need_m = res

    def step(dw, xs):
      h, t, need, ct_lp, ct_ent = xs

      def grads(dw):
        # d lp / d logits = onehot(t) - p; d entropy / d logits = -p * (logits - E_p[logits]):
        # one pass over the [B, c, V] logits, through the logits' own vjp (matmul and soft-cap)
        logits, vjp = jax.vjp(lambda h, w: transformer.head_logits(cfg, h, w) / temperature, h, w)
        lse = jax.nn.logsumexp(logits, axis=-1, keepdims=True)
        p = jnp.exp(logits - lse)
        mean = (p * logits).sum(-1, keepdims=True)
        onehot = jnp.arange(logits.shape[-1]) == t[..., None]
        d = jnp.where(onehot, ct_lp[..., None], 0.0) - p * (ct_lp[..., None] + ct_ent[..., None] * (logits - mean))
        dh, dw_chunk = vjp(d)
        return dw + dw_chunk.astype(jnp.float32), dh
      if not skip:
        return grads(dw)
      return jax.lax.cond(need.any(), grads, lambda dw: (dw, jnp.zeros_like(h)), dw)

    dw, dh = jax.lax.scan(step, jnp.zeros(w.shape, jnp.float32), (h_m, t_m, need_m) + tuple(cts))
    return dh, dw.astype(w.dtype), None, None

  f.defvjp(fwd, bwd)
  return f


def loss_fn(model):
  """The SFT (sum, count, aux) loss for `step.make_step`."""
  def fn(params, batch, rng):
    del rng
    mask = batch["loss_mask"][:, 1:].astype(jnp.float32)
    lp = token_logprobs(model, params, batch["tokens"], batch["pad_mask"], where=mask > 0)  # [B, T-1]
    return -(lp * mask).sum(), mask.sum(), {}
  return fn
