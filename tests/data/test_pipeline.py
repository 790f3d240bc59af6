"""Tokenize, pad and batch: SFT rows with loss masks, left-padded prompt buckets, length policy."""
import numpy as np
import pytest

from spct_jax.data import pipeline, synthetic
from spct_jax.example import GRMExample, assistant, user
from spct_jax.grm import prompts
from spct_jax.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tok():
  return Tokenizer.load()


@pytest.fixture(scope="module")
def pairs():
  rng = np.random.default_rng(0)
  out = []
  for ex in synthetic.generate(12, seed=3):
    shown, _ = prompts.shuffle(ex, rng)
    out.append((shown, synthetic.teacher_critique(shown, rng)))
  return out


def test_encode_sft_layout(tok, pairs):
  ex, critique = pairs[0]
  tokens, mask = pipeline.encode_sft(ex, critique, tok, max_len=1024)
  prompt = pipeline.prompt_ids(ex, tok, variant="principles", style="compact")
  assert prompt == tok.encode(tok.chat_prompt([user(prompts.render(ex, style="compact"))]), add_bos=True)
  assert tokens.dtype == np.int32 and mask.dtype == bool and tokens.shape == mask.shape
  assert tokens[:len(prompt)].tolist() == prompt and tokens[0] == tok.bos_id
  assert not mask[:len(prompt)].any() and mask[len(prompt):].all()
  assert tokens[-1] == tok.answer_end_id
  assert tok.decode(tokens[mask]) == critique


def test_batch_sft_right_padding_and_buckets(tok, pairs):
  rows, stats = pipeline.batch_sft(pairs, tok, max_len=512)
  assert rows["tokens"].shape == rows["loss_mask"].shape == rows["pad_mask"].shape == (12, 512)
  assert rows["tokens"].dtype == np.int32 and stats.items == 12 and stats.too_long == 0
  for i, (ex, critique) in enumerate(pairs):
    t, m = pipeline.encode_sft(ex, critique, tok, max_len=512)
    n = len(t)
    assert rows["tokens"][i, :n].tolist() == t.tolist() and (rows["tokens"][i, n:] == tok.pad_id).all()
    assert rows["pad_mask"][i].sum() == n and rows["pad_mask"][i, :n].all()
    assert (rows["loss_mask"][i] == np.pad(m, (0, 512 - n))).all()
  small, _ = pipeline.batch_sft(pairs, tok, max_len=512, buckets=(64, 384, 512))
  longest = rows["pad_mask"].sum(1).max()
  assert small["tokens"].shape[1] == min(b for b in (64, 384, 512) if b >= longest)
  assert (small["tokens"] == rows["tokens"][:, :small["tokens"].shape[1]]).all()


def _dialogue():
  turns = [user("I have 3 kites."), assistant("Nice, 3 kites!")]
  turns += [user("The weather is nice today."), assistant("That sounds pleasant.")] * 6
  turns += [user("If I buy 2 more, how many kites will I have?")]
  return GRMExample(tuple(turns), ("You will have 5 kites.", "You will have 3 kites."), 0, "dialogue", "d1")


def test_context_is_cut_from_the_left(tok):
  ex = _dialogue()
  full = pipeline.prompt_ids(ex, tok)
  stats = pipeline.LengthStats()
  ids = pipeline.fit_prompt(ex, tok, len(full) - 10, stats=stats)
  assert len(ids) <= len(full) - 10
  text = tok.decode(ids)
  assert "I have 3 kites." not in text  # the oldest turn went first
  assert "If I buy 2 more" in text and all(r in text for r in ex.responses)
  assert stats.truncated == 1 and stats.turns_dropped >= 1 and stats.too_long == 0
  # Cutting the query itself, from the left, once no older turn is left.
  long_q = GRMExample((user("word " * 200 + "What is the capital of Orin?"),), ("Kell.", "Mira."), 0, id="q")
  stats = pipeline.LengthStats()
  ids = pipeline.fit_prompt(long_q, tok, 200, stats=stats)
  text = tok.decode(ids)
  assert len(ids) <= 200 and "User: ... word word" in text and "capital of Orin?" in text
  assert "Kell." in text and "Mira." in text and stats.query_cut == 1
  # Responses are never cut: the item is left out and counted.
  huge = GRMExample((user("q"),), ("yes " * 300, "no"), 1, id="huge")
  rows, stats = pipeline.batch_sft([(huge, "Scores: \\boxed{1, 9}"), (ex, "x")], tok, max_len=256)
  assert rows["tokens"].shape == (1, 256)
  assert stats.too_long == 1 and stats.too_long_ids == ["huge"] and "1 left out" in stats.summary()


