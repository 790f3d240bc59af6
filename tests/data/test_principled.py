"""The principled world: items read back from their text, a wrong principle picks a specific wrong
response, the teacher's documented noise, and no shortcut in the responses' text."""
import collections
import re

import numpy as np
import pytest

from spct_jax.data import principled, synthetic
from spct_jax.example import GRMExample, assistant, user
from spct_jax.grm import prompts, scores
from spct_jax.train import chain, stage


@pytest.fixture(scope="module")
def items():
  return {d: principled.generate(400, seed=20 + d, difficulty=d) for d in principled.DIFFICULTIES}


def test_same_seed_same_items_and_item_i_depends_on_seed_and_i():
  a = principled.generate(50, seed=3)
  assert a == principled.generate(50, seed=3)
  assert principled.generate(20, seed=3) == a[:20]
  assert sum(x != y for x, y in zip(a, principled.generate(50, seed=4))) >= 45
  assert len({ex.id for ex in a}) == 50


def test_the_reader_recovers_the_construction(items):
  for d, exs in items.items():
    assert {ex.n for ex in exs} == set(principled.RESPONSE_COUNTS)
    assert set(collections.Counter(ex.family for ex in exs)) == set(principled.FAMILIES)
    assert len(collections.Counter(ex.label for ex in exs if ex.n == 4)) == 4
    for ex in exs:
      rd = principled.read(ex)
      assert rd.decisive == ex.family
      assert len(rd.contested) == max(ex.n, 3)
      # every response meets exactly one contested criterion; the best one meets the decisive one
      met = [[c for c in rd.contested if m[c]] for m in rd.meets]
      assert all(len(m) == 1 for m in met), (ex, met)
      assert met[ex.label] == [rd.decisive]
      # criteria nobody contests are met by every response
      assert all(m[c] for m in rd.meets for c in principled.CRITERIA if c not in rd.contested)
      grades = principled.check(ex)
      assert grades.index(max(grades)) == ex.label and grades.count(max(grades)) == 1
      assert len(set(ex.responses)) == ex.n


def test_a_wrong_main_principle_picks_the_response_that_meets_it_never_a_random_one(items):
  for ex in items[2]:
    rd = principled.read(ex)
    for main in rd.contested:
      for weight in principled.MAIN_WEIGHTS[len(rd.contested)]:
        g = principled._grades(rd, main, weight)
        winners = [i for i, m in enumerate(rd.meets) if m[main]]
        if winners:
          assert g.index(max(g)) == winners[0] and g.count(max(g)) == 1
          assert (winners[0] == ex.label) == (main == rd.decisive)
        else:  # a criterion both responses of a pair fail: no winner
          assert len(set(g)) == 1


@pytest.mark.parametrize("skill", [0.0, 0.4, 1.0])
def test_teacher_is_right_exactly_when_its_main_principle_is_the_decisive_one(items, skill):
  rng = np.random.default_rng(7)
  exs = items[1] + items[3]
  right, expected = 0, 0.0
  for ex in exs:
    shown, _ = prompts.shuffle(ex, rng)
    text = principled.teacher_critique(shown, rng, skill=skill)
    ok = scores.is_correct(scores.parse_scores(text, shown.n), shown.label, shown.n)
    principles, _ = prompts.split_critique(text)
    rd = principled.read(shown)
    first = principles.split(";")[0]
    decisive_first = first.startswith(principled._principle(rd.decisive, rd.refs))
    assert ok == decisive_first, text
    assert principled.main_principle(text) == (rd.decisive if decisive_first else
                                               next(c for c in principled.HABIT if c in rd.contested))
    habit = next(c for c in principled.HABIT if c in rd.contested)
    expected += 1.0 if habit == rd.decisive else skill
    weights = [int(w) for w in re.findall(r"weight (\d+)%", principles)]
    assert len(weights) == len(rd.contested) and 98 <= sum(weights) <= 100 and weights[0] > max(weights[1:])
    right += ok
  sigma = np.sqrt(len(exs) * 0.25)
  assert abs(right - expected) <= 4 * sigma + 1e-9, (right, expected)
  if skill == 1.0:
    assert right == len(exs)


