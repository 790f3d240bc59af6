import math

import pytest

from spct_jax.grm import voting

SAMPLES = [[7, 3], [6, 6], None, [8, 2], [5, 9]]


def test_sum_voting_skips_and_counts_invalid():
  r = voting.vote(SAMPLES, 2, "sum")
  assert r == voting.VoteResult(scores=[26.0, 20.0], best=(0,), n_valid=4, n_invalid=1)
  assert not r.tie


def test_mode_voting_breaks_frequency_ties_towards_the_higher_score():
  # Response 0 sees 7, 6, 8, 5 once each -> 8; response 1 sees 3, 6, 2, 9 once each -> 9.
  r = voting.vote(SAMPLES, 2, "mode")
  assert r == voting.VoteResult(scores=[8.0, 9.0], best=(1,), n_valid=4, n_invalid=1)
  # Two-way frequency ties: 7,7,6,6 -> 7 and 3,4,4,3 -> 4.
  r = voting.vote([[7, 3], [7, 4], [6, 4], [6, 3]], 2, "mode")
  assert r.scores == [7.0, 4.0] and r.best == (0,)
  # A clear mode wins over a higher but rarer score.
  r = voting.vote([[2, 9], [2, 8], [10, 8]], 2, "mode")
  assert r.scores == [2.0, 8.0] and r.best == (1,)


def test_ties_are_reported():
  r = voting.vote([[7, 3], [3, 7]], 2, "sum")
  assert r.scores == [10.0, 10.0] and r.best == (0, 1) and r.tie
  r = voting.vote([[4, 9, 9], [5, 8, 8]], 3, "sum")
  assert r.best == (1, 2)
  r = voting.vote([[4, 9, 9], [5, 8, 7]], 3, "mode")  # modes 5, 9, 9
  assert r.scores == [5.0, 9.0, 9.0] and r.best == (1, 2)


def test_all_invalid_and_empty():
  assert voting.vote([None, None, None], 2) == voting.VoteResult(None, (), 0, 3)
  assert voting.vote([], 2, "mode") == voting.VoteResult(None, (), 0, 0)
  assert voting.meta_vote([None, None], [0.3, 0.9], 2) == voting.VoteResult(None, (), 0, 2)
  assert voting.meta_vote([], [], 2) == voting.VoteResult(None, (), 0, 0)


def test_single_response():
  r = voting.vote([[7], [9], None], 1, "sum")
  assert r == voting.VoteResult(scores=[16.0], best=(0,), n_valid=2, n_invalid=1)
  assert voting.vote([[7], [9], [7]], 1, "mode").scores == [7.0]


def test_meta_vote_keeps_the_top_half_of_valid_samples():
  samples = [[7, 3], [2, 9], [8, 1], None, [3, 8]]
  meta = [0.9, 0.1, 0.8, 0.99, 0.2]
  # Plain voting prefers response 1 (20 vs 21) ...
  assert voting.vote(samples, 2).best == (1,)
  # ... the meta RM keeps samples 0 and 2 (k=5 -> k_meta=2; sample 3 is invalid, never kept).
  r = voting.meta_vote(samples, meta, 2)
  assert r == voting.VoteResult(scores=[15.0, 4.0], best=(0,), n_valid=2, n_invalid=1)
  r = voting.meta_vote(samples, meta, 2, k_meta=3)
  assert r.scores == [18.0, 12.0] and r.n_valid == 3
  r = voting.meta_vote(samples, meta, 2, k_meta=5, method="mode")  # all 4 valid vote
  assert r.scores == [8.0, 9.0] and r.n_valid == 4 and r.n_invalid == 1


def test_meta_vote_defaults_and_ties():
  # k = 1 -> k_meta = 1; k = 3 -> 1.
  assert voting.meta_vote([[4, 5]], [0.0], 2).scores == [4.0, 5.0]
  assert voting.meta_vote([[4, 5], [9, 1], [1, 9]], [0.1, 0.5, 0.2], 2).scores == [9.0, 1.0]
  # Equal meta scores: the earlier sample is kept.
  assert voting.meta_vote([[4, 5], [9, 1]], [0.5, 0.5], 2, k_meta=1).scores == [4.0, 5.0]


def test_errors_name_the_problem():
  with pytest.raises(ValueError, match=r"voting.vote: samples\[1\] has 3 scores, expected n=2"):
    voting.vote([[1, 2], [1, 2, 3]], 2)
  with pytest.raises(ValueError, match=r"method='max'"):
    voting.vote([[1, 2]], 2, "max")
  with pytest.raises(ValueError, match=r"k_meta=3 must be in 1..2"):
    voting.meta_vote([[1, 2], [2, 1]], [0.0, 1.0], 2, k_meta=3)
  with pytest.raises(ValueError, match=r"k_meta=0 must be in 1..2"):
    voting.meta_vote([[1, 2], [2, 1]], [0.0, 1.0], 2, k_meta=0)
  with pytest.raises(ValueError, match=r"1 meta scores for 2 samples"):
    voting.meta_vote([[1, 2], [2, 1]], [0.0], 2)
  with pytest.raises(ValueError, match=r"meta_scores\[0\]=nan is not finite"):
    voting.meta_vote([[1, 2]], [math.nan], 2)
