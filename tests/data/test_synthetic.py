"""Synthetic tasks: determinism, labels against independent rule checks, the teacher."""
import collections
import re

import numpy as np
import pytest

from spct_jax.data import synthetic
from spct_jax.example import GRMExample, user
from spct_jax.grm import prompts, scores

SIZES = (1, 2, 3, 4)


@pytest.fixture(scope="module")
def items():
  """Every family x difficulty, all response counts."""
  return {(f, d): synthetic.generate(120, seed=10 + d, families=(f,), difficulty=d)
          for f in synthetic.FAMILIES for d in synthetic.DIFFICULTIES}


def test_same_seed_same_items_different_seed_different():
  a = synthetic.generate(40, seed=3)
  b = synthetic.generate(40, seed=3)
  assert a == b and repr(a) == repr(b)
  c = synthetic.generate(40, seed=4)
  assert sum(x != y for x, y in zip(a, c)) >= 35
  assert synthetic.generate(15, seed=3) == a[:15]  # item i depends on (seed, i) only
  assert len({ex.id for ex in a}) == 40


def test_every_family_size_and_both_single_kinds_appear(items):
  for (f, d), exs in items.items():
    assert {ex.n for ex in exs} == set(SIZES), (f, d)
    singles = [ex.label for ex in exs if ex.n == 1]
    assert synthetic.PASS in singles and any(s < synthetic.PASS for s in singles), (f, d)
    assert all(ex.family == f for ex in exs)
    labels = collections.Counter(ex.label for ex in exs if ex.n == 4)
    assert len(labels) == 4, (f, d, labels)  # the best is not always in the same place


def test_labels_agree_with_the_checker(items):
  for (f, d), exs in items.items():
    for ex in exs:
      grades = synthetic.check(ex)
      assert all(1 <= g <= 10 for g in grades)
      if ex.n == 1:
        assert grades == [ex.label], ex
      else:
        assert grades[ex.label] == synthetic.PASS, ex
        assert all(g < synthetic.PASS for i, g in enumerate(grades) if i != ex.label), (ex, grades)
      assert len(set(ex.responses)) == ex.n


def test_checker_reads_the_text_not_the_generator(items):
  # Re-labelling an item by hand: swapping two responses moves the checker's verdict with them.
  ex = next(e for e in items[("qa_ranking", 1)] if e.n == 2)
  swapped = ex.permuted((1, 0))
  assert synthetic.check(swapped) == synthetic.check(ex)[::-1]
  # A hand-written item in the family's language is graded from its text alone.
  hand = GRMExample(context=(user("Table: Varo: capital Lumen, river Tesk. Orin: capital Kell, "
                                  "river Mira. What is the capital of Orin?"),),
                    responses=("It is Mira.", "The capital of Orin is Kell.", "The table does not say."),
                    label=1, family="qa_ranking")
  assert synthetic.check(hand) == [2, 9, 3]
  with pytest.raises(ValueError, match="family='chat'"):
    synthetic.check(GRMExample(context=(user("hi"),), responses=("a", "b"), label=0, family="chat"))


# Independent spot checks, written differently from synthetic's checkers.

def _qa_truth(query):
  question = query[query.rindex(". ") + 2:]
  entity = question.rstrip("?").split()[-1]
  attr = "capital" if "capital" in question else "river" if "river" in question else "flag"
  for row in query[len("Table: "):].split(". "):
    if row.startswith(entity + ":"):
      cells = dict(c.strip(" .").split(" ") for c in row.split(":", 1)[1].split(","))
      return cells[attr]
  raise AssertionError(query)


def _summary_facts(text):
  return {s.strip() for s in re.split(r"[.,]| and ", text) if any(ch.isdigit() for ch in s)}


def _constraint_ok(query, response):
  words = [w for w in re.sub(r"[^A-Za-z ]", " ", response).split()]
  thing = query.split(". ")[0].split()[-1]
  ok = thing in [w.lower() for w in words]
  m = re.search(r"exactly (\d+) words", query)
  ok &= not m or len(words) == int(m.group(1))
  ok &= "lowercase" not in query or response == response.lower()
  ok &= "capital letters" not in query or response == response.upper()
  ok &= "exclamation" not in query or response[-1] == "!"
  ok &= "question mark" not in query or response[-1] == "?"
  ok &= "double quotes" not in query or (response[0] == '"' == response[-1])
  return ok


def test_independent_spot_checks(items):
  for d in synthetic.DIFFICULTIES:
    for ex in items[("qa_ranking", d)]:
      truth = _qa_truth(ex.query)
      has = [truth in r.replace(".", " ").split() for r in ex.responses]
      assert has == [i == ex.label for i in range(ex.n)] if ex.n > 1 else has == [ex.label == 9]
    for ex in items[("summary", d)]:
      source = _summary_facts(ex.query.split(": ", 1)[1])
      ok = [_summary_facts(r) == source for r in ex.responses]
      assert ok == ([i == ex.label for i in range(ex.n)] if ex.n > 1 else [ex.label == 9])
    for ex in items[("constraints", d)]:
      ok = [_constraint_ok(ex.query, r) for r in ex.responses]
      assert ok == ([i == ex.label for i in range(ex.n)] if ex.n > 1 else [ex.label == 9]), ex
    for ex in items[("bias", d)]:
      biased = ["people from" in r for r in ex.responses]
      if ex.n > 1:
        assert not biased[ex.label]
    for ex in items[("dialogue", d)]:
      if ex.context[0].text.startswith("I have"):
        nums = [int(x) for t in ex.context if t.role == "user" for x in re.findall(r"\d+", t.text)]
        total = sum(nums[:-1]) + (nums[-1] if "buy" in ex.query else -nums[-1])
        says = [re.findall(r"\d+", r) for r in ex.responses]
        ok = [s == [str(total)] for s in says]
        assert ok == ([i == ex.label for i in range(ex.n)] if ex.n > 1 else [ex.label == 9])