def test_encode_prompts_left_padded_buckets(tok, pairs):
  exs = [ex for ex, _ in pairs]
  huge = GRMExample((user("q"),), ("yes " * 600, "no"), 1, id="huge")
  batch, stats = pipeline.encode_prompts(exs[:3] + [huge] + exs[3:5], tok, max_len=512, buckets=(128, 256, 512))
  assert batch.index.tolist() == [0, 1, 2, 4, 5] and stats.too_long_ids == ["huge"]
  b, t = batch.tokens.shape
  assert b == 5 and t in (128, 256, 512) and t >= batch.lengths.max()
  assert t == 128 or batch.lengths.max() > t // 2
  for row, i in enumerate(batch.index):
    ex = (exs[:3] + [huge] + exs[3:5])[i]
    ids = pipeline.prompt_ids(ex, tok)
    assert batch.tokens[row, t - len(ids):].tolist() == ids
    assert (batch.tokens[row, :t - len(ids)] == tok.pad_id).all()
    assert batch.pad_mask[row].tolist() == [False] * (t - len(ids)) + [True] * len(ids)
    assert batch.lengths[row] == len(ids)
  with pytest.raises(ValueError, match="must be positive"):
    pipeline.encode_prompts(exs[:1], tok, max_len=512, buckets=(0, 128))


def test_response_ids_and_pad(tok):
  ex = _dialogue()
  ids = pipeline.response_ids(ex, 1, tok, max_len=512)
  assert ids[0] == tok.bos_id and ids[-1] == tok.answer_end_id
  assert tok.decode(ids[1:-1]).endswith(ex.responses[1])
  # the oldest turns go first when it does not fit; the response is never cut
  short = pipeline.response_ids(ex, 1, tok, max_len=len(ids) - 1, stats=(st := pipeline.LengthStats()))
  assert short is not None and len(short) < len(ids) and st.truncated == 1 and st.turns_dropped >= 1
  assert pipeline.response_ids(ex, 1, tok, max_len=5, stats=st) is None and st.too_long == 1
  with pytest.raises(ValueError, match="response 7"):
    pipeline.response_ids(ex, 7, tok, max_len=512)
  tokens, mask = pipeline.pad([[5, 6, 7], [8]], pad_id=0)
  np.testing.assert_array_equal(tokens, [[5, 6, 7], [8, 0, 0]])
  np.testing.assert_array_equal(mask, [[1, 1, 1], [1, 0, 0]])
  with pytest.raises(ValueError, match="row 0 has 3 tokens"):
    pipeline.pad([[5, 6, 7]], 0, length=2)
  tokens, mask = pipeline.pad([[5, 6, 7], [8]], 1, length=4, left=True)
  np.testing.assert_array_equal(tokens, [[1, 5, 6, 7], [1, 1, 1, 8]])
  np.testing.assert_array_equal(mask, [[0, 1, 1, 1], [0, 0, 0, 1]])


def test_bucket_length():
  assert pipeline.bucket_length(17) == 32 and pipeline.bucket_length(3) == 16
  assert pipeline.bucket_length(5, (8, 64)) == 8 and pipeline.bucket_length(9, (8, 64), cap=40) == 40
  assert pipeline.bucket_length(100, (8, 64), cap=40) == 40
  with pytest.raises(ValueError, match="length 100 exceeds the largest bucket 64"):
    pipeline.bucket_length(100, (8, 64))
