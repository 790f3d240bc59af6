"""GRMExample -> GRM prompt text -> token ids -> padded numpy batches.

    rows, stats = batch_sft(pairs, tok, max_len=256)        # pairs: (example as shown, critique)
    rows["tokens"]     # [N, T] int32, right-padded with tok.pad_id
    rows["pad_mask"]   # [N, T] bool, True on real tokens
    rows["loss_mask"]  # [N, T] bool, True on the critique tokens and the closing end-of-turn
    batch, stats = encode_prompts(examples, tok, max_len=512)   # for sampling
    batch.tokens       # [B, T] int32, left-padded; T = the smallest bucket >= the longest prompt
    batch.pad_mask     # [B, T] bool, True on real tokens (the sampler's prompt_mask)
    batch.index        # [B] positions in `examples` of the rows (items too long are left out)

Prompt: tok.chat_prompt([user(prompts.render(example, variant, style))]) encoded with BOS
(`prompt_ids`; the sampler's prompts come from the same function). SFT completion: the critique's ids then tok.answer_end_id
(eos for the plain template, <end_of_turn> for Gemma's).

Length policy (max_len counts prompt + completion for SFT, the prompt for sampling):
1. the context is cut from the left: the oldest turns are dropped first, keeping the last user
   turn (the query);
2. if the query alone is still too long, its text is cut from the left (the start replaced by
   "..."), keeping its end, where the question usually is;
3. responses and critiques are never cut: an item that still does not fit is left out, counted
   in LengthStats.too_long and named in LengthStats.too_long_ids.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from spct_jax.example import GRMExample, Turn, user
from spct_jax.grm import prompts

DEFAULT_BUCKETS = (128, 256, 512, 1024, 2048, 4096, 8192)
ELLIPSIS = "..."


@dataclasses.dataclass
class LengthStats:
  """What the length policy did.

  items:         examples seen;
  truncated:     examples whose context was cut (turns dropped or the query cut);
  turns_dropped: context turns dropped in all;
  query_cut:     examples whose query text was cut from the left;
  too_long:      examples left out because they do not fit even so (ids in too_long_ids).
  """
  items: int = 0
  truncated: int = 0
  turns_dropped: int = 0
  query_cut: int = 0
  too_long: int = 0
  too_long_ids: list[str] = dataclasses.field(default_factory=list)

  def summary(self) -> str:
    return (f"{self.items} items: {self.truncated} with the context cut from the left "
            f"({self.turns_dropped} turns dropped, {self.query_cut} queries cut), "
            f"{self.too_long} left out as too long")


def prompt_ids(example: GRMExample, tok, *, variant: str = "principles", style: str = "compact") -> list[int]:
  """[T] ids of the chat-formatted GRM prompt for `example` (responses in the order shown), BOS first."""
  text = tok.chat_prompt([user(prompts.render(example, variant=variant, style=style))],
                         add_generation_prompt=True)
  return tok.encode(text, add_bos=True)


def fit_prompt(example: GRMExample, tok, budget: int, *, variant: str = "principles",
               style: str = "compact", stats: LengthStats | None = None) -> list[int] | None:
  """Prompt ids of at most `budget` tokens after the length policy, or None (too long).

  stats, when given, counts what was done (not `items`: callers count those).
  """
  ids = prompt_ids(example, tok, variant=variant, style=style)
  if len(ids) <= budget:
    return ids
  context = list(example.context)
  dropped = 0
  while len(ids) > budget and len(context) > 1:
    context.pop(0)
    dropped += 1
    ids = prompt_ids(dataclasses.replace(example, context=tuple(context)), tok, variant=variant, style=style)
  cut = False
  if len(ids) > budget:  # only the query is left: keep its end
    query_ids = tok.encode(context[-1].text)
    keep = len(query_ids) - (len(ids) - budget)
    while keep > 0 and len(ids) > budget:
      text = ELLIPSIS + tok.decode(query_ids[len(query_ids) - keep:])
      ids = prompt_ids(dataclasses.replace(example, context=(Turn("user", text),)), tok,
                       variant=variant, style=style)
      cut = True
      keep -= max(1, len(ids) - budget)
  if stats is not None:
    if len(ids) > budget:
      stats.too_long += 1
      stats.too_long_ids.append(example.id)
    elif dropped or cut:
      stats.truncated += 1
      stats.turns_dropped += dropped
      stats.query_cut += int(cut)
  return ids if len(ids) <= budget else None


def encode_sft(example: GRMExample, critique: str, tok, *, max_len: int, variant: str = "principles",
               style: str = "compact", stats: LengthStats | None = None
               ) -> tuple[np.ndarray, np.ndarray] | None:
  """(tokens [L] int32, loss_mask [L] bool) with L <= max_len, or None when the item does not fit.

  tokens = prompt ids + critique ids + [tok.answer_end_id]; loss_mask is True on the last two
  parts. The critique is never cut (see the module docstring for the policy).
  """
  target = tok.encode(critique) + [tok.answer_end_id]
  if stats is not None:
    stats.items += 1
  prompt = fit_prompt(example, tok, max_len - len(target), variant=variant, style=style, stats=stats)
  if prompt is None:
    return None
  tokens = np.asarray(prompt + target, np.int32)
  loss_mask = np.zeros(len(tokens), bool)
  loss_mask[len(prompt):] = True
  return tokens, loss_mask


def bucket_length(length: int, buckets: Sequence[int] | None = None, cap: int | None = None) -> int:
  """The smallest bucket >= length, at most `cap`; the default buckets are the powers of two >= 16.
  Given buckets of which none is long enough: `cap`, or an error when there is no cap."""
  if buckets is None:
    b = 16
    while b < length:
      b *= 2
    return b if cap is None else min(b, cap)
  if any(b <= 0 for b in buckets):
    raise ValueError(f"buckets={tuple(buckets)} must be positive lengths")
  fits = [b for b in sorted(buckets) if b >= length]
  if not fits:
    if cap is None:
      raise ValueError(f"length {length} exceeds the largest bucket {max(buckets)} of {tuple(buckets)}")
    return cap
  return fits[0] if cap is None else min(fits[0], cap)


def batch_sft(pairs: Sequence[tuple[GRMExample, str]], tok, *, max_len: int,
              variant: str = "principles", style: str = "compact",
              buckets: Sequence[int] | None = None) -> tuple[dict[str, np.ndarray], LengthStats]:
  """(example as shown, critique) pairs -> right-padded SFT rows, and the length stats.

  Returns tokens [N, T] int32 (pad: tok.pad_id), pad_mask [N, T] bool (real tokens) and
  loss_mask [N, T] bool (critique + end-of-turn), N = the items that fit. T = max_len, or with
  `buckets` the smallest bucket >= the longest row (capped at max_len).
  """
  stats = LengthStats()
  rows = [encode_sft(ex, c, tok, max_len=max_len, variant=variant, style=style, stats=stats)
          for ex, c in pairs]
  rows = [r for r in rows if r is not None]
  longest = max((len(t) for t, _ in rows), default=1)
  t_len = max_len if buckets is None else bucket_length(longest, buckets, cap=max_len)
  tokens, pad_mask = pad([t for t, _ in rows], tok.pad_id, t_len)
  loss_mask = np.zeros_like(pad_mask)
  for i, (t, m) in enumerate(rows):
    loss_mask[i, :len(t)] = m
  return {"tokens": tokens, "pad_mask": pad_mask, "loss_mask": loss_mask}, stats


def response_ids(example: GRMExample, i: int, tok, *, max_len: int,
                 stats: LengthStats | None = None) -> list[int] | None:
  """A scalar reward model's input for response i: the chat-formatted context, then the response
  as the model's answer and tok.answer_end_id, BOS first. Ids of at most max_len tokens, or None.

  Length policy as for the GRM prompt: the oldest context turns are dropped first (the query is
  kept); the response is never cut; an item that still does not fit is counted in stats.too_long.
  """
  if not 0 <= i < example.n:
    raise ValueError(f"response_ids: response {i} of GRMExample(id={example.id!r}) with n={example.n}")
  answer = tok.encode(example.responses[i]) + [tok.answer_end_id]
  context, dropped = list(example.context), 0
  while True:
    ids = tok.encode(tok.chat_prompt(context, add_generation_prompt=True), add_bos=True) + answer
    if len(ids) <= max_len or len(context) == 1:
      break
    context.pop(0)
    dropped += 1
  if stats is not None:
    if len(ids) > max_len:
      stats.too_long += 1
      stats.too_long_ids.append(example.id)
    elif dropped:
      stats.truncated += 1
      stats.turns_dropped += dropped
  return ids if len(ids) <= max_len else None


def pad(rows: Sequence[Sequence[int]], pad_id: int, length: int | None = None, *, left: bool = False
        ) -> tuple[np.ndarray, np.ndarray]:
  """Padded (tokens [N, T] int32, pad_mask [N, T] bool); T = length or the longest row.

  Right-padded (training rows), or left-padded with left=True (the sampler's prompts)."""
  t_len = length if length is not None else max((len(r) for r in rows), default=1)
  tokens = np.full((len(rows), t_len), pad_id, np.int32)
  pad_mask = np.zeros((len(rows), t_len), bool)
  for i, r in enumerate(rows):
    if len(r) > t_len:
      raise ValueError(f"pad: row {i} has {len(r)} tokens, more than length={t_len}")
    cols = slice(t_len - len(r), t_len) if left else slice(0, len(r))
    tokens[i, cols] = r
    pad_mask[i, cols] = True
  return tokens, pad_mask


@dataclasses.dataclass
class PromptBatch:
  """Left-padded prompts for the sampler.

  tokens:   [B, T] int32, pad ids on the left;
  pad_mask: [B, T] bool, True on real tokens;
  lengths:  [B] int32 real tokens per row;
  index:    [B] int64 position of each row's example in the input list.
  """
  tokens: np.ndarray
  pad_mask: np.ndarray
  lengths: np.ndarray
  index: np.ndarray


def encode_prompts(examples: Sequence[GRMExample], tok, *, max_len: int, variant: str = "principles",
                   style: str = "compact", buckets: Sequence[int] | None = DEFAULT_BUCKETS
                   ) -> tuple[PromptBatch, LengthStats]:
  """Prompts of `examples` (responses in the order given), left-padded to a length bucket.

  max_len: the longest prompt allowed (e.g. the KV cache minus the critique budget); longer
  ones go through the length policy. T = the smallest bucket >= the longest prompt (capped at
  max_len; buckets None: T = max_len), so few distinct shapes reach the jitted sampler.
  """
  stats = LengthStats(items=len(examples))
  rows, index = [], []
  for i, ex in enumerate(examples):
    ids = fit_prompt(ex, tok, max_len, variant=variant, style=style, stats=stats)
    if ids is not None:
      rows.append(ids)
      index.append(i)
  longest = max((len(r) for r in rows), default=1)
  t_len = max_len if buckets is None else bucket_length(longest, buckets, cap=max_len)
  tokens, pad_mask = pad(rows, tok.pad_id, t_len, left=True)
  return (PromptBatch(tokens, pad_mask, np.asarray([len(r) for r in rows], np.int32),
                      np.asarray(index, np.int64)), stats)
