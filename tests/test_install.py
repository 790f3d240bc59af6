"""A regular install, used from outside the checkout: the wheel ships the configs and assets, and
the main command (smoke mode), the Python API and `score` run from another directory."""
import json
import os
import subprocess


def _run(python, args, cwd, timeout=900):
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "PYTHONPATH")}
  proc = subprocess.run([python, *args], cwd=cwd, env={**env, "JAX_PLATFORMS": "cpu"}, capture_output=True,
                        text=True, timeout=timeout)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
  return proc


def test_main_command_in_smoke_mode_from_another_directory(installed_python, tmp_path):
  proc = _run(installed_python, ["-m", "spct_jax.train", "--config=grpo", "--config.smoke=True",
                                 f"--workdir={tmp_path / 'run'}"], cwd=tmp_path)
  assert "| grpo |" in proc.stdout
  assert json.loads((tmp_path / "run" / "grpo" / "summary.json").read_text())["stage"] == "grpo"


def test_api_and_score_from_another_directory(installed_python, tmp_path):
  code = ("from spct_jax import api\n"
          "grm = api.GRM.load('bundled:warmup')\n"
          "v = grm.score('Which is larger, 3 or 5?', ['5', '3'], k=2, max_new_tokens=32)\n"
          "print('samples', len(v.samples), 'voted', v.voted['sum'].scores)\n")
  proc = _run(installed_python, ["-c", code], cwd=tmp_path)
  assert "samples 2" in proc.stdout
  items = tmp_path / "items.jsonl"
  items.write_text(json.dumps({"context": "Pick the better answer: 2 plus 2?", "responses": ["4", "5"], "label": 0}) + "\n")
  _run(installed_python, ["-m", "spct_jax.score", "--model=bundled:warmup", f"--input={items}",
                          f"--output={tmp_path / 'out.jsonl'}", "--k=2", "--max_new_tokens=32"], cwd=tmp_path)
  line = json.loads((tmp_path / "out.jsonl").read_text())
  assert len(line["critiques"]) == 2 and set(line["correct"]) == {"sum", "mode"}
