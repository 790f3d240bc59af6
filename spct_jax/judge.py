"""The GRM as a function: examples -> k sampled critiques each -> scores in the original order.

Response order is shuffled before sampling and the scores are mapped back (METHOD.md section 5).
To keep one prefill per prompt, the k samples of an item are spread over P distinct orders with
k / P samples each (P = the largest divisor of k that is <= n!): for a pair and an even k, half
the samples see each order, which cancels position bias exactly; each order is prefilled once
and its samples share the prefix.

    js = judge(examples, cfg=mcfg, params=params, tok=tok, k=8, sampling=sampling.Temperature(0.5))
    js[i].scores   # k lists of n ints (original order) or None (invalid critique)

`sample_critiques` is the same sampling as one flat list of `Critique`s (text, parsed scores,
correctness by the rule, and the sampled tokens and log-probs that RL trains on): what RFT, GRPO
and the meta RM consume. Every sampled critique is decoded and parsed by `critiques`, here only.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import jax
import numpy as np

from spct_jax import mesh as mesh_lib
from spct_jax import progress
from spct_jax import sampling as sampling_lib
from spct_jax.data import pipeline
from spct_jax.example import GRMExample
from spct_jax.grm import prompts, scores as scores_lib


@dataclasses.dataclass(frozen=True)
class Request:
  """One prompt sent to the sampler: item `item` shown in order `perm`, sampled `n_samples` times."""
  item: int
  perm: tuple[int, ...]
  example: GRMExample   # the shuffled example as the GRM sees it
  n_samples: int


@dataclasses.dataclass(frozen=True)
class Completions:
  """The sampler's answer to one Request: k' = n_samples completions of one prompt (N = budget)."""
  prompt: list[int]        # [T] the prompt's ids (unpadded)
  tokens: np.ndarray       # [k', N] int32, pad after the stop token
  lengths: np.ndarray      # [k'] int32, stop token included
  logprobs: np.ndarray     # [k', N] float32 (sampling.SampleOutput.logprobs)
  done: np.ndarray         # [k'] bool, a stop token was produced


@dataclasses.dataclass(frozen=True)
class Critique:
  """One sampled critique of item `item`, written for the responses in order `perm`."""
  item: int
  perm: tuple[int, ...]
  shown: GRMExample           # the example as the GRM saw it (label follows its response)
  text: str                   # the critique (stop token dropped)
  parsed: list[int] | None    # its scores in the shown order; None = invalid critique
  prompt: list[int]           # [T] prompt ids
  tokens: np.ndarray          # [N] completion ids
  length: int                 # completion tokens, stop token included
  logprobs: np.ndarray        # [N] sampler log-probs of the completion
  done: bool                  # ended with a stop token

  @property
  def valid(self) -> bool:
    return self.parsed is not None

  @property
  def scores(self) -> list[int] | None:
    """The scores in the original response order."""
    return prompts.unshuffle(self.parsed, self.perm)

  @property
  def correct(self) -> bool:
    """The rule of METHOD.md section 2 (an invalid critique is wrong)."""
    return scores_lib.is_correct(self.parsed, self.shown.label, self.shown.n)


@dataclasses.dataclass
class Judgement:
  """k sampled judgements of one item (sample s was drawn on order perms[s])."""
  texts: list[str]
  scores: list[list[int] | None]   # original order; None = invalid critique
  perms: list[tuple[int, ...]]


def orders_per_item(n: int, k: int) -> int:
  """P: the largest divisor of k not above n! (the number of distinct orders per item)."""
  most = math.factorial(min(n, 8))
  return max(p for p in range(1, min(k, most) + 1) if k % p == 0)


def plan_requests(examples: Sequence[GRMExample], k: int, seed: int) -> list[Request]:
  """For each item, P distinct random orders (P = orders_per_item), k / P samples each."""
  rng = np.random.default_rng(seed)
  requests = []
  for i, ex in enumerate(examples):
    p = orders_per_item(ex.n, k)
    seen: list[tuple[int, ...]] = []
    while len(seen) < p:
      perm = tuple(int(x) for x in rng.permutation(ex.n))
      if perm not in seen:
        seen.append(perm)
    requests += [Request(i, perm, ex.permuted(perm), k // p) for perm in seen]
  return requests


def sample_requests(requests: Sequence[Request], *, cfg, params, tok, rng: jax.Array,
                    sampling: Any, max_new_tokens: int, variant: str = "principles",
                    style: str = "compact", batch_size: int = 32, mesh=None,
                    max_prompt_len: int | None = None, desc: str | None = None) -> list[Completions]:
  """Runs the sampler over requests in batches of `batch_size` prompts (all with the same k).

  Returns one Completions per request. The last batch is filled with copies of its first prompt
  so every call has the same shape.
  desc: progress over the sampler calls with this label (spct_jax/progress.py: a bar on a terminal
  or in a notebook, log lines otherwise).
  Under a mesh, batch_size is rounded up so that the batch_size * k rows split over its data axes.
  """
  if not requests:
    return []
  ks = {r.n_samples for r in requests}
  if len(ks) != 1:
    raise ValueError(f"sample_requests: requests ask for different numbers of samples {sorted(ks)}")
  k = ks.pop()
  if mesh is not None:
    unit = mesh_lib.data_size(mesh) // math.gcd(mesh_lib.data_size(mesh), k)
    batch_size = -(-batch_size // unit) * unit
  ids = [pipeline.prompt_ids(r.example, tok, variant=variant, style=style) for r in requests]
  if max_prompt_len is not None:
    too_long = [i for i, x in enumerate(ids) if len(x) > max_prompt_len]
    if too_long:
      raise ValueError(f"{len(too_long)} prompts exceed max_prompt_len={max_prompt_len} "
                       f"(first: item {requests[too_long[0]].item}, {len(ids[too_long[0]])} tokens)")
  stop = tuple(dict.fromkeys((tok.eos_id, *tok.end_of_turn_ids)))
  out = []
  starts = range(0, len(ids), batch_size)
  if desc is not None:
    starts = progress.bar(starts, desc=desc, unit="call", leave=False)
  for start in starts:
    chunk = ids[start:start + batch_size]
    real = len(chunk)
    chunk = chunk + [chunk[0]] * (batch_size - real)
    tokens, mask = pipeline.pad(chunk, tok.pad_id, left=True)
    res = sampling_lib.sample(cfg, params, tokens, mask, jax.random.fold_in(rng, start), k=k,
                              max_new_tokens=max_new_tokens, sampling=sampling, stop_ids=stop,
                              pad_id=tok.pad_id, mesh=mesh)
    res = mesh_lib.fetch(res)
    out += [Completions(chunk[j], res.tokens[j], res.lengths[j], res.logprobs[j], res.done[j])
            for j in range(real)]
  return out


def sample_all(requests: Sequence[Request], *, seed: int, **kwargs) -> list[Completions]:
  """`sample_requests` for requests with different sample counts (one sampler call per count);
  results in the order of `requests`."""
  by_k: dict[int, list[int]] = {}
  for r_i, r in enumerate(requests):
    by_k.setdefault(r.n_samples, []).append(r_i)
  results: list[Completions | None] = [None] * len(requests)
  for kk, idx in sorted(by_k.items()):
    outs = sample_requests([requests[i] for i in idx], rng=jax.random.fold_in(jax.random.key(seed), kk), **kwargs)
    for i, o in zip(idx, outs):
      results[i] = o
  return results


def critiques(requests: Sequence[Request], results: Sequence[Completions], tok) -> list[Critique]:
  """Decodes and parses every sampled completion: one Critique per sample, request by request."""
  out = []
  for r, o in zip(requests, results):
    for s in range(r.n_samples):
      length, done = int(o.lengths[s]), bool(o.done[s])
      text = tok.decode(np.asarray(o.tokens[s][:length - int(done)]).tolist())
      out.append(Critique(r.item, r.perm, r.example, text, scores_lib.parse_scores(text, r.example.n),
                          o.prompt, np.asarray(o.tokens[s]), length, np.asarray(o.logprobs[s]), done))
  return out


def sample_critiques(examples: Sequence[GRMExample], k: int, seed: int, *, sample_seed: int | None = None,
                     **kwargs) -> list[Critique]:
  """k critiques of every example (orders planned from `seed`, tokens drawn from `sample_seed`,
  default `seed`), in request order; kwargs as `sample_requests`."""
  requests = plan_requests(examples, k, seed)
  results = sample_all(requests, seed=seed if sample_seed is None else sample_seed, **kwargs)
  return critiques(requests, results, kwargs["tok"])


def judge(examples: Sequence[GRMExample], *, cfg, params, tok, k: int = 1,
          sampling: Any = sampling_lib.Greedy(), max_new_tokens: int = 256, seed: int = 0,
          variant: str = "principles", style: str = "compact", batch_size: int = 32,
          mesh=None, desc: str | None = None) -> list[Judgement]:
  """k critiques for every example, parsed and mapped back to the original response order."""
  judgements = [Judgement([], [], []) for _ in examples]
  for c in sample_critiques(examples, k, seed, cfg=cfg, params=params, tok=tok, sampling=sampling,
                            max_new_tokens=max_new_tokens, variant=variant, style=style,
                            batch_size=batch_size, mesh=mesh, desc=desc):
    j = judgements[c.item]
    j.texts.append(c.text)
    j.scores.append(c.scores)
    j.perms.append(c.perm)
  return judgements
