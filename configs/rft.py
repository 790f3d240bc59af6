"""Rejective fine-tuning (SPCT stage 1, the cold start), after warm-up.

For each training item the warmed-up GRM samples N_RFT critiques (seed: 5; the paper's 3 is
`--config.rft.n_samples=3`); correct ones are kept, items where all are correct are dropped as
too easy, and items with none correct get one hinted sample ("The best response is: Response j")
that is kept if correct. Then SFT on the kept trajectories (optionally mixed with warm-up data).

Run:   python -m spct_jax.train --config=configs/rft.py --workdir=runs/classic
Cost and result on a 2-core CPU: see README.md (measured with this exact config).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warmup  # noqa: E402  (the shared defaults)


def get_config():
  c = warmup.get_config()
  c.stage = "rft"
  c.cost = "4-5 min on 2 CPU cores (measured)"
  c.init = "stage:warmup"
  c.data.n_responses = (2, 3, 4)
  c.rft = dict(
      n_items=320,           # training items sampled (own seed)
      n_samples=5,           # N_RFT critiques per item (seed 5; paper 3)
      temperature=1.0,
      max_new_tokens=160,
      hinted=True,           # hinted sampling for items with no correct critique
      max_hinted_share=0.2,  # at most this share of the kept trajectories may be hinted
      warmup_rows_per_item=0.25,  # teacher rows mixed in (those the reward rule accepts): this many per sampled item
      sampler_batch=32,
  )
  c.smoke_sizes.rft = dict(n_items=8, n_samples=2, max_new_tokens=16, sampler_batch=2)
  c.train.steps = 60
  c.train.ckpt_every = 20
  c.train.eval_every = 0
  c.opt.lr = 5e-4
  c.opt.warmup_steps = 10
  return c
