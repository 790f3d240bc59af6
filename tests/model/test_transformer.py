"""The forward pass, the KV cache, padding, positions, remat and dtypes.

Most calls go through the shared jitted `forward` / `cached` fixtures (tests/model/conftest.py) so
each config and shape compiles once; the eager (un-jitted) paths are checked once each.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spct_jax.model import config, layers, transformer

TINY = config.get_config("tiny")


def _tiny_inputs(t=20, left_pad=(0, 5), seed=0):
  """tokens [2, t] int32 and a left-padding mask [2, t] bool (t=20 > the tiny window of 16)."""
  rng = np.random.default_rng(seed)
  tokens = rng.integers(0, TINY.vocab_size, size=(len(left_pad), t)).astype(np.int32)
  mask = np.arange(t)[None, :] >= np.asarray(left_pad)[:, None]
  return jnp.asarray(np.where(mask, tokens, 0)), jnp.asarray(mask)


@pytest.fixture(scope="module")
def tiny_params():
  return transformer.init_params(TINY, jax.random.key(0))


def _decode(cached, cfg, params, cache, tokens, mask, prefill):
  """Logits [B, T, V]: a prefill of `prefill` tokens, then one token at a time through the cache."""
  logits, cache = cached(cfg, params, tokens[:, :prefill], mask[:, :prefill], cache)
  out = [logits]
  for i in range(prefill, tokens.shape[1]):
    logits, cache = cached(cfg, params, tokens[:, i:i + 1], mask[:, i:i + 1], cache)
    out.append(logits)
  return jnp.concatenate(out, axis=1), cache


def test_init_params_are_plain_arrays(tiny_params):
  leaves = jax.tree.leaves(tiny_params)
  assert all(isinstance(x, jax.Array) and x.dtype == jnp.float32 for x in leaves)
  assert sum(x.size for x in leaves) == transformer.param_count(TINY)
  bf16 = transformer.abstract_params(config.get_config("tiny", param_dtype="bfloat16"))
  assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(bf16))
  # Gemma norms start at w = 0 (scale 1 + w).
  assert float(jnp.abs(tiny_params["final_norm"]["scale"]).max()) == 0.0


def _one_layer(params):
  """TINY_1 (the tiny preset cut to its first, local, layer) and its params: cheap to compile."""
  return {k: v for k, v in params.items() if k != "layers_1"}


TINY_1 = config.get_config("tiny", n_layers=1)


def test_forward_shapes_and_hidden(forward, tiny_params):
  tokens, mask = _tiny_inputs()
  logits, hidden = forward(TINY, tiny_params, tokens, mask, hidden=True)
  assert logits.shape == (2, 20, 4096) and logits.dtype == jnp.float32
  assert hidden.shape == (2, 20, 64) and hidden.dtype == jnp.float32
  # logits = softcap(hidden @ embed.T): hidden is the final-norm output the LM head reads.
  expect = layers.softcap(hidden @ tiny_params["embed"].T, TINY.final_softcap)
  np.testing.assert_allclose(logits, expect, atol=1e-4)
  np.testing.assert_allclose(forward(TINY, tiny_params, tokens, mask), logits, atol=1e-6)


def test_forward_and_decode_eager_match_jit(forward, cached, hf_fixture):
  cfg, params, io = hf_fixture("gemma2")
  model = transformer.Transformer(cfg)
  tokens, mask = io["tokens"][:, :4], io["mask"][:, :4]
  eager = model.apply({"params": params}, tokens, pad_mask=mask)
  full = forward(cfg, params, io["tokens"], io["mask"])[:, :4]
  np.testing.assert_allclose(np.asarray(eager)[mask], np.asarray(full)[mask], atol=1e-5)
  _, cache = cached(cfg, params, tokens[:, :3], mask[:, :3], transformer.init_cache(cfg, 2, 16))
  a, ca = model.apply({"params": params}, tokens[:, 3:], pad_mask=mask[:, 3:], cache=cache)
  b, cb = cached(cfg, params, tokens[:, 3:], mask[:, 3:], cache)
  np.testing.assert_allclose(a, b, atol=1e-5)
  np.testing.assert_allclose(a[:, 0], eager[:, 3], atol=1e-5)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=1e-6), ca, cb)


def test_left_padding_leaves_a_row_unchanged(forward, hf_fixture):
  for name in ("gemma2", "llama"):
    cfg, params, io = hf_fixture(name)
    padded = forward(cfg, params, io["tokens"], io["mask"])
    alone = forward(cfg, params, io["tokens"][1:, 3:])  # the same row, unpadded
    np.testing.assert_allclose(padded[1, 3:], alone[0], atol=1e-5)


def test_explicit_positions_equal_derived(forward, hf_fixture):
  cfg, params, io = hf_fixture("gemma2")
  positions = np.maximum(np.cumsum(io["mask"], axis=1) - 1, 0).astype(np.int32)
  a = forward(cfg, params, io["tokens"], io["mask"])
  b = forward(cfg, params, io["tokens"], io["mask"], positions)
  np.testing.assert_allclose(a, b, atol=1e-6)
  c = forward(cfg, params, io["tokens"], io["mask"], positions + 5)  # RoPE is relative
  np.testing.assert_allclose(a[io["mask"]], c[io["mask"]], atol=1e-4)


@pytest.mark.parametrize("name", ["gemma2", "gemma3", "llama", "qwen2", "mistral"])
def test_cache_decode_matches_full_forward(forward, cached, hf_fixture, name):
  # Gemma 2 / Gemma 3 (window 4) and Mistral (window 5): decoding from slot 3 on crosses the window.
  cfg, params, io = hf_fixture(name)
  full = forward(cfg, params, io["tokens"], io["mask"])
  cache = transformer.init_cache(cfg, 2, 16)
  decoded, cache = _decode(cached, cfg, params, cache, io["tokens"], io["mask"], 3)
  assert np.abs(np.asarray(decoded - full))[io["mask"]].max() <= 1e-5
  np.testing.assert_array_equal(cache["index"], [12, 12])
  np.testing.assert_array_equal(cache["next_pos"], [12, 9])
  np.testing.assert_array_equal(cache["pos"][1], [-1] * 3 + list(range(9)) + [-1] * 4)


def test_cache_leaves_repeat_along_batch(forward, cached, hf_fixture):
  """A sampler prefills B rows once, repeats every cache leaf k times on axis 0, then decodes."""
  cfg, params, io = hf_fixture("gemma2")
  cache = transformer.init_cache(cfg, 2, 12)
  names = transformer.cache_logical_axes(cfg)
  is_names = lambda x: isinstance(x, tuple) and all(isinstance(n, str) for n in x)
  assert jax.tree.structure(names, is_leaf=is_names) == jax.tree.structure(cache)
  for leaf, axes in zip(jax.tree.leaves(cache), jax.tree.leaves(names, is_leaf=is_names)):
    assert leaf.shape[0] == 2 and axes[0] == "batch" and len(axes) == leaf.ndim
  empty = cache
  _, cache = cached(cfg, params, io["tokens"][:, :8], io["mask"][:, :8], cache)
  # Same structure, shapes and dtypes in and out: the cache can be a while_loop carry.
  spec = lambda c: jax.tree.map(lambda x: (x.shape, x.dtype), c)
  assert spec(cache) == spec(empty)
  k = 3
  cache = jax.tree.map(lambda x: jnp.repeat(x, k, axis=0), cache)
  tokens, mask = np.repeat(io["tokens"], k, axis=0), np.repeat(io["mask"], k, axis=0)
  logits, _ = cached(cfg, params, tokens[:, 8:], mask[:, 8:], cache)
  full = forward(cfg, params, io["tokens"], io["mask"])
  np.testing.assert_allclose(logits, np.repeat(full[:, 8:], k, axis=0), atol=1e-5)


def test_pad_token_during_decode_is_never_attended(forward, cached, hf_fixture):
  """A row that decodes a pad (e.g. a finished sample) neither advances its position nor is seen."""
  cfg, params, io = hf_fixture("gemma2")
  mask = io["mask"].copy()
  mask[0, 6] = False  # row 0 decodes a pad at slot 6
  full = forward(cfg, params, io["tokens"], mask)
  decoded, cache = _decode(cached, cfg, params, transformer.init_cache(cfg, 2, 16), io["tokens"], mask, 3)
  assert np.abs(np.asarray(decoded - full))[mask].max() <= 1e-5
  np.testing.assert_array_equal(cache["next_pos"], [11, 9])
  # Row 0 without the pad at all: the same logits on its real tokens.
  keep = np.flatnonzero(mask[0])
  alone = forward(cfg, params, io["tokens"][:1, keep])
  np.testing.assert_allclose(full[0, keep], alone[0], atol=1e-5)


def test_remat_wraps_each_layer_and_keeps_logits(forward, tiny_params):
  tokens, mask = _tiny_inputs(t=8)
  params = _one_layer(tiny_params)
  remat_cfg = config.replace(TINY_1, remat=True)

  def grad_jaxpr(cfg):
    loss = lambda p: transformer.Transformer(cfg).apply({"params": p}, tokens, pad_mask=mask).mean()
    return str(jax.make_jaxpr(jax.grad(loss))(params))

  assert "remat" in grad_jaxpr(remat_cfg) and "remat" not in grad_jaxpr(TINY_1)
  np.testing.assert_allclose(forward(remat_cfg, params, tokens, mask), forward(TINY_1, params, tokens, mask),
                             atol=1e-6)


def test_bf16_compute_returns_float32_logits(forward, cached, tiny_params):
  tokens, mask = _tiny_inputs(t=8)
  params = _one_layer(tiny_params)
  cfg = config.replace(TINY_1, dtype="bfloat16")
  logits = forward(cfg, params, tokens, mask)
  ref = forward(TINY_1, params, tokens, mask)
  assert logits.dtype == jnp.float32
  assert float(jnp.abs(logits - ref).max()) < 0.1 * float(jnp.abs(ref).max())
  cache = transformer.init_cache(cfg, 2, 8)
  assert cache["layers_0"]["k"].dtype == jnp.bfloat16
  prefilled, _ = cached(cfg, params, tokens, mask, cache)
  np.testing.assert_allclose(prefilled, logits, atol=0.05)


def test_bad_input_errors():
  params = transformer.init_params(TINY, jax.random.key(1))
  model = transformer.Transformer(TINY)
  with pytest.raises(ValueError, match=r"tokens out of range \[0, 4096\): min -1, max 4096"):
    model.apply({"params": params}, jnp.array([[-1, 4096]], jnp.int32))
  cache = transformer.init_cache(TINY, 1, 4)
  cache["index"] = cache["index"] + 3
  with pytest.raises(ValueError, match="cache overflow: writing 2 tokens at slot 3 of a cache of length 4"):
    model.apply({"params": params}, jnp.ones((1, 2), jnp.int32), cache=cache)
  with pytest.raises(ValueError, match="5 tokens do not fit a cache of length 4"):
    model.apply({"params": params}, jnp.ones((1, 5), jnp.int32), cache=transformer.init_cache(TINY, 1, 4))


def test_rope_llama3_scaling_bands():
  cfg = config.get_config("llama3_2_1b")
  inv = layers.rope_inv_freq(cfg)
  plain = layers.rope_inv_freq(config.get_config("llama3_2_1b", rope_scaling_factor=None))
  wavelen = 2 * np.pi / plain
  high, low = wavelen < 8192 / 4, wavelen > 8192 / 1
  np.testing.assert_array_equal(inv[high], plain[high])            # short wavelengths kept
  np.testing.assert_allclose(inv[low], plain[low] / 32, rtol=1e-6)  # long ones divided by the factor
  mid = ~high & ~low
  assert mid.any() and np.all((inv[mid] < plain[mid]) & (inv[mid] > plain[mid] / 32))


@pytest.mark.parametrize("name", ["gemma2", "gemma3", "llama", "mistral"])
def test_scanned_layers_match_hf_logits_and_decode_across_the_window(forward, cached, hf_fixture, name):
  """The scanned layout (one nn.scan over stacked params; local/global layers chosen by a scanned
  flag) gives the HF fixture's logits, and its stacked KV cache decodes like the full forward."""
  cfg, params, io = hf_fixture(name)
  scfg = config.replace(cfg, scan_layers=True)
  sparams = transformer.to_layout(scfg, params)
  assert "layers" in sparams and not any(k.startswith("layers_") for k in sparams)
  assert jax.tree.leaves(sparams["layers"])[0].shape[0] == cfg.n_layers
  assert transformer.logical_axes(scfg)["layers"]["attn"]["q"][0] == "layers"
  logits = forward(scfg, sparams, io["tokens"], io["mask"])
  assert np.abs(np.asarray(logits) - io["logits"])[io["mask"]].max() <= 1e-4
  cache = transformer.init_cache(scfg, 2, 16)
  assert cache["layers"]["k"].shape[:2] == (2, cfg.n_layers)  # batch first: a sampler repeats axis 0
  decoded, cache = _decode(cached, scfg, sparams, cache, io["tokens"], io["mask"], 3)
  assert np.abs(np.asarray(decoded) - np.asarray(logits))[io["mask"]].max() <= 1e-5
  back = transformer.to_layout(cfg, sparams)
  assert jax.tree.structure(back) == jax.tree.structure(params)
  for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(params)):
    np.testing.assert_array_equal(a, b)


