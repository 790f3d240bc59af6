"""Synthetic GRM tasks whose right answer is known by construction (METHOD.md section 7).

One family per task type of the seed, plus an IFEval-like one:
  "dialogue":    multi-turn; the last user turn asks about (or counts from) an earlier turn;
  "qa_ranking":  a question about a small generated table given in the query;
  "summary":     the best summary keeps every key fact of the text and adds none;
  "bias":        pick a candidate by merit; some responses generalise about a group;
  "constraints": write one line under word-count, case and ending rules (checked by rule).

    exs = generate(1000, seed=0)                       # deterministic: same seed, same items
    exs = generate(64, seed=1, families=("summary",), n_responses=(2,), difficulty=3)
    text = teacher_critique(shown_example, rng, error_rate=0.1)   # principles + analysis + scores
    grades = check(example)                            # per-response 1..10 grades, from the text

Items are short (queries of ~10-40 words, responses of ~3-20 words) and use a small fixed
vocabulary of made-up names, so a few-million-parameter model with a 4096-piece tokenizer can
learn them on a CPU. Item i depends only on (seed, i): `generate(10, s)[:5] == generate(5, s)`.

Labels: with n >= 2 responses exactly one response meets the family's rule (the label is its
index; the others fail it in different ways); with n == 1 the label is the response's grade.
Every family grades a response on a fixed scale (GRADES: 9 = meets the rule; lower = the way it
fails). `check` re-derives the grades from the text alone (it parses the query, the context and
each response; it never sees how the item was generated), so tests can verify the generator.

`teacher_critique` writes a trajectory in the GRM output format (grm.prompts.format_critique)
for the example as presented (responses in the shown order): one "Specific Criteria:" line
with 1-3 weighted criteria specific to the query, an "Analysis:" with one clause per response
naming the decisive fact, and the checker's grades as scores. The criteria state the reference
the responses are held to (the table's value, the count, the facts, the most experienced
candidate), and each clause first quotes the response's own value, then compares it with that
reference ("says Mira, not Kell"): every judgement is written out step by step, so a small model
learns it as a chain of copies and comparisons rather than a lookup done in one token. With probability `error_rate` the
judgement is wrong but well formed (two responses' analyses and scores swapped for n >= 2; a
different rating for n == 1).
"""
from __future__ import annotations

import dataclasses
import re
from typing import Callable, Mapping, Sequence

import numpy as np

from spct_jax.example import GRMExample, Turn, assistant, user

FAMILIES = ("dialogue", "qa_ranking", "summary", "bias", "constraints")
DIFFICULTIES = (1, 2, 3)
MAX_RESPONSES = 4

# Fixed vocabulary (made-up place names; short common words).
PEOPLE = ("Ana", "Bo", "Cai", "Dara", "Eli", "Finn", "Gia", "Hal", "Ivo", "Juno", "Kai", "Lia",
          "Milo", "Nia", "Oto", "Pia")
PLACES = ("Varo", "Lumen", "Tesk", "Orin", "Brava", "Kell", "Mira", "Dovan", "Sato", "Pell",
          "Zuri", "Quill", "Rask", "Talo", "Vesk", "Nemo")
THINGS = ("lamp", "kite", "drum", "boat", "cup", "rope", "bell", "coin", "map", "hat", "book", "key")
COLORS = ("red", "blue", "green", "gold", "gray", "white")
TRAITS = ("lazy", "smart", "rude", "honest", "slow", "careless")
JOBS = ("baker", "guide", "clerk", "driver", "builder", "teacher")
VERBS = ("sold", "bought", "made", "lost", "found", "fixed")
FILLER_WORDS = ("bright", "small", "flies", "sings", "near", "over", "the", "old", "new", "soft",
                "high", "slow", "calm", "warm", "glows", "rests", "by", "my", "a", "far")
SUMMARY_FILLERS = ("The day was warm.", "The street was busy.", "Rain fell in the evening.",
                   "Music played all day.", "The shops opened late.", "A cold wind came.")

# Grades (the 1..10 scale of the GRM) per family: name -> grade. "pass" is the one that meets
# the rule; only a passing response can be the labelled best.
GRADES: dict[str, dict[str, int]] = {
    "qa_ranking": {"pass": 9, "no_answer": 3, "wrong": 2},
    "dialogue": {"pass": 9, "no_answer": 3, "wrong": 2},
    "summary": {"pass": 9, "missing": 5, "added": 3, "altered": 2},
    "bias": {"pass": 9, "no_pick": 5, "weaker": 4, "biased": 2, "biased_weaker": 1},
    "constraints": {"pass": 9, "one_rule": 5, "rules": 3, "off_topic": 2},
}
PASS = 9


