"""GRPO on a tiny model: log-prob alignment with the sampler, the on-policy gradient, the mesh."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spct_jax import judge, sampling
from spct_jax.data import synthetic
from spct_jax.model import config as model_config
from spct_jax.model import transformer
from spct_jax.tokenizer import Tokenizer
from spct_jax.train import grpo, rl, sft
from spct_jax import mesh as mesh_lib
from spct_jax.train import state as state_lib
from tests_util import assert_params_close
from spct_jax.train import step as step_lib

CFG = model_config.get_config("tiny")
G = 4
HYPER = dict(temperature=0.8, clip_eps=0.2, beta=0.1, kl_estimator="k3", aggregation="token-mean")


@pytest.fixture(scope="module")
def rollout():
  tok = Tokenizer.load()
  params = transformer.init_params(CFG, jax.random.key(0))
  items = synthetic.generate(2, seed=5, n_responses=(2,))
  rows = judge.sample_critiques(items, G, 0, sample_seed=1, cfg=CFG, params=params, tok=tok,
                                sampling=sampling.Temperature(HYPER["temperature"]), max_new_tokens=12, batch_size=4)
  rows.sort(key=lambda c: c.item)
  rewards = np.array([1.0, -1.0, -1.0, 1.0, -1.0, -1.0, -1.0, 1.0], np.float32)
  batch = grpo.build_batch(rows, rewards, pad_id=tok.pad_id, G=G)
  model = transformer.Transformer(CFG)
  ref = grpo.reference_pass(model, HYPER["temperature"])
  batch["ref_logprobs"] = np.asarray(ref(grpo.reference_params(params, CFG), batch["tokens"], batch["pad_mask"],
                                         n_new=batch["old_logprobs"].shape[1])) - 0.05
  return params, batch, rows


def _full(model, params, batch):
  """Log-probs of every position from the full logits (log_softmax), the reference the
  completion-only, chunked computation is checked against."""
  logits = model.apply({"params": params}, batch["tokens"], pad_mask=batch["pad_mask"])[:, :-1]
  logp = jax.nn.log_softmax(logits / HYPER["temperature"], axis=-1)
  return jnp.take_along_axis(logp, jnp.asarray(batch["tokens"])[:, 1:, None], axis=-1)[..., 0]


def test_reference_pass_equals_full_log_softmax_in_micro_batches(rollout):
  params, batch, _ = rollout
  model = transformer.Transformer(CFG)
  n = batch["old_logprobs"].shape[1]
  want = np.asarray(_full(model, params, batch))[:, -n:]
  for micro in (1, 4):
    got = grpo.reference_pass(model, HYPER["temperature"], micro)(params, batch["tokens"], batch["pad_mask"], n_new=n)
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-5)
  np.testing.assert_allclose(batch["ref_logprobs"] + 0.05, want, atol=2e-5)


def test_rows_are_item_major_and_trainer_logprobs_match_the_sampler(rollout):
  params, batch, rows = rollout
  assert [c.item for c in rows] == [0] * G + [1] * G
  n = batch["old_logprobs"].shape[1]
  lp = _full(transformer.Transformer(CFG), params, batch)[:, -n:]
  mask = batch["loss_mask"][:, -n:]
  assert mask.sum() > 0
  np.testing.assert_allclose(np.asarray(lp)[mask], batch["old_logprobs"][mask], atol=1e-4)
  np.testing.assert_array_equal(batch["old_logprobs"][~mask], 0.0)


def test_on_policy_first_step_is_reinforce_with_group_baseline_plus_kl(rollout):
  params, batch, _ = rollout
  model = transformer.Transformer(CFG)
  loss = grpo.loss_fn(model, on_policy=True, **HYPER)
  b = jax.tree.map(jnp.asarray, batch)

  n = b["old_logprobs"].shape[1]

  def ratio_fn(p):
    lp = _full(model, p, b)[:, -n:]
    return jnp.exp(lp - jax.lax.stop_gradient(lp))
  assert np.all(np.asarray(ratio_fn(params)) == 1.0)

  def reinforce(p):
    lp = _full(model, p, b)[:, -n:]
    mask = b["loss_mask"][:, -n:].astype(jnp.float32)
    kl = rl.kl_penalty(lp, b["ref_logprobs"], "k3")
    return ((-b["advantages"][:, None] * lp + HYPER["beta"] * kl) * mask).sum() / mask.sum()

  g_grpo = jax.grad(lambda p: (lambda s, c, _: s / c)(*loss(p, b, None)))(params)
  g_ref = jax.grad(reinforce)(params)
  for x, y in zip(jax.tree.leaves(g_grpo), jax.tree.leaves(g_ref)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)


def _steps(shape, params, batch):
  tx = state_lib.make_optimizer(state_lib.OptimConfig(lr=1e-3, total_steps=10))
  st = state_lib.create(jax.tree.map(lambda x: x.copy(), params), tx, jax.random.key(1))
  model = transformer.Transformer(CFG)
  fn_first = grpo.loss_fn(model, on_policy=True, **HYPER)
  fn_later = grpo.loss_fn(model, on_policy=False, **HYPER)
  if shape is None:
    steps = [step_lib.make_step(f, tx) for f in (fn_first, fn_later)]
    b = jax.tree.map(jnp.asarray, batch)
  else:
    mesh = mesh_lib.make_mesh(shape)
    names = state_lib.logical_axes(tx, transformer.logical_axes(CFG), params)
    sh = mesh_lib.shardings_for(names, st, mesh)
    st = jax.device_put(st, sh)
    bsh = {k: mesh_lib.batch_sharding(mesh) for k in batch}
    steps = [step_lib.make_step(f, tx, state_shardings=sh, batch_shardings=bsh) for f in (fn_first, fn_later)]
    b = mesh_lib.shard_batch(batch, mesh)
  for s in steps:  # mu = 2: one on-policy update, one against the rollout's log-probs
    st, m = s(st, b)
  return jax.device_get(st.params), jax.device_get(m)


def test_grpo_step_on_an_8_device_mesh_equals_one_device(rollout):
  params, batch, _ = rollout
  ref_p, ref_m = _steps(None, params, batch)
  p, m = _steps((2, 2, 2), params, batch)
  np.testing.assert_allclose(m["loss"], ref_m["loss"], rtol=1e-5)
  # relative to the whole parameter vector: Adam's first steps move near-zero-gradient
  # entries by +-lr whatever the rounding, so elementwise ratios of tiny entries mean nothing.
  assert_params_close(ref_p, p)


def _expected_reward(model, params, prompt):
  """E[reward] of the toy: +1 when the first completion token is even, else -1, at temperature 1."""
  logits = model.apply({"params": params}, prompt)[:, -1].astype(jnp.float32)
  p = jax.nn.softmax(logits, axis=-1)
  p_even = p[:, 0::2].sum(axis=-1)
  return float((2 * p_even - 1).mean())


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_grpo_raises_a_toy_reward_and_a_flipped_advantage_lowers_it(sign):
  """Rollouts from the sampler, rule rewards, group advantages, the clipped GRPO step: the expected
  reward climbs within a few steps; with the advantage's sign flipped it falls instead."""
  cfg = model_config.get_config("tiny", vocab_size=64)
  model = transformer.Transformer(cfg)
  params = transformer.init_params(cfg, jax.random.key(0))
  ref = jax.tree.map(lambda x: x.copy(), params)
  tx = state_lib.make_optimizer(state_lib.OptimConfig(lr=1e-2, total_steps=100, clip_norm=0.0))
  st = state_lib.create(params, tx, jax.random.key(1))
  steps = [step_lib.make_step(grpo.loss_fn(model, on_policy=policy, **{**HYPER, "temperature": 1.0}), tx)
           for policy in (True, False)]
  prompt = jnp.asarray(np.random.default_rng(0).integers(1, 64, size=(2, 6)), jnp.int32)
  mask = jnp.ones_like(prompt, bool)
  before = _expected_reward(model, st.params, prompt)
  for t in range(8):
    out = sampling.sample(cfg, st.params, prompt, mask, jax.random.key(100 + t), k=8, max_new_tokens=2,
                          sampling=sampling.Temperature(1.0))
    batch = dict(sampling.completion_batch(prompt, mask, out))
    rewards = jnp.where(out.tokens[:, :, 0].reshape(-1) % 2 == 0, 1.0, -1.0)
    batch.update(old_logprobs=out.logprobs.reshape(-1, 2), advantages=sign * rl.group_advantages(rewards, 8),
                 ref_logprobs=sft.token_logprobs(model, ref, batch["tokens"], batch["pad_mask"],
                                                 start=prompt.shape[1] - 1))
    for s in steps:  # mu = 2
      st, _ = s(st, batch)
  after = _expected_reward(model, st.params, prompt)
  assert abs(before) < 0.2
  assert sign * (after - before) > 0.3, (before, after)


def test_at_the_reference_weights_with_no_advantage_the_gradient_is_exactly_zero(rollout):
  # a group with no reward signal at step 1: the policy IS the reference, so the KL term and its
  # gradient must be exactly 0 (a rounding difference between the trainer's and the reference
  # pass's log-probs would be blown up by Adam into lr-sized steps of noise)
  params, batch, _ = rollout
  model = transformer.Transformer(CFG)
  b = dict(jax.tree.map(jnp.asarray, batch), advantages=jnp.zeros_like(batch["advantages"]))
  b["ref_logprobs"] = grpo.reference_pass(model, HYPER["temperature"])(
      grpo.reference_params(params, CFG), b["tokens"], b["pad_mask"], n_new=b["old_logprobs"].shape[1])
  loss = grpo.loss_fn(model, on_policy=True, **HYPER)
  grads, total, _, aux = jax.jit(lambda p, b: step_lib.accumulate(loss, p, b, jax.random.key(0)))(params, b)
  assert float(total) == 0.0 and float(aux["kl"]) == 0.0
  assert all(np.all(np.asarray(g) == 0.0) for g in jax.tree.leaves(grads))
