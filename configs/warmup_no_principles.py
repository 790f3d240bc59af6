"""Warm-up of the "GRM without principles" baseline (METHOD.md section 6, the seed's table).

The baseline is the same GRM pipeline with the prompt variant that asks for an analysis and the
scores only. Its warm-up starts from the embedded default's bundled warm-up model (the same
backbone the SPCT GRM starts from: `init="bundled:warmup"`) and fine-tunes it on the teacher's
critiques with the principles line removed, so that the baseline writes the no-principles
format; RFT and GRPO then follow as for SPCT (configs/grpo_no_principles.py runs the chain).

Run:   python -m spct_jax.train --config=configs/grpo_no_principles.py --workdir=runs/no_principles
Cost and result on a 2-core CPU: see README.md (measured with this exact config).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warmup  # noqa: E402  (the shared defaults)


def get_config():
  c = warmup.get_config()
  c.init = "bundled:warmup"   # the SPCT GRM's own starting point
  c.data.variant = "no_principles"
  c.data.n_train = 4096
  c.train.steps = 200
  c.train.eval_every = 0
  c.opt.lr = 1e-3
  c.opt.warmup_steps = 20
  c.cost = "7 min on 2 CPU cores (measured)"
  return c
