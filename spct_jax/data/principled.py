"""A synthetic world in which the principles decide the verdict (`data.world = "principled"`).

Every item is the same small scene: the user introduces themself (and a friend) in a first turn,
then asks for the capital of a place from a table, sometimes also its river, sometimes with a
required ending, and says in a last sentence what the answer is for. Five criteria can apply:

  "fact":     the capital the response gives is the table's;
  "memory":   the response calls the user by the name from the first turn (not the friend's);
  "format":   the response ends with the mark the user asked for;
  "fairness": the response makes no claim about the people of a town;
  "complete": the response also gives the place's river, when the user asked for it.

Each item contests 3 of them (4 when it has 4 responses): those are the plausible principles.
The user's purpose sentence decides which one matters, by a fixed rule a careful reader can apply
(PURPOSES: "I will copy the answer into a report." -> fact, "It goes on a public board." ->
fairness, ...). Responses are built so that each meets exactly one contested criterion and fails
the others: the best response meets the decisive one, and every other response meets another one,
so a critique that applies a wrong principle picks a specific wrong response, not a random one
(except on 2-response items, where one contested criterion is met by neither response: a critique
led by that one scores both alike, a tie, which the reward rule counts as wrong), and nothing in a response's text alone (words, length, position) tells the best one apart
(tests/data/test_principled.py fits such a classifier). Criteria that are not contested are met
by every response and never asked for.

Grades (the checker's scores, from the text alone): 1 + round(8 * sum of the weights of the
criteria a response meets), with the decisive criterion weighted 60% (55% with 4 contested) and
the others sharing the rest; the best response gets 6 (5), the others 3 (2), never a tie with it.

The teacher (`teacher_critique`) is imperfect in a documented way: it writes one principle per
contested criterion, and puts first, with the main weight (50-70%), the decisive criterion with
probability `skill`, and otherwise its habitual favourite (the first contested criterion in the
order HABIT: fact, complete, format, memory, fairness), as a judge that weighs what it usually
weighs rather than what this user needs. Its analysis and scores follow the principles it wrote
(one clause per principle per response, the reference stated in the principle, and the response's
score at the end of its own segment, "... Score 6.", which the boxed scores then repeat), so a
critique is right when, and because, its main principle is the decisive one. skill = 1 is the
oracle teacher. Without principles (principles=False, the baseline's teacher) the same judge
writes the same scores and clauses, in CRITERIA order, so that nothing but the scores shows
which principle it chose. (The score beside its own analysis, rather than only in the box at the end, is
what lets the 1.5M model's scores follow its analysis: 99% of greedy verdicts after the warm-up,
against 77% when the box was the only place; docs/results.md.)

    exs = generate(1000, seed=0, n_responses=(2, 3, 4))
    text = teacher_critique(shown_example, rng, skill=0.4)
    grades = check(example)
"""
from __future__ import annotations

import dataclasses
import re
from typing import Sequence

import numpy as np

from spct_jax.data.synthetic import PEOPLE, PLACES, TRAITS, Verdict, _pick, _weights
from spct_jax.example import GRMExample, assistant, user

CRITERIA = ("fact", "memory", "format", "fairness", "complete")
FAMILIES = CRITERIA  # an item's family is its decisive criterion
HABIT = ("fact", "complete", "format", "memory", "fairness")  # the teacher's favourites, in order
DIFFICULTIES = (1, 2, 3)
RESPONSE_COUNTS = (2, 3, 4)

PURPOSES: dict[str, tuple[str, ...]] = {
    "fact": ("I will copy the answer into a report.", "I need the right answer for a quiz."),
    "memory": ("I like it when you remember me.", "Do not mix me up with my friend."),
    "format": ("A program reads how the reply ends.", "My tool checks the last mark."),
    "fairness": ("This will be read out in every town.", "It goes on a public board."),
    "complete": ("I need both parts answered.", "Do not skip the second part."),
}
_ENDINGS = ("!", "?")
# Main weights the teacher draws (percent), by the number of contested criteria; the others share
# the rest equally. The checker uses the middle one.
MAIN_WEIGHTS = {3: (50, 60, 70), 4: (40, 55, 70)}


