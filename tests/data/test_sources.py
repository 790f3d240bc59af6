"""Readers: RewardBench, PPE (human preference, correctness best-of-K), our JSONL; bad input."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spct_jax.data import sources, synthetic
from spct_jax.example import Turn

RB = [
    {"prompt": "What is 2 + 2?", "chosen": "4", "chosen_model": "m1", "rejected": "5",
     "rejected_model": "m2", "subset": "math-prm", "id": 30},
    {"prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Say bye."}],
     "chosen": "Bye.", "rejected": "No.", "subset": "mt-bench-hard", "id": "x7"},
]
PPE_HUMAN = [
    {"question_id": "q1", "prompt": "Name a color.", "response_1": "Blue.", "response_2": "Seven.",
     "model_a": "a", "model_b": "b", "winner": "model_a"},
    {"question_id": "q2", "prompt": "Name a number.", "response_1": "Blue.", "response_2": "Seven.",
     "model_a": "a", "model_b": "b", "winner": "model_b"},
    {"question_id": "q3", "prompt": "Hi", "response_1": "Hey", "response_2": "Hello",
     "model_a": "a", "model_b": "b", "winner": "tie"},
]
PPE_CORR = [
    {"question_id": "m1", "prompt": "1+1?", "response_1": "2", "response_2": "3", "response_3": "two",
     "scores": [True, False, True], "sampled_conflict_pairs": [[0, 1], [1, 2]]},
    {"question_id": "m2", "prompt": "2+2?", "response_1": "5", "response_2": "4",
     "scores": [False, True], "sampled_conflict_pairs": []},
]


def write_jsonl(path, records):
  path.write_text("".join(json.dumps(r) + "\n" for r in records))
  return str(path)


def write_parquet(path, records):
  pq.write_table(pa.Table.from_pylist(records), path)
  return str(path)


def test_rewardbench_jsonl_and_parquet(tmp_path):
  for path in (write_jsonl(tmp_path / "rb.jsonl", RB), write_parquet(tmp_path / "rb.parquet", RB[:1])):
    exs, stats = sources.load_examples(path, "rewardbench")
    assert exs[0].responses == ("4", "5") and exs[0].label == 0
    assert exs[0].family == "math-prm" and exs[0].id == "30" and exs[0].query == "What is 2 + 2?"
    assert stats.records == len(exs) == stats.loaded_records == stats.examples and not stats.skipped
  exs, _ = sources.load_examples(tmp_path / "rb.jsonl")  # auto-detected
  assert exs[1].context == (Turn("user", "Hi"), Turn("assistant", "Hello!"), Turn("user", "Say bye."))


def test_ppe_human_skips_and_counts_ties(tmp_path):
  exs, stats = sources.load_examples(write_jsonl(tmp_path / "h.jsonl", PPE_HUMAN), "ppe_human")
  assert [(e.id, e.label) for e in exs] == [("q1", 0), ("q2", 1)]
  assert exs[0].family == "ppe_human"
  assert stats.records == 3 and stats.loaded_records == 2 and stats.skipped == {sources.TIE: 1}
  assert "skipped 1: tie" in stats.summary()


def test_ppe_correctness_pairs_and_best_of_k(tmp_path):
  path = write_parquet(tmp_path / "c.parquet", PPE_CORR)
  pairs, items, stats = sources.ppe_correctness(path, family="ppe_ifeval")
  assert [(p.id, p.responses, p.label) for p in pairs] == [
      ("m1:0-1", ("2", "3"), 0), ("m1:1-2", ("3", "two"), 1)]
  assert {p.family for p in pairs} == {"ppe_ifeval"}
  assert items[0].responses == ("2", "3", "two") and items[0].correct == (True, False, True)
  assert items[0].pairs == ((0, 1), (2, 1)) and items[1].pairs == ()
  assert stats.records == 2 and stats.examples == 2
  exs, _ = sources.load_examples(path, family="ppe_ifeval")  # auto-detected
  assert exs == pairs


def test_grm_jsonl_round_trip(tmp_path):
  exs = synthetic.generate(12, seed=1)
  path = tmp_path / "own.jsonl"
  sources.save_jsonl(exs, path)
  back, stats = sources.load_examples(path)
  assert stats.format == "grm" and back == exs


BAD = [
    ({"prompt": "q", "rejected": "r", "subset": "s"}, "field 'chosen' is missing"),
    ({"prompt": "q", "chosen": "  ", "rejected": "r", "subset": "s"}, "field 'chosen' is empty"),
    ({"prompt": "q", "chosen": 3, "rejected": "r", "subset": "s"}, "field 'chosen' is int, expected a string"),
    ({"prompt": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
      "chosen": "c", "rejected": "r", "subset": "s"},
     "field 'prompt': the last message must be the user's query, got role 'assistant'"),
    ({"prompt": [{"role": "bot", "content": "a"}], "chosen": "c", "rejected": "r", "subset": "s"},
     "field 'prompt'[0] has role 'bot'"),
]


@pytest.mark.parametrize("bad, message", BAD)
def test_bad_record_names_file_and_line(tmp_path, bad, message):
  path = write_jsonl(tmp_path / "rb.jsonl", RB + [bad])
  with pytest.raises(sources.DataError) as e:
    sources.load_examples(path, "rewardbench")
  assert str(e.value).startswith(f"{path}:3: {message}")


def test_bad_parquet_row_and_other_formats(tmp_path):
  path = write_parquet(tmp_path / "h.parquet", PPE_HUMAN[:2] + [dict(PPE_HUMAN[0], winner="both", question_id="z")])
  with pytest.raises(sources.DataError, match=r"h\.parquet:row 3: field 'winner' is 'both'"):
    sources.load_examples(path, "ppe_human")
  bad = dict(PPE_CORR[0], sampled_conflict_pairs=[[0, 2]])
  with pytest.raises(sources.DataError, match=r"c\.jsonl:1: field 'sampled_conflict_pairs'\[0\]=\[0, 2\]: both responses are correct"):
    sources.load_examples(write_jsonl(tmp_path / "c.jsonl", [bad]), "ppe_correctness")
  bad = dict(PPE_CORR[0], scores=[True, False])
  with pytest.raises(sources.DataError, match="field 'scores' has 2 values for 3 responses"):
    sources.load_examples(write_jsonl(tmp_path / "c.jsonl", [bad]), "ppe_correctness")
  with pytest.raises(sources.DataError, match=r"rb\.jsonl:2: id '30' repeats the one at .*rb\.jsonl:1"):
    sources.load_examples(write_jsonl(tmp_path / "rb.jsonl", [RB[0], RB[0]]), "rewardbench")
  (tmp_path / "j.jsonl").write_text(json.dumps(RB[0]) + "\n\n{oops\n")
  with pytest.raises(sources.DataError, match=r"j\.jsonl:3: not valid JSON"):
    sources.load_examples(tmp_path / "j.jsonl")
  with pytest.raises(sources.DataError, match=r"u\.jsonl:1: cannot tell the format"):
    sources.load_examples(write_jsonl(tmp_path / "u.jsonl", [{"text": "x"}]))
  with pytest.raises(sources.DataError, match=r"g\.jsonl:1: GRMExample\(id='g-1'\): label=2 is not a response index"):
    sources.load_examples(write_jsonl(tmp_path / "g.jsonl", [{"context": "q", "responses": ["a", "b"], "label": 2}]))
  with pytest.raises(ValueError, match="format='csv'"):
    sources.load_examples(path, "csv")


def test_skip_invalid_counts_every_reason(tmp_path):
  records = RB + [bad for bad, _ in BAD] + [RB[0]]
  exs, stats = sources.load_examples(write_jsonl(tmp_path / "rb.jsonl", records), "rewardbench",
                                     skip_invalid=True)
  assert len(exs) == 2 and stats.records == 8
  assert stats.loaded_records + sum(stats.skipped.values()) == stats.records
  assert stats.skipped == {
      "field 'chosen' is missing": 1, "field 'chosen' is empty": 1,
      "field 'chosen' is int, expected a string": 1,
      "field 'prompt' does not end with a user message": 1,
      "field 'prompt' has a message with an unknown role": 1, "repeated id": 1}


def test_unlabelled_grm_records_only_when_asked(tmp_path):
  path = tmp_path / "q.jsonl"
  write_jsonl(path, [{"context": "Say hi.", "responses": ["hi", "bye"]},
                     {"context": "Say yes.", "responses": ["yes", "no"], "label": 0}])
  exs, stats = sources.load_examples(path, require_label=False)
  assert stats.format == "grm" and [ex.label for ex in exs] == [None, 0]
  assert exs[0].permuted((1, 0)).label is None
  with pytest.raises(sources.DataError, match=r"q.jsonl:1: field 'label' is missing"):
    sources.load_examples(path)
  exs, stats = sources.load_examples(path, skip_invalid=True)
  assert len(exs) == 1 and stats.skipped == {"field 'label' is missing": 1}
