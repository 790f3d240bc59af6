"""The whole chain (warm-up -> RFT -> GRPO) through the CLI in smoke mode: sizes only shrink."""
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_grpo_config_runs_the_chain_in_smoke_mode(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "spct_jax.train", "--config=configs/grpo.py",
                         "--config.smoke=True", f"--workdir={tmp_path}"], cwd=ROOT, capture_output=True,
                        text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  for stage in ("warmup", "rft", "grpo"):
    summary = json.loads((tmp_path / stage / "summary.json").read_text())
    assert summary["stage"] == stage and "val_accuracy" in summary
    assert (tmp_path / stage / "final" / "model_config.json").exists()
    assert (tmp_path / stage / "metrics.jsonl").read_text().strip()
  rft = json.loads((tmp_path / "rft" / "rft_stats.json").read_text())
  assert rft["seen"] == rft["kept_items"] + rft["too_easy"] + rft["unsolved"]
  assert "Held-out accuracy by stage" in proc.stdout and "| grpo |" in proc.stdout
  # rerunning a finished chain does nothing but report
  again = subprocess.run([sys.executable, "-m", "spct_jax.train", "--config=configs/grpo.py",
                          "--config.smoke=True", f"--workdir={tmp_path}"], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
  assert again.returncode == 0 and "grpo is already done" in again.stdout