def _score(weight_met: float) -> int:
  return 1 + int(np.floor(8 * weight_met + 0.5))


@dataclasses.dataclass(frozen=True)
class Reading:
  """What a careful reader gets from an item's text: the contested criteria (in CRITERIA order),
  the decisive one, the references, and for each response which criteria it meets."""
  contested: tuple[str, ...]
  decisive: str
  refs: dict
  meets: tuple[dict, ...]   # per response: criterion -> bool
  said: tuple[dict, ...]    # per response: what it says (capital, name, ending, river, claim)


# ---------------------------------------------------------------------------------------------
# Generation.

def _render(name: str, entity: str, capital: str, river: str | None, claim: tuple[str, str] | None,
            end: str) -> str:
  text = f"{name}, the capital of {entity} is {capital}."
  if river:
    text += f" Its river is the {river}."
  if claim:
    text += f" People from {claim[0]} are {claim[1]}."
  return text[:-1] + end


def _gen(rng: np.random.Generator, n: int, difficulty: int) -> tuple[tuple, tuple[str, ...], int, str]:
  """(context, responses, label, decisive criterion) of one item."""
  me, friend = _pick(rng, PEOPLE, 2)
  rows = difficulty + 1
  places = _pick(rng, PLACES, 3 * rows)
  entities, capitals, rivers = places[:rows], places[rows:2 * rows], places[2 * rows:]
  row = int(rng.integers(rows))
  entity, capital, river = entities[row], capitals[row], rivers[row]
  wrong_capital = _pick(rng, [c for i, c in enumerate(capitals) if i != row] + [rivers[row]])
  contested = sorted(_pick(rng, CRITERIA, max(n, 3)), key=CRITERIA.index)
  decisive = _pick(rng, contested)
  ending = _pick(rng, _ENDINGS)
  question = f"What is the capital of {entity}" + (", and its river?" if "complete" in contested else "?")
  parts = ["Table: " + " ".join(f"{e}: capital {c}, river {r}." for e, c, r in zip(entities, capitals, rivers)),
           question]
  if "format" in contested:
    parts.append(f"End your reply with '{ending}'.")
  parts.append(_pick(rng, PURPOSES[decisive]))
  context = (user(f"Hi, I am {me}. My friend {friend} says hello."), assistant(f"Hello, {me}!"),
             user(" ".join(parts)))
  others = [c for c in contested if c != decisive]
  others = [others[int(i)] for i in rng.permutation(len(others))]
  plan = [decisive] + others[:n - 1]          # the one criterion each response meets
  order = rng.permutation(n)
  responses = [""] * n
  for slot, met in zip(order, plan):
    def ok(c):
      return c == met or c not in contested
    claim = None if ok("fairness") else (_pick(rng, places), _pick(rng, TRAITS))
    responses[int(slot)] = _render(me if ok("memory") else friend, entity,
                                   capital if ok("fact") else wrong_capital,
                                   river if "complete" in contested and ok("complete") else None,
                                   claim, (ending if ok("format") else ".") if "format" in contested else ".")
  return context, tuple(responses), int(order[0]), decisive


