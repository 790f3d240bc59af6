"""GRPO of the Gemma 3 270M GRM: the chain warmup_gemma3 -> rft_gemma3 -> grpo_gemma3 from
Google's pretrained Gemma 3 270M (the `gemma3` extra), sized for a 2-core CPU; evaluate it with
configs/eval_gemma3.py. Two updates per rollout batch (mu = 2).

Run:   python -m spct_jax.train --config=configs/grpo_gemma3.py --workdir=runs/gemma3
Cost and result on the project's 2-core CPU: see docs/results.md, "Pretrained Gemma 3 270M".
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grpo  # noqa: E402
import warmup_gemma3  # noqa: E402


def get_config():
  c = grpo.get_config()
  c.upstream_config = "rft_gemma3.py"
  warmup_gemma3.apply_model(c)
  c.grpo.update(dict(prompts_per_step=2, group_size=4, max_new_tokens=160, mu=2, sampler_batch=2))
  c.train.steps = 2
  c.train.ckpt_every = 2
  c.opt.lr = 2e-5
  c.opt.warmup_steps = 1
  return c
