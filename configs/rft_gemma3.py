"""RFT of the Gemma 3 270M GRM (after configs/warmup_gemma3.py): the embedded default's RFT with
CPU-sized budgets (each 270M step and sample costs about 100x the 1.5M default's here).

Run:   python -m spct_jax.train --config=configs/rft_gemma3.py --workdir=runs/gemma3
Cost and result on the project's 2-core CPU: see docs/results.md, "Pretrained Gemma 3 270M".
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rft  # noqa: E402
import warmup_gemma3  # noqa: E402


def get_config():
  c = rft.get_config()
  c.upstream_config = "warmup_gemma3.py"
  warmup_gemma3.apply_model(c)
  c.rft.update(dict(n_items=24, n_samples=4, max_new_tokens=160, sampler_batch=32))
  c.train.batch_size = 8
  c.train.steps = 6
  c.train.ckpt_every = 3
  c.opt.lr = 5e-5
  c.opt.warmup_steps = 2
  return c
