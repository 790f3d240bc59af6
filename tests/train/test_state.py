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


_SHARE_SCRIPT = r"""
import collections, json, math, sys
import jax
jax.config.update("jax_platforms", "cpu")
jax.config.update("jax_num_cpu_devices", 8)
from spct_jax import mesh as mesh_lib
from spct_jax.model import load
from spct_jax.train import chain, stage

def counts(arrays):  # bytes per device, from the shardings (no new arrays made)
  out = collections.Counter()
  for a in arrays:
    if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
      continue
    nbytes = math.prod(a.sharding.shard_shape(a.shape)) * a.dtype.itemsize
    for d in a.sharding.addressable_devices:
      out[d.id] += nbytes
  return out

def per_device():
  return counts(jax.live_arrays())

folder, scan, eager = sys.argv[1], sys.argv[2] == "1", sys.argv[3] == "1"
cfg = chain.load_config("configs/warmup.py")
cfg.model.scan_layers = scan
cfg.train.batch_size = 8
mesh = mesh_lib.make_mesh((1, 8, 1))
before = per_device()
m = load.load("export:" + folder, mesh=mesh, scan_layers=scan)
loaded = per_device()
if eager:  # the old way, the test's own negative control: create on one device, then place
  from spct_jax.train import state as state_lib
  st = state_lib.create(jax.device_put(jax.device_get(m.params)), stage.optimizer(cfg)[0], jax.random.key(0))
  created = per_device()
else:
  st, _ = stage.train_state(cfg, m.config, m.params, mesh)
  created = per_device()
def share(tree):  # bytes of the tree on its fullest device
  return max(counts(jax.tree.leaves(tree)).values())

print(json.dumps({"loaded": max((loaded - before).values()), "params_share": share(m.params),
                  "created": max((created - before).values()), "state_share": share(st),
                  "state_total": sum(x.nbytes for x in jax.tree.leaves(st))}))
"""


@pytest.mark.parametrize("scan", [False, True])
def test_loading_and_creating_the_state_never_put_more_than_a_share_on_a_device(tmp_path, scan):
  """8 CPU devices, fsdp 8: the export is read into its shards and the float32 state (master
  weights + AdamW moments) is created under jit straight into its shardings. Live bytes on the
  fullest device stay within its share plus one layer; creating the state the old way (on one
  device, then placing) exceeds that, so the check can fail."""
  import json
  import pathlib
  import subprocess
  import sys
  from spct_jax.model import config as model_config, orbax_io, transformer
  from spct_jax.tokenizer import Tokenizer
  root = pathlib.Path(__file__).resolve().parents[2]
  cfg = model_config.get_config("small", n_layers=12)
  params = jax.device_get(transformer.init_params(cfg, jax.random.key(0)))
  orbax_io.save(params, model_config.to_dict(cfg), str(tmp_path / "export"), Tokenizer.load())
  layer = sum(x.nbytes for x in jax.tree.leaves(params["layers_0"])) * 3  # a layer's params + 2 moments

  def run(eager):
    proc = subprocess.run([sys.executable, "-c", _SHARE_SCRIPT, str(tmp_path / "export"), str(int(scan)), str(int(eager))],
                          cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
  r = run(eager=False)
  assert r["loaded"] <= r["params_share"] + layer
  assert r["created"] <= r["state_share"] + layer
  assert r["state_total"] > 3 * (r["state_share"] + layer)  # a share is far from the whole
  old = run(eager=True)
  assert old["created"] > r["state_share"] + layer
