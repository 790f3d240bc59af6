"""The whole chain (warm-up -> RFT -> GRPO), the meta RM, the scalar RM, evaluation and scoring,
through the CLIs in smoke mode (sizes only shrink), in one workdir shared by the tests below."""
import json
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _run(*args, timeout=600):
  proc = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
  return proc


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("chain")
  proc = _run("spct_jax.train", "--config=configs/grpo.py", "--config.smoke=True", f"--workdir={workdir}")
  return workdir, proc


def test_grpo_config_runs_the_chain_in_smoke_mode(chain):
  tmp_path, proc = chain
  for stage in ("warmup", "rft", "grpo"):
    summary = json.loads((tmp_path / stage / "summary.json").read_text())
    assert summary["stage"] == stage and "val_accuracy" in summary
    assert (tmp_path / stage / "final" / "model_config.json").exists()
    assert (tmp_path / stage / "metrics.jsonl").read_text().strip()
  rft = json.loads((tmp_path / "rft" / "rft_stats.json").read_text())
  assert rft["seen"] == rft["kept_items"] + rft["too_easy"] + rft["unsolved"]
  assert "Held-out accuracy by stage" in proc.stdout and "| grpo |" in proc.stdout
  assert "Chance on these held-out items" in proc.stdout
  assert "installed the bundled result" not in proc.stdout  # smoke mode changes the warm-up config: it trains
  # rerunning a finished chain does nothing but report
  again = _run("spct_jax.train", "--config=configs/grpo.py", "--config.smoke=True", f"--workdir={tmp_path}")
  assert "grpo is already done" in again.stdout


def test_the_readme_main_command_runs_its_chain_in_smoke_mode(tmp_path):
  """The README's first command (the principled world's chain), shrunk: every stage finishes,
  validates per family and reports the decisive-principle column."""
  first = (ROOT / "README.md").read_text().split("```bash\n", 1)[1].splitlines()[0]
  config = next(a for a in first.split() if a.startswith("--config="))
  assert config == "--config=configs/grpo_principled.py"
  proc = _run("spct_jax.train", config, "--config.smoke=True", f"--workdir={tmp_path}")
  for stage in ("warmup", "rft", "grpo"):
    summary = json.loads((tmp_path / stage / "summary.json").read_text())
    assert summary["stage"] == stage and "val_decisive_first" in summary
    assert any(k.startswith("val_accuracy_") for k in summary), summary
  assert "decisive principle first |" in proc.stdout and "| grpo |" in proc.stdout
  rft = json.loads((tmp_path / "rft" / "summary.json").read_text())
  if rft["steps"] == 0:  # the smoke warm-up solves nothing and the teacher's rows were wrong: said so
    assert "nothing to fine-tune on" in proc.stdout


def test_evaluate_trains_what_it_needs_and_writes_every_output(chain):
  workdir, _ = chain
  proc = _run("spct_jax.evaluate", "--config=configs/eval.py", "--config.smoke=True", f"--workdir={workdir}",
              f"--config.no_principles=export:{workdir / 'rft' / 'final'}")
  for stage in ("meta_rm", "scalar_rm"):  # missing from the workdir: trained first
    summary = json.loads((workdir / stage / "summary.json").read_text())
    assert summary["stage"] == stage and summary["steps"] == 3
  out = workdir / "eval" / "stage_grpo"
  results = json.loads((out / "results.json").read_text())
  pool = results["pool"]
  assert results["n_items"] == 4 and pool == 4
  assert {"greedy", f"voting@{pool}", f"mode_voting@{pool}", "curve", "meta_rm", "scalar_rm"} <= set(results)
  assert results["curve"]["ks"] == [1, 2, 4]
  assert set(results["curve"]["accuracy"]) == {"sum", "mode", "meta", "no principles"}
  assert results["no_principles"]["model"].startswith("export:") and "greedy" in results["no_principles"]
  assert 0.0 <= results["greedy"]["valid_rate"] <= 1.0
  assert (out / "curve.png").stat().st_size > 1000
  assert "| k | sum | mode | meta |" in (out / "results.md").read_text()
  samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
  assert len(samples) == 4 and all(len(s["texts"]) == pool == len(s["meta"]) for s in samples)
  assert "voting@k" in proc.stdout
  assert re.search(r"^\[grpo meta RM\] (\d+)/\1 batch", proc.stdout, re.M)  # the meta RM's scoring shows its progress
  models = results["models"]  # every stage of the chain and the baselines, on the same items
  assert set(models) == {"warmup", "rft", "grpo", "no_principles", "scalar_rm"}
  for name in ("warmup", "rft", "grpo", "no_principles"):
    assert set(models[name]["sum"]) == set(models[name]["meta"]) == {"1", "2", "4"}
    assert set(models[name]["sum_ties_random"]) == {"1", "2", "4"}  # the paper's tie rule beside
    assert 0.0 <= models[name]["greedy"] <= 1.0
  diffs = results["differences"]
  for label in ("rft - warmup, greedy", "grpo - rft, greedy", "grpo sum@4 - grpo greedy", "grpo meta@4 - grpo sum@4",
                "grpo - no_principles, greedy", "grpo sum@4 - no_principles sum@4", "grpo - scalar_rm, greedy",
                "grpo sum@2 - grpo sum@1", "warmup - no_principles, greedy", "rft - no_principles, greedy",
                "grpo sum@4 - grpo greedy, ties at random", "grpo sum@2 - grpo sum@1, ties at random"):
    d = diffs[label]
    assert d["n"] == 4 and d["ci"][0] <= d["diff"] <= d["ci"][1], (label, d)
  assert "paired difference" in (out / "results.md").read_text()


