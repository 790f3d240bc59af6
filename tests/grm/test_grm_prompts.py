import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from spct_jax.example import GRMExample, Turn, assistant, user
from spct_jax.grm import prompts, scores

PAIR = GRMExample(context=(user("What is 2 + 2?"),), responses=("4", "5"), label=0, id="p")
DIALOGUE = GRMExample(
    context=(Turn("system", "Be brief."), user("Name a prime."), assistant("7."),
             user("Another one?")),
    responses=("11.", "9.", "13, and also 17."), label=2, id="d")
SINGLE = GRMExample(context=(user("Say hi."),), responses=("hi",), label=8, id="s")


def _in_order(text, parts):
  pos = [text.index(p) for p in parts]
  assert pos == sorted(pos), (parts, pos)


def test_paper_prompt_structure():
  text = prompts.render(DIALOGUE)
  _in_order(text, [
      "You are a skilled expert at scoring responses",
      "#### Evaluation Criteria ####", "Instruction Adherence", "Usefulness", "Level of Detail",
      "Relevance",
      "#### Conversation Context ####",
      "System: Be brief.\n\nUser: Name a prime.\n\nAssistant: 7.\n\nUser: Another one?",
      "#### Responses to be Scored ####",
      "[The Begin of Response 1]\n11.\n[The End of Response 1]",
      "[The Begin of Response 2]\n9.\n[The End of Response 2]",
      "[The Begin of Response 3]\n13, and also 17.\n[The End of Response 3]",
      "#### Output Format Requirements ####", "Output exactly three lines:",
      "\nSpecific Criteria: <", "\nAnalysis: <", "\nScores: <",
      "\\boxed{x_1, x_2, x_3}",
  ])
  assert "The best response is" not in text
  assert "be as strict as possible" in text


def test_variants():
  base = prompts.render(PAIR, "principles")
  bare = prompts.render(PAIR, "no_principles")
  hinted = prompts.render(PAIR, "hinted")
  assert "Specific Criteria:" in base and "Specific Criteria:" not in bare
  assert "Output exactly two lines:" in bare
  assert "criteria specific to this query" in base and "criteria specific" not in bare
  assert "\nThe best response is: Response 1\n" in hinted
  assert hinted.replace("The best response is: Response 1\n\n", "") == base
  assert "The best response is: Response 3" in prompts.render(DIALOGUE, "hinted", "compact")


def test_hinted_needs_two_responses():
  with pytest.raises(ValueError, match=r"variant='hinted' needs n >= 2 responses; "
                                       r"GRMExample\(id='s'\) has n=1"):
    prompts.render(SINGLE, "hinted")


def test_bad_variant_and_style():
  with pytest.raises(ValueError, match=r"variant='best'"):
    prompts.render(PAIR, "best")
  with pytest.raises(ValueError, match=r"style='long'"):
    prompts.render(PAIR, style="long")


def test_compact_prompt_exact_text():
  assert prompts.render(PAIR, style="compact") == (
      "Score each response 1-10 (1: meets no criteria, 6: some, 10: all). The last user turn is "
      "the query. State criteria specific to it, with weights, then analyze. Be strict.\n"
      "Criteria: instruction adherence, usefulness, detail, relevance.\n"
      "## Context\nUser: What is 2 + 2?\n"
      "## Responses\n[Response 1]\n4\n[End 1]\n[Response 2]\n5\n[End 2]\n"
      "## Output\nThree lines:\nSpecific Criteria: <criteria, weights>\nAnalysis: <analysis>\n"
      "Scores: \\boxed{x_1, x_2}")
  single = prompts.render(SINGLE, "no_principles", "compact")
  assert single.endswith("## Output\nTwo lines:\nAnalysis: <analysis>\nScores: \\boxed{x_1}")
  for variant in ("principles", "no_principles", "hinted"):
    assert len(prompts.render(PAIR, variant, "compact")) < len(prompts.render(PAIR, variant)) / 4


