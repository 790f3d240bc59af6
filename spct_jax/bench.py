"""Benchmarks (CLI): `python -m spct_jax.bench <subcommand> [flags]`; `--help` lists them.

    python -m spct_jax.bench sampler                    # small and medium presets, B=4, k=16
    python -m spct_jax.bench train                      # SFT step: tokens/s, MFU, vs PyTorch
    python -m spct_jax.bench grpo                       # one GRPO step vs TRL's GRPOTrainer
    python -m spct_jax.bench sampler --presets=tiny --batch=1 --k=2 --prompt_len=8 \\
        --new_tokens=4 --prefill_ks=1,2 --bandwidth_mib=16 --matmul_n=256     # a smoke run

`sampler` prints, for B prompts x k samples (prompt `--prompt_len` tokens, `--new_tokens` new
tokens), the end-to-end tokens/s (B*k*N / wall time of one call, prefill included) of
  (a) spct_jax.sampling.sample: prefill once per prompt, decode B*k rows together;
  (b) the same without prefix sharing: the prompt repeated k times and prefilled k times;
  (c) Hugging Face `generate(do_sample=True, num_return_sequences=k)` on the same weights
      (exported with `hf.save`; torch threads = this process's cores; min_new_tokens =
      max_new_tokens), when torch and transformers are installed;
  (d) the machine's bound for (a)'s work: the prefill's and every decode step's
      max(bytes / measured memory bandwidth, FLOPs / measured matmul FLOP/s), summed;
and the ratios a/b, a/c, a/d; then the prefill time (a call with max_new_tokens=1) at each k of
`--prefill_ks`, and the KV cache size and XLA's temporary memory of the largest case.
Random weights and no stop tokens: every row decodes the full budget (stop_ids=(); HF gets
min_new_tokens=max_new_tokens). Times are the best of `--repeats` runs of an AOT-compiled
executable (compile excluded); HF is warmed up once on a short run. On Linux `sampler` and
`train` re-execute the CLI once with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (see
`reexec_with_huge_pages`; --no_thp before the subcommand turns it off); it applies to both sides
of each comparison. `grpo` runs without it, as `spct_jax.train` runs a GRPO stage: with it, our
update column measured 14.2 s against 11.1 s without (`medium`, the optimizer step right after a
sampler call; docs/benchmarks.md), while TRL's step was the same either way.

`grpo` times one GRPO step, B prompts x G rollouts of N new tokens, a rule reward, reference
log-probs (beta > 0), one AdamW update, in our code (the sampler and spct_jax.train.grpo) and in
TRL's `GRPOTrainer` on the same weights, prompt ids and reward (when trl is installed: the
`parity` extra); it prints rollout tokens/s, update tokens/s, seconds per step and the ratio.

`measure_memory_bandwidth` and `measure_matmul_flops` are the machine measurements, reusable by
other benchmarks in this file.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import tempfile
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from spct_jax import sampling
from spct_jax.model import config as config_lib
from spct_jax.model import transformer
from spct_jax.model.config import ModelConfig

SAMPLER_COLUMNS = ("preset", "params", "B", "k", "prompt", "new", "a_tok/s", "b_tok/s", "c_hf_tok/s",
                   "d_bound_tok/s", "a/b", "a/c", "a/d")
PREFILL_COLUMNS = ("preset", "B", "prompt", "k", "prefill_s", "vs_k_first")
HUGE_PAGES = "glibc.malloc.hugetlb=1"  # glibc tunable: malloc madvises huge pages (see below)
THP_COMMANDS = ("sampler", "train")  # the subcommands run with it (`grpo` without: module docstring)


# ---- machine measurements (reusable) ---------------------------------------------------------


def best_time(fn: Callable[[], Any], repeats: int) -> float:
  """Best wall time in seconds of `repeats` calls of fn() (outputs blocked on)."""
  times = []
  for _ in range(max(1, repeats)):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return min(times)


def measure_memory_bandwidth(n_mib: int = 256, repeats: int = 10) -> float:
  """Bytes/s read from memory: a jitted sum over an `n_mib` MiB float32 array (best of repeats).

  Use an array much larger than the last-level cache so the read streams from DRAM.
  """
  n = n_mib * (1 << 20) // 4
  x = jnp.ones((n,), jnp.float32)
  fn = jax.jit(jnp.sum)
  jax.block_until_ready(fn(x))
  return 4.0 * n / best_time(lambda: fn(x), repeats)


def measure_matmul_flops(n: int = 1024, repeats: int = 20, dtype: Any = jnp.float32) -> float:
  """FLOP/s of a jitted [n, n] @ [n, n] matmul in `dtype` (2 n^3 FLOPs; best of repeats)."""
  a = jnp.ones((n, n), dtype)
  b = jnp.full((n, n), 0.5, dtype)
  fn = jax.jit(jnp.matmul)
  jax.block_until_ready(fn(a, b))
  return 2.0 * n ** 3 / best_time(lambda: fn(a, b), repeats)


# ---- the sampler's work, counted ------------------------------------------------------------


def matmul_params_per_token(cfg: ModelConfig) -> int:
  """Weights used in matmuls by one token's forward pass (all layers plus the output projection)."""
  d, n, kv, h, f = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.mlp_dim
  per_layer = d * n * h + 2 * d * kv * h + n * h * d + 3 * d * f
  return cfg.n_layers * per_layer + d * cfg.vocab_size


