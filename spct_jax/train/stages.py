"""Stages and the chain between them.

Each stage writes into <workdir>/<stage>/:
    checkpoints/   Orbax train states (resume)
    final/         the exported params + model config (`checkpoint.export_params`): the stage's output
    summary.json   the stage's held-out results
    metrics.jsonl, tb/

A config's `init` says where the stage starts: `scratch`, `hf:<folder>` (Hugging Face weights),
`export:<folder>` (an exported model), `stage:<name>` (the `final/` of another stage in the same
workdir, which `run_chain` runs first when it is missing) or `bundled:<stage>` (a stage result
shipped in the package, e.g. the embedded default's warm-up model, as a starting point). A stage whose config matches a result
bundled in the package (spct_jax/train/bundled.py: the embedded default's warm-up) installs it
instead of training.
"""
from __future__ import annotations

import importlib.util
import json
import os
from typing import Any, Callable

import jax
from ml_collections import ConfigDict

from spct_jax.model import config as model_config
from spct_jax.model import hf
from spct_jax.model import transformer
from spct_jax.train import bundled
from spct_jax.train import checkpoint as ckpt_lib

SHARED_SECTIONS = ("model", "tokenizer", "mesh", "seed", "smoke", "bundled")


def stage_dir(workdir: str, stage: str) -> str:
  return os.path.join(os.path.abspath(workdir), stage)


def is_done(workdir: str, stage: str) -> bool:
  return os.path.exists(os.path.join(stage_dir(workdir, stage), "summary.json"))


