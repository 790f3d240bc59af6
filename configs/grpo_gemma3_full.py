"""GRPO of the Gemma 3 270M GRM at full size (warmup_gemma3_full -> rft_gemma3_full -> this), for
a GPU/TPU: 30 steps of 4 prompts x 8 rollouts with two updates each (mu = 2) on the paper-style
prompt. Not yet run on an accelerator (no figures).

Run:   python -m spct_jax.train --config=configs/grpo_gemma3_full.py --workdir=/mnt/runs/gemma3_full
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grpo  # noqa: E402
import warmup_gemma3  # noqa: E402


def get_config():
  c = grpo.get_config()
  c.upstream_config = "rft_gemma3_full.py"
  warmup_gemma3.apply_model(c, full=True)
  c.grpo.update(dict(max_new_tokens=160, mu=2))
  c.opt.lr = 5e-6
  c.cost = "a GPU/TPU (not yet measured)"
  return c
