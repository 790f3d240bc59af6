"""The Python API: load a generative reward model, judge responses, use it as a reward.

    from spct_jax import api
    grm = api.GRM.load("bundled:warmup")                      # or stage:grpo, export:, hf:, gguf:, ...
    v = grm.score("What is 2 + 2?", ["4", "5"], k=8)          # a Verdict
    v.best, v.voted["sum"], v.samples[0].principles, v.samples[0].scores
    verdicts = grm.score_many(examples, k=8)                  # many items, with a progress bar

    reward = grm.reward_fn(k=4)                                # the GRM as a policy's reward
    rewards = reward("Write a haiku.", group_of_G_responses)   # np.ndarray [G]

A GRM judges the responses of one query together (pointwise: every response gets its own 1..10
score): k critiques are sampled at `temperature` (response order shuffled per critique, scores
mapped back), and the valid ones vote (sum and mode; with a meta RM, also the top k/2 by meta
score). Every sample keeps its principles, analysis, scores and meta score.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import numpy as np

from spct_jax import judge as judge_lib
from spct_jax import mesh as mesh_lib
from spct_jax import progress
from spct_jax import rm
from spct_jax import sampling as sampling_lib
from spct_jax.example import GRMExample, Turn, user
from spct_jax.grm import prompts, voting
from spct_jax.model import load as load_lib


@dataclasses.dataclass(frozen=True)
class Sample:
  """One sampled critique, with its scores mapped back to the responses' given order."""
  text: str
  principles: str
  analysis: str
  scores: list[int] | None        # None: an invalid critique (it does not vote)
  order: tuple[int, ...]          # the critique saw response order[p] at position p
  meta_score: float | None = None


@dataclasses.dataclass(frozen=True)
class Verdict:
  """The k samples of one item and their votes: voted[method].scores (per response) and .best."""
  samples: list[Sample]
  voted: dict[str, voting.VoteResult]

  @property
  def best(self) -> tuple[int, ...]:
    """The responses with the top sum-voted score (meta-RM voted when a meta RM scored)."""
    return self.voted.get("meta", self.voted["sum"]).best


def _context(query_or_context) -> tuple[Turn, ...]:
  """A query string, or a conversation: Turns, (role, text) pairs or {"role", "content"} dicts."""
  if isinstance(query_or_context, str):
    return (user(query_or_context),)
  turns = []
  for t in query_or_context:
    if isinstance(t, Turn):
      turns.append(t)
    elif isinstance(t, dict):
      turns.append(Turn(t["role"], t.get("content", t.get("text"))))
    else:
      turns.append(Turn(*t))
  return tuple(turns)


@dataclasses.dataclass
class GRM:
  """A GRM ready to judge: the model, its tokenizer, a mesh, the prompt it was trained with, and
  optionally a meta RM for guided voting."""
  model: load_lib.Loaded
  mesh: Any = None
  style: str = "compact"
  variant: str = "principles"
  meta_rm: load_lib.Loaded | None = None

  @classmethod
  def load(cls, spec: str, *, workdir: str = "runs/default", mesh_shape: Sequence[int] = (-1, 1, 1),
           dtype: str | None = None, tokenizer: str = "", style: str = "compact", variant: str = "principles",
           meta_rm: str = "") -> "GRM":
    """The GRM `spec` names (model/load.py: scratch needs a preset, so give bundled:, stage:,
    export:, hf: or gguf:), on a mesh of `mesh_shape` over the local devices, with a meta RM spec."""
    model = load_lib.check_vocab(load_lib.load(spec, workdir=workdir, dtype=dtype, tokenizer=tokenizer), spec)
    meta = load_lib.load(meta_rm, workdir=workdir, dtype=dtype, tokenizer=tokenizer, reward_head=True,
                         what="meta_rm") if meta_rm else None
    return cls(model, mesh_lib.make_mesh(tuple(mesh_shape)), style, variant, meta)

  def score_many(self, items: Sequence[GRMExample], *, k: int = 8, temperature: float = 0.5,
                 max_new_tokens: int = 256, seed: int = 0, k_meta: int | None = None, batch_size: int = 16,
                 max_len: int = 2048, show_progress: bool = True) -> list[Verdict]:
    """A Verdict for every item (labels are not needed), in batches of `batch_size` items."""
    if temperature == 0 and k != 1:
      raise ValueError(f"temperature=0 is greedy: all k={k} critiques would be the same; use k=1")
    sampler = sampling_lib.Greedy() if temperature == 0 else sampling_lib.Temperature(temperature)
    starts = range(0, len(items), batch_size)
    out = []
    for start in (progress.bar(starts, desc="score", unit="batch") if show_progress else starts):
      chunk = items[start:start + batch_size]
      js = judge_lib.judge(chunk, cfg=self.model.config, params=self.model.params, tok=self.model.tokenizer,
                           k=k, sampling=sampler, max_new_tokens=max_new_tokens, seed=seed + start,
                           variant=self.variant, style=self.style, batch_size=batch_size, mesh=self.mesh)
      metas = None
      if self.meta_rm is not None:
        raw, _ = rm.meta_scores(chunk, js, mcfg=self.meta_rm.config, params=self.meta_rm.params,
                                tok=self.meta_rm.tokenizer, max_len=max_len, style=self.style, batch_size=batch_size)
        metas = rm.finite(raw)
      for i, (ex, j) in enumerate(zip(chunk, js)):
        samples = [Sample(text, *prompts.split_critique(text), scores, tuple(perm),
                          None if metas is None else metas[i][s])
                   for s, (text, scores, perm) in enumerate(zip(j.texts, j.scores, j.perms))]
        votes = {m: voting.vote(j.scores, ex.n, m) for m in voting.METHODS}
        if metas is not None:
          votes["meta"] = voting.meta_vote(j.scores, metas[i], ex.n, k_meta)
        out.append(Verdict(samples, votes))
    return out

  def score(self, query_or_context, responses: Sequence[str], **kwargs) -> Verdict:
    """The Verdict on `responses` to a query (a string, or a conversation whose last turn is the
    user's query); keyword arguments as `score_many`."""
    ex = GRMExample(_context(query_or_context), tuple(responses), None, id="api")
    return self.score_many([ex], show_progress=False, **kwargs)[0]

  def reward_fn(self, *, k: int = 4, temperature: float = 0.5, max_new_tokens: int = 256,
                method: str = "sum", invalid_reward: float = 0.0) -> Callable[..., np.ndarray]:
    """The GRM as the reward of a policy's RL: reward(prompt, responses, seed=0) -> np.ndarray [G]
    float32, the G responses to one prompt judged together in one GRM call (pointwise: n = G),
    each response's reward its voted score over the k critiques divided by the valid critiques
    (a mean 1..10 score; `invalid_reward` when none was valid). A plain callable: call it on host
    data from any JAX RL loop, between the rollout and the update."""
    def reward(prompt, responses: Sequence[str], seed: int = 0) -> np.ndarray:
      v = self.score(prompt, responses, k=k, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
      r = v.voted[method]
      if r.scores is None:
        return np.full(len(responses), invalid_reward, np.float32)
      per = np.asarray(r.scores, np.float32)
      return per / r.n_valid if method == "sum" else per
    return reward
