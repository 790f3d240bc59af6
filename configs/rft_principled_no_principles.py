"""RFT of the "GRM without principles" baseline in the principled world: configs/rft_principled.py
with the no_principles prompt variant, after configs/warmup_principled_no_principles.py (run by
configs/grpo_principled_no_principles.py)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rft_principled  # noqa: E402


def get_config():
  c = rft_principled.get_config()
  c.upstream_config = "warmup_principled_no_principles.py"
  c.data.variant = "no_principles"
  c.rft.hinted = False  # the hinted prompt is a principles-variant prompt
  return c
