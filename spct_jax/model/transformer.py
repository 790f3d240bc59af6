"""The decoder-only transformer, applied functionally.

    model = Transformer(cfg)
    params = init_params(cfg, rng)                                   # plain pytree of arrays
    logits = model.apply({'params': params}, tokens, pad_mask=pad_mask)          # [B, T, V] f32
    logits, hidden = model.apply(..., return_hidden=True)            # hidden [B, T, D] f32
    cache = init_cache(cfg, batch, max_len)
    logits, cache = model.apply({'params': params}, prompt, pad_mask=mask, cache=cache)  # prefill
    logits, cache = model.apply({'params': params}, next_tok[:, None], cache=cache)     # decode

Parameter tree (unscanned layers; `layers_{i}` for i in range(L)):
    embed [V, D]                                   ('vocab', 'embed')
    layers_i/attn/q [D, N, H], k, v [D, K, H]      ('embed', 'heads'|'kv_heads', 'head_dim')
    layers_i/attn/o [N, H, D]                      ('heads', 'head_dim', 'embed')
    layers_i/attn/{q,k,v}_bias [N|K, H]            (Qwen2 only)
    layers_i/attn/{q,k}_norm/scale [H]             ('head_dim',) (Gemma 3 only)
    layers_i/mlp/gate, up [D, F]; down [F, D]      ('embed', 'mlp'), ('mlp', 'embed')
    layers_i/{pre_attn,post_attn,pre_mlp,post_mlp}_norm/scale [D]   ('embed',) (post_*: Gemma)
    final_norm/scale [D]
    lm_head [D, V]                                 ('embed', 'vocab') (untied only)

Cache (`init_cache`): a dict whose every leaf has the batch on axis 0, so a sampler can repeat
or shard all leaves along axis 0:
    index    [B] int32       next slot to write (equal in every row: rows advance in lockstep)
    next_pos [B] int32       position of the row's next real token (= real tokens so far)
    pos      [B, S] int32    position of the token in each slot; -1 = empty or padding (never attended)
    layers_i {'k': [B, K, H, S], 'v': [B, K, S, H]}   (the layouts decoding reads directly)
Positions are derived from the padding: a real token's position is the number of real tokens
before it in its row; pad slots are never attended. Slots past S are not checked inside jit (the
caller keeps index + T <= S); outside jit an overflow raises.

Sharding: `logical_axes(cfg)` and `cache_logical_axes(cfg)` give the logical names of every param
and cache leaf (tuples of names, same tree structure) for spct_jax/train/mesh.py. A model too big
for one device is initialised directly sharded:
`jax.jit(functools.partial(init_params, cfg), out_shardings=shardings)(rng)`.
Attention is a plain einsum over all keys (memory O(T * S) per head; no fused kernel).
"""
from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from spct_jax.model import layers
from spct_jax.model.config import ModelConfig

Array = jax.Array


def _concrete(x: Any) -> np.ndarray | None:
  """x as numpy when it is a concrete local value; None when traced (inside jit) or multi-host."""
  if isinstance(x, jax.core.Tracer) or not getattr(x, "is_fully_addressable", True):
    return None
  return np.asarray(x)


