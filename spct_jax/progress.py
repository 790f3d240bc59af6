"""Progress that a user sees wherever the code runs: a tqdm bar on a terminal or in a notebook
(tqdm.auto), and otherwise (batch logs, CI, a scheduler's output file) a log line at most every
`every_s` seconds and at the end.

    for x in progress.bar(items, desc="eval pool", unit="call"):
      ...
"""
from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def interactive() -> bool:
  """A terminal or a notebook kernel is watching (so a bar redraws in place)."""
  return sys.stderr.isatty() or "ipykernel" in sys.modules


def bar(iterable: Iterable[T], *, desc: str, total: int | None = None, initial: int = 0, unit: str = "it",
        every_s: float = 30.0, leave: bool = True) -> Iterator[T]:
  """`iterable` with its progress shown (module docstring)."""
  if total is None and hasattr(iterable, "__len__"):
    total = initial + len(iterable)
  if interactive():
    yield from tqdm(iterable, desc=desc, total=total, initial=initial, unit=unit, leave=leave, dynamic_ncols=True)
    return
  t0 = last = time.perf_counter()
  done = initial
  for x in iterable:
    yield x
    done += 1
    now = time.perf_counter()
    if now - last >= every_s or done == total:
      last = now
      of = f"/{total}" if total else ""
      units = unit + ("es" if unit.endswith(("s", "x", "ch", "sh")) else "s")  # batch: batches
      print(f"[{desc}] {done}{of} {units}, {now - t0:.0f}s", flush=True)
