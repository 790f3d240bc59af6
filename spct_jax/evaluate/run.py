"""The evaluation run: a GRM (and optionally a meta RM and a scalar-RM baseline) on held-out data.

    results = run(cfg, workdir)      # what `python -m spct_jax.evaluate` does

1. Models: `cfg.init` names the GRM (`stage:<name>` in the workdir, `export:<dir>`, `hf:<dir>`);
   `cfg.meta_rm` and `cfg.scalar_rm` name scalar-head models the same way ("" = none). A
   `stage:<name>` that is not in the workdir yet is trained first (configs/<name>.py beside the
   eval config), as the train CLI does.
2. Data (`cfg.data.source`): "synthetic" (the test split: its own generator seed, never trained
   on) or a user's RewardBench / PPE / JSONL / Parquet file (`cfg.data.format`, "" = detected).
   PPE correctness files are judged on their conflict pairs (n = 2) and, for best-of-K, each
   response alone (n = 1, greedy rating).
3. Samples: one greedy critique per item, and one pool of `eval.pool` sampled critiques per item
   (temperature `eval.temperature`, response order shuffled per sample, scores mapped back).
   Every voting@k point is computed from that one pool by subsampling (evaluate.voting_curve),
   so the curve costs one pool, not one run per k.
4. Outputs in <workdir>/eval/<name>/: results.json (every number), results.md (the tables),
   curve.png (accuracy vs k: sum, mode and meta-RM voting with 95% bootstrap bands; greedy and
   the scalar RM as horizontal lines), samples.jsonl (every critique, its scores, its meta score).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Sequence

import jax
import numpy as np

from spct_jax import evaluate
from spct_jax import judge as judge_lib
from spct_jax import sampling as sampling_lib
from spct_jax.data import pipeline, sources, synthetic
from spct_jax.data.example import GRMExample
from spct_jax.model import config as model_config
from spct_jax.model import hf
from spct_jax.grm import scores as scores_lib
from spct_jax.train import mesh as mesh_lib
from spct_jax.train import meta_rm as meta_rm_lib
from spct_jax.train import scalar_rm as scalar_rm_lib
from spct_jax.train import stages
from spct_jax.train import warmup

TEST_SEED_OFFSET = 2_000_003  # the synthetic test split: a generator seed no stage trains or validates on


@dataclasses.dataclass
class EvalData:
  """examples: what the GRM judges (n >= 2 pairs/lists, or n = 1 ratings);
  best_of_k: PPE correctness items (each response rated alone for best-of-K), possibly empty;
  source, format: where they came from; load_summary: what the reader read and skipped."""
  examples: list[GRMExample]
  best_of_k: list[sources.BestOfK]
  source: str
  format: str
  load_summary: str = ""


def load_data(cfg) -> EvalData:
  """The held-out examples cfg.data.source names (at most cfg.eval.n of them, 0 = all, drawn
  with a fixed seed)."""
  source, n = cfg.data.source, cfg.eval.n
  if source == "synthetic":
    exs = synthetic.generate(n or 256, seed=cfg.seed + TEST_SEED_OFFSET, difficulty=cfg.data.difficulty,
                             n_responses=tuple(cfg.data.n_responses))
    return EvalData(exs, [], "synthetic", "synthetic", f"synthetic test split (seed {cfg.seed + TEST_SEED_OFFSET})")
  fmt = cfg.data.format or "auto"
  if fmt == "auto":
    first = next(iter(sources.read_records(source)), None)
    if first is None:
      raise ValueError(f"config data.source={source!r}: the file has no record")
    fmt = sources.detect_format(first[1], first[0])
  items: list[sources.BestOfK] = []
  if fmt == "ppe_correctness":
    exs, items, stats = sources.ppe_correctness(source, cfg.data.skip_invalid)
  else:
    exs, stats = sources.load_examples(source, fmt, cfg.data.skip_invalid)
  if not exs:
    raise ValueError(f"config data.source={source!r}: no usable example ({stats.summary()})")
  rng = np.random.default_rng(cfg.seed)
  if n and len(exs) > n:
    exs = [exs[i] for i in sorted(rng.choice(len(exs), n, replace=False))]
  if n and len(items) > n:
    items = [items[i] for i in sorted(rng.choice(len(items), n, replace=False))]
  return EvalData(exs, items, source, fmt, stats.summary())


def load_model(spec: str, cfg, workdir: str, reward_head: bool = False):
  """(model config, params) of `spec` (stage:<name> | export:<dir> | hf:<dir>), with the config's
  compute dtype. reward_head: a scalar-head model ({"lm", "score"}; from Hugging Face, a
  `*ForSequenceClassification` folder read by hf.load_reward)."""
  if reward_head and spec.startswith("hf:"):
    mcfg, params = hf.load_reward(spec[3:])
    return model_config.replace(mcfg, dtype=cfg.model.dtype, remat=cfg.model.remat), params
  sub = cfg.copy_and_resolve_references()
  sub.init = spec
  mcfg, params = stages.initial_params(sub, workdir)
  if reward_head and "score" not in params:
    raise ValueError(f"{spec}: not a scalar-head model (no 'score' param); give a meta RM / scalar RM "
                     "stage, export or Hugging Face *ForSequenceClassification folder")
  return mcfg, params


def sample_pool(examples: Sequence[GRMExample], *, k: int, sampling, seed: int, **kwargs) -> list[judge_lib.Judgement]:
  """k critiques per example (judge_lib.judge), in batches of kwargs['batch_size'] prompts."""
  return judge_lib.judge(examples, k=k, sampling=sampling, seed=seed, **kwargs)


def meta_scores(examples: Sequence[GRMExample], judgements: Sequence[judge_lib.Judgement], *, mcfg, params,
                tok, max_len: int, style: str, batch_size: int = 32) -> tuple[list[list[float]], int]:
  """The meta RM's score of every sample (same layout as the pool) and the number of samples
  too long for max_len (scored -inf, so they never vote under meta-RM guided voting... unless
  fewer valid samples remain than k_meta)."""
  ids, where = [], []
  out = [[float("-inf")] * len(j.texts) for j in judgements]
  too_long = 0
  for e, (ex, j) in enumerate(zip(examples, judgements)):
    for s, (text, perm) in enumerate(zip(j.texts, j.perms)):
      x = meta_rm_lib.encode(ex.permuted(perm), text, tok, max_len=max_len, style=style)
      if x is None:
        too_long += 1
        continue
      ids.append(x)
      where.append((e, s))
  if ids:
    tokens, mask = pipeline.pad_right(ids, tok.pad_id)
    fn = meta_rm_lib.score_fn(mcfg)
    for (e, s), v in zip(where, meta_rm_lib.score_rows(fn, params, tokens, mask, batch_size)):
      out[e][s] = float(v)
  return out, too_long


def _finite_meta(meta: list[list[float]]) -> list[list[float]]:
  """-inf (unscorable) -> a value below every real score, as voting.meta_vote needs finite ones."""
  real = [v for row in meta for v in row if np.isfinite(v)]
  floor = (min(real) if real else 0.0) - 1.0
  return [[v if np.isfinite(v) else floor for v in row] for row in meta]


def _singles(items: Sequence[sources.BestOfK]) -> tuple[list[GRMExample], list[tuple[int, int]]]:
  """Every response of every best-of-K item as a one-response example (its rating label is a
  placeholder: 10 when correct, 1 when not; best-of-K scoring uses only the GRM's ratings)."""
  exs, owner = [], []
  for b, item in enumerate(items):
    for i, (resp, ok) in enumerate(zip(item.responses, item.correct)):
      exs.append(GRMExample(item.context, (resp,), 10 if ok else 1, item.family, f"{item.id}/{i}"))
      owner.append((b, i))
  return exs, owner


def run(cfg, workdir: str, config_path: str | None = None, overrides: dict | None = None) -> dict:
  t_start = time.perf_counter()
  e = cfg.eval
  for spec in (cfg.init, cfg.meta_rm, cfg.scalar_rm):
    if spec.startswith("stage:") and config_path is not None:
      stages.ensure(spec.split(":", 1)[1], config_path, workdir, overrides)
  name = cfg.name or cfg.init.replace(":", "_").replace("/", "_").strip("_")
  out_dir = os.path.join(os.path.abspath(workdir), "eval", name)
  os.makedirs(out_dir, exist_ok=True)
  tok = warmup.load_tokenizer(cfg, workdir)
  mcfg, params = load_model(cfg.init, cfg, workdir)
  mesh = mesh_lib.make_mesh(tuple(cfg.mesh.shape))
  data = load_data(cfg)
  print(f"[eval] {data.load_summary}", flush=True)
  exs = data.examples
  common = dict(cfg=mcfg, params=params, tok=tok, max_new_tokens=e.max_new_tokens, variant=cfg.data.variant,
                style=cfg.data.style, batch_size=e.sampler_batch, mesh=mesh)
  t0 = time.perf_counter()
  greedy = sample_pool(exs, k=1, sampling=sampling_lib.Greedy(), seed=cfg.seed, desc="eval greedy", **common)
  t_greedy = time.perf_counter() - t0
  t0 = time.perf_counter()
  pool = sample_pool(exs, k=e.pool, sampling=sampling_lib.Temperature(e.temperature), seed=cfg.seed + 1,
                     desc=f"eval pool of {e.pool}", **common)
  t_pool = time.perf_counter() - t0
  n_tokens = sum(len(tok.encode(t)) for j in pool for t in j.texts)
  print(f"[eval] {len(exs)} items: greedy in {t_greedy:.0f}s, {e.pool} samples each in {t_pool:.0f}s "
        f"({n_tokens / max(t_pool, 1e-9):.0f} critique tokens/s)", flush=True)
  scores_pool = [j.scores for j in pool]
  scores_greedy = [j.scores for j in greedy]

  meta = None
  results: dict[str, Any] = {"model": cfg.init, "data": data.source, "format": data.format,
                             "variant": cfg.data.variant, "n_items": len(exs), "pool": e.pool,
                             "temperature": e.temperature}
  if cfg.meta_rm:
    rcfg, rparams = load_model(cfg.meta_rm, cfg, workdir, reward_head=True)
    raw, too_long = meta_scores(exs, pool, mcfg=rcfg, params=rparams, tok=tok, max_len=cfg.data.max_len + e.max_new_tokens,
                                style=cfg.data.style, batch_size=e.sampler_batch)
    meta = _finite_meta(raw)
    scored = [(v, scores_lib.is_correct(s, ex.label, ex.n)) for ex, j, row in zip(exs, pool, raw)
              for s, v in zip(j.scores, row) if np.isfinite(v)]
    results["meta_rm"] = {"model": cfg.meta_rm, "too_long": too_long,
                          "auc": evaluate.roc_auc([v for v, _ in scored], [ok for _, ok in scored])}

  results["greedy"] = evaluate.pool_metrics(exs, scores_greedy, seed=cfg.seed, n_boot=e.n_boot)
  results[f"voting@{e.pool}"] = evaluate.pool_metrics(exs, scores_pool, "sum", seed=cfg.seed, n_boot=e.n_boot)
  results[f"mode_voting@{e.pool}"] = evaluate.pool_metrics(exs, scores_pool, "mode", seed=cfg.seed, n_boot=e.n_boot)
  ranked = [i for i, ex in enumerate(exs) if ex.n >= 2]
  curve = evaluate.voting_curve([exs[i] for i in ranked], [scores_pool[i] for i in ranked],
                                None if meta is None else [meta[i] for i in ranked],
                                ks=tuple(k for k in e.ks if k <= e.pool), n_draws=e.n_draws, seed=cfg.seed,
                                n_boot=e.n_boot)
  if cfg.get("no_principles", ""):
    results["no_principles"] = no_principles_baseline(cfg, workdir, exs, ranked, curve, common)
  results["curve"] = curve.as_dict()

  extra = {"greedy": results["greedy"]["accuracy"]}
  if cfg.scalar_rm:
    scfg, sparams = load_model(cfg.scalar_rm, cfg, workdir, reward_head=True)
    fn = meta_rm_lib.score_fn(scfg)
    s = scalar_rm_lib.response_scores(fn, sparams, exs, tok, max_len=cfg.data.max_len, batch_size=e.sampler_batch)
    per_item = [float(_unique_best(v) == ex.label) for ex, v in zip(exs, s) if ex.n >= 2]
    acc = float(np.mean(per_item)) if per_item else None
    results["scalar_rm"] = {"model": cfg.scalar_rm, "accuracy": acc,
                            "accuracy_ci": list(evaluate.bootstrap_ci(per_item, e.n_boot, seed=cfg.seed)) if per_item else None,
                            "missing": sum(v is None for v in s)}
    extra["scalar RM"] = acc

  if data.format == "rewardbench":
    for key, sc in (("greedy", scores_greedy), (f"voting@{e.pool}", scores_pool)):
      results[key]["rewardbench"] = evaluate.rewardbench_scores(
          evaluate.pool_correct(exs, sc).astype(float), [ex.family for ex in exs])
  if data.best_of_k:
    singles, owner = _singles(data.best_of_k)
    rated = sample_pool(singles, k=1, sampling=sampling_lib.Greedy(), seed=cfg.seed, desc="eval best-of-K", **common)
    per_item: list[list[float] | None] = [[0.0] * len(it.responses) for it in data.best_of_k]
    for (b, i), j in zip(owner, rated):
      if per_item[b] is not None:
        if j.scores[0] is None:
          per_item[b][i] = 0.0  # an invalid rating ranks below every valid one
        else:
          per_item[b][i] = float(j.scores[0][0])
    results["best_of_k"] = evaluate.best_of_k_metrics(data.best_of_k, per_item, seed=cfg.seed, n_boot=e.n_boot)

  results["wall_seconds"] = time.perf_counter() - t_start
  write_outputs(out_dir, results, curve, extra, exs, pool, meta)
  print(f"\n[eval] {out_dir}\n{evaluate.markdown_table(summary_rows(results, e.pool))}\n", flush=True)
  print(evaluate.markdown_table({}, curve), flush=True)
  return results


def no_principles_baseline(cfg, workdir: str, exs, ranked, curve, common: dict) -> dict:
  """The "GRM without principles" baseline: the GRM cfg.no_principles names, prompted and sampled
  like the main one with the no_principles variant; its sum-voting curve joins `curve` as the
  method "no principles" (same items, ks, draws)."""
  e = cfg.eval
  ncfg, nparams = load_model(cfg.no_principles, cfg, workdir)
  kw = {**common, "cfg": ncfg, "params": nparams, "variant": "no_principles"}
  greedy = sample_pool(exs, k=1, sampling=sampling_lib.Greedy(), seed=cfg.seed, desc="no principles greedy", **kw)
  pool = sample_pool(exs, k=e.pool, sampling=sampling_lib.Temperature(e.temperature), seed=cfg.seed + 1,
                     desc="no principles pool", **kw)
  c = evaluate.voting_curve([exs[i] for i in ranked], [pool[i].scores for i in ranked], ks=curve.ks,
                            n_draws=e.n_draws, seed=cfg.seed, n_boot=e.n_boot)
  curve.accuracy["no principles"], curve.ci["no principles"] = c.accuracy["sum"], c.ci["sum"]
  return {"model": cfg.no_principles,
          "greedy": evaluate.pool_metrics(exs, [j.scores for j in greedy], seed=cfg.seed, n_boot=e.n_boot),
          f"voting@{e.pool}": evaluate.pool_metrics(exs, [j.scores for j in pool], "sum", seed=cfg.seed,
                                                    n_boot=e.n_boot)}


def _unique_best(values: list[float] | None) -> int:
  if values is None:
    return -1
  top = max(values)
  best = [i for i, v in enumerate(values) if v == top]
  return best[0] if len(best) == 1 else -1


def summary_rows(results: dict, pool: int) -> dict:
  """The headline numbers (the terminal summary and the first table of results.md)."""
  rows = {}
  for key in ("greedy", f"voting@{pool}", f"mode_voting@{pool}"):
    r = results[key]
    rows[f"{key} accuracy"] = r["accuracy"]
    rows[f"{key} accuracy_ci"] = r.get("accuracy_ci")
    rows[f"{key} valid format"] = r["valid_rate"]
  g = results["greedy"]
  rows["greedy kappa (shuffled labels)"] = g.get("kappa_shuffled")
  rows["greedy mean score: best"] = g.get("score_best")
  rows["greedy mean score: others"] = g.get("score_others")
  if "meta_rm" in results:
    rows["meta RM AUC (correct vs not)"] = results["meta_rm"]["auc"]
  if "no_principles" in results:
    for key in ("greedy", f"voting@{pool}"):
      rows[f"no principles {key} accuracy"] = results["no_principles"][key]["accuracy"]
      rows[f"no principles {key} accuracy_ci"] = results["no_principles"][key].get("accuracy_ci")
  if "scalar_rm" in results:
    rows["scalar RM accuracy"] = results["scalar_rm"]["accuracy"]
    rows["scalar RM accuracy_ci"] = results["scalar_rm"]["accuracy_ci"]
  if "best_of_k" in results:
    rows["best-of-K accuracy"] = results["best_of_k"]["accuracy"]
  for key in ("greedy", f"voting@{pool}"):
    rb = results[key].get("rewardbench")
    if rb:
      rows[f"{key} RewardBench final"] = rb["final"]
  return rows


def write_outputs(out_dir: str, results: dict, curve, extra: dict, examples, pool, meta) -> None:
  with open(os.path.join(out_dir, "results.json"), "w") as f:
    json.dump(results, f, indent=2, sort_keys=True, default=float)
  pool_k = results["pool"]
  md = ["# Evaluation", "", f"model `{results['model']}`, data `{results['data']}` ({results['format']}), "
        f"{results['n_items']} items, {pool_k} samples each at temperature {results['temperature']}", "",
        evaluate.markdown_table(summary_rows(results, pool_k)), "", "## Voting@k", "",
        evaluate.markdown_table({}, curve), "", "## All metrics", "",
        evaluate.markdown_table({k: v for k, v in results.items() if k != "curve"})]
  with open(os.path.join(out_dir, "results.md"), "w") as f:
    f.write("\n".join(md) + "\n")
  evaluate.plot_curve(curve, os.path.join(out_dir, "curve.png"),
                      extra_lines={k: v for k, v in extra.items() if v is not None},
                      title=f"{results['model']} on {os.path.basename(str(results['data']))}")
  with open(os.path.join(out_dir, "samples.jsonl"), "w") as f:
    for i, (ex, j) in enumerate(zip(examples, pool)):
      f.write(json.dumps({"id": ex.id, "family": ex.family, "label": ex.label, "texts": j.texts,
                          "scores": j.scores, "perms": [list(p) for p in j.perms],
                          "meta": None if meta is None else meta[i]}) + "\n")
