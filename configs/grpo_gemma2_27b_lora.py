"""GRPO of Gemma-2-27B as a GRM with LoRA (through qwix): configs/grpo_gemma2_27b.py with the base
frozen in bf16 and rank-16 adapters on every attention and MLP projection trained, for small pods
(a v5e-256 slice: 16 GiB chips). The seed's GRPO settings are unchanged; the stage writes the
adapters (adapters/) and the model with them folded in (final/).

Plan: python -m spct_jax.plan --config=configs/grpo_gemma2_27b_lora.py --topology=v5e:16x16
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grpo_gemma2_27b  # noqa: E402


def get_config():
  c = grpo_gemma2_27b.get_config()
  c.model.lora_rank = 16
  c.model.lora_alpha = 32.0
  c.opt.lr = 1e-4                        # adapters take a larger step than full fine-tuning
  return c
