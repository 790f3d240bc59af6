"""The k-critique sampler on the `tiny` preset: exactness against the teacher-forced forward pass,
the sampled distribution, padding invariance, stop tokens, the mesh, truncation and compile caching.

Few compiled variants on purpose: most tests share (B=2, bucket 16, k=4, N=8, Temperature(0.5)).
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings, strategies as st

from spct_jax import sampling as S
from spct_jax.data import pipeline
from spct_jax.model import config, transformer
from spct_jax import mesh as mesh_lib
from spct_jax.train import sft

K, N = 4, 8
METHOD = S.Temperature(0.5)


@pytest.fixture(scope="module")
def tiny():
  cfg = config.get_config("tiny")
  params = transformer.init_params(cfg, jax.random.key(0))
  return cfg, params, transformer.Transformer(cfg)


@pytest.fixture(scope="module")
def prompts():
  rng = np.random.default_rng(0)
  return [rng.integers(3, 4096, size=n).tolist() for n in (5, 9)]


@pytest.fixture(scope="module")
def keys():
  return jax.random.split(jax.random.key(3), 2)  # one key per prompt


@pytest.fixture(scope="module")
def sampled(tiny, prompts, keys):
  """The shared run: both prompts in one left-padded batch, no stop tokens."""
  cfg, params, _ = tiny
  tokens, mask = pipeline.pad(prompts, 0, left=True)
  return tokens, mask, S.sample(cfg, params, tokens, mask, keys, k=K, max_new_tokens=N, sampling=METHOD)


def _full_logits(model, params, batch):
  return model.apply({"params": params}, batch["tokens"], pad_mask=batch["pad_mask"])


def test_greedy_equals_teacher_forced_argmax(tiny, prompts):
  cfg, params, model = tiny
  tokens, mask = pipeline.pad(prompts, 0, left=True)
  out = S.sample(cfg, params, tokens, mask, jax.random.key(0), k=2, max_new_tokens=N, sampling=S.Greedy())
  assert out.tokens.shape == (2, 2, N) and out.logprobs.shape == (2, 2, N)
  np.testing.assert_array_equal(out.tokens[:, 0], out.tokens[:, 1])  # greedy ignores the key
  np.testing.assert_array_equal(out.lengths, N)
  assert not np.asarray(out.done).any()
  batch = S.completion_batch(tokens, mask, out)
  t = tokens.shape[1]
  logits = _full_logits(model, params, batch)[:, t - 1:-1]  # predicts each completion token
  np.testing.assert_array_equal(np.argmax(logits, -1), out.tokens.reshape(4, N))
  logp = jax.nn.log_softmax(logits, -1)  # raw logits: temperature 1 for Greedy
  want = jnp.take_along_axis(logp, out.tokens.reshape(4, N, 1), -1)[..., 0]
  np.testing.assert_allclose(out.logprobs.reshape(4, N), want, atol=1e-4)


def test_logprobs_equal_trainer_recomputation(tiny, sampled):
  cfg, params, model = tiny
  tokens, mask, out = sampled
  batch = S.completion_batch(tokens, mask, out)
  assert batch["tokens"].shape == (2 * K, tokens.shape[1] + N)
  np.testing.assert_array_equal(batch["loss_mask"][:, tokens.shape[1]:], True)
  lp = sft.token_logprobs(model, params, batch["tokens"], batch["pad_mask"], METHOD.temperature)
  np.testing.assert_allclose(lp[:, tokens.shape[1] - 1:], out.logprobs.reshape(2 * K, N), atol=1e-4)
  assert (np.asarray(out.logprobs) < 0).all()


def test_same_key_same_samples_and_samples_differ(tiny, sampled, keys):
  cfg, params, _ = tiny
  tokens, mask, out = sampled
  again = S.sample(cfg, params, tokens, mask, keys, k=K, max_new_tokens=N, sampling=METHOD)
  np.testing.assert_array_equal(again.tokens, out.tokens)
  other = S.sample(cfg, params, tokens, mask, jax.random.split(jax.random.key(4), 2), k=K,
                   max_new_tokens=N, sampling=METHOD)
  assert (np.asarray(other.tokens) != np.asarray(out.tokens)).any()
  for b in range(2):  # the k samples of one prompt are distinct draws
    assert len({tuple(r) for r in np.asarray(out.tokens[b]).tolist()}) == K


def test_padded_batch_equals_each_prompt_alone(tiny, prompts, keys, sampled):
  cfg, params, _ = tiny
  _, _, out = sampled
  for b, p in enumerate(prompts):
    tokens, mask = pipeline.pad([p], 0, left=True)
    alone = S.sample(cfg, params, tokens, mask, keys[b:b + 1], k=K, max_new_tokens=N, sampling=METHOD)
    np.testing.assert_array_equal(alone.tokens[0], out.tokens[b])
    np.testing.assert_allclose(alone.logprobs[0], out.logprobs[b], atol=1e-5)
  # one key for the batch: prompt b gets fold_in(key, b), whatever the batch size
  tokens, mask = pipeline.pad(prompts, 0, left=True)
  both = S.sample(cfg, params, tokens, mask, jax.random.key(5), k=K, max_new_tokens=N, sampling=METHOD)
  tokens, mask = pipeline.pad(prompts[:1], 0, left=True)
  first = S.sample(cfg, params, tokens, mask, jax.random.key(5), k=K, max_new_tokens=N, sampling=METHOD)
  np.testing.assert_array_equal(first.tokens[0], both.tokens[0])


@pytest.mark.parametrize("v", [1, 3, 12, 4096, 5000])
def test_inverse_cdf_picks_the_token_whose_cumulative_weight_first_exceeds_the_draw(v):
  rng = np.random.default_rng(v)
  p = rng.exponential(size=(512, v)).astype(np.float32) ** 3
  p[rng.random((512, v)) < 0.5] = 0.0          # zero weights (truncated tokens) among the rest
  p[:, -1] += p.sum(axis=1) == 0
  u = rng.random(512).astype(np.float32)
  u[:2] = [0.0, np.float32(1 - 2**-24)]        # both ends of the draw
  got = np.asarray(jax.jit(jax.vmap(S._inverse_cdf))(jnp.asarray(p), jnp.asarray(u)))
  assert (p[np.arange(512), got] > 0).all()    # never a token of weight 0
  cdf = np.cumsum(p.astype(np.float64), axis=1)
  target = u * cdf[:, -1]
  want = np.minimum((cdf <= target[:, None]).sum(axis=1), v - 1 - np.argmax(p[:, ::-1] > 0, axis=1))
  # float32 sums may differ from float64 only for draws within rounding of a boundary
  near = np.abs(cdf[np.arange(512), np.minimum(want, got)] - target) <= 1e-5 * cdf[:, -1]
  assert ((got == want) | near).all()
  assert (got == want).mean() > 0.99


def test_temperature_samples_follow_the_softmax(tiny, prompts):
  cfg, params, model = tiny
  tokens, mask = pipeline.pad(prompts[:1], 0, left=True)
  n = 4096
  out = S.sample(cfg, params, tokens, mask, jax.random.key(7), k=n, max_new_tokens=1, sampling=METHOD)
  drawn = np.asarray(out.tokens[0, :, 0])
  logits = np.asarray(model.apply({"params": params}, jnp.asarray(tokens))[0, -1], np.float64)

  def chi2_pvalue(temperature):
    p = np.exp(logits / temperature - np.max(logits / temperature))
    p /= p.sum()
    order = np.argsort(-p)
    # bins of >= ~1/32 of the mass in probability order (the top token alone has ~16%)
    bins = np.minimum((np.cumsum(p[order]) - p[order]) * 32, 31).astype(int)
    bin_of = np.empty_like(bins)
    bin_of[order] = bins
    expected = np.bincount(bin_of, weights=p, minlength=32) * n
    observed = np.bincount(bin_of[drawn], minlength=32)
    keep = expected > 0
    return scipy.stats.chisquare(observed[keep], expected[keep]).pvalue

  assert chi2_pvalue(0.5) > 1e-3          # the distribution sampled from
  assert chi2_pvalue(0.6) < 1e-6          # the test has the power to see a wrong temperature
  # the returned log-probs are those of the tempered softmax
  logp = logits / 0.5 - np.log(np.sum(np.exp(logits / 0.5)))
  np.testing.assert_allclose(out.logprobs[0, :, 0], logp[drawn], atol=1e-4)


def test_stop_tokens_end_rows_independently(tiny, sampled, keys):
  cfg, params, model = tiny
  tokens, mask, free = sampled
  free_t = np.asarray(free.tokens).reshape(2 * K, N)
  stop_ids = (int(free_t[0, 2]), int(free_t[K + 1, 5]))
  out = S.sample(cfg, params, tokens, mask, keys, k=K, max_new_tokens=N, sampling=METHOD,
                 stop_ids=stop_ids, pad_id=1)
  got_t = np.asarray(out.tokens).reshape(2 * K, N)
  got_lp = np.asarray(out.logprobs).reshape(2 * K, N)
  lengths = np.asarray(out.lengths).reshape(-1)
  done = np.asarray(out.done).reshape(-1)
  for r in range(2 * K):
    hits = np.flatnonzero(np.isin(free_t[r], stop_ids))
    want_len = hits[0] + 1 if hits.size else N
    assert lengths[r] == want_len and done[r] == bool(hits.size), r
    np.testing.assert_array_equal(got_t[r, :want_len], free_t[r, :want_len])
    np.testing.assert_array_equal(got_t[r, want_len:], 1)        # pad_id after the stop
    np.testing.assert_array_equal(got_lp[r, want_len:], 0.0)
  assert lengths[0] <= 3 and lengths[K + 1] <= 6 and len(set(lengths.tolist())) > 1  # independent rows
  # the log-probs of the kept tokens still match the trainer's recomputation
  batch = S.completion_batch(tokens, mask, out)
  lp = sft.token_logprobs(model, params, batch["tokens"], batch["pad_mask"], METHOD.temperature)
  comp = np.asarray(batch["loss_mask"][:, tokens.shape[1]:])
  np.testing.assert_allclose(np.where(comp, lp[:, tokens.shape[1] - 1:], 0.0), got_lp, atol=1e-4)


def test_mesh_of_8_devices_gives_the_same_tokens(tiny, sampled, keys):
  assert len(jax.devices()) == 8
  cfg, params, _ = tiny
  tokens, mask, out = sampled
  mesh = mesh_lib.make_mesh((2, 2, 2))
  sharded = S.sample(cfg, params, tokens, mask, keys, k=K, max_new_tokens=N, sampling=METHOD, mesh=mesh)
  assert len(sharded.tokens.sharding.device_set) == 8
  np.testing.assert_array_equal(sharded.tokens, out.tokens)
  np.testing.assert_allclose(sharded.logprobs, out.logprobs, atol=1e-5)
  with pytest.raises(ValueError, match=r"B\*k \(prompts x samples\)=6 is not divisible"):
    S.sample(cfg, params, tokens, mask, keys, k=3, max_new_tokens=N, sampling=METHOD, mesh=mesh)


@pytest.mark.parametrize("scan", [False, True])
def test_shared_prefix_equals_a_prefill_per_sample_and_stores_the_prompt_once(tiny, sampled, keys, scan):
  """The prompt's KV stored once per prompt (attention over it and the row's own slots in one
  softmax) gives what prefilling every sample's own copy gives, across the sliding window (16)."""
  cfg, params, _ = tiny
  tokens, mask, out = sampled
  if scan:
    cfg = dataclasses.replace(cfg, scan_layers=True)
    params = transformer.to_layout(cfg, params)
  shared = out if not scan else S.sample(cfg, params, tokens, mask, keys, k=K, max_new_tokens=N, sampling=METHOD)
  alone = S.sample(cfg, params, tokens, mask, keys, k=K, max_new_tokens=N, sampling=METHOD, share_prefix=False)
  np.testing.assert_array_equal(shared.tokens, alone.tokens)
  np.testing.assert_allclose(shared.logprobs, alone.logprobs, atol=1e-5)
  # the decode cache: the prompt's KV has one row per prompt whatever k; the samples' rows hold N slots
  for k in (1, 4, 16):
    dec = jax.eval_shape(lambda: transformer.share_prefix(cfg, transformer.init_cache(cfg, 2, 16), k, N))
    layer = dec["layers"] if scan else dec["layers_0"]
    assert layer["prefix_k"].shape[0] == 2 and layer["prefix_k"].shape[-1] == 16
    assert layer["k"].shape[0] == 2 * k and layer["k"].shape[-1] == N


