"""Metrics: one JSONL line per logged step and TensorBoard event files, both in the workdir.

    <workdir>/<stage>/metrics.jsonl       {"step": 10, "loss": 1.23, ...} per line
    <workdir>/<stage>/tb/events.out...    scalars for `tensorboard --logdir <workdir>`
On several hosts only process 0 writes (every host computes the same global metrics). A workdir
may be any `etils.epath` path (a GCS bucket path included). TensorBoard events need the
`tensorboard` extra and a local workdir; without them only metrics.jsonl is written, and the
writer says so once. A run resumed at step s first drops the lines of steps after s that the
interrupted run had logged, so every step appears once.
"""
from __future__ import annotations

import json
import math
import time
from typing import Mapping

from etils import epath
import jax
import numpy as np

from spct_jax import extras


class MetricsWriter:
  def __init__(self, directory: str, resumed_at: int | None = None):
    self.enabled = jax.process_index() == 0
    if not self.enabled:
      return
    directory = epath.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    self.path = directory / "metrics.jsonl"
    if resumed_at is not None and self.path.exists():
      kept = [line for line in self.path.read_text().splitlines()
              if line.strip() and json.loads(line)["step"] <= resumed_at]
      self.path.write_text("".join(line + "\n" for line in kept))
    self._jsonl = self.path.open("a")
    self._tb = None
    if not extras.available("tensorboard"):
      print(f"[metrics] TensorBoard events not written (pip install 'spct_jax[tensorboard]'); "
            f"metrics go to {self.path}", flush=True)
    elif not str(directory).startswith("/"):
      print(f"[metrics] TensorBoard events are written to local workdirs only; metrics go to {self.path}",
            flush=True)
    else:
      from tensorboard.summary.writer.event_file_writer import EventFileWriter
      self._tb = EventFileWriter(str(directory / "tb"))

  def write(self, step: int, metrics: Mapping[str, float | None]) -> None:
    """One JSONL line and one event; a None value (a metric undefined on this data, e.g. an
    AUC with one class) is written as NaN to the JSONL and left out of TensorBoard."""
    scalars = {k: float("nan") if v is None else _scalar(v) for k, v in metrics.items()}
    if not self.enabled:
      return
    self._jsonl.write(json.dumps({"step": int(step), **scalars}) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      from tensorboard.compat.proto import event_pb2, summary_pb2
      values = [summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in scalars.items()
                if not math.isnan(v)]
      self._tb.add_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                         summary=summary_pb2.Summary(value=values)))

  def close(self) -> None:
    if not self.enabled:
      return
    self._jsonl.close()
    if self._tb is not None:
      self._tb.flush()
      self._tb.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
    return False


def _scalar(v) -> float:
  v = np.asarray(v)
  if v.size != 1:
    raise ValueError(f"metric of shape {v.shape} is not a scalar")
  return float(v.reshape(()))


def read_jsonl(path: str) -> list[dict]:
  return [json.loads(line) for line in epath.Path(path).read_text().splitlines() if line.strip()]
