"""evaluate: correctness rules, kappa, bootstrap CIs, voting@k curves, pool summaries,
RewardBench sections, PPE best-of-K, the markdown table and the plot. Hand-computed numbers."""
import json
import math
import pathlib

import numpy as np
import pytest

from spct_jax.evaluate import metrics, report
from spct_jax.example import GRMExample, user
from spct_jax.data.sources import BestOfK
from spct_jax.grm import voting


def ex(n, label, family="", id=""):
  return GRMExample((user("q"),), tuple(f"r{i}" for i in range(n)), label=label, family=family, id=id)


# ---------------------------------------------------------------------------------------------
# Correctness of one vote.

def test_paper_correct_breaks_a_two_way_tie_at_random():
  e = ex(2, 1)
  tie = voting.vote([[8, 3], [3, 8]], 2)
  assert tie.best == (0, 1) and not metrics.voted_correct(e, tie)
  hits = [metrics.paper_correct(e, tie, np.random.default_rng(s)) for s in range(2000)]
  assert 0.45 < np.mean(hits) < 0.55
  # a 3-way tie containing the label: right a third of the time
  e3 = ex(3, 2)
  tie3 = voting.vote([[5, 5, 5]], 3)
  rng = np.random.default_rng(0)
  assert 0.28 < np.mean([metrics.paper_correct(e3, tie3, rng) for _ in range(3000)]) < 0.39


def test_paper_correct_agrees_with_strict_without_a_tie():
  rng = np.random.default_rng(0)
  state = rng.bit_generator.state
  e = ex(3, 0)
  assert metrics.paper_correct(e, voting.vote([[9, 2, 2]], 3), rng)
  assert not metrics.paper_correct(e, voting.vote([[2, 9, 2]], 3), rng)
  assert not metrics.paper_correct(e, voting.vote([None, None], 3), rng)    # no valid sample
  e1 = ex(1, 7)
  assert metrics.paper_correct(e1, voting.vote([[7], [8], [6]], 1), rng)     # mean 7
  assert not metrics.paper_correct(e1, voting.vote([[7], [8]], 1), rng)      # 7.5 -> 8
  assert metrics.paper_correct(e1, voting.vote([[7], [7], [8]], 1, "mode"), rng, "mode")
  assert rng.bit_generator.state == state  # nothing drawn without a tie
  # a tie that does not contain the label is always wrong
  tie = voting.vote([[2, 9, 9]], 3)
  assert not any(metrics.paper_correct(e, tie, np.random.default_rng(s)) for s in range(50))


def test_pool_correct_strict_and_paper():
  exs = [ex(2, 0), ex(2, 1), ex(2, 0)]
  pool = [[[8, 3]], [[6, 6]], [None]]
  np.testing.assert_array_equal(metrics.pool_correct(exs, pool), [True, False, False])
  paper = np.array([metrics.pool_correct(exs, pool, rng=np.random.default_rng(s)) for s in range(400)])
  np.testing.assert_array_equal(paper[:, 0], True)
  np.testing.assert_array_equal(paper[:, 2], False)
  assert 0.4 < paper[:, 1].mean() < 0.6


def test_check_pool_names_the_bad_place():
  exs = [ex(2, 0), ex(3, 1)]
  with pytest.raises(ValueError, match="pool has 1 items for 2 examples"):
    metrics.check_pool(exs, [[[1, 2]]])
  with pytest.raises(ValueError, match=r"pool\[1\]\[1\] has 2 scores, expected n=3"):
    metrics.check_pool(exs, [[[1, 2]], [[1, 2, 3], [1, 2]]])
  with pytest.raises(ValueError, match=r"pool\[0\]\[0\]\[1\]=11 is not a score"):
    metrics.check_pool(exs, [[[1, 11]], [[1, 2, 3]]])
  with pytest.raises(ValueError, match=r"meta\[1\] has 2 scores for 1 samples"):
    metrics.check_pool(exs, [[[1, 2]], [[1, 2, 3]]], meta=[[0.1], [0.2, 0.3]])
  with pytest.raises(ValueError, match=r"meta\[0\]\[0\]=nan"):
    metrics.check_pool(exs, [[[1, 2]], [[1, 2, 3]]], meta=[[float("nan")], [0.2]])
  metrics.check_pool(exs, [[[1, 2], None], [[1.5, 2, 10]]], meta=[[0.1, 0.2], [3]])


# ---------------------------------------------------------------------------------------------
# Cohen's kappa.

