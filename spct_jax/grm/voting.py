"""Voting over k sampled critiques (METHOD.md section 5).

Every sample is the parsed scores of one critique, already mapped back to the original response
order (`prompts.unshuffle`), or None when the critique was invalid. Invalid samples never vote;
they are counted in `n_invalid`.

  sum  (paper): S*_i = sum over valid samples of S_{s,i}; widens the score range k-fold.
  mode (seed):  S*_i = the most frequent score of response i over valid samples; a tie between
                equally frequent scores is broken towards the HIGHER score (deterministic).
  meta_vote (paper's meta-RM guided voting): rank the valid samples by their meta-RM score and
                let only the top k_meta vote (default k_meta = max(1, k // 2), k = len(samples)).

`best` lists every response attaining the maximum voted score: more than one index is a tie,
which the caller reports (and counts as wrong for strict accuracy).
"""
from __future__ import annotations

import collections
import dataclasses
import math
from typing import Sequence

METHODS = ("sum", "mode")


@dataclasses.dataclass(frozen=True)
class VoteResult:
  """scores:    voted score per response, original order (None when no sample was valid).
  best:      indices attaining the maximum voted score; len > 1 is a tie; () when none valid.
  n_valid:   samples that voted.
  n_invalid: invalid samples (None) among those given, skipped.
  """
  scores: list[float] | None
  best: tuple[int, ...]
  n_valid: int
  n_invalid: int

  @property
  def tie(self) -> bool:
    return len(self.best) > 1


def _split_valid(samples: Sequence[Sequence[float] | None], n: int, where: str
                 ) -> tuple[list[int], int]:
  """(indices of valid samples, number of invalid ones); a wrong-length sample is a caller bug."""
  if isinstance(n, bool) or not isinstance(n, int) or n < 1:
    raise ValueError(f"voting.{where}: n={n!r} must be an int >= 1")
  valid = []
  for s, sample in enumerate(samples):
    if sample is None:
      continue
    if len(sample) != n:
      raise ValueError(f"voting.{where}: samples[{s}] has {len(sample)} scores, expected n={n}")
    valid.append(s)
  return valid, len(samples) - len(valid)


def _mode(values: list[float]) -> float:
  counts = collections.Counter(values)
  top = max(counts.values())
  return max(v for v, c in counts.items() if c == top)


def _vote(rows: list[Sequence[float]], n: int, method: str) -> list[float]:
  if method == "sum":
    return [float(sum(row[i] for row in rows)) for i in range(n)]
  return [float(_mode([row[i] for row in rows])) for i in range(n)]


def _result(rows: list[Sequence[float]], n: int, method: str, n_invalid: int) -> VoteResult:
  if not rows:
    return VoteResult(scores=None, best=(), n_valid=0, n_invalid=n_invalid)
  voted = _vote(rows, n, method)
  top = max(voted)
  best = tuple(i for i, v in enumerate(voted) if v == top)
  return VoteResult(scores=voted, best=best, n_valid=len(rows), n_invalid=n_invalid)


def _check_method(method: str, where: str) -> None:
  if method not in METHODS:
    raise ValueError(f"voting.{where}: method={method!r}, expected one of {METHODS}")


def vote(samples: Sequence[Sequence[float] | None], n: int, method: str = "sum") -> VoteResult:
  """Vote over k samples (each n scores in original order, or None if invalid)."""
  _check_method(method, "vote")
  valid, n_invalid = _split_valid(samples, n, "vote")
  return _result([samples[s] for s in valid], n, method, n_invalid)


def meta_vote(samples: Sequence[Sequence[float] | None], meta_scores: Sequence[float], n: int,
              k_meta: int | None = None, method: str = "sum") -> VoteResult:
  """Meta-RM guided voting: the top k_meta valid samples by meta score vote.

  meta_scores: one finite number per sample (higher = more likely correct).
  k_meta:      how many samples vote; default max(1, k // 2) with k = len(samples); must be in
               1..k. Invalid samples are never selected (they cannot vote), so fewer than k_meta
               vote when fewer are valid. Equal meta scores keep the earlier sample first.
  n_invalid counts the invalid samples among all k.
  """
  _check_method(method, "meta_vote")
  k = len(samples)
  if len(meta_scores) != k:
    raise ValueError(f"voting.meta_vote: {len(meta_scores)} meta scores for {k} samples")
  for s, m in enumerate(meta_scores):
    if not math.isfinite(float(m)):
      raise ValueError(f"voting.meta_vote: meta_scores[{s}]={m!r} is not finite")
  valid, n_invalid = _split_valid(samples, n, "meta_vote")
  if k == 0:
    return VoteResult(scores=None, best=(), n_valid=0, n_invalid=0)
  if k_meta is None:
    k_meta = max(1, k // 2)
  if not 1 <= k_meta <= k:
    raise ValueError(f"voting.meta_vote: k_meta={k_meta} must be in 1..{k} (k = number of samples)")
  ranked = sorted(valid, key=lambda s: (-float(meta_scores[s]), s))[:k_meta]
  return _result([samples[s] for s in sorted(ranked)], n, method, n_invalid)
