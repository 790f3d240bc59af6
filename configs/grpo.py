"""GRPO: rule-based online RL of the GRM (SPCT stage 2), after warm-up and RFT.

On a fresh machine this runs the whole chain on the embedded default (`small` preset, bundled
tokenizer) in the classic synthetic world (configs/grpo_principled.py, the README's main command,
runs it in the principled world): warm-up -> RFT -> GRPO, each checkpointed in the workdir, and ends
with a table of held-out accuracy per stage (greedy and voting@8).

Run:   python -m spct_jax.train --config=configs/grpo.py --workdir=runs/classic
Smoke: python -m spct_jax.train --config=configs/grpo.py --config.smoke=True --workdir=/tmp/smoke
Cost and result on a 2-core CPU: see README.md (measured with this exact config).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warmup  # noqa: E402  (the shared defaults)


def get_config():
  c = warmup.get_config()
  c.stage = "grpo"
  c.cost = "4-5 min on 2 CPU cores (measured)"
  c.upstream_config = ""   # config file of the init stage ("" = <stage>.py beside this file)
  c.init = "stage:rft"
  c.data.n_responses = (2, 3, 4)   # GRPO items: pairwise and multi-response
  c.grpo = dict(
      n_items=2048,          # pool of training items (own seed)
      prompts_per_step=4,    # B items per step
      group_size=8,          # G critiques per item (the seed's k/G)
      temperature=1.0,       # rollout temperature
      max_new_tokens=160,    # rollout budget
      beta=0.1,              # KL coefficient (seed 0.1; paper 0.08)
      clip_eps=0.2,
      kl_estimator="k3",     # k1 | k2 | k3
      aggregation="token-mean",  # token-mean | sequence-mean-token-mean (paper)
      mu=1,                  # inner updates per rollout batch
      sampler_batch=8,       # prompts per sampler call (a step has few; padding costs)
  )
  # rollout rows per step, derived: follows --config.grpo.group_size / prompts_per_step
  c.train.batch_size = c.grpo.get_ref("prompts_per_step") * c.grpo.get_ref("group_size")
  c.smoke_sizes.grpo = dict(n_items=8, prompts_per_step=2, group_size=2, max_new_tokens=16, sampler_batch=2)
  del c.smoke_sizes.train["batch_size"]  # derived from the two above
  c.train.steps = 30
  c.train.ckpt_every = 20
  c.train.eval_every = 0
  c.opt.lr = 2e-4
  c.opt.warmup_steps = 5
  c.opt.weight_decay = 0.0
  return c