def load_config(path: str) -> ConfigDict:
  """`get_config()` of a config file."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"config file {path} does not exist")
  spec = importlib.util.spec_from_file_location(f"spct_config_{os.path.basename(path)[:-3]}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def apply_overrides(cfg: ConfigDict, overrides: dict[str, Any], sections=SHARED_SECTIONS) -> ConfigDict:
  """Applies command-line overrides (`{"model.preset": "tiny"}`) whose first part is in `sections`."""
  cfg = ConfigDict(cfg.to_dict())
  for key, value in overrides.items():
    if key.split(".")[0] not in sections:
      continue
    *parents, leaf = key.split(".")
    target = cfg
    for part in parents:
      target = target[part]
    target[leaf] = value
  return cfg


def shrink(cfg: ConfigDict) -> ConfigDict:
  """Smoke mode: the `tiny` preset and a few steps/items; sizes only, never the code path."""
  cfg = ConfigDict(cfg.to_dict())
  cfg.model.preset = "tiny"
  small = {"train.steps": 3, "train.batch_size": 8, "train.log_every": 1, "train.ckpt_every": 2,
           "opt.warmup_steps": 1, "data.n_train": 48, "data.n_val": 8, "eval.n": 4, "eval.k": 2,
           "eval.max_new_tokens": 16, "eval.pool": 4, "eval.n_draws": 2, "eval.n_boot": 50,
           "eval.sampler_batch": 4}
  for key, value in small.items():
    section, name = key.split(".")
    if section in cfg and name in cfg[section]:
      cfg[section][name] = min(cfg[section][name], value) if isinstance(value, int) else value
  for section in cfg.keys():  # stage-specific sizes: every *_steps/n_* knob of the stage section
    if isinstance(cfg[section], ConfigDict) and section in ("rft", "grpo", "meta_rm", "scalar_rm"):
      for name, value in cfg[section].items():
        if name in ("n_items", "n_samples", "group_size", "prompts_per_step", "max_new_tokens", "sampler_batch",
                    "samples_per_item"):
          cfg[section][name] = min(value, {"max_new_tokens": 16, "n_items": 8}.get(name, 2))
  if "grpo" in cfg:
    cfg.train.batch_size = cfg.grpo.prompts_per_step * cfg.grpo.group_size
  return cfg


def initial_params(cfg: ConfigDict, workdir: str) -> tuple[model_config.ModelConfig, Any]:
  """(model config, params) the stage starts from, as `cfg.init` says."""
  init = cfg.init
  dtype_over = dict(dtype=cfg.model.dtype, remat=cfg.model.remat)
  if init == "scratch":
    mcfg = model_config.get_config(cfg.model.preset, param_dtype=cfg.model.param_dtype, **dtype_over)
    return mcfg, transformer.init_params(mcfg, jax.random.key(cfg.seed))
  kind, _, where = init.partition(":")
  if kind == "hf":
    mcfg, params = hf.load(where)
    return model_config.replace(mcfg, **dtype_over), params
  if kind == "bundled":
    params, saved, _ = bundled.load(bundled.folder(where))
    return model_config.replace(model_config.from_dict(saved), **dtype_over), params
  if kind in ("export", "stage"):
    folder = os.path.join(stage_dir(workdir, where), "final") if kind == "stage" else where
    params, saved = ckpt_lib.load_params(folder)
    mcfg = model_config.replace(model_config.from_dict(saved), **dtype_over)
    return mcfg, params
  raise ValueError(f"config init={init!r}: expected scratch, hf:<folder>, export:<folder>, "
                   "stage:<name> or bundled:<stage>")


def upstream_config_path(cfg: ConfigDict, config_path: str) -> str:
  """The config file of the stage `cfg.init = "stage:<name>"` starts from: `cfg.upstream_config`
  when set, else `<name>.py`, beside `config_path`."""
  name = cfg.get("upstream_config", "") or f"{cfg.init.split(':', 1)[1]}.py"
  return os.path.join(os.path.dirname(os.path.abspath(config_path)), name)


def plan_chain(cfg: ConfigDict, config_path: str, workdir: str, overrides: dict | None = None
               ) -> list[tuple[ConfigDict, bool]]:
  """The stages `run_chain` would visit, upstream first, as (config as run, already done)."""
  overrides = overrides or {}
  chain = []
  if cfg.init.startswith("stage:"):
    upstream = cfg.init.split(":", 1)[1]
    if not is_done(workdir, upstream):
      up_path = upstream_config_path(cfg, config_path)
      chain += plan_chain(apply_overrides(load_config(up_path), overrides), up_path, workdir, overrides)
  return chain + [(shrink(cfg) if cfg.smoke else cfg, is_done(workdir, cfg.stage))]


def stage_table(workdir: str, names=("warmup", "rft", "grpo")) -> str:
  """Held-out accuracy of every finished stage in `workdir`, as a Markdown table."""
  lines = ["| stage | steps | wall (s) | valid format | accuracy greedy | accuracy voting@k |",
           "|---|---|---|---|---|---|"]
  chance = None
  for name in names:
    path = os.path.join(stage_dir(workdir, name), "summary.json")
    if not os.path.exists(path):
      continue
    with open(path) as f:
      s = json.load(f)
    chance = s.get("val_chance", chance)
    if s.get("bundled"):
      name += " (bundled)"
    voting = {k: v for k, v in s.items() if k.startswith("val_voting@") and k.endswith("_accuracy")}
    vk, vv = next(iter(voting.items()), ("", None))
    k = vk[len("val_voting@"):-len("_accuracy")] if vk else "?"
    fmt = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"
    lines.append(f"| {name} | {s.get('steps')} | {s.get('wall_seconds', 0):.0f} | {fmt(s.get('val_valid_rate'))} | "
                 f"{fmt(s.get('val_accuracy'))} | {fmt(vv)} (k={k}) |")
  if chance is not None:
    lines.append(f"\nChance on these held-out items (a uniformly random pick): {100 * chance:.1f}%.")
  return "\n".join(lines)


def run_chain(cfg: ConfigDict, config_path: str, workdir: str, overrides: dict | None = None,
              stage_fns: dict[str, Callable] | None = None) -> dict:
  """Runs the stage of `cfg`, after the stages it starts from (recursively) when they are missing."""
  overrides = overrides or {}
  if stage_fns is None:
    from spct_jax.train import warmup
    stage_fns = {"warmup": warmup.run}
    from spct_jax.train import grpo, meta_rm, rft, scalar_rm
    stage_fns.update(rft=rft.run, grpo=grpo.run, meta_rm=meta_rm.run, scalar_rm=scalar_rm.run)
  if cfg.init.startswith("stage:"):
    upstream = cfg.init.split(":", 1)[1]
    if not is_done(workdir, upstream):
      up_path = upstream_config_path(cfg, config_path)
      up_cfg = apply_overrides(load_config(up_path), overrides)
      print(f"[chain] {cfg.stage} starts from {upstream}, which is not in {workdir} yet: running {up_path}", flush=True)
      run_chain(up_cfg, up_path, workdir, overrides, stage_fns)
  if is_done(workdir, cfg.stage):
    with open(os.path.join(stage_dir(workdir, cfg.stage), "summary.json")) as f:
      summary = json.load(f)
    print(f"[chain] {cfg.stage} is already done in {workdir}", flush=True)
    return summary
  if cfg.stage not in stage_fns:
    raise KeyError(f"config stage={cfg.stage!r}; known stages: {sorted(stage_fns)}")
  if cfg.smoke:
    cfg = shrink(cfg)
  folder = bundled.find(cfg)
  if folder is not None:
    from spct_jax.train import warmup
    summary = bundled.install(cfg, folder, stage_dir(workdir, cfg.stage), warmup.load_tokenizer(cfg, workdir))
    print(f"[chain] {cfg.stage}: installed the bundled result of this exact config ({folder}: trained in "
          f"{summary.get('wall_seconds', 0) / 60:.0f} min, {summary.get('measured_on', 'see its summary.json')}). "
          f"Pass --config.bundled=False to train it here instead.", flush=True)
  else:
    summary = stage_fns[cfg.stage](cfg, workdir)
  with open(os.path.join(stage_dir(workdir, cfg.stage), "summary.json"), "w") as f:
    json.dump(summary, f, indent=2, sort_keys=True)
  print(f"\nHeld-out accuracy by stage ({workdir}):\n{stage_table(workdir)}\n", flush=True)
  return summary


def ensure(stage: str, config_path: str, workdir: str, overrides: dict | None = None) -> dict:
  """The summary of stage `stage` in `workdir`, running it first (with what it starts from) when
  it is missing: its config is `<stage>.py` beside `config_path`, with this run's overrides of the
  shared sections (model, tokenizer, mesh, seed, smoke)."""
  path = os.path.join(os.path.dirname(os.path.abspath(config_path)), f"{stage}.py")
  return run_chain(apply_overrides(load_config(path), overrides or {}), path, workdir, overrides)
