"""Evaluation of the Gemma 3 270M chain (configs/grpo_gemma3.py) on 512 synthetic test items:
greedy accuracy of every stage (warm-up, RFT, GRPO) and of the embedded default's 1.5M warm-up
(`bundled:warmup`, trained from scratch) on the same items, with paired bootstrap intervals of the
differences (eval.pool = 0: greedy only; sampling a pool of critiques for 512 items with a 270M
model does not fit an hour on 2 CPU cores; give --config.eval.pool=8 on a GPU/TPU).

Run:   python -m spct_jax.evaluate --config=configs/eval_gemma3.py --workdir=runs/gemma3
Cost and result on the project's 2-core CPU: see docs/results.md, "Pretrained Gemma 3 270M".
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eval as eval_config  # noqa: E402
import warmup_gemma3  # noqa: E402


def get_config():
  c = eval_config.get_config()
  warmup_gemma3.apply_model(c)
  c.init = "stage:grpo"
  c.compare = ("bundled:warmup", "stage:warmup", "stage:rft")
  c.stage_configs = {"warmup": "warmup_gemma3.py", "rft": "rft_gemma3.py", "grpo": "grpo_gemma3.py"}
  c.meta_rm = ""
  c.scalar_rm = ""
  c.eval.n = 512
  c.eval.pool = 0
  c.eval.ks = (1,)
  c.eval.sampler_batch = 32
  return c