@dataclasses.dataclass(frozen=True)
class Verdict:
  """The checker's judgement of one response: a 1..10 grade and the decisive fact, as a clause
  without its subject (the teacher writes 'Response i ' before it)."""
  grade: int
  note: str


@dataclasses.dataclass(frozen=True)
class _Item:
  """A generated item: context, responses and the grade each was built to have (GRADES)."""
  context: tuple[Turn, ...]
  responses: tuple[str, ...]
  grades: tuple[int, ...]


# ---------------------------------------------------------------------------------------------
# Small helpers.

def _pick(rng: np.random.Generator, seq: Sequence, k: int | None = None):
  """One element (k None) or k distinct elements of seq, in random order."""
  if k is None:
    return seq[int(rng.integers(len(seq)))]
  return [seq[int(i)] for i in rng.choice(len(seq), size=k, replace=False)]


def _plural(thing: str, k: int) -> str:
  return thing if k == 1 else thing + "s"


def _words(text: str) -> list[str]:
  """Words without surrounding punctuation or quotes."""
  return [w.strip(".,!?;:\"'") for w in text.split() if w.strip(".,!?;:\"'")]


# ---------------------------------------------------------------------------------------------
# qa_ranking: a table in the query, one question about it.

_QA_ATTRS = ("capital", "river", "flag")
_QA_QUESTIONS = {"capital": "What is the capital of {e}?", "river": "Which river runs through {e}?",
                 "flag": "What color is the flag of {e}?"}
_QA_ANSWERS = {
    "capital": ("The capital of {e} is {v}.", "{e} has {v} as its capital.", "It is {v}."),
    "river": ("The river of {e} is the {v}.", "The {v} runs through {e}.", "It is the {v}."),
    "flag": ("The flag of {e} is {v}.", "{e} has a {v} flag.", "It is {v}."),
}
_QA_NO_ANSWER = ("The table does not say.", "I cannot tell from the table.")


def _gen_qa(rng, n: int, want_pass: bool, difficulty: int) -> _Item:
  rows = difficulty + 1
  attrs = list(_QA_ATTRS) if difficulty >= 2 else ["capital", _pick(rng, ("river", "flag"))]
  places = _pick(rng, PLACES, rows * 3)
  entities, capitals, rivers = places[:rows], places[rows:2 * rows], places[2 * rows:]
  colors = _pick(rng, COLORS, rows)
  table = {"capital": capitals, "river": rivers, "flag": colors}
  lines = [f"{e}: " + ", ".join(f"{a} {table[a][r]}" for a in attrs) + "."
           for r, e in enumerate(entities)]
  row = int(rng.integers(rows))
  attr = _pick(rng, attrs)
  e, truth = entities[row], table[attr][row]
  query = "Table: " + " ".join(lines) + " " + _QA_QUESTIONS[attr].format(e=e)
  # Wrong answers: the same column in another row, another column of the row, a value not in
  # the table, or no answer.
  same_kind = PLACES if attr != "flag" else COLORS
  wrong_values = [table[attr][r] for r in range(rows) if r != row]
  wrong_values += [table[a][row] for a in attrs if a != attr]
  wrong_values += [_pick(rng, [v for v in same_kind if v not in places and v not in colors])]
  def answer(v):
    return _pick(rng, _QA_ANSWERS[attr]).format(e=e, v=v)
  g = GRADES["qa_ranking"]
  wrongs = [(answer(v), g["wrong"]) for v in _pick(rng, wrong_values, min(len(wrong_values), 3))]
  wrongs.append((_pick(rng, _QA_NO_ANSWER), g["no_answer"]))
  return _assemble(rng, (user(query),), answer(truth), wrongs, n, want_pass)


def _qa_truth(ex: GRMExample) -> tuple[str, str, str]:
  """(entity, attribute, the table's value) of a qa_ranking item, parsed from its query."""
  q = ex.query
  m = re.fullmatch(r"Table: (.*?) ((?:What|Which) .*\?)", q)
  if not m:
    raise ValueError(f"check: GRMExample(id={ex.id!r}) is not a qa_ranking query: {q!r}")
  table = {}
  for ent, cells in re.findall(r"([A-Z][a-z]+): ([^.]*)\.", m.group(1)):
    table[ent] = dict(cell.split(" ", 1) for cell in cells.split(", "))
  question = m.group(2)
  for attr, pattern in _QA_QUESTIONS.items():
    qm = re.fullmatch(re.escape(pattern).replace(r"\{e\}", r"([A-Z][a-z]+)"), question)
    if qm:
      e = qm.group(1)
      return e, attr, table[e][attr]
  raise ValueError(f"check: GRMExample(id={ex.id!r}): unknown qa_ranking question {question!r}")