def test_compiled_once_per_bucket(tiny, keys):
  cfg, params, _ = tiny
  rng = np.random.default_rng(1)

  def run(lengths):
    tokens, mask = pipeline.pad([rng.integers(3, 4096, size=n).tolist() for n in lengths], 0, left=True)
    S.sample(cfg, params, tokens, mask, keys, k=K, max_new_tokens=N, sampling=METHOD)
    return S._sample_jit._cache_size()

  base = run((3, 7))
  assert run((11, 16)) == base            # same bucket (16): no new trace
  assert run((20, 2)) == base + 1         # bucket 32: one new compile
  assert run((31, 17)) == base + 1
  assert pipeline.bucket_length(17) == 32 and pipeline.bucket_length(3) == 16 and pipeline.bucket_length(5, (8, 64)) == 8


def test_bad_inputs_are_named(tiny):
  cfg, params, _ = tiny
  tokens = np.array([[5, 6, 0]], np.int32)
  with pytest.raises(ValueError, match=r"prompt_mask rows \[0\] are not left-padded"):
    S.sample(cfg, params, tokens, np.array([[True, True, False]]), jax.random.key(0), k=1, max_new_tokens=2)
  with pytest.raises(ValueError, match=r"prompt_mask rows \[0\] have no real token"):
    S.sample(cfg, params, tokens, np.zeros((1, 3), bool), jax.random.key(0), k=1, max_new_tokens=2)
  with pytest.raises(ValueError, match="expected one key or 1 keys"):
    S.sample(cfg, params, tokens, np.ones((1, 3), bool), jax.random.split(jax.random.key(0), 3), k=1,
             max_new_tokens=2)
  with pytest.raises(ValueError, match=r"exceeds ModelConfig.max_len=2048"):
    S.sample(cfg, params, tokens, np.ones((1, 3), bool), jax.random.key(0), k=1, max_new_tokens=2040)
  with pytest.raises(ValueError, match=r"TopP.p=1.5: must be in \(0, 1\]"):
    S.TopP(1.5)
  with pytest.raises(ValueError, match="must be > 0 \\(use Greedy\\)"):
    S.Temperature(0.0)


