"""Scalar reward-model losses (meta-RM BCE, Bradley-Terry) against numpy formulas, and in make_step."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from spct_jax.model import config as model_config
from spct_jax.model import reward
from spct_jax import mesh as mesh_lib
from spct_jax.train import scalar
from spct_jax.train import state as state_lib
from spct_jax.train import step as step_lib
from tests_util import assert_params_close

CFG = model_config.get_config("tiny", vocab_size=64, n_layers=2, d_model=32, mlp_dim=64, head_dim=8)  # as test_sft


def _params(head_scale=1.0, seed=0):
  """A reward model with O(head_scale) scores (head std D**-0.5 * head_scale)."""
  params = reward.init_params(CFG, jax.random.key(seed))
  return {**params, "score": params["score"] * CFG.d_model ** 0.5 * head_scale}


def _tokens(b, t, seed):
  """tokens [b, t], pad_mask [b, t]: odd rows left-padded, even rows right-padded, lengths 3..t."""
  r = np.random.default_rng(seed)
  tokens = r.integers(1, CFG.vocab_size, size=(b, t)).astype(np.int32)
  lengths = r.integers(3, t + 1, size=b)
  idx = np.arange(t)[None]
  mask = np.where(np.arange(b)[:, None] % 2, idx >= t - lengths[:, None], idx < lengths[:, None])
  return np.where(mask, tokens, 0), mask


def _bce_batch(b=4, t=8, seed=0):
  tokens, mask = _tokens(b, t, seed)
  return {"tokens": tokens, "pad_mask": mask, "label": np.array([1, 0, 1, 0, 0, 1, 1, 0][:b], np.float32),
          "weight": np.array([1.0, 0.5, 2.0, 0.0, 1.0, 1.0, 1.0, 1.0][:b], np.float32)}


def _bt_batch(b=4, t=8, t_rejected=None, seed=1):
  c, cm = _tokens(b, t, seed)
  rj, rm = _tokens(b, t_rejected or t, seed + 1)
  return {"chosen_tokens": c, "chosen_mask": cm, "rejected_tokens": rj, "rejected_mask": rm,
          "weight": np.array([1.0, 2.0, 0.0, 0.5, 1.0, 1.0, 1.0, 1.0][:b], np.float32)}


def _np_bce(r, y):
  r = np.asarray(r, np.float64)
  p = 1 / (1 + np.exp(-r))
  return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def test_bce_matches_the_formula():
  params, batch = _params(head_scale=2.0), _bce_batch()
  s, c, aux = jax.jit(scalar.bce_loss_fn(CFG))(params, batch, None)
  r = np.asarray(reward.scores(CFG, params, batch["tokens"], batch["pad_mask"]), np.float64)
  assert 0.5 < np.abs(r).max() < 20  # the formula's naive form is exact in float64 here
  w, y = batch["weight"], batch["label"]
  assert float(c) == 3.5
  np.testing.assert_allclose(float(s), (w * _np_bce(r, y)).sum(), rtol=1e-5)
  np.testing.assert_allclose(float(aux["accuracy"]), (w * ((r > 0) == (y > 0.5))).sum(), rtol=1e-6)
  np.testing.assert_allclose(float(aux["score"]), (w * r).sum(), rtol=1e-5, atol=1e-6)
  assert float(aux["label"]) == 3.0


def test_bt_matches_the_formula_and_pair_shapes():
  params, batch = _params(head_scale=2.0), _bt_batch()
  s, c, aux = jax.jit(scalar.bt_loss_fn(CFG))(params, batch, None)
  r_c = np.asarray(reward.scores(CFG, params, batch["chosen_tokens"], batch["chosen_mask"]), np.float64)
  r_r = np.asarray(reward.scores(CFG, params, batch["rejected_tokens"], batch["rejected_mask"]), np.float64)
  w, m = batch["weight"], r_c - r_r
  assert 0.5 < np.abs(m).max() < 20
  assert float(c) == 3.5
  np.testing.assert_allclose(float(s), (w * -np.log(1 / (1 + np.exp(-m)))).sum(), rtol=1e-5)
  np.testing.assert_allclose(float(aux["accuracy"]), (w * (m > 0)).sum(), rtol=1e-6)
  np.testing.assert_allclose(float(aux["margin"]), (w * m).sum(), rtol=1e-5, atol=1e-5)
  # equal shapes: one forward over both halves, the same scores as two separate ones
  for got, ref in zip(scalar.pair_scores(CFG, params, batch), (r_c, r_r)):
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5, atol=1e-6)
  # rejected rows of another length: two forwards
  other = _bt_batch(t_rejected=6)
  r_r6 = reward.scores(CFG, params, other["rejected_tokens"], other["rejected_mask"])
  np.testing.assert_array_equal(scalar.pair_scores(CFG, params, other)[1], r_r6)


def test_zero_scores_give_log_2_and_large_scores_stay_finite():
  params = _params()
  zero = {**params, "score": jnp.zeros_like(params["score"])}
  bce, bt = _bce_batch(), _bt_batch()
  s, c, aux = scalar.bce_loss_fn(CFG)(zero, bce, None)
  np.testing.assert_allclose(float(s), np.log(2) * 3.5, rtol=1e-6)  # BCE at logit 0 = log 2
  assert float(aux["accuracy"]) == 0.5  # score 0 predicts "incorrect": only the label-0 rows count
  s, c, aux = scalar.bt_loss_fn(CFG)(zero, bt, None)
  np.testing.assert_allclose(float(s), np.log(2) * 3.5, rtol=1e-6)
  assert float(aux["accuracy"]) == 0.0  # ties are wrong

  huge = _params(head_scale=1e4)  # |scores| ~ 1e4: exp overflows in float32, softplus does not
  assert np.isfinite(float(scalar.bt_loss_fn(CFG)(huge, bt, None)[0]))
  r = np.asarray(reward.scores(CFG, huge, bce["tokens"], bce["pad_mask"]), np.float64)
  expected = (bce["weight"] * (np.logaddexp(0, r) - bce["label"] * r)).sum()  # stable form in float64
  np.testing.assert_allclose(float(scalar.bce_loss_fn(CFG)(huge, bce, None)[0]), expected, rtol=1e-5)


def test_missing_batch_key_is_named():
  with pytest.raises(KeyError, match=r"bce_loss_fn batch: missing key 'label'"):
    scalar.bce_loss_fn(CFG)(_params(), {k: v for k, v in _bce_batch().items() if k != "label"}, None)
  with pytest.raises(KeyError, match=r"bt_loss_fn batch: missing keys 'chosen_mask', 'weight'"):
    scalar.bt_loss_fn(CFG)(_params(), {"chosen_tokens": 0, "rejected_tokens": 0, "rejected_mask": 0}, None)


@functools.cache
def _step(loss, micro_batches, mesh_shape=None):
  """One SGD step of the `loss` ("bce" or "bt") loss from the same start on the same batch of 8:
  (params before, params after, metrics), all on the host."""
  fn, batch = (scalar.bce_loss_fn(CFG), _bce_batch(8)) if loss == "bce" else (scalar.bt_loss_fn(CFG), _bt_batch(8))
  tx = optax.sgd(0.5)
  params = _params(head_scale=2.0)
  st = state_lib.create(params, tx, jax.random.key(1))
  params = jax.device_get(params)  # the step donates the state
  if mesh_shape is None:
    step = step_lib.make_step(fn, tx, micro_batches=micro_batches)
    b = jax.tree.map(jnp.asarray, batch)
  else:
    mesh = mesh_lib.make_mesh(mesh_shape)
    names = state_lib.logical_axes(tx, reward.logical_axes(CFG), params)
    sh = mesh_lib.shardings_for(names, st, mesh)
    st = jax.device_put(st, sh)
    bsh = jax.tree.map(lambda x: mesh_lib.batch_sharding(mesh), batch)
    step = step_lib.make_step(fn, tx, micro_batches=micro_batches, state_shardings=sh, batch_shardings=bsh)
    b = mesh_lib.shard_batch(batch, mesh)
  st, m = step(st, b)
  return params, jax.device_get(st.params), jax.device_get(m)


@pytest.mark.parametrize("loss", ["bce", "bt"])
def test_make_step_micro_batches_2_equals_1(loss):
  p0, p1, m1 = _step(loss, 1)
  _, p2, m2 = _step(loss, 2)
  assert float(m1["count"]) == float(m2["count"]) == 7.5
  for k in m1:
    np.testing.assert_allclose(m2[k], m1[k], rtol=1e-6, atol=1e-7, err_msg=k)
  update = lambda p: jax.tree.map(lambda a, b: np.asarray(a, np.float64) - np.asarray(b, np.float64), p, p0)
  assert float(m1["grad_norm"]) > 1e-3  # the step moves the params
  assert_params_close(update(p1), update(p2), rtol=1e-6)


def test_bce_step_on_an_8_device_mesh_equals_one_device():
  _, ref, ref_m = _step("bce", 2)
  _, got, m = _step("bce", 2, mesh_shape=(2, 2, 2))  # rows over data x fsdp, heads over tensor
  np.testing.assert_allclose(m["loss"], ref_m["loss"], rtol=1e-5)
  assert_params_close(ref, got)
