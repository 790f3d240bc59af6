"""Evaluation of a GRM's judgements: accuracy with ties counted wrong, valid-format rate.

`judgement_metrics(examples, judgements)` scores one pool of sampled judgements (from
`spct_jax.judge.judge`) against the labels: voting over all k samples of each item.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from spct_jax.data.example import GRMExample
from spct_jax.grm import voting


def voted_correct(example: GRMExample, result: voting.VoteResult, method: str = "sum") -> bool:
  """Strict correctness of a vote: n >= 2: the unique best is the label (ties wrong);
  n == 1: the voted rating equals the label (sum voting: the mean over valid samples, rounded
  half up; mode voting: the mode)."""
  if result.scores is None:
    return False
  if example.n == 1:
    rating = result.scores[0] / result.n_valid if method == "sum" else result.scores[0]
    return int(np.floor(rating + 0.5)) == example.label
  return result.best == (example.label,)


def judgement_metrics(examples: Sequence[GRMExample], judgements, method: str = "sum") -> dict:
  """accuracy (strict), tie_rate, valid_rate over the items; votes over every sample of an item."""
  correct = ties = valid = total = 0
  for ex, j in zip(examples, judgements, strict=True):
    r = voting.vote(j.scores, ex.n, method)
    correct += voted_correct(ex, r, method)
    ties += r.tie
    valid += r.n_valid
    total += r.n_valid + r.n_invalid
  n = max(len(examples), 1)
  return {"accuracy": correct / n, "tie_rate": ties / n, "valid_rate": valid / max(total, 1)}
