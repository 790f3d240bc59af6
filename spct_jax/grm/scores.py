"""Score extraction (f_extract) and the correctness rule (METHOD.md sections 1 and 2).

`parse_scores(text, n)` reads the GRM's scores; `is_correct` and `rule_reward` apply the rule:
  n >= 2: correct iff S[label] > S[i] for every i != label (ties are wrong);
  n == 1: correct iff S[0] == label (the 1..10 rating);
  an invalid critique (scores None) is wrong.  Reward: +1.0 if correct, -1.0 otherwise.
"""
from __future__ import annotations

import re
from typing import Sequence

from spct_jax.grm.prompts import SCORES_LABEL

_BOX_OPEN = re.compile(r"\\boxed\s*\{")
_PAIR_OPEN = "[["
_INTEGER = re.compile(r"[0-9]+")  # ASCII digits only (no signs, no unicode digits)


def _read_list(body: str, n: int) -> list[int] | None:
  """'7, 3' (spaces anywhere, one trailing '.' allowed) -> [7, 3]; None unless n ints in 1..10."""
  body = body.strip()
  if body.endswith("."):
    body = body[:-1]
  items = body.split(",")
  if len(items) != n:
    return None
  out = []
  for item in items:
    item = item.strip()
    if not _INTEGER.fullmatch(item):
      return None
    value = int(item)
    if not 1 <= value <= 10:
      return None
    out.append(value)
  return out


def parse_scores(text: str, n: int) -> list[int] | None:
  """The n scores of a critique, or None when it is invalid. Never raises on any `text`.

  The format (METHOD.md section 1) is 'Scores: \\boxed{a, b, ...}'. Rule:
  - the LAST '\\boxed{...}' of the text is read (whitespace allowed between '\\boxed' and '{'),
    and a 'Scores:' label must occur somewhere before it;
  - its body is a comma-separated list of exactly n integers, each in 1..10; spaces around the
    items and one trailing period ('\\boxed{7, 3.}') are tolerated, and so is anything after the
    box (e.g. a final period); anything else (wrong count, 0 or 11, '7.5', '-3', an empty item,
    nested braces, an unclosed box) makes the critique invalid (None);
  - fallback, only if the text contains no '\\boxed' at all: the last '[[a, b, ...]]' after a
    'Scores:' label (the style shown in the paper's figures), read by the same rules.
  n >= 1 is the number of responses (ValueError otherwise: a caller's bug, not a bad critique).
  """
  if isinstance(n, bool) or not isinstance(n, int) or n < 1:
    raise ValueError(f"scores.parse_scores: n={n!r} must be an int >= 1")
  if not isinstance(text, str):
    return None
  boxes = list(_BOX_OPEN.finditer(text))
  if boxes:
    last = boxes[-1]
    if SCORES_LABEL not in text[:last.start()]:
      return None
    close = text.find("}", last.end())
    if close < 0:
      return None
    body = text[last.end():close]
    if "{" in body:
      return None
    return _read_list(body, n)
  if "\\boxed" in text:
    return None
  start = text.rfind(_PAIR_OPEN)
  if start < 0 or SCORES_LABEL not in text[:start]:
    return None
  close = text.find("]]", start + 2)
  if close < 0:
    return None
  body = text[start + 2:close]
  if "[" in body:
    return None
  return _read_list(body, n)


def _check_label(label: int, n: int, where: str) -> None:
  if n >= 2 and not 0 <= label < n:
    raise ValueError(f"scores.{where}: label={label} is not a response index in [0, {n})")
  if n == 1 and not 1 <= label <= 10:
    raise ValueError(f"scores.{where}: single-response label={label} is not a rating in 1..10")
  if n < 1:
    raise ValueError(f"scores.{where}: n={n} must be >= 1")


def is_correct(scores: Sequence[float] | None, label: int, n: int) -> bool:
  """METHOD.md section 2: strictly best for n >= 2 (ties wrong), exact rating for n == 1.

  scores: n numbers in the original response order, or None (invalid critique: wrong).
  """
  _check_label(label, n, "is_correct")
  if scores is None:
    return False
  if len(scores) != n:
    raise ValueError(f"scores.is_correct: {len(scores)} scores for n={n} responses")
  if n == 1:
    return scores[0] == label
  best = scores[label]
  return all(best > s for i, s in enumerate(scores) if i != label)


def rule_reward(scores: Sequence[float] | None, label: int, n: int) -> float:
  """+1.0 if `is_correct`, else -1.0 (no format reward)."""
  return 1.0 if is_correct(scores, label, n) else -1.0