def _check_qa(ex: GRMExample) -> list[Verdict]:
  e, attr, truth = _qa_truth(ex)
  out = []
  for r in ex.responses:
    values = [w for w in _words(r) if w != e and (w in PLACES or w in COLORS)]
    if not values:
      out.append(Verdict(GRADES["qa_ranking"]["no_answer"], f"gives no {attr}."))
    elif values == [truth]:
      out.append(Verdict(PASS, f"says {truth}, as the table does."))
    else:
      out.append(Verdict(GRADES["qa_ranking"]["wrong"], f"says {values[0]}, not {truth}."))
  return out


def _criteria_qa(ex: GRMExample) -> str:
  e, attr, truth = _qa_truth(ex)
  return (f"Gives the {attr} of {e}, which the table lists as {truth} (weight 80%); "
          f"answers directly (weight 20%).")


# ---------------------------------------------------------------------------------------------
# dialogue: the last turn depends on an earlier one (recall a fact, or count).

_FILLER_TURNS = (("The weather is nice today.", "That sounds pleasant."),
                 ("I had tea this morning.", "Tea is a good start."),
                 ("My week was busy.", "I hope it gets calmer."),
                 ("I read a book last night.", "Reading is relaxing."))
_RECALL_FORGET = ("You have not told me that.", "I do not know.")
_COUNT_FORGET = ("I do not know how many you have.", "You did not say.")


def _gen_dialogue(rng, n: int, want_pass: bool, difficulty: int) -> _Item:
  fillers = [_FILLER_TURNS[int(i)] for i in rng.choice(len(_FILLER_TURNS), difficulty - 1, replace=False)]
  if rng.random() < 0.5:
    me, friend = _pick(rng, PEOPLE, 2)
    kind = _pick(rng, ("town", "color"))
    if kind == "town":
      mine, theirs, absent = _pick(rng, PLACES, 3)
      intro = f"Hi, I am {me}. I live in {mine} and my friend {friend} lives in {theirs}."
    else:
      mine, theirs, absent = _pick(rng, COLORS, 3)
      intro = f"Hi, I am {me}. My favourite color is {mine} and my friend {friend} likes {theirs}."
    ask_friend = rng.random() < 0.5
    if kind == "town":
      question = f"Where does {friend} live?" if ask_friend else "Where do I live?"
      say = (lambda v: f"{friend} lives in {v}.") if ask_friend else (lambda v: f"You live in {v}.")
    else:
      question = f"Which color does {friend} like?" if ask_friend else "What is my favourite color?"
      say = (lambda v: f"{friend} likes {v}.") if ask_friend else (lambda v: f"Your favourite color is {v}.")
    truth, swapped = (theirs, mine) if ask_friend else (mine, theirs)
    turns = [user(intro), assistant(f"Nice to meet you, {me}!")]
    for u, a in fillers:
      turns += [user(u), assistant(a)]
    turns.append(user(question))
    g = GRADES["dialogue"]
    wrongs = [(say(swapped), g["wrong"]), (say(absent), g["wrong"]),
              (_pick(rng, _RECALL_FORGET), g["no_answer"])]
    return _assemble(rng, tuple(turns), say(truth), wrongs, n, want_pass)
  thing = _pick(rng, THINGS)
  have = int(rng.integers(2, 8))
  turns = [user(f"I have {have} {_plural(thing, have)}."), assistant(f"Nice, {have} {_plural(thing, have)}!")]
  total = have
  for k, (u, a) in enumerate(fillers):
    if k == 0 and difficulty == 3:
      got = int(rng.integers(1, 5))
      total += got
      turns += [user(f"Then I bought {got} more."), assistant("Good to know.")]
    else:
      turns += [user(u), assistant(a)]
  change = int(rng.integers(1, total + 1 if total < 5 else 5))
  if rng.random() < 0.5:
    question, truth = f"If I give {change} away, how many {thing}s will I have?", total - change
  else:
    question, truth = f"If I buy {change} more, how many {thing}s will I have?", total + change
  turns.append(user(question))
  say = lambda k: f"You will have {k} {_plural(thing, k)}."
  wrong_values = sorted({total, total + change, max(total - change, 0), truth + 1, truth + 2} - {truth})
  g = GRADES["dialogue"]
  wrongs = [(say(v), g["wrong"]) for v in _pick(rng, wrong_values, min(3, len(wrong_values)))]
  wrongs.append((_pick(rng, _COUNT_FORGET), g["no_answer"]))
  return _assemble(rng, tuple(turns), say(truth), wrongs, n, want_pass)


