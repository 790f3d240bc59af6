"""The GRM prompt (METHOD.md section 1): the template as data, rendering, shuffling.

`TEMPLATES` holds every string of the prompt, one `Template` per style:
  "paper":   follows the structure of the paper's appendix G prompt (instruction, four general
             evaluation criteria with score bands, conversation context, responses between
             begin/end markers, output format requirements);
  "compact": the same structure and the same output format in a few short lines, so the tiny CPU
             default keeps its sequences short (~100-200 tokens for a 2-response item).
Three variants of each: "principles" (the default: the GRM states its own criteria, then the
analysis, then the scores), "no_principles" (the "GRM without principles" baseline: analysis and
scores only) and "hinted" (principles, plus the line "The best response is: Response j" for
hinted sampling in RFT; n >= 2 only). A fourth, "meta", is the meta RM's input (METHOD.md
section 5): META_INSTRUCTION, the context and the responses, no criteria and no output format;
the sampled critique follows it as the answer being rated.

`format_critique` is the one place the GRM's answer format is written:
    Specific Criteria: <principles>
    Analysis: <analysis>
    Scores: \\boxed{7, 3}
and `scores.parse_scores` reads it back.

Response order is shuffled before each sample to cancel position bias: `shuffle` returns the
shuffled example and the permutation `perm` (new position p shows original response perm[p]);
`unshuffle` maps scores of the shuffled example back to the original order.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from spct_jax.example import GRMExample, Turn

VARIANTS = ("principles", "no_principles", "hinted", "meta")
META_INSTRUCTION = "Please score the responses."
STYLES = ("paper", "compact")

# The three labels of the GRM's answer. Shared by the prompt's format requirements, by
# `format_critique` and by `scores.parse_scores`.
PRINCIPLES_LABEL = "Specific Criteria:"
ANALYSIS_LABEL = "Analysis:"
SCORES_LABEL = "Scores:"

# How a context turn's role is written inside the prompt.
ROLE_NAMES = {"system": "System", "user": "User", "assistant": "Assistant"}


@dataclasses.dataclass(frozen=True)
class Template:
  """Every string of one prompt style. `{...}` fields are filled by `render`.

  instruction:            the task, with principles ("principles" and "hinted" variants).
  instruction_no_principles: the task without principles (the baseline).
  criteria:               the general evaluation criteria block ("" = none).
  context_header:         heads the conversation context.
  turn:                   one context turn; fields {role} (from ROLE_NAMES) and {text}.
  turn_sep:               between two context turns.
  responses_header:       heads the responses.
  response_begin/_end:    around response i (1-based field {i}).
  response_sep:           between two responses.
  hint:                   the hinted variant's line; field {j} (1-based best response).
  format_header:          heads the output format requirements.
  format_intro:           first line of the requirements, with principles (three lines).
  format_intro_no_principles: the same without principles (two lines).
  format_principles:      the principles line ("Specific Criteria: ...").
  format_analysis:        the analysis line ("Analysis: ...").
  format_scores:          the scores line; field {box} (e.g. "\\boxed{x_1, x_2}").
  section_sep:            between the sections above.
  """
  instruction: str
  instruction_no_principles: str
  criteria: str
  context_header: str
  turn: str
  turn_sep: str
  responses_header: str
  response_begin: str
  response_end: str
  response_sep: str
  hint: str
  format_header: str
  format_intro: str
  format_intro_no_principles: str
  format_principles: str
  format_analysis: str
  format_scores: str
  section_sep: str


_PAPER_TASK = (
    "You are a skilled expert at scoring responses. Analyze the responses below against the "
    "evaluation criteria and give each of them an overall score. The last round of the "
    "conversation context is the user's query, which every response answers.\n")
_PAPER_SCALE = (
    "Each score is an integer from 1 to 10: 1 means the response meets none of the criteria, "
    "6 that it meets some of them, and 10 that it meets all of them. Analyze step by step, and "
    "be as strict as possible.")

_PAPER_CRITERIA = """#### Evaluation Criteria ####
1. Instruction Adherence:
   - 9-10: follows every instruction and requirement of the query exactly.
   - 6-8: follows most instructions, with small deviations.
   - 3-5: follows some instructions and misses important ones.
   - 1-2: ignores or contradicts the instructions.
2. Usefulness:
   - 9-10: solves the user's problem completely and correctly.
   - 6-8: mostly helpful, with minor gaps or errors.
   - 3-5: partly helpful, with significant gaps or errors.
   - 1-2: not helpful, or wrong.