def test_the_critique_without_principles_has_the_same_scores_and_no_trace_of_the_choice(items):
  """The baseline's teacher: the same judge (same draws, same scores) with no principles line, and
  an analysis that is the same whichever principle it chose (clauses in CRITERIA order), so only
  the scores carry the choice."""
  rng = np.random.default_rng(11)
  reordered = 0
  for ex in items[1] + items[3]:
    shown, _ = prompts.shuffle(ex, rng)
    seed = int(rng.integers(1 << 30))
    with_p = principled.teacher_critique(shown, seed, skill=0.4)
    without = principled.teacher_critique(shown, seed, skill=0.4, principles=False)
    principles, _ = prompts.split_critique(without)
    assert not principles and not without.startswith(prompts.PRINCIPLES_LABEL)
    assert scores.parse_scores(without, shown.n) == scores.parse_scores(with_p, shown.n)
    analyses = {prompts.split_critique(principled.teacher_critique(shown, seed, skill=s, principles=False))[1]
                .split(" Score ")[0] for s in (0.0, 1.0)}
    assert len(analyses) == 1  # the first response's clauses do not depend on the principle chosen
    rd = principled.read(shown)
    first = prompts.split_critique(without)[1].split(" Score ")[0]
    clauses = [principled._clause(c, rd.refs, rd.said[0], rd.meets[0][c]) for c in rd.contested]
    assert first == "Response 1 " + ", ".join(clauses) + "."
    reordered += prompts.split_critique(with_p)[1] != prompts.split_critique(without)[1]
  assert reordered > 0  # where the main principle is not the first contested criterion, the order differs


def _features(exs, vocab=None):
  """Per response: bag of words (the final mark as a word), word and character length, position
  and count one-hot; each also centred within its item (so differences from the item's other
  responses count too)."""
  def words(text):
    return re.findall(r"[A-Za-z]+|[.!?]", text)
  if vocab is None:
    vocab = sorted({w for ex in exs for r in ex.responses for w in words(r)})
  index = {w: i for i, w in enumerate(vocab)}
  rows, groups, ys = [], [], []
  for g, ex in enumerate(exs):
    block = []
    for pos, r in enumerate(ex.responses):
      f = np.zeros(len(vocab) + 2 + 4 + 3)
      for w in words(r):
        if w in index:
          f[index[w]] += 1
      f[len(vocab)] = len(words(r)) / 10
      f[len(vocab) + 1] = len(r) / 50
      f[len(vocab) + 2 + pos] = 1
      f[len(vocab) + 6 + ex.n - 2] = 1
      block.append(f)
      ys.append(float(pos == ex.label))
      groups.append(g)
    block = np.array(block)
    rows.append(np.concatenate([block, block - block.mean(0)], axis=1))
  return np.concatenate(rows), np.array(groups), np.array(ys), vocab


def _fit_and_pick(train, test, steps=400, lr=0.5, l2=1e-3):
  """A logistic regression on the responses' text features: its held-out best-of-item accuracy."""
  x, _, y, vocab = _features(train)
  w = np.zeros(x.shape[1])
  b = 0.0
  for _ in range(steps):
    p = 1 / (1 + np.exp(-(x @ w + b)))
    w -= lr * (x.T @ (p - y) / len(y) + l2 * w)
    b -= lr * float(np.mean(p - y))
  xt, groups, _, _ = _features(test, vocab)
  s = xt @ w
  hits, start = [], 0
  for ex in test:
    hits.append(int(np.argmax(s[start:start + ex.n])) == ex.label)
    start += ex.n
  chance = float(np.mean([1 / ex.n for ex in test]))
  return float(np.mean(hits)), chance


