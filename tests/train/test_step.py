import jax
import jax.numpy as jnp
import numpy as np

from spct_jax import mesh as mesh_lib
from spct_jax.train import state as state_lib
from spct_jax.train import step as step_lib
from spct_jax.train import loop as loop_lib


def _masked_sq_loss(params, batch, rng):
  del rng
  pred = batch["x"] @ params["w"] + params["b"]  # [B, T]
  err = (pred - batch["y"]) ** 2 * batch["mask"]
  return err.sum(), batch["mask"].sum(), {"err": err.sum()}


def _batch(b=8, t=5, d=3, seed=0):
  r = np.random.default_rng(seed)
  mask = (r.random((b, t)) < 0.6).astype(np.float32)
  mask[:, 0] = 1.0
  return {"x": r.normal(size=(b, t, d)).astype(np.float32), "y": r.normal(size=(b, t)).astype(np.float32),
          "mask": mask}


def _params():
  return {"w": jnp.array([0.5, -1.0, 2.0]), "b": jnp.array(0.1)}


def test_micro_batch_accumulation_is_exact():
  batch = jax.tree.map(jnp.asarray, _batch())
  full = step_lib.accumulate(_masked_sq_loss, _params(), batch, jax.random.key(0), 1)
  micro = step_lib.accumulate(_masked_sq_loss, _params(), batch, jax.random.key(0), 4)
  # reference: the gradient of (sum of masked errors) / (number of masked entries)
  ref = jax.grad(lambda p: _masked_sq_loss(p, batch, None)[0] / batch["mask"].sum())(_params())
  for got in (full[0], micro[0]):
    for k in ref:
      np.testing.assert_allclose(got[k], ref[k], rtol=1e-6)
  np.testing.assert_allclose(micro[1], full[1], rtol=1e-6)
  assert float(micro[2]) == float(batch["mask"].sum())


def test_split_micro_is_strided():
  x = jnp.arange(8)
  np.testing.assert_array_equal(step_lib.split_micro(x, 4), [[0, 4], [1, 5], [2, 6], [3, 7]])


def test_sharded_step_equals_one_device():
  tx = state_lib.make_optimizer(state_lib.OptimConfig(lr=0.1, total_steps=10))
  batch = _batch()
  outs = []
  for shape in (None, (2, 4, 1)):
    st = state_lib.create(_params(), tx, jax.random.key(0))
    if shape is None:
      fn = step_lib.make_step(_masked_sq_loss, tx, micro_batches=2)
      b = jax.tree.map(jnp.asarray, batch)
    else:
      mesh = mesh_lib.make_mesh(shape)
      names = state_lib.logical_axes(tx, {"w": ("embed",), "b": ()}, _params())
      sh = mesh_lib.shardings_for(names, st, mesh)
      st = jax.device_put(st, sh)
      bsh = jax.tree.map(lambda x: mesh_lib.batch_sharding(mesh), batch)
      fn = step_lib.make_step(_masked_sq_loss, tx, micro_batches=2, state_shardings=sh, batch_shardings=bsh)
      b = mesh_lib.shard_batch(batch, mesh)
    st, m = fn(st, b)
    outs.append((jax.device_get(st.params), jax.device_get(m)))
  np.testing.assert_allclose(outs[0][0]["w"], outs[1][0]["w"], rtol=1e-5)
  np.testing.assert_allclose(outs[0][1]["loss"], outs[1][1]["loss"], rtol=1e-5)


def test_batches_are_a_pure_function_of_step():
  rows = {"i": np.arange(10)}
  get = loop_lib.batches_from(rows, 4, seed=3)
  a = [get(s)["i"].tolist() for s in range(5)]
  b = [loop_lib.batches_from(rows, 4, seed=3)(s)["i"].tolist() for s in range(5)]
  assert a == b
  # every epoch visits every row once
  flat = sum(a, [])
  assert sorted(flat[:10]) == list(range(10))
  assert a != [loop_lib.batches_from(rows, 4, seed=4)(s)["i"].tolist() for s in range(5)]


def test_batches_trim_padding_columns_to_a_multiple():
  pad_mask = np.zeros((4, 200), bool)
  for i, n in enumerate((10, 70, 30, 5)):
    pad_mask[i, :n] = True
  rows = {"pad_mask": pad_mask, "tokens": np.arange(800).reshape(4, 200)}
  b = loop_lib.batches_from(rows, 4, seed=0, trim_multiple=64)(0)
  assert b["tokens"].shape == (4, 128) and b["pad_mask"].shape == (4, 128)
  assert b["pad_mask"].sum() == pad_mask.sum()
