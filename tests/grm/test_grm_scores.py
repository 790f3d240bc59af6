import pytest
from hypothesis import given, settings, strategies as st

from spct_jax.grm import prompts, scores

parse = scores.parse_scores


# ---- well-formed critiques --------------------------------------------------------------------
@pytest.mark.parametrize("text,n,expected", [
    ("Specific Criteria: x.\nAnalysis: y.\nScores: \\boxed{7, 3}", 2, [7, 3]),
    ("Scores: \\boxed{7,3}", 2, [7, 3]),
    ("Scores: \\boxed{ 7 ,  3 }", 2, [7, 3]),
    ("Scores: \\boxed{7, 3}.", 2, [7, 3]),          # trailing period after the box
    ("Scores: \\boxed{7, 3.}", 2, [7, 3]),          # trailing period inside the box
    ("Scores: \\boxed {10, 1}", 2, [10, 1]),        # space before the brace
    ("Scores:\\boxed{5}", 1, [5]),
    ("Scores: \\boxed{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}", 10, list(range(1, 11))),
    ("**Scores:** \\boxed{6, 6}\n", 2, [6, 6]),     # ties parse; the rule judges them
    ("Scores: \\boxed{2, 9} and some words after it", 2, [2, 9]),
])
def test_well_formed(text, n, expected):
  assert parse(text, n) == expected


# ---- invalid critiques ------------------------------------------------------------------------
@pytest.mark.parametrize("text,n", [
    ("Scores: \\boxed{0, 3}", 2),                  # out of range (low)
    ("Scores: \\boxed{7, 11}", 2),                 # out of range (high)
    ("Scores: \\boxed{7, 3, 5}", 2),               # too many
    ("Scores: \\boxed{7}", 2),                     # too few
    ("Scores: \\boxed{}", 1),                      # empty
    ("Scores: \\boxed{7, 3,}", 2),                 # trailing comma
    ("Scores: \\boxed{7.5, 3}", 2),                # not an integer
    ("Scores: \\boxed{-3, 3}", 2),                 # sign
    ("Scores: \\boxed{+3, 3}", 2),
    ("Scores: \\boxed{seven, 3}", 2),
    ("Scores: \\boxed{\u0667, 3}", 2),             # non-ASCII digit
    ("Scores: \\boxed{\\text{7}, 3}", 2),          # nested braces
    ("Scores: \\boxed{7, 3", 2),                   # unclosed (truncated generation)
    ("Analysis: fine.\n\\boxed{7, 3}", 2),         # missing 'Scores:'
    ("\\boxed{7, 3}\nScores: done", 2),            # 'Scores:' only after the box
    ("Scores: 7, 3", 2),                           # no box at all
    ("", 2),
    ("Scores: [[7, 3]", 2),                        # unclosed fallback
    ("Scores: \\boxed{7 3}", 2),
])
def test_invalid(text, n):
  assert parse(text, n) is None


def test_several_boxes_take_the_last():
  text = "Analysis: format is \\boxed{x_1, x_2}; A beats B.\nScores: \\boxed{8, 2}\nScores: \\boxed{4, 6}"
  assert parse(text, 2) == [4, 6]
  # The last box decides even when it is invalid and an earlier one is valid.
  assert parse("Scores: \\boxed{8, 2} then \\boxed{8, 12}", 2) is None


def test_double_bracket_fallback_only_without_a_box():
  assert parse("Scores: [[2, 4]]", 2) == [2, 4]
  assert parse("Scores: [[2, 4]] [[5, 6]].", 2) == [5, 6]
  assert parse("Scores: [[ 2 , 4. ]]", 2) == [2, 4]
  assert parse("[[2, 4]]", 2) is None                     # needs 'Scores:' too
  assert parse("Scores: [[2, 4]] \\boxed{2, 4", 2) is None  # a box is present (broken): no fallback
  assert parse("Scores: [[2, 4]] \\boxed{5, 1}", 2) == [5, 1]
  assert parse("Scores: [[2, 11]]", 2) is None