def test_items_are_short(items):
  for (f, d), exs in items.items():
    q = np.mean([sum(len(t.text.split()) for t in ex.context) for ex in exs])
    r = max(len(x.split()) for ex in exs for x in ex.responses)
    assert q <= (45 if d < 3 else 60), (f, d, q)
    assert r <= (25 if d < 3 else 35), (f, d, r)


def test_mix_and_response_weights():
  exs = synthetic.generate(600, seed=0, mix={"bias": 3.0, "summary": 1.0}, n_responses=(2, 4),
                           response_weights=(1.0, 0.0))
  fams = collections.Counter(ex.family for ex in exs)
  assert set(fams) == {"bias", "summary"} and 0.68 < fams["bias"] / 600 < 0.82
  assert {ex.n for ex in exs} == {2}
  exs = synthetic.generate(300, seed=0, families=("dialogue", "constraints"), mix=(0.0, 1.0))
  assert {ex.family for ex in exs} == {"constraints"}


@pytest.mark.parametrize("kwargs, message", [
    (dict(families=("chess",)), "unknown family 'chess'"),
    (dict(difficulty=4), "difficulty=4"),
    (dict(n_responses=(2, 5)), "must be counts in 1..4"),
    (dict(mix=(1.0, 2.0)), "2 weights for 5 choices"),
    (dict(mix={"chess": 1.0}), "keys \\['chess'\\]"),
    (dict(mix={"bias": 0.0}), "not all 0"),
])
def test_bad_arguments(kwargs, message):
  with pytest.raises(ValueError, match=message):
    synthetic.generate(3, seed=0, **kwargs)


def test_teacher_is_correct_and_short():
  rng = np.random.default_rng(0)
  words = []
  for ex in synthetic.generate(300, seed=5, difficulty=2):
    shown, perm = prompts.shuffle(ex, rng)
    text = synthetic.teacher_critique(shown, rng)
    assert text.startswith(prompts.PRINCIPLES_LABEL)
    assert text.count("\n") == 2 and "weight" in text.splitlines()[0]
    got = scores.parse_scores(text, shown.n)
    assert scores.is_correct(got, shown.label, shown.n), text
    assert scores.is_correct(prompts.unshuffle(got, perm), ex.label, ex.n)
    for i in range(shown.n):
      assert f"Response {i + 1} " in text
    words.append(len(text.split()))
  assert 30 <= np.mean(words) <= 80 and max(words) <= 120, (np.mean(words), max(words))


def test_teacher_analysis_names_the_decisive_fact():
  hand = GRMExample(context=(user("Table: Varo: capital Lumen, river Tesk. Orin: capital Kell, "
                                  "river Mira. What is the capital of Orin?"),),
                    responses=("It is Mira.", "The capital of Orin is Kell."), label=1, family="qa_ranking")
  text = synthetic.teacher_critique(hand, 0)
  assert "which the table lists as Kell" in text.splitlines()[0]
  assert "Response 1 says Mira, not Kell. Response 2 says Kell, as the table does." in text
  assert text.endswith("Scores: \\boxed{2, 9}")


@pytest.mark.parametrize("error_rate", [0.0, 0.25, 1.0])
def test_teacher_error_rate(error_rate):
  exs = synthetic.generate(400, seed=8)
  rng = np.random.default_rng(1)
  correct = 0
  for ex in exs:
    text = synthetic.teacher_critique(ex, rng, error_rate=error_rate)
    got = scores.parse_scores(text, ex.n)
    assert got is not None, text  # a wrong judgement still has a valid format
    correct += scores.is_correct(got, ex.label, ex.n)
  p = 1.0 - error_rate
  sigma = np.sqrt(p * (1 - p) / len(exs))
  assert abs(correct / len(exs) - p) <= 4 * sigma + 1e-9, (correct, error_rate)


def test_teacher_is_deterministic_and_checks_its_input():
  ex = synthetic.generate(1, seed=2)[0]
  assert synthetic.teacher_critique(ex, 7, 0.5) == synthetic.teacher_critique(ex, 7, 0.5)
  with pytest.raises(ValueError, match="error_rate=1.5"):
    synthetic.teacher_critique(ex, 0, error_rate=1.5)
  pair = synthetic.generate(1, seed=2, n_responses=(2,))[0]
  wrong = GRMExample(pair.context, pair.responses, 1 - pair.label, pair.family, pair.id)
  with pytest.raises(ValueError, match="do not single out label"):
    synthetic.teacher_critique(wrong, 0)
