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
   Every voting@k point is computed from that one pool by subsampling (metrics.voting_curve),
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

import numpy as np

from spct_jax import judge as judge_lib
from spct_jax import mesh as mesh_lib
from spct_jax import rm
from spct_jax import sampling as sampling_lib
from spct_jax.data import sources, synthetic
from spct_jax.evaluate import metrics, report
from spct_jax.example import GRMExample
from spct_jax.grm import scores as scores_lib
from spct_jax.train import chain
from spct_jax.train import stage


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
    test_seed = stage.seed(cfg, "test")
    exs = synthetic.generate(n or 256, seed=test_seed, difficulty=cfg.data.difficulty,
                             n_responses=tuple(cfg.data.n_responses))
    return EvalData(exs, [], "synthetic", "synthetic", f"synthetic test split (seed {test_seed})")
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
  rng = np.random.default_rng(stage.seed(cfg, "eval_items"))
  if n and len(exs) > n:
    exs = [exs[i] for i in sorted(rng.choice(len(exs), n, replace=False))]
  if n and len(items) > n:
    items = [items[i] for i in sorted(rng.choice(len(items), n, replace=False))]
  return EvalData(exs, items, source, fmt, stats.summary())


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
  e, boot = cfg.eval, stage.seed(cfg, "eval_bootstrap")
  for spec in (cfg.init, cfg.meta_rm, cfg.scalar_rm):
    if spec.startswith("stage:") and config_path is not None:
      chain.ensure(spec.split(":", 1)[1], config_path, workdir, overrides)
  name = cfg.name or cfg.init.replace(":", "_").replace("/", "_").strip("_")
  out_dir = os.path.join(os.path.abspath(workdir), "eval", name)
  os.makedirs(out_dir, exist_ok=True)
  grm = stage.load_model(cfg, workdir)
  mcfg, params, tok = grm.config, grm.params, grm.tokenizer
  mesh = mesh_lib.make_mesh(tuple(cfg.mesh.shape))
  data = load_data(cfg)
  print(f"[eval] {data.load_summary}", flush=True)
  exs = data.examples
  common = dict(cfg=mcfg, params=params, tok=tok, max_new_tokens=e.max_new_tokens, variant=cfg.data.variant,
                style=cfg.data.style, batch_size=e.sampler_batch, mesh=mesh)
  t0 = time.perf_counter()
  greedy = judge_lib.judge(exs, k=1, sampling=sampling_lib.Greedy(), seed=stage.seed(cfg, "eval_greedy"),
                           desc="eval greedy", **common)
  t_greedy = time.perf_counter() - t0
  t0 = time.perf_counter()
  pool = judge_lib.judge(exs, k=e.pool, sampling=sampling_lib.Temperature(e.temperature),
                         seed=stage.seed(cfg, "eval_pool"), desc=f"eval pool of {e.pool}", **common)
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
    meta_model = stage.load_model(cfg, workdir, cfg.meta_rm, reward_head=True, key="meta_rm")
    raw, too_long = rm.meta_scores(exs, pool, mcfg=meta_model.config, params=meta_model.params, tok=tok,
                                   max_len=cfg.data.max_len + e.max_new_tokens,
                                style=cfg.data.style, batch_size=e.sampler_batch)
    meta = rm.finite(raw)
    scored = [(v, scores_lib.is_correct(s, ex.label, ex.n)) for ex, j, row in zip(exs, pool, raw)
              for s, v in zip(j.scores, row) if np.isfinite(v)]
    results["meta_rm"] = {"model": cfg.meta_rm, "too_long": too_long,
                          "auc": metrics.roc_auc([v for v, _ in scored], [ok for _, ok in scored])}

  results["greedy"] = metrics.pool_metrics(exs, scores_greedy, seed=boot, n_boot=e.n_boot)
  results[f"voting@{e.pool}"] = metrics.pool_metrics(exs, scores_pool, "sum", seed=boot, n_boot=e.n_boot)
  results[f"mode_voting@{e.pool}"] = metrics.pool_metrics(exs, scores_pool, "mode", seed=boot, n_boot=e.n_boot)
  ranked = [i for i, ex in enumerate(exs) if ex.n >= 2]
  curve = metrics.voting_curve([exs[i] for i in ranked], [scores_pool[i] for i in ranked],
                                None if meta is None else [meta[i] for i in ranked],
                                ks=tuple(k for k in e.ks if k <= e.pool), n_draws=e.n_draws, seed=boot,
                                n_boot=e.n_boot)
  if cfg.get("no_principles", ""):
    results["no_principles"] = no_principles_baseline(cfg, workdir, exs, ranked, curve, common)
  results["curve"] = curve.as_dict()

  extra = {"greedy": results["greedy"]["accuracy"]}
  if cfg.scalar_rm:
    scalar_model = stage.load_model(cfg, workdir, cfg.scalar_rm, reward_head=True, key="scalar_rm")
    s = rm.response_scores(rm.score_fn(scalar_model.config), scalar_model.params, exs, tok,
                           max_len=cfg.data.max_len, batch_size=e.sampler_batch)
    per_item = rm.choice_correct(exs, s)
    acc = float(np.mean(per_item)) if per_item else None
    results["scalar_rm"] = {"model": cfg.scalar_rm, "accuracy": acc,
                            "accuracy_ci": list(metrics.bootstrap_ci(per_item, e.n_boot, seed=boot)) if per_item else None,
                            "missing": sum(v is None for v in s)}
    extra["scalar RM"] = acc

  if data.format == "rewardbench":
    for key, sc in (("greedy", scores_greedy), (f"voting@{e.pool}", scores_pool)):
      results[key]["rewardbench"] = metrics.rewardbench_scores(
          metrics.pool_correct(exs, sc).astype(float), [ex.family for ex in exs])
  if data.best_of_k:
    singles, owner = _singles(data.best_of_k)
    rated = judge_lib.judge(singles, k=1, sampling=sampling_lib.Greedy(), seed=stage.seed(cfg, "eval_greedy"),
                            desc="eval best-of-K", **common)
    per_item: list[list[float] | None] = [[0.0] * len(it.responses) for it in data.best_of_k]
    for (b, i), j in zip(owner, rated):
      if per_item[b] is not None:
        if j.scores[0] is None:
          per_item[b][i] = 0.0  # an invalid rating ranks below every valid one
        else:
          per_item[b][i] = float(j.scores[0][0])
    results["best_of_k"] = metrics.best_of_k_metrics(data.best_of_k, per_item, seed=boot, n_boot=e.n_boot)

  results["wall_seconds"] = time.perf_counter() - t_start
  write_outputs(out_dir, results, curve, extra, exs, pool, meta)
  print(f"\n[eval] {out_dir}\n{report.markdown_table(summary_rows(results, e.pool))}\n", flush=True)
  print(report.markdown_table({}, curve), flush=True)
  return results


