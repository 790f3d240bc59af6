"""RFT and GRPO at smoke sizes from the bundled warm-up (a model that writes valid critiques), so
that the paths a tiny random model never reaches run: RFT keeps trajectories and GRPO's groups
have nonzero advantages."""
import json
import pathlib

from spct_jax.train import chain

ROOT = pathlib.Path(__file__).resolve().parents[2]
SMALL = {"eval.n": 4, "eval.k": 2, "eval.max_new_tokens": 160, "train.log_every": 1, "train.ckpt_every": 10}


def _config(name, **fields):
  cfg = chain.load_config(str(ROOT / "configs" / f"{name}.py"))
  for key, value in {**SMALL, **fields}.items():
    section, leaf = key.split(".")
    cfg[section][leaf] = value
  return cfg


def test_rft_keeps_trajectories_and_grpo_sees_nonzero_advantages(tmp_path):
  rft = _config("rft", **{"rft.n_items": 12, "rft.n_samples": 4, "rft.max_new_tokens": 160, "rft.sampler_batch": 12,
                          "rft.warmup_rows_per_item": 0.0, "train.steps": 2, "train.batch_size": 8})
  rft.init = "bundled:warmup"
  chain.run_chain(rft, str(ROOT / "configs" / "rft.py"), str(tmp_path))
  stats = json.loads((tmp_path / "rft" / "rft_stats.json").read_text())
  assert stats["invalid"] < stats["samples"] // 4, stats  # the bundled model writes valid critiques
  assert stats["kept_items"] > 0 and stats["trajectories"] > 0, stats
  grpo = _config("grpo", **{"grpo.n_items": 16, "grpo.prompts_per_step": 4, "grpo.group_size": 4,
                            "grpo.max_new_tokens": 160, "grpo.sampler_batch": 4, "grpo.mu": 2, "train.steps": 2})
  chain.run_chain(grpo, str(ROOT / "configs" / "grpo.py"), str(tmp_path))
  steps = [json.loads(x) for x in (tmp_path / "grpo" / "metrics.jsonl").read_text().splitlines()]
  steps = [m for m in steps if "signal_groups" in m]
  assert len(steps) == 2 and max(m["signal_groups"] for m in steps) > 0, steps
  assert all(m["valid_rate"] > 0.5 for m in steps), steps