def _context(cfg: ModelConfig, length: int) -> list[int]:
  """Keys attended per layer by a token that sees `length` keys (sliding windows applied)."""
  return [min(length, cfg.sliding_window) if local else length for local in cfg.local_layers]


def kv_cache_bytes(cfg: ModelConfig, rows: int, slots: int) -> int:
  """Bytes of a KV cache (keys, values and slot bookkeeping) of `rows` x `slots`."""
  cache = jax.eval_shape(lambda: transformer.init_cache(cfg, rows, slots))
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(cache))


def decode_cache_bytes(cfg: ModelConfig, batch: int, k: int, prompt_len: int, new_tokens: int
                       ) -> tuple[int, int]:
  """Bytes of the sampler's decode cache (transformer.share_prefix): (the prompts' part, B rows
  of prompt_len slots whatever k; the samples' part, B*k rows of new_tokens slots)."""
  cache = jax.eval_shape(lambda: transformer.share_prefix(
      cfg, transformer.init_cache(cfg, batch, prompt_len), k, new_tokens))
  flat = jax.tree_util.tree_flatten_with_path(cache)[0]
  size = lambda leaf: leaf.size * leaf.dtype.itemsize  # noqa: E731
  prefix = sum(size(x) for path, x in flat if "prefix" in jax.tree_util.keystr(path))
  return prefix, sum(size(x) for _, x in flat) - prefix


@dataclasses.dataclass(frozen=True)
class Work:
  """FLOPs and bytes of one call of the shared-prefix sampler, and its time bound on a machine."""
  flops: float
  bytes: float
  seconds: float  # sum over the prefill and every decode step of max(bytes/bw, flops/peak)


def sampler_work(cfg: ModelConfig, batch: int, k: int, prompt_len: int, new_tokens: int,
                 bandwidth: float, flops_per_s: float) -> Work:
  """The least work of (a): prefill B prompts once, then N-1 decode steps of B*k rows.

  Prefill: 2 * matmul weights per prompt token (output projection only at the last position),
  causal attention (4 * heads * head_dim per query-key pair), and the weights read once.
  Decode step n (1 <= n < N): every row runs one token against T + n keys (within each layer's
  window); bytes = all weights + the prompt's K/V once per prompt (the sampler stores and reads it
  once for its k samples) + each row's own generated K/V. Memory and compute are bounded per
  phase: time = sum of max(bytes / bandwidth, FLOPs / flops_per_s).
  """
  rows = batch * k
  itemsize = jnp.dtype(cfg.param_dtype).itemsize
  kv_item = jnp.dtype(cfg.dtype).itemsize
  weight_bytes = transformer.param_count(cfg) * itemsize
  body = matmul_params_per_token(cfg) - cfg.d_model * cfg.vocab_size
  qk = 4 * cfg.n_heads * cfg.head_dim                       # FLOPs per (query, key) pair per layer
  kv_row = 2 * cfg.n_kv_heads * cfg.head_dim * kv_item      # K and V bytes per key per layer

  attn_pairs = sum(sum(_context(cfg, i + 1)) for i in range(prompt_len))
  flops = batch * (2 * body * prompt_len + 2 * cfg.d_model * cfg.vocab_size + qk * attn_pairs)
  nbytes = weight_bytes + batch * prompt_len * kv_row * cfg.n_layers
  seconds = max(nbytes / bandwidth, flops / flops_per_s)
  total_flops, total_bytes = flops, nbytes
  for n in range(1, new_tokens):
    context = _context(cfg, prompt_len + n)
    keys = sum(context)
    own = sum(min(n, c) for c in context)                   # the row's generated keys; the rest is prompt
    flops = rows * (2 * matmul_params_per_token(cfg) + qk * keys)
    nbytes = weight_bytes + kv_row * (batch * (keys - own) + rows * own)
    seconds += max(nbytes / bandwidth, flops / flops_per_s)
    total_flops += flops
    total_bytes += nbytes
  return Work(flops=total_flops, bytes=total_bytes, seconds=seconds)