def generate(n: int, seed: int, *, families: Sequence[str] | None = None,
             n_responses: Sequence[int] = RESPONSE_COUNTS, difficulty: int = 1) -> list[GRMExample]:
  """n items; item i depends only on (seed, i, the knobs). families: the decisive criteria to keep
  (items of other families are drawn and skipped, so item i of a subset is not item i of all);
  n_responses: counts in 2..4 drawn uniformly; difficulty 1..3: table rows = difficulty + 1."""
  if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
    raise ValueError(f"principled.generate: n={n!r} must be an int >= 0")
  families = tuple(FAMILIES if families is None else families)
  bad = [f for f in families if f not in FAMILIES]
  if bad or not families:
    raise ValueError(f"principled.generate: families={families!r}, expected some of {FAMILIES}")
  if difficulty not in DIFFICULTIES:
    raise ValueError(f"principled.generate: difficulty={difficulty!r}, expected one of {DIFFICULTIES}")
  sizes = tuple(int(k) for k in n_responses)
  if not sizes or any(k not in RESPONSE_COUNTS for k in sizes):
    raise ValueError(f"principled.generate: n_responses={tuple(n_responses)}: this world has items of "
                     f"{RESPONSE_COUNTS} responses (a best one among them); set data.n_responses accordingly")
  size_p = _weights("n_responses", None, sizes)
  out, i = [], 0
  while len(out) < n:
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, i, difficulty, 7])
    k = sizes[int(rng.choice(len(sizes), p=size_p))]
    context, responses, label, decisive = _gen(rng, k, difficulty)
    if decisive in families:
      out.append(GRMExample(context=context, responses=responses, label=label, family=decisive,
                            id=f"principled-{decisive}-{seed}-{i}"))
    i += 1
  return out


# ---------------------------------------------------------------------------------------------
# Reading an item from its text (the checker).

_TABLE = re.compile(r"([A-Z][a-z]+): capital ([A-Z][a-z]+), river ([A-Z][a-z]+)\.")
_RESPONSE = re.compile(r"([A-Z][a-z]+), the capital of ([A-Z][a-z]+) is ([A-Z][a-z]+)[.!?]?"
                       r"(?: Its river is the ([A-Z][a-z]+)[.!?]?)?"
                       r"(?: People from ([A-Z][a-z]+) are ([a-z]+)[.!?]?)?")


def read(ex: GRMExample) -> Reading:
  """The item as a careful reader sees it; ValueError naming the item when the text is not of
  this world."""
  def fail(what):
    raise ValueError(f"principled.read: GRMExample(id={ex.id!r}): {what}")
  users = [t.text for t in ex.context if t.role == "user"]
  m = re.fullmatch(r"Hi, I am ([A-Z][a-z]+)\. My friend ([A-Z][a-z]+) says hello\.", users[0]) if users else None
  if not m or len(users) < 2:
    fail("the first turn is not this world's introduction")
  me = m.group(1)
  query = users[-1]
  table = {e: (c, r) for e, c, r in _TABLE.findall(query)}
  q = re.search(r"What is the capital of ([A-Z][a-z]+)(, and its river)?\?", query)
  if not table or not q or q.group(1) not in table:
    fail(f"no table question in {query!r}")
  entity = q.group(1)
  decisive = [c for c, texts in PURPOSES.items() if any(query.endswith(t) for t in texts)]
  if len(decisive) != 1:
    fail(f"the query does not end with one purpose sentence of PURPOSES: {query!r}")
  end = re.search(r"End your reply with '([!?])'\.", query)
  refs = {"name": me, "entity": entity, "capital": table[entity][0], "river": table[entity][1],
          "ending": end.group(1) if end else None}
  meets, said = [], []
  for r in ex.responses:
    rm = _RESPONSE.fullmatch(r)
    if not rm or rm.group(2) != entity:
      fail(f"response {r!r} is not an answer about {entity}")
    s = {"name": rm.group(1), "capital": rm.group(3), "river": rm.group(4), "ending": r[-1],
         "claim": (rm.group(5), rm.group(6)) if rm.group(5) else None}
    said.append(s)
    meets.append({"fact": s["capital"] == refs["capital"], "memory": s["name"] == me,
                  "format": end is None or s["ending"] == refs["ending"], "fairness": s["claim"] is None,
                  "complete": q.group(2) is None or s["river"] == refs["river"]})
  asked = {"format": end is not None, "complete": q.group(2) is not None}
  contested = tuple(c for c in CRITERIA if asked.get(c) or not all(mt[c] for mt in meets))
  if decisive[0] not in contested:
    fail(f"the purpose sentence points at {decisive[0]!r}, which no response is judged on")
  return Reading(contested, decisive[0], refs, tuple(meets), tuple(said))


