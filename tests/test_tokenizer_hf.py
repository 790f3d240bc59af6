"""Hugging Face tokenizer.json tokenizers (Llama-3 and Qwen2 style fixtures built by
scripts/make_tokenizer_fixtures.py): special ids, round trips, chat templates, and live parity of
ids with `transformers` for them and for a Gemma-style SentencePiece model."""
import pathlib

import pytest

from spct_jax.example import Turn, assistant, user
from spct_jax.tokenizer import HFTokenizer, Tokenizer

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "tokenizers"
STRINGS = ["Score each response 1-10.", "Grüße  aus\tMünchen\n\n  x", "你好，世界 😀 1234567 3.14",
           "  leading and trailing  ", "Привет, как дела? ¿Qué tal?", "\n\n\n", "a" * 40, ""]
TURNS = [Turn("system", "Be brief."), user("Hi there  \n friend"), assistant("Hello!"), user("Which is better?")]


@pytest.mark.parametrize("family", ["llama3", "qwen2"])
def test_loads_with_its_special_tokens_and_round_trips(family):
  tok = Tokenizer.load(FIXTURES / family)
  assert isinstance(tok, HFTokenizer) and tok.vocab_size == 1256
  assert tok.eos_id in tok.end_of_turn_ids and tok.pad_id != tok.eos_id
  for s in STRINGS:
    assert tok.decode(tok.encode(s)) == s
  ids = tok.encode(STRINGS[:3], add_bos=True)
  assert tok.decode(ids) == STRINGS[:3]
  same = Tokenizer.load(FIXTURES / family / "tokenizer.json")
  assert same.encode(STRINGS[1]) == tok.encode(STRINGS[1])


def test_llama3_chat_prompt():
  tok = Tokenizer.load(FIXTURES / "llama3")
  assert tok.bos_id >= 0 and tok.answer_end_id == tok.piece_id("<|eot_id|>")
  text = tok.chat_prompt([user("Hi"), assistant("Yo"), user("Bye")])
  assert text == ("<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\nYo<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n")  # the bos is left to encode(add_bos=True)
  assert tok.encode(text, add_bos=True)[0] == tok.bos_id


def test_qwen2_chat_prompt_and_no_bos():
  tok = Tokenizer.load(FIXTURES / "qwen2")
  assert tok.bos_id == -1 and tok.encode("hi", add_bos=True) == tok.encode("hi")  # no bos in the model
  assert tok.chat_prompt([user("Hi")]) == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                                           "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
  assert tok.answer_end_id == tok.piece_id("<|im_end|>")


def test_save_and_load_back(tmp_path):
  tok = Tokenizer.load(FIXTURES / "qwen2")
  tok.save(tmp_path)
  again = Tokenizer.load(tmp_path)
  assert again.encode(STRINGS[2]) == tok.encode(STRINGS[2]) and again.chat_prompt(TURNS) == tok.chat_prompt(TURNS)


def test_a_folder_without_a_tokenizer_says_what_was_looked_for(tmp_path):
  with pytest.raises(FileNotFoundError, match="looked for tokenizer.model .* and tokenizer.json"):
    Tokenizer.load(tmp_path)
  (tmp_path / "tokenizer.json").write_text("{not json")
  with pytest.raises(ValueError, match="not a valid tokenizer.json"):
    Tokenizer.load(tmp_path)


@pytest.mark.parity
@pytest.mark.parametrize("family", ["llama3", "qwen2"])
def test_ids_and_chat_ids_match_transformers(family):
  transformers = pytest.importorskip("transformers")
  ours = Tokenizer.load(FIXTURES / family)
  theirs = transformers.AutoTokenizer.from_pretrained(str(FIXTURES / family))
  for s in STRINGS:
    assert ours.encode(s) == theirs.encode(s, add_special_tokens=False), repr(s)
  for turns in (TURNS, TURNS[1:2]):
    want = theirs.apply_chat_template([{"role": t.role, "content": t.text} for t in turns], tokenize=True,
                                      add_generation_prompt=True)
    want = want["input_ids"] if hasattr(want, "keys") else want
    assert ours.encode(ours.chat_prompt(turns), add_bos=True) == list(want)


@pytest.mark.parity
def test_sentencepiece_ids_match_transformers_gemma_tokenizer(tmp_path):
  """A Gemma-style SentencePiece model (BPE with byte fallback, Gemma's special ids and chat
  markers): our ids equal transformers' GemmaTokenizer's."""
  transformers = pytest.importorskip("transformers")
  import io
  import sentencepiece as spm
  w = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(STRINGS * 20 + ["the quick brown fox jumps over the lazy dog"] * 50),
      model_writer=w, vocab_size=400, hard_vocab_limit=False, model_type="bpe", byte_fallback=True,
      split_digits=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
      add_dummy_prefix=False, character_coverage=1.0, num_threads=1, minloglevel=2,
      pad_id=0, eos_id=1, bos_id=2, unk_id=3, user_defined_symbols=["<start_of_turn>", "<end_of_turn>"])
  (tmp_path / "tokenizer.model").write_bytes(w.getvalue())
  ours = Tokenizer.load(tmp_path)
  theirs = transformers.GemmaTokenizer.from_pretrained(str(tmp_path))
  for s in STRINGS + ["<start_of_turn>user\nhi<end_of_turn>\n"]:
    assert ours.encode(s) == theirs.encode(s, add_special_tokens=False), repr(s)