# ---- the runs -------------------------------------------------------------------------------


def random_prompts(cfg: ModelConfig, batch: int, prompt_len: int, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray]:
  """[B, T] random token ids (never 0, the pad id) and an all-True mask."""
  rng = np.random.default_rng(seed)
  tokens = rng.integers(1, cfg.vocab_size, size=(batch, prompt_len)).astype(np.int32)
  return tokens, np.ones_like(tokens, bool)


def time_sampler(cfg: ModelConfig, params: Any, tokens: np.ndarray, mask: np.ndarray, *, k: int,
                 new_tokens: int, share_prefix: bool, repeats: int) -> tuple[float, Any]:
  """Best seconds of `repeats` sampler calls (AOT-compiled first, so no compile is timed);
  returns (seconds, compiled). Checks that every row decoded the full budget."""
  run, compiled = sampling.compile_sample(
      cfg, params, tokens, mask, jax.random.key(1), k=k, max_new_tokens=new_tokens,
      sampling=sampling.Temperature(1.0), stop_ids=(), share_prefix=share_prefix,
      buckets=(tokens.shape[1],))
  outs = []
  seconds = best_time(lambda: outs.append(run()) or outs[-1], repeats)
  lengths = np.asarray(outs[-1].lengths)
  if not (lengths == new_tokens).all():
    raise RuntimeError(f"benchmark rows stopped early: lengths {np.unique(lengths)}")
  return seconds, compiled


def prefill_times(cfg: ModelConfig, params: Any, tokens: np.ndarray, mask: np.ndarray,
                  ks: Sequence[int], repeats: int) -> list[float]:
  """Best seconds of a max_new_tokens=1 sampler call at each k, runs interleaved across k (so
  a change of machine load hits every k alike)."""
  runs = []
  for k in ks:
    run, _ = sampling.compile_sample(cfg, params, tokens, mask, jax.random.key(1), k=k, max_new_tokens=1,
                                     sampling=sampling.Temperature(1.0), buckets=(tokens.shape[1],))
    jax.block_until_ready(run())
    runs.append(run)
  best = [math.inf] * len(ks)
  for _ in range(max(1, repeats)):
    for i, run in enumerate(runs):
      best[i] = min(best[i], best_time(run, 1))
  return best


def time_hf(cfg: ModelConfig, params: Any, tokens: np.ndarray, *, k: int, new_tokens: int,
            threads: int) -> float | None:
  """Seconds of HF `generate` with k samples per prompt on the same weights; None without torch."""
  try:
    import torch
    import transformers
  except ImportError:
    return None
  from spct_jax.model import hf
  torch.set_num_threads(threads)
  with tempfile.TemporaryDirectory() as path:
    hf.save(cfg, params, path)
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
  model.eval()
  ids = torch.as_tensor(tokens, dtype=torch.long)
  attn = torch.ones_like(ids)

  def gen(n):
    with torch.inference_mode():
      return model.generate(input_ids=ids, attention_mask=attn, do_sample=True, temperature=1.0,
                            top_k=0, top_p=1.0, num_return_sequences=k, max_new_tokens=n,
                            min_new_tokens=n, pad_token_id=0, eos_token_id=None)

  gen(2)  # warm-up
  t0 = time.perf_counter()
  out = gen(new_tokens)
  seconds = time.perf_counter() - t0
  if tuple(out.shape) != (tokens.shape[0] * k, tokens.shape[1] + new_tokens):
    raise RuntimeError(f"HF generate returned shape {tuple(out.shape)}")
  return seconds


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  """A plain aligned text table."""
  cells = [[_fmt(v) for v in r] for r in rows]
  widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
  line = lambda vals: "  ".join(v.rjust(w) for v, w in zip(vals, widths))
  return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells])


def _fmt(v: Any) -> str:
  if v is None:
    return "n/a"
  if isinstance(v, float):
    return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
  return str(v)


def _ratio(a: float | None, b: float | None) -> float | None:
  return None if a is None or b is None else a / b


