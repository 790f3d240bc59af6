"""GRPO in the principled world: warm-up (configs/warmup_principled.py) -> RFT
(configs/rft_principled.py) -> GRPO, configs/grpo.py with the world's knobs and two updates per
rollout batch (mu = 2), so that the clipped ratio and the sampler's log-probs take part.

Run:   python -m spct_jax.train --config=configs/grpo_principled.py --workdir=runs/principled
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grpo  # noqa: E402
import warmup_principled  # noqa: E402


def get_config():
  c = grpo.get_config()
  c.upstream_config = "rft_principled.py"
  warmup_principled.apply_world(c, "grpo.max_new_tokens")
  c.grpo.mu = 2
  return c
