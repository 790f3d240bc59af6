"""The real-run configs (Gemma-2 2B/9B/27B GRPO) lower and compile on an 8-device CPU mesh, with
the `tiny` Gemma-2 stand-in of the same family and every other setting as written."""
import pathlib

import jax
import jax.numpy as jnp
import pytest

from spct_jax import mesh as mesh_lib
from spct_jax.model import config as model_config
from spct_jax.model import transformer
from spct_jax.train import chain, grpo, stage

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("size", ["2b", "9b", "27b"])
def test_grpo_gemma2_config_compiles_on_8_devices(size):
  cfg = chain.load_config(str(ROOT / "configs" / f"grpo_gemma2_{size}.py"))
  real = model_config.get_config(cfg.model.preset)
  assert real.model_type == "gemma2" and cfg.model.dtype == "bfloat16"
  assert (cfg.opt.lr, cfg.grpo.beta, cfg.grpo.group_size) == (1e-5, 0.1, 16)  # the seed's
  up = chain.load_config(chain.upstream_config_path(cfg, str(ROOT / "configs" / "x.py")))
  assert up.stage == "rft" and up.init.startswith("hf:")
  mcfg = model_config.get_config("tiny", dtype=cfg.model.dtype, remat=cfg.model.remat)
  mesh = mesh_lib.make_mesh(tuple(cfg.mesh.shape))
  assert mesh.devices.size == 8
  params = jax.eval_shape(lambda: transformer.init_params(mcfg, jax.random.key(0)))
  params = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), params)
  loss = grpo.loss_fn(transformer.Transformer(mcfg), on_policy=False, temperature=cfg.grpo.temperature,
                      clip_eps=cfg.grpo.clip_eps, beta=cfg.grpo.beta, kl_estimator=cfg.grpo.kl_estimator,
                      aggregation=cfg.grpo.aggregation)
  st, make_step = stage.train_state(cfg, mcfg, params, mesh)
  step = make_step(loss, grpo.BATCH_KEYS)
  rows, t, n = cfg.train.batch_size, 64, 24
  sh = mesh_lib.batch_sharding(mesh)
  batch = grpo.batch_shapes(rows, t - n, n, sharding=sh)
  with mesh_lib.activation_sharding(mesh):
    compiled = step.lower(st, batch).compile()
  assert compiled.memory_analysis() is not None