def bench_sampler(args: argparse.Namespace) -> dict[str, Any]:
  """Runs the `sampler` benchmark, prints its tables; returns the numbers."""
  threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  load = os.getloadavg() if hasattr(os, "getloadavg") else None
  print(f"devices: {jax.devices()}; cores: {threads}; load average: {load}; "
        f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r}")
  bandwidth = measure_memory_bandwidth(args.bandwidth_mib)
  peak = measure_matmul_flops(args.matmul_n)
  print(f"machine: memory bandwidth {bandwidth / 1e9:.1f} GB/s (jnp.sum over {args.bandwidth_mib} MiB), "
        f"matmul {peak / 1e9:.1f} GFLOP/s (float32 {args.matmul_n}^3)")
  b, k, t, n = args.batch, args.k, args.prompt_len, args.new_tokens
  rows, prefill_rows, largest = [], [], None
  for preset in args.presets:
    cfg = config_lib.get_config(preset)
    params = transformer.init_params(cfg, jax.random.key(0))
    tokens, mask = random_prompts(cfg, b, t)
    total = b * k * n
    a_s, compiled = time_sampler(cfg, params, tokens, mask, k=k, new_tokens=n, share_prefix=True,
                                 repeats=args.repeats)
    b_s, _ = time_sampler(cfg, params, tokens, mask, k=k, new_tokens=n, share_prefix=False,
                          repeats=args.repeats)
    c_s = None if args.no_hf else time_hf(cfg, params, tokens, k=k, new_tokens=n, threads=threads)
    d_s = sampler_work(cfg, b, k, t, n, bandwidth, peak).seconds
    a, bb, c, d = total / a_s, total / b_s, _ratio(total, c_s), total / d_s
    rows.append((preset, f"{transformer.param_count(cfg) / 1e6:.1f}M", b, k, t, n, a, bb, c, d,
                 a / bb, _ratio(a, c), a / d))
    mem = compiled.memory_analysis()
    largest = (preset, cfg, getattr(mem, "temp_size_in_bytes", None))
    prefill = prefill_times(cfg, params, tokens, mask, args.prefill_ks, args.prefill_repeats)
    prefill_rows += [(preset, b, t, kk, s, s / prefill[0]) for kk, s in zip(args.prefill_ks, prefill)]
    c_text = "n/a" if c_s is None else f"{c_s:.2f}s"
    print(f"[{preset}] seconds per call: a {a_s:.2f}s  b {b_s:.2f}s  c {c_text}  d {d_s:.3f}s", flush=True)
  print()
  print(f"Sampler: tokens/s = B*k*N / wall time of one call (prefill included), best of {args.repeats}; "
        "random weights, no stop tokens (every row decodes the full budget)")
  print(format_table(SAMPLER_COLUMNS, rows))
  print()
  print(f"Prefill: one sampler call with max_new_tokens=1 (prefill B prompts once, "
        f"sample one token), best of {args.prefill_repeats} interleaved runs")
  print(format_table(PREFILL_COLUMNS, prefill_rows))
  preset, cfg, temp = largest
  prompt_kv, own_kv = decode_cache_bytes(cfg, b, k, t, n)
  unshared = kv_cache_bytes(cfg, b * k, t + n)
  print()
  print(f"KV cache, largest case ({preset}, B={b}, k={k}): the prompts' part {prompt_kv / 2**20:.1f} MiB "
        f"(B rows x {t} slots, the same at any k), the samples' part {own_kv / 2**20:.1f} MiB "
        f"(B*k rows x {n} slots); without sharing (b) {unshared / 2**20:.1f} MiB; "
        f"XLA temporary memory of the whole sampler: "
        f"{'n/a' if temp is None else f'{temp / 2**20:.1f} MiB'}")
  return {"sampler": rows, "prefill": prefill_rows, "kv_cache_bytes": prompt_kv + own_kv,
          "prompt_kv_bytes": prompt_kv, "unshared_kv_bytes": unshared, "bandwidth": bandwidth,
          "matmul_flops": peak}


# ---- the train step -----------------------------------------------------------------------------


def train_step_flops(cfg: ModelConfig, batch: int, seq: int) -> float:
  """Model FLOPs of one SFT step (forward + backward): 6 * matmul weights * tokens plus the
  attention's score and value matmuls, 12 * layers * heads * head_dim * keys per token
  (sliding windows applied; causal: on average half the keys)."""
  tokens = batch * seq
  keys = sum(_context(cfg, seq)) / 2
  return 6.0 * matmul_params_per_token(cfg) * tokens + 12.0 * cfg.n_heads * cfg.head_dim * keys * tokens


