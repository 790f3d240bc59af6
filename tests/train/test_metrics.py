import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from spct_jax.train import metrics


def test_jsonl_and_tensorboard_scalars(tmp_path):
  with metrics.MetricsWriter(str(tmp_path / "warmup")) as w:
    w.write(1, {"loss": np.float32(2.5), "lr": 1e-3})
    w.write(2, {"loss": 2.0, "lr": 2e-3})
  rows = metrics.read_jsonl(str(tmp_path / "warmup" / "metrics.jsonl"))
  assert rows == [{"step": 1, "loss": 2.5, "lr": 1e-3}, {"step": 2, "loss": 2.0, "lr": 2e-3}]
  acc = event_accumulator.EventAccumulator(str(tmp_path / "warmup" / "tb"))
  acc.Reload()
  assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(1, 2.5), (2, 2.0)]


def test_non_scalar_metric_is_an_error(tmp_path):
  with metrics.MetricsWriter(str(tmp_path)) as w:
    with pytest.raises(ValueError, match=r"shape \(2,\) is not a scalar"):
      w.write(1, {"loss": np.ones(2)})
