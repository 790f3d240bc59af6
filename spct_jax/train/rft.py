"""Stage 1 of SPCT: rejective fine-tuning (METHOD.md section 3).

For each training item the current GRM samples N_RFT critiques (response order shuffled per
sample, as in `judge`). Correct critiques (rule of section 2) are kept; an item whose samples
are all correct is dropped as too easy; an item with none correct is "unsolved" unless hinted
sampling (one sample with "The best response is: Response j" in the prompt, kept if correct)
rescues it. Hinted trajectories are trained with the un-hinted prompt, and their share of the
kept set is capped (`rft.max_hinted_share`). Then SFT on the kept trajectories, mixed with
`rft.warmup_rows_per_item * rft.n_items` warm-up (teacher) rows (the paper mixes in general data).

Statistics add up: seen = kept_items + too_easy + unsolved (hinted items count as kept).
When nothing at all is kept (and no warm-up rows are mixed in) there is nothing to fine-tune on:
the stage warns, says why, and its output is its input model (the chain goes on; GRPO's rewards
then carry the signal).
The kept trajectories are written to <workdir>/rft/trajectories.jsonl.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time


from spct_jax import judge as judge_lib
from spct_jax import sampling as sampling_lib
from spct_jax.data import synthetic
from spct_jax.data.example import GRMExample, Turn
from spct_jax.grm import scores as scores_lib
from spct_jax.model import config as model_config
from spct_jax.train import checkpoint as ckpt_lib
from spct_jax.train import mesh as mesh_lib
from spct_jax.train import stages
from spct_jax.train import warmup

TRAIN_SEED_OFFSET = 1  # RFT's items come from their own generator seed


@dataclasses.dataclass
class RFTStats:
  seen: int = 0
  kept_items: int = 0
  too_easy: int = 0
  unsolved: int = 0
  hinted: int = 0             # items rescued by a hinted trajectory
  hinted_dropped: int = 0     # correct hinted trajectories over the share cap
  trajectories: int = 0       # kept trajectories (hinted included)
  samples: int = 0            # critiques sampled without hint
  invalid: int = 0            # of those, unparseable


def collect(items, *, n_samples: int, sample_kwargs: dict, hinted: bool, max_hinted_share: float,
            seed: int, max_new_tokens: int, sampling) -> tuple[list[tuple], RFTStats]:
  """Samples, filters and hints; returns ([(shown example, critique, hinted)], stats)."""
  stats = RFTStats(seen=len(items))
  requests = judge_lib.plan_requests(items, n_samples, seed)
  results = judge_lib.sample_all(requests, seed=seed, sampling=sampling, max_new_tokens=max_new_tokens,
                                 desc="rft samples", **sample_kwargs)
  per_item: list[list[tuple]] = [[] for _ in items]
  for r, o in zip(requests, results):
    for s in range(r.n_samples):
      text = judge_lib.completion_text(sample_kwargs["tok"], o["tokens"][s], int(o["lengths"][s]), bool(o["done"][s]))
      parsed = scores_lib.parse_scores(text, r.example.n)
      stats.samples += 1
      stats.invalid += parsed is None
      ok = scores_lib.is_correct(parsed, r.example.label, r.example.n)
      per_item[r.item].append((r.example, text, ok))
  kept, unsolved_idx = [], []
  for i, samples in enumerate(per_item):
    n_ok = sum(ok for _, _, ok in samples)
    if n_ok == len(samples):
      stats.too_easy += 1
    elif n_ok == 0:
      unsolved_idx.append(i)
    else:
      stats.kept_items += 1
      kept += [(ex, text, False) for ex, text, ok in samples if ok]
  if hinted and unsolved_idx:
    hint_kwargs = {**sample_kwargs, "variant": "hinted"}
    hint_items = [items[i] for i in unsolved_idx]
    hint_requests = judge_lib.plan_requests(hint_items, 1, seed + 1)
    hint_results = judge_lib.sample_all(hint_requests, seed=seed + 1, sampling=sampling,
                                        max_new_tokens=max_new_tokens, desc="rft hinted", **hint_kwargs)
    cap = int(max_hinted_share * len(kept) / max(1e-9, 1.0 - max_hinted_share)) if max_hinted_share < 1 else len(hint_items)
    rescued = set()
    for r, o in zip(hint_requests, hint_results):
      text = judge_lib.completion_text(sample_kwargs["tok"], o["tokens"][0], int(o["lengths"][0]), bool(o["done"][0]))
      if scores_lib.is_correct(scores_lib.parse_scores(text, r.example.n), r.example.label, r.example.n):
        if len(rescued) < cap:
          rescued.add(r.item)
          kept.append((r.example, text, True))
        else:
          stats.hinted_dropped += 1
    stats.hinted = len(rescued)
    stats.kept_items += len(rescued)
    stats.unsolved = len(unsolved_idx) - len(rescued)
  else:
    stats.unsolved = len(unsolved_idx)
  stats.trajectories = len(kept)
  assert stats.seen == stats.kept_items + stats.too_easy + stats.unsolved
  return kept, stats


def write_trajectories(kept, path: str) -> None:
  with open(path, "w") as f:
    for ex, text, hinted in kept:
      f.write(json.dumps({"id": ex.id, "family": ex.family, "context": [[t.role, t.text] for t in ex.context],
                          "responses": list(ex.responses), "label": ex.label, "critique": text,
                          "hinted": hinted}) + "\n")


def run(cfg, workdir: str) -> dict:
  t_start = time.perf_counter()
  out_dir = stages.stage_dir(workdir, cfg.stage)
  os.makedirs(out_dir, exist_ok=True)
  tok = warmup.load_tokenizer(cfg, workdir)
  mcfg, params = stages.initial_params(cfg, workdir)
  mesh = mesh_lib.make_mesh(tuple(cfg.mesh.shape))
  r = cfg.rft
  traj_path = os.path.join(out_dir, "trajectories.jsonl")
  stats_path = os.path.join(out_dir, "rft_stats.json")
  if os.path.exists(stats_path):  # resuming: the sampled set is already on disk
    with open(stats_path) as f:
      stats = RFTStats(**json.load(f))
    kept = []
    with open(traj_path) as f:
      for line in f:
        d = json.loads(line)
        ex = GRMExample(tuple(Turn(*t) for t in d["context"]), tuple(d["responses"]), d["label"], d["family"], d["id"])
        kept.append((ex, d["critique"], d["hinted"]))
  else:
    items = warmup.items(cfg, r.n_items, cfg.seed + TRAIN_SEED_OFFSET)
    t0 = time.perf_counter()
    kept, stats = collect(
        items, n_samples=r.n_samples, hinted=r.hinted, max_hinted_share=r.max_hinted_share,
        seed=cfg.seed + TRAIN_SEED_OFFSET, max_new_tokens=r.max_new_tokens,
        sampling=sampling_lib.Temperature(r.temperature),
        sample_kwargs=dict(cfg=mcfg, params=params, tok=tok, variant=cfg.data.variant,
                           style=cfg.data.style, batch_size=r.sampler_batch, mesh=mesh))
    print(f"[rft] sampled {stats.samples} critiques in {time.perf_counter() - t0:.0f}s: {dataclasses.asdict(stats)}", flush=True)
    write_trajectories(kept, traj_path)
    with open(stats_path, "w") as f:
      json.dump(dataclasses.asdict(stats), f, indent=2)
  pairs = [(ex, text) for ex, text, _ in kept]
  n_mix = int(round(r.warmup_rows_per_item * r.n_items))
  steps, rows, skipped, last = cfg.train.steps, {"tokens": []}, 0, {}
  if not pairs and not n_mix:
    print(f"[rft] WARNING: no trajectory kept ({dataclasses.asdict(stats)}) and rft.warmup_rows_per_item=0: "
          "nothing to fine-tune on, so this stage's output is its input model. The GRM cannot yet "
          "solve these items: train the warm-up longer, enable rft.hinted, or check the prompt format "
          "(data.style) against the model's.", flush=True)
    steps = 0
  else:
    if not pairs:
      print(f"[rft] WARNING: no trajectory kept; training on {n_mix} warm-up rows only", flush=True)
    if n_mix:
      extra = synthetic.generate(n_mix, seed=cfg.seed + 17, difficulty=cfg.data.difficulty,
                                 n_responses=tuple(cfg.data.n_responses))
      pairs += warmup.teacher_pairs(extra, cfg.seed + 17, cfg.data.error_rate, cfg.data.variant)
    rows, skipped = warmup.sft_rows(pairs, tok, max_len=cfg.data.max_len, variant=cfg.data.variant,
                                    style=cfg.data.style)
    params, last = warmup.train_sft(cfg, mcfg, params, rows, out_dir, tok, mesh, "rft")
  ckpt_lib.export_params(params, model_config.to_dict(mcfg), os.path.join(out_dir, "final"), tok)
  summary = {"stage": "rft", **{f"rft_{k}": v for k, v in dataclasses.asdict(stats).items()},
             "sft_rows": len(rows["tokens"]), "skipped_too_long": skipped, "steps": steps,
             "final_loss": last.get("loss"), "wall_seconds": time.perf_counter() - t_start,
             **{k: v for k, v in last.items() if k.startswith("val_")}}
  warmup.print_summary(summary)
  return summary