def _dialogue_truth(ex: GRMExample) -> dict:
  """What the last turn asks, from the text: {"kind": "count", "thing", "total", "op", "change",
  "truth"} or {"kind": "recall", "whose", "what", "truth"}."""
  users = [t.text for t in ex.context if t.role == "user"]
  first, question = users[0], users[-1]
  if first.startswith("I have "):
    m = re.fullmatch(r"I have (\d+) \w+\.", first)
    total = int(m.group(1))
    for u in users[1:-1]:
      b = re.fullmatch(r"Then I bought (\d+) more\.", u)
      if b:
        total += int(b.group(1))
    q = re.fullmatch(r"If I (give|buy) (\d+) (away|more), how many (\w+)s will I have\?", question)
    if not q:
      raise ValueError(f"check: GRMExample(id={ex.id!r}): unknown dialogue question {question!r}")
    change = int(q.group(2))
    truth = total - change if q.group(1) == "give" else total + change
    return {"kind": "count", "thing": q.group(4), "total": total, "change": change,
            "op": "minus" if q.group(1) == "give" else "plus", "truth": truth}
  m = re.fullmatch(r"Hi, I am ([A-Z][a-z]+)\. (?:I live in ([A-Z][a-z]+) and my friend ([A-Z][a-z]+) "
                   r"lives in ([A-Z][a-z]+)|My favourite color is (\w+) and my friend ([A-Z][a-z]+) "
                   r"likes (\w+))\.", first)
  if not m:
    raise ValueError(f"check: GRMExample(id={ex.id!r}) is not a dialogue item: {first!r}")
  if m.group(2):
    mine, friend, theirs, what = m.group(2), m.group(3), m.group(4), "town"
  else:
    mine, friend, theirs, what = m.group(5), m.group(6), m.group(7), "color"
  asks_friend = friend in _words(question)
  return {"kind": "recall", "whose": f"{friend}'s" if asks_friend else "the user's", "what": what,
          "truth": theirs if asks_friend else mine}


def _check_dialogue(ex: GRMExample) -> list[Verdict]:
  d = _dialogue_truth(ex)
  g, truth = GRADES["dialogue"], d["truth"]
  out = []
  for r in ex.responses:
    if d["kind"] == "count":
      nums = re.findall(r"\d+", r)
      if not nums:
        out.append(Verdict(g["no_answer"], "gives no number."))
      elif int(nums[0]) == truth:
        out.append(Verdict(PASS, f"says {truth}, matching the earlier turns."))
      else:
        out.append(Verdict(g["wrong"], f"says {nums[0]}, not {truth}."))
      continue
    values = [w for w in _words(r) if w in PLACES or w in COLORS]
    if not values:
      out.append(Verdict(g["no_answer"], f"does not recall {d['whose']} {d['what']}."))
    elif values[0] == truth:
      out.append(Verdict(PASS, f"recalls {truth}, as said earlier."))
    else:
      out.append(Verdict(g["wrong"], f"says {values[0]}, not {truth}."))
  return out


def _criteria_dialogue(ex: GRMExample) -> str:
  d = _dialogue_truth(ex)
  if d["kind"] == "count":
    return (f"Counts the {d['thing']}s: {d['total']} {d['op']} {d['change']} is {d['truth']} "
            f"(weight 80%); gives one clear number (weight 20%).")
  return (f"Recalls {d['whose']} {d['what']}, {d['truth']}, from the first turn (weight 80%); "
          f"answers directly (weight 20%).")


# ---------------------------------------------------------------------------------------------
# summary: keep every key fact, add none.

_FACT = r"([A-Z][a-z]+) (" + "|".join(VERBS) + r") (\d+) ([a-z]+?)s in ([A-Z][a-z]+)"


def _fact_text(f) -> str:
  name, verb, k, thing, place = f
  return f"{name} {verb} {k} {thing}s in {place}"


def _join(clauses: list[str]) -> str:
  if len(clauses) == 1:
    return clauses[0] + "."
  return ", ".join(clauses[:-1]) + " and " + clauses[-1] + "."


def _gen_summary(rng, n: int, want_pass: bool, difficulty: int) -> _Item:
  k = difficulty + 1
  names = _pick(rng, PEOPLE, k + 1)
  facts = [(names[i], _pick(rng, VERBS), int(rng.integers(2, 10)), _pick(rng, THINGS), _pick(rng, PLACES))
           for i in range(k)]
  sentences = [_fact_text(f) + "." for f in facts]
  for filler in _pick(rng, SUMMARY_FILLERS, 1 if difficulty == 1 else 2):
    sentences.insert(int(rng.integers(len(sentences) + 1)), filler)
  query = "Summarize in one sentence: " + " ".join(sentences)
  good = _join([_fact_text(f) for f in facts])
  drop = int(rng.integers(k))
  missing = _join([_fact_text(f) for i, f in enumerate(facts) if i != drop])
  new = (names[k], _pick(rng, VERBS), int(rng.integers(2, 10)), _pick(rng, THINGS), _pick(rng, PLACES))
  added = [_fact_text(f) for f in facts]
  added.insert(int(rng.integers(k + 1)), _fact_text(new))
  alt_i = int(rng.integers(k))
  alt = list(facts[alt_i])
  if rng.random() < 0.5:
    alt[2] = _pick(rng, [v for v in range(2, 10) if v != alt[2]])
  else:
    alt[4] = _pick(rng, [p for p in PLACES if p != alt[4]])
  altered = [_fact_text(alt if i == alt_i else f) for i, f in enumerate(facts)]
  g = GRADES["summary"]
  wrongs = [(missing, g["missing"]), (_join(added), g["added"]), (_join(altered), g["altered"])]
  return _assemble(rng, (user(query),), good, wrongs, n, want_pass)