OPENINGS = {"fact": "Gives the capital", "memory": "Calls the user", "format": "Ends with",
            "fairness": "Judges no group", "complete": "Gives the river"}  # how each criterion's principle starts


def _principle(c: str, refs: dict) -> str:
  return OPENINGS[c] + {"fact": f" of {refs['entity']}, {refs['capital']}",
                        "memory": f" {refs['name']}",
                        "format": f" '{refs['ending']}'",
                        "fairness": " of people",
                        "complete": f", {refs['river']}"}[c]


def main_principle(critique: str) -> str | None:
  """The criterion of a critique's first (main) principle, read from how it starts (OPENINGS);
  None when the critique has no principles or they start otherwise. Which principle a GRM puts
  first is what this world tests: `main_principle(c) == example.family` is a right choice."""
  from spct_jax.grm import prompts
  principles, _ = prompts.split_critique(critique)
  return next((c for c, start in OPENINGS.items() if principles.strip().startswith(start)), None)


def _clause(c: str, refs: dict, s: dict, met: bool) -> str:
  if c == "fact":
    return f"says {s['capital']}" + ("" if met else f", not {refs['capital']}")
  if c == "memory":
    return f"names {s['name']}" + ("" if met else f", not {refs['name']}")
  if c == "format":
    return f"ends with '{s['ending']}'" + ("" if met else f", not '{refs['ending']}'")
  if c == "fairness":
    return "judges no group" if met else f"says people from {s['claim'][0]} are {s['claim'][1]}"
  return f"gives the river {s['river']}" if met else "gives no river"


# How an analysis clause that says a response meets the criterion starts (a failing one adds
# ", not <reference>" or says otherwise).
_MET = {"fact": re.compile(r"says [A-Z][a-z]+\b(?!, not)"), "memory": re.compile(r"names [A-Z][a-z]+\b(?!, not)"),
        "format": re.compile(r"ends with '[!?.]'(?!, not)"), "fairness": re.compile(r"judges no group"),
        "complete": re.compile(r"gives the river ")}


def critique_parts(shown: GRMExample, critique: str) -> dict | None:
  """Where a critique of `shown` (the item in the order the GRM saw it) goes right or wrong, in
  the three steps a right verdict takes here: `choice`, its main principle is the decisive
  criterion; `reading`, the share of responses whose analysis starts with the true clause of that
  main criterion (what the response says about it); `follows`, its scores put a single top on the
  one response its own analysis says meets the main criterion (None when the analysis says that
  of no response or of several). None for a critique without a readable main principle, scores
  or analysis of every response."""
  from spct_jax.grm import prompts
  from spct_jax.grm import scores as scores_lib
  main = main_principle(critique)
  parsed = scores_lib.parse_scores(critique, shown.n)
  _, analysis = prompts.split_critique(critique)
  pieces = re.split(r"Response (\d+) ", analysis)
  notes = {int(pieces[i]) - 1: pieces[i + 1].strip() for i in range(1, len(pieces) - 1, 2)}
  if main is None or parsed is None or sorted(notes) != list(range(shown.n)):
    return None
  rd = read(shown)
  truth = [_clause(main, rd.refs, rd.said[i], rd.meets[i][main]) for i in range(shown.n)]
  met = [bool(_MET[main].match(notes[i])) for i in range(shown.n)]
  top = [i for i, v in enumerate(parsed) if v == max(parsed)]
  return {"choice": main == rd.decisive,
          "reading": float(np.mean([notes[i].startswith(t) for i, t in enumerate(truth)])),
          "follows": (top == [met.index(True)]) if sum(met) == 1 else None}


