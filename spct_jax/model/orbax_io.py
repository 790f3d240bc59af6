"""Exported models: params only (Orbax), the model config and the tokenizer, in one folder.

    <folder>/params             Orbax checkpoint of the params pytree
    <folder>/model_config.json  `config.to_dict(ModelConfig)`
    <folder>/tokenizer.model    the tokenizer the params were trained with (SentencePiece; or
                                tokenizer.json + tokenizer_config.json, see tokenizer.py)

Every stage writes its output this way (`<workdir>/<stage>/final`), `python -m spct_jax.export`
writes it for users, and `model.load.load("export:<folder>")` / `"stage:<name>"` read it.
"""
from __future__ import annotations

import json
from typing import Any

import orbax.checkpoint as ocp

from spct_jax import paths


def save(params: Any, model_config: dict, directory: str, tokenizer: Any = None) -> str:
  """Writes `params`, `model_config` (a dict) and, given a `spct_jax.tokenizer.Tokenizer`, its
  model to `directory`; returns the absolute folder. Scanned params are written per layer (the
  one layout on disk; `load` with scan_layers stacks them again)."""
  from spct_jax.model import config as config_lib
  from spct_jax.model import transformer
  params = transformer.to_layout(config_lib.ModelConfig(scan_layers=False), params)
  if model_config.get("scan_layers"):
    model_config = {**model_config, "scan_layers": False}
  import jax
  directory = paths.absolute(directory)
  if jax.process_index() == 0:  # the small files from one process, before Orbax's collective save
    directory.mkdir(parents=True, exist_ok=True)  # (which every process leaves only when all are done)
    (directory / "model_config.json").write_text(json.dumps(model_config, indent=2, sort_keys=True))
    if tokenizer is not None:
      tokenizer.save(directory)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(directory / "params", params, force=True)
  return str(directory)


def read_config(directory: str) -> dict:
  """The model config dict of a `save` folder (a clear error when it is not one)."""
  cfg_path = paths.absolute(directory) / "model_config.json"
  if not cfg_path.exists():
    raise FileNotFoundError(f"{cfg_path}: not an exported spct_jax model (model_config.json missing)")
  return json.loads(cfg_path.read_text())


def shapes(directory: str) -> Any:
  """ShapeDtypeStructs of the saved params (from the checkpoint's metadata; nothing read)."""
  import jax
  with ocp.StandardCheckpointer() as ckptr:
    meta = ckptr.metadata(paths.absolute(directory) / "params")
  tree = getattr(getattr(meta, "item_metadata", meta), "tree", meta)
  return jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype), tree,
                      is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"))


def load(directory: str, abstract_params: Any | None = None) -> tuple[Any, dict]:
  """(params, model config dict) of a `save` folder; abstract_params (ShapeDtypeStructs with
  shardings) places each array straight into its sharding, each host reading only its shards."""
  model_config = read_config(directory)
  with ocp.StandardCheckpointer() as ckptr:
    params = ckptr.restore(paths.absolute(directory) / "params", abstract_params)
  return params, model_config