def _sft_batch(cfg: ModelConfig, batch: int, seq: int) -> dict[str, np.ndarray]:
  r = np.random.default_rng(0)
  tokens = r.integers(4, cfg.vocab_size, size=(batch, seq)).astype(np.int32)
  mask = np.ones((batch, seq), bool)
  loss = mask.copy()
  loss[:, : seq // 2] = False  # the prompt half is masked, as in SFT on critiques
  return {"tokens": tokens, "pad_mask": mask, "loss_mask": loss}


def time_jax_train_step(cfg: ModelConfig, batch: int, seq: int, repeats: int) -> float:
  """Seconds per SFT step (spct_jax.train.step.make_step with the SFT loss and AdamW), best of repeats."""
  from spct_jax.train import sft, state as state_lib, step as step_lib
  tx = state_lib.make_optimizer(state_lib.OptimConfig(lr=1e-4, total_steps=1000))
  st = state_lib.create(transformer.init_params(cfg, jax.random.key(0)), tx, jax.random.key(1))
  step = step_lib.make_step(sft.loss_fn(transformer.Transformer(cfg)), tx)
  b = jax.tree.map(jnp.asarray, _sft_batch(cfg, batch, seq))
  st, m = step(st, b)
  jax.block_until_ready(m)
  times = []
  for _ in range(max(1, repeats)):
    t0 = time.perf_counter()
    st, m = step(st, b)
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t0)
  return min(times)


def time_torch_train_step(cfg: ModelConfig, batch: int, seq: int, repeats: int, threads: int) -> float | None:
  """Seconds per step of transformers' LlamaForCausalLM with the same shapes (float32, AdamW,
  masked cross-entropy), best of repeats; None without torch/transformers."""
  try:
    import torch
    import transformers
  except ImportError:
    return None
  torch.set_num_threads(threads)
  torch.manual_seed(0)
  hf_cfg = transformers.LlamaConfig(
      vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.mlp_dim,
      num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads,
      head_dim=cfg.head_dim, tie_word_embeddings=cfg.tie_embeddings, max_position_embeddings=max(seq, 128),
      attn_implementation="sdpa")
  model = transformers.LlamaForCausalLM(hf_cfg)
  opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
  data = _sft_batch(cfg, batch, seq)
  ids = torch.from_numpy(data["tokens"].astype(np.int64))
  labels = ids.clone()
  labels[torch.from_numpy(~data["loss_mask"])] = -100

  def step():
    opt.zero_grad(set_to_none=True)
    out = model(input_ids=ids, labels=labels)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()

  step()
  times = []
  for _ in range(max(1, repeats)):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
  return min(times)


TRAIN_COLUMNS = ("preset", "arch", "params", "B", "T", "jax tok/s", "MFU", "torch tok/s", "jax/torch")


def bench_train(args: argparse.Namespace) -> dict[str, Any]:
  """Runs the `train` benchmark, prints its table; returns the numbers."""
  threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  load = os.getloadavg() if hasattr(os, "getloadavg") else None
  print(f"devices: {jax.devices()}; cores: {threads}; load average: {load}")
  peak = measure_matmul_flops(args.matmul_n)
  print(f"machine: matmul {peak / 1e9:.1f} GFLOP/s (float32 {args.matmul_n}^3)")
  rows = []
  for preset in args.presets:
    base = config_lib.get_config(preset)
    variants = [("preset", base)]
    if not args.no_torch:  # the same shapes as a Llama, the architecture the PyTorch baseline runs
      variants.append(("llama", config_lib.replace(
          base, model_type="llama", sliding_window=None, query_pre_attn_scalar=None, attn_softcap=None,
          final_softcap=None)))
    for arch, cfg in variants:
      s = time_jax_train_step(cfg, args.batch, args.seq_len, args.repeats)
      tok_s = args.batch * args.seq_len / s
      mfu = train_step_flops(cfg, args.batch, args.seq_len) / s / peak
      t = None if arch != "llama" else time_torch_train_step(cfg, args.batch, args.seq_len, args.repeats, threads)
      torch_tok_s = None if t is None else args.batch * args.seq_len / t
      rows.append((preset, f"{cfg.model_type}", f"{transformer.param_count(cfg) / 1e6:.1f}M", args.batch,
                   args.seq_len, tok_s, mfu, torch_tok_s, _ratio(tok_s, torch_tok_s)))
      print(f"[{preset}/{arch}] jax {s:.3f}s/step" + ("" if t is None else f"; torch {t:.3f}s/step"), flush=True)
  print()
  print(f"SFT step (forward, backward, AdamW), tokens/s = B*T / step time, best of {args.repeats}; "
        "MFU = model FLOPs per step / step time / measured matmul FLOP/s")
  print(format_table(TRAIN_COLUMNS, rows))
  return {"train": rows, "matmul_flops": peak}


# ---- one GRPO step against TRL -------------------------------------------------------------------

