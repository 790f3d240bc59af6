"""Evaluation of a GRM's judgements (METHOD.md sections 5 and 6): pure metric functions, numpy only.

The input of most functions is a POOL of sampled judgements:

  examples: Sequence[GRMExample], the items (n_i responses, label: best index or a 1..10 rating);
  pool:     pool[i] is the list of k_i samples of item i; a sample is n_i scores in 1..10 in the
            ORIGINAL response order (already mapped back from the shuffled order), or None for
            an invalid critique;
  meta:     optional meta[i], k_i finite meta-RM scores of item i's samples (higher = more
            likely a correct sample).

    results = pool_metrics(examples, pool)                     # accuracy (strict and paper),
                                                               # tie/valid rates, kappa, ...
    curve = voting_curve(examples, pool, meta)                 # voting@k and meta-RM@k
    d = paired_difference(correct_a, correct_b)                # model a - model b, paired CI
    rb = rewardbench_scores(pool_correct(examples, pool), [ex.family for ex in examples])

(Tables and the plot of these results: evaluate/report.py.)

Correctness of one item's vote:
  strict (`voted_correct`): n >= 2: the unique best is the label, a tie is wrong; n == 1: the
         voted rating (sum: mean rounded half up; mode: the mode) equals the label.
  paper  (`paper_correct`): as strict, but a tie is broken at random among the tied best (the
         paper breaks ties by the shuffled order), with a seeded numpy Generator.
  An item without any valid sample is wrong under both.

Undefined numbers (no item to average over) are None in the result dicts; `cohen_kappa` itself
returns nan when kappa is undefined.

`judgement_metrics(examples, judgements)` is the short summary the training loop logs.
"""
from __future__ import annotations

import collections
import dataclasses
import math
import numbers
from typing import Hashable, Mapping, Sequence

import numpy as np

from spct_jax.example import GRMExample
from spct_jax.data.sources import BestOfK
from spct_jax.grm import voting

DEFAULT_KS = (1, 2, 4, 8, 16, 32, 64)

# RewardBench sections (METHOD.md section 6). Reasoning weighs math-prm equal to all of code.
REWARDBENCH_SECTIONS = {
  "Chat": ("alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy",
           "mt-bench-med"),
  "Chat Hard": ("mt-bench-hard", "llmbar-natural", "llmbar-adver-neighbor",
                "llmbar-adver-GPTInst", "llmbar-adver-GPTOut", "llmbar-adver-manual"),
  "Safety": ("refusals-dangerous", "refusals-offensive", "xstest-should-refuse",
             "xstest-should-respond", "donotanswer"),
  "Reasoning": ("math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"),
}
REWARDBENCH_MATH = "math-prm"
REWARDBENCH_CODE = ("hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust")


# ---------------------------------------------------------------------------------------------
# Correctness of one vote.

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


def paper_correct(example: GRMExample, result: voting.VoteResult, rng: np.random.Generator,
                  method: str = "sum") -> bool:
  """Correctness with the paper's tie rule: a tie among the best is broken uniformly at random
  (one `rng.integers` draw per tied item; nothing is drawn otherwise). Over many seeds a 2-way
  tie that contains the label is right half of the time. n == 1 and untied items: as
  `voted_correct`; no valid sample: wrong."""
  if result.scores is None:
    return False
  if example.n >= 2 and result.tie:
    return result.best[int(rng.integers(len(result.best)))] == example.label
  return voted_correct(example, result, method)


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


# ---------------------------------------------------------------------------------------------
# Checking a pool.

def _is_real(x) -> bool:
  return isinstance(x, numbers.Real) and not isinstance(x, bool)


