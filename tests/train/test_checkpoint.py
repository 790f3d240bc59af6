import os
import signal

import jax
import jax.numpy as jnp
import numpy as np

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
