"""The Gemma 3 270M warm-up at full size, for a GPU/TPU: the paper-style prompt (appendix G
structure, ~640 Gemma tokens for the synthetic items), bfloat16 compute with rematerialised layers,
budgets like the embedded default's. The chain: warmup_gemma3_full -> rft_gemma3_full ->
grpo_gemma3_full; then configs/eval_gemma3.py with --config.data.style=paper --config.eval.pool=8
--config.eval.ks="(1,2,4,8)" on the same workdir. Not yet run on an accelerator (no figures).

Run:   python -m spct_jax.train --config=configs/grpo_gemma3_full.py --workdir=/mnt/runs/gemma3_full
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warmup_gemma3  # noqa: E402


def get_config():
  c = warmup_gemma3.get_config()
  warmup_gemma3.apply_model(c, full=True)
  c.data.n_train = 16384
  c.train.batch_size = 32
  c.train.steps = 500
  c.train.ckpt_every = 100
  c.opt.lr = 5e-5
  c.opt.warmup_steps = 25
  c.cost = "a GPU/TPU (not yet measured)"
  return c
