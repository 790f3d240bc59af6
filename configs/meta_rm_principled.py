"""The meta RM in the principled world: configs/meta_rm.py on this world's items, rating samples
of the GRPO model of configs/grpo_principled.py in the same workdir. configs/eval_principled.py
trains it when it is missing.

Run:   python -m spct_jax.train --config=configs/meta_rm_principled.py --workdir=runs/default
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import meta_rm  # noqa: E402
import warmup_principled  # noqa: E402


def get_config():
  c = meta_rm.get_config()
  c.upstream_config = "grpo_principled.py"
  return warmup_principled.apply_world(c, "meta_rm.max_new_tokens")
