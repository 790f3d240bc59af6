"""python -m spct_jax.export --workdir=runs/default --stage=grpo --out=exports/grpo [--hf]

Exports a trained stage: a params-only Orbax checkpoint plus model_config.json (what
`spct_jax.train.checkpoint.load_params` and `--config.init=export:<folder>` read), and with --hf
a Hugging Face folder (`config.json` + `model.safetensors`) that `transformers` loads with
`AutoModelForCausalLM.from_pretrained`. The source is the stage's final params
(<workdir>/<stage>/final).
"""
from __future__ import annotations

import os

from absl import app, flags

_WORKDIR = flags.DEFINE_string("workdir", "runs/default", "the training workdir")
_STAGE = flags.DEFINE_string("stage", "grpo", "the stage to export (warmup, rft, grpo, ...)")
_OUT = flags.DEFINE_string("out", None, "output folder")
_HF = flags.DEFINE_bool("hf", False, "also write a Hugging Face folder to <out>/hf")


def export(workdir: str, stage: str, out: str, hf_folder: bool = False) -> str:
  import jax
  from spct_jax.model import config as model_config
  from spct_jax.model import hf
  from spct_jax.train import checkpoint as ckpt_lib
  from spct_jax.train import stages

  final = os.path.join(stages.stage_dir(workdir, stage), "final")
  params, cfg_dict = ckpt_lib.load_params(final)
  params = jax.device_get(params)
  ckpt_lib.export_params(params, cfg_dict, out)
  print(f"[export] params + model_config.json -> {out}")
  if hf_folder:
    hf.save(model_config.from_dict(cfg_dict), params, os.path.join(out, "hf"))
    print(f"[export] Hugging Face folder -> {os.path.join(out, 'hf')}")
  return out


def main(argv):
  del argv
  export(_WORKDIR.value, _STAGE.value, _OUT.value or os.path.join(_WORKDIR.value, "export", _STAGE.value),
         _HF.value)


if __name__ == "__main__":
  app.run(main)