def test_evaluate_greedy_only_beside_a_bundled_model(chain):
  workdir, _ = chain  # eval.pool = 0: one greedy critique per item and model, no pool, no voting@k
  proc = _run("spct_jax.evaluate", "--config=configs/eval.py", "--config.smoke=True", f"--workdir={workdir}",
              "--config.eval.pool=0", "--config.compare=('bundled:warmup', 'stage:warmup')", "--config.meta_rm=",
              "--config.scalar_rm=", "--config.name=greedy_only")
  out = workdir / "eval" / "greedy_only"
  results = json.loads((out / "results.json").read_text())
  assert results["pool"] == 0 and not any(k.startswith(("voting@", "mode_voting@")) for k in results)
  assert results["curve"]["ks"] == [] and not (out / "curve.png").exists()
  assert set(results["models"]) == {"bundled_warmup", "warmup", "grpo"}  # the shipped 1.5M beside the stages
  assert not results["models"]["grpo"].get("sum") and 0.0 <= results["models"]["grpo"]["greedy"] <= 1.0
  assert set(results["differences"]) == {"warmup - bundled_warmup, greedy", "grpo - warmup, greedy"}
  samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
  assert len(samples) == 4 and all(len(s["texts"]) == 1 for s in samples)  # the greedy critiques
  assert "voting@0" not in (out / "results.md").read_text() and "greedy only" in proc.stdout
  same = subprocess.run([sys.executable, "-m", "spct_jax.evaluate", "--config=configs/eval.py", "--config.smoke=True",
                         f"--workdir={workdir}", "--config.eval.pool=0", "--config.compare=('stage:grpo',)",
                         "--config.meta_rm=", "--config.scalar_rm=", "--config.name=twice"],
                        cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert same.returncode != 0 and "each model needs a name of its own" in same.stderr


def test_evaluate_compared_stages_greedy_only_beside_the_main_pool(chain):
  workdir, _ = chain  # eval.compare_pool = 0: the compared stages get a greedy critique, the main GRM its pool
  _run("spct_jax.evaluate", "--config=configs/eval.py", "--config.smoke=True", f"--workdir={workdir}",
       "--config.eval.compare_pool=0", "--config.compare=('stage:warmup',)", "--config.meta_rm=",
       "--config.scalar_rm=", "--config.name=compare_greedy")
  results = json.loads((workdir / "eval" / "compare_greedy" / "results.json").read_text())
  models = results["models"]
  assert not models["warmup"].get("sum") and set(models["grpo"]["sum"]) == {"1", "2", "4"}
  assert "grpo - warmup, greedy" in results["differences"] and "grpo sum@4 - grpo greedy" in results["differences"]


def test_evaluate_a_rewardbench_file(chain, tmp_path):
  workdir, _ = chain
  subsets = ["alpacaeval-easy", "mt-bench-hard", "refusals-dangerous", "math-prm", "hep-python"]
  path = tmp_path / "rb.jsonl"
  path.write_text("\n".join(json.dumps({"prompt": f"What is {i} plus {i}?", "chosen": f"It is {2 * i}.",
                                        "rejected": f"It is {2 * i + 1}.", "subset": subsets[i % 5],
                                        "id": f"rb{i}", "chosen_model": "a", "rejected_model": "b"})
                            for i in range(6)) + "\n")
  _run("spct_jax.evaluate", "--config=configs/eval.py", "--config.smoke=True", f"--workdir={workdir}",
       f"--config.data.source={path}", "--config.eval.n=0", "--config.name=rb", "--config.meta_rm=",
       "--config.scalar_rm=")
  results = json.loads((workdir / "eval" / "rb" / "results.json").read_text())
  assert results["format"] == "rewardbench" and results["n_items"] == 6
  rb = results["greedy"]["rewardbench"]
  assert set(rb["sections"]) == {"Chat", "Chat Hard", "Safety", "Reasoning"} and rb["unknown"] == []
  assert "meta_rm" not in results and "scalar_rm" not in results


def test_evaluate_a_ppe_correctness_file(chain, tmp_path):
  workdir, _ = chain
  path = tmp_path / "ppe.jsonl"
  rows = []
  for i in range(3):
    rec = {"question_id": f"q{i}", "prompt": f"Name a color number {i}."}
    for j in range(4):
      rec[f"response_{j + 1}"] = f"Color {j} for {i}."
    rec["scores"] = [j == i % 4 for j in range(4)]
    rec["sampled_conflict_pairs"] = [[i % 4, (i + 1) % 4]]
    rows.append(json.dumps(rec))
  path.write_text("\n".join(rows) + "\n")
  _run("spct_jax.evaluate", "--config=configs/eval.py", "--config.smoke=True", f"--workdir={workdir}",
       f"--config.data.source={path}", "--config.eval.n=0", "--config.name=ppe", "--config.meta_rm=",
       "--config.scalar_rm=")
  results = json.loads((workdir / "eval" / "ppe" / "results.json").read_text())
  assert results["format"] == "ppe_correctness" and results["n_items"] == 3  # one pair per record
  assert results["best_of_k"]["n"] == 3 and results["best_of_k"]["n_pairs"] == 3


def test_evaluate_a_ppe_human_preference_file(chain, tmp_path):
  workdir, _ = chain
  path = tmp_path / "ppe_human.jsonl"
  winners = ["model_a", "model_b", "tie", "model_b", "model_a"]
  path.write_text("\n".join(json.dumps({"question_id": f"h{i}", "prompt": f"Spell the number {i}.",
                                        "response_1": f"It is {i}.", "response_2": f"It is {i + 1}.",
                                        "model_a": "a", "model_b": "b", "winner": w})
                            for i, w in enumerate(winners)) + "\n")
  proc = _run("spct_jax.evaluate", "--config=configs/eval.py", "--config.smoke=True", f"--workdir={workdir}",
              f"--config.data.source={path}", "--config.eval.n=0", "--config.name=ppe_human", "--config.meta_rm=",
              "--config.scalar_rm=")
  results = json.loads((workdir / "eval" / "ppe_human" / "results.json").read_text())
  assert results["format"] == "ppe_human" and results["n_items"] == 4  # the tie has no best response
  assert "tie" in proc.stdout  # skipped and counted, not dropped silently
  samples = [json.loads(x) for x in (workdir / "eval" / "ppe_human" / "samples.jsonl").read_text().splitlines()]
  assert [s["label"] for s in samples] == [0, 1, 1, 0]


def test_score_cli_writes_one_line_per_item(chain, tmp_path):
  workdir, _ = chain
  if not (workdir / "meta_rm" / "summary.json").exists():  # when run alone
    _run("spct_jax.train", "--config=configs/meta_rm.py", "--config.smoke=True", f"--workdir={workdir}")
  path = tmp_path / "in.jsonl"
  path.write_text(json.dumps({"context": "Pick the better answer: what is 2 plus 2?", "responses": ["4", "5"]}) + "\n"
                  + json.dumps({"context": [{"role": "user", "text": "Say hi."}], "responses": ["hi", "bye"],
                                "label": 0, "id": "x"}) + "\n")
  out = tmp_path / "out.jsonl"
  proc = _run("spct_jax.score", "--model=stage:grpo", f"--workdir={workdir}", f"--input={path}",
              f"--output={out}", "--k=2", "--max_new_tokens=8", "--meta_rm=stage:meta_rm")
  lines = [json.loads(x) for x in out.read_text().splitlines()]
  assert len(lines) == 2 and lines[1]["id"] == "x"
  assert all(len(x["critiques"]) == 2 == len(x["scores"]) == len(x["meta_scores"]) for x in lines)
  assert set(lines[0]["voted"]) == {"sum", "mode", "meta"} and "label" not in lines[0]
  assert set(lines[1]["correct"]) == {"sum", "mode", "meta"}
  assert "wrote" in proc.stdout


def test_exports_score_an_example_like_the_checkpoint(chain, tmp_path):
  from spct_jax import export, score
  workdir, _ = chain
  out = tmp_path / "export"
  export.export(str(workdir), "grpo", str(out), hf_folder=True)
  assert (out / "tokenizer.model").exists() and (out / "hf" / "tokenizer.model").exists()
  items = tmp_path / "items.jsonl"
  items.write_text(json.dumps({"context": "Which is larger, 3 or 5?", "responses": ["5", "3"], "label": 0}) + "\n")
  lines = {}
  for name, model in (("stage", "stage:grpo"), ("orbax", f"export:{out}"), ("hf", f"hf:{out / 'hf'}")):
    dest = tmp_path / f"{name}.jsonl"
    score.score_file(model=model, workdir=str(workdir), input=str(items), output=str(dest), k=1,
                     temperature=0.0, max_new_tokens=12, batch_size=1)
    lines[name] = json.loads(dest.read_text())
  assert lines["stage"]["critiques"][0]  # something was generated
  for name in ("orbax", "hf"):
    assert lines[name]["critiques"] == lines["stage"]["critiques"], name
    assert lines[name]["scores"] == lines["stage"]["scores"], name