def check_pool(examples: Sequence[GRMExample], pool: Sequence[Sequence],
               meta: Sequence[Sequence[float]] | None = None) -> None:
  """Raises ValueError naming the first bad place: pool and meta must have one entry per
  example; every sample is None or n_i real scores in [1, 10]; meta[i] has one finite number
  per sample of pool[i]."""
  if len(pool) != len(examples):
    raise ValueError(f"pool has {len(pool)} items for {len(examples)} examples")
  if meta is not None and len(meta) != len(examples):
    raise ValueError(f"meta has {len(meta)} items for {len(examples)} examples")
  for i, (ex, samples) in enumerate(zip(examples, pool)):
    for s, sample in enumerate(samples):
      if sample is None:
        continue
      if len(sample) != ex.n:
        raise ValueError(f"pool[{i}][{s}] has {len(sample)} scores, expected n={ex.n} "
                         f"(example id={ex.id!r})")
      for r, v in enumerate(sample):
        if not _is_real(v) or not 1 <= v <= 10:
          raise ValueError(f"pool[{i}][{s}][{r}]={v!r} is not a score in 1..10")
    if meta is not None:
      if len(meta[i]) != len(samples):
        raise ValueError(f"meta[{i}] has {len(meta[i])} scores for {len(samples)} samples in pool[{i}]")
      for s, m in enumerate(meta[i]):
        if not _is_real(m) or not math.isfinite(m):
          raise ValueError(f"meta[{i}][{s}]={m!r} is not a finite number")


def _check_seed(seed: int, where: str) -> None:
  if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
    raise ValueError(f"{where}: seed={seed!r} must be an int >= 0")


def pool_correct(examples: Sequence[GRMExample], pool: Sequence[Sequence], method: str = "sum",
                 rng: np.random.Generator | None = None) -> np.ndarray:
  """[N] bool: each item's vote over all its samples is correct; strict (rng None, ties wrong)
  or paper style (ties broken at random with rng). Feed it to `rewardbench_scores`."""
  check_pool(examples, pool)
  out = np.zeros(len(examples), bool)
  for i, (ex, samples) in enumerate(zip(examples, pool)):
    r = voting.vote(samples, ex.n, method)
    out[i] = voted_correct(ex, r, method) if rng is None else paper_correct(ex, r, rng, method)
  return out


# ---------------------------------------------------------------------------------------------
# Agreement and confidence intervals.