class Transformer(nn.Module):
  """Decoder-only LM. See the module docstring for inputs, outputs and the parameter tree."""
  cfg: ModelConfig

  @nn.compact
  def __call__(self, tokens: Array, pad_mask: Array | None = None, positions: Array | None = None,
               cache: dict[str, Any] | None = None, return_hidden: bool = False):
    """tokens: [B, T] int32 in [0, V) (checked outside jit; inside jit an id out of range gives NaN);
    pad_mask: [B, T] bool (True = real token; None = all real);
    positions: [B, T] int32 (None: derived from pad_mask and the cache; the cache's next_pos
      always counts real tokens);
    cache: from `init_cache` (None: full forward over `tokens` alone).

    Returns logits [B, T, V] float32, then hidden [B, T, D] float32 (after the final norm) if
    return_hidden, then the updated cache if a cache was given.
    """
    cfg = self.cfg
    b, t = tokens.shape
    pad_mask = jnp.ones((b, t), bool) if pad_mask is None else pad_mask.astype(bool)
    concrete = _concrete(tokens)
    if concrete is not None and concrete.size and (concrete.min() < 0 or concrete.max() >= cfg.vocab_size):
      raise ValueError(f"tokens out of range [0, {cfg.vocab_size}): "
                       f"min {concrete.min()}, max {concrete.max()}")

    if cache is None:
      if positions is None:
        positions = jnp.maximum(jnp.cumsum(pad_mask, axis=1) - 1, 0)
      q_slot = jnp.broadcast_to(jnp.arange(t), (b, t))
      k_slot, k_pos, k_valid = jnp.arange(t), positions, pad_mask
      index = None
    else:
      index = cache["index"]
      s = cache["pos"].shape[1]
      if t > s:
        raise ValueError(f"{t} tokens do not fit a cache of length {s}")
      idx = _concrete(index)
      if idx is not None and idx.size and idx.max() + t > s:
        raise ValueError(f"cache overflow: writing {t} tokens at slot {idx.max()} of a cache of length {s}")
      if positions is None:
        positions = cache["next_pos"][:, None] + jnp.cumsum(pad_mask, axis=1) - 1
        positions = jnp.maximum(positions, 0)
      new_pos = jnp.where(pad_mask, positions, -1).astype(jnp.int32)
      k_pos = jax.vmap(lambda buf, new, i: jax.lax.dynamic_update_slice_in_dim(buf, new, i, axis=0))(
          cache["pos"], new_pos, index)
      q_slot = index[:, None] + jnp.arange(t)[None, :]
      k_slot, k_valid = jnp.arange(s), k_pos >= 0
    positions = positions.astype(jnp.int32)

    masks = {w: layers.attention_mask(q_slot, positions, k_slot, k_pos, k_valid, w)
             for w in {cfg.sliding_window if local else None for local in cfg.local_layers}}

    embed = self.param("embed", nn.with_logical_partitioning(
        nn.initializers.normal(cfg.d_model ** -0.5), ("vocab", "embed")),
        (cfg.vocab_size, cfg.d_model), cfg.jnp_param_dtype)
    x = jnp.take(embed, tokens, axis=0).astype(cfg.jnp_dtype)
    if cfg.is_gemma:
      x = x * jnp.asarray(math.sqrt(cfg.d_model), cfg.jnp_dtype)
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))

    block = nn.remat(layers.Block) if cfg.remat else layers.Block
    new_cache = None if cache is None else {
        "index": index + t,
        "next_pos": cache["next_pos"] + jnp.sum(pad_mask, axis=1, dtype=jnp.int32),
        "pos": k_pos}
    for i, local in enumerate(cfg.local_layers):
      window = cfg.sliding_window if local else None
      layer_cache = None if cache is None else cache[f"layers_{i}"]
      x, layer_cache = block(cfg, window, name=f"layers_{i}")(x, positions, masks[window], layer_cache, index)
      if cache is not None:
        new_cache[f"layers_{i}"] = layer_cache

    hidden = layers.RMSNorm(cfg, name="final_norm")(x)
    if cfg.tie_embeddings:
      out = embed.T
    else:
      out = self.param("lm_head", nn.with_logical_partitioning(
          nn.initializers.normal(cfg.d_model ** -0.5), ("embed", "vocab")),
          (cfg.d_model, cfg.vocab_size), cfg.jnp_param_dtype)
    logits = jnp.einsum("btd,dv->btv", hidden, out.astype(cfg.jnp_dtype), preferred_element_type=jnp.float32)
    logits = nn.with_logical_constraint(layers.softcap(logits, cfg.final_softcap), ("batch", "length", "vocab"))

    result = (logits,)
    if return_hidden:
      result += (hidden.astype(jnp.float32),)
    if cache is not None:
      result += (new_cache,)
    return result[0] if len(result) == 1 else result


def _init_boxed(cfg: ModelConfig, rng: Array) -> Any:
  """Params with their nn.Partitioned metadata (logical axis names)."""
  return Transformer(cfg).init(rng, jnp.zeros((1, 1), jnp.int32))["params"]


@functools.partial(jax.jit, static_argnums=0)
def _init_unboxed(cfg: ModelConfig, rng: Array) -> Any:
  return nn.meta.unbox(_init_boxed(cfg, rng))


def init_params(cfg: ModelConfig, rng: Array) -> Any:
  """Fresh parameters: a plain pytree of arrays in cfg.param_dtype (no Partitioned wrappers)."""
  return _init_unboxed(cfg, rng)


def _is_boxed(x) -> bool:
  return isinstance(x, nn.Partitioned)


def logical_axes(cfg: ModelConfig) -> Any:
  """Same structure as the params; each leaf a tuple of logical axis names, e.g. ('embed', 'mlp')."""
  boxed = jax.eval_shape(functools.partial(_init_boxed, cfg), jax.random.key(0))
  return jax.tree.map(lambda p: tuple(p.names), boxed, is_leaf=_is_boxed)


def abstract_params(cfg: ModelConfig) -> Any:
  """Same structure as the params; each leaf a jax.ShapeDtypeStruct (no memory spent)."""
  return nn.meta.unbox(jax.eval_shape(functools.partial(_init_boxed, cfg), jax.random.key(0)))


def param_count(cfg: ModelConfig) -> int:
  """Number of parameters, from shapes only (jax.eval_shape)."""
  return sum(math.prod(x.shape) for x in jax.tree.leaves(abstract_params(cfg)))


def init_cache(cfg: ModelConfig, batch: int, max_len: int, dtype: Any = None) -> dict[str, Any]:
  """An empty KV cache of `max_len` slots for `batch` rows (see the module docstring).

  dtype: of the keys and values (None: cfg.dtype).
  """
  dtype = jnp.dtype(dtype or cfg.dtype)
  k_shape = (batch, cfg.n_kv_heads, cfg.head_dim, max_len)
  v_shape = (batch, cfg.n_kv_heads, max_len, cfg.head_dim)
  cache = {"index": jnp.zeros((batch,), jnp.int32),
           "next_pos": jnp.zeros((batch,), jnp.int32),
           "pos": jnp.full((batch, max_len), -1, jnp.int32)}
  for i in range(cfg.n_layers):
    cache[f"layers_{i}"] = {"k": jnp.zeros(k_shape, dtype), "v": jnp.zeros(v_shape, dtype)}
  return cache


def cache_logical_axes(cfg: ModelConfig) -> dict[str, Any]:
  """Logical axis names of every cache leaf (same structure as `init_cache`)."""
  names = {"index": ("batch",), "next_pos": ("batch",), "pos": ("batch", "length")}
  for i in range(cfg.n_layers):
    names[f"layers_{i}"] = {"k": ("batch", "kv_heads", "head_dim", "length"),
                            "v": ("batch", "kv_heads", "length", "head_dim")}
  return names