GRPO_COLUMNS = ("preset", "params", "B", "G", "prompt", "new", "impl", "rollout tok/s", "update tok/s",
                "step s", "ours/trl")


def token_reward(tokens: np.ndarray) -> np.ndarray:
  """The benchmark's rule reward of completions [R, N] (ids): the share of even token ids. Cheap
  and deterministic, the same in both implementations, so it times the machinery, not a judge."""
  return (np.asarray(tokens) % 2 == 0).mean(axis=-1).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class GRPOTimes:
  """Seconds of one GRPO step: rollout (sampling, reward, reference log-probs: everything before
  the gradient step) and update (forward, backward, optimizer), and their sum."""
  rollout: float
  update: float

  @property
  def step(self) -> float:
    return self.rollout + self.update


def time_jax_grpo_step(cfg: ModelConfig, params: Any, prompts: np.ndarray, *, group: int,
                       new_tokens: int, beta: float, lr: float, repeats: int) -> GRPOTimes:
  """Our GRPO step (spct_jax.train.grpo's loss and reference pass, which run each prompt once for
  its G rollouts, and the shared-prefix sampler),
  the best of `repeats` steps after a first compiling one: sample G completions per prompt at
  temperature 1, reward them (`token_reward`), the reference's log-probs (beta > 0), one
  optimizer step (mu = 1, on-policy, AdamW)."""
  from spct_jax.train import grpo, rl, state as state_lib, step as step_lib
  model = transformer.Transformer(cfg)
  tx = state_lib.make_optimizer(state_lib.OptimConfig(lr=lr, total_steps=1000, b2=0.999))
  ref = grpo.reference_params(params, cfg)
  st = state_lib.create(jax.tree.map(jnp.array, params), tx, jax.random.key(1))
  step = step_lib.make_step(grpo.loss_fn(model, temperature=1.0, clip_eps=0.2, beta=beta, kl_estimator="k3",
                                         aggregation="token-mean", on_policy=True), tx)
  ref_pass = grpo.reference_pass(model, 1.0)
  mask = np.ones_like(prompts, bool)
  best = None
  for i in range(max(1, repeats) + 1):
    t0 = time.perf_counter()
    out = sampling.sample(cfg, st.params, prompts, mask, jax.random.key(100 + i), k=group,
                          max_new_tokens=new_tokens, sampling=sampling.Temperature(1.0),
                          buckets=(prompts.shape[1],))
    tokens = np.asarray(out.tokens).reshape(-1, new_tokens)
    batch = grpo.sampled_batch(prompts, mask, out)
    batch["advantages"] = rl.group_advantages(jnp.asarray(token_reward(tokens)), group).reshape(-1, group)
    batch["ref_logprobs"] = (ref_pass(ref, *(batch[k] for k in grpo.BATCH_KEYS[:4])) if beta > 0
                             else jnp.zeros_like(batch["old_logprobs"]))
    jax.block_until_ready(batch)
    t1 = time.perf_counter()
    st, m = step(st, batch)
    jax.block_until_ready(m)
    times = GRPOTimes(t1 - t0, time.perf_counter() - t1)
    if i > 0 and (best is None or times.step < best.step):  # the first step compiles
      best = times
  return best


def _word_tokenizer(vocab_size: int):
  """A Hugging Face fast tokenizer whose text 't5 t17' is ids [5, 17]: prompts given to TRL as text
  become exactly the ids our side samples from (id 0 is padding; no special tokens are added)."""
  import tokenizers
  import transformers
  special = ["<pad>", "<unk>", "<eos>"]  # ids 0, 1, 2 (never in a prompt)
  vocab = {name: i for i, name in enumerate(special)} | {f"t{i}": i for i in range(len(special), vocab_size)}
  tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
  tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
  tok.decoder = tokenizers.decoders.WordPiece(prefix="##")  # joins with spaces
  return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>",
                                              unk_token="<unk>")


