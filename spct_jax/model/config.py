"""ModelConfig: one frozen dataclass for the Llama family (Llama 2/3, Mistral, Qwen2), Gemma 2 and Gemma 3.

`model_type` names the architecture (and the Hugging Face `model_type` it maps to):
- "llama", "mistral", "qwen2": RMSNorm (x * w), SwiGLU MLP, RoPE, grouped-query attention.
  Qwen2 has biases on q/k/v (`qkv_bias=True`); Mistral may set `sliding_window` (every layer local).
- "gemma2": embeddings scaled by sqrt(d_model), RMSNorm (x * (1 + w)), norms before and after
  attention and MLP, GeGLU (tanh GELU), queries scaled by `query_pre_attn_scalar`**-0.5, attention
  and final logit soft-capping, local (sliding-window) and global layers alternating
  (`sliding_window_pattern` 2: layers 1, 3, 5, ... global).
- "gemma3" (HF `gemma3_text`): Gemma 2 without soft-capping, plus RMS-normalised queries and keys
  (per head, x * (1 + w) over head_dim, before RoPE), five local layers to one global
  (`sliding_window_pattern` 6: layers 5, 11, ... global), RoPE base `rope_local_theta` (10k) on
  local layers and `rope_theta` (1M) on global ones, with linear RoPE scaling on the global layers
  of the 4B/12B/27B models.

Presets (`PRESETS`, `get_config(name, **overrides)`):
- `tiny` (tests, ~336K params), `small` (the CPU default, ~1.5M), `medium` (~41M, benchmarks):
  Gemma-2-style architecture (the family of the paper's DeepSeek-GRM-27B), vocab 4096 (the
  bundled SentencePiece tokenizer);
- `gemma2_2b`, `gemma2_9b`, `gemma2_27b`, `gemma3_270m`, `gemma3_1b`, `gemma3_4b`, `gemma3_12b`,
  `gemma3_27b` (text decoders), `llama3_2_1b`, `llama3_1_8b`, `mistral_7b`: the published shapes
  (parameter counts are checked in tests/model/test_config.py).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax.numpy as jnp

MODEL_TYPES = ("gemma2", "gemma3", "llama", "mistral", "qwen2")
GEMMA = ("gemma2", "gemma3")
ROPE_SCALINGS = ("llama3", "linear")
DTYPES = ("float32", "bfloat16", "float16")
REMAT_POLICIES = ("nothing_saveable", "dots")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Shapes and numerics of a decoder-only transformer (hashable: usable as a jit static arg)."""
  model_type: str = "gemma2"            # one of MODEL_TYPES
  vocab_size: int = 4096                # V
  d_model: int = 64                     # D
  n_layers: int = 2                     # L
  n_heads: int = 4                      # N query heads
  n_kv_heads: int = 2                   # K key/value heads (N % K == 0)
  head_dim: int = 16                    # H
  mlp_dim: int = 128                    # F, hidden size of the gated MLP
  qkv_bias: bool = False                # biases on q/k/v projections (Qwen2)
  tie_embeddings: bool = True           # output projection = embedding matrix transposed
  norm_eps: float = 1e-6                # RMSNorm epsilon
  rope_theta: float = 10000.0           # RoPE base
  rope_local_theta: float | None = None  # RoPE base of local layers (Gemma 3); None = rope_theta
  rope_scaling_type: str = "llama3"     # "llama3" (frequency bands) or "linear" (positions / factor)
  rope_scaling_factor: float | None = None   # RoPE scaling of the layers on rope_theta; None = none
  rope_low_freq_factor: float = 1.0          # (Llama-3 scaling)
  rope_high_freq_factor: float = 4.0         # (Llama-3 scaling)
  rope_original_max_len: int = 8192          # (Llama-3 scaling) pre-training context length
  sliding_window: int | None = None     # local layers attend to keys with q_pos - k_pos < window
  sliding_window_pattern: int = 2       # Gemma: layer i is global when (i + 1) % pattern == 0
  query_pre_attn_scalar: float | None = None  # queries scaled by this**-0.5 (None: head_dim)
  attn_softcap: float | None = None     # attention logits -> cap * tanh(logits / cap)
  final_softcap: float | None = None    # output logits -> cap * tanh(logits / cap)
  max_len: int = 8192                   # max_position_embeddings written to a HF config
  param_dtype: str = "float32"          # dtype of the parameters created by init
  dtype: str = "float32"                # compute dtype (bf16 on TPU/GPU); logits are float32
  remat: bool = False                   # rematerialise each layer in the backward pass
  remat_policy: str = "nothing_saveable"  # what a remat layer keeps: nothing_saveable | dots (matmul outputs)
  lora_rank: int = 0                    # > 0: LoRA adapters of this rank on the projections (model/lora.py)
  lora_alpha: float = 16.0              # adapter scale alpha / rank
  lora_targets: str = ".*(attn|mlp).*"  # regex over module paths (layers_3/attn, layers/mlp, ...)
  scan_layers: bool = False             # the layers as one nn.scan over params stacked on a leading
                                        # 'layers' axis (compile time flat in depth); on disk the
                                        # layout is always per layer (transformer.to_layout)

  def __post_init__(self):
    if self.model_type not in MODEL_TYPES:
      raise ValueError(f"ModelConfig.model_type={self.model_type!r}; supported: {', '.join(MODEL_TYPES)}")
    for name in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "mlp_dim"):
      if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
        raise ValueError(f"ModelConfig.{name}={getattr(self, name)!r}: must be a positive int")
    if self.n_heads % self.n_kv_heads:
      raise ValueError(f"ModelConfig.n_heads={self.n_heads} is not a multiple of "
                       f"n_kv_heads={self.n_kv_heads}")
    if self.head_dim % 2:
      raise ValueError(f"ModelConfig.head_dim={self.head_dim}: RoPE needs an even head_dim")
    for name in ("param_dtype", "dtype"):
      if getattr(self, name) not in DTYPES:
        raise ValueError(f"ModelConfig.{name}={getattr(self, name)!r}; supported: {', '.join(DTYPES)}")
    if self.sliding_window is not None and self.sliding_window < 1:
      raise ValueError(f"ModelConfig.sliding_window={self.sliding_window}: must be >= 1 or None")
    if self.qkv_bias != (self.model_type == "qwen2"):
      raise ValueError(f"ModelConfig.qkv_bias={self.qkv_bias} with model_type={self.model_type!r}: "
                       "q/k/v biases exist exactly for qwen2")
    if self.model_type not in GEMMA:
      for name in ("query_pre_attn_scalar", "attn_softcap", "final_softcap", "rope_local_theta"):
        if getattr(self, name) is not None:
          raise ValueError(f"ModelConfig.{name} is a Gemma feature; model_type={self.model_type!r}")
    if self.rope_scaling_type not in ROPE_SCALINGS:
      raise ValueError(f"ModelConfig.rope_scaling_type={self.rope_scaling_type!r}; "
                       f"supported: {', '.join(ROPE_SCALINGS)}")
    if not isinstance(self.sliding_window_pattern, int) or self.sliding_window_pattern < 1:
      raise ValueError(f"ModelConfig.sliding_window_pattern={self.sliding_window_pattern!r}: "
                       "must be a positive int")
    if not isinstance(self.lora_rank, int) or self.lora_rank < 0:
      raise ValueError(f"ModelConfig.lora_rank={self.lora_rank!r}: must be an int >= 0 (0: no LoRA)")
    if self.remat_policy not in REMAT_POLICIES:
      raise ValueError(f"ModelConfig.remat_policy={self.remat_policy!r}; supported: {', '.join(REMAT_POLICIES)}")
    if self.model_type in ("llama", "qwen2") and self.sliding_window is not None:
      raise ValueError(f"ModelConfig.sliding_window is not supported for model_type={self.model_type!r} "
                       "(use mistral or gemma2)")

  @property
  def is_gemma(self) -> bool:
    return self.model_type in GEMMA

  @property
  def qk_norm(self) -> bool:
    """Queries and keys RMS-normalised per head before RoPE (Gemma 3)."""
    return self.model_type == "gemma3"

  @property
  def local_layers(self) -> tuple[bool, ...]:
    """Per layer: True where it attends within `sliding_window` (Gemma: all but every
    `sliding_window_pattern`-th layer; Mistral: every layer)."""
    if self.sliding_window is None:
      return (False,) * self.n_layers
    if self.is_gemma:
      return tuple((i + 1) % self.sliding_window_pattern != 0 for i in range(self.n_layers))
    return (True,) * self.n_layers

  @property
  def query_scale(self) -> float:
    return float(self.query_pre_attn_scalar or self.head_dim) ** -0.5

  @property
  def jnp_dtype(self) -> jnp.dtype:
    return jnp.dtype(self.dtype)

  @property
  def jnp_param_dtype(self) -> jnp.dtype:
    return jnp.dtype(self.param_dtype)


