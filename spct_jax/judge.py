"""The GRM as a function: examples -> k sampled critiques each -> scores in the original order.

Response order is shuffled before sampling and the scores are mapped back (METHOD.md section 5).
To keep one prefill per prompt, the k samples of an item are spread over P distinct orders with
k / P samples each (P = the largest divisor of k that is <= n!): for a pair and an even k, half
the samples see each order, which cancels position bias exactly; each order is prefilled once
and its samples share the prefix.

    js = judge(examples, cfg=mcfg, params=params, tok=tok, k=8, sampling=sampling.Temperature(0.5))
    js[i].scores   # k lists of n ints (original order) or None (invalid critique)
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import jax
import numpy as np
from tqdm import tqdm

from spct_jax import sampling as sampling_lib
from spct_jax.data import pipeline
from spct_jax.data.example import GRMExample
from spct_jax.grm import prompts, scores as scores_lib
from spct_jax.train import mesh as mesh_lib


@dataclasses.dataclass(frozen=True)
class Request:
  """One prompt sent to the sampler: item `item` shown in order `perm`, sampled `n_samples` times."""
  item: int
  perm: tuple[int, ...]
  example: GRMExample   # the shuffled example as the GRM sees it
  n_samples: int


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
                    max_prompt_len: int | None = None, desc: str | None = None) -> list[dict]:
  """Runs the sampler over requests in batches of `batch_size` prompts (all with the same k).

  Returns one dict per request: prompt (ids), tokens [k', N], lengths [k'], logprobs [k', N], done [k'].
  The last batch is filled with copies of its first prompt so every call has the same shape.
  desc: a progress bar (tqdm, on a terminal) over the sampler calls, with this label.
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
    starts = tqdm(starts, desc=desc, unit="call", leave=False, disable=None, dynamic_ncols=True)
  for start in starts:
    chunk = ids[start:start + batch_size]
    real = len(chunk)
    chunk = chunk + [chunk[0]] * (batch_size - real)
    tokens, mask = sampling_lib.left_pad(chunk, tok.pad_id)
    res = sampling_lib.sample(cfg, params, tokens, mask, jax.random.fold_in(rng, start), k=k,
                              max_new_tokens=max_new_tokens, sampling=sampling, stop_ids=stop,
                              pad_id=tok.pad_id, mesh=mesh)
    res = jax.device_get(res)
    for j in range(real):
      out.append({"prompt": chunk[j], "tokens": res.tokens[j], "lengths": res.lengths[j],
                  "logprobs": res.logprobs[j], "done": res.done[j]})
  return out


def completion_text(tok, tokens: np.ndarray, length: int, done: bool) -> str:
  """The critique text of one sample (its stop token dropped)."""
  return tok.decode(np.asarray(tokens[:length - int(done)]).tolist())


def sample_all(requests: Sequence[Request], *, seed: int, **kwargs) -> list[dict]:
  """`sample_requests` for requests with different sample counts (one sampler call per count);
  results in the order of `requests`."""
  by_k: dict[int, list[int]] = {}
  for r_i, r in enumerate(requests):
    by_k.setdefault(r.n_samples, []).append(r_i)
  results: list[dict] = [{}] * len(requests)
  for kk, idx in sorted(by_k.items()):
    outs = sample_requests([requests[i] for i in idx], rng=jax.random.fold_in(jax.random.key(seed), kk), **kwargs)
    for i, o in zip(idx, outs):
      results[i] = o
  return results


def judge(examples: Sequence[GRMExample], *, cfg, params, tok, k: int = 1,
          sampling: Any = sampling_lib.Greedy(), max_new_tokens: int = 256, seed: int = 0,
          variant: str = "principles", style: str = "compact", batch_size: int = 32,
          mesh=None, desc: str | None = None) -> list[Judgement]:
  """k critiques for every example, parsed and mapped back to the original response order."""
  requests = plan_requests(examples, k, seed)
  results = sample_all(requests, seed=seed, cfg=cfg, params=params, tok=tok, sampling=sampling,
                       max_new_tokens=max_new_tokens, variant=variant, style=style,
                       batch_size=batch_size, mesh=mesh, desc=desc)
  judgements = [Judgement([], [], []) for _ in examples]
  for r, o in zip(requests, results):
    j = judgements[r.item]
    for s in range(r.n_samples):
      text = completion_text(tok, o["tokens"][s], int(o["lengths"][s]), bool(o["done"][s]))
      parsed = scores_lib.parse_scores(text, r.example.n)
      j.texts.append(text)
      j.scores.append(prompts.unshuffle(parsed, r.perm))
      j.perms.append(r.perm)
  return judgements
