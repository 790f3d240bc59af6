"""The "GRM without principles" baseline of the principled world, trained like SPCT on the same
budget: warm-up (configs/warmup_principled_no_principles.py) -> RFT -> GRPO with the no_principles
prompt variant and otherwise the settings of configs/grpo_principled.py. Train it in a workdir of
its own and give it to the evaluation as the baseline:

Run:   python -m spct_jax.train --config=configs/grpo_principled_no_principles.py --workdir=runs/principled_np
Eval:  python -m spct_jax.evaluate --config=configs/eval_principled.py --workdir=runs/default \\
           --config.no_principles=export:runs/principled_np/grpo/final
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grpo_principled  # noqa: E402


def get_config():
  c = grpo_principled.get_config()
  c.upstream_config = "rft_principled_no_principles.py"
  c.data.variant = "no_principles"
  return c