def no_principles_baseline(cfg, workdir: str, exs, ranked, curve, common: dict) -> dict:
  """The "GRM without principles" baseline: the GRM cfg.no_principles names, prompted and sampled
  like the main one with the no_principles variant; its sum-voting curve joins `curve` as the
  method "no principles" (same items, ks, draws)."""
  e, boot = cfg.eval, stage.seed(cfg, "eval_bootstrap")
  baseline = stage.load_model(cfg, workdir, cfg.no_principles, key="no_principles")
  kw = {**common, "cfg": baseline.config, "params": baseline.params, "variant": "no_principles"}
  greedy = judge_lib.judge(exs, k=1, sampling=sampling_lib.Greedy(), seed=stage.seed(cfg, "eval_greedy"),
                           desc="no principles greedy", **kw)
  pool = judge_lib.judge(exs, k=e.pool, sampling=sampling_lib.Temperature(e.temperature),
                         seed=stage.seed(cfg, "eval_pool"), desc="no principles pool", **kw)
  c = metrics.voting_curve([exs[i] for i in ranked], [pool[i].scores for i in ranked], ks=curve.ks,
                           n_draws=e.n_draws, seed=boot, n_boot=e.n_boot)
  curve.accuracy["no principles"], curve.ci["no principles"] = c.accuracy["sum"], c.ci["sum"]
  return {"model": cfg.no_principles,
          "greedy": metrics.pool_metrics(exs, [j.scores for j in greedy], seed=boot, n_boot=e.n_boot),
          f"voting@{e.pool}": metrics.pool_metrics(exs, [j.scores for j in pool], "sum", seed=boot, n_boot=e.n_boot)}


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
        report.markdown_table(summary_rows(results, pool_k)), "", "## Voting@k", "",
        report.markdown_table({}, curve), "", "## All metrics", "",
        report.markdown_table({k: v for k, v in results.items() if k != "curve"})]
  with open(os.path.join(out_dir, "results.md"), "w") as f:
    f.write("\n".join(md) + "\n")
  report.plot_curve(curve, os.path.join(out_dir, "curve.png"),
                      extra_lines={k: v for k, v in extra.items() if v is not None},
                      title=f"{results['model']} on {os.path.basename(str(results['data']))}")
  with open(os.path.join(out_dir, "samples.jsonl"), "w") as f:
    for i, (ex, j) in enumerate(zip(examples, pool)):
      f.write(json.dumps({"id": ex.id, "family": ex.family, "label": ex.label, "texts": j.texts,
                          "scores": j.scores, "perms": [list(p) for p in j.perms],
                          "meta": None if meta is None else meta[i]}) + "\n")
