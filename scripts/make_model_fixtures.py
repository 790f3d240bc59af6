"""Writes the HF parity fixtures of tests/model/fixtures/ (needs torch and transformers).

    python scripts/make_model_fixtures.py [--out tests/model/fixtures] [--only gemma3 ...]

For each random tiny config (Llama with GQA and Llama-3 RoPE scaling, Qwen2 with q/k/v biases,
Gemma-2 with soft-capping and a sliding window shorter than the sequence, Gemma 3 with q/k norms,
separate local/global RoPE bases, linear RoPE scaling on the global layer and a 2:1 local:global
pattern, Mistral with a window on every layer) it builds a Hugging Face model with seeded random weights (large enough that every
feature moves the logits), saves it with `save_pretrained` (config.json + model.safetensors), and
writes io.npz: tokens [2, 12] int32, mask [2, 12] bool (row 1 left-padded by 3), and the HF
logits [2, 12, 97] float32 computed in fp32 with eager attention, attention_mask = mask and
position_ids = clip(cumsum(mask) - 1, 0). Each folder is about 100-200 KB.

tests/model/test_hf.py imports this file to rerun the comparison live.
"""
from __future__ import annotations

import argparse
import os

import numpy as np

VOCAB, SEQ, BATCH, LEFT_PAD = 97, 12, 2, 3
COMMON = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
              num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=64)
HF_CONFIGS = {
    # GQA, untied, Llama-3 RoPE scaling with a short original context so all three bands occur.
    "llama": dict(model_type="llama", **COMMON, rms_norm_eps=1e-5, tie_word_embeddings=False,
                  rope_theta=10000.0,
                  rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                    high_freq_factor=4.0, original_max_position_embeddings=16)),
    # q/k/v biases, tied.
    "qwen2": dict(model_type="qwen2", **COMMON, rms_norm_eps=1e-6, tie_word_embeddings=True,
                  rope_theta=10000.0, use_sliding_window=False),
    # soft-capping, query_pre_attn_scalar != head_dim, window 4 < 12, layers local/global/local.
    "gemma2": dict(model_type="gemma2", **COMMON, rms_norm_eps=1e-6, tie_word_embeddings=True,
                   rope_theta=10000.0, query_pre_attn_scalar=6, sliding_window=4,
                   attn_logit_softcapping=2.0, final_logit_softcapping=5.0,
                   hidden_activation="gelu_pytorch_tanh"),
    # q/k norms, local RoPE base 100 vs global 10k with linear scaling 4, layers local/local/global/local
    # (every third global), window 4 < 12, no soft-capping.
    "gemma3": dict(model_type="gemma3_text", **{**COMMON, "num_hidden_layers": 4}, rms_norm_eps=1e-6,
                   tie_word_embeddings=True, query_pre_attn_scalar=6, sliding_window=4,
                   layer_types=["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
                   rope_parameters={"full_attention": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0},
                                    "sliding_attention": {"rope_type": "default", "rope_theta": 100.0}},
                   hidden_activation="gelu_pytorch_tanh"),
    # a sliding window on every layer, one kv head.
    "mistral": dict(model_type="mistral", **{**COMMON, "num_key_value_heads": 1, "num_hidden_layers": 2},
                    rms_norm_eps=1e-5, tie_word_embeddings=False, rope_theta=10000.0, sliding_window=5),
}


# embedding std: tied output layers get smaller embeddings so the logits stay O(1-10)
EMBED_STD = {"gemma2": 0.5, "gemma3": 0.5, "qwen2": 0.3}


def build_hf_model(name: str, seed: int = 0):
  """A transformers causal LM for HF_CONFIGS[name] with seeded random weights (fp32, eager)."""
  import torch
  import transformers

  torch.manual_seed(seed)
  kw = dict(HF_CONFIGS[name])
  cfg = transformers.AutoConfig.for_model(kw.pop("model_type"), **kw)
  cfg._attn_implementation = "eager"
  model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager",
                                                        dtype=torch.float32)
  gen = torch.Generator().manual_seed(seed + 1)
  with torch.no_grad():
    for pname, p in model.named_parameters():
      if pname.endswith("norm.weight"):
        base = 0.0 if name.startswith("gemma") else 1.0
        p.copy_(base + 0.2 * torch.randn(p.shape, generator=gen))
      elif pname.endswith(".bias"):
        p.copy_(0.3 * torch.randn(p.shape, generator=gen))
      elif "embed_tokens" in pname:
        p.copy_(torch.randn(p.shape, generator=gen) * EMBED_STD.get(name, 1.0))
      else:  # [out, in] linear weights
        p.copy_(torch.randn(p.shape, generator=gen) * p.shape[1] ** -0.5)
  return model.eval()


def make_inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """tokens [2, 12] int32 (pads are 0), mask [2, 12] bool with row 1 left-padded by 3."""
  rng = np.random.default_rng(seed)
  tokens = rng.integers(1, VOCAB, size=(BATCH, SEQ)).astype(np.int32)
  mask = np.ones((BATCH, SEQ), bool)
  mask[1, :LEFT_PAD] = False
  tokens[~mask] = 0
  return tokens, mask


def hf_logits(model, tokens: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """HF logits [B, T, V] float32 with attention_mask = mask, position_ids = clip(cumsum - 1, 0)."""
  import torch

  position_ids = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
  with torch.no_grad():
    out = model(input_ids=torch.from_numpy(tokens.astype(np.int64)),
                attention_mask=torch.from_numpy(mask.astype(np.int64)),
                position_ids=torch.from_numpy(position_ids.astype(np.int64)))
  return out.logits.float().numpy()


def write_fixture(name: str, out_dir: str) -> str:
  folder = os.path.join(out_dir, name)
  model = build_hf_model(name)
  model.save_pretrained(folder, safe_serialization=True)
  extra = os.path.join(folder, "generation_config.json")
  if os.path.exists(extra):
    os.remove(extra)
  tokens, mask = make_inputs()
  np.savez_compressed(os.path.join(folder, "io.npz"), tokens=tokens, mask=mask,
                      logits=hf_logits(model, tokens, mask))
  return folder


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  default = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "model", "fixtures")
  parser.add_argument("--out", default=os.path.normpath(default))
  parser.add_argument("--only", nargs="*", choices=sorted(HF_CONFIGS), default=sorted(HF_CONFIGS))
  args = parser.parse_args()
  for name in args.only:
    folder = write_fixture(name, args.out)
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    print(f"{folder}: {size / 1024:.0f} KB")


if __name__ == "__main__":
  main()