def test_no_lexical_shortcut_a_text_only_classifier_stays_at_chance():
  train = principled.generate(3000, seed=101)
  test = principled.generate(1000, seed=202)
  acc, chance = _fit_and_pick(train, test)
  assert acc <= chance + 0.05, (acc, chance)
  # the same classifier finds the classic world's shortcuts (a negative control: it can fail)
  classic_train = [ex for ex in synthetic.generate(4000, seed=101, n_responses=(2, 3, 4))]
  classic_test = [ex for ex in synthetic.generate(1300, seed=202, n_responses=(2, 3, 4))]
  acc_c, chance_c = _fit_and_pick(classic_train, classic_test)
  assert acc_c >= chance_c + 0.15, (acc_c, chance_c)


def test_main_principle_is_none_without_readable_principles():
  analysis_only = prompts.format_critique("", "Response 1 says Lome.", [7, 2])
  assert principled.main_principle(analysis_only) is None
  assert principled.main_principle(prompts.format_critique("Is polite (weight 60%).", "x", [7, 2])) is None
  assert principled.main_principle("no format at all") is None


def test_bad_input_names_the_item_and_the_knob():
  classic = synthetic.generate(1, seed=0, families=("bias",), n_responses=(2,))[0]
  with pytest.raises(ValueError, match=r"id='bias-0-0'.*introduction"):
    principled.read(classic)
  ex = principled.generate(1, seed=0)[0]
  broken = GRMExample(context=ex.context[:2] + (user(ex.context[2].text + " Thanks."),),
                      responses=ex.responses, label=ex.label, family=ex.family, id="x1")
  with pytest.raises(ValueError, match="id='x1'.*purpose sentence"):
    principled.read(broken)
  with pytest.raises(ValueError, match=r"n_responses=\(1, 2\)"):
    principled.generate(3, seed=0, n_responses=(1, 2))
  with pytest.raises(ValueError, match="skill=1.5"):
    principled.teacher_critique(ex, 0, skill=1.5)
  assert principled.read(GRMExample(context=(user("Hi, I am Ana. My friend Bo says hello."), assistant("Hello, Ana!"),
                                             user("Table: Varo: capital Kell, river Orin. What is the capital "
                                                  "of Varo? I need the right answer for a quiz.")),
                                    responses=("Ana, the capital of Varo is Kell.", "Ana, the capital of Varo is Orin."),
                                    label=0, family="fact", id="hand")).contested == ("fact",)


def test_stages_read_the_world_from_the_config():
  cfg = chain.load_config(str(stage_root() / "warmup_principled.py"))
  exs = stage.items(cfg, 6, seed=1)
  assert all(ex.id.startswith("principled-") for ex in exs)
  pairs = stage.teacher_pairs(cfg, exs, seed=1)
  assert all(prompts.PRINCIPLES_LABEL in c for _, c in pairs)
  np_cfg = chain.load_config(str(stage_root() / "warmup_principled_no_principles.py"))
  np_pairs = stage.teacher_pairs(np_cfg, exs, seed=1)  # the same judge's critiques without principles
  for (shown, c), (np_shown, np_c) in zip(pairs, np_pairs):
    rd = principled.read(shown)
    first = [principled._clause(k, rd.refs, rd.said[0], rd.meets[0][k]) for k in rd.contested]
    assert np_shown == shown and not np_c.startswith(prompts.PRINCIPLES_LABEL)
    assert prompts.split_critique(np_c)[1].startswith("Response 1 " + ", ".join(first) + ". Score ")
    assert scores.parse_scores(np_c, shown.n) == scores.parse_scores(c, shown.n)
  cfg.data.world = "other"
  with pytest.raises(ValueError, match="data.world='other'"):
    stage.items(cfg, 2, seed=1)


def stage_root():
  import pathlib
  return pathlib.Path(__file__).resolve().parents[2] / "configs"