3. Level of Detail:
   - 9-10: exactly as detailed as the query needs, nothing missing or superfluous.
   - 6-8: adequate detail, slightly too little or too much.
   - 3-5: clearly too shallow or too verbose.
   - 1-2: lacks the needed detail entirely, or is buried in irrelevant detail.
4. Relevance:
   - 9-10: every part addresses the query.
   - 6-8: mostly on topic, with small digressions.
   - 3-5: partly off topic.
   - 1-2: unrelated to the query."""

TEMPLATES: dict[str, Template] = {
    "paper": Template(
        instruction=(
            _PAPER_TASK +
            "Beyond the general criteria below, first state the criteria specific to this "
            "query and its context, with a weight for each, then give every response an "
            "overall score. " + _PAPER_SCALE),
        instruction_no_principles=(
            _PAPER_TASK + "Give every response an overall score. " + _PAPER_SCALE),
        criteria=_PAPER_CRITERIA,
        context_header="#### Conversation Context ####",
        turn="{role}: {text}",
        turn_sep="\n\n",
        responses_header="#### Responses to be Scored ####",
        response_begin="[The Begin of Response {i}]",
        response_end="[The End of Response {i}]",
        response_sep="\n\n",
        hint="The best response is: Response {j}",
        format_header="#### Output Format Requirements ####",
        format_intro="Output exactly three lines:",
        format_intro_no_principles="Output exactly two lines:",
        format_principles=PRINCIPLES_LABEL + " <the criteria specific to the query and its "
                          "context, each with its weight>.",
        format_analysis=ANALYSIS_LABEL + " <compare the responses against the criteria>.",
        format_scores=SCORES_LABEL + " <the overall score of every response, in order, "
                      "comma-separated in one box: {box}>.",
        section_sep="\n\n",
    ),
    "compact": Template(
        instruction=("Score each response 1-10 (1: meets no criteria, 6: some, 10: all). "
                     "The last user turn is the query. State criteria specific to it, with "
                     "weights, then analyze. Be strict."),
        instruction_no_principles=("Score each response 1-10 (1: meets no criteria, 6: some, "
                                   "10: all). The last user turn is the query. Analyze, "
                                   "then score. Be strict."),
        criteria="Criteria: instruction adherence, usefulness, detail, relevance.",
        context_header="## Context",
        turn="{role}: {text}",
        turn_sep="\n",
        responses_header="## Responses",
        response_begin="[Response {i}]",
        response_end="[End {i}]",
        response_sep="\n",
        hint="The best response is: Response {j}",
        format_header="## Output",
        format_intro="Three lines:",
        format_intro_no_principles="Two lines:",
        format_principles=PRINCIPLES_LABEL + " <criteria, weights>",
        format_analysis=ANALYSIS_LABEL + " <analysis>",
        format_scores=SCORES_LABEL + " {box}",
        section_sep="\n",
    ),
}


def _check(name: str, value: str, allowed: Sequence[str]) -> None:
  if value not in allowed:
    raise ValueError(f"prompts: {name}={value!r}, expected one of {tuple(allowed)}")


def box_placeholder(n: int) -> str:
  """'\\boxed{x_1, ..., x_n}' with every placeholder written out: n=2 -> '\\boxed{x_1, x_2}'."""
  return "\\boxed{" + ", ".join(f"x_{i + 1}" for i in range(n)) + "}"


def render_context(context: Sequence[Turn], style: str = "paper") -> str:
  """The conversation as it appears inside the prompt, oldest turn first."""
  _check("style", style, STYLES)
  t = TEMPLATES[style]
  return t.turn_sep.join(t.turn.format(role=ROLE_NAMES[turn.role], text=turn.text)
                         for turn in context)


def render(example: GRMExample, variant: str = "principles", style: str = "paper") -> str:
  """The text of the user message the GRM receives for `example` (responses in given order).

  variant: "principles" | "no_principles" | "hinted" (adds "The best response is: Response j",
           j = example.label + 1; needs n >= 2) | "meta" (the meta RM's input: META_INSTRUCTION,
           context and responses only).
  style:   "paper" | "compact".
  """
  _check("variant", variant, VARIANTS)
  _check("style", style, STYLES)
  if variant == "hinted" and example.n < 2:
    raise ValueError(f"prompts.render: variant='hinted' needs n >= 2 responses; "
                     f"GRMExample(id={example.id!r}) has n={example.n}")
  t = TEMPLATES[style]
  principles = variant != "no_principles"
  if variant == "meta":
    sections = [META_INSTRUCTION]
  else:
    sections = [t.instruction if principles else t.instruction_no_principles]
  if t.criteria and variant != "meta":
    sections.append(t.criteria)
  sections.append(t.context_header + "\n" + render_context(example.context, style))
  responses = t.response_sep.join(
      f"{t.response_begin.format(i=i + 1)}\n{r}\n{t.response_end.format(i=i + 1)}"
      for i, r in enumerate(example.responses))
  sections.append(t.responses_header + "\n" + responses)
  if variant == "meta":
    return t.section_sep.join(sections)
  if variant == "hinted":
    sections.append(t.hint.format(j=example.label + 1))
  lines = [t.format_principles] if principles else []
  lines += [t.format_analysis, t.format_scores.format(box=box_placeholder(example.n))]
  intro = t.format_intro if principles else t.format_intro_no_principles
  sections.append("\n".join([t.format_header, intro] + lines))
  return t.section_sep.join(sections)


def format_critique(principles: str, analysis: str, scores: Sequence[int]) -> str:
  """The GRM's answer: 'Specific Criteria: ...\\nAnalysis: ...\\nScores: \\boxed{7, 3}'.

  An empty `principles` gives the no-principles format (the 'Specific Criteria:' line left out).
  Scores must be integers; they are written as given, so a value outside 1..10 makes a
  critique that `scores.parse_scores` rejects (a deliberately invalid one).
  """
  for i, s in enumerate(scores):
    if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
      raise ValueError(f"prompts.format_critique: scores[{i}]={s!r} is not an integer")
  if not len(scores):
    raise ValueError("prompts.format_critique: scores is empty")
  box = "\\boxed{" + ", ".join(str(int(s)) for s in scores) + "}"
  lines = [f"{PRINCIPLES_LABEL} {principles}"] if principles else []
  lines += [f"{ANALYSIS_LABEL} {analysis}", f"{SCORES_LABEL} {box}"]
  return "\n".join(lines)


def split_critique(text: str) -> tuple[str, str]:
  """(principles, analysis) of a critique in the `format_critique` layout; "" for a part that is
  missing (the no-principles variant has no principles; an invalid critique may lack both)."""
  def part(label: str, ends: Sequence[str]) -> str:
    start = text.find(label)
    if start < 0:
      return ""
    start += len(label)
    stops = [i for i in (text.find(e, start) for e in ends) if i >= 0]
    return text[start:min(stops) if stops else len(text)].strip()
  return part(PRINCIPLES_LABEL, (ANALYSIS_LABEL, SCORES_LABEL)), part(ANALYSIS_LABEL, (SCORES_LABEL,))


def shuffle(example: GRMExample, seed_or_rng: int | np.random.Generator
            ) -> tuple[GRMExample, tuple[int, ...]]:
  """(shuffled example, perm): new position p shows original response perm[p].

  seed_or_rng: an int seed (same seed, same permutation) or a numpy Generator (advanced).
  The label follows its response (GRMExample.permuted).
  """
  if isinstance(seed_or_rng, np.random.Generator):
    rng = seed_or_rng
  elif isinstance(seed_or_rng, (int, np.integer)) and not isinstance(seed_or_rng, bool):
    rng = np.random.default_rng(int(seed_or_rng))
  else:
    raise TypeError(f"prompts.shuffle: seed_or_rng must be an int or a numpy Generator, "
                    f"got {type(seed_or_rng).__name__}")
  perm = tuple(int(p) for p in rng.permutation(example.n))
  return example.permuted(perm), perm


def unshuffle(scores: Sequence | None, perm: Sequence[int]) -> list | None:
  """Scores of the shuffled example -> scores in the original order (None stays None).

  original[perm[p]] = scores[p].
  """
  if scores is None:
    return None
  perm = [int(p) for p in perm]
  if sorted(perm) != list(range(len(perm))):
    raise ValueError(f"prompts.unshuffle: {perm} is not a permutation")
  if len(scores) != len(perm):
    raise ValueError(f"prompts.unshuffle: {len(scores)} scores for a permutation of "
                     f"{len(perm)} responses")
  out = [None] * len(perm)
  for p, s in zip(perm, scores):
    out[p] = s
  return out
