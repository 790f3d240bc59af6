"""Evaluation and inference-time scaling (METHOD.md sections 5-6): voting@k of a GRM beside every
stage of its chain, the meta RM, the GRM without principles and the scalar-RM baseline, on the
synthetic test split or a user's file.

By default it evaluates the classic world's GRPO model in the workdir (configs/eval_principled.py:
the principled world's, the main command's), and its warm-up and RFT
models on the same 1,024 test items (training whatever is missing first): one greedy critique and
a pool of 32 sampled critiques per item and model; sum, mode and meta-RM voting for k = 1, 2, 4,
..., 32 from that pool; paired bootstrap intervals of the differences between stages, methods and
baselines; results.json, results.md, curve.png and samples.jsonl in <workdir>/eval/<name>/.

Run:   python -m spct_jax.evaluate --config=configs/eval.py --workdir=runs/classic
Smoke: python -m spct_jax.evaluate --config=configs/eval.py --config.smoke=True --workdir=/tmp/smoke
Files: --config.data.source=rewardbench.jsonl (formats: rewardbench, ppe_human, ppe_correctness,
       grm; detected from the first record) --config.eval.n=0 (all items)
HF:    --config.init=hf:/path/DeepSeek-GRM-27B --config.meta_rm=hf:/path/MetaRM
       --config.scalar_rm= --config.compare="()" --config.data.style=paper --config.model.dtype=bfloat16
Cost and result on a 2-core CPU: see README.md (measured with this exact config).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warmup  # noqa: E402  (the shared defaults)


def get_config():
  c = warmup.get_config()
  c.stage = "eval"
  c.init = "stage:grpo"           # the GRM: stage:<name> | export:<dir> | hf:<dir>
  c.compare = ("stage:warmup", "stage:rft")  # GRMs judged beside it on the same items, in chain order
  c.meta_rm = "stage:meta_rm"     # meta RM for guided voting ("" = none)
  c.scalar_rm = "stage:scalar_rm"  # the Bradley-Terry baseline ("" = none)
  c.no_principles = ""            # baseline GRM trained without principles, e.g. export:runs/np/grpo/final
                                  # (prompted with the no_principles variant; "" = none)
  c.stage_configs = {}            # stage name -> its config file, for missing stages ({} = <stage>.py)
  c.name = ""                     # results go to <workdir>/eval/<name> ("" = from init)
  c.data.n_responses = (2, 3, 4)  # synthetic test items: pairwise and multi-response
  c.eval.n = 1024                 # items (0 = every item of a file)
  c.eval.seed = -1                # generator seed of the synthetic test items (-1: seed + SEEDS["test"])
  c.eval.pool = 32                # sampled critiques per item; every voting@k comes from this pool (0: greedy only)
  c.eval.compare_pool = -1        # pool of the compared stages (-1: eval.pool; 0: greedy only, cheaper)
  c.eval.ks = (1, 2, 4, 8, 16, 32)
  c.eval.temperature = 0.5        # the paper's temperature when scaling
  c.eval.max_new_tokens = 160
  c.eval.n_draws = 10             # subsets drawn per item and k
  c.eval.n_boot = 1000            # bootstrap resamples of the items for 95% intervals
  c.eval.sampler_batch = 32       # prompts per sampler call
  c.smoke_sizes.eval.update(dict(pool=4, n_draws=2, n_boot=50, sampler_batch=4))
  return c
