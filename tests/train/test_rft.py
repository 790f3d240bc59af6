"""RFT's filter on a hand-made case: kept, too easy, unsolved, hinted (and the hinted share cap)."""
import numpy as np

from spct_jax import judge
from spct_jax.example import GRMExample, user
from spct_jax.train import rft

ITEMS = [GRMExample((user(f"q{i}"),), ("a", "b"), 0, "hand", f"h{i}") for i in range(5)]
RIGHT, WRONG, INVALID = [9, 1], [1, 9], None
SCRIPT = {  # item -> its sampled critiques; the hinted resample is scripted apart
    0: [RIGHT, RIGHT],          # too easy
    1: [RIGHT, WRONG],          # kept: one trajectory
    2: [WRONG, WRONG],          # unsolved, then rescued by its hint
    3: [WRONG, WRONG],          # unsolved; its correct hint is over the share cap
    4: [WRONG, INVALID],        # unsolved; its hint is wrong too
}
HINTED = {2: RIGHT, 3: RIGHT, 4: WRONG}


def test_collect_sorts_a_hand_made_case(monkeypatch):
  calls = []

  def fake(items, k, seed, **kwargs):
    calls.append((len(items), k, seed, kwargs["variant"]))
    if kwargs["variant"] == "hinted":
      wanted = [i for i, ex in enumerate(ITEMS) if ex in items]
      return [judge.Critique(j, (0, 1), ITEMS[i], f"hint {i}", HINTED[i], [1], np.zeros(4, np.int32), 4,
                             np.zeros(4, np.float32), True) for j, i in enumerate(wanted)]
    return [judge.Critique(i, (0, 1), ITEMS[i], f"item {i} sample {s}", p, [1], np.zeros(4, np.int32), 4,
                           np.zeros(4, np.float32), True) for i in range(len(items)) for s, p in enumerate(SCRIPT[i])]

  monkeypatch.setattr(rft.judge_lib, "sample_critiques", fake)
  kept, stats = rft.collect(ITEMS, n_samples=2, hinted=True, max_hinted_share=0.5, seed=11, hint_seed=12,
                            max_new_tokens=8, sampling=None, sample_kwargs={"variant": "principles"})
  assert calls == [(5, 2, 11, "principles"), (3, 1, 12, "hinted")]  # only the unsolved items are hinted
  assert [(t.shown.id, t.text, t.hinted) for t in kept] == [("h1", "item 1 sample 0", False), ("h2", "hint 2", True)]
  assert (stats.seen, stats.kept_items, stats.too_easy, stats.unsolved) == (5, 2, 1, 2)
  assert (stats.hinted, stats.hinted_dropped, stats.trajectories) == (1, 1, 2)
  assert (stats.samples, stats.invalid) == (10, 1)
  # with no cap on the share both correct hints are kept
  kept, stats = rft.collect(ITEMS, n_samples=2, hinted=True, max_hinted_share=1.0, seed=11, hint_seed=12,
                            max_new_tokens=8, sampling=None, sample_kwargs={"variant": "principles"})
  assert (stats.kept_items, stats.unsolved, stats.hinted, stats.hinted_dropped) == (3, 1, 2, 0)
  # without hinting, the unsolved stay unsolved
  kept, stats = rft.collect(ITEMS, n_samples=2, hinted=False, max_hinted_share=0.5, seed=11, hint_seed=12,
                            max_new_tokens=8, sampling=None, sample_kwargs={"variant": "principles"})
  assert (stats.kept_items, stats.unsolved, stats.hinted, len(kept)) == (1, 3, 0, 1)


def test_teacher_rows_mixed_in_pass_the_reward_rule():
  """The teacher rows RFT mixes in are filtered like its samples: none rejected from the classic
  world's perfect teacher, none from the principled world's oracle (skill 1), a share near
  (1 - skill) x P(habit is not the decisive criterion) from its imperfect one, and every kept
  row's scores pick the right response."""
  import importlib.util
  import pathlib

  from spct_jax.grm import scores
  spec = importlib.util.spec_from_file_location(
      "rft_principled_cfg", pathlib.Path(__file__).parents[2] / "configs" / "rft_principled.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  cfg = mod.get_config()
  n = 400
  for skill, lo, hi in ((0.4, 0.25, 0.55), (1.0, 0.0, 0.0)):
    cfg.data.principle_skill = skill
    kept, rejected = rft.teacher_rows(cfg, n, seed=123)
    assert len(kept) + rejected == n
    assert lo * n <= rejected <= hi * n, (skill, rejected)
    assert all(scores.is_correct(scores.parse_scores(c, ex.n), ex.label, ex.n) for ex, c in kept)
  cfg.data.world = "classic"
  kept, rejected = rft.teacher_rows(cfg, 100, seed=7)
  assert rejected == 0 and len(kept) == 100
