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
LLAMA = dict(model_type="llama", sliding_window=None, query_pre_attn_scalar=None, attn_softcap=None,
             final_softcap=None, tie_embeddings=False)
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
  batch["ref_logprobs"] = np.asarray(ref(grpo.reference_params(params, CFG),
                                         *(batch[k] for k in grpo.BATCH_KEYS[:4]))) - 0.05
  return params, batch, rows


def _rows(batch):
  """The grouped batch as [R, Tp+N] rows (each prompt repeated for its completions), a flat
  [R, N] view of every per-completion key and advantages [R]."""
  p, k, n = batch["completions"].shape
  flat = lambda x: jnp.asarray(x).reshape((p * k,) + tuple(x.shape[2:]))  # noqa: E731
  tokens = jnp.concatenate([jnp.repeat(jnp.asarray(batch["prompts"]), k, axis=0), flat(batch["completions"])], 1)
  mask = jnp.concatenate([jnp.repeat(jnp.asarray(batch["prompt_mask"]), k, axis=0), flat(batch["completion_mask"])], 1)
  return tokens, mask, {key: flat(batch[key]) for key in batch if key not in ("prompts", "prompt_mask")}


def _full(model, params, batch, temperature=HYPER["temperature"]):
  """Log-probs [R, N] of the completions from the full logits (log_softmax) of the rows that
  repeat each prompt: the reference the shared-prompt, chunked computation is checked against."""
  tokens, mask, rows = _rows(batch)
  n = rows["completions"].shape[1]
  logits = model.apply({"params": params}, tokens, pad_mask=mask)[:, :-1]
  logp = jax.nn.log_softmax(logits / temperature, axis=-1)
  return jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[:, -n:, 0]


def test_build_batch_groups_the_rows_that_share_a_prompt(rollout):
  _, batch, rows = rollout
  assert [c.item for c in rows] == [0] * G + [1] * G
  # two items of 2 responses, G = 4: 2 orders each, 2 samples per order -> 4 prompts x 2 rows
  assert batch["completions"].shape[:2] == (4, 2) and batch["advantages"].shape == (4, 2)
  for i, c in enumerate(rows):
    p, j = divmod(i, 2)
    tp = batch["prompts"].shape[1]
    np.testing.assert_array_equal(batch["prompts"][p, tp - len(c.prompt):], c.prompt)
    assert not batch["prompt_mask"][p, :tp - len(c.prompt)].any()
    assert batch["completion_mask"][p, j].sum() == c.length
    np.testing.assert_array_equal(batch["completions"][p, j, :c.length], c.tokens[:c.length])
  assert grpo.shared_group([4, 4, 2, 2, 2, 2]) == 2
  assert grpo.shared_group([8, 8, 8, 8]) == 8
  assert grpo.shared_group([8, 8, 8, 8], multiple=8) == 4  # 8 groups of 4 rows split over 8
  assert grpo.shared_group([4, 4, 1, 1, 1, 1, 1, 1, 1, 1]) == 1


@pytest.mark.parametrize("overrides", [{}, {"scan_layers": True, "remat": True}, LLAMA],
                         ids=["gemma2", "scanned", "llama"])
def test_shared_prompt_logprobs_and_gradients_equal_the_repeated_rows(overrides):
  """Each prompt run once for its k completions = every row with its own copy of the prompt:
  log-probs, entropies and the gradient of a weighted sum (prompts of different lengths, one
  longer than the sliding window, completions of different lengths)."""
  cfg = model_config.get_config("tiny", **overrides)
  model = transformer.Transformer(cfg)
  params = transformer.init_params(cfg, jax.random.key(3))
  rng = np.random.default_rng(0)
  p, k, tp, n = 3, 4, 24, 10
  prompt_mask = np.arange(tp)[None] >= np.array([[0], [5], [19]])
  batch = {"prompts": np.where(prompt_mask, rng.integers(3, 4096, (p, tp)), 0).astype(np.int32),
           "prompt_mask": prompt_mask, "completions": rng.integers(3, 4096, (p, k, n)).astype(np.int32),
           "completion_mask": np.arange(n) < rng.integers(1, n + 1, (p, k, 1))}
  weights = jnp.asarray(rng.normal(size=(p, k, n)), jnp.float32) * batch["completion_mask"]

  def shared(params):
    lp, ent = sft.shared_token_logprobs(model, params, batch["prompts"], batch["prompt_mask"], batch["completions"],
                                        batch["completion_mask"], 0.7, with_entropy=True)
    return (lp * weights).sum(), (lp, ent)

  def repeated(params):
    tokens, mask, rows = _rows(batch)
    lp, ent = sft.token_logprobs(model, params, tokens, mask, 0.7, with_entropy=True, start=tp - 1,
                                 where=rows["completion_mask"])
    return (lp * weights.reshape(p * k, n)).sum(), (lp.reshape(p, k, n), ent.reshape(p, k, n))

  (v1, (lp1, ent1)), g1 = jax.jit(jax.value_and_grad(shared, has_aux=True))(params)
  (v2, (lp2, ent2)), g2 = jax.jit(jax.value_and_grad(repeated, has_aux=True))(params)
  np.testing.assert_allclose(lp1, lp2, atol=2e-5)
  np.testing.assert_allclose(ent1, ent2, atol=2e-5)
  np.testing.assert_array_equal(np.asarray(lp1)[~batch["completion_mask"]], 0.0)
  want = _full(model, params, batch, 0.7) * batch["completion_mask"].reshape(p * k, n)
  np.testing.assert_allclose(np.asarray(lp1).reshape(p * k, n), want, atol=2e-5)
  assert_params_close(g2, g1)


