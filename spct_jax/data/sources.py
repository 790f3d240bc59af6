"""Readers for users' preference files: RewardBench, PPE and our own JSONL, as JSONL or Parquet.

    examples, stats = load_examples("rb.jsonl", "rewardbench")         # pairwise GRMExamples
    examples, stats = load_examples("arena.parquet", "ppe_human", skip_invalid=True)
    pairs, items, stats = ppe_correctness("ppe_ifeval.jsonl")           # pairs + best-of-K items
    print(stats.summary())

Formats (METHOD.md section 6):
  "rewardbench":     prompt, chosen, rejected, subset; optional id, chosen_model, rejected_model.
                     -> n = 2, responses (chosen, rejected), label 0, family = subset.
  "ppe_human":       question_id, prompt, response_1, response_2, model_a, model_b, winner in
                     model_a | model_b | tie. -> n = 2, label 0 (model_a won) or 1 (model_b).
                     A tie has no best response: it is skipped and counted (reason "tie").
  "ppe_correctness": prompt, response_1 .. response_K, scores (K booleans), optional
                     sampled_conflict_pairs ([i, j] 0-based indices into the responses, one
                     correct and one incorrect) and question_id. `load_examples` returns one
                     pairwise GRMExample per conflict pair (responses in the pair's order, label
                     = the correct one); `ppe_correctness` returns those and the full best-of-K
                     items (`BestOfK`) for best-of-N evaluation.
  "grm":             our own JSONL: context (a string, or a list of {role, text|content}),
                     responses (list of strings), label, optional family and id (`save_jsonl`).
                     The label may be left out only with require_label=False (a file to score).
  "auto":            told apart by the fields of the first record.
A prompt is a string (one user turn) or a list of {role, content} messages, oldest first, whose
last message is the user's query. Examples keep the file's response order (chosen first for
RewardBench): shuffle before judging (grm.prompts.shuffle; the judge does it per sample).

Files: JSON Lines (one object per line; blank lines are not records) or Parquet (by the
'.parquet' suffix). A bad record (a field missing, of the wrong type, an empty response, an
unknown winner, a repeated id) raises `DataError` naming the place, `path:LINE: field 'chosen'
is missing` (for Parquet `path:row N: ...`, N 1-based); with skip_invalid=True it is skipped
and counted in LoadStats.skipped under its reason instead. Nothing is dropped uncounted:
records == loaded_records + sum(skipped.values()).
"""
from __future__ import annotations

import collections
import dataclasses
import json
import os
import re
from typing import Any, Iterator, Sequence

from spct_jax import extras
from spct_jax.example import ROLES, GRMExample, Turn, user

FORMATS = ("auto", "rewardbench", "ppe_human", "ppe_correctness", "grm")
WINNERS = ("model_a", "model_b", "tie")
TIE = "tie (no best response)"


class DataError(ValueError):
  """A bad record; the message starts with its place ('path:LINE: ')."""


class _Invalid(Exception):
  """A bad record inside a reader: `reason` (the key it is counted under) and the message."""

  def __init__(self, message: str, reason: str | None = None):
    super().__init__(message)
    self.reason = reason or message


class _Skip(Exception):
  """A valid record that yields no example (a tie), counted under `reason`."""

  def __init__(self, reason: str):
    super().__init__(reason)
    self.reason = reason


@dataclasses.dataclass
class LoadStats:
  """What a load read and what it kept.

  records:        records read from the file;
  loaded_records: records that gave examples;
  examples:       examples produced (a PPE correctness record gives one per conflict pair);
  skipped:        reason -> records skipped for it (ties always; invalid records only with
                  skip_invalid=True).
  """
  path: str
  format: str
  records: int = 0
  loaded_records: int = 0
  examples: int = 0
  skipped: dict[str, int] = dataclasses.field(default_factory=dict)

  def summary(self) -> str:
    text = (f"{self.path} ({self.format}): {self.records} records, {self.loaded_records} loaded "
            f"-> {self.examples} examples")
    for reason, count in sorted(self.skipped.items()):
      text += f"\n  skipped {count}: {reason}"
    return text


@dataclasses.dataclass(frozen=True)
class BestOfK:
  """A PPE correctness item: K responses, which are correct, and the sampled conflict pairs.

  pairs: (i, j) 0-based indices with responses[i] correct and responses[j] incorrect.
  """
  context: tuple[Turn, ...]
  responses: tuple[str, ...]
  correct: tuple[bool, ...]
  pairs: tuple[tuple[int, int], ...]
  family: str = ""
  id: str = ""


