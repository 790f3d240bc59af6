"""The SFT step: masked cross-entropy against numpy, exact accumulation, mesh == one device."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spct_jax.model import config as model_config
from spct_jax.model import transformer
from spct_jax import mesh as mesh_lib
from spct_jax.train import sft
from spct_jax.train import state as state_lib
from tests_util import assert_params_close
from spct_jax.train import step as step_lib

CFG = model_config.get_config("tiny", vocab_size=64, n_layers=2, d_model=32, mlp_dim=64, head_dim=8)


def _batch(b=8, t=12, seed=0):
  r = np.random.default_rng(seed)
  tokens = r.integers(1, CFG.vocab_size, size=(b, t)).astype(np.int32)
  lengths = r.integers(6, t + 1, size=b)
  prompt = r.integers(2, 5, size=b)
  idx = np.arange(t)[None]
  pad_mask = idx < lengths[:, None]
  loss_mask = pad_mask & (idx >= prompt[:, None])
  tokens = np.where(pad_mask, tokens, 0)
  return {"tokens": tokens, "pad_mask": pad_mask, "loss_mask": loss_mask}


def _numpy_loss(params, batch):
  model = transformer.Transformer(CFG)
  logits = np.asarray(model.apply({"params": params}, batch["tokens"], pad_mask=batch["pad_mask"]), np.float64)
  logits = logits - logits.max(-1, keepdims=True)
  logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  tgt = batch["tokens"][:, 1:]
  lp = np.take_along_axis(logp[:, :-1], tgt[..., None], -1)[..., 0]
  m = batch["loss_mask"][:, 1:]
  return -(lp * m).sum() / m.sum()


@pytest.mark.parametrize("use_jit", [False, True])
def test_sft_loss_is_masked_token_mean(use_jit):
  params = transformer.init_params(CFG, jax.random.key(0))
  batch = _batch()
  fn = sft.loss_fn(transformer.Transformer(CFG))
  if use_jit:
    fn = jax.jit(fn)
  s, c, _ = fn(params, batch, None)
  assert float(c) == batch["loss_mask"][:, 1:].sum()
  np.testing.assert_allclose(float(s / c), _numpy_loss(params, batch), rtol=1e-5)


def test_sft_accumulation_over_4_micro_batches_equals_full_batch():
  params = transformer.init_params(CFG, jax.random.key(0))
  batch = jax.tree.map(jnp.asarray, _batch())
  fn = sft.loss_fn(transformer.Transformer(CFG))
  g1, l1, c1, _ = jax.jit(lambda p, b: step_lib.accumulate(fn, p, b, jax.random.key(0), 1))(params, batch)
  g4, l4, c4, _ = jax.jit(lambda p, b: step_lib.accumulate(fn, p, b, jax.random.key(0), 4))(params, batch)
  assert float(c1) == float(c4)
  np.testing.assert_allclose(l4, l1, rtol=1e-6)
  # float32 sums in another order: a few units in the last place of the leaf's largest entry
  # (1e-6 of it failed once in CI on one entry of 1024, by 2.1e-8 against 1.7e-8); a wrong scale
  # or a dropped micro-batch is off by tens of percent
  for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g4)):
    np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-5 * float(jnp.abs(a).max()))


def _run(shape):
  tx = state_lib.make_optimizer(state_lib.OptimConfig(lr=1e-3, total_steps=10))
  params = transformer.init_params(CFG, jax.random.key(0))
  st = state_lib.create(params, tx, jax.random.key(1))
  fn = sft.loss_fn(transformer.Transformer(CFG))
  batch = _batch()
  if shape is None:
    step = step_lib.make_step(fn, tx, micro_batches=2)
    b = jax.tree.map(jnp.asarray, batch)
  else:
    mesh = mesh_lib.make_mesh(shape)
    names = state_lib.logical_axes(tx, transformer.logical_axes(CFG), params)
    sh = mesh_lib.shardings_for(names, st, mesh)
    st = jax.device_put(st, sh)
    bsh = jax.tree.map(lambda x: mesh_lib.batch_sharding(mesh), batch)
    step = step_lib.make_step(fn, tx, micro_batches=2, state_shardings=sh, batch_shardings=bsh)
    b = mesh_lib.shard_batch(batch, mesh)
  for _ in range(2):
    st, m = step(st, b)
  return jax.device_get(st.params), jax.device_get(m)


def test_sft_step_on_8_device_meshes_equals_one_device():
  ref_params, ref_m = _run(None)
  for shape in ((1, 4, 2), (2, 4, 1)):
    params, m = _run(shape)
    np.testing.assert_allclose(m["loss"], ref_m["loss"], rtol=1e-5)
    # relative to the whole parameter vector: Adam's first steps move near-zero-gradient
    # entries by +-lr whatever the rounding, so elementwise ratios of tiny entries mean nothing.
    assert_params_close(ref_params, params)


def test_head_on_needed_positions_only_equals_the_full_head_values_and_gradients():
  """`where` gathers each row's loss positions to its front and skips chunks no row needs:
  same log-probs and entropies there (0 elsewhere), same gradient as the head on every position."""
  params = transformer.init_params(CFG, jax.random.key(0))
  batch = jax.tree.map(jnp.asarray, _batch(t=16))
  model = transformer.Transformer(CFG)
  mask = batch["loss_mask"][:, 1:]

  def loss(p, where):
    lp, ent = sft.token_logprobs(model, p, batch["tokens"], batch["pad_mask"], 0.7, with_entropy=True,
                                 chunk=3, where=where)
    return (lp * mask).sum() + 0.1 * (ent * mask).sum(), (lp, ent)

  def reference(p):  # the whole [B, T, V] head, JAX's own autodiff
    logits = model.apply({"params": p}, batch["tokens"], pad_mask=batch["pad_mask"])[:, :-1] / 0.7
    logp = jax.nn.log_softmax(logits, axis=-1)
    lp = jnp.take_along_axis(logp, batch["tokens"][:, 1:, None], axis=-1)[..., 0]
    ent = -(jnp.exp(logp) * logp).sum(-1)
    return (lp * mask).sum() + 0.1 * (ent * mask).sum()

  v_ref, g_ref = jax.value_and_grad(reference)(params)
  (v_all, (lp_all, ent_all)), g_all = jax.value_and_grad(loss, has_aux=True)(params, None)
  (v_some, (lp_some, ent_some)), g_some = jax.value_and_grad(loss, has_aux=True)(params, mask)
  np.testing.assert_allclose(v_all, v_ref, rtol=1e-5)
  assert_params_close(g_ref, g_all, rtol=1e-5)
  np.testing.assert_allclose(lp_some, np.where(mask, lp_all, 0.0), atol=1e-5)
  np.testing.assert_allclose(ent_some, np.where(mask, ent_all, 0.0), atol=1e-5)
  np.testing.assert_allclose(v_some, v_all, rtol=1e-5)
  assert_params_close(g_all, g_some, rtol=1e-5)