def cohen_kappa(pred: Sequence[Hashable], gold: Sequence[Hashable]) -> float:
  """Cohen's kappa (p_o - p_e) / (1 - p_e) between two equal-length sequences of categories.

  p_o: the fraction of positions where pred == gold; p_e: sum over categories c of
  P(pred = c) * P(gold = c). A category may occur in one sequence only (e.g. pred's -1 for
  'tie or invalid'): it can never agree but still counts in the marginals.
  Degenerate cases: empty input -> nan; p_e == 1 (both sequences are one and the same constant
  category, so p_o == 1 too) -> nan, kappa is 0/0 there (as sklearn). Note that a constant gold
  gives kappa <= 0 whenever pred varies: kappa says nothing on such data.
  """
  if len(pred) != len(gold):
    raise ValueError(f"cohen_kappa: pred has {len(pred)} items, gold has {len(gold)}")
  n = len(pred)
  if n == 0:
    return float("nan")
  agree = sum(p == g for p, g in zip(pred, gold))
  cp, cg = collections.Counter(pred), collections.Counter(gold)
  chance = sum(c * cg[k] for k, c in cp.items())  # n^2 * p_e, exact in integers
  if chance == n * n:
    return float("nan")
  return (agree * n - chance) / (n * n - chance)


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
  """ROC-AUC of `scores` against binary `labels`: the probability that a random positive scores
  above a random negative, ties counting one half (the Mann-Whitney U statistic / (P * N)).
  None when either class is absent (the AUC is undefined there)."""
  s = np.asarray(scores, np.float64)
  y = np.asarray(labels, bool)
  if s.shape != y.shape or s.ndim != 1:
    raise ValueError(f"roc_auc: scores {s.shape} and labels {y.shape} must be two equal 1-D sequences")
  pos, neg = s[y], s[~y]
  if not len(pos) or not len(neg):
    return None
  greater = (pos[:, None] > neg[None, :]).sum()
  ties = (pos[:, None] == neg[None, :]).sum()
  return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def bootstrap_ci(values: Sequence[float], n_boot: int = 1000, alpha: float = 0.05,
                 seed: int = 0) -> tuple[float, float]:
  """Percentile bootstrap CI of the mean of per-item values: resamples the N items with
  replacement n_boot times and returns the alpha/2 and 1 - alpha/2 quantiles (linear
  interpolation) of the resampled means, clipped to [min(values), max(values)] (the mean of a
  resample cannot leave that range; clipping removes float drift, so constant values give
  lo == hi == the value)."""
  x = np.asarray(values, np.float64)
  if x.ndim != 1 or x.size == 0:
    raise ValueError(f"bootstrap_ci: values must be a non-empty 1-D sequence, got shape {x.shape}")
  if not np.all(np.isfinite(x)):
    raise ValueError("bootstrap_ci: values contain nan or inf")
  if isinstance(n_boot, bool) or not isinstance(n_boot, numbers.Integral) or n_boot < 1:
    raise ValueError(f"bootstrap_ci: n_boot={n_boot!r} must be an int >= 1")
  if not 0 < alpha < 1:
    raise ValueError(f"bootstrap_ci: alpha={alpha!r} must be in (0, 1)")
  _check_seed(seed, "bootstrap_ci")
  rng = np.random.default_rng(seed)
  n = x.size
  chunk = max(1, 2 ** 22 // n)  # resamples per block: at most ~4M indices in memory
  means = np.concatenate([x[rng.integers(0, n, size=(min(chunk, n_boot - b), n))].mean(axis=1)
                          for b in range(0, n_boot, chunk)])
  lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
  lo, hi = np.clip([lo, hi], x.min(), x.max())
  return float(lo), float(hi)


def _mean_ci(values, n_boot: int, alpha: float, seed: int) -> tuple[float | None, list | None]:
  """(mean, [lo, hi]) of per-item values, or (None, None) when there are none."""
  if len(values) == 0:
    return None, None
  lo, hi = bootstrap_ci(values, n_boot, alpha, seed)
  return float(np.mean(values)), [lo, hi]


# ---------------------------------------------------------------------------------------------
# Voting@k curves by subsampling one pool.

def subsample_indices(pool_size: int, k: int, n_draws: int, seed: int = 0, item: int = 0
                      ) -> np.ndarray:
  """[D, k] int: D subsets of k sample indices drawn without replacement from range(pool_size),
  each row sorted ascending (so meta-RM ties keep the earlier sample, as in the pool).

  D = 1 when k == pool_size (the one subset: the whole pool), else n_draws; different draws
  may repeat a subset. Deterministic in (seed, item, k): a curve's subsets at one k do not
  depend on which other ks or items are evaluated.
  """
  for name, v in (("pool_size", pool_size), ("k", k), ("n_draws", n_draws), ("item", item)):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
      raise ValueError(f"subsample_indices: {name}={v!r} must be an int")
  if not 1 <= k <= pool_size:
    raise ValueError(f"subsample_indices: k={k} must be in 1..pool_size={pool_size}")
  if n_draws < 1:
    raise ValueError(f"subsample_indices: n_draws={n_draws} must be >= 1")
  if item < 0:
    raise ValueError(f"subsample_indices: item={item} must be >= 0")
  _check_seed(seed, "subsample_indices")
  if k == pool_size:
    return np.arange(k)[None, :]
  rng = np.random.default_rng([seed, item, k])
  return np.stack([np.sort(rng.choice(pool_size, size=k, replace=False)) for _ in range(n_draws)])


@dataclasses.dataclass(frozen=True)
class Curve:
  """Accuracy against the number of voting samples k.

  ks:       the ks evaluated, ascending; skipped: requested ks above the smallest pool size.
  accuracy: method -> [len(ks)] accuracy (mean over items of the item's mean over its draws).
            Methods: "sum" and "mode" voting, "meta" (meta-RM guided sum voting, top
            max(1, k // 2) samples of each subset) when meta scores were given.
  ci:       method -> [len(ks)] (lo, hi) percentile bootstrap CIs over items.
  n_items, n_draws, strict (ties wrong; False: ties broken at random).
  """
  ks: tuple[int, ...]
  skipped: tuple[int, ...]
  accuracy: dict[str, tuple[float, ...]]
  ci: dict[str, tuple[tuple[float, float], ...]]
  n_items: int
  n_draws: int
  strict: bool = True

  def as_dict(self) -> dict:
    """JSON-ready (lists for tuples); `Curve.from_dict` reads it back."""
    return {"ks": list(self.ks), "skipped": list(self.skipped),
            "accuracy": {m: list(a) for m, a in self.accuracy.items()},
            "ci": {m: [list(c) for c in cs] for m, cs in self.ci.items()},
            "n_items": self.n_items, "n_draws": self.n_draws, "strict": self.strict}

  @classmethod
  def from_dict(cls, d: Mapping) -> "Curve":
    return cls(ks=tuple(d["ks"]), skipped=tuple(d["skipped"]),
               accuracy={m: tuple(a) for m, a in d["accuracy"].items()},
               ci={m: tuple(tuple(c) for c in cs) for m, cs in d["ci"].items()},
               n_items=d["n_items"], n_draws=d["n_draws"], strict=d.get("strict", True))


def curve_item_values(example: GRMExample, samples: Sequence, meta: Sequence[float] | None,
                      k: int, n_draws: int, seed: int = 0, item: int = 0, strict: bool = True
                      ) -> dict[str, float]:
  """One item's accuracy at k, per method: the mean over the subsets of `subsample_indices`
  (pool_size = len(samples)) of the correctness of voting on the subset. "meta" only when
  meta is given (k_meta = max(1, k // 2)). strict=False breaks ties at random, seeded by
  (seed, item, k)."""
  idx = subsample_indices(len(samples), k, n_draws, seed, item)
  rng = None if strict else np.random.default_rng([seed, item, k, 1])
  methods = ("sum", "mode") + (("meta",) if meta is not None else ())
  hits = dict.fromkeys(methods, 0)
  for row in idx:
    sub = [samples[s] for s in row]
    for m in methods:
      if m == "meta":
        r = voting.meta_vote(sub, [meta[s] for s in row], example.n, k_meta=max(1, k // 2))
        vm = "sum"
      else:
        r, vm = voting.vote(sub, example.n, m), m
      hits[m] += voted_correct(example, r, vm) if strict else paper_correct(example, r, rng, vm)
  return {m: h / len(idx) for m, h in hits.items()}


def voting_table(examples: Sequence[GRMExample], pool: Sequence[Sequence],
                 meta: Sequence[Sequence[float]] | None = None, ks: Sequence[int] = DEFAULT_KS,
                 n_draws: int = 10, seed: int = 0, strict: bool = True
                 ) -> tuple[tuple[int, ...], tuple[int, ...], dict[str, dict[int, np.ndarray]]]:
  """Per-item voting@k values from one pool: (ks used, ks skipped, method -> k -> [N] values).

  For each k in ks with k <= every item's pool size (the others are skipped), each item's value
  is `curve_item_values`: the mean correctness over n_draws subsets of k samples (one, the whole
  pool, when k equals its size), the same subsets for every method. These per-item values are what
  `voting_curve` averages and what `paired_difference` compares between models or methods."""
  check_pool(examples, pool, meta)
  if not examples:
    raise ValueError("voting_curve: examples is empty")
  for k in ks:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
      raise ValueError(f"voting_curve: ks contains {k!r}, expected ints >= 1")
  smallest = min(len(s) for s in pool)
  wanted = sorted(set(int(k) for k in ks))
  used = tuple(k for k in wanted if k <= smallest)
  skipped = tuple(k for k in wanted if k > smallest)
  methods = ("sum", "mode") + (("meta",) if meta is not None else ())
  table = {m: {k: np.zeros(len(examples)) for k in used} for m in methods}
  for k in used:
    for i, (ex, samples) in enumerate(zip(examples, pool)):
      vals = curve_item_values(ex, samples, None if meta is None else meta[i], k, n_draws, seed, i, strict)
      for m in methods:
        table[m][k][i] = vals[m]
  return used, skipped, table


def voting_curve(examples: Sequence[GRMExample], pool: Sequence[Sequence],
                 meta: Sequence[Sequence[float]] | None = None, ks: Sequence[int] = DEFAULT_KS,
                 n_draws: int = 10, seed: int = 0, strict: bool = True, n_boot: int = 1000,
                 alpha: float = 0.05) -> Curve:
  """voting@k (and meta-RM@k) from one pool by subsampling (`voting_table`), with percentile
  bootstrap CIs over items. Every item counts with `voted_correct` semantics, n == 1 items by
  their rating: pass only n >= 2 items for a pure Accuracy@1 curve. The greedy sample is not part
  of this curve."""
  used, skipped, table = voting_table(examples, pool, meta, ks, n_draws, seed, strict)
  return Curve(ks=used, skipped=skipped,
               accuracy={m: tuple(float(v[k].mean()) for k in used) for m, v in table.items()},
               ci={m: tuple(bootstrap_ci(v[k], n_boot, alpha, seed) for k in used) for m, v in table.items()},
               n_items=len(examples), n_draws=n_draws, strict=strict)


def paired_difference(a: Sequence[float], b: Sequence[float], n_boot: int = 1000, alpha: float = 0.05,
                      seed: int = 0) -> dict:
  """mean(a - b) over items and its paired percentile bootstrap CI (items resampled jointly, so
  what two models or methods share per item cancels): {"diff", "ci": [lo, hi], "n"}."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape or a.ndim != 1:
    raise ValueError(f"paired_difference: a {a.shape} and b {b.shape} must be two equal 1-D sequences")
  lo, hi = bootstrap_ci(a - b, n_boot, alpha, seed)
  return {"diff": float((a - b).mean()), "ci": [lo, hi], "n": int(a.size)}


# ---------------------------------------------------------------------------------------------
# Summary of one pool.

def _opt(x) -> float | None:
  """x as a float, or None for None / nan (undefined)."""
  return None if x is None or math.isnan(float(x)) else float(x)


def _pred_index(result: voting.VoteResult) -> int:
  """The unique best index, or -1 for a tie or no valid sample."""
  return result.best[0] if len(result.best) == 1 else -1


def _relabel(index: int, perm: np.ndarray) -> int:
  """Position of response `index` after the permutation (new position p shows old perm[p])."""
  return -1 if index < 0 else int(np.flatnonzero(perm == index)[0])


def pool_metrics(examples: Sequence[GRMExample], pool: Sequence[Sequence], method: str = "sum",
                 seed: int = 0, n_boot: int = 1000, alpha: float = 0.05) -> dict:
  """Metrics of one pool, voting (`method`) over all samples of each item. A JSON-ready dict:

    n_items, n_ranked (n >= 2), n_rated (n == 1), n_samples;
    valid_rate:          valid samples / all samples (all items);
    accuracy, accuracy_ci:              n >= 2 items, strict (ties wrong);
    accuracy_paper, accuracy_paper_ci:  n >= 2 items, ties broken at random (seeded by seed);
    tie_rate:            n >= 2 items whose vote is a tie;
    no_valid_rate:       items (all) without any valid sample;
    best_of_n_accuracy, n_best_of_n:    strict accuracy over items with n > 2;
    rating_accuracy, rating_accuracy_ci: n == 1 items (voted rating equals the label);
    kappa:               Cohen's kappa over n >= 2 items, pred = unique best index or -1
                         (tie / no valid sample), gold = label. With a constant label (RewardBench
                         keeps chosen first: label 0 always) it is 0 or nan, see kappa_shuffled;
    kappa_shuffled:      the same after relabelling each item's responses by a random
                         permutation (seeded; the same for pred and gold), i.e. independent of
                         the file's response order;
    score_best, score_others: n >= 2 items: mean 1..10 score of the labelled best response and
                         of the other responses, averaged over valid samples, then over items
                         with a valid sample;
    score_counts:        [10] how often each score 1..10 was given (valid samples, rounded);
    per_family:          family -> {"accuracy": strict `voted_correct` over the family's items
                         (n == 1 items by rating), "n": items}.
  Undefined values (no items of that kind) are None. CIs: `bootstrap_ci` over items.
  """
  check_pool(examples, pool)
  if not examples:
    raise ValueError("pool_metrics: examples is empty")
  _check_seed(seed, "pool_metrics")
  rng = np.random.default_rng(seed)
  results = [voting.vote(samples, ex.n, method) for ex, samples in zip(examples, pool)]
  strict = np.array([voted_correct(ex, r, method) for ex, r in zip(examples, results)], float)
  paper = np.array([paper_correct(ex, r, rng, method) for ex, r in zip(examples, results)], float)
  ranked = np.array([ex.n >= 2 for ex in examples])
  multi = np.array([ex.n > 2 for ex in examples])
  n_valid = sum(r.n_valid for r in results)
  n_samples = sum(r.n_valid + r.n_invalid for r in results)

  acc, acc_ci = _mean_ci(strict[ranked], n_boot, alpha, seed)
  acc_p, acc_p_ci = _mean_ci(paper[ranked], n_boot, alpha, seed)
  rating, rating_ci = _mean_ci(strict[~ranked], n_boot, alpha, seed)
  ranked_items = [(i, ex, r) for i, (ex, r) in enumerate(zip(examples, results)) if ex.n >= 2]

  pred = [_pred_index(r) for _, _, r in ranked_items]
  gold = [ex.label for _, ex, _ in ranked_items]
  perms = [np.random.default_rng([seed, i]).permutation(ex.n) for i, ex, _ in ranked_items]
  kappa = cohen_kappa(pred, gold)
  kappa_sh = cohen_kappa([_relabel(p, q) for p, q in zip(pred, perms)],
                         [_relabel(g, q) for g, q in zip(gold, perms)])

  best_scores, other_scores = [], []
  for i, ex, _ in ranked_items:
    rows = np.array([s for s in pool[i] if s is not None], float).reshape(-1, ex.n)
    if len(rows):
      best_scores.append(rows[:, ex.label].mean())
      other_scores.append(np.delete(rows, ex.label, axis=1).mean())
  counts = np.zeros(10, int)
  for samples in pool:
    for s in samples:
      if s is not None:
        counts += np.bincount(np.floor(np.asarray(s, float) + 0.5).astype(int) - 1, minlength=10)

  families = collections.defaultdict(list)
  for ex, c in zip(examples, strict):
    families[ex.family].append(c)

  return {
    "n_items": len(examples), "n_ranked": int(ranked.sum()), "n_rated": int((~ranked).sum()),
    "n_samples": n_samples,
    "valid_rate": _opt(n_valid / n_samples) if n_samples else None,
    "accuracy": acc, "accuracy_ci": acc_ci,
    "accuracy_paper": acc_p, "accuracy_paper_ci": acc_p_ci,
    "tie_rate": _opt(np.mean([r.tie for _, _, r in ranked_items])) if ranked_items else None,
    "no_valid_rate": float(np.mean([r.scores is None for r in results])),
    "best_of_n_accuracy": _opt(strict[multi].mean()) if multi.any() else None,
    "n_best_of_n": int(multi.sum()),
    "rating_accuracy": rating, "rating_accuracy_ci": rating_ci,
    "kappa": _opt(kappa), "kappa_shuffled": _opt(kappa_sh),
    "score_best": _opt(np.mean(best_scores)) if best_scores else None,
    "score_others": _opt(np.mean(other_scores)) if other_scores else None,
    "score_counts": counts.tolist(),
    "per_family": {f: {"accuracy": float(np.mean(c)), "n": len(c)}
                   for f, c in sorted(families.items())},
  }


# ---------------------------------------------------------------------------------------------
# RewardBench sections.

def rewardbench_scores(correct: Sequence[float], subsets: Sequence[str]) -> dict:
  """RewardBench subset, section and final scores (METHOD.md section 6).

  correct: [N] per-example correctness (bools, or floats in [0, 1] such as expected paper-style
           credit); subsets: [N] each example's subset (GRMExample.family).
  Returns {"subsets": {subset: {"accuracy", "n"}} (every subset seen, unknown ones included),
           "sections": {section: {"score", "n"}} (score None when the section has no data),
           "final": mean of the sections with data (None if none),
           "unknown": sorted subsets in no section (never silently dropped)}.
  Section score = its subsets' accuracies weighted by example counts, except Reasoning =
  (acc(math-prm) + count-weighted accuracy over the hep-* subsets) / 2, or whichever of the two
  halves has data when only one does.
  """
  if len(correct) != len(subsets):
    raise ValueError(f"rewardbench_scores: correct has {len(correct)} items, subsets has {len(subsets)}")
  sums, counts = collections.Counter(), collections.Counter()
  for j, (c, s) in enumerate(zip(correct, subsets)):
    c = float(c)
    if not 0 <= c <= 1:
      raise ValueError(f"rewardbench_scores: correct[{j}]={c!r} is not in [0, 1]")
    sums[s] += c
    counts[s] += 1
  acc = {s: sums[s] / counts[s] for s in counts}

  def weighted(names):
    n = sum(counts[s] for s in names if s in acc)
    return (sum(sums[s] for s in names if s in acc) / n if n else None), n

  sections = {}
  for name, names in REWARDBENCH_SECTIONS.items():
    if name == "Reasoning":
      code, n_code = weighted(REWARDBENCH_CODE)
      halves = [h for h in (acc.get(REWARDBENCH_MATH), code) if h is not None]
      score = sum(halves) / len(halves) if halves else None
      n = n_code + counts[REWARDBENCH_MATH]
    else:
      score, n = weighted(names)
    sections[name] = {"score": score, "n": n}
  known = {s for names in REWARDBENCH_SECTIONS.values() for s in names}
  scored = [v["score"] for v in sections.values() if v["score"] is not None]
  return {"subsets": {s: {"accuracy": acc[s], "n": counts[s]} for s in sorted(acc)},
          "sections": sections,
          "final": sum(scored) / len(scored) if scored else None,
          "unknown": sorted(s for s in acc if s not in known)}


# ---------------------------------------------------------------------------------------------
# PPE correctness, best-of-K.

def best_of_k_correct(item: BestOfK, scores: Sequence[float] | None,
                      rng: np.random.Generator | None = None) -> bool:
  """The response with the highest score is a correct one. scores: K voted scores (one per
  response of item), or None (no valid vote: wrong). Ties: rng None -> wrong (strict); else
  broken uniformly at random with rng (one draw per tied item)."""
  if scores is None:
    return False
  if len(scores) != len(item.responses):
    raise ValueError(f"best_of_k_correct: {len(scores)} scores for {len(item.responses)} responses "
                     f"(item id={item.id!r})")
  s = np.asarray(scores, float)
  best = np.flatnonzero(s == s.max())
  if len(best) > 1:
    if rng is None:
      return False
    best = best[[int(rng.integers(len(best)))]]
  return bool(item.correct[int(best[0])])


def best_of_k_metrics(items: Sequence[BestOfK], scores: Sequence[Sequence[float] | None],
                      seed: int = 0, n_boot: int = 1000, alpha: float = 0.05) -> dict:
  """PPE correctness from one voted score per response (scores[i]: K_i floats or None).

  Returns {"n", "accuracy", "accuracy_ci" (strict best-of-K), "accuracy_paper" (ties at random,
  seeded), "tie_rate" (items whose top score is shared), "pair_accuracy", "n_pairs" (over the
  items' sampled conflict pairs from the same scores: the correct one scores strictly higher;
  None without pairs)}. An item with no correct response is always wrong; an item with None
  scores is wrong and loses all its pairs.
  """
  if len(items) != len(scores):
    raise ValueError(f"best_of_k_metrics: {len(items)} items, {len(scores)} score lists")
  if not items:
    raise ValueError("best_of_k_metrics: items is empty")
  _check_seed(seed, "best_of_k_metrics")
  rng = np.random.default_rng(seed)
  strict = np.array([best_of_k_correct(it, s) for it, s in zip(items, scores)], float)
  paper = np.array([best_of_k_correct(it, s, rng) for it, s in zip(items, scores)], float)
  ties = [s is not None and int(np.sum(np.asarray(s) == np.max(s))) > 1 for s in scores]
  won = n_pairs = 0
  for it, s in zip(items, scores):
    n_pairs += len(it.pairs)
    if s is not None:
      won += sum(s[i] > s[j] for i, j in it.pairs)
  acc, ci = _mean_ci(strict, n_boot, alpha, seed)
  return {"n": len(items), "accuracy": acc, "accuracy_ci": ci,
          "accuracy_paper": float(paper.mean()), "tie_rate": float(np.mean(ties)),
          "pair_accuracy": won / n_pairs if n_pairs else None, "n_pairs": n_pairs}