def time_trl_grpo_step(cfg: ModelConfig, params: Any, prompts: np.ndarray, *, group: int, new_tokens: int,
                       beta: float, lr: float, repeats: int, threads: int) -> GRPOTimes | None:
  """The same step in TRL's GRPOTrainer (PyTorch, transformers) on the same weights (exported with
  `hf.save`), prompts and reward: B*G rollouts per step (num_generations=G, one generation per
  step, num_iterations=1, no EOS before the budget: min_new_tokens=N), float32 on the CPU.
  rollout = TRL's `_generate_and_score_completions` (generation, reward, reference log-probs);
  update = the rest of the optimizer step. Best of `repeats` steps after a first one; None
  without trl."""
  try:
    import datasets
    import torch
    import transformers
    import trl
  except ImportError:
    return None
  from spct_jax.model import hf
  torch.set_num_threads(threads)
  tokenizer = _word_tokenizer(cfg.vocab_size)
  b = prompts.shape[0]
  texts = [" ".join(f"t{i}" for i in row) for row in prompts]
  data = datasets.Dataset.from_dict({"prompt": texts})
  ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
  if ids != prompts.tolist():
    raise RuntimeError("the TRL side's tokenizer does not give back the benchmark's prompt ids")

  def reward(completion_ids, **_):
    return [float(x) for x in token_reward(np.asarray([list(c) for c in completion_ids]))]

  gen_seconds, step_seconds = [], []

  class Timed(trl.GRPOTrainer):
    def _generate_and_score_completions(self, inputs):
      t0 = time.perf_counter()
      out = super()._generate_and_score_completions(inputs)
      gen_seconds.append(time.perf_counter() - t0)
      return out

  class StepClock(transformers.TrainerCallback):
    def on_step_begin(self, *a, **k):
      self.t0 = time.perf_counter()

    def on_step_end(self, *a, **k):
      step_seconds.append(time.perf_counter() - self.t0)

  with tempfile.TemporaryDirectory() as path:
    hf.save(cfg, params, path)
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.generation_config.eos_token_id = None
    args = trl.GRPOConfig(
        output_dir=os.path.join(path, "trl"), per_device_train_batch_size=b * group, num_generations=group,
        gradient_accumulation_steps=1, steps_per_generation=1, num_iterations=1,
        max_completion_length=new_tokens, temperature=1.0, top_p=1.0, top_k=0, beta=beta,
        learning_rate=lr, loss_type="grpo", max_steps=max(1, repeats) + 1, logging_steps=1,
        report_to="none", use_cpu=True, bf16=False, fp16=False, save_strategy="no", seed=0,
        generation_kwargs={"min_new_tokens": new_tokens}, disable_tqdm=True)
    trainer = Timed(model=model, reward_funcs=reward, args=args, train_dataset=data,
                    processing_class=tokenizer, callbacks=[StepClock()])
    trainer.train()
  steps = [GRPOTimes(g, s - g) for g, s in zip(gen_seconds[1:], step_seconds[1:])]
  return min(steps, key=lambda t: t.step) if steps else None


def bench_grpo(args: argparse.Namespace) -> dict[str, Any]:
  """Runs the `grpo` benchmark, prints its table; returns the numbers."""
  threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  load = os.getloadavg() if hasattr(os, "getloadavg") else None
  print(f"devices: {jax.devices()}; cores: {threads}; load average: {load}")
  b, g, t, n = args.batch, args.group, args.prompt_len, args.new_tokens
  rows = []
  for preset in args.presets:
    cfg = config_lib.get_config(preset)
    params = jax.tree.map(np.asarray, transformer.init_params(cfg, jax.random.key(0)))
    prompts, _ = random_prompts(cfg, b, t)
    prompts = np.maximum(prompts, 3)  # ids 0-2 are the TRL side's pad, unk and eos
    ours = time_jax_grpo_step(cfg, params, prompts, group=g, new_tokens=n, beta=args.beta, lr=args.lr,
                              repeats=args.repeats)
    theirs = None if args.no_trl else time_trl_grpo_step(
        cfg, params, prompts, group=g, new_tokens=n, beta=args.beta, lr=args.lr, repeats=args.repeats,
        threads=threads)
    tokens = b * g * n
    size = f"{transformer.param_count(cfg) / 1e6:.1f}M"
    for impl, tm in (("spct_jax", ours), ("trl", theirs)):
      if tm is None:
        continue
      rows.append((preset, size, b, g, t, n, impl, tokens / tm.rollout, tokens / tm.update, tm.step,
                   _ratio(theirs.step, ours.step) if impl == "spct_jax" and theirs else None))
    print(f"[{preset}] ours {ours.step:.2f}s/step" + ("" if theirs is None else f"; trl {theirs.step:.2f}s/step"),
          flush=True)
  print()
  print(f"GRPO step: B prompts x G rollouts of N new tokens (no stop before N), token reward, beta={args.beta} "
        f"(reference log-probs), mu=1, AdamW; tokens/s = B*G*N / seconds of the phase; best of {args.repeats} "
        "steps after a first one; ours/trl = TRL's step seconds / ours")
  print(format_table(GRPO_COLUMNS, rows))
  return {"grpo": rows}


