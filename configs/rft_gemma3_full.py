"""RFT of the Gemma 3 270M GRM at full size (after configs/warmup_gemma3_full.py), for a GPU/TPU:
the embedded default's RFT budgets (320 items x 5 critiques, 60 steps) on the paper-style prompt.
Not yet run on an accelerator (no figures).

Run:   python -m spct_jax.train --config=configs/rft_gemma3_full.py --workdir=/mnt/runs/gemma3_full
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rft  # noqa: E402
import warmup_gemma3  # noqa: E402


def get_config():
  c = rft.get_config()
  c.upstream_config = "warmup_gemma3_full.py"
  warmup_gemma3.apply_model(c, full=True)
  c.rft.update(dict(max_new_tokens=160))
  c.train.batch_size = 32
  c.opt.lr = 1e-5
  c.cost = "a GPU/TPU (not yet measured)"
  return c
