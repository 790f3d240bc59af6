"""The benchmark CLI: `--help`, a smoke run of `sampler` on the tiny preset (no timing
assertions), and the work counts behind the machine bound."""
import importlib.util
import math

import numpy as np
import pytest

from spct_jax import bench
from spct_jax.model import config, transformer

SMOKE = ["sampler", "--presets=tiny", "--batch=1", "--k=2", "--prompt_len=8", "--new_tokens=4",
         "--prefill_ks=1,2", "--repeats=1", "--prefill_repeats=1", "--bandwidth_mib=8", "--matmul_n=128"]


def test_help_lists_the_subcommands(capsys):
  with pytest.raises(SystemExit) as e:
    bench.main(["--help"])
  assert e.value.code == 0
  assert "sampler" in capsys.readouterr().out
  with pytest.raises(SystemExit) as e:
    bench.main(["sampler", "--help"])
  assert e.value.code == 0
  out = capsys.readouterr().out
  for flag in ("--presets", "--batch", "--k", "--prompt_len", "--new_tokens", "--prefill_ks", "--no_hf"):
    assert flag in out


def test_sampler_smoke_run_prints_the_tables(capsys):
  has_hf = all(importlib.util.find_spec(m) for m in ("torch", "transformers"))
  result = bench.main(SMOKE + ([] if has_hf else ["--no_hf"]))
  out = capsys.readouterr().out
  lines = out.splitlines()
  header = next(l for l in lines if l.split()[:1] == ["preset"] and "a/d" in l)
  assert header.split() == list(bench.SAMPLER_COLUMNS)
  row = lines[lines.index(header) + 2].split()
  assert len(row) == len(bench.SAMPLER_COLUMNS) and row[0] == "tiny"
  ratios = dict(zip(bench.SAMPLER_COLUMNS, row))
  for col in ("a/b", "a/d") + (("a/c",) if has_hf else ()):
    assert float(ratios[col]) > 0, col
  assert ratios["a/c"] == ("n/a" if not has_hf else ratios["a/c"])
  prefill = [l.split() for l in lines if l.split()[:1] == ["tiny"] and len(l.split()) == len(bench.PREFILL_COLUMNS)]
  assert [int(r[3]) for r in prefill] == [1, 2]
  assert "KV cache, largest case (tiny, B=1, k=2): the prompts' part" in out
  cfg = config.get_config("tiny")
  assert result["prompt_kv_bytes"] == bench.decode_cache_bytes(cfg, 1, 2, 8, 4)[0]
  assert result["unshared_kv_bytes"] == bench.kv_cache_bytes(cfg, 2, 12)
  assert result["bandwidth"] > 0 and result["matmul_flops"] > 0


def test_work_counts():
  cfg = config.get_config("tiny")
  norms = (4 * cfg.n_layers + 1) * cfg.d_model  # Gemma-2: four norms per layer and a final one
  # every weight but the norms is used in a matmul once per token (tied embeddings: as the output)
  assert bench.matmul_params_per_token(cfg) == transformer.param_count(cfg) - norms
  kv = 2 * cfg.n_layers * 2 * 3 * cfg.n_kv_heads * cfg.head_dim * 4   # K,V of 2 rows x 3 slots, f32
  assert bench.kv_cache_bytes(cfg, 2, 3) == kv + 2 * 4 * 2 + 2 * 3 * 4   # + index, next_pos, pos
  # prefill only (new_tokens=1) on a compute-bound machine: FLOPs / peak
  w = bench.sampler_work(cfg, batch=1, k=4, prompt_len=2, new_tokens=1, bandwidth=math.inf, flops_per_s=1.0)
  body = bench.matmul_params_per_token(cfg) - cfg.d_model * cfg.vocab_size
  pairs = 1 + 2  # causal: the 2 prompt tokens see 1 and 2 keys (window 16 does not bind)
  want = 2 * body * 2 + 2 * cfg.d_model * cfg.vocab_size + 4 * cfg.n_heads * cfg.head_dim * pairs * cfg.n_layers
  assert w.flops == want and w.seconds == want
  # the sliding window bounds the keys of the local layers: 40 keys -> 16 on layer 0, 40 on layer 1
  assert bench._context(cfg, 40) == [16, 40]
  # one decode step (new_tokens=2) on a memory-bound machine: weights + the prompt's K/V once per
  # prompt + each of the k rows' own key (the token sampled after the prefill)
  w = bench.sampler_work(cfg, batch=1, k=4, prompt_len=2, new_tokens=2, bandwidth=1.0, flops_per_s=math.inf)
  kv_row = 2 * cfg.n_kv_heads * cfg.head_dim * 4 * cfg.n_layers
  weights = transformer.param_count(cfg) * 4
  prefill = weights + 2 * kv_row
  assert w.seconds == prefill + weights + kv_row * (1 * 2 + 4 * 1)
  # the decode cache: the prompt's part has B rows whatever k
  p1, own1 = bench.decode_cache_bytes(cfg, 2, 1, 8, 4)
  p16, own16 = bench.decode_cache_bytes(cfg, 2, 16, 8, 4)
  assert p1 == p16 == 2 * 8 * kv_row + 2 * 8 * 4   # + the prompts' positions
  assert own16 == bench.kv_cache_bytes(cfg, 32, 4)


