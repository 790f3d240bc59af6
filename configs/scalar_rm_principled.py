"""The scalar-RM baseline in the principled world: configs/scalar_rm.py on this world's items,
from its warm-up model (configs/warmup_principled.py) in the same workdir, so that it shares the
GRM's backbone, data and start. configs/eval_principled.py trains it when it is missing.

Run:   python -m spct_jax.train --config=configs/scalar_rm_principled.py --workdir=runs/default
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scalar_rm  # noqa: E402
import warmup_principled  # noqa: E402


def get_config():
  c = scalar_rm.get_config()
  c.upstream_config = "warmup_principled.py"
  return warmup_principled.apply_world(c)
