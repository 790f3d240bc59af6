"""python -m spct_jax.score --model=stage:grpo --workdir=runs/default --input=in.jsonl --output=out.jsonl

Scores a JSONL/Parquet file of (query, responses) with a trained GRM: k critiques per item
(response order shuffled per sample, scores mapped back), their parsed scores, the sum- and
mode-voted scores and the best response (ties reported as ties), and with --meta_rm the meta
RM's score of every critique and the meta-RM guided vote (top k_meta samples). Any format
`sources.load_examples` reads works; labels are optional ("grm" records need only `context` and
`responses`), and when present each output line also says whether the vote picked the label.

Output: one JSON object per input item, in input order:
  {"id", "responses", "critiques": [k texts], "scores": [k lists or null], "perms": [k orders],
   "voted": {"sum": [...], "mode": [...], "meta": [...]}, "best": {"sum": [i...], ...},
   "principles": [k texts], "meta_scores": [k floats] (with --meta_rm), "label",
   "correct": {"sum": bool, ...} (labelled)}
Models: bundled:<stage>, stage:<name> (in --workdir), export:<dir>, hf:<dir> (a Hugging Face
folder; its own tokenizer is used unless --tokenizer is given) or gguf:<file> / gguf:gemma3-270m
(a llama.cpp GGUF file, or the packaged Gemma 3 270M, with the tokenizer of its metadata). The same through Python:
`spct_jax.api.GRM.load(...).score_many(...)`.
"""
from __future__ import annotations

import json
import os

from absl import app, flags, logging



def score_file(*, model: str, workdir: str, input: str, output: str, format: str = "auto", k: int = 8,
               temperature: float = 0.5, meta_rm: str = "", k_meta: int = 0, max_new_tokens: int = 256,
               max_len: int = 2048, style: str = "compact", variant: str = "principles", tokenizer: str = "",
               dtype: str = "float32", batch_size: int = 16, seed: int = 0, skip_invalid: bool = False,
               mesh: tuple[int, ...] = (-1, 1, 1)) -> dict:
  """Scores `input` into `output` (module docstring) with `api.GRM`; returns counts."""
  from etils import epath

  from spct_jax import api
  from spct_jax.data import sources
  from spct_jax.evaluate import metrics

  examples, stats = sources.load_examples(input, format, skip_invalid, require_label=False)
  print(f"[score] {stats.summary()}", flush=True)
  grm = api.GRM.load(model, workdir=workdir, mesh_shape=mesh, dtype=dtype, tokenizer=tokenizer, style=style,
                     variant=variant, meta_rm=meta_rm)
  verdicts = grm.score_many(examples, k=k, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed,
                            k_meta=k_meta or None, batch_size=batch_size, max_len=max_len)
  output = output or os.path.splitext(input)[0] + ".scored.jsonl"
  counts = {"items": 0, "critiques": 0, "invalid": 0, "labelled": 0, "correct_sum": 0}
  with epath.Path(output).open("w") as f:
    for ex, v in zip(examples, verdicts):
      rec = {"id": ex.id, "responses": list(ex.responses), "critiques": [s.text for s in v.samples],
             "principles": [s.principles for s in v.samples], "scores": [s.scores for s in v.samples],
             "perms": [list(s.order) for s in v.samples],
             "voted": {m: r.scores for m, r in v.voted.items()}, "best": {m: list(r.best) for m, r in v.voted.items()}}
      if grm.meta_rm is not None:
        rec["meta_scores"] = [s.meta_score for s in v.samples]
      if ex.label is not None:
        rec["label"] = ex.label
        rec["correct"] = {m: metrics.voted_correct(ex, r, "mode" if m == "mode" else "sum") for m, r in v.voted.items()}
        counts["labelled"] += 1
        counts["correct_sum"] += rec["correct"]["sum"]
      counts["items"] += 1
      counts["critiques"] += len(v.samples)
      counts["invalid"] += sum(s.scores is None for s in v.samples)
      f.write(json.dumps(rec, ensure_ascii=False) + "\n")
  print(f"[score] wrote {output}: {counts['items']} items, {counts['critiques']} critiques "
        f"({counts['invalid']} invalid)" + (f"; sum-voting accuracy on the {counts['labelled']} labelled "
        f"items: {counts['correct_sum'] / counts['labelled']:.3f}" if counts["labelled"] else ""), flush=True)
  return counts


def define_flags() -> None:
  """The command-line flags (defined only when run as a program, so importing this module
  next to another CLI's defines nothing)."""
  flags.DEFINE_string("model", "stage:grpo", "the GRM: bundled:<stage> | stage:<name> | export:<dir> | hf:<dir> | gguf:<file or name>")
  flags.DEFINE_string("workdir", "runs/default", "where stage:<name> models live")
  flags.DEFINE_string("input", None, "JSONL or Parquet file of items to score")
  flags.DEFINE_string("output", None, "JSONL file to write (default: <input>.scored.jsonl)")
  flags.DEFINE_string("format", "auto", "input format: auto | grm | rewardbench | ppe_human | ppe_correctness")
  flags.DEFINE_integer("k", 8, "critiques sampled per item")
  flags.DEFINE_float("temperature", 0.5, "sampling temperature (0 = greedy, k must be 1)")
  flags.DEFINE_string("meta_rm", "", "meta RM for guided voting: stage:<name> | export:<dir> | hf:<dir>")
  flags.DEFINE_integer("k_meta", 0, "samples that vote under meta-RM guidance (0 = k // 2)")
  flags.DEFINE_integer("max_new_tokens", 256, "critique budget in tokens")
  flags.DEFINE_integer("max_len", 2048, "longest meta-RM input (prompt + critique) in tokens")
  flags.DEFINE_enum("style", "compact", ["compact", "paper"], "GRM prompt style the model was trained with")
  flags.DEFINE_enum("variant", "principles", ["principles", "no_principles"], "GRM prompt variant")
  flags.DEFINE_string("tokenizer", "", "SentencePiece .model ('' = bundled, or the HF folder's)")
  flags.DEFINE_string("dtype", "float32", "compute dtype (bfloat16 on TPU/GPU)")
  flags.DEFINE_integer("batch_size", 16, "prompts per sampler call")
  flags.DEFINE_integer("seed", 0, "sampling seed (same seed, same critiques)")
  flags.DEFINE_bool("skip_invalid", False, "skip (and count) bad records instead of stopping")
  flags.DEFINE_string("mesh", "-1,1,1", "mesh shape data,fsdp,tensor over the local devices (-1 fills)")


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  f = flags.FLAGS
  score_file(model=f.model, workdir=f.workdir, input=f.input, output=f.output, format=f.format, k=f.k,
             temperature=f.temperature, meta_rm=f.meta_rm, k_meta=f.k_meta, max_new_tokens=f.max_new_tokens,
             max_len=f.max_len, style=f.style, variant=f.variant, tokenizer=f.tokenizer, dtype=f.dtype,
             batch_size=f.batch_size, seed=f.seed, skip_invalid=f.skip_invalid,
             mesh=tuple(int(x) for x in f.mesh.split(",")))


if __name__ == "__main__":
  define_flags()
  flags.mark_flag_as_required("input")
  app.run(main)
