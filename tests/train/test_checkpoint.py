import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spct_jax.train import checkpoint as ckpt


def _state(x):
  return {"params": {"w": jnp.full((2, 3), float(x))}, "step": jnp.asarray(x, jnp.int32),
          "rng": jax.random.key(x)}


def test_save_restore_latest_and_meta(tmp_path):
  m = ckpt.manager(str(tmp_path / "ck"), keep_last=2, keep_best=1)
  for step in (1, 2, 3, 4):
    ckpt.save(m, step, _state(step), meta={"data_position": step * 10},
              metrics={"val_accuracy": {1: 0.9, 2: 0.1, 3: 0.2, 4: 0.3}[step]})
  m.wait_until_finished()
  # the last two and the best one (step 1) are kept
  assert sorted(m.all_steps()) == [1, 3, 4]
  state, meta, step = ckpt.restore_latest(m, ckpt.abstract_like(_state(0)))
  assert step == 4 and meta == {"data_position": 40}
  np.testing.assert_array_equal(state["params"]["w"], np.full((2, 3), 4.0))
  assert jax.random.key_data(state["rng"]).tolist() == jax.random.key_data(jax.random.key(4)).tolist()
  m.close()


def test_damaged_latest_falls_back_with_a_message(tmp_path, capsys):
  d = tmp_path / "ck"
  m = ckpt.manager(str(d), keep_last=3, keep_best=0)
  for step in (1, 2):
    ckpt.save(m, step, _state(step), meta={"data_position": step})
  m.wait_until_finished()
  m.close()
  # damage every data file of the newest step (a disk error, a truncated copy)
  for root, _, files in os.walk(d / "2" / "state"):
    for f in files:
      with open(os.path.join(root, f), "wb") as fh:
        fh.write(b"\0garbage")
  m = ckpt.manager(str(d), keep_last=3, keep_best=0)
  state, meta, step = ckpt.restore_latest(m, ckpt.abstract_like(_state(0)))
  assert step == 1 and meta == {"data_position": 1}
  np.testing.assert_array_equal(state["params"]["w"], np.full((2, 3), 1.0))
  assert "step 2" in capsys.readouterr().out
  m.close()


def test_half_written_step_is_not_listed(tmp_path):
  d = tmp_path / "ck"
  m = ckpt.manager(str(d), keep_last=3, keep_best=0)
  ckpt.save(m, 1, _state(1))
  m.wait_until_finished()
  m.close()
  # what a process killed mid-save leaves behind: a temporary folder that was never finalised
  os.makedirs(d / "2.orbax-checkpoint-tmp-1234" / "state")
  m = ckpt.manager(str(d), keep_last=3, keep_best=0)
  assert m.all_steps() == [1]
  m.close()


def test_sigterm_sets_the_flag():
  with ckpt.Preemption() as pre:
    assert not pre.requested
    os.kill(os.getpid(), signal.SIGTERM)
    assert pre.requested


@pytest.mark.parametrize("saved_scan", [False, True])
def test_a_step_saved_in_the_other_layer_layout_is_converted_on_resume(tmp_path, capsys, saved_scan):
  """A run resumed with model.scan_layers flipped reads the step as saved and converts params and
  AdamW moments into its own layout and shardings (fsdp over 8 devices), saying so."""
  from spct_jax import mesh as mesh_lib
  from spct_jax.model import load
  from spct_jax.train import chain, stage
  cfg = chain.load_config("configs/warmup.py")
  cfg.train.batch_size = 8
  mesh = mesh_lib.make_mesh((1, 8, 1))

  def state(scan):
    m = load.load("scratch", preset="tiny", scan_layers=scan, mesh=mesh)
    st, _ = stage.train_state(cfg, m.config, m.params, mesh)
    return st.replace(opt_state=jax.tree.map(lambda x: x + 1 if x.dtype == jnp.float32 else x, st.opt_state))

  saved = state(saved_scan)
  m = ckpt.manager(str(tmp_path / "ck"), keep_best=0)
  ckpt.save(m, 3, saved, meta={"data_position": 7})
  m.wait_until_finished()
  m.close()
  m = ckpt.manager(str(tmp_path / "ck"), keep_best=0)  # a new run: a fresh manager reads the step
  want = state(not saved_scan)
  got, meta, step = ckpt.restore_latest(m, ckpt.abstract_like(want))
  assert (step, meta) == (3, {"data_position": 7})
  layout = "scanned layers" if saved_scan else "per-layer"
  assert f"step 3 in {m.directory} holds {layout}" in capsys.readouterr().out
  expected = ckpt._relayout(saved.replace(rng=jax.random.key_data(saved.rng)), not saved_scan)
  assert jax.tree.structure(got) == jax.tree.structure(want) == jax.tree.structure(expected)
  for g, w, e in zip(jax.tree.leaves(got), jax.tree.leaves(want), jax.tree.leaves(expected)):
    assert g.shape == w.shape and g.sharding == w.sharding
    if jax.dtypes.issubdtype(g.dtype, jax.dtypes.prng_key):
      g = jax.random.key_data(g)
    np.testing.assert_array_equal(np.asarray(g), np.asarray(e))
  assert any(isinstance(k, str) and k.startswith("layers") for k in got.params) and (
      ("layers" in got.params) != saved_scan)
  m.close()