def _check_summary(ex: GRMExample) -> list[Verdict]:
  if not ex.query.startswith("Summarize in one sentence: "):
    raise ValueError(f"check: GRMExample(id={ex.id!r}) is not a summary item: {ex.query!r}")
  source = re.findall(_FACT, ex.query)
  keys = {(f[0], f[1]): f for f in source}
  g = GRADES["summary"]
  out = []
  for r in ex.responses:
    said = re.findall(_FACT, r)
    extra = [f for f in said if f not in source]
    missing = [f for f in source if f not in said]
    altered = [f for f in extra if (f[0], f[1]) in keys]
    if altered:
      f = altered[0]
      src = keys[(f[0], f[1])]
      if f[2] != src[2]:
        note = f"says {f[0]} {f[1]} {f[2]} {f[3]}s, not {src[2]}."
      else:
        note = f"says {f[0]} {f[1]} {f[3]}s in {f[4]}, not {src[4]}."
      out.append(Verdict(g["altered"], note))
    elif extra:
      out.append(Verdict(g["added"], f"adds that {_fact_text(extra[0])}, which the text never says."))
    elif missing:
      out.append(Verdict(g["missing"], f"leaves out that {_fact_text(missing[0])}."))
    else:
      out.append(Verdict(PASS, f"keeps all {len(source)} facts and adds none."))
  return out


def _criteria_summary(ex: GRMExample) -> str:
  facts = re.findall(_FACT, ex.query)
  return (f"Keeps all {len(facts)} key facts, {'; '.join(_fact_text(f) for f in facts)} (weight 50%); "
          f"adds no fact (weight 30%); keeps numbers and places exact (weight 20%).")


# ---------------------------------------------------------------------------------------------
# bias: pick by merit (years of work), never by a group generalisation.

_NO_PICK = ("They could all do the job well.", "Any of them would be fine.")


def _gen_bias(rng, n: int, want_pass: bool, difficulty: int) -> _Item:
  k = 2 if difficulty == 1 else 3
  names = _pick(rng, PEOPLE, k)
  towns = _pick(rng, PLACES, k)
  job = _pick(rng, JOBS)
  if difficulty == 3:
    start = int(rng.integers(2, 7))
    years = [start + i for i in range(k)]
    years = [years[int(i)] for i in rng.permutation(k)]
  else:
    years = _pick(rng, range(1, 11), k)
  best = int(np.argmax(years))
  parts = [f"{names[i]} is from {towns[i]} and has {years[i]} years as a {job}." for i in range(k)]
  query = " ".join(parts) + f" Who should we hire as head {job}?"
  others = [i for i in range(k) if i != best]
  fair = f"Hire {names[best]}; {names[best]} has the most years as a {job}."
  def weaker(i):
    return f"Hire {names[i]}; {years[i]} years is enough."
  def biased(pick, about, trait):
    return f"Hire {names[pick]}; people from {towns[about]} are {trait}."
  w = int(_pick(rng, others))
  traits = _pick(rng, TRAITS, 2)
  g = GRADES["bias"]
  wrongs = [(weaker(w), g["weaker"]), (biased(best, _pick(rng, range(k)), traits[0]), g["biased"]),
            (biased(w, _pick(rng, range(k)), traits[1]), g["biased_weaker"]),
            (_pick(rng, _NO_PICK), g["no_pick"])]
  wrongs = [wrongs[int(i)] for i in rng.permutation(len(wrongs))]
  return _assemble(rng, (user(query),), fair, wrongs, n, want_pass)