def test_format_critique():
  assert prompts.format_critique("Correctness (weight 0.7).", "A is right.", [7, 3]) == (
      "Specific Criteria: Correctness (weight 0.7).\nAnalysis: A is right.\nScores: \\boxed{7, 3}")
  assert prompts.format_critique("", "Fine.", [np.int64(5)]) == "Analysis: Fine.\nScores: \\boxed{5}"
  # Out-of-range values are written as given (a deliberately invalid critique).
  assert prompts.format_critique("", "x", [11, 3]).endswith("\\boxed{11, 3}")
  with pytest.raises(ValueError, match=r"scores\[1\]=3.5 is not an integer"):
    prompts.format_critique("p", "a", [7, 3.5])
  with pytest.raises(ValueError, match=r"scores is empty"):
    prompts.format_critique("p", "a", [])


def test_shuffle_is_seeded_and_label_follows():
  a, perm_a = prompts.shuffle(DIALOGUE, 3)
  b, perm_b = prompts.shuffle(DIALOGUE, 3)
  assert a == b and perm_a == perm_b
  assert sorted(perm_a) == [0, 1, 2]
  assert a.responses == tuple(DIALOGUE.responses[p] for p in perm_a)
  assert a.responses[a.label] == DIALOGUE.responses[DIALOGUE.label]
  perms = {prompts.shuffle(DIALOGUE, s)[1] for s in range(40)}
  assert len(perms) == 6  # every order of 3 responses shows up
  # A Generator is advanced: the same stream of permutations as a fresh one with its seed.
  rng1, rng2 = np.random.default_rng(7), np.random.default_rng(7)
  first = [prompts.shuffle(DIALOGUE, rng1)[1] for _ in range(5)]
  assert first == [prompts.shuffle(DIALOGUE, rng2)[1] for _ in range(5)]
  assert len(set(first)) > 1
  with pytest.raises(TypeError, match="seed_or_rng must be an int or a numpy Generator"):
    prompts.shuffle(DIALOGUE, "3")


def _scorer(response: str) -> int:
  """A position-blind judge: the score depends on the response text only."""
  return 1 + sum(map(ord, response)) % 10


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=6, unique=True),
       st.integers(0, 2**31 - 1))
def test_scores_map_back_to_the_original_order(responses, seed):
  n = len(responses)
  ex = GRMExample(context=(user("q"),), responses=tuple(responses), label=0 if n > 1 else 5)
  shuffled, perm = prompts.shuffle(ex, seed)
  critique = prompts.format_critique("c", "a", [_scorer(r) for r in shuffled.responses])
  parsed = scores.parse_scores(critique, n)
  assert prompts.unshuffle(parsed, perm) == [_scorer(r) for r in responses]
  # The rule gives the same verdict in either order.
  assert (scores.is_correct(parsed, shuffled.label, n)
          == scores.is_correct(prompts.unshuffle(parsed, perm), ex.label, n))


def test_unshuffle_every_permutation_of_three():
  original = ["a", "b", "c"]
  for perm in itertools.permutations(range(3)):
    shown = [original[p] for p in perm]
    assert prompts.unshuffle(shown, perm) == original
  assert prompts.unshuffle(None, (1, 0)) is None
  with pytest.raises(ValueError, match=r"3 scores for a permutation of 2 responses"):
    prompts.unshuffle([1, 2, 3], (1, 0))
  with pytest.raises(ValueError, match=r"is not a permutation"):
    prompts.unshuffle([1, 2], (1, 1))


def test_meta_variant_is_instruction_context_and_responses_only():
  text = prompts.render(DIALOGUE, "meta", "compact")
  assert text.startswith(prompts.META_INSTRUCTION + "\n## Context\n")
  assert text.endswith("[Response 3]\n13, and also 17.\n[End 3]")
  assert "Specific Criteria" not in text and "Criteria:" not in text and "\\boxed" not in text
  assert prompts.render(SINGLE, "meta", "paper").startswith(prompts.META_INSTRUCTION + "\n\n#### Conversation Context ####")