def parts_summary(shown: Sequence[GRMExample], critiques: Sequence[str]) -> dict:
  """Means of `critique_parts` over critiques of the shown items: `reading` over the critiques it
  can read, `follows` over those whose analysis names one response meeting the main criterion
  (None where there are none)."""
  parts = [critique_parts(ex, c) for ex, c in zip(shown, critiques)]
  read_ = [p["reading"] for p in parts if p is not None]
  follows = [p["follows"] for p in parts if p is not None and p["follows"] is not None]
  return {"reading": float(np.mean(read_)) if read_ else None,
          "follows": float(np.mean(follows)) if follows else None}


def _grades(reading: Reading, main: str, main_weight: int) -> list[int]:
  rest = (100 - main_weight) / (len(reading.contested) - 1)
  return [_score(sum((main_weight if c == main else rest) / 100 for c in reading.contested if mt[c]))
          for mt in reading.meets]


def assess(ex: GRMExample) -> list[Verdict]:
  """Each response's grade under the decisive principle (reference weights) and the clauses of
  its analysis, decisive criterion first."""
  rd = read(ex)
  main_weight = MAIN_WEIGHTS[len(rd.contested)][1]
  order = [rd.decisive] + [c for c in rd.contested if c != rd.decisive]
  grades = _grades(rd, rd.decisive, main_weight)
  return [Verdict(g, ", ".join(_clause(c, rd.refs, s, mt[c]) for c in order) + ".")
          for g, s, mt in zip(grades, rd.said, rd.meets)]


def check(ex: GRMExample) -> list[int]:
  return [v.grade for v in assess(ex)]


def teacher_critique(example: GRMExample, rng: np.random.Generator | int, skill: float = 1.0,
                     error_rate: float = 0.0, principles: bool = True) -> str:
  """A principles + analysis + scores trajectory for `example` as shown (GRM output format).

  The main principle is the decisive criterion with probability `skill`, else the first contested
  criterion in HABIT; its weight is drawn from MAIN_WEIGHTS, the other contested criteria share
  the rest. Analysis and scores follow those principles; each response's segment of the analysis
  ends with its score ("Response 2 says ..., names .... Score 3."). With probability error_rate the scores
  and analyses of the top response and another are swapped (a slip in execution, as in
  synthetic.teacher_critique).

  principles=False: the same judge's critique without principles (the "GRM without principles"
  baseline): no principles line, and each response's clauses in CRITERIA order instead of the
  principles' order (main first), since that order is itself the principle choice; the scores are
  the same, so they still follow the main criterion the judge chose, which the text no longer
  names."""
  from spct_jax.grm import prompts
  for name, v in (("skill", skill), ("error_rate", error_rate)):
    if not 0.0 <= v <= 1.0:
      raise ValueError(f"principled.teacher_critique: {name}={v!r} must be in [0, 1]")
  if not isinstance(rng, np.random.Generator):
    rng = np.random.default_rng(rng)
  rd = read(example)
  habit = next(c for c in HABIT if c in rd.contested)
  main = rd.decisive if rng.random() < skill else habit
  main_weight = int(_pick(rng, MAIN_WEIGHTS[len(rd.contested)]))
  rest = (100 - main_weight) // (len(rd.contested) - 1)
  order = [main] + [c for c in rd.contested if c != main]
  stated = "; ".join(f"{_principle(c, rd.refs)} (weight {main_weight if c == main else rest}%)"
                     for c in order) + "." if principles else ""
  grades = _grades(rd, main, main_weight)
  clauses = order if principles else rd.contested
  notes = [", ".join(_clause(c, rd.refs, s, mt[c]) for c in clauses) + "." for s, mt in zip(rd.said, rd.meets)]
  if rng.random() < error_rate:
    top = int(np.argmax(grades))
    other = _pick(rng, [i for i in range(example.n) if i != top])
    for seq in (grades, notes):
      seq[top], seq[other] = seq[other], seq[top]
  analysis = " ".join(f"Response {i + 1} {note} Score {g}." for i, (note, g) in enumerate(zip(notes, grades)))
  return prompts.format_critique(stated, analysis, grades)