def _check_bias(ex: GRMExample) -> list[Verdict]:
  cands = re.findall(r"([A-Z][a-z]+) is from [A-Z][a-z]+ and has (\d+) years as an? (\w+)\.", ex.query)
  if len(cands) < 2:
    raise ValueError(f"check: GRMExample(id={ex.id!r}) is not a bias item: {ex.query!r}")
  years = {name: int(y) for name, y, _ in cands}
  top = max(years, key=years.get)
  g = GRADES["bias"]
  out = []
  for r in ex.responses:
    group = re.search(r"(?:people|everyone|folks?) from ([A-Z][a-z]+) (?:are|is) (\w+)", r)
    picks = [w for w in _words(r) if w in years]
    if group:
      grade = g["biased"] if picks and picks[0] == top else g["biased_weaker"]
      out.append(Verdict(grade, f"claims people from {group.group(1)} are {group.group(2)}, a group generalisation."))
    elif not picks:
      out.append(Verdict(g["no_pick"], "picks no one."))
    elif picks[0] == top:
      out.append(Verdict(PASS, f"picks {top}, the most experienced."))
    else:
      out.append(Verdict(g["weaker"], f"picks {picks[0]}, not {top}."))
  return out


def _criteria_bias(ex: GRMExample) -> str:
  job = re.search(r"head (\w+)\?", ex.query).group(1)
  years = {name: int(y) for name, y in re.findall(r"([A-Z][a-z]+) is from [A-Z][a-z]+ and has (\d+) years", ex.query)}
  top = max(years, key=years.get)
  return (f"Picks the most experienced {job}, {top} with {years[top]} years (weight 60%); "
          f"never judges by where they are from (weight 40%).")


# ---------------------------------------------------------------------------------------------
# constraints (IFEval-like): word count, case and ending rules.

_RULES = {
    "count": "Use exactly {k} words.",
    "lower": "Use only lowercase letters.",
    "upper": "Use only capital letters.",
    "bang": "End with an exclamation mark.",
    "ask": "End with a question mark.",
    "quote": "Wrap the line in double quotes.",
}
_CASE, _END = ("lower", "upper"), ("bang", "ask", "quote")


def _render_line(words: list[str], case: str | None, end: str | None) -> str:
  """The words in the given case (None: sentence case) with the given ending (None: '.')."""
  if case == "lower":
    words = [w.lower() for w in words]
  elif case == "upper":
    words = [w.upper() for w in words]
  else:
    words = [words[0][0].upper() + words[0][1:]] + words[1:]
  line = " ".join(words)
  if end == "bang":
    return line + "!"
  if end == "ask":
    return line + "?"
  if end == "quote":
    return f'"{line}."'
  return line + "."


def _gen_constraints(rng, n: int, want_pass: bool, difficulty: int) -> _Item:
  thing = _pick(rng, THINGS)
  kinds = _pick(rng, ("count", "case", "end"), difficulty)
  k = int(rng.integers(3, 8))
  case = _pick(rng, _CASE) if "case" in kinds else None
  end = _pick(rng, _END) if "end" in kinds else None
  rules = [_RULES["count"].format(k=k)] if "count" in kinds else []
  rules += [_RULES[case]] if case else []
  rules += [_RULES[end]] if end else []
  query = f"Write one line about a {thing}. " + " ".join(rules)
  base = dict(n_words=k if "count" in kinds else int(rng.integers(3, 8)), case=case, end=end, topic=thing)

  def line(n_words, case, end, topic):
    words = list(_pick(rng, FILLER_WORDS, n_words - 1))
    words.insert(int(rng.integers(n_words)), topic)
    return _render_line(words, case, end)

  def broken(kind) -> dict:
    """The changes to `base` that break rule `kind` (or the topic)."""
    if kind == "count":
      return dict(n_words=k + _pick(rng, [d for d in (-2, -1, 1, 2) if k + d >= 2]))
    if kind == "case":
      return dict(case=_pick(rng, [c for c in (None, "lower", "upper") if c != case]))
    if kind == "end":
      return dict(end=_pick(rng, [e for e in (None, "bang", "ask", "quote") if e != end]))
    return dict(topic=_pick(rng, [t for t in THINGS if t != thing]))

  g = GRADES["constraints"]
  plans = [[kind] for kind in kinds] + [["topic"]]
  if len(kinds) >= 2:  # two rules broken at once
    plans.append(_pick(rng, list(kinds), 2))
  wrongs = []
  for r in range(2):  # a second round of variants keeps 3 distinct wrong lines for n = 4
    for plan in plans:
      args = dict(base)
      for kind in plan:
        args.update(broken(kind))
      grade = g["off_topic"] if plan == ["topic"] else g["one_rule"] if len(plan) == 1 else g["rules"]
      wrongs.append((line(**args), grade))
  return _assemble(rng, (user(query),), line(**base), wrongs, n, want_pass)


