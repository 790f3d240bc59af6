import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spct_jax import mesh as mesh_lib
from spct_jax.train import state as state_lib


def test_schedule_warmup_then_cosine():
  cfg = state_lib.OptimConfig(lr=1.0, warmup_steps=10, total_steps=110, end_lr_frac=0.1)
  s = state_lib.schedule(cfg)
  assert float(s(0)) == 0.0
  assert float(s(5)) == pytest.approx(0.5)
  assert float(s(10)) == pytest.approx(1.0)
  # cosine: half-way through the decay the lr is the mean of peak and end.
  assert float(s(60)) == pytest.approx(0.55, abs=1e-6)
  assert float(s(110)) == pytest.approx(0.1, abs=1e-6)


def test_adamw_step_matches_hand_computed_first_update():
  cfg = state_lib.OptimConfig(lr=0.1, total_steps=10, end_lr_frac=1.0, weight_decay=0.0, clip_norm=0.0)
  tx = state_lib.make_optimizer(cfg)
  st = state_lib.create({"w": jnp.array([[1.0, 2.0]])}, tx, jax.random.key(0))
  g = {"w": jnp.array([[0.5, -3.0]])}
  st = state_lib.apply_gradients(st, g, tx)
  # Adam's first step moves each weight by lr * sign(g) (bias-corrected m/sqrt(v) = g/|g|).
  np.testing.assert_allclose(st.params["w"], [[0.9, 2.1]], rtol=1e-6)
  assert int(st.step) == 1


def test_decay_mask_skips_norms_and_biases():
  params = {"attn": {"q": jnp.ones((2, 2, 2)), "q_bias": jnp.ones((2, 2))}, "norm": {"scale": jnp.ones((2,))}}
  assert state_lib.decay_mask(params) == {"attn": {"q": True, "q_bias": False}, "norm": {"scale": False}}
  # with a zero gradient only decayed weights move: w <- w - lr * wd * w
  cfg = state_lib.OptimConfig(lr=0.5, weight_decay=0.1, total_steps=10, end_lr_frac=1.0, clip_norm=0.0)
  tx = state_lib.make_optimizer(cfg)
  st = state_lib.create(params, tx, jax.random.key(0))
  st = state_lib.apply_gradients(st, jax.tree.map(jnp.zeros_like, params), tx)
  np.testing.assert_allclose(st.params["attn"]["q"], 0.95)
  np.testing.assert_allclose(st.params["attn"]["q_bias"], 1.0)
  np.testing.assert_allclose(st.params["norm"]["scale"], 1.0)


def test_logical_axes_cover_the_optimizer_state():
  tx = state_lib.make_optimizer(state_lib.OptimConfig(weight_decay=0.1))
  params = {"w": jnp.ones((4, 6)), "b": jnp.ones((6,))}
  names = {"w": ("embed", "mlp"), "b": ("mlp",)}
  st = state_lib.create(params, tx, jax.random.key(0))
  logical = state_lib.logical_axes(tx, names, params)
  mesh = mesh_lib.make_mesh((2, 2, 2))
  sh = mesh_lib.shardings_for(logical, st, mesh)
  placed = jax.device_put(st, sh)
  mu = placed.opt_state[1][0].mu
  assert mu["w"].sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")
  assert placed.step.sharding.spec == jax.sharding.PartitionSpec()


def test_unknown_optimizer_key_is_named():
  with pytest.raises(KeyError, match=r"config.opt has unknown keys \['lrr'\]"):
    state_lib.OptimConfig.from_dict({"lrr": 1.0})
