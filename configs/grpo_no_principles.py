"""The "GRM without principles" baseline, trained like SPCT: warm-up (from the bundled warm-up
model, on critiques without principles) -> RFT -> GRPO, all with the no_principles prompt variant
and otherwise the hyper-parameters of configs/grpo.py. Use it in a workdir of its own, then pass
it to the evaluation as the baseline:

Run:   python -m spct_jax.train --config=configs/grpo_no_principles.py --workdir=runs/no_principles
Eval:  python -m spct_jax.evaluate --config=configs/eval.py --workdir=runs/classic \\
           --config.no_principles=export:runs/no_principles/grpo/final
Cost and result on a 2-core CPU: see README.md (measured with this exact config).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grpo  # noqa: E402


def get_config():
  c = grpo.get_config()
  c.upstream_config = "rft_no_principles.py"
  c.data.variant = "no_principles"
  return c
