"""The Python API: judging with a GRM loaded from the package's bundled model, and the GRM as the
reward of a toy policy that learns its preference (scripts/grm_reward_example.py)."""
import importlib.util
import pathlib

import numpy as np
import pytest

from spct_jax import api
from spct_jax.data import synthetic
from spct_jax.example import Turn

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def grm():
  return api.GRM.load("bundled:warmup")


@pytest.fixture(scope="module")
def item():
  return synthetic.generate(1, seed=3, families=("bias",), n_responses=(3,))[0]


def test_score_returns_every_sample_with_its_principles_and_the_votes(grm, item):
  v = grm.score(item.query, item.responses, k=4, seed=1)
  assert len(v.samples) == 4 and set(v.voted) == {"sum", "mode"}
  for s in v.samples:
    assert s.text.startswith("Specific Criteria:") and s.principles and s.analysis
    assert s.scores is None or (len(s.scores) == 3 and all(1 <= x <= 10 for x in s.scores))
    assert sorted(s.order) == [0, 1, 2] and s.meta_score is None
  assert v.voted["sum"].n_valid == sum(s.scores is not None for s in v.samples)
  if v.voted["sum"].scores is not None:
    sums = np.sum([s.scores for s in v.samples if s.scores is not None], axis=0)
    assert v.voted["sum"].scores == list(sums) and v.best == v.voted["sum"].best
  again = grm.score([{"role": "user", "content": item.query}], item.responses, k=4, seed=1)
  assert [s.text for s in again.samples] == [s.text for s in v.samples]  # same seed, same critiques
  conversation = grm.score([Turn("user", "Hi."), Turn("assistant", "Hello."), ("user", item.query)],
                           item.responses, k=2)
  assert len(conversation.samples) == 2


def test_reward_fn_scores_a_group_in_one_call(grm, item):
  reward = grm.reward_fn(k=4)
  r = reward(item.query, list(item.responses) + [item.responses[0]], seed=2)
  assert r.shape == (4,) and r.dtype == np.float32 and ((1 <= r) & (r <= 10)).all()


def _example():
  spec = importlib.util.spec_from_file_location("grm_reward_example", ROOT / "scripts" / "grm_reward_example.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_a_toy_policy_moves_to_the_grm_preference_and_away_with_the_sign_flipped(grm, item, sign):
  prefs = grm.score(item.context, item.responses, k=16).voted["sum"].scores
  preferred = int(np.argmax(prefs))
  history = _example().train(grm, item.context, list(item.responses), steps=10, sign=sign)
  start, end = history[0][preferred], history[-1][preferred]
  assert abs(start - 1 / 3) < 1e-6
  if sign > 0:
    assert end > 0.8, (prefs, history[-1])
  else:
    assert end < 0.15, (prefs, history[-1])
