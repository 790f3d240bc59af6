"""LoRA through qwix: adapters on every projection, a fresh adapter leaves the model unchanged,
`fold` equals the adapted forward, training moves only the adapters, and a LoRA chain writes the
adapters and the folded model."""
import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spct_jax.model import config as model_config
from spct_jax.model import load, lora, orbax_io, transformer
from spct_jax.train import sft, state as state_lib, step as step_lib

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOKENS = jnp.asarray(np.random.default_rng(0).integers(5, 4000, (2, 12)), jnp.int32)


@pytest.mark.parametrize("scan", [False, True])
def test_adapters_on_every_projection_and_fold_equals_the_adapted_forward(scan):
  cfg = model_config.get_config("tiny", lora_rank=4, lora_alpha=8.0, scan_layers=scan)
  plain = model_config.replace(cfg, lora_rank=0)
  params = transformer.init_params(cfg, jax.random.key(0))
  base, adapters = lora.split(params)
  assert jax.tree.structure(base) == jax.tree.structure(transformer.abstract_params(plain))
  # q, k, v [D, N|K, H]: A [D, r], B [r, N*H]; o: A [N*H, r], B [r, D]; gate/up: [D, r], [r, F]; down: [F, r], [r, D]
  d, n, k, h, f, r = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.mlp_dim, 4
  per_layer = r * ((d + n * h) * 2 + (d + k * h) * 2 + (d + f) * 3)
  assert lora.count(params) == per_layer * cfg.n_layers
  names = transformer.logical_axes(cfg)
  layer = names["layers"] if scan else names["layers_0"]
  assert layer["attn"]["q_lora_a"][-2:] == ("embed", None) and layer["mlp"]["down_lora_b"][-2:] == (None, "embed")
  model = transformer.Transformer(cfg)
  # B starts at zero: a fresh adapter leaves the base model's logits exactly
  np.testing.assert_array_equal(model.apply({"params": params}, TOKENS),
                                transformer.Transformer(plain).apply({"params": base}, TOKENS))
  adapters = jax.tree.map(lambda x: 0.05 * jax.random.normal(jax.random.key(1), x.shape), adapters)
  trained = lora.merge(base, adapters)
  adapted = model.apply({"params": trained}, TOKENS)
  folded = transformer.Transformer(plain).apply({"params": lora.fold(trained, cfg.lora_alpha, cfg.lora_rank)}, TOKENS)
  assert float(jnp.abs(adapted - transformer.Transformer(plain).apply({"params": base}, TOKENS)).max()) > 0.1
  np.testing.assert_allclose(adapted, folded, atol=2e-5)


def test_sft_steps_move_only_the_adapters_and_lower_the_loss():
  cfg = model_config.get_config("tiny", lora_rank=8, lora_alpha=16.0)
  params = transformer.init_params(cfg, jax.random.key(0))
  base, adapters = lora.split(params)
  tx = state_lib.make_optimizer(state_lib.OptimConfig(lr=1e-2, total_steps=20))
  st = state_lib.create(jax.tree.map(jnp.copy, adapters), tx, jax.random.key(1), frozen=jax.tree.map(jnp.copy, base))
  assert jax.tree.structure(st.opt_state[1][0].mu) == jax.tree.structure(adapters)  # moments for adapters only
  step = step_lib.make_step(sft.loss_fn(transformer.Transformer(cfg)), tx)
  batch = {"tokens": jnp.tile(TOKENS[:1], (4, 1)), "pad_mask": jnp.ones((4, 12), bool), "loss_mask": jnp.ones((4, 12), bool)}
  losses = []
  for _ in range(15):
    st, m = step(st, batch)
    losses.append(float(m["loss"]))
  assert losses[-1] < 0.8 * losses[0], losses
  for a, b in zip(jax.tree.leaves(st.frozen), jax.tree.leaves(base)):
    np.testing.assert_array_equal(a, b)
  assert any(float(jnp.abs(a - b).max()) > 0 for a, b in zip(jax.tree.leaves(st.params), jax.tree.leaves(adapters)))


def test_a_lora_chain_writes_adapters_and_the_folded_model(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "spct_jax.train", "--config=configs/grpo.py", "--config.smoke=True",
                         "--config.model.lora_rank=4", f"--workdir={tmp_path}"], cwd=ROOT, capture_output=True,
                        text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  final, saved = orbax_io.load(str(tmp_path / "grpo" / "final"))
  adapters, saved_a = orbax_io.load(str(tmp_path / "grpo" / "adapters"))
  assert saved["lora_rank"] == 0 and saved_a["lora_rank"] == 4
  assert lora.count(final) == 0 and lora.split(adapters)[0] == {}
  cfg = model_config.from_dict(saved_a)
  # the folded model is the GRPO stage's base + its adapters: unfold it back and compare
  m = load.load("stage:grpo", workdir=str(tmp_path))
  assert not m.config.lora_rank
  summary = json.loads((tmp_path / "grpo" / "summary.json").read_text())
  assert summary["steps"] == 3
  start, _ = orbax_io.load(str(tmp_path / "rft" / "final"))
  refolded = lora.fold(lora.merge(start, adapters), cfg.lora_alpha, cfg.lora_rank)
  for a, b in zip(jax.tree.leaves(refolded), jax.tree.leaves(final)):
    np.testing.assert_allclose(a, b, atol=1e-6)