# ---------------------------------------------------------------------------------------------
# Reading records.

def read_records(path: str | os.PathLike) -> Iterator[tuple[str, Any]]:
  """(place, record) for every record: place is 'path:LINE' (JSONL) or 'path:row N' (Parquet).

  A JSONL line that is not valid JSON raises DataError naming its line.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no such data file: {path!r}")
  if path.endswith(".parquet"):
    pq = extras.require("pyarrow.parquet", "parquet", "reading Parquet files")
    try:
      rows = pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow raises several types for a damaged file
      raise DataError(f"{path}: not a readable Parquet file ({e})") from e
    for i, row in enumerate(rows):
      yield f"{path}:row {i + 1}", row
    return
  with open(path, encoding="utf-8") as f:
    for i, line in enumerate(f):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise DataError(f"{path}:{i + 1}: not valid JSON ({e.msg} at column {e.colno})") from e
      yield f"{path}:{i + 1}", record


# ---------------------------------------------------------------------------------------------
# Field checks (raise _Invalid with a message that names the field).

def _field(record: dict, name: str) -> Any:
  if name not in record or record[name] is None:
    raise _Invalid(f"field {name!r} is missing")
  return record[name]


def _text(record: dict, name: str) -> str:
  value = _field(record, name)
  if not isinstance(value, str):
    raise _Invalid(f"field {name!r} is {type(value).__name__}, expected a string")
  if not value.strip():
    raise _Invalid(f"field {name!r} is empty")
  return value


def _optional_text(record: dict, name: str, default: str) -> str:
  value = record.get(name)
  if value is None:
    return default
  if isinstance(value, bool) or not isinstance(value, (str, int)):
    raise _Invalid(f"field {name!r} is {type(value).__name__}, expected a string")
  return str(value)


def _context(record: dict, name: str, text_keys=("content",)) -> tuple[Turn, ...]:
  """A prompt: a string (one user turn) or a list of {role, content} messages."""
  value = _field(record, name)
  if isinstance(value, str):
    if not value.strip():
      raise _Invalid(f"field {name!r} is empty")
    return (user(value),)
  if not isinstance(value, (list, tuple)):
    raise _Invalid(f"field {name!r} is {type(value).__name__}, expected a string or a list of "
                   f"{{role, {text_keys[0]}}} messages")
  if not value:
    raise _Invalid(f"field {name!r} is empty")
  turns = []
  for i, m in enumerate(value):
    if not isinstance(m, dict):
      raise _Invalid(f"field {name!r}[{i}] is {type(m).__name__}, expected a {{role, {text_keys[0]}}} message")
    role = m.get("role")
    if role not in ROLES:
      raise _Invalid(f"field {name!r}[{i}] has role {role!r}, expected one of {ROLES}",
                     reason=f"field {name!r} has a message with an unknown role")
    key = next((k for k in text_keys if k in m), text_keys[0])
    text = m.get(key)
    if not isinstance(text, str):
      raise _Invalid(f"field {name!r}[{i}].{key} is {type(text).__name__}, expected a string",
                     reason=f"field {name!r} has a message without text")
    turns.append(Turn(role, text))
  if turns[-1].role != "user":
    raise _Invalid(f"field {name!r}: the last message must be the user's query, got role "
                   f"{turns[-1].role!r}", reason=f"field {name!r} does not end with a user message")
  if not turns[-1].text.strip():
    raise _Invalid(f"field {name!r}: the last message (the query) is empty")
  return tuple(turns)


def _example(**kwargs) -> GRMExample:
  try:
    return GRMExample(**kwargs)
  except ValueError as e:
    raise _Invalid(str(e), reason="not a valid GRMExample") from e


# ---------------------------------------------------------------------------------------------
# One reader per format: record -> list of GRMExamples (and, for PPE correctness, a BestOfK).

def _rewardbench(record: dict, default_id: str, family: str | None):
  context = _context(record, "prompt")
  chosen, rejected = _text(record, "chosen"), _text(record, "rejected")
  subset = _text(record, "subset")
  ex_id = _optional_text(record, "id", default_id)
  return [_example(context=context, responses=(chosen, rejected), label=0,
                   family=family or subset, id=ex_id)], None


def _ppe_human(record: dict, default_id: str, family: str | None):
  context = _context(record, "prompt")
  ex_id = _optional_text(record, "question_id", default_id)
  responses = (_text(record, "response_1"), _text(record, "response_2"))
  _text(record, "model_a")
  _text(record, "model_b")
  winner = _field(record, "winner")
  if winner not in WINNERS:
    raise _Invalid(f"field 'winner' is {winner!r}, expected one of {WINNERS}",
                   reason="field 'winner' is not model_a, model_b or tie")
  if winner == "tie":
    raise _Skip(TIE)
  return [_example(context=context, responses=responses, label=WINNERS.index(winner),
                   family=family or "ppe_human", id=ex_id)], None


_RESPONSE_KEY = re.compile(r"response_(\d+)")


def _ppe_correctness(record: dict, default_id: str, family: str | None):
  context = _context(record, "prompt")
  ex_id = _optional_text(record, "question_id", default_id)
  # A null response_k is absent (a Parquet table of items with different K has null columns).
  numbers = sorted(int(m.group(1)) for k, v in record.items()
                   if v is not None and (m := _RESPONSE_KEY.fullmatch(k)))
  if not numbers:
    raise _Invalid("field 'response_1' is missing")
  if numbers != list(range(1, len(numbers) + 1)):
    gap = next(i for i in range(1, len(numbers) + 2) if i not in numbers)
    raise _Invalid(f"field 'response_{gap}' is missing (responses must be numbered 1..K)",
                   reason="responses are not numbered 1..K")
  responses = tuple(_text(record, f"response_{i}") for i in numbers)
  k = len(responses)
  scores = _field(record, "scores")
  if not isinstance(scores, (list, tuple)) or not all(isinstance(s, bool) for s in scores):
    raise _Invalid(f"field 'scores' is {scores!r:.60}, expected a list of {k} booleans",
                   reason="field 'scores' is not a list of booleans")
  if len(scores) != k:
    raise _Invalid(f"field 'scores' has {len(scores)} values for {k} responses",
                   reason="field 'scores' does not match the number of responses")
  raw_pairs = record.get("sampled_conflict_pairs") or []
  if not isinstance(raw_pairs, (list, tuple)):
    raise _Invalid(f"field 'sampled_conflict_pairs' is {type(raw_pairs).__name__}, expected a list of [i, j] pairs",
                   reason="field 'sampled_conflict_pairs' is not a list of pairs")
  pairs = []
  for p, pair in enumerate(raw_pairs):
    ok = (isinstance(pair, (list, tuple)) and len(pair) == 2
          and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < k for i in pair))
    if not ok:
      raise _Invalid(f"field 'sampled_conflict_pairs'[{p}]={pair!r} is not two indices in [0, {k})",
                     reason="field 'sampled_conflict_pairs' has a bad pair")
    i, j = pair
    if scores[i] == scores[j]:
      raise _Invalid(f"field 'sampled_conflict_pairs'[{p}]={list(pair)}: both responses are "
                     f"{'correct' if scores[i] else 'incorrect'}",
                     reason="field 'sampled_conflict_pairs' has a pair without a correct and an incorrect response")
    pairs.append((i, j) if scores[i] else (j, i))
  fam = family or "ppe_correctness"
  examples = [_example(context=context, responses=(responses[a], responses[b]),
                       label=0 if scores[a] else 1, family=fam, id=f"{ex_id}:{a}-{b}")
              for a, b in (tuple(p) for p in raw_pairs)]
  item = BestOfK(context=context, responses=responses, correct=tuple(scores), pairs=tuple(pairs),
                 family=fam, id=ex_id)
  return examples, item


def _grm(record: dict, default_id: str, family: str | None):
  context = _context(record, "context", text_keys=("text", "content"))
  responses = _field(record, "responses")
  if not isinstance(responses, (list, tuple)) or not responses:
    raise _Invalid(f"field 'responses' is {type(responses).__name__ if responses else 'empty'}, "
                   f"expected a non-empty list of strings", reason="field 'responses' is not a list of strings")
  for i, r in enumerate(responses):
    if not isinstance(r, str):
      raise _Invalid(f"field 'responses'[{i}] is {type(r).__name__}, expected a string",
                     reason="field 'responses' is not a list of strings")
    if not r.strip():
      raise _Invalid(f"field 'responses'[{i}] is empty", reason="field 'responses' has an empty response")
  label = record.get("label")
  if label is not None and (isinstance(label, bool) or not isinstance(label, int)):
    raise _Invalid(f"field 'label' is {type(label).__name__}, expected an integer")
  ex_id = _optional_text(record, "id", default_id)
  return [_example(context=context, responses=tuple(responses), label=label,
                   family=family or _optional_text(record, "family", ""), id=ex_id)], None


_READERS = {"rewardbench": _rewardbench, "ppe_human": _ppe_human,
            "ppe_correctness": _ppe_correctness, "grm": _grm}


def detect_format(record: Any, where: str) -> str:
  """The format a record's fields suggest (see the module docstring)."""
  keys = set(record) if isinstance(record, dict) else set()
  if {"chosen", "rejected"} <= keys:
    return "rewardbench"
  if "winner" in keys:
    return "ppe_human"
  if "scores" in keys and "response_1" in keys:
    return "ppe_correctness"
  if "responses" in keys and ("label" in keys or "context" in keys):
    return "grm"
  raise DataError(f"{where}: cannot tell the format from the fields {sorted(keys)}; pass one of "
                  f"{FORMATS[1:]}")


