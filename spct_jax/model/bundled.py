"""Bundled stage results: a stage's output trained once with a given config, shipped in the package
(a model source: `init="bundled:<stage>"`, see model/load.py).

Warming the embedded default up from scratch takes most of an hour on a 2-core CPU (the stand-in
for the pre-training a real GRM starts from), far more than RFT and GRPO after it. So the package
ships the result of running `configs/warmup.py` exactly as it is: its final params, its summary
(held-out accuracy, steps, wall time, where it was measured) and the fingerprint of the config
that produced it. When a chain reaches a stage whose config has `bundled = True` and whose
fingerprint matches a bundled result, that result is installed as the stage's output (the params
in <workdir>/<stage>/final, the summary marked `"bundled": true`) instead of training it again.
Any change to the config (another seed, preset, step count, data knob; `--config.smoke=True`)
changes the fingerprint, and the stage trains as usual; `--config.bundled=False` forces training.

    python scripts/bundle_stage.py --config=configs/warmup.py --workdir=runs/bundle   # rebuilds it

Layout of spct_jax/assets/bundled/<name>/ (the stage, e.g. `warmup`, or `<stage>_<world>` for a data
world other than the classic one): model.safetensors (params, '/'-joined paths),
model_config.json, summary.json, fingerprint.txt.
"""
from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
from typing import Any

import numpy as np
import safetensors.numpy

from spct_jax.model import orbax_io

# Fields that cannot change a stage's result (logging, checkpointing cadence, this switch itself, how
# the same layers are compiled: scanned or not, what a rematerialised layer keeps).
_IGNORED = ("bundled", "train.log_every", "train.ckpt_every", "checkpoint", "upstream_config", "smoke_sizes", "cost",
            "model.remat_policy", "model.scan_layers")


def _pop(d: dict, key: str):
  *parents, leaf = key.split(".")
  for p in parents:
    d = d.get(p, {})
  return d.pop(leaf, None)


def fingerprint(cfg) -> str:
  """sha256 of the config's JSON (sorted keys) without the _IGNORED fields, and without LoRA's fields
  while LoRA is off."""
  d = json.loads(json.dumps(cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg), sort_keys=True, default=list))
  for key in _IGNORED:
    _pop(d, key)
  if not d.get("model", {}).get("lora_rank", 0):  # LoRA off: the config means what it meant before LoRA existed
    _pop(d, "model.lora_rank")
    _pop(d, "model.lora_alpha")
  if d.get("data", {}).get("world", "classic") == "classic":  # likewise before the principled world
    _pop(d, "data.world")
    _pop(d, "data.principle_skill")
  return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def _root() -> str:
  return str(importlib.resources.files("spct_jax").joinpath("assets").joinpath("bundled"))


def folder(stage: str) -> str:
  """The bundled folder of `stage` (for `init="bundled:<stage>"`); a clear error when there is none."""
  path = os.path.join(_root(), stage)
  if not os.path.exists(os.path.join(path, "model.safetensors")):
    have = sorted(os.listdir(_root())) if os.path.isdir(_root()) else []
    raise FileNotFoundError(f"config init='bundled:{stage}': the package bundles no {stage!r} result "
                            f"(bundled: {have})")
  return path


def name(cfg) -> str:
  """The bundled folder name of cfg's stage: the stage ("warmup"), with the data world appended
  when it is not the classic one ("warmup_principled"); `init="bundled:<name>"` loads it."""
  world = cfg.get("data", {}).get("world", "classic")
  return cfg.stage if world == "classic" else f"{cfg.stage}_{world}"


def find(cfg) -> str | None:
  """The bundled folder of cfg's stage (see name) when cfg.bundled is set and the fingerprints match."""
  if not cfg.get("bundled", False):
    return None
  folder = os.path.join(_root(), name(cfg))
  path = os.path.join(folder, "fingerprint.txt")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return folder if f.read().strip() == fingerprint(cfg) else None


def _flatten(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
  out = {}
  for k, v in tree.items():
    name = f"{prefix}/{k}" if prefix else k
    out.update(_flatten(v, name) if isinstance(v, dict) else {name: np.asarray(v)})
  return out


def _unflatten(flat: dict[str, np.ndarray]) -> dict:
  tree: dict = {}
  for name, v in flat.items():
    *parents, leaf = name.split("/")
    node = tree
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = v
  return tree


def load(folder: str) -> tuple[dict, dict, dict]:
  """(params, model config dict, summary) of a bundled folder."""
  params = _unflatten(safetensors.numpy.load_file(os.path.join(folder, "model.safetensors")))
  with open(os.path.join(folder, "model_config.json")) as f:
    model_config = json.load(f)
  with open(os.path.join(folder, "summary.json")) as f:
    summary = json.load(f)
  return params, model_config, summary


def install(folder: str, stage_dir: str, tok) -> dict:
  """Writes the bundled result as the stage's output in stage_dir (final/ and the returned summary)."""
  params, model_config, summary = load(folder)
  orbax_io.save(params, model_config, f"{stage_dir}/final", tok)
  return {**summary, "bundled": True}


def save(cfg, stage_dir: str, summary: dict, dest: str) -> None:
  """Bundles a finished stage (its final/ params and summary) as the result of `cfg`."""
  params, model_config = orbax_io.load(os.path.join(stage_dir, "final"))
  os.makedirs(dest, exist_ok=True)
  safetensors.numpy.save_file(_flatten(params), os.path.join(dest, "model.safetensors"))
  with open(os.path.join(dest, "model_config.json"), "w") as f:
    json.dump(model_config, f, indent=2, sort_keys=True)
  with open(os.path.join(dest, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2, sort_keys=True)
  with open(os.path.join(dest, "fingerprint.txt"), "w") as f:
    f.write(fingerprint(cfg) + "\n")
