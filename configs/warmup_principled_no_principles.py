"""The "GRM without principles" baseline's warm-up in the principled world: configs/warmup_principled.py
(same start, data, teacher and steps) with the prompt variant that asks for an analysis and the
scores only. The teacher is the same judge writing without principles
(`principled.teacher_critique(..., principles=False)`): the same scores, right with the same
probability as the SPCT teacher's, and the same analysis clauses, but in a fixed order (the
criteria's) instead of the principles' order, which would state the principle it chose.

Run:   python -m spct_jax.train --config=configs/warmup_principled_no_principles.py --workdir=runs/principled_np
Eval:  python -m spct_jax.evaluate --config=configs/eval_principled.py --workdir=runs/default \\
           --config.no_principles=export:runs/principled_np/warmup/final
Cost and result on the project's 2-core CPU: see the README's principled-world section.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warmup_principled  # noqa: E402


def get_config():
  c = warmup_principled.get_config()
  c.data.variant = "no_principles"
  return c
