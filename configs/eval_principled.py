"""Evaluation in the principled world: configs/eval.py on that world's test items, the GRPO model
of configs/grpo_principled.py beside its warm-up and RFT models (no meta RM or scalar RM for this
world yet: pass --config.meta_rm=stage:<name> / --config.scalar_rm=stage:<name> once trained).

Run:   python -m spct_jax.evaluate --config=configs/eval_principled.py --workdir=runs/principled
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eval as eval_config  # noqa: E402
import warmup_principled  # noqa: E402


def get_config():
  c = eval_config.get_config()
  n = c.eval.n
  warmup_principled.apply_world(c)
  c.eval.n = n  # the evaluation's own 1,024 test items
  c.meta_rm = ""
  c.stage_configs = {"warmup": "warmup_principled.py", "rft": "rft_principled.py", "grpo": "grpo_principled.py"}
  c.scalar_rm = ""
  return c