def test_cohen_kappa_textbook_two_by_two():
  # Wikipedia's example: 50 items; yes/yes 20, yes/no 5, no/yes 10, no/no 15.
  # p_o = 35/50 = 0.7; p_e = 0.5*0.6 + 0.5*0.4 = 0.5; kappa = 0.2/0.5 = 0.4.
  pairs = [("y", "y")] * 20 + [("y", "n")] * 5 + [("n", "y")] * 10 + [("n", "n")] * 15
  pred, gold = zip(*pairs)
  assert metrics.cohen_kappa(pred, gold) == pytest.approx(0.4, abs=1e-12)
  assert metrics.cohen_kappa(gold, pred) == pytest.approx(0.4, abs=1e-12)


def _sklearn_kappa(pred, gold):
  """sklearn.metrics.cohen_kappa_score's formula (unweighted), written out."""
  labels = sorted(set(pred) | set(gold))
  index = {c: i for i, c in enumerate(labels)}
  confusion = np.zeros((len(labels), len(labels)))
  for p, g in zip(pred, gold):
    confusion[index[p], index[g]] += 1
  expected = np.outer(confusion.sum(axis=1), confusion.sum(axis=0)) / confusion.sum()
  w = 1 - np.eye(len(labels))
  return 1 - np.sum(w * confusion) / np.sum(w * expected)


@pytest.mark.parametrize("seed", range(5))
def test_cohen_kappa_matches_sklearns_formula(seed):
  rng = np.random.default_rng(seed)
  gold = rng.integers(0, 4, size=60)
  # pred agrees with gold 60% of the time, else a random category or -1 (tie/invalid)
  pred = np.where(rng.random(60) < 0.6, gold, rng.integers(-1, 4, size=60))
  assert metrics.cohen_kappa(list(pred), list(gold)) == pytest.approx(_sklearn_kappa(pred, gold), abs=1e-12)


def test_cohen_kappa_hand_values_and_degenerate_cases():
  # pred [0,-1,2,1,-1] vs gold [0,1,2,0,0]: p_o = 2/5; n^2 p_e = 1*3 + 1*1 + 1*1 = 5;
  # kappa = (2*5 - 5) / (25 - 5) = 0.25
  assert metrics.cohen_kappa([0, -1, 2, 1, -1], [0, 1, 2, 0, 0]) == pytest.approx(0.25)
  assert metrics.cohen_kappa([0, 1, 1, 0], [0, 1, 1, 0]) == 1.0
  assert metrics.cohen_kappa([1, 0, 0, 1], [0, 1, 1, 0]) == -1.0
  # constant gold: p_o == p_e whatever a varying pred does -> 0
  assert metrics.cohen_kappa([0, 0, 1, -1], [0, 0, 0, 0]) == 0.0
  # p_e == 1 (both the same constant) and empty input: undefined
  assert math.isnan(metrics.cohen_kappa([0, 0, 0], [0, 0, 0]))
  assert math.isnan(metrics.cohen_kappa([], []))
  with pytest.raises(ValueError, match="pred has 2 items, gold has 3"):
    metrics.cohen_kappa([0, 1], [0, 1, 1])


# ---------------------------------------------------------------------------------------------
# Bootstrap CIs.

def test_bootstrap_ci_contains_the_mean_and_is_deterministic():
  rng = np.random.default_rng(0)
  values = (rng.random(200) < 0.7).astype(float)
  lo, hi = metrics.bootstrap_ci(values)
  assert lo < values.mean() < hi
  # binomial: the half-width is about 1.96 * sqrt(p (1 - p) / n) ~ 0.064
  assert 0.09 < hi - lo < 0.16
  assert metrics.bootstrap_ci(values) == (lo, hi)
  assert metrics.bootstrap_ci(values, seed=1) != (lo, hi)


def test_bootstrap_ci_hand_computed_two_points():
  # values [0, 1]: resampled means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4, so the 30%
  # and 70% quantiles (alpha = 0.6) are both 0.5 and the 2.5% / 97.5% ones are 0 and 1.
  assert metrics.bootstrap_ci([0.0, 1.0], n_boot=4000, alpha=0.6) == (0.5, 0.5)
  assert metrics.bootstrap_ci([0.0, 1.0], n_boot=4000) == (0.0, 1.0)