def test_train_smoke_run_prints_the_table(capsys):
  has_torch = all(importlib.util.find_spec(m) for m in ("torch", "transformers"))
  result = bench.main(["train", "--presets=tiny", "--batch=2", "--seq_len=16", "--repeats=1", "--matmul_n=128"]
                      + ([] if has_torch else ["--no_torch"]))
  out = capsys.readouterr().out
  assert "MFU" in out and "jax/torch" in out
  rows = result["train"]
  assert [r[1] for r in rows] == (["gemma2", "llama"] if has_torch else ["gemma2"])
  for r in rows:
    assert r[5] > 0 and 0 < r[6] < 2  # tokens/s and MFU
  if has_torch:
    assert rows[1][7] > 0 and rows[1][8] > 0


def test_train_step_flops_counts_matmuls_and_attention():
  cfg = config.get_config("tiny")
  b, t = 2, 8
  attn = 12.0 * cfg.n_heads * cfg.head_dim * sum(min(t, cfg.sliding_window) for _ in cfg.local_layers) / 2 * b * t
  assert bench.train_step_flops(cfg, b, t) == 6.0 * bench.matmul_params_per_token(cfg) * b * t + attn


def test_grpo_smoke_run_prints_both_implementations(capsys):
  """One GRPO step in our code and, when trl is installed (the parity extra), in TRL's
  GRPOTrainer on the same weights and prompt ids: the table has both rows and the ratio."""
  has_trl = all(importlib.util.find_spec(m) for m in ("torch", "transformers", "trl", "datasets"))
  result = bench.main(["grpo", "--presets=tiny", "--batch=2", "--group=4", "--prompt_len=16", "--new_tokens=8",
                       "--repeats=1"] + ([] if has_trl else ["--no_trl"]))
  out = capsys.readouterr().out
  assert "GRPO step" in out
  rows = result["grpo"]
  assert [r[6] for r in rows] == (["spct_jax", "trl"] if has_trl else ["spct_jax"])
  for r in rows:
    assert r[7] > 0 and r[8] > 0 and r[9] > 0  # rollout tok/s, update tok/s, step seconds
  if has_trl:
    assert rows[0][10] == rows[1][9] / rows[0][9]


def test_token_reward_is_the_share_of_even_ids():
  assert bench.token_reward(np.array([[2, 3, 4, 5], [1, 1, 1, 8]])).tolist() == [0.5, 0.25]


@pytest.mark.parametrize("argv, execs", [
    (["sampler", "--presets=tiny"], True), (["train"], True), (["grpo", "--presets=small"], False),
    (["--no_thp", "sampler"], False), (["--help"], False)])
def test_huge_pages_reexec_only_for_the_sampler_and_train(monkeypatch, argv, execs):
  calls = []
  monkeypatch.setattr(bench.os, "execve", lambda exe, args, env: calls.append((args, env["GLIBC_TUNABLES"])))
  monkeypatch.setattr(bench.sys, "platform", "linux")
  monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
  bench.reexec_with_huge_pages(argv)
  assert calls == ([([bench.sys.executable, "-m", "spct_jax.bench", *argv], bench.HUGE_PAGES)] if execs else [])
