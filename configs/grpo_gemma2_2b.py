"""GRPO of Gemma-2-2B as a GRM with the seed's hyper-parameters (a real run on a TPU/GPU mesh).

Chain: RFT from local Hugging Face weights (configs/rft_gemma2.py), then GRPO with lr 1e-5,
beta 0.1, G = 16 (the seed's), KL k3, bf16 compute with float32 master weights and optimizer.

Run:   python -m spct_jax.train --config=configs/grpo_gemma2_2b.py \
           --config.init=stage:rft --config.data.source=/data/prefs.jsonl --workdir=/mnt/shared/run
       (set the Hugging Face folder with --config.init=hf:/data/gemma-2-2b-it on the RFT stage,
        i.e. run configs/rft_gemma2.py first, or put the folder in that config)
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grpo  # noqa: E402


def get_config():
  c = grpo.get_config()
  c.upstream_config = "rft_gemma2.py"
  c.model.preset = "gemma2_2b"        # the shapes (the weights come from the RFT stage)
  c.model.dtype = "bfloat16"
  c.model.remat = True
  c.model.scan_layers = True             # compile time flat in depth (27B: one layer's worth)
  c.data.source = "/path/to/preferences.jsonl"
  c.data.style = "paper"
  c.data.max_len = 4096
  c.grpo.group_size = 16                 # seed: k/G 16 (paper: 4)
  c.grpo.prompts_per_step = 32
  c.grpo.beta = 0.1                      # seed 0.1 (paper 0.08)
  c.grpo.max_new_tokens = 1024
  c.grpo.temperature = 1.0
  c.grpo.sampler_batch = 32
  c.mesh.shape = (1, -1, 1)
  c.opt.lr = 1e-5                        # seed 1e-5 (paper 4e-7 for 27B)
  c.eval.max_new_tokens = 1024
  c.cost = "a TPU/GPU mesh: see python -m spct_jax.plan"
  return c
