"""GRPO of Gemma-2-27B as a GRM: configs/grpo_gemma2_2b.py with the 27B shapes.

Run:   python -m spct_jax.train --config=configs/grpo_gemma2_27b.py --config.data.source=/data/prefs.jsonl \
           --workdir=/mnt/shared/run   (the RFT stage, configs/rft_gemma2.py, takes the HF folder)
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grpo_gemma2_2b  # noqa: E402


def get_config():
  c = grpo_gemma2_2b.get_config()
  c.model.preset = "gemma2_27b"
  c.mesh.shape = (1, -1, 4)              # fsdp x tensor 4 for the 27B
  c.train.micro_batches = 8              # 512 rollouts x 4096 tokens: 8 exact accumulation steps
  return c