def _load(path, format: str, skip_invalid: bool, family: str | None, require_label: bool = True):
  if format not in FORMATS:
    raise ValueError(f"load_examples: format={format!r}, expected one of {FORMATS}")
  path = os.fspath(path)
  stem = os.path.splitext(os.path.basename(path))[0]
  stats = LoadStats(path=path, format=format)
  skipped = collections.Counter()
  examples, items, seen_ids = [], [], {}
  reader = None
  for where, record in read_records(path):
    stats.records += 1
    if reader is None:
      if format == "auto":
        format = stats.format = detect_format(record, where)
      reader = _READERS[format]
    line = where.rsplit(":", 1)[1].replace("row ", "")
    try:
      if not isinstance(record, dict):
        raise _Invalid(f"record is {type(record).__name__}, expected a JSON object",
                       reason="record is not an object")
      new, item = reader(record, f"{stem}-{line}", family)
      if require_label and any(ex.label is None for ex in new):
        raise _Invalid("field 'label' is missing")
      for ex in new:
        if ex.id in seen_ids:
          raise _Invalid(f"id {ex.id!r} repeats the one at {seen_ids[ex.id]}", reason="repeated id")
      for ex in new:
        seen_ids[ex.id] = where
    except _Skip as s:
      skipped[s.reason] += 1
      continue
    except _Invalid as e:
      if not skip_invalid:
        raise DataError(f"{where}: {e}") from None
      skipped[e.reason] += 1
      continue
    examples.extend(new)
    if item is not None:
      items.append(item)
    stats.loaded_records += 1
  stats.examples = len(examples)
  stats.skipped = dict(skipped)
  return examples, items, stats


