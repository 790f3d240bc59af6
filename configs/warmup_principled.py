"""Warm-up in the principled world (data/principled.py): the items' purpose sentence decides which
of 3-4 contested criteria matters, and the teacher puts the decisive principle first only with
probability data.principle_skill (0.4), else its habitual favourite, so the warmed-up GRM critiques
well but often by the wrong principle (the imperfect starting judge RFT and GRPO should improve).
configs/warmup_principled_oracle.py is the same with the decisive principle always given.

Run:   python -m spct_jax.train --config=configs/warmup_principled.py --workdir=runs/default
Cost and result on the project's 2-core CPU: see the README's principled-world section.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warmup  # noqa: E402  (the shared defaults)


def apply_world(c, sampled_tokens: str = ""):
  """Gives another stage's config c this world's data knobs and critique lengths (and, when named,
  its own sampling budget field, e.g. "rft.max_new_tokens"); returns c."""
  w = get_config()
  for key in ("world", "principle_skill", "n_responses", "max_len"):
    c.data[key] = w.data[key]
  c.eval.n = w.eval.n
  c.eval.max_new_tokens = w.eval.max_new_tokens
  if sampled_tokens:
    section, field = sampled_tokens.split(".")
    c[section][field] = w.eval.max_new_tokens
  c.cost = "measured in the README's principled-world section"
  return c


def get_config():
  c = warmup.get_config()
  c.data.world = "principled"
  c.data.principle_skill = 0.4
  c.data.n_responses = (2, 3, 4)  # this world's items have a best response among 2-4
  c.data.max_len = 512            # its critiques name every contested criterion for every response
  c.init = "bundled:warmup"       # the classic world's warm-up: it reads tables, names and critiques
  c.data.n_train = 8192
  c.train.steps = 600
  c.train.eval_every = 0
  c.opt.lr = 1e-3
  c.opt.warmup_steps = 30
  c.eval.n = 256
  c.eval.max_new_tokens = 224     # the longest teacher critique is ~190 tokens
  c.cost = "measured in the README's principled-world section"
  return c