def test_truncation_exact_small_cases():
  x = jnp.log(jnp.array([0.1, 0.6, 0.3]))
  assert np.isfinite(S.TopK(2).truncate(x)).tolist() == [False, True, True]
  assert np.isfinite(S.TopP(0.5).truncate(x)).tolist() == [False, True, False]
  assert np.isfinite(S.TopP(0.7).truncate(x)).tolist() == [False, True, True]
  assert np.isfinite(S.TopP(1.0).truncate(x)).tolist() == [True, True, True]
  assert np.isfinite(S.TopK(9).truncate(x)).all()


@jax.jit
def _draw(logits_V, top_k, top_p, temperature, key):
  """64 draws each from top-k, top-p and top-k then top-p at the given (traced) settings."""
  u = jax.random.uniform(key, (64,))
  methods = (S.Temperature(temperature, (S.TopK(top_k),)), S.Temperature(temperature, (S.TopP(top_p),)),
             S.Temperature(temperature, (S.TopK(top_k), S.TopP(top_p))))
  return [jax.vmap(m.choose, in_axes=(0, None))(u, logits_V)[0] for m in methods]


def _nucleus(x, p):
  """Tokens allowed by top-p on logits x (float64), with a 1e-5 tolerance at the boundary."""
  x = x.astype(np.float64)
  probs = np.exp(x - x.max())
  probs /= probs.sum()
  above = np.array([probs[x > xi].sum() for xi in x])
  return above < p + 1e-5