def load_examples(path: str | os.PathLike, format: str = "auto", skip_invalid: bool = False,
                  *, family: str | None = None, require_label: bool = True
                  ) -> tuple[list[GRMExample], LoadStats]:
  """GRMExamples from a JSONL or Parquet file of `format` (FORMATS), and what was read/skipped.

  family: overrides every example's family (default: RewardBench's subset; the format name for
  PPE files; the record's family for "grm").
  require_label: a "grm" record without a label is an error (False: label None, for scoring).
  """
  examples, _, stats = _load(path, format, skip_invalid, family, require_label)
  return examples, stats


def ppe_correctness(path: str | os.PathLike, skip_invalid: bool = False, *, family: str | None = None
                    ) -> tuple[list[GRMExample], list[BestOfK], LoadStats]:
  """A PPE correctness file: (pairwise examples of its conflict pairs, best-of-K items, stats)."""
  return _load(path, "ppe_correctness", skip_invalid, family)


# ---------------------------------------------------------------------------------------------
# Our own JSONL.

def example_to_dict(ex: GRMExample) -> dict:
  """A GRMExample as a JSON-ready dict (the "grm" format)."""
  return {"id": ex.id, "family": ex.family,
          "context": [{"role": t.role, "text": t.text} for t in ex.context],
          "responses": list(ex.responses), "label": ex.label}


def save_jsonl(examples: Sequence[GRMExample], path: str | os.PathLike) -> None:
  """Writes examples in the "grm" format, one per line (load_examples(path, "grm") reads them back)."""
  with open(path, "w", encoding="utf-8") as f:
    for ex in examples:
      f.write(json.dumps(example_to_dict(ex), ensure_ascii=False) + "\n")
