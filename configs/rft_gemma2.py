"""RFT of a Gemma-2 GRM from local Hugging Face weights, on your preference data (a real run).

Starts from a Gemma-2 folder (config.json, model.safetensors[.index.json], tokenizer.model), e.g.
one downloaded beforehand with `huggingface-cli download google/gemma-2-2b-it --local-dir ...`;
nothing is downloaded at run time. Data: a RewardBench/PPE/JSONL file (`data.source`), or the
`spct_preferences` TFDS build of your files. bf16 compute, float32 master weights, the whole
mesh on fsdp by default (`--config.mesh.shape="(1,-1,1)"`; add tensor parallelism for 27B).

Run:   python -m spct_jax.train --config=configs/rft_gemma2.py --config.init=hf:/data/gemma-2-2b-it \
           --config.data.source=/data/prefs.jsonl --workdir=/mnt/shared/run
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rft  # noqa: E402


def get_config():
  c = rft.get_config()
  c.init = "hf:/path/to/gemma-2-2b-it"   # a local Hugging Face folder
  c.model.dtype = "bfloat16"
  c.model.remat = True
  c.model.scan_layers = True             # one nn.scan over the layers: compile time flat in depth
  c.data.source = "/path/to/preferences.jsonl"
  c.data.format = ""                     # auto-detect: grm | rewardbench | ppe_human | ppe_correctness
  c.data.style = "paper"                 # the paper's full prompt (appendix G structure)
  c.data.max_len = 4096
  c.rft.n_samples = 5                    # seed 5; paper 3
  c.rft.max_new_tokens = 1024
  c.rft.temperature = 1.0
  c.rft.warmup_rows_per_item = 0.0       # no synthetic teacher rows for a real model
  c.eval.max_new_tokens = 1024
  c.mesh.shape = (1, -1, 1)
  c.train.batch_size = 64
  c.opt.lr = 5e-6                        # paper: 5e-6
  c.opt.weight_decay = 0.0
  c.cost = "a TPU/GPU mesh: see python -m spct_jax.plan"
  return c
