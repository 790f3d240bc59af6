import importlib.util
import io
import pathlib
import pickle

import numpy as np
import pytest
import sentencepiece as spm
from hypothesis import given, settings, strategies as st

from spct_jax.data import synthetic
from spct_jax.example import Turn, assistant, user
from spct_jax.grm import prompts
from spct_jax.tokenizer import PLAIN_MARKERS, Tokenizer, plain_chat

_TEXT = [
    "Hello world,\nthis is  a test {7, 3} \\boxed{1, 2}.\n\n  multiple   spaces\tand tabs",
    "The quick brown fox 12345 jumps over the lazy dog. Scores: \\boxed{10, 1}",
    "<start_of_turn>user\nWho are you?<end_of_turn>\n<start_of_turn>model\nA model.<end_of_turn>",
] * 20


def _train(path, **ids_and_symbols) -> str:
  """A throwaway byte-fallback model standing in for a user's .model file."""
  w = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(_TEXT), model_writer=w, vocab_size=400, hard_vocab_limit=False,
      model_type="unigram", split_digits=True, byte_fallback=True,
      normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=False,
      character_coverage=1.0, num_threads=1, minloglevel=2, **ids_and_symbols)
  path.write_bytes(w.getvalue())
  return str(path)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  d = tmp_path_factory.mktemp("spm")
  return {
      # Gemma's special ids and chat markers.
      "gemma": _train(d / "gemma.model", pad_id=0, eos_id=1, bos_id=2, unk_id=3,
                      user_defined_symbols=["<start_of_turn>", "<end_of_turn>"]),
      # Llama-2's ids: no pad piece.
      "llama": _train(d / "llama.model", unk_id=0, bos_id=1, eos_id=2, pad_id=-1),
      # No bos piece at all.
      "nobos": _train(d / "nobos.model", unk_id=0, eos_id=1, bos_id=-1, pad_id=-1),
  }


def test_load_user_model_and_special_ids(models):
  tok = Tokenizer.load(models["gemma"])
  assert (tok.pad_id, tok.eos_id, tok.bos_id, tok.unk_id) == (0, 1, 2, 3)
  assert tok.vocab_size == tok.sp.GetPieceSize() > 300
  assert tok.chat_template == "gemma"
  eot = tok.piece_id("<end_of_turn>")
  assert tok.end_of_turn_ids == [1, eot] and tok.answer_end_id == eot
  llama = Tokenizer.load(models["llama"])
  assert (llama.unk_id, llama.bos_id, llama.eos_id) == (0, 1, 2)
  assert llama.pad_id == 0  # no pad piece: the unk id
  assert llama.chat_template == "plain" and llama.end_of_turn_ids == [2] and llama.answer_end_id == 2
  assert llama.piece_id("<start_of_turn>") is None


def test_round_trip_and_batching(models):
  tok = Tokenizer.load(models["llama"])
  texts = ["  leading spaces\n\nnew é 中 x", "Scores: \\boxed{7, 3}.", "", "tab\there"]
  for s in texts:
    assert tok.decode(tok.encode(s)) == s
  batch = tok.encode(texts)
  assert batch == [tok.encode(s) for s in texts]
  assert tok.decode(batch) == texts
  ids = tok.encode("12345")
  assert len(ids) == 5  # digits split
  with_special = tok.encode("hi", add_bos=True, add_eos=True)
  assert with_special[0] == tok.bos_id and with_special[-1] == tok.eos_id
  assert tok.decode(with_special) == "hi"  # control pieces are dropped
  padded = np.full((2, 12), tok.pad_id, np.int32)
  for b, s in enumerate(["ab", "12"]):
    row = tok.encode(s)
    padded[b, :len(row)] = row
  assert tok.decode(padded) == ["ab", "12"]
  assert tok.decode(np.asarray(tok.encode("ab"))) == "ab"
  assert tok.decode([]) == ""


def test_encode_decode_errors(models):
  tok = Tokenizer.load(models["llama"])
  with pytest.raises(ValueError, match=r"ids\[1\]=100000 is outside \[0, "):
    tok.decode([5, 100000])
  with pytest.raises(ValueError, match=r"ids\[1\]\[0\]=-1 is outside"):
    tok.decode([[5], [-1]])
  with pytest.raises(TypeError, match=r"text\[1\] is int, expected str"):
    tok.encode(["a", 3])
  with pytest.raises(ValueError, match=r"ids of shape \(1, 1, 1\)"):
    tok.decode(np.zeros((1, 1, 1), np.int32))
  nobos = Tokenizer.load(models["nobos"])
  assert nobos.bos_id == -1 and nobos.pad_id == nobos.unk_id
  with pytest.raises(ValueError, match=r"add_bos=True but .*nobos.model' defines no bos piece"):
    nobos.encode("x", add_bos=True)


def test_load_errors(tmp_path, models):
  with pytest.raises(FileNotFoundError, match=r"no tokenizer file at .*missing.model"):
    Tokenizer.load(tmp_path / "missing.model")
  bad = tmp_path / "bad.model"
  bad.write_bytes(b"not a model")
  with pytest.raises(ValueError, match=r"bad.model' is not a valid SentencePiece model"):
    Tokenizer.load(bad)
  with pytest.raises(ValueError, match=r"chat_template='gemma' needs <start_of_turn> and "
                                       r"<end_of_turn> in the vocabulary of .*llama.model"):
    Tokenizer.load(models["llama"], chat_template="gemma")
  with pytest.raises(ValueError, match=r"chat_template='chatml'"):
    Tokenizer.load(models["llama"], chat_template="chatml")