def _gemma2(**kw) -> ModelConfig:
  base = dict(model_type="gemma2", tie_embeddings=True, norm_eps=1e-6, rope_theta=10000.0,
              attn_softcap=50.0, final_softcap=30.0)
  return ModelConfig(**{**base, **kw})


def _gemma3(**kw) -> ModelConfig:
  base = dict(model_type="gemma3", tie_embeddings=True, norm_eps=1e-6, rope_theta=1_000_000.0,
              rope_local_theta=10_000.0, sliding_window_pattern=6, query_pre_attn_scalar=256.0,
              head_dim=256, max_len=32768)
  return ModelConfig(**{**base, **kw})


# Gemma 3 4B, 12B and 27B: vocabulary with the image tokens, 128k context by linear RoPE scaling
# (factor 8) on the global layers.
_GEMMA3_LARGE = dict(vocab_size=262208, sliding_window=1024, max_len=131072,
                     rope_scaling_type="linear", rope_scaling_factor=8.0)


def _llama(**kw) -> ModelConfig:
  base = dict(model_type="llama", norm_eps=1e-5)
  return ModelConfig(**{**base, **kw})


PRESETS: Mapping[str, ModelConfig] = {
    # tests: 2 layers (one local, one global), window 16 so short test sequences cross it.
    "tiny": _gemma2(vocab_size=4096, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16,
                    mlp_dim=128, sliding_window=16, query_pre_attn_scalar=16.0, max_len=2048),
    # the CPU default, ~1.5M params (a third of them the embedding): a 4-layer Gemma-2 with GQA,
    # sized so that the whole chain trains on a 2-core CPU (README.md, configs/warmup.py).
    "small": _gemma2(vocab_size=4096, d_model=128, n_layers=4, n_heads=4, n_kv_heads=2, head_dim=32,
                     mlp_dim=512, sliding_window=256, query_pre_attn_scalar=32.0, max_len=4096),
    # benchmarks, ~41M params.
    "medium": _gemma2(vocab_size=4096, d_model=512, n_layers=10, n_heads=8, n_kv_heads=4, head_dim=64,
                      mlp_dim=2048, sliding_window=512, query_pre_attn_scalar=64.0, max_len=4096),
    "gemma2_2b": _gemma2(vocab_size=256000, d_model=2304, n_layers=26, n_heads=8, n_kv_heads=4,
                         head_dim=256, mlp_dim=9216, sliding_window=4096, query_pre_attn_scalar=256.0),
    "gemma2_9b": _gemma2(vocab_size=256000, d_model=3584, n_layers=42, n_heads=16, n_kv_heads=8,
                         head_dim=256, mlp_dim=14336, sliding_window=4096, query_pre_attn_scalar=256.0),
    "gemma2_27b": _gemma2(vocab_size=256000, d_model=4608, n_layers=46, n_heads=32, n_kv_heads=16,
                          head_dim=128, mlp_dim=36864, sliding_window=4096, query_pre_attn_scalar=144.0),
    "gemma3_270m": _gemma3(vocab_size=262144, d_model=640, n_layers=18, n_heads=4, n_kv_heads=1,
                           mlp_dim=2048, sliding_window=512),
    "gemma3_1b": _gemma3(vocab_size=262144, d_model=1152, n_layers=26, n_heads=4, n_kv_heads=1,
                         mlp_dim=6912, sliding_window=512),
    "gemma3_4b": _gemma3(d_model=2560, n_layers=34, n_heads=8, n_kv_heads=4, mlp_dim=10240, **_GEMMA3_LARGE),
    "gemma3_12b": _gemma3(d_model=3840, n_layers=48, n_heads=16, n_kv_heads=8, mlp_dim=15360,
                          **_GEMMA3_LARGE),
    "gemma3_27b": _gemma3(d_model=5376, n_layers=62, n_heads=32, n_kv_heads=16, head_dim=128,
                          mlp_dim=21504, query_pre_attn_scalar=168.0, **_GEMMA3_LARGE),
    "llama3_2_1b": _llama(vocab_size=128256, d_model=2048, n_layers=16, n_heads=32, n_kv_heads=8,
                          head_dim=64, mlp_dim=8192, tie_embeddings=True, rope_theta=500000.0,
                          rope_scaling_factor=32.0, rope_low_freq_factor=1.0, rope_high_freq_factor=4.0,
                          rope_original_max_len=8192, max_len=131072),
    "llama3_1_8b": _llama(vocab_size=128256, d_model=4096, n_layers=32, n_heads=32, n_kv_heads=8,
                          head_dim=128, mlp_dim=14336, tie_embeddings=False, rope_theta=500000.0,
                          rope_scaling_factor=8.0, rope_low_freq_factor=1.0, rope_high_freq_factor=4.0,
                          rope_original_max_len=8192, max_len=131072),
    # Mistral-7B v0.1: sliding window 4096 on every layer.
    "mistral_7b": ModelConfig(model_type="mistral", vocab_size=32000, d_model=4096, n_layers=32,
                              n_heads=32, n_kv_heads=8, head_dim=128, mlp_dim=14336,
                              tie_embeddings=False, norm_eps=1e-5, rope_theta=10000.0,
                              sliding_window=4096, max_len=32768),
}


def get_config(name: str, **overrides: Any) -> ModelConfig:
  """The preset `name` with fields replaced by `overrides` (e.g. dtype="bfloat16")."""
  if name not in PRESETS:
    raise KeyError(f"unknown model preset {name!r}; presets: {', '.join(PRESETS)}")
  return replace(PRESETS[name], **overrides)


def replace(cfg: ModelConfig, **overrides: Any) -> ModelConfig:
  """dataclasses.replace with an error that names unknown fields."""
  fields = [f.name for f in dataclasses.fields(ModelConfig)]
  unknown = sorted(set(overrides) - set(fields))
  if unknown:
    raise KeyError(f"unknown ModelConfig fields {unknown}; known: {fields}")
  return dataclasses.replace(cfg, **overrides)


def to_dict(cfg: ModelConfig) -> dict[str, Any]:
  """JSON-ready dict of every field."""
  return dataclasses.asdict(cfg)


def from_dict(d: Mapping[str, Any]) -> ModelConfig:
  """Inverse of `to_dict`; unknown keys are an error naming them."""
  return replace(ModelConfig(), **dict(d))
