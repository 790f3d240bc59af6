"""python -m spct_jax.export --workdir=runs/default --stage=grpo --out=exports/grpo [--hf]

Exports a trained stage: a params-only Orbax checkpoint plus model_config.json (what
`spct_jax.model.load` and `--config.init=export:<folder>` read), and with --hf
a Hugging Face folder (`config.json` + `model.safetensors`) that `transformers` loads with
`AutoModelForCausalLM.from_pretrained` (a scalar-head stage such as meta_rm or scalar_rm:
`AutoModelForSequenceClassification`). The source is the stage's final params
(<workdir>/<stage>/final). Both folders get the tokenizer (`tokenizer.model`, or `tokenizer.json` with its
`tokenizer_config.json`; --tokenizer, else
the stage's own, else the bundled one), so `--config.init=export:<out>` / `hf:<out>/hf` find it.
"""
from __future__ import annotations

import os

from absl import app, flags



def export(workdir: str, stage: str, out: str, hf_folder: bool = False, tokenizer: str = "") -> str:
  import jax
  from spct_jax.model import config as model_config
  from spct_jax.model import hf
  from spct_jax.model import load as load_lib
  from spct_jax.model import orbax_io

  m = load_lib.load(f"stage:{stage}", workdir=workdir, tokenizer=tokenizer, what="--stage")
  params = jax.device_get(m.params)
  orbax_io.save(params, model_config.to_dict(m.config), out, m.tokenizer)
  print(f"[export] params + model_config.json + tokenizer -> {out}")
  if hf_folder:
    hf_out = os.path.join(out, "hf")  # transformers reads local folders: the Hugging Face copy is local
    if "score" in params:  # a scalar-head model (meta RM, scalar RM)
      hf.save_reward(m.config, params, hf_out, pad_token_id=m.tokenizer.pad_id)
    else:
      hf.save(m.config, params, hf_out)
    m.tokenizer.save(hf_out)
    print(f"[export] Hugging Face folder -> {hf_out}")
  return out


def define_flags() -> None:
  """The command-line flags (defined only when run as a program, so importing this module
  next to another CLI's defines nothing)."""
  flags.DEFINE_string("workdir", "runs/default", "the training workdir")
  flags.DEFINE_string("stage", "grpo", "the stage to export (warmup, rft, grpo, ...)")
  flags.DEFINE_string("out", None, "output folder")
  flags.DEFINE_bool("hf", False, "also write a Hugging Face folder to <out>/hf")
  flags.DEFINE_string("tokenizer", "", "tokenizer to ship: a .model, a tokenizer.json or a folder ('' = the stage's own)")


def main(argv):
  del argv
  f = flags.FLAGS
  export(f.workdir, f.stage, f.out or os.path.join(f.workdir, "export", f.stage), f.hf, f.tokenizer)


if __name__ == "__main__":
  define_flags()
  app.run(main)
