"""Exported models: params only (Orbax), the model config and the tokenizer, in one folder.

    <folder>/params             Orbax checkpoint of the params pytree
    <folder>/model_config.json  `config.to_dict(ModelConfig)`
    <folder>/tokenizer.model    the SentencePiece model the params were trained with

Every stage writes its output this way (`<workdir>/<stage>/final`), `python -m spct_jax.export`
writes it for users, and `model.load.load("export:<folder>")` / `"stage:<name>"` read it.
"""
from __future__ import annotations

import json
import os
from typing import Any

import orbax.checkpoint as ocp


def save(params: Any, model_config: dict, directory: str, tokenizer: Any = None) -> str:
  """Writes `params`, `model_config` (a dict) and, given a `spct_jax.tokenizer.Tokenizer`, its
  model to `directory`; returns the absolute folder."""
  directory = os.path.abspath(directory)
  os.makedirs(directory, exist_ok=True)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(os.path.join(directory, "params"), params, force=True)
  with open(os.path.join(directory, "model_config.json"), "w") as f:
    json.dump(model_config, f, indent=2, sort_keys=True)
  if tokenizer is not None:
    tokenizer.save(os.path.join(directory, "tokenizer.model"))
  return directory


def load(directory: str, abstract_params: Any | None = None) -> tuple[Any, dict]:
  """(params, model config dict) of a `save` folder; abstract_params (ShapeDtypeStructs with
  shardings) places each array straight into its sharding."""
  directory = os.path.abspath(directory)
  cfg_path = os.path.join(directory, "model_config.json")
  if not os.path.exists(cfg_path):
    raise FileNotFoundError(f"{cfg_path}: not an exported spct_jax model (model_config.json missing)")
  with open(cfg_path) as f:
    model_config = json.load(f)
  with ocp.StandardCheckpointer() as ckptr:
    params = ckptr.restore(os.path.join(directory, "params"), abstract_params)
  return params, model_config