def test_shared_prompt_logprobs_reject_a_right_padded_prompt():
  model = transformer.Transformer(CFG)
  params = transformer.init_params(CFG, jax.random.key(0))
  prompts, mask = np.ones((2, 4), np.int32), np.array([[1, 1, 1, 1], [1, 1, 0, 0]], bool)
  with pytest.raises(ValueError, match="prompt row 1 does not end with a real token"):
    sft.shared_token_logprobs(model, params, prompts, mask, np.ones((2, 1, 3), np.int32), np.ones((2, 1, 3), bool))


def test_reference_pass_equals_full_log_softmax_in_micro_batches(rollout):
  params, batch, _ = rollout
  model = transformer.Transformer(CFG)
  p, k, n = batch["completions"].shape
  want = np.asarray(_full(model, params, batch)) * batch["completion_mask"].reshape(p * k, n)
  for micro in (1, 4):
    got = grpo.reference_pass(model, HYPER["temperature"], micro)(params, *(batch[key] for key in grpo.BATCH_KEYS[:4]))
    np.testing.assert_allclose(np.asarray(got).reshape(p * k, n), want, atol=2e-5)
  np.testing.assert_allclose((batch["ref_logprobs"] + 0.05).reshape(p * k, n) * (want != 0), want, atol=2e-5)


def test_trainer_logprobs_match_the_sampler(rollout):
  params, batch, rows = rollout
  _, _, flat = _rows(batch)
  lp = _full(transformer.Transformer(CFG), params, batch)
  mask = np.asarray(flat["completion_mask"])
  assert mask.sum() > 0
  np.testing.assert_allclose(np.asarray(lp)[mask], np.asarray(flat["old_logprobs"])[mask], atol=1e-4)
  np.testing.assert_array_equal(np.asarray(flat["old_logprobs"])[~mask], 0.0)


def test_on_policy_first_step_is_reinforce_with_group_baseline_plus_kl(rollout):
  params, batch, _ = rollout
  model = transformer.Transformer(CFG)
  loss = grpo.loss_fn(model, on_policy=True, **HYPER)
  b = jax.tree.map(jnp.asarray, batch)

  _, _, flat = _rows(b)

  def ratio_fn(p):
    lp = _full(model, p, b)
    return jnp.exp(lp - jax.lax.stop_gradient(lp))
  assert np.all(np.asarray(ratio_fn(params)) == 1.0)

  def reinforce(p):
    lp = _full(model, p, b)
    mask = flat["completion_mask"].astype(jnp.float32)
    kl = rl.kl_penalty(lp, flat["ref_logprobs"], "k3")
    return ((-flat["advantages"][:, None] * lp + HYPER["beta"] * kl) * mask).sum() / mask.sum()

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
    batch = grpo.sampled_batch(prompt, mask, out)
    rewards = jnp.where(out.tokens[:, :, 0].reshape(-1) % 2 == 0, 1.0, -1.0)
    batch.update(advantages=sign * rl.group_advantages(rewards, 8).reshape(2, 8),
                 ref_logprobs=grpo.reference_pass(model, 1.0)(ref, *(batch[k] for k in grpo.BATCH_KEYS[:4])))
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
      grpo.reference_params(params, CFG), *(b[k] for k in grpo.BATCH_KEYS[:4]))
  loss = grpo.loss_fn(model, on_policy=True, **HYPER)
  grads, total, _, aux = jax.jit(lambda p, b: step_lib.accumulate(loss, p, b, jax.random.key(0)))(params, b)
  assert float(total) == 0.0 and float(aux["kl"]) == 0.0
  assert all(np.all(np.asarray(g) == 0.0) for g in jax.tree.leaves(grads))
