"""Losses of scalar reward models (spct_jax/model/reward.py) for `step.make_step`.

Both are (sum, count, aux) losses (see spct_jax/train/step.py), so micro-batch accumulation is
exact, and both weight rows by `weight` (0 for padding rows that fill a batch).

Meta RM (METHOD.md section 5): binary cross-entropy on whether a sampled principle+critique is
correct. A batch is
    tokens    [B, T] int32    prompt + sampled critique (either padding side)
    pad_mask  [B, T] bool     True on real tokens
    label     [B] float32     1 = the critique is correct, 0 = not
    weight    [B] float32     row weight (0 for padding rows)
loss_i = BCE-with-logits(r_i, label_i) = softplus(r_i) - label_i * r_i.
aux sums: accuracy (weight where (r > 0) == (label > 0.5); a score of exactly 0 predicts
"incorrect"), score (weight * r), label (weight * label: the share of positives).

Scalar Bradley-Terry RM (METHOD.md section 6 baseline): a batch of preference pairs
    chosen_tokens, rejected_tokens [B, T] int32; chosen_mask, rejected_mask [B, T] bool;
    weight [B] float32
loss_i = -log sigmoid(r_chosen - r_rejected) = softplus(r_rejected - r_chosen).
aux sums: accuracy (weight where r_chosen > r_rejected; ties are wrong), margin
(weight * (r_chosen - r_rejected)).

With `make_step`, the returned metric `loss` is the weighted mean loss and every aux value comes
back as `<name>_sum` (divide by `count`, the summed weight, for the mean).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from spct_jax.model import reward


def _need(batch: Any, keys: tuple[str, ...], what: str) -> None:
  missing = [k for k in keys if k not in batch]
  if missing:
    raise KeyError(f"{what} batch: missing key{'s' if len(missing) > 1 else ''} "
                   f"{', '.join(repr(k) for k in missing)} (has {sorted(batch)})")


def bce_loss_fn(model_or_cfg: Any):
  """The meta-RM (sum, count, aux) loss for `step.make_step`: weighted BCE-with-logits of the
  reward model's score against batch['label'] (batch layout in the module docstring)."""
  def fn(params, batch, rng):
    del rng
    _need(batch, ("tokens", "pad_mask", "label", "weight"), "bce_loss_fn")
    r = reward.scores(model_or_cfg, params, batch["tokens"], batch["pad_mask"])  # [B]
    y = batch["label"].astype(jnp.float32)
    w = batch["weight"].astype(jnp.float32)
    loss = jax.nn.softplus(r) - y * r
    correct = ((r > 0) == (y > 0.5)).astype(jnp.float32)
    aux = {"accuracy": (w * correct).sum(), "score": (w * r).sum(), "label": (w * y).sum()}
    return (w * loss).sum(), w.sum(), aux
  return fn


def pair_scores(model_or_cfg: Any, params: Any, batch: Any) -> tuple[jax.Array, jax.Array]:
  """(r_chosen [B], r_rejected [B]) for a batch of pairs; one forward over both halves when the
  two token arrays have the same shape."""
  c, cm = batch["chosen_tokens"], batch["chosen_mask"]
  rj, rm = batch["rejected_tokens"], batch["rejected_mask"]
  if c.shape == rj.shape:
    r = reward.scores(model_or_cfg, params, jnp.concatenate([c, rj]), jnp.concatenate([cm, rm]))
    return r[:c.shape[0]], r[c.shape[0]:]
  return reward.scores(model_or_cfg, params, c, cm), reward.scores(model_or_cfg, params, rj, rm)


def bt_loss_fn(model_or_cfg: Any):
  """The Bradley-Terry (sum, count, aux) loss for `step.make_step`: weighted
  -log sigmoid(r_chosen - r_rejected) (batch layout in the module docstring)."""
  def fn(params, batch, rng):
    del rng
    _need(batch, ("chosen_tokens", "chosen_mask", "rejected_tokens", "rejected_mask", "weight"),
          "bt_loss_fn")
    r_c, r_r = pair_scores(model_or_cfg, params, batch)
    w = batch["weight"].astype(jnp.float32)
    margin = r_c - r_r
    loss = jax.nn.softplus(-margin)  # = -log_sigmoid(margin), stable for large |margin|
    aux = {"accuracy": (w * (margin > 0).astype(jnp.float32)).sum(), "margin": (w * margin).sum()}
    return (w * loss).sum(), w.sum(), aux
  return fn
