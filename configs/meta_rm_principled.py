"""The meta RM in the principled world: configs/meta_rm.py on this world's items, rating samples
of the GRPO model of configs/grpo_principled.py in the same workdir. configs/eval_principled.py
trains it when it is missing. 512 training items x 8 sampled critiques, 400 steps at lr 5e-4: held-out
AUC 0.82 (the classic world's 256 items and 100 steps at lr 2e-4 gave 0.74 here: the loss had
barely left the base rate); 22-29 min on 2 CPU cores, partly beside other jobs. Trained for the
current main command's GRPO model: held-out AUC 0.819; meta-RM voting at k = 32 - sum voting at
k = 32 on 1,024 test items -1.3 [-3.3, +0.6] (default items) and +0.3 [-1.9, +2.3] (fresh seed
45953758): level with sum voting, not above it (docs/results.md, "The meta RM trained for the
current GRPO model").

Run:   python -m spct_jax.train --config=configs/meta_rm_principled.py --workdir=runs/default
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import meta_rm  # noqa: E402
import warmup_principled  # noqa: E402


def get_config():
  c = meta_rm.get_config()
  c.upstream_config = "grpo_principled.py"
  c.meta_rm.n_items = 512   # 4,096 labelled critiques (configs/meta_rm.py: 2,048)
  c.train.steps = 400       # 100 steps at lr 2e-4 left it near the base rate (held-out AUC 0.74)
  c.train.ckpt_every = 100
  c.opt.lr = 5e-4
  c.opt.warmup_steps = 20
  return warmup_principled.apply_world(c, "meta_rm.max_new_tokens")