def test_evaluation_reports_how_often_the_main_principle_is_the_decisive_one():
  from spct_jax import judge as judge_lib
  from spct_jax.evaluate import report
  from spct_jax.evaluate import run as eval_run
  cfg = chain.load_config(str(stage_root() / "eval_principled.py"))
  cfg.eval.update(n_boot=20, n_draws=2)
  exs = principled.generate(40, seed=5)
  rng = np.random.default_rng(0)

  def judgement(ex, k, skill):
    texts = [principled.teacher_critique(ex, rng, skill=skill) for _ in range(k)]
    return judge_lib.Judgement(texts, [scores.parse_scores(t, ex.n) for t in texts], [tuple(range(ex.n))] * k)

  greedy = [judgement(ex, 1, 1.0) for ex in exs]       # the oracle's greedy critique
  pool = [judgement(ex, 4, 0.0) for ex in exs]         # a pool of the habitual favourite only
  out, _ = eval_run.model_summary(eval_run.Judged("grpo", "stage:grpo", "default", greedy, pool, 4), exs,
                                  list(range(len(exs))), (1, 2, 4), cfg)
  habit_is_decisive = np.mean([next(c for c in principled.HABIT if c in principled.read(ex).contested) == ex.family
                               for ex in exs])
  assert out["decisive_first"] == 1.0 and out["greedy"] == 1.0
  assert out["reading"] == 1.0 and out["scores_follow_analysis"] == 1.0  # the teacher reads and scores right
  assert out["decisive_first_pool"] == pytest.approx(habit_is_decisive) and 0 < habit_is_decisive < 1
  table = report.comparison_table({"models": {"grpo": out}})
  assert "decisive principle first (greedy / pool)" in table
  assert f"| 100.0 / {100 * habit_is_decisive:.1f} | 100.0 / 100.0 |" in table


def test_critique_parts_split_a_verdict_into_choice_reading_and_scores_that_follow():
  rng = np.random.default_rng(11)
  exs = principled.generate(200, seed=31)
  swapped_reading, seen = [], 0
  for ex in exs:
    text = principled.teacher_critique(ex, rng, skill=0.5)
    parts = principled.critique_parts(ex, text)
    rd, main = principled.read(ex), principled.main_principle(text)
    assert parts["choice"] == (main == ex.family) and parts["reading"] == 1.0
    assert parts["follows"] is (True if any(m[main] for m in rd.meets) else None), text
    if parts["follows"] is None:
      continue
    seen += 1
    # the analyses of two responses swapped (a misreading): reading drops; scores that followed
    # the truth no longer follow this analysis
    principles, analysis = prompts.split_critique(text)
    notes = re.split(r"(Response \d+ )", analysis)[1:]
    bodies = notes[1::2]
    winner = next(i for i, m in enumerate(rd.meets) if m[main])
    other = (winner + 1) % ex.n
    bodies[winner], bodies[other] = bodies[other], bodies[winner]
    misread = "".join(h + b for h, b in zip(notes[0::2], bodies))
    parsed = scores.parse_scores(text, ex.n)
    bad = principled.critique_parts(ex, prompts.format_critique(principles, misread.strip(), parsed))
    swapped_reading.append(bad["reading"])
    assert bad["follows"] is False
    # the scores of the winner and another swapped: the analysis is right, the scores do not follow it
    wrong = list(parsed)
    wrong[winner], wrong[other] = wrong[other], wrong[winner]
    bad = principled.critique_parts(ex, prompts.format_critique(principles, analysis, wrong))
    assert bad["reading"] == 1.0 and bad["follows"] is False
  assert seen > 150 and max(swapped_reading) < 1.0
  assert principled.critique_parts(exs[0], prompts.format_critique("", "Response 1 says Lome.", [7, 2])) is None


def test_each_analysis_segment_ends_with_the_score_the_box_repeats():
  rng = np.random.default_rng(23)
  for ex in principled.generate(60, seed=41):
    text = principled.teacher_critique(ex, rng, skill=0.5, error_rate=0.3)
    _, analysis = prompts.split_critique(text)
    local = [int(s) for s in re.findall(r"Score (\d+)\.(?: |$)", analysis)]
    segments = re.split(r"Response \d+ ", analysis)[1:]
    assert len(segments) == ex.n and all(re.search(r"\. Score \d+\.$", seg.strip()) for seg in segments), text
    assert local == scores.parse_scores(text, ex.n), text
