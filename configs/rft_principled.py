"""RFT in the principled world, after configs/warmup_principled.py (run by
configs/grpo_principled.py): configs/rft.py with the world's knobs."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rft  # noqa: E402
import warmup_principled  # noqa: E402


def get_config():
  c = rft.get_config()
  c.upstream_config = "warmup_principled.py"
  warmup_principled.apply_world(c, "rft.max_new_tokens")
  c.eval.k = 0   # held-out validation greedy only: voting@8 on it cost ~2 min a stage; the
                 # evaluation (configs/eval_principled.py) votes on 1,024 test items
  return c
