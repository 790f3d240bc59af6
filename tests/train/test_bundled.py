"""Bundled stage results: fingerprints, save -> find -> install, and the shipped warm-ups match
configs/warmup.py and configs/warmup_principled.py exactly (editing one without rebundling fails
here)."""
import json
import pathlib

import jax
import numpy as np
import pytest

from spct_jax.model import bundled, orbax_io, transformer
from spct_jax.model import config as model_config
from spct_jax.tokenizer import Tokenizer
from spct_jax.train import chain, stage

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _cfg(name="warmup"):
  return chain.load_config(str(ROOT / "configs" / f"{name}.py"))


def test_fingerprint_ignores_logging_and_sees_everything_else():
  cfg = _cfg()
  base = bundled.fingerprint(cfg)
  for key, value in (("train.log_every", 3), ("train.ckpt_every", 7), ("bundled", False),
                     ("checkpoint.keep_last", 9), ("smoke_sizes.train.steps", 5),
                     ("model.scan_layers", True), ("model.remat_policy", "dots"), ("model.lora_alpha", 3.0),
                     ("data.principle_skill", 0.9)):  # the classic world has no principle skill
    other = cfg.copy_and_resolve_references()
    section, _, leaf = key.rpartition(".")
    (other[section] if section else other)[leaf] = value
    assert bundled.fingerprint(other) == base, key
  for key, value in (("seed", 1), ("train.steps", 5), ("model.preset", "tiny"), ("data.prompt_loss_weight", 0.5),
                     ("model.lora_rank", 4), ("data.world", "principled")):
    other = cfg.copy_and_resolve_references()
    section, _, leaf = key.rpartition(".")
    (other[section] if section else other)[leaf] = value
    assert bundled.fingerprint(other) != base, key
  assert bundled.fingerprint(chain.smoke(cfg)) != base  # smoke mode never installs it


def test_save_find_install_round_trip(tmp_path, monkeypatch):
  cfg = _cfg()
  mcfg = model_config.get_config("tiny")
  params = transformer.init_params(mcfg, jax.random.key(0))
  stage_dir = tmp_path / "work" / "warmup"
  orbax_io.save(params, model_config.to_dict(mcfg), str(stage_dir / "final"))
  monkeypatch.setattr(bundled, "_root", lambda: str(tmp_path / "assets"))
  bundled.save(cfg, str(stage_dir), {"stage": "warmup", "val_accuracy": 0.5, "wall_seconds": 60.0},
               str(tmp_path / "assets" / "warmup"))
  assert bundled.find(cfg) == str(tmp_path / "assets" / "warmup")
  off = cfg.copy_and_resolve_references()
  off.bundled = False
  assert bundled.find(off) is None
  moved = cfg.copy_and_resolve_references()
  moved.seed = 3
  assert bundled.find(moved) is None
  other_world = cfg.copy_and_resolve_references()  # another world's warm-up has a folder of its own
  other_world.data.world = "principled"
  assert bundled.name(cfg) == "warmup" and bundled.name(other_world) == "warmup_principled"
  assert bundled.find(other_world) is None
  summary = bundled.install(bundled.find(cfg), str(tmp_path / "other" / "warmup"), Tokenizer.load())
  assert summary["bundled"] is True and summary["val_accuracy"] == 0.5
  got, got_cfg = orbax_io.load(str(tmp_path / "other" / "warmup" / "final"))
  assert got_cfg == model_config.to_dict(mcfg)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert (tmp_path / "other" / "warmup" / "final" / "tokenizer.model").exists()


@pytest.mark.parametrize("folder_name, config", [("warmup", "warmup"), ("warmup_principled", "warmup_principled")])
def test_the_shipped_warmups_are_the_results_of_their_configs(folder_name, config):
  folder = pathlib.Path(bundled._root()) / folder_name
  if not folder.exists():
    pytest.skip(f"no bundled {folder_name} in this checkout")
  cfg = _cfg(config)
  assert bundled.find(cfg) == str(folder), f"configs/{config}.py changed: rebuild with scripts/bundle_stage.py"
  summary = json.loads((folder / "summary.json").read_text())
  assert summary["steps"] == cfg.train.steps and "val_accuracy" in summary
  params, mcfg, _ = bundled.load(str(folder))
  assert model_config.from_dict(mcfg) == model_config.get_config(cfg.model.preset)
  assert sum(np.asarray(x).size for x in jax.tree.leaves(params)) == transformer.param_count(model_config.from_dict(mcfg))


def test_init_bundled_starts_from_the_shipped_params(tmp_path):
  cfg = _cfg()
  cfg.init = "bundled:warmup"
  m = stage.load_model(cfg, str(tmp_path))
  mcfg, params = m.config, m.params
  want, saved, _ = bundled.load(bundled.folder("warmup"))
  assert mcfg == model_config.from_dict(saved)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(want)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  cfg.init = "bundled:nope"
  with pytest.raises(FileNotFoundError, match=r"init='bundled:nope'.*bundled: \['warmup', 'warmup_principled'\]"):
    stage.load_model(cfg, str(tmp_path))


def test_the_no_principles_baseline_chain_starts_from_the_bundled_warmup(tmp_path):
  path = str(ROOT / "configs" / "grpo_no_principles.py")
  planned = chain.plan_chain(chain.load_config(path), path, str(tmp_path))
  assert [(c.stage, c.init, c.data.variant) for c, _ in planned] == [
      ("warmup", "bundled:warmup", "no_principles"), ("rft", "stage:warmup", "no_principles"),
      ("grpo", "stage:rft", "no_principles")]
  assert bundled.find(planned[0][0]) is None  # it trains (from the bundled params), not installs
