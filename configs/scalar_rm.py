"""Scalar reward model (Bradley-Terry head), the baseline of the seed's table (METHOD.md section 6).

Starts from the warm-up model in the same workdir (the GRM's own starting point; the chain's
warm-up runs first when it is missing) and trains a scalar head with the Bradley-Terry loss on
(best, other) response pairs of the training items. Its held-out accuracy is the "scalar RM" line
of `python -m spct_jax.evaluate`.

Run:   python -m spct_jax.train --config=configs/scalar_rm.py --workdir=runs/classic
Smoke: python -m spct_jax.train --config=configs/scalar_rm.py --config.smoke=True --workdir=/tmp/smoke
Cost and result on a 2-core CPU: see README.md (measured with this exact config).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warmup  # noqa: E402  (the shared defaults)


def get_config():
  c = warmup.get_config()
  c.stage = "scalar_rm"
  c.cost = "1.5 min on 2 CPU cores (measured)"
  c.upstream_config = ""    # config file of the init stage ("" = <stage>.py beside this file)
  c.init = "stage:warmup"   # the backbone: stage:<name> | export:<dir> | hf:<dir>
  c.data.n_responses = (2, 3, 4)
  c.scalar_rm = dict(
      n_items=1024,           # training items (own seed); n - 1 pairs each
  )
  c.smoke_sizes.scalar_rm = dict(n_items=8)
  c.train.batch_size = 32
  c.train.steps = 150
  c.train.ckpt_every = 50
  c.train.eval_every = 0
  c.opt.lr = 3e-4
  c.opt.warmup_steps = 10
  c.opt.weight_decay = 0.0
  return c
