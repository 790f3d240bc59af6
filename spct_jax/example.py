"""The one example type that flows through the whole project.

A `GRMExample` is a conversation whose last user turn is the query, n >= 1 responses to that
query, and the label: the index of the best response when n >= 2, or a 1..10 rating when n == 1
(METHOD.md section 2). Plain, frozen data; no JAX.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

ROLES = ("system", "user", "assistant")


@dataclasses.dataclass(frozen=True)
class Turn:
  role: str  # one of ROLES
  text: str


@dataclasses.dataclass(frozen=True)
class GRMExample:
  """One item to judge.

  context:   the conversation, oldest first; the last turn is the user's query.
  responses: n >= 1 candidate replies to the last turn.
  label:     best response index in [0, n) when n >= 2; a rating in 1..10 when n == 1; None for
             an unlabelled item (scoring a user's file: spct_jax.score); training and
             evaluation need labels.
  family:    task family or source subset (e.g. "qa_ranking", "alpacaeval-easy").
  id:        a stable identifier (unique within a dataset).
  """
  context: tuple[Turn, ...]
  responses: tuple[str, ...]
  label: int | None
  family: str = ""
  id: str = ""

  def __post_init__(self):
    where = f"GRMExample(id={self.id!r})"
    if not self.context:
      raise ValueError(f"{where}: context is empty; the last turn must be the user's query")
    for i, t in enumerate(self.context):
      if t.role not in ROLES:
        raise ValueError(f"{where}: context[{i}].role={t.role!r}, expected one of {ROLES}")
    if self.context[-1].role != "user":
      raise ValueError(f"{where}: the last context turn must be 'user', got {self.context[-1].role!r}")
    if not self.responses:
      raise ValueError(f"{where}: no responses")
    n = len(self.responses)
    if self.label is None:
      return
    if isinstance(self.label, bool) or not isinstance(self.label, int):
      raise ValueError(f"{where}: label={self.label!r} is not an integer")
    if n >= 2 and not 0 <= self.label < n:
      raise ValueError(f"{where}: label={self.label} is not a response index in [0, {n})")
    if n == 1 and not 1 <= self.label <= 10:
      raise ValueError(f"{where}: single-response label={self.label} is not a rating in 1..10")

  @property
  def n(self) -> int:
    return len(self.responses)

  @property
  def query(self) -> str:
    return self.context[-1].text

  def permuted(self, perm: Sequence[int]) -> "GRMExample":
    """The same example with responses reordered: new position p shows old response perm[p].

    The label follows its response, so a best index is remapped; a rating is unchanged.
    """
    perm = tuple(int(p) for p in perm)
    if sorted(perm) != list(range(self.n)):
      raise ValueError(f"GRMExample(id={self.id!r}): {perm} is not a permutation of range({self.n})")
    label = perm.index(self.label) if self.n >= 2 and self.label is not None else self.label
    return dataclasses.replace(self, responses=tuple(self.responses[p] for p in perm), label=label)


def user(text: str) -> Turn:
  return Turn("user", text)


def assistant(text: str) -> Turn:
  return Turn("assistant", text)