def test_scanned_remat_gradients_equal_unrolled(tiny_params):
  """Same loss gradient through the scanned, rematerialised layers (either policy) as unrolled."""
  cfg = TINY
  tokens = jnp.asarray(np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 24)), jnp.int32)

  def grad(c, p):
    def loss(p):
      return transformer.Transformer(c).apply({"params": p}, tokens).astype(jnp.float32).std()
    return jax.jit(jax.grad(loss))(p)
  want = grad(cfg, tiny_params)
  for policy in ("nothing_saveable", "dots"):
    scfg = config.replace(cfg, scan_layers=True, remat=True, remat_policy=policy)
    got = transformer.to_layout(cfg, grad(scfg, transformer.to_layout(scfg, tiny_params)))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("x_shape,w_shape,n", [((3, 5, 8), (8, 4, 6), 1), ((3, 5, 4, 6), (4, 6, 8), 2),
                                               ((7, 8), (8, 16), 1)])
def test_projection_backward_equals_autodiff(x_shape, w_shape, n):
  """The projections' own backward pass (layers._dot) gives JAX's autodiff gradients of the same
  dot_general, for one and two contracted dims, and the same forward values."""
  r = np.random.default_rng(0)
  x = jnp.asarray(r.normal(size=x_shape), jnp.float32)
  w = jnp.asarray(r.normal(size=w_shape), jnp.float32)
  ct = jnp.asarray(r.normal(size=x_shape[:len(x_shape) - n] + w_shape[n:]), jnp.float32)
  ours = lambda x, w: (layers._project(x, w, n) * ct).sum()  # noqa: E731
  plain = lambda x, w: (layers._project(x, w, n, plain=True) * ct).sum()  # noqa: E731
  np.testing.assert_allclose(layers._project(x, w, n), layers._project(x, w, n, plain=True), rtol=1e-6)
  got, want = jax.grad(ours, (0, 1))(x, w), jax.grad(plain, (0, 1))(x, w)
  for a, b in zip(got, want):
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  assert float(jnp.abs(got[1]).max()) > 0