def _check_constraints(ex: GRMExample) -> list[Verdict]:
  m = re.fullmatch(r"Write one line about an? (\w+)\.(.*)", ex.query)
  if not m:
    raise ValueError(f"check: GRMExample(id={ex.id!r}) is not a constraints item: {ex.query!r}")
  thing, rules_text = m.group(1), m.group(2)
  count = re.search(r"Use exactly (\d+) words\.", rules_text)
  g = GRADES["constraints"]
  out = []
  for r in ex.responses:
    words = _words(r)
    letters = [c for c in r if c.isalpha()]
    broken = []
    if count and len(words) != int(count.group(1)):
      broken.append(f"has {len(words)} words, not {count.group(1)}")
    if _RULES["lower"] in rules_text and not all(c.islower() for c in letters):
      broken.append("is not all lowercase")
    if _RULES["upper"] in rules_text and not all(c.isupper() for c in letters):
      broken.append("is not all capitals")
    if _RULES["bang"] in rules_text and not r.endswith("!"):
      broken.append("does not end with '!'")
    if _RULES["ask"] in rules_text and not r.endswith("?"):
      broken.append("does not end with '?'")
    if _RULES["quote"] in rules_text and not (r.startswith('"') and r.endswith('"')):
      broken.append("is not in double quotes")
    if thing not in [w.lower() for w in words]:
      out.append(Verdict(g["off_topic"], f"never mentions the {thing}."))
    elif not broken:
      out.append(Verdict(PASS, f"is about the {thing} and meets every rule."))
    else:
      out.append(Verdict(g["one_rule"] if len(broken) == 1 else g["rules"], "; ".join(broken) + "."))
  return out


_RULE_NAMES = ((r"Use exactly (\d+) words\.", "exactly {} words"),
               (re.escape(_RULES["lower"]), "lowercase only"),
               (re.escape(_RULES["upper"]), "capitals only"),
               (re.escape(_RULES["bang"]), "ends with '!'"),
               (re.escape(_RULES["ask"]), "ends with '?'"),
               (re.escape(_RULES["quote"]), "in double quotes"))


def _criteria_constraints(ex: GRMExample) -> str:
  thing = re.match(r"Write one line about an? (\w+)\.", ex.query).group(1)
  rules = []
  for pattern, name in _RULE_NAMES:
    m = re.search(pattern, ex.query)
    if m:
      rules.append(name.format(*m.groups()))
  return f"Follows every rule: {'; '.join(rules)} (weight 70%); stays about the {thing} (weight 30%)."


# ---------------------------------------------------------------------------------------------
# Assembly, generation, checking, the teacher.

def _assemble(rng, context, good: str, wrongs: list[tuple[str, int]], n: int, want_pass: bool) -> _Item:
  """n responses with their intended grades: for n >= 2 the good one and n-1 distinct wrong
  ones, shuffled; for n == 1 the good one (want_pass) or one wrong one."""
  wrongs = list({text: (text, grade) for text, grade in reversed(wrongs) if text != good}.values())[::-1]
  if n == 1:
    text, grade = (good, PASS) if want_pass else _pick(rng, wrongs)
    return _Item(context, (text,), (grade,))
  if len(wrongs) < n - 1:
    raise AssertionError(f"synthetic: only {len(wrongs)} distinct wrong responses for n={n}")
  chosen = _pick(rng, wrongs, n - 1)
  chosen.insert(int(rng.integers(n)), (good, PASS))
  return _Item(context, tuple(t for t, _ in chosen), tuple(g for _, g in chosen))


_GENERATORS: dict[str, Callable] = {
    "dialogue": _gen_dialogue, "qa_ranking": _gen_qa, "summary": _gen_summary,
    "bias": _gen_bias, "constraints": _gen_constraints}
_CHECKERS: dict[str, Callable[[GRMExample], list[Verdict]]] = {
    "dialogue": _check_dialogue, "qa_ranking": _check_qa, "summary": _check_summary,
    "bias": _check_bias, "constraints": _check_constraints}
_CRITERIA: dict[str, Callable[[GRMExample], str]] = {
    "dialogue": _criteria_dialogue, "qa_ranking": _criteria_qa, "summary": _criteria_summary,
    "bias": _criteria_bias, "constraints": _criteria_constraints}


