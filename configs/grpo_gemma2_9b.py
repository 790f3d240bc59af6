"""GRPO of Gemma-2-9B as a GRM: configs/grpo_gemma2_2b.py with the 9B shapes.

Run:   python -m spct_jax.train --config=configs/grpo_gemma2_9b.py --config.data.source=/data/prefs.jsonl \
           --workdir=/mnt/shared/run   (the RFT stage, configs/rft_gemma2.py, takes the HF folder)
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grpo_gemma2_2b  # noqa: E402


def get_config():
  c = grpo_gemma2_2b.get_config()
  c.model.preset = "gemma2_9b"

  return c
