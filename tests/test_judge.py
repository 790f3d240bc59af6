"""judge: orders per item, requests, and mapping sampled scores back to the original order."""
import itertools

import jax
import pytest

from spct_jax import judge
from spct_jax.evaluate import metrics
from spct_jax.data import synthetic
from spct_jax.example import GRMExample, user
from spct_jax.grm import voting
from spct_jax.model import config as model_config
from spct_jax.model import transformer
from spct_jax.tokenizer import Tokenizer


@pytest.mark.parametrize("n, k, p", [(2, 8, 2), (2, 5, 1), (3, 8, 4), (3, 6, 6), (4, 8, 8), (1, 8, 1), (4, 32, 16)])
def test_orders_per_item_is_the_largest_divisor_within_n_factorial(n, k, p):
  assert judge.orders_per_item(n, k) == p


def test_plan_requests_uses_distinct_orders_with_equal_shares():
  exs = synthetic.generate(20, seed=1, n_responses=(2, 3, 4))
  reqs = judge.plan_requests(exs, 8, seed=0)
  for i, ex in enumerate(exs):
    mine = [r for r in reqs if r.item == i]
    perms = [r.perm for r in mine]
    assert len(set(perms)) == len(perms) == judge.orders_per_item(ex.n, 8)
    assert sum(r.n_samples for r in mine) == 8
    for r in mine:
      assert r.example == ex.permuted(r.perm)
  # a pair with an even k: both orders, half the samples each (position bias cancels)
  pair = [r for r in reqs if exs[r.item].n == 2][:2]
  assert {pair[0].perm, pair[1].perm} == {(0, 1), (1, 0)}


def test_judge_maps_scores_back_to_the_original_order():
  """A GRM that always writes the same scores in the order it sees them: after mapping back,
  its scores follow the permutation, whatever order each sample saw."""
  tok = Tokenizer.load()
  cfg = model_config.get_config("tiny")
  params = transformer.init_params(cfg, jax.random.key(0))
  ex = GRMExample((user("q"),), ("a", "b", "c"), label=0, id="x")
  js = judge.judge([ex], cfg=cfg, params=params, tok=tok, k=6, max_new_tokens=4, seed=3)
  assert len(js[0].texts) == 6 and sorted(set(js[0].perms)) == sorted(itertools.permutations(range(3)))
  # the texts of a random tiny model are not valid critiques: every sample is counted invalid
  assert js[0].scores == [None] * 6
  m = metrics.judgement_metrics([ex], js)
  assert m == {"accuracy": 0.0, "tie_rate": 0.0, "valid_rate": 0.0}


def test_voted_correct_rules():
  ex2 = GRMExample((user("q"),), ("a", "b"), label=1)
  assert metrics.voted_correct(ex2, voting.vote([[3, 8], [4, 7]], 2))
  assert not metrics.voted_correct(ex2, voting.vote([[8, 3], [3, 8]], 2))  # tie is wrong
  ex1 = GRMExample((user("q"),), ("a",), label=7)
  assert metrics.voted_correct(ex1, voting.vote([[7], [8], [6]], 1))       # mean 7
  assert metrics.voted_correct(ex1, voting.vote([[7], [7], [2]], 1, "mode"), "mode")
  assert not metrics.voted_correct(ex1, voting.vote([None, None], 1))
