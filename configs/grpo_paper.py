"""GRPO with the paper's settings (METHOD.md section 4) on the embedded default, beside the seed's
(configs/grpo.py): the original GRPO aggregation (mean over each critique's tokens, then over the
group: `sequence-mean-token-mean`), KL coefficient beta 0.08 and groups of G = 4 critiques (8 items
per step, so a step still trains on 32 rollouts). The paper's lr (4e-7) and batch (512) are for a
27B model; the rest follows configs/grpo.py.

Run:   python -m spct_jax.train --config=configs/grpo_paper.py --workdir=runs/classic
       (a workdir with the RFT stage done trains only this GRPO: its output goes to grpo/ there,
        so use a workdir of its own to keep both, e.g. copy runs/classic/rft to runs/paper/rft)
Cost and result on a 2-core CPU: see README.md (measured with this exact config).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grpo  # noqa: E402


def get_config():
  c = grpo.get_config()
  c.grpo.aggregation = "sequence-mean-token-mean"
  c.grpo.beta = 0.08
  c.grpo.group_size = 4
  c.grpo.prompts_per_step = 8
  return c
