"""Meta RM: a scalar head on the GRM's backbone that rates sampled critiques (METHOD.md section 5).

Starts from the GRPO model in the same workdir (running the chain first when it is missing),
samples `meta_rm.samples_per_item` critiques of each training item at the voting temperature,
labels each by the rule (correct or not) and fine-tunes backbone + head with binary
cross-entropy. `python -m spct_jax.evaluate` then lets only the top k/2 samples by meta score vote.

Run:   python -m spct_jax.train --config=configs/meta_rm.py --workdir=runs/classic
Smoke: python -m spct_jax.train --config=configs/meta_rm.py --config.smoke=True --workdir=/tmp/smoke
Cost and result on a 2-core CPU: see README.md (measured with this exact config).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warmup  # noqa: E402  (the shared defaults)


def get_config():
  c = warmup.get_config()
  c.stage = "meta_rm"
  c.cost = "6 min on 2 CPU cores (measured)"
  c.upstream_config = ""    # config file of the init stage ("" = <stage>.py beside this file)
  c.init = "stage:grpo"     # the GRM whose samples it rates: stage:<name> | export:<dir> | hf:<dir>
  c.data.n_responses = (2, 3, 4)
  c.meta_rm = dict(
      n_items=256,            # training items (own seed)
      samples_per_item=8,     # critiques sampled per item
      temperature=0.5,        # the voting temperature (the samples it will rate)
      max_new_tokens=160,
      sampler_batch=32,
  )
  c.smoke_sizes.meta_rm = dict(n_items=8, samples_per_item=2, max_new_tokens=16, sampler_batch=2)
  c.train.batch_size = 32
  c.train.steps = 100
  c.train.ckpt_every = 50
  c.train.eval_every = 0
  c.opt.lr = 2e-4
  c.opt.warmup_steps = 10
  c.opt.weight_decay = 0.0
  return c