def test_gemma_chat_template(models):
  tok = Tokenizer.load(models["gemma"])
  turns = [Turn("system", "Be brief."), user("Hi"), assistant("Hello."), user("Score this.")]
  text = tok.chat_prompt(turns)
  assert text == ("<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
                  "<start_of_turn>model\nHello.<end_of_turn>\n"
                  "<start_of_turn>user\nScore this.<end_of_turn>\n"
                  "<start_of_turn>model\n")
  assert tok.chat_prompt(turns[:2], add_generation_prompt=False) == (
      "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n")
  ids = tok.encode(text, add_bos=True)
  assert ids[:2] == [tok.bos_id, tok.piece_id("<start_of_turn>")]
  assert ids.count(tok.piece_id("<end_of_turn>")) == 3
  assert tok.decode(ids) == text  # user-defined markers come back as text


def test_plain_chat_template(models):
  tok = Tokenizer.load(models["llama"])
  turns = [Turn("system", "S"), user("Q"), assistant("A"), user("Q2")]
  assert tok.chat_prompt(turns) == (
      "<|system|>\nS\n<|user|>\nQ\n<|assistant|>\nA\n<|user|>\nQ2\n<|assistant|>\n")
  assert tok.chat_prompt([user("Q")], add_generation_prompt=False) == "<|user|>\nQ\n"
  forced = Tokenizer.load(models["gemma"], chat_template="plain")
  assert forced.chat_template == "plain" and forced.end_of_turn_ids == [forced.eos_id]
  with pytest.raises(ValueError, match=r"turns\[0\].role='tool'"):
    tok.chat_prompt([Turn("tool", "x")])
  with pytest.raises(ValueError, match=r"no turns"):
    tok.chat_prompt([])


def test_pickles(models):
  tok = Tokenizer.load(models["gemma"])
  again = pickle.loads(pickle.dumps(tok))
  assert again.encode("Hello world") == tok.encode("Hello world")
  assert again.chat_template == "gemma"


# ---- the bundled tokenizer of the embedded default --------------------------------------------
@pytest.fixture(scope="module")
def bundled():
  return Tokenizer.load()


def test_bundled_tokenizer_spec(bundled):
  tok = bundled
  assert tok.vocab_size == 4096
  assert (tok.pad_id, tok.eos_id, tok.bos_id, tok.unk_id) == (0, 1, 2, 3)
  assert tok.chat_template == "plain" and tok.end_of_turn_ids == [1]
  for marker in PLAIN_MARKERS.values():
    assert tok.encode(marker) == [tok.piece_id(marker)]
  for c in [chr(i) for i in range(32, 127)] + ["\n", "\t"]:
    ids = tok.encode(c)
    assert len(ids) == 1 and not tok.sp.IsByte(ids[0]), repr(c)
  assert [tok.sp.IdToPiece(i) for i in tok.encode("2024")] == ["2", "0", "2", "4"]
  assert tok.decode(tok.encode("é中\U0001f600")) == "é中\U0001f600"  # byte fallback


def _synthetic_texts(count: int, seed: int) -> list[str]:
  rng = np.random.default_rng(seed)
  texts = []
  for ex in synthetic.generate(count, seed=seed):
    shown, _ = prompts.shuffle(ex, rng)
    for style in prompts.STYLES:
      for variant in prompts.VARIANTS:
        if variant != "hinted" or shown.n >= 2:
          texts.append(prompts.render(shown, variant=variant, style=style))
    texts.append(synthetic.teacher_critique(shown, rng))
    texts.append(synthetic.teacher_critique(shown, rng, error_rate=0.5))
    texts.extend(shown.responses)
    texts.extend(t.text for t in shown.context)
    texts.append(bundled_chat(shown))
  return texts


def bundled_chat(ex) -> str:
  return plain_chat([user(prompts.render(ex, style="compact"))])


def test_bundled_round_trips_every_synthetic_string(bundled):
  texts = _synthetic_texts(300, seed=1234)  # not the training seed
  decoded = bundled.decode(bundled.encode(texts))
  bad = [s for s, d in zip(texts, decoded) if s != d]
  assert not bad, bad[:3]


@settings(max_examples=200, deadline=None)
@given(st.text().map(lambda t: t.replace("\u2581", "")))
def test_bundled_round_trips_any_string(text):
  tok = Tokenizer.load()
  assert tok.decode(tok.encode(text)) == text


def test_bundled_reads_sentencepieces_word_mark_as_a_space():
  # the one exception to the round trip (module docstring): U+2581 is SentencePiece's space mark
  tok = Tokenizer.load()
  assert tok.decode(tok.encode("a\u2581b")) == "a b" and tok.decode(tok.encode("a b")) == "a b"


def test_compact_prompt_is_short(bundled):
  pairs = [ex for ex in synthetic.generate(200, seed=99) if ex.n == 2]
  assert pairs
  lengths = [len(bundled.encode(bundled_chat(ex), add_bos=True)) for ex in pairs]
  assert 80 <= float(np.median(lengths)) <= 220, (np.median(lengths), max(lengths))


def test_training_script_is_deterministic():
  spec = importlib.util.spec_from_file_location(
      "train_tokenizer", pathlib.Path(__file__).resolve().parents[1] / "scripts" / "train_tokenizer.py")
  script = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(script)
  a, b = script.train(40, seed=3), script.train(40, seed=3)
  assert a == b
  tok = Tokenizer.from_bytes(a)
  assert tok.vocab_size == 4096 and (tok.pad_id, tok.eos_id, tok.bos_id, tok.unk_id) == (0, 1, 2, 3)
