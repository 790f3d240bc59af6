"""Stage plumbing: config overrides across the chain, smoke shrinking, where data and weights come from."""
import json
import pathlib

import pytest

from spct_jax.train import stages, warmup

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_shared_overrides_reach_upstream_stages_and_others_do_not():
  cfg = stages.load_config(str(ROOT / "configs" / "warmup.py"))
  out = stages.apply_overrides(cfg, {"model.preset": "tiny", "seed": 7, "train.steps": 1, "grpo.beta": 0.5})
  assert out.model.preset == "tiny" and out.seed == 7
  assert out.train.steps == cfg.train.steps  # stage-specific: not propagated
  assert cfg.model.preset == "small"  # the input is not modified


def test_smoke_shrinks_sizes_only():
  cfg = stages.load_config(str(ROOT / "configs" / "grpo.py"))
  small = stages.shrink(cfg)
  assert small.model.preset == "tiny" and small.train.steps <= 3 and small.grpo.group_size <= 2
  assert small.train.batch_size == small.grpo.prompts_per_step * small.grpo.group_size
  assert (small.stage, small.init, small.grpo.kl_estimator) == (cfg.stage, cfg.init, cfg.grpo.kl_estimator)


def test_upstream_config_path():
  cfg = stages.load_config(str(ROOT / "configs" / "grpo.py"))
  assert stages.upstream_config_path(cfg, str(ROOT / "configs" / "grpo.py")) == str(ROOT / "configs" / "rft.py")
  cfg = stages.load_config(str(ROOT / "configs" / "grpo_gemma2_2b.py"))
  assert stages.upstream_config_path(cfg, str(ROOT / "configs" / "grpo_gemma2_2b.py")).endswith("rft_gemma2.py")


def test_items_from_a_rewardbench_file(tmp_path):
  path = tmp_path / "rb.jsonl"
  path.write_text("\n".join(json.dumps({"prompt": f"q{i}?", "chosen": f"good {i}", "rejected": f"bad {i}",
                                        "subset": "chat", "id": str(i)}) for i in range(5)))
  cfg = stages.load_config(str(ROOT / "configs" / "rft.py"))
  cfg.data.source = str(path)
  got = warmup.items(cfg, 3, seed=0)
  assert len(got) == 3 and all(ex.n == 2 and ex.responses[ex.label].startswith("good") for ex in got)
  cfg.data.source = str(tmp_path / "missing.jsonl")
  with pytest.raises(Exception, match="missing.jsonl"):
    warmup.items(cfg, 3, seed=0)


def test_unknown_init_is_a_config_error(tmp_path):
  cfg = stages.load_config(str(ROOT / "configs" / "warmup.py"))
  cfg.init = "s3://weights"
  with pytest.raises(ValueError, match="init='s3://weights'"):
    stages.initial_params(cfg, str(tmp_path))