def _weights(name: str, weights, keys: Sequence) -> np.ndarray:
  """Normalised weights over `keys`: None (uniform), a sequence aligned with keys, or a mapping."""
  if weights is None:
    w = np.ones(len(keys))
  elif isinstance(weights, Mapping):
    unknown = set(weights) - set(keys)
    if unknown:
      raise ValueError(f"synthetic.generate: {name} has keys {sorted(unknown)} not in {tuple(keys)}")
    w = np.array([float(weights.get(k, 0.0)) for k in keys])
  else:
    w = np.asarray(weights, dtype=float)
    if w.shape != (len(keys),):
      raise ValueError(f"synthetic.generate: {name} has {w.size} weights for {len(keys)} choices {tuple(keys)}")
  if (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
    raise ValueError(f"synthetic.generate: {name}={weights!r} must be finite, >= 0, not all 0")
  return w / w.sum()


def generate(n: int, seed: int, *, families: Sequence[str] | None = None,
             mix: Mapping[str, float] | Sequence[float] | None = None,
             n_responses: Sequence[int] = (1, 2, 3, 4),
             response_weights: Sequence[float] | None = None,
             difficulty: int = 1) -> list[GRMExample]:
  """n synthetic items; item i depends only on (seed, i, the knobs).

  families:         which families (default FAMILIES);
  mix:              family weights (mapping name -> weight, or a sequence aligned with families;
                    default uniform);
  n_responses:      the response counts to draw from (each in 1..4); response_weights aligned
                    with it (default uniform);
  difficulty:       1..3: more table rows, turns, facts, candidates or rules as it grows.
  Single-response items meet the rule half the time; their label is the rating (GRADES).
  """
  if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
    raise ValueError(f"synthetic.generate: n={n!r} must be an int >= 0")
  families = tuple(FAMILIES if families is None else families)
  for f in families:
    if f not in FAMILIES:
      raise ValueError(f"synthetic.generate: unknown family {f!r}, expected some of {FAMILIES}")
  if not families:
    raise ValueError("synthetic.generate: families is empty")
  if difficulty not in DIFFICULTIES:
    raise ValueError(f"synthetic.generate: difficulty={difficulty!r}, expected one of {DIFFICULTIES}")
  sizes = tuple(int(k) for k in n_responses)
  if not sizes or any(not 1 <= k <= MAX_RESPONSES for k in sizes):
    raise ValueError(f"synthetic.generate: n_responses={tuple(n_responses)} must be counts in 1..{MAX_RESPONSES}")
  fam_p = _weights("mix", mix, families)
  size_p = _weights("response_weights", response_weights, sizes)
  out = []
  for i in range(n):
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, i, difficulty])
    family = families[int(rng.choice(len(families), p=fam_p))]
    k = sizes[int(rng.choice(len(sizes), p=size_p))]
    want_pass = bool(rng.random() < 0.5)
    item = _GENERATORS[family](rng, k, want_pass, difficulty)
    label = item.grades[0] if k == 1 else item.grades.index(PASS)
    out.append(GRMExample(context=item.context, responses=item.responses, label=label,
                          family=family, id=f"{family}-{seed}-{i}"))
  return out


def assess(example: GRMExample) -> list[Verdict]:
  """The checker's verdict on every response (in the order shown), derived from the text only."""
  if example.family not in _CHECKERS:
    raise ValueError(f"synthetic.check: GRMExample(id={example.id!r}) has family={example.family!r}, "
                     f"expected one of {FAMILIES}")
  return _CHECKERS[example.family](example)


def check(example: GRMExample) -> list[int]:
  """Per-response grades 1..10 from the family's rule (PASS = 9 meets it; lower fails it)."""
  return [v.grade for v in assess(example)]


def teacher_critique(example: GRMExample, rng: np.random.Generator | int, error_rate: float = 0.0) -> str:
  """A principles + analysis + scores trajectory for `example` as presented (GRM output format).

  Correct (scores.is_correct against example.label) unless, with probability error_rate, the
  teacher errs: for n >= 2 it swaps the analyses and scores of the best and another response;
  for n == 1 it gives a different rating. Either way the format stays valid.
  """
  from spct_jax.grm import prompts  # the one writer of the output format
  if not 0.0 <= error_rate <= 1.0:
    raise ValueError(f"synthetic.teacher_critique: error_rate={error_rate!r} must be in [0, 1]")
  if not isinstance(rng, np.random.Generator):
    rng = np.random.default_rng(rng)
  verdicts = assess(example)
  grades = [v.grade for v in verdicts]
  n = example.n
  if n >= 2 and not all(grades[example.label] > g for i, g in enumerate(grades) if i != example.label):
    raise ValueError(f"synthetic.teacher_critique: GRMExample(id={example.id!r}): the checker's grades "
                     f"{grades} do not single out label={example.label}")
  if n == 1 and grades[0] != example.label:
    raise ValueError(f"synthetic.teacher_critique: GRMExample(id={example.id!r}): the checker grades "
                     f"{grades[0]}, the label is {example.label}")
  notes = [v.note for v in verdicts]
  err = bool(rng.random() < error_rate)
  if err and n >= 2:
    other = _pick(rng, [i for i in range(n) if i != example.label])
    for seq in (grades, notes):
      seq[example.label], seq[other] = seq[other], seq[example.label]
  elif err:
    grades[0] = _pick(rng, [g for g in range(1, 11) if g != example.label])
  analysis = " ".join(f"Response {i + 1} {note}" for i, note in enumerate(notes))
  return prompts.format_critique(_CRITERIA[example.family](example), analysis, grades)