def _names(text: str) -> list[str]:
  return [p for p in text.split(",") if p]


def _ints(text: str) -> list[int]:
  return [int(v) for v in text.split(",") if v]


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m spct_jax.bench", description=__doc__.split("\n")[0])
  parser.add_argument("--no_thp", action="store_true",
                      help=f"do not re-execute with GLIBC_TUNABLES={HUGE_PAGES} (transparent huge pages)")
  sub = parser.add_subparsers(dest="command", required=True)
  s = sub.add_parser("sampler", help="k-sample sampler vs no prefix sharing vs HF generate vs the machine bound")
  t = sub.add_parser("train", help="SFT-step tokens/s and MFU, and the same step in PyTorch (transformers)")
  g = sub.add_parser("grpo", help="one GRPO step (rollouts, reward, update): ours vs TRL's GRPOTrainer")
  for p in (s, t, g):
    p.add_argument("--presets", type=_names, default=["small", "medium"],
                   help="model presets, comma-separated (default: small,medium)")
  s.add_argument("--batch", type=int, default=4, help="B, prompts per call")
  s.add_argument("--k", type=int, default=16, help="samples per prompt")
  s.add_argument("--prompt_len", type=int, default=256, help="prompt tokens (no padding)")
  s.add_argument("--new_tokens", type=int, default=128, help="N, new tokens per sample")
  s.add_argument("--prefill_ks", type=_ints, default=[1, 32], help="k values of the prefill timing")
  s.add_argument("--repeats", type=int, default=2, help="timed runs per case (best is kept)")
  s.add_argument("--prefill_repeats", type=int, default=5, help="interleaved timed runs per prefill k")
  s.add_argument("--no_hf", action="store_true", help="skip the Hugging Face generate baseline")
  s.add_argument("--bandwidth_mib", type=int, default=256, help="array size of the bandwidth measurement")
  s.add_argument("--matmul_n", type=int, default=1024, help="matrix size of the FLOP/s measurement")
  s.set_defaults(func=bench_sampler)
  t.add_argument("--batch", type=int, default=8, help="B, sequences per step")
  t.add_argument("--seq_len", type=int, default=256, help="T, tokens per sequence")
  t.add_argument("--repeats", type=int, default=3, help="timed steps (best is kept)")
  t.add_argument("--no_torch", action="store_true", help="skip the PyTorch baseline and the Llama-shaped variant")
  t.add_argument("--matmul_n", type=int, default=1024, help="matrix size of the FLOP/s measurement")
  t.set_defaults(func=bench_train)
  g.add_argument("--batch", type=int, default=4, help="B, prompts per step")
  g.add_argument("--group", type=int, default=8, help="G, rollouts per prompt")
  g.add_argument("--prompt_len", type=int, default=256, help="prompt tokens (no padding)")
  g.add_argument("--new_tokens", type=int, default=128, help="N, new tokens per rollout")
  g.add_argument("--beta", type=float, default=0.04, help="KL coefficient (> 0: reference log-probs computed)")
  g.add_argument("--lr", type=float, default=1e-6, help="learning rate (AdamW)")
  g.add_argument("--repeats", type=int, default=2, help="timed steps after a first one (best is kept)")
  g.add_argument("--no_trl", action="store_true", help="skip TRL's GRPOTrainer")
  g.set_defaults(func=bench_grpo)
  return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  args = build_parser().parse_args(argv)
  return args.func(args)


def reexec_with_huge_pages(argv: Sequence[str]) -> None:
  """Re-executes this CLI once with glibc's malloc using transparent huge pages.

  XLA's CPU buffers of a call (the B*k-row KV cache) are fresh allocations; with 4 KiB pages
  their first-touch page faults cost more than writing them (the k-dependent part of the
  prefill time drops ~4x with huge pages). glibc reads GLIBC_TUNABLES only at start-up, hence
  the re-exec. Only for THP_COMMANDS; skipped with --no_thp, off Linux, or when the tunable is
  already set.
  """
  tunables = os.environ.get("GLIBC_TUNABLES", "")
  command = next((a for a in argv if not a.startswith("-")), None)
  if (not sys.platform.startswith("linux") or "--no_thp" in argv or "glibc.malloc.hugetlb" in tunables
      or command not in THP_COMMANDS):
    return
  env = dict(os.environ, GLIBC_TUNABLES=":".join(t for t in (tunables, HUGE_PAGES) if t))
  os.execve(sys.executable, [sys.executable, "-m", "spct_jax.bench", *argv], env)


if __name__ == "__main__":
  reexec_with_huge_pages(sys.argv[1:])
  main(sys.argv[1:])