def test_bad_n_is_a_caller_error():
  with pytest.raises(ValueError, match=r"scores.parse_scores: n=0 must be an int >= 1"):
    parse("Scores: \\boxed{1}", 0)


def test_non_string_text_is_invalid_not_a_crash():
  assert parse(None, 2) is None
  assert parse(b"Scores: \\boxed{1, 2}", 2) is None


# ---- properties -------------------------------------------------------------------------------
_FRAGMENTS = ["Scores:", "Scores: ", "\\boxed", "\\boxed{", "{", "}", "[[", "]]", "[", "]", ",",
              ", ", " ", ".", "\n", "0", "1", "7", "10", "11", "-", "x", "\\", "Specific Criteria:",
              "Analysis:", "\u0663", "\x00", "}}", "{{"]


@settings(max_examples=300, deadline=None)
@given(st.text(), st.integers(1, 12))
def test_never_raises_on_any_text(text, n):
  out = parse(text, n)
  assert out is None or (len(out) == n and all(1 <= s <= 10 for s in out))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=30), st.integers(1, 4))
def test_never_raises_on_near_misses(parts, n):
  out = parse("".join(parts), n)
  assert out is None or (len(out) == n and all(isinstance(s, int) and 1 <= s <= 10 for s in out))


_SPACE = st.sampled_from(["", " ", "  ", "\t"])
_NO_BOX_TEXT = st.text(alphabet=st.characters(blacklist_characters="\\"), max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, 10), min_size=1, max_size=8), _NO_BOX_TEXT, _NO_BOX_TEXT,
       st.data())
def test_every_well_formed_box_parses_exactly(values, before, after, data):
  items = [data.draw(_SPACE) + str(v) + data.draw(_SPACE) for v in values]
  period = data.draw(st.sampled_from(["", "."]))
  text = f"{before}Scores: \\boxed{{{','.join(items)}{period}}}{after}"
  assert parse(text, len(values)) == values


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 10), min_size=1, max_size=8), _NO_BOX_TEXT, _NO_BOX_TEXT)
def test_format_critique_round_trips(values, principles, analysis):
  text = prompts.format_critique(principles, analysis, values)
  assert parse(text, len(values)) == values
  assert parse(text, len(values) + 1) is None


# ---- the correctness rule ---------------------------------------------------------------------
def test_is_correct_pairwise_and_ties():
  assert scores.is_correct([7, 3], 0, 2)
  assert not scores.is_correct([7, 3], 1, 2)
  assert not scores.is_correct([5, 5], 0, 2)            # ties are wrong
  assert not scores.is_correct([5, 5], 1, 2)
  assert scores.is_correct([2, 9, 8], 1, 3)
  assert not scores.is_correct([9, 9, 8], 0, 3)         # tied with another response
  assert not scores.is_correct(None, 0, 2)              # invalid is wrong


def test_is_correct_single_response_rating():
  assert scores.is_correct([7], 7, 1)
  assert not scores.is_correct([6], 7, 1)
  assert not scores.is_correct(None, 7, 1)


def test_rule_reward():
  assert scores.rule_reward([7, 3], 0, 2) == 1.0
  assert scores.rule_reward([3, 7], 0, 2) == -1.0
  assert scores.rule_reward([5, 5], 0, 2) == -1.0
  assert scores.rule_reward(None, 0, 2) == -1.0
  assert scores.rule_reward([4], 4, 1) == 1.0
  assert scores.rule_reward([4], 5, 1) == -1.0


def test_rule_errors_name_the_problem():
  with pytest.raises(ValueError, match=r"label=2 is not a response index in \[0, 2\)"):
    scores.is_correct([7, 3], 2, 2)
  with pytest.raises(ValueError, match=r"single-response label=0 is not a rating in 1..10"):
    scores.rule_reward([3], 0, 1)
  with pytest.raises(ValueError, match=r"3 scores for n=2 responses"):
    scores.is_correct([1, 2, 3], 0, 2)
