"""TFDS builders build offline (array_record, no TensorFlow) and read back through grain."""
import json
import sys

import pytest

from spct_jax.data import synthetic
from spct_jax.data import tfds_builders as tb

CFG = tb.SyntheticConfig(name="tiny", families=("qa_ranking", "bias"), difficulty=2, seed=5,
                         splits=(("train", 24), ("validation", 6), ("test", 6)))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  return tb.build_synthetic(tmp_path_factory.mktemp("tfds"), CFG)


def test_no_tensorflow_needed(built):
  assert "tensorflow" not in sys.modules


def test_synthetic_reads_back_what_was_generated(built):
  for split, n in CFG.splits:
    source = tb.data_source(built.data_dir, split)
    assert len(source) == n
    got = {ex.id: ex for ex in map(tb.record_to_example, (source[i] for i in range(n)))}
    want = synthetic.generate(n, CFG.seed + tb.SPLIT_SEED_OFFSETS[split], families=CFG.families,
                              difficulty=2)
    assert got == {ex.id: ex for ex in want}


def test_builtin_configs():
  assert [c.name for c in tb.SpctSynthetic.BUILDER_CONFIGS] == ["all", *synthetic.FAMILIES]


def test_grain_shuffle_repeat_batch_and_host_shards(built):
  source = tb.data_source(built.data_dir, "train")
  epoch = list(tb.grain_dataset(source, batch_size=None, seed=1, num_epochs=1, shard_index=0, shard_count=1))
  assert sorted(ex.id for ex in epoch) == sorted(tb.record_to_example(source[i]).id for i in range(24))
  again = list(tb.grain_dataset(source, batch_size=None, seed=1, num_epochs=1, shard_index=0, shard_count=1))
  other = list(tb.grain_dataset(source, batch_size=None, seed=2, num_epochs=1, shard_index=0, shard_count=1))
  assert again == epoch and other != epoch
  two = list(tb.grain_dataset(source, batch_size=None, seed=1, num_epochs=2, shard_index=0, shard_count=1))
  assert len(two) == 48 and sorted(x.id for x in two[24:]) == sorted(x.id for x in epoch)
  assert [x.id for x in two[24:]] != [x.id for x in epoch]  # reshuffled each epoch
  batches = list(tb.grain_dataset(source, batch_size=5, seed=1, num_epochs=1, shard_index=0, shard_count=1))
  assert [len(b) for b in batches] == [5, 5, 5, 5]  # the last 4 are dropped (drop_remainder)
  shards = [list(tb.grain_dataset(source, batch_size=None, seed=3, num_epochs=1, shard_index=h, shard_count=3))
            for h in range(3)]
  ids = [{x.id for x in s} for s in shards]
  assert [len(s) for s in ids] == [8, 8, 8] and not (ids[0] & ids[1] or ids[1] & ids[2] or ids[0] & ids[2])
  forever = iter(tb.grain_dataset(source, batch_size=4, seed=0, shard_index=0, shard_count=1))
  assert all(len(next(forever)) == 4 for _ in range(20))  # repeats past one epoch
  with pytest.raises(ValueError, match="shard_index=3 is not in"):
    tb.grain_dataset(source, batch_size=2, seed=0, shard_index=3, shard_count=3)


def test_preferences_from_user_files(tmp_path):
  rb = tmp_path / "rb.jsonl"
  rb.write_text("".join(json.dumps(r) + "\n" for r in [
      {"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "5", "subset": "math-prm", "id": 1},
      {"prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                  {"role": "user", "content": "Bye?"}], "chosen": "Bye!", "rejected": "No.",
       "subset": "mt-bench-hard", "id": 2}]))
  ppe = tmp_path / "ppe.jsonl"
  ppe.write_text("".join(json.dumps(r) + "\n" for r in [
      {"question_id": "a", "prompt": "Color?", "response_1": "Seven", "response_2": "Blue",
       "model_a": "x", "model_b": "y", "winner": "model_b"},
      {"question_id": "b", "prompt": "Hi", "response_1": "Hey", "response_2": "Hello",
       "model_a": "x", "model_b": "y", "winner": "tie"}]))
  cfg = tb.PreferencesConfig(name="mine", files=(("train", str(ppe)), ("test", str(rb))))
  builder = tb.build_preferences(tmp_path / "data", cfg)
  test = sorted(map(tb.record_to_example, tb.data_source(builder.data_dir, "test")), key=lambda e: e.id)
  assert [(e.id, e.family, e.responses, e.label) for e in test] == [
      ("1", "math-prm", ("4", "5"), 0), ("2", "mt-bench-hard", ("Bye!", "No."), 0)]
  assert [t.role for t in test[1].context] == ["user", "assistant", "user"]
  train = [tb.record_to_example(r) for r in tb.data_source(builder.data_dir, "train")]
  assert [(e.id, e.label) for e in train] == [("a", 1)]
  stats = tb.load_stats(builder.data_dir)
  assert stats["train"]["skipped"] == {"tie (no best response)": 1} and stats["train"]["records"] == 2
  assert stats["test"]["format"] == "rewardbench" and stats["test"]["examples"] == 2
  with pytest.raises(ValueError, match="files is empty"):
    tb.build_preferences(tmp_path / "data", tb.PreferencesConfig(name="none"))