def test_bootstrap_ci_degenerate_and_width():
  for v in (0.0, 1.0, 0.7, 1 / 3):
    assert metrics.bootstrap_ci([v] * 37) == (v, v)
  assert metrics.bootstrap_ci([0.25]) == (0.25, 0.25)
  few = metrics.bootstrap_ci([0.0, 1.0] * 10)
  many = metrics.bootstrap_ci([0.0, 1.0] * 200)
  assert few[1] - few[0] > 3 * (many[1] - many[0])


def test_bootstrap_ci_errors_name_the_argument():
  with pytest.raises(ValueError, match="values must be a non-empty"):
    metrics.bootstrap_ci([])
  with pytest.raises(ValueError, match="nan or inf"):
    metrics.bootstrap_ci([1.0, float("nan")])
  with pytest.raises(ValueError, match="n_boot=0"):
    metrics.bootstrap_ci([1.0], n_boot=0)
  with pytest.raises(ValueError, match="alpha=1"):
    metrics.bootstrap_ci([1.0], alpha=1)
  with pytest.raises(ValueError, match="seed=-1"):
    metrics.bootstrap_ci([1.0], seed=-1)


# ---------------------------------------------------------------------------------------------
# Voting@k curves.

def test_subsample_indices():
  idx = metrics.subsample_indices(8, 3, n_draws=50, seed=0, item=4)
  assert idx.shape == (50, 3)
  for row in idx:
    assert list(row) == sorted(set(row)) and 0 <= row.min() and row.max() < 8
  assert len({tuple(r) for r in idx}) > 10                    # draws differ
  np.testing.assert_array_equal(idx, metrics.subsample_indices(8, 3, 50, seed=0, item=4))
  assert not np.array_equal(idx, metrics.subsample_indices(8, 3, 50, seed=0, item=5))
  assert not np.array_equal(idx, metrics.subsample_indices(8, 3, 50, seed=1, item=4))
  # the whole pool: exactly one subset
  np.testing.assert_array_equal(metrics.subsample_indices(5, 5, 10), [[0, 1, 2, 3, 4]])
  # every sample is drawn about equally often
  counts = np.bincount(metrics.subsample_indices(4, 2, 4000).ravel(), minlength=4)
  assert np.all(np.abs(counts / 8000 - 0.25) < 0.02)
  with pytest.raises(ValueError, match="k=9 must be in 1..pool_size=8"):
    metrics.subsample_indices(8, 9, 3)
  with pytest.raises(ValueError, match="n_draws=0"):
    metrics.subsample_indices(8, 2, 0)


def _meta_items():
  # item 0 (label 0): sum [14, 11] right; mode [1, 3] wrong; the meta RM prefers samples 1 and 2,
  #   whose sum [2, 6] is wrong.
  # item 1 (label 1): sum [16, 28] right; mode [2, 9] right; meta prefers 0 and 1: [4, 18] right.
  exs = [ex(2, 0, id="a"), ex(2, 1, id="b")]
  pool = [[[10, 1], [1, 3], [1, 3], [2, 4]], [[2, 9], [2, 9], [9, 2], [3, 8]]]
  meta = [[0.1, 0.9, 0.8, 0.2], [0.7, 0.9, 0.1, 0.3]]
  return exs, pool, meta


def test_voting_curve_hand_values_at_the_whole_pool():
  exs, pool, meta = _meta_items()
  c = metrics.voting_curve(exs, pool, meta, n_draws=5, n_boot=200)
  assert c.ks == (1, 2, 4) and c.skipped == (8, 16, 32, 64)
  assert c.n_items == 2 and c.n_draws == 5 and c.strict
  assert set(c.accuracy) == {"sum", "mode", "meta"}
  assert (c.accuracy["sum"][2], c.accuracy["mode"][2], c.accuracy["meta"][2]) == (1.0, 0.5, 0.5)
  assert c.ci["sum"][2] == (1.0, 1.0)
  assert c.ci["mode"][2][0] <= 0.5 <= c.ci["mode"][2][1]
  # one sample votes alone at k = 1 (k_meta = 1): the three methods agree draw by draw
  assert c.accuracy["sum"][0] == c.accuracy["mode"][0] == c.accuracy["meta"][0]
  # without meta scores there is no meta curve
  assert set(metrics.voting_curve(exs, pool, ks=(4,), n_boot=10).accuracy) == {"sum", "mode"}