@pytest.mark.parametrize("shape", [(2, 3, 5, 2, 2, 4, 7), (3, 1, 1, 2, 1, 4, 6)])
def test_attention_scores_backward_equals_autodiff(shape):
  """The attention scores' own backward pass (layers._qk: the keys' gradient as q . d over the
  queries' J, T, G dims) gives JAX's autodiff gradients of the same einsum, for samples sharing
  keys (J > 1) and for decode (J = T = 1); the LM head's product (layers.head_dot) likewise,
  float32 out of bf16 in."""
  p, j, t, k, g, h, s = shape
  r = np.random.default_rng(1)
  q = jnp.asarray(r.normal(size=(p, j, t, k, g, h)), jnp.float32)
  keys = jnp.asarray(r.normal(size=(p, k, h, s)), jnp.float32)
  ct = jnp.asarray(r.normal(size=(p, k, j, t, g, s)), jnp.float32)
  plain = lambda q, keys: jnp.einsum("pjtkgh,pkhs->pkjtgs", q, keys)  # noqa: E731
  np.testing.assert_allclose(layers._scores(q, keys), plain(q, keys), rtol=1e-5, atol=1e-5)
  got = jax.grad(lambda q, keys: (layers._scores(q, keys) * ct).sum(), (0, 1))(q, keys)
  want = jax.grad(lambda q, keys: (plain(q, keys) * ct).sum(), (0, 1))(q, keys)
  for a, b in zip(got, want):
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)

  x, w = q.reshape(-1, h).astype(jnp.bfloat16), keys[0, 0].astype(jnp.bfloat16)
  ct = jnp.asarray(r.normal(size=(x.shape[0], s)), jnp.float32)
  out = layers.head_dot(x, w)
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(out, jnp.einsum("md,dv->mv", x, w, preferred_element_type=jnp.float32), rtol=1e-6)
  got = jax.grad(lambda x, w: (layers.head_dot(x, w) * ct).sum(), (0, 1))(x, w)
  want = jax.grad(lambda x, w: (jnp.einsum("md,dv->mv", x, w, preferred_element_type=jnp.float32) * ct).sum(),
                  (0, 1))(x, w)
  for a, b in zip(got, want):
    assert a.dtype == b.dtype == jnp.bfloat16
    np.testing.assert_allclose(a.astype(jnp.float32), b.astype(jnp.float32), rtol=1e-2, atol=1e-2)
