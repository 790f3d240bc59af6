"""Evaluation in the principled world: configs/eval.py on that world's test items, the GRPO model
of configs/grpo_principled.py beside its warm-up and RFT models, with this world's meta RM and
scalar-RM baseline (configs/meta_rm_principled.py, configs/scalar_rm_principled.py; each trained
in the workdir when missing). The results add, per GRM, how often its main principle is the
item's decisive one (greedy and over the pool).

Run:   python -m spct_jax.evaluate --config=configs/eval_principled.py --workdir=runs/default
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
  c.stage_configs = {"warmup": "warmup_principled.py", "rft": "rft_principled.py", "grpo": "grpo_principled.py",
                     "meta_rm": "meta_rm_principled.py", "scalar_rm": "scalar_rm_principled.py"}
  return c
