"""What a scalar-head model computes (model/reward.py): the meta RM's rating of sampled critiques
and the scalar RM's reward of each response, batched on the host around one jitted forward.

    fn = score_fn(mcfg)                                   # jit(params, tokens, pad_mask) -> [B]
    meta, too_long = meta_scores(examples, judgements, mcfg=..., params=..., tok=..., max_len=..., style=...)
    rewards = response_scores(fn, params, examples, tok, max_len=...)   # [n] floats per example
    correct = choice_correct(examples, rewards)           # 1.0 where the unique best is the label

Inputs: the meta RM reads "Please score the responses.", the context and the responses in the
order the critique saw them, then the critique as the answer (`meta_input_ids`); the scalar RM
reads the chat-formatted context, then one response as the answer (`pipeline.response_ids`).
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np

from spct_jax import progress
from spct_jax.data import pipeline
from spct_jax.example import GRMExample
from spct_jax.model import reward


def meta_input_ids(shown: GRMExample, critique: str, tok, *, max_len: int, style: str,
                   stats: pipeline.LengthStats | None = None) -> list[int] | None:
  """Ids of the meta RM's input for one critique of `shown` (None when too long; counted in stats)."""
  enc = pipeline.encode_sft(shown, critique, tok, max_len=max_len, variant="meta", style=style, stats=stats)
  return None if enc is None else enc[0].tolist()


def score_fn(mcfg):
  """jit(params, tokens, pad_mask) -> [B] scores of a scalar-head model."""
  return jax.jit(lambda p, t, m: reward.scores(mcfg, p, t, m))


def score_rows(fn, params, tokens: np.ndarray, pad_mask: np.ndarray, batch_size: int = 32,
               desc: str | None = None) -> np.ndarray:
  """Scores of [N, T] rows in batches of `batch_size` (the last one filled with copies, so one
  shape compiles), trimmed to each batch's longest row rounded up to 64; desc: progress over the
  batches with this label (spct_jax/progress.py)."""
  out = []
  starts = range(0, len(tokens), batch_size)
  for start in (progress.bar(starts, desc=desc, unit="batch") if desc else starts):
    t, m = tokens[start:start + batch_size], pad_mask[start:start + batch_size]
    real = len(t)
    if real < batch_size:
      t = np.concatenate([t, np.repeat(t[:1], batch_size - real, 0)])
      m = np.concatenate([m, np.repeat(m[:1], batch_size - real, 0)])
    width = min(-(-int(m.any(0).nonzero()[0].max() + 1) // 64) * 64, m.shape[1])
    out.append(np.asarray(fn(params, t[:, :width], m[:, :width]))[:real])
  return np.concatenate(out) if out else np.zeros((0,), np.float32)


def meta_scores(examples: Sequence[GRMExample], judgements: Sequence[Any], *, mcfg, params, tok,
                max_len: int, style: str, batch_size: int = 32, desc: str | None = None
                ) -> tuple[list[list[float]], int]:
  """The meta RM's score of every sampled critique (judge.Judgement layout: texts and perms per
  item) and the number of critiques too long for max_len, which score -inf (see `finite`);
  desc: progress over the batches with this label."""
  ids, where = [], []
  out = [[float("-inf")] * len(j.texts) for j in judgements]
  too_long = 0
  for e, (ex, j) in enumerate(zip(examples, judgements)):
    for s, (text, perm) in enumerate(zip(j.texts, j.perms)):
      x = meta_input_ids(ex.permuted(perm), text, tok, max_len=max_len, style=style)
      if x is None:
        too_long += 1
        continue
      ids.append(x)
      where.append((e, s))
  if ids:
    tokens, mask = pipeline.pad(ids, tok.pad_id)
    for (e, s), v in zip(where, score_rows(score_fn(mcfg), params, tokens, mask, batch_size, desc)):
      out[e][s] = float(v)
  return out, too_long


def finite(meta: list[list[float]]) -> list[list[float]]:
  """-inf (unscorable) -> a value below every real score, as voting.meta_vote needs finite ones
  (an unscorable critique then votes only when fewer scorable ones remain than k_meta)."""
  real = [v for row in meta for v in row if np.isfinite(v)]
  floor = (min(real) if real else 0.0) - 1.0
  return [[v if np.isfinite(v) else floor for v in row] for row in meta]


def response_scores(fn, params, examples: Sequence[GRMExample], tok, *, max_len: int,
                    batch_size: int = 32) -> list[list[float] | None]:
  """The scalar reward of every response of every example ([n] floats; None for an example with a
  response longer than max_len, which the caller counts)."""
  ids, owner = [], []
  out: list[list[float] | None] = [[0.0] * ex.n for ex in examples]
  for e, ex in enumerate(examples):
    for i in range(ex.n):
      x = pipeline.response_ids(ex, i, tok, max_len=max_len)
      if x is None:
        out[e] = None
      else:
        ids.append(x)
        owner.append((e, i))
  if ids:
    tokens, mask = pipeline.pad(ids, tok.pad_id)
    for (e, i), s in zip(owner, score_rows(fn, params, tokens, mask, batch_size)):
      if out[e] is not None:
        out[e][i] = float(s)
  return out


def choice_correct(examples: Sequence[GRMExample], scores: Sequence[list[float] | None]) -> list[float]:
  """Per example with n >= 2: 1.0 when its unique highest-scored response is the label, else 0.0
  (a tie for the top, or no scores, is wrong)."""
  out = []
  for ex, s in zip(examples, scores):
    if ex.n < 2:
      continue
    top = None if s is None else max(s)
    out.append(float(s is not None and [i for i, v in enumerate(s) if v == top] == [ex.label]))
  return out
