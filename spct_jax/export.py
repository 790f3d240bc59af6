"""python -m spct_jax.export --workdir=runs/default --stage=grpo --out=exports/grpo [--hf]

Exports a trained stage: a params-only Orbax checkpoint plus model_config.json (what
`spct_jax.train.checkpoint.load_params` and `--config.init=export:<folder>` read), and with --hf
a Hugging Face folder (`config.json` + `model.safetensors`) that `transformers` loads with
`AutoModelForCausalLM.from_pretrained` (a scalar-head stage such as meta_rm or scalar_rm:
`AutoModelForSequenceClassification`). The source is the stage's final params
(<workdir>/<stage>/final). Both folders get the tokenizer as `tokenizer.model` (--tokenizer, else
the stage's own, else the bundled one), so `--config.init=export:<out>` / `hf:<out>/hf` find it.
"""
from __future__ import annotations

import os

from absl import app, flags



def export(workdir: str, stage: str, out: str, hf_folder: bool = False, tokenizer: str = "") -> str:
  import jax
  from spct_jax.model import config as model_config
  from spct_jax.model import hf
  from spct_jax.train import checkpoint as ckpt_lib
  from spct_jax.train import stages
  from spct_jax.tokenizer import Tokenizer

  final = os.path.join(stages.stage_dir(workdir, stage), "final")
  params, cfg_dict = ckpt_lib.load_params(final)
  params = jax.device_get(params)
  stage_tok = os.path.join(final, "tokenizer.model")  # written by every stage
  tok = Tokenizer.load(tokenizer or (stage_tok if os.path.exists(stage_tok) else None))
  ckpt_lib.export_params(params, cfg_dict, out)
  folders = [out]
  print(f"[export] params + model_config.json -> {out}")
  if hf_folder:
    hf_out = os.path.join(out, "hf")
    if "score" in params:  # a scalar-head model (meta RM, scalar RM)
      hf.save_reward(model_config.from_dict(cfg_dict), params, hf_out, pad_token_id=tok.pad_id)
    else:
      hf.save(model_config.from_dict(cfg_dict), params, hf_out)
    folders.append(hf_out)
    print(f"[export] Hugging Face folder -> {hf_out}")
  for folder in folders:
    with open(os.path.join(folder, "tokenizer.model"), "wb") as f:
      f.write(tok.sp.serialized_model_proto())
  return out


def define_flags() -> None:
  """The command-line flags (defined only when run as a program, so importing this module
  next to another CLI's defines nothing)."""
  flags.DEFINE_string("workdir", "runs/default", "the training workdir")
  flags.DEFINE_string("stage", "grpo", "the stage to export (warmup, rft, grpo, ...)")
  flags.DEFINE_string("out", None, "output folder")
  flags.DEFINE_bool("hf", False, "also write a Hugging Face folder to <out>/hf")
  flags.DEFINE_string("tokenizer", "", "SentencePiece .model to ship ('' = the stage's own tokenizer.model)")


def main(argv):
  del argv
  f = flags.FLAGS
  export(f.workdir, f.stage, f.out or os.path.join(f.workdir, "export", f.stage), f.hf, f.tokenizer)


if __name__ == "__main__":
  define_flags()
  app.run(main)
