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

from etils import epath

from spct_jax import extras
from spct_jax import judge as judge_lib
from spct_jax import mesh as mesh_lib
from spct_jax import paths
from spct_jax import rm
from spct_jax import sampling as sampling_lib
from spct_jax.data import principled
from spct_jax.data import sources
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
    test_seed = cfg.eval.seed if cfg.eval.get("seed", -1) >= 0 else stage.seed(cfg, "test")
    exs = stage.world(cfg).generate(n or 1024, seed=test_seed, difficulty=cfg.data.difficulty,
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


@dataclasses.dataclass
class Judged:
  """One GRM's critiques of the evaluation items: one greedy and a pool of sampled ones per
  item, and the meta RM's (finite) score of every pooled critique (None without a meta RM)."""
  name: str
  spec: str
  variant: str
  greedy: list[judge_lib.Judgement]
  pool: list[judge_lib.Judgement]
  pool_size: int = 0   # sampled critiques per item (0: none; `pool` is then the greedy critiques)
  meta: list[list[float]] | None = None
  meta_raw: list[list[float]] | None = None
  meta_too_long: int = 0


def model_name(spec: str) -> str:
  """The name a model goes by in results: a stage's name, `bundled_<stage>` for a result shipped
  with the package (so that it can sit beside the workdir's own stage of that name), else the
  folder's name."""
  kind, _, where = spec.partition(":")
  if kind == "stage":
    return where
  return f"bundled_{where}" if kind == "bundled" else os.path.basename(os.path.normpath(where)) or spec


def judge_model(cfg, workdir: str, name: str, spec: str, key: str, variant: str, exs, mesh, meta_model,
                pool_size: int) -> Judged:
  """Greedy and pooled critiques (pool_size per item) of `exs` by the GRM `spec` (config field
  `key`; prompt variant `variant`), and their meta scores when a meta RM is given."""
  e = cfg.eval
  grm = stage.load_model(cfg, workdir, spec, key=key)
  common = dict(cfg=grm.config, params=grm.params, tok=grm.tokenizer, max_new_tokens=e.max_new_tokens,
                variant=variant, style=cfg.data.style, batch_size=e.sampler_batch, mesh=mesh)
  t0 = time.perf_counter()
  greedy = judge_lib.judge(exs, k=1, sampling=sampling_lib.Greedy(), seed=stage.seed(cfg, "eval_greedy"),
                           desc=f"{name} greedy", **common)
  t_greedy, t0 = time.perf_counter() - t0, time.perf_counter()
  # pool_size = 0: greedy only (no sampled critiques, no voting@k; the pool-based figures are the
  # greedy critique's), for models too slow to sample a pool on the machine at hand
  pool = judge_lib.judge(exs, k=pool_size, sampling=sampling_lib.Temperature(e.temperature),
                         seed=stage.seed(cfg, "eval_pool"), desc=f"{name} pool of {pool_size}",
                         **common) if pool_size else greedy
  t_pool = time.perf_counter() - t0
  n_tokens = sum(len(grm.tokenizer.encode(t)) for j in (pool if pool_size else greedy) for t in j.texts)
  took = (t_pool, f"{pool_size} samples each") if pool_size else (t_greedy, "greedy only (no pool)")
  print(f"[eval] {name}: {len(exs)} items, greedy in {t_greedy:.0f}s, {took[1]} in {t_pool:.0f}s "
        f"({n_tokens / max(took[0], 1e-9):.0f} critique tokens/s)", flush=True)
  judged = Judged(name, spec, variant, greedy, pool, pool_size)
  if meta_model is not None:
    judged.meta_raw, judged.meta_too_long = rm.meta_scores(
        exs, pool, mcfg=meta_model.config, params=meta_model.params, tok=meta_model.tokenizer,
        max_len=cfg.data.max_len + e.max_new_tokens, style=cfg.data.style, batch_size=e.sampler_batch,
        desc=f"{name} meta RM")
    judged.meta = rm.finite(judged.meta_raw)
  return judged


def model_summary(j: Judged, exs, ranked: list[int], ks, cfg) -> tuple[dict, dict[str, np.ndarray]]:
  """(results of one model, its per-item values on the ranked items): greedy accuracy, and sum-,
  mode- and meta-RM-voting accuracy at every k, each with its bootstrap CI; per family greedy.
  Strict (ties wrong) under the plain names, and with ties broken at random (the paper's rule,
  METHOD.md section 6) under "<name>_ties_random". The per-item vectors ("greedy", "sum@k",
  "meta@k", ..., and "greedy ties random", "sum@k ties random", ...) feed the paired differences."""
  e, boot = cfg.eval, stage.seed(cfg, "eval_bootstrap")
  ks = tuple(k for k in ks if k <= j.pool_size)
  rx = [exs[i] for i in ranked]
  greedy_scores = [j.greedy[i].scores for i in ranked]
  pool_scores, meta = [j.pool[i].scores for i in ranked], None if j.meta is None else [j.meta[i] for i in ranked]
  per_item, out, tables = {}, {"spec": j.spec, "variant": j.variant, "n": len(rx)}, {}
  for suffix, rng in (("", None), ("_ties_random", np.random.default_rng([boot, 1]))):
    g = metrics.pool_correct(rx, greedy_scores, rng=rng).astype(float)
    used, _, table = metrics.voting_table(rx, pool_scores, meta, ks=ks, n_draws=e.n_draws, seed=boot,
                                          strict=rng is None)
    tables[suffix], tag = table, suffix.replace("_", " ")
    per_item[f"greedy{tag}"] = g
    per_item.update({f"{m}@{k}{tag}": v for m, by_k in table.items() for k, v in by_k.items()})
    out[f"greedy{suffix}"] = float(g.mean()) if len(rx) else None
    out[f"greedy{suffix}_ci"] = list(metrics.bootstrap_ci(g, e.n_boot, seed=boot)) if len(rx) else None
    for m, by_k in table.items():
      out[f"{m}{suffix}"] = {str(k): float(v.mean()) for k, v in by_k.items()}
      out[f"{m}{suffix}_ci"] = {str(k): list(metrics.bootstrap_ci(v, e.n_boot, seed=boot)) for k, v in by_k.items()}
  greedy = per_item["greedy"]
  if stage.world(cfg) is principled and cfg.data.source == "synthetic" and j.variant != "no_principles":
    # how often the critique's main principle is the item's decisive one (greedy; over the pool)
    out["decisive_first"] = float(np.mean([principled.main_principle(j.greedy[i].texts[0]) == exs[i].family
                                           for i in ranked])) if len(rx) else None
    out["decisive_first_pool"] = float(np.mean([principled.main_principle(t) == exs[i].family
                                                for i in ranked for t in j.pool[i].texts])) if len(rx) else None
    # where greedy verdicts go wrong after the choice: reading each response, scores following the analysis
    parts = principled.parts_summary([exs[i].permuted(j.greedy[i].perms[0]) for i in ranked],
                                     [j.greedy[i].texts[0] for i in ranked])
    out["reading"], out["scores_follow_analysis"] = parts["reading"], parts["follows"]
  fams = sorted({ex.family for ex in rx})
  out["greedy_per_family"] = {f: float(np.mean([c for c, ex in zip(greedy, rx) if ex.family == f])) for f in fams}
  if used:
    top = used[-1]
    out[f"sum_per_family@{top}"] = {f: float(np.mean([c for c, ex in zip(tables[""]["sum"][top], rx) if ex.family == f]))
                                    for f in fams}
  return out, per_item


def differences(main: str, chain_names: list[str], per_item: dict[str, dict[str, np.ndarray]], top: int,
                cfg) -> dict[str, dict]:
  """Paired bootstrap differences between stages, methods and baselines (those evaluated):
  each stage against the one before at greedy, voting@top against greedy, meta-RM voting against
  sum voting, SPCT against the GRM without principles (every stage of the chain at greedy, the
  main GRM also at voting@top) and against the scalar RM, and every step of the sum-voting curve
  (voting@2k - voting@k)."""
  e, boot = cfg.eval, stage.seed(cfg, "eval_bootstrap")
  out = {}

  def add(label, a, b):
    out[label] = metrics.paired_difference(a, b, e.n_boot, seed=boot)

  for before, after in zip(chain_names, chain_names[1:]):
    add(f"{after} - {before}, greedy", per_item[after]["greedy"], per_item[before]["greedy"])
  m = per_item[main]
  if f"sum@{top}" in m:
    add(f"{main} sum@{top} - {main} greedy", m[f"sum@{top}"], m["greedy"])
    ks = sorted(int(k.split("@")[1]) for k in m if k.startswith("sum@") and k.split("@")[1].isdigit())
    for k1, k2 in zip(ks, ks[1:]):
      add(f"{main} sum@{k2} - {main} sum@{k1}", m[f"sum@{k2}"], m[f"sum@{k1}"])
    if f"sum@{top} ties random" in m:  # the same, ties broken at random (the paper's rule)
      tag = " ties random"
      add(f"{main} sum@{top} - {main} greedy, ties at random", m[f"sum@{top}{tag}"], m[f"greedy{tag}"])
      for k1, k2 in zip(ks, ks[1:]):
        add(f"{main} sum@{k2} - {main} sum@{k1}, ties at random", m[f"sum@{k2}{tag}"], m[f"sum@{k1}{tag}"])
  if f"meta@{top}" in m:
    add(f"{main} meta@{top} - {main} sum@{top}", m[f"meta@{top}"], m[f"sum@{top}"])
  for base in ("no_principles", "scalar_rm"):
    if base not in per_item:
      continue
    b = per_item[base]
    add(f"{main} - {base}, greedy", m["greedy"], b["greedy"])
    if base == "no_principles":  # the baseline may be any stage of its own chain: each stage against it
      for name in (n for n in chain_names if n != main):
        add(f"{name} - {base}, greedy", per_item[name]["greedy"], b["greedy"])
    if f"sum@{top}" in m:
      add(f"{main} sum@{top} - {base} {'sum@' + str(top) if base == 'no_principles' else 'greedy'}",
          m[f"sum@{top}"], b.get(f"sum@{top}", b["greedy"]))
  return out


def run(cfg, workdir: str, config_path: str | None = None, overrides: dict | None = None) -> dict:
  t_start = time.perf_counter()
  e, boot = cfg.eval, stage.seed(cfg, "eval_bootstrap")
  compare = tuple(cfg.get("compare", ()))
  for spec in (cfg.init, cfg.meta_rm, cfg.scalar_rm, *compare):
    if spec.startswith("stage:") and config_path is not None:
      name = spec.split(":", 1)[1]
      chain.ensure(name, config_path, workdir, overrides, cfg.get("stage_configs", {}).get(name))
  name = cfg.name or cfg.init.replace(":", "_").replace("/", "_").strip("_")
  out_dir = paths.absolute(workdir) / "eval" / name
  out_dir.mkdir(parents=True, exist_ok=True)
  mesh = mesh_lib.make_mesh(tuple(cfg.mesh.shape))
  data = load_data(cfg)
  print(f"[eval] {data.load_summary}", flush=True)
  exs = data.examples
  ranked = [i for i, ex in enumerate(exs) if ex.n >= 2]
  ks = tuple(k for k in e.ks if k <= e.pool)
  meta_model = stage.load_model(cfg, workdir, cfg.meta_rm, reward_head=True, key="meta_rm") if cfg.meta_rm else None

  names = [model_name(s) for s in (*compare, cfg.init)]
  if len(set(names)) < len(names):
    raise ValueError(f"config compare={compare!r} and init={cfg.init!r} name models {names}: each model "
                     "needs a name of its own in the results")
  compare_pool = e.pool if e.get("compare_pool", -1) < 0 else min(e.compare_pool, e.pool)
  grms = [judge_model(cfg, workdir, model_name(s), s, "compare", cfg.data.variant, exs, mesh, meta_model, compare_pool)
          for s in compare]
  main = judge_model(cfg, workdir, model_name(cfg.init), cfg.init, "init", cfg.data.variant, exs, mesh, meta_model,
                     e.pool)
  grms.append(main)
  if cfg.get("no_principles", ""):
    grms.append(judge_model(cfg, workdir, "no_principles", cfg.no_principles, "no_principles", "no_principles",
                            exs, mesh, meta_model, e.pool))

  results: dict[str, Any] = {"model": cfg.init, "data": data.source, "format": data.format, "data_summary": data.load_summary,
                             "variant": cfg.data.variant, "n_items": len(exs), "pool": e.pool,
                             "temperature": e.temperature, "models": {}}
  per_item: dict[str, dict[str, np.ndarray]] = {}
  for j in grms:
    results["models"][j.name], per_item[j.name] = model_summary(j, exs, ranked, ks, cfg)

  scores_greedy, scores_pool, meta = [j.scores for j in main.greedy], [j.scores for j in main.pool], main.meta
  if meta is not None:
    scored = [(v, scores_lib.is_correct(s, ex.label, ex.n)) for ex, j, row in zip(exs, main.pool, main.meta_raw)
              for s, v in zip(j.scores, row) if np.isfinite(v)]
    results["meta_rm"] = {"model": cfg.meta_rm, "too_long": main.meta_too_long,
                          "auc": metrics.roc_auc([v for v, _ in scored], [ok for _, ok in scored])}
  results["greedy"] = metrics.pool_metrics(exs, scores_greedy, seed=boot, n_boot=e.n_boot)
  if e.pool:
    results[f"voting@{e.pool}"] = metrics.pool_metrics(exs, scores_pool, "sum", seed=boot, n_boot=e.n_boot)
    results[f"mode_voting@{e.pool}"] = metrics.pool_metrics(exs, scores_pool, "mode", seed=boot, n_boot=e.n_boot)
  curve = metrics.voting_curve([exs[i] for i in ranked], [scores_pool[i] for i in ranked],
                               None if meta is None else [meta[i] for i in ranked],
                               ks=ks, n_draws=e.n_draws, seed=boot, n_boot=e.n_boot)
  if cfg.get("no_principles", ""):
    base = grms[-1]
    results["no_principles"] = {
        "model": cfg.no_principles,
        "greedy": metrics.pool_metrics(exs, [j.scores for j in base.greedy], seed=boot, n_boot=e.n_boot)}
    if e.pool:
      results["no_principles"][f"voting@{e.pool}"] = metrics.pool_metrics(
          exs, [j.scores for j in base.pool], "sum", seed=boot, n_boot=e.n_boot)
    curve.accuracy["no principles"] = tuple(results["models"]["no_principles"]["sum"][str(k)] for k in curve.ks)
    curve.ci["no principles"] = tuple(tuple(results["models"]["no_principles"]["sum_ci"][str(k)]) for k in curve.ks)
  results["curve"] = curve.as_dict()

  extra = {"greedy": results["greedy"]["accuracy"]}
  if cfg.scalar_rm:
    scalar_model = stage.load_model(cfg, workdir, cfg.scalar_rm, reward_head=True, key="scalar_rm")
    s = rm.response_scores(rm.score_fn(scalar_model.config), scalar_model.params, exs, scalar_model.tokenizer,
                           max_len=cfg.data.max_len, batch_size=e.sampler_batch)
    correct = np.asarray(rm.choice_correct(exs, s))
    acc = float(correct.mean()) if len(correct) else None
    results["scalar_rm"] = {"model": cfg.scalar_rm, "accuracy": acc,
                            "accuracy_ci": list(metrics.bootstrap_ci(correct, e.n_boot, seed=boot)) if len(correct) else None,
                            "missing": sum(v is None for v in s)}
    results["models"]["scalar_rm"] = {"spec": cfg.scalar_rm, "n": len(correct), "greedy": acc,
                                      "greedy_ci": results["scalar_rm"]["accuracy_ci"]}
    per_item["scalar_rm"] = {"greedy": correct}
    extra["scalar RM"] = acc
  chain_names = [j.name for j in grms if j.variant == cfg.data.variant]
  results["differences"] = differences(main.name, chain_names, per_item, ks[-1] if ks else 0, cfg)

  if data.format == "rewardbench":
    for key, sc in (("greedy", scores_greedy), (f"voting@{e.pool}", scores_pool))[:2 if e.pool else 1]:
      results[key]["rewardbench"] = metrics.rewardbench_scores(
          metrics.pool_correct(exs, sc).astype(float), [ex.family for ex in exs])
  if data.best_of_k:
    grm = stage.load_model(cfg, workdir)
    singles, owner = _singles(data.best_of_k)
    rated = judge_lib.judge(singles, k=1, sampling=sampling_lib.Greedy(), seed=stage.seed(cfg, "eval_greedy"),
                            desc="eval best-of-K", cfg=grm.config, params=grm.params, tok=grm.tokenizer,
                            max_new_tokens=e.max_new_tokens, variant=cfg.data.variant, style=cfg.data.style,
                            batch_size=e.sampler_batch, mesh=mesh)
    per_response: list[list[float] | None] = [[0.0] * len(it.responses) for it in data.best_of_k]
    for (b, i), j in zip(owner, rated):
      # an invalid rating ranks below every valid one
      per_response[b][i] = 0.0 if j.scores[0] is None else float(j.scores[0][0])
    results["best_of_k"] = metrics.best_of_k_metrics(data.best_of_k, per_response, seed=boot, n_boot=e.n_boot)

  results["wall_seconds"] = time.perf_counter() - t_start
  write_outputs(out_dir, results, curve, extra, exs, main.pool, meta)
  print(f"\n[eval] {out_dir}\n{report.markdown_table(summary_rows(results, e.pool))}\n", flush=True)
  print(report.markdown_table({}, curve), flush=True)
  print(report.comparison_table(results), flush=True)
  return results


def summary_rows(results: dict, pool: int) -> dict:
  """The headline numbers (the terminal summary and the first table of results.md)."""
  rows = {}
  keys = ("greedy", f"voting@{pool}", f"mode_voting@{pool}") if pool else ("greedy",)  # pool 0: greedy only
  for key in keys:
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
    for key in keys[:2]:
      rows[f"no principles {key} accuracy"] = results["no_principles"][key]["accuracy"]
      rows[f"no principles {key} accuracy_ci"] = results["no_principles"][key].get("accuracy_ci")
  if "scalar_rm" in results:
    rows["scalar RM accuracy"] = results["scalar_rm"]["accuracy"]
    rows["scalar RM accuracy_ci"] = results["scalar_rm"]["accuracy_ci"]
  if "best_of_k" in results:
    rows["best-of-K accuracy"] = results["best_of_k"]["accuracy"]
  for key in keys[:2]:
    rb = results[key].get("rewardbench")
    if rb:
      rows[f"{key} RewardBench final"] = rb["final"]
  return rows


def write_outputs(out_dir: epath.Path, results: dict, curve, extra: dict, examples, pool, meta) -> None:
  (out_dir / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True, default=float))
  pool_k = results["pool"]
  md = ["# Evaluation", "", f"model `{results['model']}`, data `{results['data']}` ({results['format']}), "
        f"{results['n_items']} items, {pool_k} samples each at temperature {results['temperature']}", "",
        report.markdown_table(summary_rows(results, pool_k)), "", "## Models and paired differences", "",
        report.comparison_table(results), "", "## Voting@k", "",
        report.markdown_table({}, curve), "", "## All metrics", "",
        report.markdown_table({k: v for k, v in results.items() if k != "curve"})]
  (out_dir / "results.md").write_text("\n".join(md) + "\n")
  if not curve.ks:
    print("[eval] curve.png not drawn: no voting@k (eval.pool = 0, greedy only)", flush=True)
  elif extras.available("matplotlib"):
    report.plot_curve(curve, out_dir / "curve.png", extra_lines={k: v for k, v in extra.items() if v is not None},
                      title=f"{results['model']} on {os.path.basename(str(results['data']))}")
  else:
    print("[eval] curve.png not drawn: the plot needs matplotlib (pip install 'spct_jax[plots]')", flush=True)
  with (out_dir / "samples.jsonl").open("w") as f:
    for i, (ex, j) in enumerate(zip(examples, pool)):
      f.write(json.dumps({"id": ex.id, "family": ex.family, "label": ex.label, "texts": j.texts,
                          "scores": j.scores, "perms": [list(p) for p in j.perms],
                          "meta": None if meta is None else meta[i]}) + "\n")
