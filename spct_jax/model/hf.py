"""Hugging Face checkpoints <-> (ModelConfig, params).

    cfg, params = hf.load("/path/to/gemma-2-2b")            # config.json + *.safetensors
    hf.save(cfg, params, "/tmp/out")                        # transformers.from_pretrained loads it
    cfg, rm = hf.load_reward("/path/to/gemma-2-meta-rm")    # rm = {"lm": ..., "score": [D, 1]}
    hf.save_reward(cfg, rm, "/tmp/rm", pad_token_id=0)      # AutoModelForSequenceClassification loads it

Supported `model_type`s: gemma2, gemma3_text (our "gemma3"; the text decoder `Gemma3ForCausalLM`,
as Gemma 3 270M and 1B ship), llama, mistral, qwen2. Tensors are read one at a time from
memory-mapped safetensors files (the format is parsed here: an 8-byte little-endian header length,
a JSON header, then raw little-endian data), so bfloat16 works through `ml_dtypes` and the host
never holds two copies of the model. `load` returns host numpy arrays, or with `lazy=True` views
of the memory-mapped files in our layout (nothing read yet): `mesh.put` then reads each device's
shard from them, so a host reads only what its devices hold.

HF stores linear weights as [out, in]; ours are [in, ...] with heads split out:
    q_proj.weight [N*H, D] <-> q [D, N, H];  o_proj.weight [D, N*H] <-> o [N, H, D];
    gate/up_proj.weight [F, D] <-> [D, F];   down_proj.weight [D, F] <-> [F, D];
    lm_head.weight [V, D] <-> lm_head [D, V].  Norm weights, biases and embeddings map as they are
(Gemma norm weights w mean x * (1 + w) in both; Gemma 3's q_norm / k_norm [H] likewise).

Reward models (spct_jax/model/reward.py) use the standard `<Family>ForSequenceClassification`
layout: the backbone's `model.*` tensors plus `score.weight` [num_labels=1, D] (no bias) <-> our
`score` [D, 1], and no `lm_head.weight` (untied configs do not ask for it). They have their own
pair of functions, `load_reward` / `save_reward`, so that the type of what comes back never
depends on a file's contents: `load` on such a folder raises and names `load_reward`, and
`load_reward` on a causal-LM folder raises and names `load` (+ `reward.from_lm` for a fresh head).
Only num_labels == 1 (a scalar reward) is supported. `save_reward` writes architectures
[<Family>ForSequenceClassification], num_labels 1, id2label/label2id for one label and the
`pad_token_id` that transformers needs to find each row's last real token (it takes the
rightmost token != pad_token_id; our `reward.scores` takes the last True of pad_mask instead).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import struct
from typing import Any, Callable

from absl import logging
import jax
import ml_dtypes
import numpy as np

from spct_jax.model import config as config_lib
from spct_jax.model import transformer
from spct_jax.model.config import ModelConfig

# HF model_type -> ours
MODEL_TYPES = {"gemma2": "gemma2", "gemma3_text": "gemma3", "llama": "llama", "mistral": "mistral",
               "qwen2": "qwen2"}
HF_MODEL_TYPES = {v: k for k, v in MODEL_TYPES.items()}
SUPPORTED = tuple(MODEL_TYPES)
ARCHITECTURES = {"gemma2": "Gemma2ForCausalLM", "gemma3": "Gemma3ForCausalLM", "llama": "LlamaForCausalLM",
                 "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM"}
REWARD_ARCHITECTURES = {"gemma2": "Gemma2ForSequenceClassification",
                        "gemma3": "Gemma3TextForSequenceClassification",
                        "llama": "LlamaForSequenceClassification",
                        "mistral": "MistralForSequenceClassification",
                        "qwen2": "Qwen2ForSequenceClassification"}
_SEQ_CLS = "ForSequenceClassification"
_ACTIVATIONS = {"gemma2": ("gelu_pytorch_tanh", "gelu_tanh"), "gemma3": ("gelu_pytorch_tanh", "gelu_tanh"),
                "llama": ("silu",),
                "mistral": ("silu",), "qwen2": ("silu",)}
# safetensors dtype code <-> numpy dtype (little-endian)
_ST_TO_NP = {"F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
             "BF16": np.dtype(ml_dtypes.bfloat16), "I64": np.dtype("<i8"), "I32": np.dtype("<i4"),
             "I16": np.dtype("<i2"), "I8": np.dtype("i1"), "U8": np.dtype("u1"), "BOOL": np.dtype("bool")}
_NP_TO_ST = {v: k for k, v in _ST_TO_NP.items()}
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)  # derived buffers some old checkpoints carry


# ---- config.json <-> ModelConfig

def config_from_hf(d: dict[str, Any], dtype: str | None = None) -> ModelConfig:
  """A ModelConfig from a HF config.json dict. dtype: param and compute dtype (None: the
  checkpoint's `dtype`/`torch_dtype`, float32 when absent)."""
  hf_mt = d.get("model_type")
  if hf_mt == "gemma3":
    raise ValueError("model_type 'gemma3' is the multimodal Gemma 3 (Gemma3ForConditionalGeneration); "
                     "only its text decoder is supported: a gemma3_text checkpoint (Gemma 3 270M, 1B), "
                     "or the GGUF route (model/gguf.py)")
  if hf_mt not in SUPPORTED:
    raise ValueError(f"unsupported model_type {hf_mt!r}; supported: {', '.join(SUPPORTED)}")
  mt = MODEL_TYPES[hf_mt]

  def need(key, within=d, where=""):
    if within.get(key) is None:
      raise ValueError(f"config.json (model_type {hf_mt}): missing key {where}{key!r}")
    return within[key]

  d_model, n_heads = int(need("hidden_size")), int(need("num_attention_heads"))
  n_layers = int(need("num_hidden_layers"))
  act = d.get("hidden_activation") or d.get("hidden_act")
  if act not in _ACTIVATIONS[mt]:
    raise ValueError(f"config.json: activation {act!r} is not supported for {hf_mt} "
                     f"(supported: {', '.join(_ACTIVATIONS[mt])})")
  rope, local_rope = _rope_parameters(d, mt)
  rope_type = rope.get("rope_type", rope.get("type", "default"))
  if rope_type not in ("default", "llama3", "linear"):
    raise ValueError(f"config.json: rope_type {rope_type!r} is not supported (supported: default, llama3, linear)")
  if float(rope.get("partial_rotary_factor", d.get("partial_rotary_factor") or 1.0)) != 1.0:
    raise ValueError("config.json: partial_rotary_factor != 1 is not supported")
  for key in ("attention_bias", "mlp_bias", "use_bidirectional_attention"):
    if d.get(key):
      raise ValueError(f"config.json: {key}=true is not supported for {hf_mt}")
  if mt == "qwen2" and d.get("use_sliding_window"):
    raise ValueError("config.json: use_sliding_window=true is not supported for qwen2")

  # keys absent from config.json take the transformers class defaults
  gemma = mt in config_lib.GEMMA
  sliding_window = d.get("sliding_window", 4096) if gemma or mt == "mistral" else None
  pattern = 2
  if gemma:
    pattern = int(d.get("sliding_window_pattern") or (6 if mt == "gemma3" else 2))
    layer_types = d.get("layer_types")
    if layer_types is not None:
      if all(t == "full_attention" for t in layer_types):
        sliding_window = None
      else:
        pattern = layer_types.index("full_attention") + 1 if "full_attention" in layer_types else n_layers + 1
        expected = ["sliding_attention" if (i + 1) % pattern else "full_attention" for i in range(n_layers)]
        if list(layer_types) != expected:
          raise ValueError(f"config.json: {hf_mt} layer_types {layer_types} are not supported (supported: "
                           "every n-th layer full attention, the others sliding)")
  if dtype is None:
    dtype = d.get("dtype") or d.get("torch_dtype") or "float32"
    dtype = dtype if dtype in config_lib.DTYPES else "float32"
  kw = dict(
      model_type=mt, vocab_size=int(need("vocab_size")), d_model=d_model,
      n_layers=int(need("num_hidden_layers")), n_heads=n_heads,
      n_kv_heads=int(d.get("num_key_value_heads") or n_heads),
      head_dim=int(d.get("head_dim") or d_model // n_heads), mlp_dim=int(need("intermediate_size")),
      qkv_bias=mt == "qwen2", tie_embeddings=bool(d.get("tie_word_embeddings", gemma)),
      norm_eps=float(d.get("rms_norm_eps", 1e-6)),
      rope_theta=float(rope.get("rope_theta") or d.get("rope_theta") or 10000.0),
      sliding_window=None if sliding_window is None else int(sliding_window),
      sliding_window_pattern=pattern, max_len=int(d.get("max_position_embeddings") or 8192), param_dtype=dtype, dtype=dtype)
  if rope_type == "linear":
    kw.update(rope_scaling_type="linear", rope_scaling_factor=float(need("factor", rope, "rope_scaling.")))
  if local_rope is not None:
    if local_rope.get("rope_type", "default") != "default":
      raise ValueError(f"config.json: rope_type {local_rope.get('rope_type')!r} of the sliding layers is not "
                       "supported (supported: default)")
    kw["rope_local_theta"] = float(local_rope.get("rope_theta") or 10000.0)
  if rope_type == "llama3":
    rope_key = lambda k: need(k, rope, "rope_scaling.")
    kw.update(rope_scaling_factor=float(rope_key("factor")),
              rope_low_freq_factor=float(rope_key("low_freq_factor")),
              rope_high_freq_factor=float(rope_key("high_freq_factor")),
              rope_original_max_len=int(rope_key("original_max_position_embeddings")))
  if gemma:
    caps = (50.0, 30.0) if mt == "gemma2" else (None, None)
    kw.update(query_pre_attn_scalar=_opt_float(d.get("query_pre_attn_scalar", 256)),
              attn_softcap=_opt_float(d.get("attn_logit_softcapping", caps[0])),
              final_softcap=_opt_float(d.get("final_logit_softcapping", caps[1])))
  return ModelConfig(**kw)


def _rope_parameters(d: dict[str, Any], mt: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
  """(RoPE parameters of the global layers, of the local layers or None) from a config.json dict:
  `rope_parameters` (per layer type for Gemma 3, as transformers 5 writes it) or the older
  `rope_theta` / `rope_scaling` / `rope_local_base_freq` keys."""
  params = dict(d.get("rope_parameters") or {})
  if mt != "gemma3":
    rope = dict(params or d.get("rope_scaling") or {})
    return rope, None
  if "full_attention" in params or "sliding_attention" in params:
    full, local = dict(params.get("full_attention") or {}), dict(params.get("sliding_attention") or {})
    full.setdefault("rope_theta", 1_000_000.0)
    local.setdefault("rope_theta", 10_000.0)
    return full, local
  rope = dict(d.get("rope_scaling") or {})
  rope.setdefault("rope_theta", d.get("rope_theta") or 1_000_000.0)
  return rope, {"rope_type": "default", "rope_theta": d.get("rope_local_base_freq") or 10_000.0}


def _int_if_whole(x: float) -> int | float:
  return int(x) if float(x).is_integer() else x


def _opt_float(x):
  return None if x is None else float(x)


def num_labels(d: dict[str, Any]) -> int:
  """The number of labels of a HF config.json dict: len(id2label), else num_labels, else 2
  (transformers' default for a classifier that records neither)."""
  if d.get("id2label") is not None:
    return len(d["id2label"])
  return int(d["num_labels"]) if d.get("num_labels") is not None else 2


def config_to_hf(cfg: ModelConfig, reward: bool = False, pad_token_id: int | None = None) -> dict[str, Any]:
  """A HF config.json dict (model_type, architectures and the shapes) for `cfg`.

  reward: a `<Family>ForSequenceClassification` config with one label (num_labels 1).
  pad_token_id: written when given (a reward model needs it to batch in transformers).
  """
  mt = cfg.model_type
  arch = (REWARD_ARCHITECTURES if reward else ARCHITECTURES)[mt]
  d = {"architectures": [arch], "model_type": HF_MODEL_TYPES[mt], "vocab_size": cfg.vocab_size,
       "hidden_size": cfg.d_model, "intermediate_size": cfg.mlp_dim,
       "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
       "num_key_value_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim, "rms_norm_eps": cfg.norm_eps,
       "max_position_embeddings": cfg.max_len, "tie_word_embeddings": cfg.tie_embeddings,
       "rope_theta": cfg.rope_theta, "rope_scaling": None, "attention_bias": False,
       "attention_dropout": 0.0, "dtype": cfg.param_dtype}
  if cfg.rope_scaling_factor is not None and cfg.rope_scaling_type == "linear":
    d["rope_scaling"] = {"rope_type": "linear", "factor": cfg.rope_scaling_factor}
  elif cfg.rope_scaling_factor is not None:
    d["rope_scaling"] = {"rope_type": "llama3", "factor": cfg.rope_scaling_factor,
                         "low_freq_factor": cfg.rope_low_freq_factor,
                         "high_freq_factor": cfg.rope_high_freq_factor,
                         "original_max_position_embeddings": cfg.rope_original_max_len}
  if cfg.is_gemma:
    local = cfg.local_layers
    d.update(hidden_activation="gelu_pytorch_tanh", hidden_act="gelu_pytorch_tanh",
             query_pre_attn_scalar=_int_if_whole(cfg.query_pre_attn_scalar or cfg.head_dim),
             sliding_window=cfg.sliding_window,
             layer_types=["sliding_attention" if l else "full_attention" for l in local],
             attn_logit_softcapping=cfg.attn_softcap, final_logit_softcapping=cfg.final_softcap)
  if mt == "gemma3":
    global_rope = {"rope_type": "default", "rope_theta": cfg.rope_theta}
    if cfg.rope_scaling_factor is not None:
      global_rope.update(rope_type="linear", factor=cfg.rope_scaling_factor)
    d.pop("rope_theta")
    d.pop("rope_scaling")
    d["rope_parameters"] = {"full_attention": global_rope, "sliding_attention": {
        "rope_type": "default", "rope_theta": cfg.rope_local_theta or cfg.rope_theta}}
  if not cfg.is_gemma:
    d["hidden_act"] = "silu"
  if mt == "llama":
    d["mlp_bias"] = False
  if mt == "mistral":
    d["sliding_window"] = cfg.sliding_window
  if mt == "qwen2":
    d.update(use_sliding_window=False, sliding_window=None, max_window_layers=cfg.n_layers)
  if reward:
    d.update(num_labels=1, id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})
  if pad_token_id is not None:
    d["pad_token_id"] = int(pad_token_id)
  return d


# ---- the tensor mapping

@dataclasses.dataclass(frozen=True)
class _Tensor:
  hf_name: str                       # e.g. "model.layers.0.self_attn.q_proj.weight"
  path: tuple[str, ...]              # e.g. ("layers_0", "attn", "q")
  hf_shape: tuple[int, ...]
  shape: tuple[int, ...]             # ours
  to_ours: Callable[[np.ndarray], np.ndarray]
  to_hf: Callable[[np.ndarray], np.ndarray]


def _same(a):
  return a


def _linear(hf_name: str, path: tuple[str, ...], out_shape: tuple[int, ...], in_dim: int) -> _Tensor:
  """HF [prod(out), in] <-> ours [in, *out]."""
  return _Tensor(hf_name, path, (math.prod(out_shape), in_dim), (in_dim, *out_shape),
                 lambda w: w.T.reshape(in_dim, *out_shape),
                 lambda a: a.reshape(in_dim, math.prod(out_shape)).T)


def _plain(hf_name: str, path: tuple[str, ...], shape: tuple[int, ...]) -> _Tensor:
  return _Tensor(hf_name, path, shape, shape, _same, _same)


def tensor_mapping(cfg: ModelConfig, reward: bool = False) -> list[_Tensor]:
  """Every parameter of `cfg` with its HF name, HF shape and conversions.

  reward: the `*ForSequenceClassification` layout: our paths under "lm", no lm_head, and
  `score.weight` [1, D] <-> ("score",) [D, 1].
  """
  if reward:
    lm = [dataclasses.replace(t, path=("lm",) + t.path) for t in tensor_mapping(cfg) if t.path != ("lm_head",)]
    return lm + [_linear("score.weight", ("score",), (1,), cfg.d_model)]
  d, n, k, h, f, v = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.mlp_dim, cfg.vocab_size
  out = [_plain("model.embed_tokens.weight", ("embed",), (v, d))]
  if cfg.is_gemma:
    norms = {"input_layernorm": "pre_attn_norm", "post_attention_layernorm": "post_attn_norm",
             "pre_feedforward_layernorm": "pre_mlp_norm", "post_feedforward_layernorm": "post_mlp_norm"}
  else:
    norms = {"input_layernorm": "pre_attn_norm", "post_attention_layernorm": "pre_mlp_norm"}
  for i in range(cfg.n_layers):
    p, L = f"model.layers.{i}.", f"layers_{i}"
    for name, heads in (("q", n), ("k", k), ("v", k)):
      out.append(_linear(f"{p}self_attn.{name}_proj.weight", (L, "attn", name), (heads, h), d))
      if cfg.qkv_bias:
        out.append(_Tensor(f"{p}self_attn.{name}_proj.bias", (L, "attn", f"{name}_bias"), (heads * h,),
                           (heads, h), lambda b, heads=heads: b.reshape(heads, h), lambda a: a.reshape(-1)))
    out.append(_Tensor(f"{p}self_attn.o_proj.weight", (L, "attn", "o"), (d, n * h), (n, h, d),
                       lambda w: w.T.reshape(n, h, d), lambda a: a.reshape(n * h, d).T))
    for name in ("gate", "up"):
      out.append(_linear(f"{p}mlp.{name}_proj.weight", (L, "mlp", name), (f,), d))
    out.append(_linear(f"{p}mlp.down_proj.weight", (L, "mlp", "down"), (d,), f))
    for hf_norm, ours in norms.items():
      out.append(_plain(f"{p}{hf_norm}.weight", (L, ours, "scale"), (d,)))
    if cfg.qk_norm:
      for name in ("q", "k"):
        out.append(_plain(f"{p}self_attn.{name}_norm.weight", (L, "attn", f"{name}_norm", "scale"), (h,)))
  out.append(_plain("model.norm.weight", ("final_norm", "scale"), (d,)))
  if not cfg.tie_embeddings:
    out.append(_linear("lm_head.weight", ("lm_head",), (v,), d))
  return out


def hf_names_and_shapes(cfg: ModelConfig, reward: bool = False) -> dict[str, tuple[int, ...]]:
  """The HF checkpoint's tensor names and shapes for `cfg` (what `save` writes, `load` expects;
  reward: what `save_reward` writes, `load_reward` expects)."""
  return {t.hf_name: t.hf_shape for t in tensor_mapping(cfg, reward)}


# ---- safetensors files

class _SafetensorsFile:
  """A memory-mapped safetensors file; `read(name)` returns a read-only view, no copy."""

  def __init__(self, path: str):
    self.path = path
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
      head = fh.read(8)
      if len(head) < 8:
        raise ValueError(f"{path}: not a safetensors file (shorter than 8 bytes)")
      n = struct.unpack("<Q", head)[0]
      if n > size - 8:
        raise ValueError(f"{path}: not a safetensors file (header length {n} > file size {size})")
      try:
        header = json.loads(fh.read(n))
      except ValueError as e:
        raise ValueError(f"{path}: unreadable safetensors header: {e}") from None
    header.pop("__metadata__", None)
    self.start = 8 + n
    self.entries = header
    for name, e in header.items():
      if e.get("dtype") not in _ST_TO_NP:
        raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {e.get('dtype')!r}")
      b0, b1 = e["data_offsets"]
      nbytes = math.prod(e["shape"]) * _ST_TO_NP[e["dtype"]].itemsize
      if b1 - b0 != nbytes or self.start + b1 > size:
        raise ValueError(f"{path}: tensor {name!r} has data offsets {e['data_offsets']} that do not "
                         f"fit its shape {e['shape']} ({e['dtype']}) or the file ({size} bytes)")
    self._mm = np.memmap(path, dtype=np.uint8, mode="r") if size > self.start else None

  def shape(self, name: str) -> tuple[int, ...]:
    return tuple(self.entries[name]["shape"])

  def dtype(self, name: str) -> np.dtype:
    return _ST_TO_NP[self.entries[name]["dtype"]]

  def read(self, name: str) -> np.ndarray:
    e = self.entries[name]
    b0, b1 = e["data_offsets"]
    if b0 == b1:
      return np.zeros(e["shape"], self.dtype(name))
    raw = self._mm[self.start + b0:self.start + b1]
    return raw.view(self.dtype(name)).reshape(e["shape"])


def _open_checkpoint(path: str) -> dict[str, _SafetensorsFile]:
  """tensor name -> the file that holds it (single file or sharded with an index)."""
  single = os.path.join(path, "model.safetensors")
  index = os.path.join(path, "model.safetensors.index.json")
  if os.path.exists(single):
    f = _SafetensorsFile(single)
    return {name: f for name in f.entries}
  if not os.path.exists(index):
    raise FileNotFoundError(f"{path}: no model.safetensors or model.safetensors.index.json")
  with open(index) as fh:
    weight_map = json.load(fh).get("weight_map")
  if not isinstance(weight_map, dict):
    raise ValueError(f"{index}: no 'weight_map' object")
  files: dict[str, _SafetensorsFile] = {}
  out = {}
  for name, fname in weight_map.items():
    if fname not in files:
      fpath = os.path.join(path, fname)
      if not os.path.exists(fpath):
        raise FileNotFoundError(f"{index}: tensor {name!r} is mapped to missing file {fname!r}")
      files[fname] = _SafetensorsFile(fpath)
    if name not in files[fname].entries:
      raise ValueError(f"{index}: tensor {name!r} is mapped to {fname!r}, which does not hold it")
    out[name] = files[fname]
  for fname, f in files.items():  # tensors present in a shard but absent from the index
    for name in f.entries:
      out.setdefault(name, f)
  return out


def _names(kind: str, names: list[str], noun: str = "tensor") -> str:
  shown = ", ".join(repr(n) for n in names[:5]) + (", ..." if len(names) > 5 else "")
  return f"{kind} {noun} {shown}" if len(names) == 1 else f"{len(names)} {kind} {noun}s: {shown}"


def set_path(tree: dict, path: tuple[str, ...], value: Any) -> None:
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


def get_path(tree: Any, path: tuple[str, ...]) -> Any:
  for key in path:
    tree = tree[key]
  return tree


def load(path: str, dtype: str | None = None, lazy: bool = False) -> tuple[ModelConfig, Any]:
  """Reads a HF causal-LM folder (config.json + model.safetensors or a sharded index).

  dtype: dtype of the returned params and cfg.param_dtype / cfg.dtype (None: the checkpoint's).
  lazy: return read-only views of the memory-mapped files, in the checkpoint's dtype (cast them
    as they are read: `mesh.put(params, shardings, dtype=cfg.param_dtype)`); else host copies.
  Raises (naming the tensor) on missing, unexpected or wrongly shaped tensors, and on a
  `*ForSequenceClassification` folder (read those with `load_reward`).
  """
  return _load(path, dtype, lazy, reward=False)


def load_reward(path: str, dtype: str | None = None, lazy: bool = False) -> tuple[ModelConfig, Any]:
  """Reads a HF `<Family>ForSequenceClassification` folder with num_labels 1 (a scalar reward model).

  Returns (cfg, {"lm": backbone params, "score": [D, 1]}) in spct_jax/model/reward.py's layout;
  dtype and lazy as in `load`.
  Raises (naming the tensor) on a missing `score.weight` or any missing, unexpected or wrongly
  shaped tensor, on num_labels != 1, and on a causal-LM folder (read those with `load`).
  """
  return _load(path, dtype, lazy, reward=True)


def _load(path: str, dtype: str | None, lazy: bool, reward: bool) -> tuple[ModelConfig, Any]:
  cfg_path = os.path.join(path, "config.json")
  if not os.path.exists(cfg_path):
    raise FileNotFoundError(f"{path}: no config.json")
  with open(cfg_path) as fh:
    d = json.load(fh)
  cfg = config_from_hf(d, dtype)
  archs = list(d.get("architectures") or [])
  is_seq_cls = any(str(a).endswith(_SEQ_CLS) for a in archs)
  if is_seq_cls and not reward:
    raise ValueError(f"{path}: config.json architectures {archs} is a sequence-classification (reward) "
                     "checkpoint; read it with hf.load_reward")
  if reward and archs and not is_seq_cls:
    raise ValueError(f"{path}: config.json architectures {archs} is not a *{_SEQ_CLS} checkpoint; read "
                     "it with hf.load (and add a fresh score head with reward.from_lm)")
  if reward and num_labels(d) != 1:
    raise ValueError(f"{path}: config.json has num_labels={num_labels(d)} (id2label {d.get('id2label')}); "
                     "only num_labels=1 (a scalar reward head, score.weight [1, hidden]) is supported")
  files = _open_checkpoint(path)
  mapping = tensor_mapping(cfg, reward)
  expected = {t.hf_name for t in mapping}

  missing = [t.hf_name for t in mapping if t.hf_name not in files]
  if missing:
    raise ValueError(f"{path}: {_names('missing', missing)}")
  extra = sorted(set(files) - expected)
  ignored = [n for n in extra if n.endswith(_IGNORED_SUFFIXES)]
  extra = [n for n in extra if n not in ignored]
  if cfg.tie_embeddings and "lm_head.weight" in extra:
    tied = files["lm_head.weight"].read("lm_head.weight")
    if not np.array_equal(tied, files["model.embed_tokens.weight"].read("model.embed_tokens.weight")):
      raise ValueError(f"{path}: tensor 'lm_head.weight' differs from 'model.embed_tokens.weight' but "
                       "config.json has tie_word_embeddings=true")
    extra.remove("lm_head.weight")
    ignored.append("lm_head.weight")
  if extra:
    raise ValueError(f"{path}: {_names('unexpected', extra)}")
  if ignored:
    logging.info("%s: ignored %d derived tensors: %s", path, len(ignored), ", ".join(ignored[:5]))
  for t in mapping:
    got = files[t.hf_name].shape(t.hf_name)
    if got != t.hf_shape:
      raise ValueError(f"{files[t.hf_name].path}: tensor {t.hf_name!r} has shape {got}, expected "
                       f"{t.hf_shape} from config.json")

  target = np.dtype(cfg.param_dtype)
  params: dict[str, Any] = {}
  for t in mapping:
    view = t.to_ours(files[t.hf_name].read(t.hf_name))  # a view of the mapped file: nothing read yet
    set_path(params, t.path, view if lazy else np.array(view, dtype=target, order="C", copy=True))
  return cfg, params


def _write_safetensors(
    path: str, tensors: list[tuple[str, tuple[int, ...], np.dtype, Callable[[], np.ndarray]]]) -> None:
  """Writes (name, shape, dtype, produce) tensors; each is produced and written in turn."""
  header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
  offset = 0
  for name, shape, dt, _ in tensors:
    nbytes = math.prod(shape) * dt.itemsize
    header[name] = {"dtype": _NP_TO_ST[dt], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
    offset += nbytes
  blob = json.dumps(header, separators=(",", ":")).encode()
  blob += b" " * (-len(blob) % 8)
  with open(path, "wb") as fh:
    fh.write(struct.pack("<Q", len(blob)))
    fh.write(blob)
    for name, shape, dt, produce in tensors:
      arr = np.ascontiguousarray(produce(), dtype=dt)
      if arr.shape != tuple(shape):
        raise ValueError(f"{path}: tensor {name!r} produced shape {arr.shape}, expected {shape}")
      fh.write(arr.reshape(-1).view(np.uint8).data)


def save(cfg: ModelConfig, params: Any, path: str) -> None:
  """Writes config.json and model.safetensors (each tensor in its param's dtype) to folder `path`.

  Raises (naming the param) when params do not match cfg: missing, unexpected or wrongly shaped.
  """
  _save(cfg, params, path, config_to_hf(cfg), reward=False)


def save_reward(cfg: ModelConfig, params: Any, path: str, *, pad_token_id: int) -> None:
  """Writes a reward model {"lm": ..., "score": [D, 1]} as a HF `<Family>ForSequenceClassification`
  folder (num_labels 1, no lm_head) that `AutoModelForSequenceClassification.from_pretrained` loads.

  pad_token_id: the tokenizer's pad id; transformers scores each row at its rightmost token that
    is not pad_token_id, so it must never occur as a real token.
  Raises (naming the param) when params do not match cfg: missing, unexpected or wrongly shaped.
  """
  if not 0 <= int(pad_token_id) < cfg.vocab_size:
    raise ValueError(f"pad_token_id={pad_token_id} is outside the vocabulary [0, {cfg.vocab_size})")
  _save(cfg, params, path, config_to_hf(cfg, reward=True, pad_token_id=pad_token_id), reward=True)


def _save(cfg: ModelConfig, params: Any, path: str, hf_config: dict[str, Any], reward: bool) -> None:
  params = transformer.to_layout(config_lib.replace(cfg, scan_layers=False), params)  # HF files: per layer
  cfg = config_lib.replace(cfg, scan_layers=False)
  mapping = tensor_mapping(cfg, reward)
  flat = {tuple(str(getattr(k, "key", k)) for k in kp): leaf
          for kp, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}
  paths = {t.path for t in mapping}
  missing = ["/".join(p) for p in sorted(paths - set(flat))]
  extra = ["/".join(p) for p in sorted(set(flat) - paths)]
  if missing:
    raise ValueError(f"params: {_names('missing', missing, 'param')}")
  if extra:
    raise ValueError(f"params: {_names('unexpected', extra, 'param')}")
  tensors = []
  for t in mapping:
    leaf = flat[t.path]
    if tuple(leaf.shape) != t.shape:
      raise ValueError(f"params: {'/'.join(t.path)} has shape {tuple(leaf.shape)}, expected {t.shape}")
    dt = np.dtype(leaf.dtype)
    if dt not in _NP_TO_ST:
      raise ValueError(f"params: {'/'.join(t.path)} has dtype {dt}, which safetensors cannot hold")
    tensors.append((t.hf_name, t.hf_shape, dt,
                    lambda leaf=leaf, t=t: t.to_hf(np.asarray(jax.device_get(leaf)))))
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, "config.json"), "w") as fh:
    json.dump(hf_config, fh, indent=2)
  _write_safetensors(os.path.join(path, "model.safetensors"), tensors)
