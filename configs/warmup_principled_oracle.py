"""The oracle warm-up of the principled world: configs/warmup_principled.py with a teacher that
always puts the decisive principle first (data.principle_skill = 1). Its held-out accuracy is the
ceiling of what the model can execute once the principle is right; the gap to the skill-0.4
warm-up is what choosing principles costs.

Run:   python -m spct_jax.train --config=configs/warmup_principled_oracle.py --workdir=runs/principled_oracle
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warmup_principled  # noqa: E402


def get_config():
  c = warmup_principled.get_config()
  c.data.principle_skill = 1.0
  return c
