"""Workdirs on cluster storage: a `gs://` workdir works wherever a local one does for everything the
project writes itself (metrics, summaries, the stage table, RFT trajectories, evaluation outputs).
GCS is stood in for by the local filesystem: fsspec's `gs` protocol is pointed at a temporary
folder for these tests, and `etils.epath` reaches it exactly as it would reach gcsfs. (Orbax writes
checkpoints and exports through its own GCS driver.)"""
import json
import sys

import fsspec
from fsspec.implementations.local import LocalFileSystem
import numpy as np
import pytest

from spct_jax import paths
from spct_jax.evaluate import metrics as eval_metrics
from spct_jax.evaluate import run as eval_run
from spct_jax.example import GRMExample, user
from spct_jax.judge import Judgement
from spct_jax.model import load
from spct_jax.train import chain, metrics, rft


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
  """gs://<anything> -> <a temporary folder>/<anything>, for this module (epath keeps the
  filesystem it first gets, so one folder serves every test here)."""
  tmp_path = tmp_path_factory.mktemp("bucket")
  root = str(tmp_path)

  class LocalGCS(LocalFileSystem):
    protocol = ("gs", "gcs")

    def __init__(self, *args, finalize_on_close=None, **kwargs):
      super().__init__(*args, **kwargs)

    @classmethod
    def _strip_protocol(cls, path):
      path = str(path)
      for prefix in ("gs://", "gcs://"):
        if path.startswith(prefix):
          return f"{root}/{path[len(prefix):]}"
      return path

  registry = sys.modules["fsspec.registry"]  # the module (fsspec.registry is its read-only view)
  saved = {proto: registry._registry.get(proto) for proto in ("gs", "gcs")}
  for proto in saved:
    fsspec.register_implementation(proto, LocalGCS, clobber=True)
  yield tmp_path
  for proto, cls in saved.items():  # back to gcsfs (or to nothing)
    registry._registry.pop(proto, None)
    if cls is not None:
      registry._registry[proto] = cls


def test_paths_keep_a_uri_and_make_local_ones_absolute(tmp_path, monkeypatch):
  assert str(paths.absolute("gs://b/run")) == "gs://b/run"
  assert str(load.stage_dir("gs://b/run", "rft")) == "gs://b/run/rft"
  monkeypatch.chdir(tmp_path)
  assert str(paths.absolute("runs/x")) == str(tmp_path / "runs" / "x")


def test_metrics_summaries_and_the_stage_table_on_a_bucket(bucket):
  with metrics.MetricsWriter("gs://b/run/rft") as w:
    for step in (1, 2, 3):
      w.write(step, {"loss": float(step)})
  with metrics.MetricsWriter("gs://b/run/rft", resumed_at=2) as w:
    w.write(3, {"loss": 30.0})
  assert [r["loss"] for r in metrics.read_jsonl("gs://b/run/rft/metrics.jsonl")] == [1.0, 2.0, 30.0]
  assert (bucket / "b" / "run" / "rft" / "metrics.jsonl").exists()
  summary = {"stage": "rft", "steps": 3, "wall_seconds": 5.0, "val_accuracy": 0.5, "val_valid_rate": 1.0,
             "val_chance": 0.4, "val_voting@8_accuracy": 0.6}
  (load.stage_dir("gs://b/run", "rft") / "summary.json").write_text(json.dumps(summary))
  assert chain.is_done("gs://b/run", "rft") and not chain.is_done("gs://b/run", "grpo")
  assert "| rft | 3 | 5 | 100.0% | 50.0% | 60.0% (k=8) |" in chain.stage_table("gs://b/run")


def test_rft_trajectories_round_trip_on_a_bucket(bucket):
  ex = GRMExample((user("q"),), ("a", "b"), 1, "f", "x")
  kept = [rft.Trajectory(ex, "Specific Criteria: c\nAnalysis: a\nScores: \\boxed{1, 9}", True)]
  rft.write_trajectories(kept, "gs://b/run/rft/trajectories.jsonl")
  assert rft.read_trajectories("gs://b/run/rft/trajectories.jsonl") == kept


def test_evaluation_outputs_on_a_bucket(bucket):
  exs = [GRMExample((user(f"q{i}"),), ("a", "b"), i % 2, "f", str(i)) for i in range(4)]
  pool = [Judgement(["t1", "t2"], [[9, 1], [1, 9]], [(0, 1), (1, 0)]) for _ in exs]
  curve = eval_metrics.voting_curve(exs, [j.scores for j in pool], ks=(1, 2), n_draws=2, n_boot=20)
  results = {"model": "stage:grpo", "data": "synthetic", "format": "synthetic", "n_items": 4, "pool": 2,
             "temperature": 0.5, "greedy": eval_metrics.pool_metrics(exs, [[s[0]] for s in
                                                                           [j.scores for j in pool]], n_boot=20)}
  results["voting@2"] = results["mode_voting@2"] = results["greedy"]
  out = paths.absolute("gs://b/eval-run/eval/x")
  out.mkdir(parents=True, exist_ok=True)
  eval_run.write_outputs(out, results, curve, {"greedy": 0.5}, exs, pool, None)
  local = bucket / "b" / "eval-run" / "eval" / "x"
  assert json.loads((local / "results.json").read_text())["n_items"] == 4
  assert (local / "curve.png").stat().st_size > 1000 and len((local / "samples.jsonl").read_text().splitlines()) == 4
  assert np.isfinite(curve.accuracy["sum"]).all()
