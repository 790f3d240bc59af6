"""Metrics: one JSONL line per logged step and TensorBoard event files, both in the workdir.

    <workdir>/<stage>/metrics.jsonl       {"step": 10, "loss": 1.23, ...} per line
    <workdir>/<stage>/tb/events.out...    scalars for `tensorboard --logdir <workdir>`
On several hosts only process 0 writes (every host computes the same global metrics).
"""
from __future__ import annotations

import json
import math
import os
import time
from typing import Mapping

import jax
import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter


class MetricsWriter:
  def __init__(self, directory: str):
    self.enabled = jax.process_index() == 0
    if not self.enabled:
      return
    os.makedirs(directory, exist_ok=True)
    self.path = os.path.join(directory, "metrics.jsonl")
    self._jsonl = open(self.path, "a")
    self._tb = EventFileWriter(os.path.join(directory, "tb"))

  def write(self, step: int, metrics: Mapping[str, float | None]) -> None:
    """One JSONL line and one event; a None value (a metric undefined on this data, e.g. an
    AUC with one class) is written as NaN to the JSONL and left out of TensorBoard."""
    scalars = {k: float("nan") if v is None else _scalar(v) for k, v in metrics.items()}
    if not self.enabled:
      return
    self._jsonl.write(json.dumps({"step": int(step), **scalars}) + "\n")
    self._jsonl.flush()
    values = [summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in scalars.items()
              if not math.isnan(v)]
    self._tb.add_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                       summary=summary_pb2.Summary(value=values)))

  def close(self) -> None:
    if not self.enabled:
      return
    self._jsonl.close()
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
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
