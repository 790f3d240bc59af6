"""The chain of stages: configs, their overrides and smoke sizes, and which stage runs before which.

A config's `init` says where its stage starts (model/load.py): `scratch`, `hf:<folder>`,
`export:<folder>`, `bundled:<stage>` or `stage:<name>`, the output of another stage in the same
workdir, which `run_chain` runs first when it is missing (its config is `cfg.upstream_config`,
default `<name>.py`, beside this config). A stage whose config matches a result bundled in the
package (model/bundled.py: the embedded default's warm-up) installs it instead of training.

Overrides given on the command line apply to the config named there; those of the shared
sections (SHARED_SECTIONS) also reach the upstream stages. `--config.smoke=True` replaces every
size by the config's own `smoke_sizes` (numbers only shrink), keeping the code path.
"""
from __future__ import annotations

import copy
import importlib.util
import json
import os
from typing import Any, Callable

import jax
from ml_collections import ConfigDict

from spct_jax.model import bundled
from spct_jax.model import load as load_lib
from spct_jax.train import grpo, meta_rm, rft, scalar_rm, warmup

SHARED_SECTIONS = ("model", "tokenizer", "mesh", "seed", "smoke", "bundled")
STAGES: dict[str, Callable[[ConfigDict, str], dict]] = {
    "warmup": warmup.run, "rft": rft.run, "grpo": grpo.run, "meta_rm": meta_rm.run, "scalar_rm": scalar_rm.run}


def load_config(path: str) -> ConfigDict:
  """`get_config()` of a config file."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"config file {path} does not exist")
  spec = importlib.util.spec_from_file_location(f"spct_config_{os.path.basename(path)[:-3]}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def apply_overrides(cfg: ConfigDict, overrides: dict[str, Any], sections=SHARED_SECTIONS) -> ConfigDict:
  """A copy of cfg with the command-line overrides (`{"model.preset": "tiny"}`) whose first part
  is in `sections`; fields the config derives from an overridden one follow it."""
  cfg = copy.deepcopy(cfg)
  for key, value in overrides.items():
    if key.split(".")[0] in sections:
      _set(cfg, key, value)
  return cfg


def smoke(cfg: ConfigDict) -> ConfigDict:
  """A copy of cfg with its `smoke_sizes` applied: numbers become at most the smoke size, other
  values (the preset) are replaced; derived fields follow. A smoke size naming a field the config
  does not have is an error."""
  cfg = copy.deepcopy(cfg)
  for key, value in _leaves(cfg.get("smoke_sizes", ConfigDict())):
    current = _get(cfg, key, "smoke_sizes")
    _set(cfg, key, min(current, value) if isinstance(value, int) and not isinstance(value, bool) else value)
  return cfg


def _leaves(d: ConfigDict, prefix: str = "") -> list[tuple[str, Any]]:
  out = []
  for k, v in d.items():
    out += _leaves(v, f"{prefix}{k}.") if isinstance(v, ConfigDict) else [(f"{prefix}{k}", v)]
  return out


def _get(cfg: ConfigDict, key: str, where: str) -> Any:
  node = cfg
  for part in key.split("."):
    if not isinstance(node, ConfigDict) or part not in node:
      raise KeyError(f"config {where}.{key}: the config (stage {cfg.get('stage')!r}) has no field {key!r}")
    node = node[part]
  return node


def _set(cfg: ConfigDict, key: str, value: Any) -> None:
  *parents, leaf = key.split(".")
  target = cfg
  for part in parents:
    target = target[part]
  target[leaf] = value


def as_run(cfg: ConfigDict) -> ConfigDict:
  """The config as its stage runs it: shrunk in smoke mode."""
  return smoke(cfg) if cfg.smoke else cfg


def is_done(workdir: str, stage: str) -> bool:
  return (load_lib.stage_dir(workdir, stage) / "summary.json").exists()


def upstream_config_path(cfg: ConfigDict, config_path: str) -> str:
  """The config file of the stage `cfg.init = "stage:<name>"` starts from: `cfg.upstream_config`
  when set, else `<name>.py`, beside `config_path`."""
  name = cfg.get("upstream_config", "") or f"{cfg.init.split(':', 1)[1]}.py"
  return os.path.join(os.path.dirname(os.path.abspath(config_path)), name)


def done_summary(cfg: ConfigDict, workdir: str, stage: str) -> dict | None:
  """The summary of `stage` when it is done in `workdir` (None when not), after checking that it
  was trained in cfg's synthetic world (a ValueError naming the file when not; summaries written
  before the world was recorded are not checked)."""
  if not is_done(workdir, stage):
    return None
  path = load_lib.stage_dir(workdir, stage) / "summary.json"
  summary = json.loads(path.read_text())
  want, got = cfg.data.get("world", "classic"), summary.get("data_world")
  if got is not None and got != want:
    raise ValueError(f"{path}: stage {stage} was trained with data.world={got!r}, but this config "
                     f"({cfg.stage}) uses data.world={want!r}; use a workdir of its own for each world")
  return summary


def _upstream(cfg: ConfigDict, config_path: str, workdir: str, overrides: dict) -> tuple[ConfigDict, str] | None:
  """(config, path) of the stage cfg starts from when it is a missing stage of `workdir`."""
  if not cfg.init.startswith("stage:") or done_summary(cfg, workdir, cfg.init.split(":", 1)[1]) is not None:
    return None
  path = upstream_config_path(cfg, config_path)
  return apply_overrides(load_config(path), overrides), path


def plan_chain(cfg: ConfigDict, config_path: str, workdir: str, overrides: dict | None = None
               ) -> list[tuple[ConfigDict, bool]]:
  """The stages `run_chain` would visit, upstream first, as (config as run, already done)."""
  up = _upstream(cfg, config_path, workdir, overrides or {})
  chain = plan_chain(*up, workdir, overrides) if up else []
  return chain + [(as_run(cfg), is_done(workdir, cfg.stage))]


def run_chain(cfg: ConfigDict, config_path: str, workdir: str, overrides: dict | None = None) -> dict:
  """Runs the stage of `cfg`, after the stages it starts from (recursively) when they are missing."""
  overrides = overrides or {}
  up = _upstream(cfg, config_path, workdir, overrides)
  if up:
    print(f"[chain] {cfg.stage} starts from {cfg.init.split(':', 1)[1]}, which is not in {workdir} yet: "
          f"running {up[1]}", flush=True)
    run_chain(*up, workdir, overrides)
  out_dir = load_lib.stage_dir(workdir, cfg.stage)
  summary = done_summary(cfg, workdir, cfg.stage)
  if summary is not None:
    print(f"[chain] {cfg.stage} is already done in {workdir}", flush=True)
    return summary
  if cfg.stage not in STAGES:
    raise KeyError(f"config stage={cfg.stage!r}; known stages: {sorted(STAGES)}")
  cfg = as_run(cfg)
  folder = bundled.find(cfg)
  if folder is not None:
    tok = load_lib.load_tokenizer(cfg.init, workdir=workdir, tokenizer=cfg.tokenizer, what="config init")
    summary = bundled.install(folder, str(out_dir), tok)
    print(f"[chain] {cfg.stage}: installed the bundled result of this exact config ({folder}: trained in "
          f"{summary.get('wall_seconds', 0) / 60:.0f} min, {summary.get('measured_on', 'see its summary.json')}). "
          f"Pass --config.bundled=False to train it here instead.", flush=True)
  else:
    summary = STAGES[cfg.stage](cfg, workdir)
  summary = {**summary, "data_world": cfg.data.get("world", "classic")}
  # every process writes the same summary; through a private temporary file and a rename, so that a
  # process reading the summaries (stage_table, the next stage) never sees another's half-written file
  tmp = out_dir / f"summary.json.{jax.process_index()}.tmp"
  tmp.write_text(json.dumps(summary, indent=2, sort_keys=True))
  tmp.replace(out_dir / "summary.json")
  print(f"\nHeld-out accuracy by stage ({workdir}):\n{stage_table(workdir)}\n", flush=True)
  return summary


def ensure(stage: str, config_path: str, workdir: str, overrides: dict | None = None,
           filename: str | None = None) -> dict:
  """The summary of stage `stage` in `workdir`, running it first (with what it starts from) when
  it is missing: its config is `filename` (default `<stage>.py`) beside `config_path`, with this
  run's overrides of the shared sections (model, tokenizer, mesh, seed, smoke)."""
  path = os.path.join(os.path.dirname(os.path.abspath(config_path)), filename or f"{stage}.py")
  return run_chain(apply_overrides(load_config(path), overrides or {}), path, workdir, overrides)