@settings(max_examples=40, deadline=None)
@given(logits=st.lists(st.floats(-4, 4).map(lambda v: round(v, 3)), min_size=12, max_size=12),
       top_k=st.integers(1, 12), top_p=st.floats(0.05, 1.0), temperature=st.floats(0.3, 2.0),
       seed=st.integers(0, 2**31 - 1))
def test_top_k_top_p_never_sample_outside_the_allowed_set(logits, top_k, top_p, temperature, seed):
  x = np.asarray(logits, np.float32)
  k_draws, p_draws, kp_draws = (np.asarray(d) for d in _draw(
      jnp.asarray(x), top_k, np.float32(top_p), np.float32(temperature), jax.random.key(seed)))
  scaled = x / np.float32(temperature)  # float32, as the sampler divides
  in_top_k = scaled >= np.sort(scaled)[::-1][top_k - 1]
  assert in_top_k[k_draws].all()
  assert _nucleus(scaled, top_p)[p_draws].all()
  both = np.where(in_top_k, scaled, -np.inf)
  assert (in_top_k & _nucleus(both, top_p))[kp_draws].all()


def test_generate_returns_the_decoded_samples(tiny, keys):
  from spct_jax.example import user
  from spct_jax.tokenizer import Tokenizer
  cfg, params, _ = tiny
  tok = Tokenizer.load()
  questions = ["Which answer is better?", "Hi"]
  texts = [tok.chat_prompt([user(q)]) for q in questions]
  got = S.generate(texts, cfg=cfg, params=params, tokenizer=tok, k=K, max_new_tokens=N, sampling=METHOD, rng=keys)
  assert len(got) == 2 and all(len(g) == K for g in got)
  tokens, mask = pipeline.pad([tok.encode(t, add_bos=True) for t in texts], tok.pad_id, left=True)
  out = S.sample(cfg, params, tokens, mask, keys, k=K, max_new_tokens=N, sampling=METHOD,
                 stop_ids=(tok.eos_id, *tok.end_of_turn_ids), pad_id=tok.pad_id)
  ids, lengths, done = np.asarray(out.tokens), np.asarray(out.lengths), np.asarray(out.done)
  want = [[tok.decode(ids[b, j, :lengths[b, j] - done[b, j]].tolist()) for j in range(K)] for b in range(2)]
  assert got == want
  # chat=True wraps plain user messages with the tokenizer's chat template
  assert S.generate(questions, cfg=cfg, params=params, tokenizer=tok, k=K, max_new_tokens=N,
                    sampling=METHOD, rng=keys, chat=True) == got
  with pytest.raises(TypeError, match="takes a list of prompt strings"):
    S.generate("Hi", cfg=cfg, params=params, tokenizer=tok)


@pytest.mark.parametrize("k", [1, 3, 7, 12])
def test_top_k_by_partial_selection_keeps_exactly_the_k_largest_and_their_ties(k):
  x = np.random.default_rng(k).integers(-3, 4, size=12).astype(np.float32)  # many ties
  kth = np.sort(x)[::-1][k - 1]
  got = np.asarray(S.TopK(k).truncate(jnp.asarray(x)))
  np.testing.assert_array_equal(np.isfinite(got), x >= kth)
  np.testing.assert_array_equal(got[x >= kth], x[x >= kth])