def test_voting_curve_equals_direct_voting_on_the_chosen_subsets():
  rng = np.random.default_rng(7)
  exs, pool, meta = [], [], []
  for i in range(6):
    n = 2 + i % 3
    exs.append(ex(n, int(rng.integers(n))))
    samples = [None if rng.random() < 0.2 else [int(x) for x in rng.integers(1, 11, size=n)]
               for _ in range(8 + i)]
    pool.append(samples)
    meta.append([float(x) for x in rng.normal(size=len(samples))])
  c = metrics.voting_curve(exs, pool, meta, ks=(1, 2, 3, 8, 9), n_draws=4, seed=3, n_boot=50)
  assert c.ks == (1, 2, 3, 8) and c.skipped == (9,)
  for j, k in enumerate(c.ks):
    per_item = {"sum": [], "mode": [], "meta": []}
    for i, (e, samples) in enumerate(zip(exs, pool)):
      rows = metrics.subsample_indices(len(samples), k, 4, seed=3, item=i)
      assert len(rows) == (1 if k == len(samples) else 4)
      hits = {"sum": [], "mode": [], "meta": []}
      for row in rows:
        sub = [samples[s] for s in row]
        hits["sum"].append(metrics.voted_correct(e, voting.vote(sub, e.n, "sum")))
        hits["mode"].append(metrics.voted_correct(e, voting.vote(sub, e.n, "mode"), "mode"))
        r = voting.meta_vote(sub, [meta[i][s] for s in row], e.n, k_meta=max(1, k // 2))
        hits["meta"].append(metrics.voted_correct(e, r))
      for m in hits:
        per_item[m].append(np.mean(hits[m]))
    for m in per_item:
      assert c.accuracy[m][j] == pytest.approx(np.mean(per_item[m]), abs=1e-12), (m, k)
      lo, hi = c.ci[m][j]
      assert lo <= c.accuracy[m][j] <= hi


def test_voting_curve_paper_style_breaks_full_pool_ties():
  exs = [ex(2, 0)] * 300
  pool = [[[8, 3], [3, 8]]] * 300  # the whole pool (k = 2) is always a tie
  strict = metrics.voting_curve(exs, pool, ks=(2,), n_boot=10)
  paper = metrics.voting_curve(exs, pool, ks=(2,), strict=False, n_boot=10)
  assert strict.accuracy["sum"] == (0.0,)
  assert 0.4 < paper.accuracy["sum"][0] < 0.6 and not paper.strict


def test_voting_curve_skips_ks_above_the_smallest_pool_and_checks_input():
  exs = [ex(2, 0), ex(2, 0)]
  c = metrics.voting_curve(exs, [[[9, 1]] * 5, [[9, 1]] * 3], ks=(4, 1, 2, 2), n_boot=10)
  assert c.ks == (1, 2) and c.skipped == (4,)
  assert c.accuracy["sum"] == (1.0, 1.0)
  with pytest.raises(ValueError, match="ks contains 0"):
    metrics.voting_curve(exs, [[[9, 1]]] * 2, ks=(0, 1))
  with pytest.raises(ValueError, match="examples is empty"):
    metrics.voting_curve([], [])
  with pytest.raises(ValueError, match=r"pool\[1\]\[0\] has 3 scores"):
    metrics.voting_curve(exs, [[[9, 1]], [[9, 1, 1]]])


def test_curve_dict_round_trip():
  exs, pool, meta = _meta_items()
  c = metrics.voting_curve(exs, pool, meta, n_draws=3, n_boot=20)
  assert metrics.Curve.from_dict(json.loads(json.dumps(c.as_dict()))) == c


# ---------------------------------------------------------------------------------------------
# Summary of one pool.

def _summary_items():
  exs = [ex(2, 0, "a"), ex(2, 1, "a"), ex(3, 2, "b"), ex(3, 0, "b"), ex(1, 7, "c"), ex(2, 0, "a")]
  pool = [
    [[8, 3], [7, 4], None],        # sum [15, 7]: right
    [[6, 6], [5, 5]],              # [11, 11]: a tie, wrong (pred -1)
    [[2, 5, 9], [3, 4, 8]],        # [5, 9, 17]: right
    [[2, 9, 4]],                   # best 1: wrong
    [[7], [7], [8]],               # mean 7.33 -> 7: right (rating)
    [None, None],                  # no valid sample: wrong (pred -1)
  ]
  return exs, pool


def test_pool_metrics_hand_values():
  exs, pool = _summary_items()
  m = metrics.pool_metrics(exs, pool, n_boot=300)
  assert (m["n_items"], m["n_ranked"], m["n_rated"], m["n_samples"]) == (6, 5, 1, 13)
  assert m["valid_rate"] == pytest.approx(10 / 13)
  assert m["accuracy"] == pytest.approx(2 / 5)
  lo, hi = m["accuracy_ci"]
  assert 0 <= lo < 0.4 < hi <= 1
  assert m["accuracy_paper"] in (pytest.approx(0.4), pytest.approx(0.6))  # the tie is a coin flip
  assert m["tie_rate"] == pytest.approx(1 / 5)
  assert m["no_valid_rate"] == pytest.approx(1 / 6)
  assert m["best_of_n_accuracy"] == 0.5 and m["n_best_of_n"] == 2
  assert m["rating_accuracy"] == 1.0 and m["rating_accuracy_ci"] == [1.0, 1.0]
  # pred [0, -1, 2, 1, -1] vs gold [0, 1, 2, 0, 0] (see the kappa test): 0.25
  assert m["kappa"] == pytest.approx(0.25)
  # best: (7.5 + 5.5 + 8.5 + 2) / 4; others: (3.5 + 5.5 + 3.5 + 6.5) / 4
  assert m["score_best"] == pytest.approx(5.875)
  assert m["score_others"] == pytest.approx(4.75)
  assert m["score_counts"] == [0, 2, 2, 3, 3, 2, 3, 3, 2, 0]
  assert m["per_family"] == {"a": {"accuracy": pytest.approx(1 / 3), "n": 3},
                             "b": {"accuracy": 0.5, "n": 2}, "c": {"accuracy": 1.0, "n": 1}}
  json.dumps(m)  # JSON-ready


def test_pool_metrics_paper_accuracy_averages_the_tie():
  exs, pool = _summary_items()
  paper = [metrics.pool_metrics(exs, pool, seed=s, n_boot=1)["accuracy_paper"] for s in range(200)]
  assert set(np.round(paper, 6)) == {0.4, 0.6}
  assert 0.47 < np.mean(paper) < 0.53


def test_pool_metrics_mode_voting():
  exs = [ex(2, 0), ex(2, 1)]
  pool = [[[2, 9], [3, 2], [3, 2]], [[5, 9], [9, 5], [9, 5]]]
  # item 0 (label 0): sum [8, 13] wrong; mode [3, 2] right
  # item 1 (label 1): sum [23, 19] wrong; mode [9, 5] wrong
  assert metrics.pool_metrics(exs, pool, "sum", n_boot=10)["accuracy"] == 0.0
  assert metrics.pool_metrics(exs, pool, "mode", n_boot=10)["accuracy"] == 0.5
  with pytest.raises(ValueError, match="method='max'"):
    metrics.pool_metrics(exs, pool, "max")


def test_pool_metrics_kappa_with_a_constant_label():
  # RewardBench keeps chosen first: label 0 always. A perfect judge: kappa is 0/0 (None), the
  # shuffled kappa (responses relabelled per item) is 1. A judge always preferring the rejected
  # response: kappa 0 (p_o = p_e = 0), the shuffled one negative.
  exs = [ex(2, 0, "alpacaeval-easy") for _ in range(30)]
  good = metrics.pool_metrics(exs, [[[9, 2]]] * 30, n_boot=10)
  bad = metrics.pool_metrics(exs, [[[2, 9]]] * 30, n_boot=10)
  assert good["kappa"] is None and good["kappa_shuffled"] == 1.0
  assert bad["kappa"] == 0.0 and bad["kappa_shuffled"] < -0.5


def test_pool_metrics_undefined_parts_are_none():
  m = metrics.pool_metrics([ex(1, 5)], [[[5], None]], n_boot=10)
  assert m["accuracy"] is None and m["accuracy_ci"] is None and m["tie_rate"] is None
  assert m["kappa"] is None and m["score_best"] is None and m["best_of_n_accuracy"] is None
  assert m["rating_accuracy"] == 1.0 and m["valid_rate"] == 0.5
  with pytest.raises(ValueError, match="examples is empty"):
    metrics.pool_metrics([], [])


# ---------------------------------------------------------------------------------------------
# RewardBench sections.

def _rb(counts):
  correct, subsets = [], []
  for subset, (right, n) in counts.items():
    correct += [True] * right + [False] * (n - right)
    subsets += [subset] * n
  return correct, subsets


def test_rewardbench_sections_hand_values():
  correct, subsets = _rb({
    "alpacaeval-easy": (3, 4), "mt-bench-med": (1, 1),       # Chat: 4/5 (subset mean: 0.875)
    "llmbar-natural": (1, 2),                                # Chat Hard: 0.5
    "math-prm": (0, 2), "hep-cpp": (3, 3), "hep-go": (0, 1),  # Reasoning: (0 + 3/4) / 2
    "my-subset": (2, 2),                                     # in no section
  })
  rb = metrics.rewardbench_scores(correct, subsets)
  assert rb["subsets"]["alpacaeval-easy"] == {"accuracy": 0.75, "n": 4}
  assert rb["subsets"]["my-subset"] == {"accuracy": 1.0, "n": 2}
  assert rb["sections"]["Chat"] == {"score": pytest.approx(0.8), "n": 5}
  assert rb["sections"]["Chat Hard"] == {"score": 0.5, "n": 2}
  assert rb["sections"]["Safety"] == {"score": None, "n": 0}
  # not the count-weighted 3/6 nor the subset mean 1/3: math-prm weighs as much as all code
  assert rb["sections"]["Reasoning"] == {"score": pytest.approx(0.375), "n": 6}
  assert rb["final"] == pytest.approx((0.8 + 0.5 + 0.375) / 3)
  assert rb["unknown"] == ["my-subset"]


def test_rewardbench_reasoning_with_one_half_and_float_credit():
  rb = metrics.rewardbench_scores([1, 0, 0.5, 1], ["math-prm"] * 4)
  assert rb["sections"]["Reasoning"]["score"] == pytest.approx(0.625)
  assert rb["final"] == pytest.approx(0.625)
  rb = metrics.rewardbench_scores([1, 0, 0], ["hep-rust", "hep-js", "hep-js"])
  assert rb["sections"]["Reasoning"]["score"] == pytest.approx(1 / 3)
  rb = metrics.rewardbench_scores([True], ["other"])
  assert rb["final"] is None and rb["unknown"] == ["other"]
  with pytest.raises(ValueError, match="correct has 1 items, subsets has 2"):
    metrics.rewardbench_scores([1], ["a", "b"])
  with pytest.raises(ValueError, match=r"correct\[1\]=2.0"):
    metrics.rewardbench_scores([1, 2], ["a", "b"])


def test_rewardbench_section_table_matches_method_md():
  sections = metrics.REWARDBENCH_SECTIONS
  assert sum(len(v) for v in sections.values()) == 23
  assert sections["Chat Hard"][0] == "mt-bench-hard" and "donotanswer" in sections["Safety"]
  assert set(metrics.REWARDBENCH_CODE) | {"math-prm"} == set(sections["Reasoning"])


# ---------------------------------------------------------------------------------------------
# PPE correctness, best-of-K.

def _bok(correct, pairs, id=""):
  return BestOfK(context=(user("q"),), responses=tuple(f"r{i}" for i in range(len(correct))),
                 correct=tuple(correct), pairs=tuple(pairs), id=id)


def test_best_of_k_hand_values():
  items = [
    _bok((False, True, True, False), [(1, 0), (2, 3)]),  # [3, 9, 5, 1]: best 1 right; pairs 2/2
    _bok((True, False, False), [(0, 1), (0, 2)]),        # [5, 7, 7]: tie of wrong ones; pairs 0/2
    _bok((True, False), [(0, 1)]),                       # [6, 6]: tie; strict wrong; pair 0/1
    _bok((False, True), [(1, 0)]),                       # None: wrong; pair lost
  ]
  scores = [[3, 9, 5, 1], [5, 7, 7], [6, 6], None]
  assert [metrics.best_of_k_correct(it, s) for it, s in zip(items, scores)] == [True, False, False, False]
  m = metrics.best_of_k_metrics(items, scores, n_boot=200)
  assert m["n"] == 4 and m["accuracy"] == 0.25
  assert m["accuracy_ci"][0] <= 0.25 <= m["accuracy_ci"][1]
  assert m["accuracy_paper"] in (0.25, 0.5)
  assert m["tie_rate"] == 0.5
  assert m["pair_accuracy"] == pytest.approx(2 / 6) and m["n_pairs"] == 6
  # a tie between a correct and an incorrect response: right half the time when broken at random
  hits = [metrics.best_of_k_correct(items[2], [6, 6], np.random.default_rng(s)) for s in range(1000)]
  assert 0.45 < np.mean(hits) < 0.55
  # a tie among correct responses is right either way when broken at random
  assert metrics.best_of_k_correct(items[0], [1, 9, 9, 1], np.random.default_rng(0))
  assert not metrics.best_of_k_correct(items[0], [1, 9, 9, 1])


def test_best_of_k_errors():
  with pytest.raises(ValueError, match="3 scores for 2 responses"):
    metrics.best_of_k_correct(_bok((True, False), []), [1, 2, 3])
  with pytest.raises(ValueError, match="2 items, 1 score lists"):
    metrics.best_of_k_metrics([_bok((True, False), [])] * 2, [[1, 2]])
  m = metrics.best_of_k_metrics([_bok((True, False), [])], [[2, 1]], n_boot=10)
  assert m["accuracy"] == 1.0 and m["pair_accuracy"] is None and m["n_pairs"] == 0


# ---------------------------------------------------------------------------------------------
# Reporting.

def _curve():
  return metrics.Curve(ks=(1, 2), skipped=(4,), accuracy={"sum": (0.5, 0.625), "mode": (0.5, 0.6)},
                        ci={"sum": ((0.25, 0.75), (0.375, 0.875)), "mode": ((0.25, 0.75), (0.35, 0.85))},
                        n_items=8, n_draws=10)


def test_markdown_table():
  results = {"accuracy": 0.4, "accuracy_ci": [0.1, 0.7], "n_items": 6, "kappa": None,
             "score_counts": [0, 2], "per_family": {"a": {"accuracy": 1 / 3, "n": 3}}}
  text = report.markdown_table(results, _curve())
  lines = text.splitlines()
  assert lines[:2] == ["| metric | value |", "| --- | --- |"]
  assert "| accuracy | 0.4000 [0.1000, 0.7000] |" in lines
  assert not any(line.startswith("| accuracy_ci") for line in lines)
  assert "| n_items | 6 |" in lines and "| kappa | n/a |" in lines
  assert "| score_counts | 0, 2 |" in lines
  assert "| per_family.a.accuracy | 0.3333 |" in lines and "| per_family.a.n | 3 |" in lines
  assert "| k | sum | mode |" in lines
  assert "| 1 | 0.5000 [0.2500, 0.7500] | 0.5000 [0.2500, 0.7500] |" in lines
  assert "| 2 | 0.6250 [0.3750, 0.8750] | 0.6000 [0.3500, 0.8500] |" in lines
  assert "skipped k (above the smallest pool): 4" in text
  # the curve's JSON form gives the same table
  assert report.markdown_table(results, json.loads(json.dumps(_curve().as_dict()))) == text


def test_markdown_table_of_real_results():
  exs, pool = _summary_items()
  m = metrics.pool_metrics(exs, pool, n_boot=50)
  text = report.markdown_table({**m, "rewardbench": metrics.rewardbench_scores([1, 0], ["hep-go"] * 2)})
  assert "| kappa | 0.2500 |" in text and "| rewardbench.sections.Reasoning.score | 0.5000 |" in text
  assert "| rewardbench.sections.Safety.score | n/a |" in text
  text = report.markdown_table(metrics.pool_metrics([ex(2, 0)], [[[9, 1]]], n_boot=10))
  assert "| per_family.(empty).accuracy | 1.0000 |" in text


def test_plot_curve_writes_a_png(tmp_path):
  path = tmp_path / "curve.png"
  report.plot_curve(_curve(), str(path), extra_lines={"greedy": 0.61, "scalar RM": 0.55})
  data = path.read_bytes()
  assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
  path2 = tmp_path / "one.png"
  one = metrics.Curve(ks=(4,), skipped=(), accuracy={"sum": (0.7,)}, ci={"sum": ((0.6, 0.8),)},
                       n_items=3, n_draws=1)
  report.plot_curve(one.as_dict(), str(path2), title="one k")
  assert path2.read_bytes()[:4] == b"\x89PNG"
  empty = metrics.Curve(ks=(), skipped=(8,), accuracy={"sum": ()}, ci={"sum": ()}, n_items=1, n_draws=1)
  with pytest.raises(ValueError, match="no k"):
    report.plot_curve(empty, str(tmp_path / "x.png"))


def test_roc_auc_against_hand_counts():
  # positives 0.9, 0.4; negatives 0.4, 0.1: pairs (0.9>0.4), (0.9>0.1), (0.4=0.4 -> 1/2), (0.4>0.1)
  assert metrics.roc_auc([0.9, 0.4, 0.4, 0.1], [True, True, False, False]) == pytest.approx(3.5 / 4)
  assert metrics.roc_auc([1, 2, 3], [False, False, True]) == 1.0
  assert metrics.roc_auc([3, 2, 1], [False, False, True]) == 0.0
  assert metrics.roc_auc([1, 2], [True, True]) is None
  with pytest.raises(ValueError, match="roc_auc"):
    metrics.roc_auc([1, 2], [True])


def test_paired_difference_resamples_items_jointly():
  a = np.array([1, 1, 0, 1, 1, 0, 1, 1], float)
  b = np.array([0, 1, 0, 0, 1, 0, 1, 0], float)
  d = metrics.paired_difference(a, b, n_boot=2000, seed=3)
  assert d["diff"] == 0.375 and d["n"] == 8
  assert 0.0 <= d["ci"][0] < 0.375 < d["ci"][1] <= 1.0
  same = metrics.paired_difference(a, a)
  assert same["diff"] == 0.0 and same["ci"] == [0.0, 0.0]  # unpaired intervals would not collapse
  # a constant shift of every item gives a degenerate interval at the shift
  shift = metrics.paired_difference(np.full(5, 0.7), np.full(5, 0.2))
  assert abs(shift["diff"] - 0.5) < 1e-12 and np.allclose(shift["ci"], [0.5, 0.5])
  with pytest.raises(ValueError, match="two equal 1-D"):
    metrics.paired_difference([1.0, 0.0], [1.0])


def test_voting_table_is_what_the_curve_averages():
  rng = np.random.default_rng(0)
  exs = [GRMExample((user(f"q{i}"),), ("a", "b", "c"), int(rng.integers(3)), "f", str(i)) for i in range(12)]
  pool = [[list(rng.integers(1, 11, size=3).astype(int)) for _ in range(8)] for _ in exs]
  meta = [list(rng.normal(size=8)) for _ in exs]
  used, skipped, table = metrics.voting_table(exs, pool, meta, ks=(1, 4, 8, 16), n_draws=5, seed=2)
  curve = metrics.voting_curve(exs, pool, meta, ks=(1, 4, 8, 16), n_draws=5, seed=2, n_boot=100)
  assert used == curve.ks == (1, 4, 8) and skipped == curve.skipped == (16,)
  for m in ("sum", "mode", "meta"):
    assert curve.accuracy[m] == tuple(float(table[m][k].mean()) for k in used)
    assert all(v.shape == (12,) and ((0 <= v) & (v <= 1)).all() for v in table[m].values())


def test_model_summary_reports_voting_with_ties_wrong_and_ties_at_random():
  """Two mirror-image samples per item: each alone is right half the time (no ties at k = 1),
  their sum is always a tie: strict sum@2 is 0 and the paper's rule (ties at random) about 0.5;
  the differences, the results and the comparison table carry both."""
  from spct_jax import judge as judge_lib
  from spct_jax.evaluate import run as eval_run
  from spct_jax.train import chain
  cfg = chain.load_config(str(pathlib.Path(__file__).resolve().parents[1] / "configs" / "eval.py"))
  cfg.eval.update(n_boot=50, n_draws=4)
  exs = [ex(2, 0, family="f", id=str(i)) for i in range(400)]

  def judgement(rows):
    return judge_lib.Judgement([f"t{i}" for i in range(len(rows))], rows, [(0, 1)] * len(rows))

  greedy = [judgement([[6, 6]]) for _ in exs]                  # a tie
  pool = [judgement([[8, 3], [3, 8]]) for _ in exs]            # right, wrong: the sum ties
  out, per_item = eval_run.model_summary(eval_run.Judged("m", "stage:m", "default", greedy, pool, 2), exs,
                                         list(range(len(exs))), (1, 2), cfg)
  assert out["greedy"] == 0.0 and 0.4 < out["greedy_ties_random"] < 0.6
  assert out["sum"]["1"] == out["sum_ties_random"]["1"] == pytest.approx(0.5, abs=0.05)
  assert out["sum"]["2"] == 0.0 and 0.4 < out["sum_ties_random"]["2"] < 0.6
  assert per_item["sum@2 ties random"].shape == (400,)
  diffs = eval_run.differences("m", ["m"], {"m": per_item}, 2, cfg)
  assert diffs["m sum@2 - m sum@1"]["diff"] == pytest.approx(-out["sum"]["1"])
  assert abs(diffs["m sum@2 - m sum@1, ties at random"]["diff"]) < 0.1
  assert diffs["m sum@2 - m greedy, ties at random"]["n"] == 400
  table = report.comparison_table({"models": {"m": out}, "differences": diffs})
  assert "| m, ties at random | " in table and "| m sum@2 - m sum@1, ties at random | " in table
