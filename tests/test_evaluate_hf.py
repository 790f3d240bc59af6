"""Evaluating released-style Hugging Face models: a GRM folder (Gemma-2 causal LM) with a meta RM
folder (Gemma2ForSequenceClassification, the layout of a scalar-head reward model), both random
and tiny, through the evaluate and score CLIs."""
import json
import pathlib
import subprocess
import sys

import jax

from spct_jax.model import config, hf, reward, transformer
from spct_jax.tokenizer import Tokenizer

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_evaluate_and_score_hf_folders(tmp_path):
  cfg = config.get_config("tiny")
  grm, meta = tmp_path / "grm", tmp_path / "meta"
  hf.save(cfg, transformer.init_params(cfg, jax.random.key(0)), str(grm))
  hf.save_reward(cfg, reward.init_params(cfg, jax.random.key(1)), str(meta), pad_token_id=Tokenizer.load().pad_id)
  for folder in (grm, meta):
    Tokenizer.load().save(str(folder))
  proc = subprocess.run([sys.executable, "-m", "spct_jax.evaluate", "--config=configs/eval.py", "--config.smoke=True",
                         f"--config.init=hf:{grm}", f"--config.meta_rm=hf:{meta}", "--config.scalar_rm=",
                         "--config.compare=()", "--config.name=hf", f"--workdir={tmp_path / 'work'}"],
                        cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads((tmp_path / "work" / "eval" / "hf" / "results.json").read_text())
  assert results["model"] == f"hf:{grm}" and results["meta_rm"]["model"] == f"hf:{meta}"
  samples = [json.loads(x) for x in (tmp_path / "work" / "eval" / "hf" / "samples.jsonl").read_text().splitlines()]
  assert all(len(set(s["meta"])) > 1 for s in samples)  # a real head rates samples differently
  # a causal-LM folder is not a meta RM: the error says what to give instead
  items = tmp_path / "items.jsonl"
  items.write_text(json.dumps({"context": "Say hi.", "responses": ["hi", "bye"]}) + "\n")
  bad = subprocess.run([sys.executable, "-m", "spct_jax.score", f"--model=hf:{grm}", f"--meta_rm=hf:{grm}",
                        f"--input={items}", "--k=1", "--max_new_tokens=4"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
  assert bad.returncode != 0 and "load_reward" in bad.stderr and "ForSequenceClassification" in bad.stderr
