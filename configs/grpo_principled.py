"""GRPO in the principled world: warm-up (configs/warmup_principled.py) -> RFT
(configs/rft_principled.py) -> GRPO, configs/grpo.py with the world's knobs, two updates per
rollout batch (mu = 2), so that the clipped ratio and the sampler's log-probs take part, and
rollouts at temperature 0.7.

Temperature 0.7, measured against 1.0 (docs/results.md, "The principled world"): GRPO - RFT on
1,024 test items (paired 95% intervals) was +1.0 [-2.0, +4.0] at 0.7 and -1.7 [-4.2, +1.2] at
1.0, and on 1,024 items of a fresh generator seed (another for each) +4.9 [+1.8, +8.0] at 0.7
and -0.6 [-3.7, +2.2] at 1.0; the stage took 550 s instead of 792 s (shorter critiques).
Tried beside these settings from the same RFT model (validation greedy, 256 items; this one
70.7%): lr 4e-4 57.8%, 50 steps 68.0%, 8 items x G 8 per step 68.0% (GRPO - RFT on 1,024 items of
a development seed +5.5, this one +5.6, at twice the rollouts), 8 items x G 4 62.5%
(docs/results.md, "The meta RM trained for the current GRPO model, and GRPO settings tried").

The README's main command. Measured from a fresh workdir on the project's 2-core CPU: 8.5 min
(RFT 199 s, GRPO 305 s; docs/results.md, "The main command").

Run:   python -m spct_jax.train --config=configs/grpo_principled.py --workdir=runs/default
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grpo  # noqa: E402
import warmup_principled  # noqa: E402


def get_config():
  c = grpo.get_config()
  c.upstream_config = "rft_principled.py"
  warmup_principled.apply_world(c, "grpo.max_new_tokens")
  c.eval.k = 0   # held-out validation greedy only: voting@8 on it cost ~2 min a stage; the
                 # evaluation (configs/eval_principled.py) votes on 1,024 test items
  c.grpo.mu = 2
  c.grpo.temperature = 0.7
  return c
