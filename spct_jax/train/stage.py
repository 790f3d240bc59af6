"""The stage kit: what every stage of the chain shares, so that a stage file holds only its own logic.

A stage is `run(cfg, workdir) -> summary`, written as

    s = stage.begin(cfg, workdir)                         # model, tokenizer, mesh, folder, clock
    ...                                                   # the stage's own data and loss
    state, make_step = stage.train_state(cfg, s.mcfg, params, s.mesh)
    params, last = stage.fit(s, state, make_step(loss_fn, batch_keys), get_batch, stage.heldout(s))
    return stage.finish(s, params, last, final_loss=last.get("loss"))   # final/, summary, printout

`fit_sft` is that middle part for SFT on rows (the warm-up and RFT). Also here: where items come
from (`items`, `validation_examples`), the synthetic teacher's SFT rows (`teacher_pairs`,
`sft_rows`), held-out greedy and voting@k accuracy (`heldout_accuracy`), and `SEEDS`, the one
table of the random streams a stage derives from `cfg.seed`.

Each stage writes into <workdir>/<stage>/:
    checkpoints/   Orbax train states (resume)
    final/         its output model (model/orbax_io.py), what `init="stage:<stage>"` loads
    summary.json   its held-out results (written by the chain)
    metrics.jsonl, tb/
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

from etils import epath
import jax
import numpy as np

from spct_jax import judge as judge_lib
from spct_jax import mesh as mesh_lib
from spct_jax import sampling as sampling_lib
from spct_jax.data import pipeline, principled, sources, synthetic
from spct_jax.evaluate import metrics
from spct_jax.grm import prompts
from spct_jax.model import config as config_lib
from spct_jax.model import load as load_lib
from spct_jax.model import lora
from spct_jax.model import orbax_io
from spct_jax.model import transformer
from spct_jax.tokenizer import Tokenizer
from spct_jax.train import loop as loop_lib
from spct_jax.train import sft
from spct_jax.train import state as state_lib
from spct_jax.train import step as step_lib

# Every random stream of the stages, as an offset added to cfg.seed. Changing one changes results.
SEEDS = {
    "warmup": 0,            # the warm-up's synthetic items and the teacher's response orders
    "batches": 0,           # the order of SFT / meta-RM / scalar-RM rows (loop.batches_from)
    "heldout": 0,           # held-out critiques sampled at the end of a stage
    "train_state": 1,       # the train state's PRNG key
    "rft": 1,               # RFT's items, their response orders and sampled critiques
    "rft_hinted": 2,        # RFT's hinted resampling of unsolved items
    "grpo": 2,              # GRPO's pool of training items
    "meta_rm": 3,           # the meta RM's items and their sampled critiques
    "scalar_rm": 4,         # the scalar RM's items
    "meta_rm_head": 5,      # the meta RM's head initialisation
    "scalar_rm_head": 6,    # the scalar RM's head initialisation
    "rft_teacher": 17,      # the teacher rows mixed into RFT
    "validation": 1_000_003,  # held-out items of every stage (and the meta RM's held-out critiques)
    "test": 2_000_003,      # the evaluation's synthetic test split (never trained or validated on)
    "eval_items": 0,        # the evaluation's draw of eval.n items from a file
    "eval_greedy": 0,       # the evaluation's greedy critiques (response orders)
    "eval_pool": 1,         # the evaluation's pool of sampled critiques
    "eval_bootstrap": 0,    # the evaluation's bootstrap intervals and voting@k subsets
}
# GRPO step t draws its B items with numpy's default_rng([cfg.seed, t]), plans their response
# orders from cfg.seed * GRPO_ORDERS + t and samples the rollouts from cfg.seed * GRPO_SAMPLES + t.
GRPO_ORDERS, GRPO_SAMPLES = 1_000_003, 7919

SFT_KEYS = ("tokens", "pad_mask", "loss_mask")


def seed(cfg, stream: str) -> int:
  """The seed of random stream `stream` (a key of SEEDS) for this config."""
  return cfg.seed + SEEDS[stream]


@dataclasses.dataclass
class StageRun:
  """A stage in progress: its config, where it writes, the model it starts from, the mesh."""
  cfg: Any
  workdir: str
  out_dir: epath.Path               # <workdir>/<stage>
  mcfg: config_lib.ModelConfig
  params: Any                       # the starting params (host arrays)
  tok: Tokenizer
  mesh: jax.sharding.Mesh
  t_start: float


def model_overrides(cfg, reward_head: bool = False) -> dict:
  """The config's `model` fields that override a loaded model's own config (compute dtype, remat,
  layer layout, LoRA; a scalar-head model never takes LoRA), as keyword arguments of
  model.load.load / model.config.get_config; unset fields are left out."""
  m = cfg.model
  out = {"dtype": m.dtype, "remat": m.remat, "remat_policy": m.get("remat_policy"),
         "scan_layers": m.get("scan_layers"), "lora_rank": None if reward_head else m.get("lora_rank"),
         "lora_alpha": m.get("lora_alpha"), "lora_targets": m.get("lora_targets") or None}
  return {k: v for k, v in out.items() if v is not None}


def load_model(cfg, workdir: str | None, spec: str | None = None, *, reward_head: bool = False,
               key: str = "init", mesh: Any = None) -> load_lib.Loaded:
  """The model `spec` (default cfg.init) names, with the config's preset, seed, dtypes and
  tokenizer (model/load.py), placed on `mesh` when given; `key` names the config field in errors."""
  spec = cfg.init if spec is None else spec
  rank = cfg.model.get("lora_rank")
  if rank and jax.process_index() == 0:
    if reward_head:
      print(f"[{cfg.get('stage', 'model')}] model.lora_rank={rank} is not applied here: a scalar-head stage trains every "
            "param", flush=True)
    elif spec == "scratch":
      print(f"[{cfg.get('stage', 'model')}] model.lora_rank={rank} with init=scratch: the random base stays frozen and only "
            "the adapters learn", flush=True)
  m = load_lib.load(spec, workdir=workdir, preset=cfg.model.preset, seed=cfg.seed,
                    param_dtype=cfg.model.param_dtype, **model_overrides(cfg, reward_head),
                    tokenizer=cfg.tokenizer, reward_head=reward_head, mesh=mesh, what=f"config {key}")
  return load_lib.check_vocab(m, f"config {key}={spec!r}")


def begin(cfg, workdir: str) -> StageRun:
  """Starts stage cfg.stage: its folder, the model cfg.init names, the mesh of cfg.mesh.shape."""
  t_start = time.perf_counter()
  out_dir = load_lib.stage_dir(workdir, cfg.stage)
  out_dir.mkdir(parents=True, exist_ok=True)
  mesh = mesh_lib.make_mesh(tuple(cfg.mesh.shape))
  m = load_model(cfg, workdir, mesh=mesh)
  return StageRun(cfg, workdir, out_dir, m.config, m.params, m.tokenizer, mesh, t_start)


def finish(s: StageRun, params: Any, last: dict, *, steps: int | None = None, **fields) -> dict:
  """Writes the stage's output model (final/) and returns, after printing it, its summary:
  the stage, `fields`, the steps trained, the wall time and every held-out (val_*) metric."""
  mcfg = s.mcfg
  if mcfg.lora_rank:  # the adapters on their own, and the model with them folded in as final/
    orbax_io.save(lora.split(params)[1], config_lib.to_dict(mcfg), s.out_dir / "adapters", s.tok)
    params = lora.fold(params, mcfg.lora_alpha, mcfg.lora_rank, dtype=mcfg.param_dtype)
    mcfg = config_lib.replace(mcfg, lora_rank=0)
  orbax_io.save(params, config_lib.to_dict(mcfg), s.out_dir / "final", s.tok)
  summary = {"stage": s.cfg.stage, **fields, "steps": s.cfg.train.steps if steps is None else steps,
             "wall_seconds": time.perf_counter() - s.t_start,
             **{k: v for k, v in last.items() if k.startswith("val_")}}
  print(f"\n== {summary['stage']} ==")
  for k, v in summary.items():
    if k != "stage":
      print(f"  {k:<32s}{v:.4f}" if isinstance(v, float) else f"  {k:<32s}{v}")
  print(flush=True)
  return summary


# ---- Training: optimizer, sharded state, the loop.

def optimizer(cfg) -> tuple[Any, Any]:
  """(optax transformation, learning-rate schedule) of cfg.opt (opt.total_steps 0 = train.steps)."""
  opt = dict(cfg.opt)
  opt["total_steps"] = opt["total_steps"] or cfg.train.steps
  opt_cfg = state_lib.OptimConfig.from_dict(opt)
  return state_lib.make_optimizer(opt_cfg), state_lib.schedule(opt_cfg)


def state_layout(cfg, mcfg: config_lib.ModelConfig, params: Any, mesh, logical: Any = None):
  """(tx, schedule, create, shardings) of the train state for `params` (arrays or abstract):
  create(params) -> TrainState (jit it with out_shardings=shardings). With LoRA (mcfg.lora_rank)
  the adapters are the trained params and the base weights the frozen ones, in the compute dtype.

  logical: the params' logical axis names (default: the transformer's, transformer.logical_axes)."""
  tx, schedule = optimizer(cfg)
  key = seed(cfg, "train_state")
  logical = transformer.logical_axes(mcfg) if logical is None else logical
  if mcfg.lora_rank:
    def create(p):
      frozen, trained = lora.split(p)
      return state_lib.create(trained, tx, jax.random.key(key), frozen=frozen, frozen_dtype=mcfg.jnp_dtype)
    frozen_names, names = lora.split(logical)
  else:
    create = lambda p: state_lib.create(p, tx, jax.random.key(key))  # noqa: E731
    frozen_names, names = None, logical
  abstract = jax.eval_shape(create, params)
  shardings = mesh_lib.shardings_for(state_lib.logical_axes(tx, names, abstract.params, frozen_names),
                                     abstract, mesh)
  return tx, schedule, create, shardings


def train_state(cfg, mcfg: config_lib.ModelConfig, params: Any, mesh, logical: Any = None
                ) -> tuple[state_lib.TrainState, Callable]:
  """(train state, make_step): the state sharded on `mesh` by the logical rules (`state_layout`),
  and make_step(loss_fn, batch_keys=SFT_KEYS) -> the jitted step for that state, with batches
  (dicts of [B, ...] arrays under batch_keys) split over the data axes. One state serves any
  number of steps (GRPO's first and later inner updates); the loss sees the whole param tree
  (`state.model_params`)."""
  mesh_lib.check_batch(cfg.train.batch_size, mesh, "train.batch_size")
  tx, schedule, create, shardings = state_layout(cfg, mcfg, params, mesh, logical)
  # params to their shards first, then the float32 master copy and the moments created under jit
  # straight into theirs: no device ever holds more than its share of the state
  whole = shardings.params if shardings.frozen is None else lora.merge(shardings.frozen, shardings.params)
  params = mesh_lib.put(params, whole)
  st = jax.jit(create, out_shardings=shardings)(params)

  def make_step(loss_fn, batch_keys=SFT_KEYS):
    return step_lib.make_step(loss_fn, tx, micro_batches=cfg.train.micro_batches, state_shardings=shardings,
                              batch_shardings={k: mesh_lib.batch_sharding(mesh) for k in batch_keys},
                              schedule=schedule)
  return st, make_step


def loop_config(cfg) -> loop_lib.LoopConfig:
  return loop_lib.LoopConfig(steps=cfg.train.steps, log_every=cfg.train.log_every,
                             ckpt_every=cfg.train.ckpt_every, eval_every=cfg.train.eval_every,
                             keep_last=cfg.checkpoint.keep_last, keep_best=cfg.checkpoint.keep_best,
                             async_save=cfg.checkpoint.async_save)


def fit(s: StageRun, state: Any, step_fn: Callable, get_batch: Callable,
        eval_fn: Callable[[Any], dict] | None = None) -> tuple[Any, dict]:
  """Trains `state` for cfg.train.steps in the stage's folder (resuming from its checkpoints);
  returns (host params, last metrics including eval_fn's)."""
  with mesh_lib.activation_sharding(s.mesh):
    st, last = loop_lib.run(s.out_dir, state, step_fn, get_batch, loop_config(s.cfg), s.mesh,
                            eval_fn=eval_fn, desc=s.cfg.stage)
  return mesh_lib.fetch(state_lib.model_params(st)), last


def fit_sft(s: StageRun, params: Any, rows: dict) -> tuple[Any, dict]:
  """SFT of `params` on right-padded rows (`sft_rows`), evaluated on held-out items at the end."""
  state, make_step = train_state(s.cfg, s.mcfg, params, s.mesh)
  step = make_step(sft.loss_fn(transformer.Transformer(s.mcfg)))
  batches = loop_lib.batches_from(rows, s.cfg.train.batch_size, seed(s.cfg, "batches"), trim_multiple=64)
  return fit(s, state, step, batches, heldout(s))


# ---- Data: items, the teacher's rows.

def items(cfg, n: int, seed: int, split: str = "train") -> list:
  """Training or held-out items: synthetic ones from `seed`, or the user's file (cfg.data.source,
  any format `sources.load_examples` reads; the held-out split is cfg.data.val_source)."""
  source = cfg.data.source if split == "train" else cfg.data.get("val_source", "") or "synthetic"
  if source == "synthetic":
    return world(cfg).generate(n, seed=seed, difficulty=cfg.data.difficulty, n_responses=tuple(cfg.data.n_responses))
  examples, stats = sources.load_examples(source, cfg.data.format or "auto", skip_invalid=cfg.data.get("skip_invalid", False))
  print(f"[data] {source}: {stats.summary()}", flush=True)
  if not examples:
    raise ValueError(f"config data.source={source!r}: no usable example")
  order = np.random.default_rng(seed).permutation(len(examples))[:n]
  return [examples[i] for i in order]


def validation_examples(cfg) -> list:
  """Held-out items (pairwise and multi-response when synthetic): the same for every stage."""
  if (cfg.data.get("val_source", "") or "synthetic") == "synthetic":
    return world(cfg).generate(cfg.eval.n, seed=seed(cfg, "validation"), difficulty=cfg.data.difficulty,
                               n_responses=(2, 3, 4))
  return items(cfg, cfg.eval.n, seed(cfg, "validation"), split="val")


WORLDS = {"classic": synthetic, "principled": principled}


def world(cfg):
  """The synthetic world `cfg.data.world` names (data/synthetic.py, data/principled.py)."""
  name = cfg.data.get("world", "classic")
  if name not in WORLDS:
    raise ValueError(f"config data.world={name!r}: expected one of {tuple(WORLDS)}")
  return WORLDS[name]


def teacher_pairs(cfg, examples, seed: int) -> list[tuple]:
  """Each example in a random order with the teacher's critique for that order (the world's
  teacher, cfg.data.error_rate; in the principled world also cfg.data.principle_skill), in the
  prompt variant cfg.data.variant (no_principles: the classic teacher's critique without its
  principles line; the principled teacher's critique written without principles)."""
  rng = np.random.default_rng(seed)
  mod, variant = world(cfg), cfg.data.variant
  kw = {"skill": cfg.data.principle_skill, "principles": variant != "no_principles"} if mod is principled else {}
  pairs = []
  for ex in examples:
    shown, _ = prompts.shuffle(ex, rng)
    critique = mod.teacher_critique(shown, rng, error_rate=cfg.data.error_rate, **kw)
    if variant == "no_principles":
      critique = critique.split("\n", 1)[1] if critique.startswith(prompts.PRINCIPLES_LABEL) else critique
    pairs.append((shown, critique))
  return pairs


def sft_rows(pairs, tok, *, max_len: int, variant: str, style: str, prompt_weight: float = 0.0
             ) -> tuple[dict[str, np.ndarray], int]:
  """(example as shown, critique) pairs -> right-padded SFT rows (`pipeline.batch_sft`) and the
  number of items left out as too long (reported, never silent).

  prompt_weight > 0: the prompt's tokens are targets too, with this weight (loss_mask becomes
  float32: 1 on the critique, prompt_weight on the prompt, 0 on padding). Training from scratch,
  this language-modelling signal on the tasks' own text (tables, dialogues, responses that copy
  facts) is the stand-in for pre-training: it teaches the model to read and copy, which judging
  needs; fine-tuning a pretrained model keeps the default 0 (completion tokens only)."""
  rows, stats = pipeline.batch_sft(pairs, tok, max_len=max_len, variant=variant, style=style)
  if prompt_weight:
    prompt = rows["pad_mask"] & ~rows["loss_mask"]
    rows["loss_mask"] = rows["loss_mask"].astype(np.float32) + np.float32(prompt_weight) * prompt
  if stats.truncated or stats.too_long:
    print(f"[data] length policy: {stats.summary()}", flush=True)
  if not len(rows["tokens"]):
    raise ValueError(f"no SFT rows: {len(pairs)} items given, {stats.too_long} of them longer than "
                     f"data.max_len={max_len} tokens")
  return rows, stats.too_long


# ---- Held-out accuracy.

def heldout_accuracy(cfg, mcfg, params, tok, examples, *, mesh, variant: str, style: str) -> dict:
  """Greedy and voting@k (sum; none when cfg.eval.k = 0) accuracy on held-out items, per family, and in the principled world
  the share of greedy critiques that put the decisive principle first (val_decisive_first; on its
  synthetic items only, and not for the no_principles variant, whose critiques state no principle)."""
  common = dict(cfg=mcfg, params=params, tok=tok, max_new_tokens=cfg.eval.max_new_tokens,
                seed=seed(cfg, "heldout"), variant=variant, style=style, mesh=mesh)
  t0 = time.perf_counter()
  greedy = judge_lib.judge(examples, k=1, sampling=sampling_lib.Greedy(), desc="held-out greedy", **common)
  g = metrics.judgement_metrics(examples, greedy)
  voting = {}
  if cfg.eval.k:
    voted = judge_lib.judge(examples, k=cfg.eval.k, sampling=sampling_lib.Temperature(cfg.eval.temperature),
                            desc=f"held-out k={cfg.eval.k}", **common)
    v = metrics.judgement_metrics(examples, voted)
    voting = {f"val_voting@{cfg.eval.k}_accuracy": v["accuracy"], f"val_voting@{cfg.eval.k}_valid_rate": v["valid_rate"]}
  correct = metrics.pool_correct(examples, [j.scores for j in greedy])
  per_family = {f"val_accuracy_{f}": float(np.mean([c for c, ex in zip(correct, examples) if ex.family == f]))
                for f in sorted({ex.family for ex in examples})}
  synthetic_val = (cfg.data.get("val_source", "") or "synthetic") == "synthetic"
  if world(cfg) is principled and synthetic_val and variant != "no_principles":  # led by the decisive principle
    per_family["val_decisive_first"] = float(np.mean([principled.main_principle(j.texts[0]) == ex.family
                                                      for j, ex in zip(greedy, examples)]))
    parts = principled.parts_summary([ex.permuted(j.perms[0]) for j, ex in zip(greedy, examples)],
                                     [j.texts[0] for j in greedy])
    per_family["val_reading"], per_family["val_scores_follow_analysis"] = parts["reading"], parts["follows"]
  return {"val_accuracy": g["accuracy"], "val_valid_rate": g["valid_rate"],
          "val_chance": float(np.mean([1.0 / ex.n if ex.n >= 2 else 0.0 for ex in examples])),
          **voting, **per_family, "eval_seconds": time.perf_counter() - t0}


def validate(s: StageRun) -> Callable[[Any], dict]:
  """check(params) -> `heldout_accuracy` of a whole param tree on the stage's validation items."""
  val = validation_examples(s.cfg)
  return lambda params: heldout_accuracy(s.cfg, s.mcfg, params, s.tok, val, mesh=s.mesh,
                                         variant=s.cfg.data.variant, style=s.cfg.data.style)


def heldout(s: StageRun) -> Callable[[Any], dict]:
  """eval_fn(state) -> `validate` of the state's model params (trained joined with frozen)."""
  check = validate(s)
  return lambda state: check(state_lib.model_params(state))