def stage_table(workdir: str, names=("warmup", "rft", "grpo")) -> str:
  """Held-out accuracy of every finished stage in `workdir`, as a Markdown table."""
  summaries = [(name, json.loads(p.read_text())) for name in names
               if (p := load_lib.stage_dir(workdir, name) / "summary.json").exists()]
  decisive = any("val_decisive_first" in s for _, s in summaries)  # the principled world's column
  lines = ["| stage | steps | wall (s) | valid format | accuracy greedy | accuracy voting@k |"
           + (" decisive principle first |" if decisive else ""), "|---|---|---|---|---|---|" + ("---|" if decisive else "")]
  chance = None
  for name, s in summaries:
    chance = s.get("val_chance", chance)
    if s.get("bundled"):
      name += " (bundled)"
    voting = {k: v for k, v in s.items() if k.startswith("val_voting@") and k.endswith("_accuracy")}
    vk, vv = next(iter(voting.items()), ("", None))
    fmt = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"
    voted = f"{fmt(vv)} (k={vk[len('val_voting@'):-len('_accuracy')]})" if vk else "-"
    lines.append(f"| {name} | {s.get('steps')} | {s.get('wall_seconds', 0):.0f} | {fmt(s.get('val_valid_rate'))} | "
                 f"{fmt(s.get('val_accuracy'))} | {voted} |" + (f" {fmt(s.get('val_decisive_first'))} |" if decisive else ""))
  if chance is not None:
    lines.append(f"\nChance on these held-out items (a uniformly random pick): {100 * chance:.1f}%.")
  return "\n".join(lines)
