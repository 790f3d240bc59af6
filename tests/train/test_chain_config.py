"""Configs and the chain's plumbing: overrides across the chain, derived fields, smoke sizes,
where data and weights come from."""
import json
import pathlib

import pytest

from spct_jax import configs
from spct_jax.train import chain, stage

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = configs.names()


def _load(name):
  return chain.load_config(str(ROOT / "configs" / f"{name}.py"))


def test_shared_overrides_reach_upstream_stages_and_others_do_not():
  cfg = _load("warmup")
  out = chain.apply_overrides(cfg, {"model.preset": "tiny", "seed": 7, "train.steps": 1, "grpo.beta": 0.5})
  assert out.model.preset == "tiny" and out.seed == 7
  assert out.train.steps == cfg.train.steps  # stage-specific: not propagated
  assert cfg.model.preset == "small"  # the input is not modified


@pytest.mark.parametrize("key, value", [("grpo.group_size", 4), ("grpo.prompts_per_step", 3)])
def test_grpo_rollout_rows_follow_the_group_size_and_prompts_per_step_alone(key, value):
  cfg = _load("grpo")
  out = chain.apply_overrides(cfg, {key: value}, sections=("grpo",))
  assert out.train.batch_size == out.grpo.prompts_per_step * out.grpo.group_size != cfg.train.batch_size
  assert cfg.train.batch_size == cfg.grpo.prompts_per_step * cfg.grpo.group_size == 32  # input untouched
  real = chain.apply_overrides(_load("grpo_gemma2_27b"), {key: value}, sections=("grpo",))
  assert real.train.batch_size == real.grpo.prompts_per_step * real.grpo.group_size


def test_grpo_group_size_alone_on_the_command_line(tmp_path):
  """The train CLI with only --config.grpo.group_size: the chain plans GRPO with the derived batch."""
  import subprocess
  import sys
  proc = subprocess.run([sys.executable, "-m", "spct_jax.train", "--config=configs/grpo.py", "--config.grpo.group_size=4",
                         f"--workdir={tmp_path}", "--dry_run"], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "grpo" in proc.stdout and "batch=16" in proc.stdout


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_shrinks_in_smoke_mode_and_keeps_its_code_path(name):
  cfg = _load(name)
  small = chain.smoke(cfg)
  assert small.model.preset == "tiny" and small.train.steps <= 3
  assert (small.stage, small.init, small.data.variant, small.data.style) == (
      cfg.stage, cfg.init, cfg.data.variant, cfg.data.style)
  for section in ("rft", "grpo", "meta_rm", "scalar_rm"):
    if isinstance(cfg.get(section), type(cfg)):  # a stage section (eval's meta_rm is a model spec)
      assert small[section].n_items <= 8
  if "grpo" in cfg:
    assert small.grpo.group_size <= 2 and small.train.batch_size == small.grpo.prompts_per_step * small.grpo.group_size
    assert small.grpo.kl_estimator == cfg.grpo.kl_estimator


def test_a_smoke_size_must_name_a_field_of_the_config():
  cfg = _load("warmup")
  cfg.smoke_sizes.train.stepz = 2
  with pytest.raises(KeyError, match="smoke_sizes.train.stepz"):
    chain.smoke(cfg)


def test_upstream_config_path():
  cfg = _load("grpo")
  assert chain.upstream_config_path(cfg, str(ROOT / "configs" / "grpo.py")) == str(ROOT / "configs" / "rft.py")
  cfg = _load("grpo_gemma2_2b")
  assert chain.upstream_config_path(cfg, str(ROOT / "configs" / "grpo_gemma2_2b.py")).endswith("rft_gemma2.py")


def test_items_from_a_rewardbench_file(tmp_path):
  path = tmp_path / "rb.jsonl"
  path.write_text("\n".join(json.dumps({"prompt": f"q{i}?", "chosen": f"good {i}", "rejected": f"bad {i}",
                                        "subset": "chat", "id": str(i)}) for i in range(5)))
  cfg = _load("rft")
  cfg.data.source = str(path)
  got = stage.items(cfg, 3, seed=0)
  assert len(got) == 3 and all(ex.n == 2 and ex.responses[ex.label].startswith("good") for ex in got)
  cfg.data.source = str(tmp_path / "missing.jsonl")
  with pytest.raises(Exception, match="missing.jsonl"):
    stage.items(cfg, 3, seed=0)


def test_unknown_init_is_a_config_error(tmp_path):
  cfg = _load("warmup")
  cfg.init = "s3://weights"
  with pytest.raises(ValueError, match="init='s3://weights'"):
    stage.load_model(cfg, str(tmp_path))


def test_seeds_are_one_table_of_distinct_training_streams():
  """Items of different stages never share a generator seed with each other or the held-out splits."""
  item_streams = ("warmup", "rft", "grpo", "meta_rm", "scalar_rm", "rft_teacher", "validation", "test")
  offsets = [stage.SEEDS[s] for s in item_streams]
  assert len(set(offsets)) == len(offsets)
  cfg = _load("grpo")
  assert stage.seed(cfg, "validation") == cfg.seed + stage.SEEDS["validation"]


def test_a_finished_stage_of_another_world_is_an_error_not_reused(tmp_path):
  """A workdir's finished stage records its data.world; a config of another world that would
  reuse it (as itself or as its upstream) stops with the file and both worlds named."""
  (tmp_path / "warmup").mkdir()
  (tmp_path / "warmup" / "summary.json").write_text(json.dumps({"stage": "warmup", "data_world": "classic"}))
  path = str(ROOT / "configs" / "rft_principled.py")
  with pytest.raises(ValueError, match=r"warmup/summary.json.*data.world='classic'.*data.world='principled'"):
    chain.run_chain(chain.load_config(path), path, str(tmp_path))
  path = str(ROOT / "configs" / "warmup.py")  # the same world: reused as done, nothing trained
  assert chain.run_chain(chain.load_config(path), path, str(tmp_path))["data_world"] == "classic"


def test_stage_table_shows_the_decisive_principle_column_and_greedy_only_stages(tmp_path):
  rows = {"warmup": {"steps": 300, "wall_seconds": 10.0, "val_accuracy": 0.4, "val_valid_rate": 1.0, "val_chance": 0.35,
                     "val_voting@8_accuracy": 0.375, "val_decisive_first": 0.39, "bundled": True},
          "rft": {"steps": 60, "wall_seconds": 20.0, "val_accuracy": 0.6, "val_valid_rate": 0.99, "val_chance": 0.35,
                  "val_decisive_first": 0.625}}   # a stage validated greedily only (eval.k = 0)
  for name, s in rows.items():
    (tmp_path / name).mkdir()
    (tmp_path / name / "summary.json").write_text(json.dumps(s))
  table = chain.stage_table(str(tmp_path))
  assert "| accuracy voting@k | decisive principle first |" in table
  assert "| warmup (bundled) | 300 | 10 | 100.0% | 40.0% | 37.5% (k=8) | 39.0% |" in table
  assert "| rft | 60 | 20 | 99.0% | 60.0% | - | 62.5% |" in table
