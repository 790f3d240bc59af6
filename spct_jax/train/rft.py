"""Stage 1 of SPCT: rejective fine-tuning (METHOD.md section 3).

For each training item the current GRM samples N_RFT critiques (response order shuffled per
sample, as in `judge`). Correct critiques (rule of section 2) are kept; an item whose samples
are all correct is dropped as too easy; an item with none correct is "unsolved" unless hinted
sampling (one sample with "The best response is: Response j" in the prompt, kept if correct)
rescues it. Hinted trajectories are trained with the un-hinted prompt, and their share of the
kept set is capped (`rft.max_hinted_share`). Then SFT on the kept trajectories, mixed with
`rft.warmup_rows_per_item * rft.n_items` warm-up (teacher) rows (the paper mixes in general data),
filtered by the same rule as the samples: a teacher of documented imperfection (the principled
world's) also writes wrong critiques, and those are rejected and counted (teacher_rows_rejected).

Statistics add up: seen = kept_items + too_easy + unsolved (hinted items count as kept).
When nothing at all is kept (and no warm-up rows are mixed in) there is nothing to fine-tune on:
the stage warns, says why, and its output is its input model (the chain goes on; GRPO's rewards
then carry the signal).
The kept trajectories are written to <workdir>/rft/trajectories.jsonl.
"""
from __future__ import annotations

import dataclasses
import json
import time

from etils import epath

from spct_jax import judge as judge_lib
from spct_jax import sampling as sampling_lib
from spct_jax.example import GRMExample, Turn
from spct_jax.grm import scores
from spct_jax.train import stage


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


@dataclasses.dataclass(frozen=True)
class Trajectory:
  """A kept critique: the example as it was shown, the critique, whether a hint produced it."""
  shown: GRMExample
  text: str
  hinted: bool


def collect(items, *, n_samples: int, sample_kwargs: dict, hinted: bool, max_hinted_share: float,
            seed: int, hint_seed: int, max_new_tokens: int, sampling) -> tuple[list[Trajectory], RFTStats]:
  """Samples (orders and draws from `seed`), filters and hints (from `hint_seed`); returns the
  kept trajectories and the stats."""
  stats = RFTStats(seen=len(items))
  per_item: list[list[judge_lib.Critique]] = [[] for _ in items]
  for c in judge_lib.sample_critiques(items, n_samples, seed, sampling=sampling, max_new_tokens=max_new_tokens,
                                      desc="rft samples", **sample_kwargs):
    stats.samples += 1
    stats.invalid += not c.valid
    per_item[c.item].append(c)
  kept, unsolved_idx = [], []
  for i, samples in enumerate(per_item):
    n_ok = sum(c.correct for c in samples)
    if n_ok == len(samples):
      stats.too_easy += 1
    elif n_ok == 0:
      unsolved_idx.append(i)
    else:
      stats.kept_items += 1
      kept += [Trajectory(c.shown, c.text, False) for c in samples if c.correct]
  if hinted and unsolved_idx:
    hint_items = [items[i] for i in unsolved_idx]
    cap = int(max_hinted_share * len(kept) / max(1e-9, 1.0 - max_hinted_share)) if max_hinted_share < 1 else len(hint_items)
    rescued = set()
    for c in judge_lib.sample_critiques(hint_items, 1, hint_seed, sampling=sampling, max_new_tokens=max_new_tokens,
                                        desc="rft hinted", **{**sample_kwargs, "variant": "hinted"}):
      if c.correct:
        if len(rescued) < cap:
          rescued.add(c.item)
          kept.append(Trajectory(c.shown, c.text, True))
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


def write_trajectories(kept: list[Trajectory], path) -> None:
  with epath.Path(path).open("w") as f:
    for t in kept:
      ex = t.shown
      f.write(json.dumps({"id": ex.id, "family": ex.family, "context": [[x.role, x.text] for x in ex.context],
                          "responses": list(ex.responses), "label": ex.label, "critique": t.text,
                          "hinted": t.hinted}) + "\n")


def read_trajectories(path) -> list[Trajectory]:
  kept = []
  with epath.Path(path).open() as f:
    for line in f:
      d = json.loads(line)
      ex = GRMExample(tuple(Turn(*t) for t in d["context"]), tuple(d["responses"]), d["label"], d["family"], d["id"])
      kept.append(Trajectory(ex, d["critique"], d["hinted"]))
  return kept


def teacher_rows(cfg, n: int, seed: int) -> tuple[list[tuple], int]:
  """n fresh items of the config's world with the teacher's critiques; returns the (shown example,
  critique) pairs that the rule of METHOD.md section 2 accepts and the number rejected."""
  items = stage.world(cfg).generate(n, seed=seed, difficulty=cfg.data.difficulty,
                                    n_responses=tuple(cfg.data.n_responses))
  pairs = stage.teacher_pairs(cfg, items, seed)
  right = [(ex, c) for ex, c in pairs if scores.is_correct(scores.parse_scores(c, ex.n), ex.label, ex.n)]
  return right, len(pairs) - len(right)


def run(cfg, workdir: str) -> dict:
  s = stage.begin(cfg, workdir)
  r = cfg.rft
  traj_path = s.out_dir / "trajectories.jsonl"
  stats_path = s.out_dir / "rft_stats.json"
  if stats_path.exists():  # resuming: the sampled set is already on disk
    stats = RFTStats(**json.loads(stats_path.read_text()))
    kept = read_trajectories(traj_path)
  else:
    items = stage.items(cfg, r.n_items, stage.seed(cfg, "rft"))
    t0 = time.perf_counter()
    kept, stats = collect(
        items, n_samples=r.n_samples, hinted=r.hinted,
        max_hinted_share=r.max_hinted_share, seed=stage.seed(cfg, "rft"), hint_seed=stage.seed(cfg, "rft_hinted"),
        max_new_tokens=r.max_new_tokens, sampling=sampling_lib.Temperature(r.temperature),
        sample_kwargs=dict(cfg=s.mcfg, params=s.params, tok=s.tok, variant=cfg.data.variant,
                           style=cfg.data.style, batch_size=r.sampler_batch, mesh=s.mesh))
    print(f"[rft] sampled {stats.samples} critiques in {time.perf_counter() - t0:.0f}s: {dataclasses.asdict(stats)}", flush=True)
    write_trajectories(kept, traj_path)
    stats_path.write_text(json.dumps(dataclasses.asdict(stats), indent=2))
  pairs = [(t.shown, t.text) for t in kept]
  n_mix = int(round(r.warmup_rows_per_item * r.n_items))
  params, steps, rows, skipped, last, teacher_rejected = s.params, cfg.train.steps, {"tokens": []}, 0, {}, 0
  n_kept = len(pairs)
  if n_mix:
    right, teacher_rejected = teacher_rows(cfg, n_mix, stage.seed(cfg, "rft_teacher"))
    print(f"[rft] {len(right)} warm-up (teacher) rows mixed in; {teacher_rejected} rejected as wrong", flush=True)
    pairs += right
  if not pairs:
    print(f"[rft] WARNING: no trajectory kept ({dataclasses.asdict(stats)}) and no warm-up row to mix in "
          f"(rft.warmup_rows_per_item={r.warmup_rows_per_item}, {teacher_rejected} teacher rows rejected as wrong): "
          "nothing to fine-tune on, so this stage's output is its input model. The GRM cannot yet "
          "solve these items: train the warm-up longer, enable rft.hinted, or check the prompt format "
          "(data.style) against the model's.", flush=True)
    steps = 0
    last = stage.validate(s)(params)  # validated all the same
  else:
    if not n_kept:
      print(f"[rft] WARNING: no trajectory kept; training on {len(pairs)} warm-up rows only", flush=True)
    rows, skipped = stage.sft_rows(pairs, s.tok, max_len=cfg.data.max_len, variant=cfg.data.variant,
                                   style=cfg.data.style)
    params, last = stage.fit_sft(s, s.params, rows)
  return stage.finish(s, params, last, steps=steps, **{f"rft_{k}": v for k, v in dataclasses.asdict(stats).items()},
                      sft_rows=len(rows["tokens"]), skipped_too_long=skipped, teacher_rows_rejected=teacher_rejected,
                      final_loss=last.get("loss"))
