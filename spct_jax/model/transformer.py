"""The decoder-only transformer, applied functionally.

    model = Transformer(cfg)
    params = init_params(cfg, rng)                                   # plain pytree of arrays
    logits = model.apply({'params': params}, tokens, pad_mask=pad_mask)          # [B, T, V] f32
    logits, hidden = model.apply(..., return_hidden=True)            # hidden [B, T, D] f32
    hidden = model.apply(..., head=False)      # hidden [B, T, D] in cfg.dtype, no logits computed
    logits = head_logits(cfg, hidden, head_weight(cfg, params))      # the LM head on any positions
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

Scanned layout (cfg.scan_layers): the layers are one `nn.scan` over a single traced layer, so
compile time does not grow with depth; every `layers_i` subtree above becomes one `layers` subtree
whose leaves are stacked on a new leading axis ('layers', replicated by the mesh rules), e.g.
layers/attn/q [L, D, N, H]. A layer's local/global kind is a scanned flag that picks its mask and
RoPE base. Files always hold the per-layer layout: `to_layout(cfg, params)` converts either way
(model/load.py on load, orbax_io/hf on save), so checkpoints and exports are layout-independent.

Cache (`init_cache`): a dict whose every leaf has the batch on axis 0, so a sampler can repeat
or shard all leaves along axis 0:
    index    [B] int32       next slot to write (equal in every row: rows advance in lockstep)
    next_pos [B] int32       position of the row's next real token (= real tokens so far)
    pos      [B, S] int32    position of the token in each slot; -1 = empty or padding (never attended)
    layers_i {'k': [B, K, H, S], 'v': [B, K, S, H]}   (the layouts decoding reads directly)
    layers   {'k': [B, L, K, H, S], 'v': [B, L, K, S, H]}   (scanned layout: layer axis second)
A decode cache made by `share_prefix(cfg, prefilled, k, max_new)` also holds P = B/k prompts once
(`prefix_pos` [P, Tp] and each layer's `prefix_k`, `prefix_v` with P rows): the prompt's keys
precede the slots, and its KV is neither copied per sample nor grown with k.
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
from spct_jax.model import lora
from spct_jax.model.config import ModelConfig

Array = jax.Array


REMAT_POLICIES = {"nothing_saveable": jax.checkpoint_policies.nothing_saveable,
                  "dots": jax.checkpoint_policies.checkpoint_dots}


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
               cache: dict[str, Any] | None = None, return_hidden: bool = False, head: bool = True):
    """tokens: [B, T] int32 in [0, V) (checked outside jit; inside jit an id out of range gives NaN);
    pad_mask: [B, T] bool (True = real token; None = all real);
    positions: [B, T] int32 (None: derived from pad_mask and the cache; the cache's next_pos
      always counts real tokens);
    cache: from `init_cache` (None: full forward over `tokens` alone).

    Returns logits [B, T, V] float32, then hidden [B, T, D] float32 (after the final norm) if
    return_hidden, then the updated cache if a cache was given. head=False returns the hidden
    states in the compute dtype instead of the logits (then the updated cache), for callers that
    apply the LM head (`head_logits`) to some positions only or a chunk at a time.
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
      k_pos_attn, index = k_pos, None
    else:
      index = cache["index"][0]  # rows advance in lockstep: one scalar slot for every row
      s = cache["pos"].shape[1]
      if t > s:
        raise ValueError(f"{t} tokens do not fit a cache of length {s}")
      idx = _concrete(cache["index"])
      if idx is not None and idx.size and idx.max() + t > s:
        raise ValueError(f"cache overflow: writing {t} tokens at slot {idx.max()} of a cache of length {s}")
      if positions is None:
        positions = cache["next_pos"][:, None] + jnp.cumsum(pad_mask, axis=1) - 1
        positions = jnp.maximum(positions, 0)
      new_pos = jnp.where(pad_mask, positions, -1).astype(jnp.int32)
      k_pos = jax.lax.dynamic_update_slice_in_dim(cache["pos"], new_pos, index, axis=1)
      q_slot = jnp.broadcast_to(index + jnp.arange(t), (b, t))
      k_pos_attn = k_pos
      if "prefix_pos" in cache:  # a shared prompt: its keys come first, then the cache's slots
        pre = cache["prefix_pos"]
        k_pos_attn = jnp.concatenate([jnp.repeat(pre, b // pre.shape[0], axis=0), k_pos], axis=1)
        q_slot = q_slot + pre.shape[1]
      k_slot, k_valid = jnp.arange(k_pos_attn.shape[1]), k_pos_attn >= 0
    positions = positions.astype(jnp.int32)

    windows = {cfg.sliding_window if local else None for local in cfg.local_layers}
    if cfg.scan_layers:
      windows.add(None)
    masks = {w: layers.attention_mask(q_slot, positions, k_slot, k_pos_attn, k_valid, w) for w in windows}

    embed = self.param("embed", nn.with_logical_partitioning(
        nn.initializers.normal(cfg.d_model ** -0.5), ("vocab", "embed")),
        (cfg.vocab_size, cfg.d_model), cfg.jnp_param_dtype)
    x = jnp.take(embed, tokens, axis=0).astype(cfg.jnp_dtype)
    if cfg.is_gemma:
      x = x * jnp.asarray(math.sqrt(cfg.d_model), cfg.jnp_dtype)
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))

    block = lora.wrap_class(cfg) if cfg.lora_rank else layers.Block
    block = nn.remat(block, policy=REMAT_POLICIES[cfg.remat_policy]) if cfg.remat else block
    new_cache = None if cache is None else {
        **cache, "index": cache["index"] + t,
        "next_pos": cache["next_pos"] + jnp.sum(pad_mask, axis=1, dtype=jnp.int32),
        "pos": k_pos}
    if cfg.scan_layers:
      # one scanned body over params stacked on axis 0; the cache's layer axis is axis 1 (batch first)
      scan = nn.scan(block, variable_axes={"params": 0}, split_rngs={"params": True},
                     in_axes=(nn.broadcast, nn.broadcast, 1, nn.broadcast, 0, nn.broadcast), out_axes=1,
                     length=cfg.n_layers, metadata_params={nn.PARTITION_NAME: "layers"})
      local_flags = jnp.asarray(cfg.local_layers)
      x, layer_cache = scan(cfg, cfg.sliding_window, name="layers")(
          x, positions, masks[cfg.sliding_window if any(cfg.local_layers) else None],
          None if cache is None else cache["layers"], index, local_flags, masks[None])
      if cache is not None:
        new_cache["layers"] = {**cache["layers"], **layer_cache}
    for i, local in enumerate(() if cfg.scan_layers else cfg.local_layers):
      window = cfg.sliding_window if local else None
      layer_cache = None if cache is None else cache[f"layers_{i}"]
      x, layer_cache = block(cfg, window, name=f"layers_{i}")(x, positions, masks[window], layer_cache, index)
      if cache is not None:
        new_cache[f"layers_{i}"] = {**cache[f"layers_{i}"], **layer_cache}

    hidden = layers.RMSNorm(cfg, name="final_norm")(x)
    if cfg.tie_embeddings:
      out = embed.T
    else:
      out = self.param("lm_head", nn.with_logical_partitioning(
          nn.initializers.normal(cfg.d_model ** -0.5), ("embed", "vocab")),
          (cfg.d_model, cfg.vocab_size), cfg.jnp_param_dtype)
    if not head:
      return hidden if cache is None else (hidden, new_cache)
    logits = head_logits(cfg, hidden, out)

    result = (logits,)
    if return_hidden:
      result += (hidden.astype(jnp.float32),)
    if cache is not None:
      result += (new_cache,)
    return result[0] if len(result) == 1 else result


def head_weight(cfg: ModelConfig, params: Any) -> Array:
  """The LM head's weight [D, V] in `params` (the embedding, transposed, when tied)."""
  return params["embed"].T if cfg.tie_embeddings else params["lm_head"]


def head_logits(cfg: ModelConfig, hidden: Array, weight: Array) -> Array:
  """Logits [..., V] float32 of hidden states [..., D] (after the final norm) and the head's
  weight [D, V], soft-capped as the model does."""
  logits = layers.head_dot(hidden.astype(cfg.jnp_dtype), weight.astype(cfg.jnp_dtype))
  logits = layers.softcap(logits, cfg.final_softcap)
  if logits.ndim == 3:
    logits = nn.with_logical_constraint(logits, ("batch", "length", "vocab"))
  return logits


def _init_boxed(cfg: ModelConfig, rng: Array) -> Any:
  """Params with their nn.Partitioned metadata (logical axis names). Outside any logical-axis
  rules, so that no sharding constraint applies while params are created (qwix builds a LoRA
  adapter's box from its weight's, whose names do not fit the adapter's rank)."""
  with nn.logical_axis_rules(()):
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
  boxed = jax.eval_shape(lambda: _init_boxed(cfg, jax.random.key(0)))
  return jax.tree.map(lambda p: tuple(p.names), boxed, is_leaf=_is_boxed)


def abstract_params(cfg: ModelConfig) -> Any:
  """Same structure as the params; each leaf a jax.ShapeDtypeStruct (no memory spent)."""
  return nn.meta.unbox(jax.eval_shape(lambda: _init_boxed(cfg, jax.random.key(0))))


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
  if cfg.scan_layers:
    stacked = lambda shape: (shape[0], cfg.n_layers) + shape[1:]  # noqa: E731
    cache["layers"] = {"k": jnp.zeros(stacked(k_shape), dtype), "v": jnp.zeros(stacked(v_shape), dtype)}
  for i in range(0 if cfg.scan_layers else cfg.n_layers):
    cache[f"layers_{i}"] = {"k": jnp.zeros(k_shape, dtype), "v": jnp.zeros(v_shape, dtype)}
  return cache


def share_prefix(cfg: ModelConfig, prefilled: dict[str, Any], k: int, max_new: int) -> dict[str, Any]:
  """A decode cache of P*k rows whose prompt is stored once per prompt.

  prefilled: the cache of P prompts after their prefill, its slots holding exactly the prompts
  (`init_cache(cfg, P, T)` then one call on the [P, T] prompts). Returns a cache of P*k rows
  (row p*k + j is sample j of prompt p) with `max_new` slots for the generated tokens, plus the
  prompts' keys and values as they are, never repeated: 'prefix_pos' [P, T] and, in every layer,
  'prefix_k' / 'prefix_v' (layout of 'k' / 'v' with T slots). Attention reads the prompt's keys
  once per prompt and each row's own slots after them (layers.Attention), so the prompt's KV
  memory and its reads per decode step do not grow with k.
  """
  rows = prefilled["pos"].shape[0] * k
  out = init_cache(cfg, rows, max_new, dtype=_cache_dtype(prefilled))
  out["next_pos"] = jnp.repeat(prefilled["next_pos"], k, axis=0)
  out["prefix_pos"] = prefilled["pos"]
  for name in [n for n in out if n.startswith("layers")]:
    out[name] = {**out[name], "prefix_k": prefilled[name]["k"], "prefix_v": prefilled[name]["v"]}
  return out


def _cache_dtype(cache: dict[str, Any]) -> Any:
  return next(v["k"].dtype for n, v in cache.items() if n.startswith("layers"))


def cache_logical_axes(cfg: ModelConfig) -> dict[str, Any]:
  """Logical axis names of every cache leaf (same structure as `init_cache`)."""
  names = {"index": ("batch",), "next_pos": ("batch",), "pos": ("batch", "length")}
  if cfg.scan_layers:
    names["layers"] = {"k": ("batch", "layers", "kv_heads", "head_dim", "length"),
                       "v": ("batch", "layers", "kv_heads", "length", "head_dim")}
  for i in range(0 if cfg.scan_layers else cfg.n_layers):
    names[f"layers_{i}"] = {"k": ("batch", "kv_heads", "head_dim", "length"),
                            "v": ("batch", "kv_heads", "length", "head_dim")}
  return names


def stack_layers(params: Any, n_layers: int, stack: Any = None) -> Any:
  """Per-layer params (`layers_0` ... `layers_{L-1}`) -> the scanned layout: one `layers` subtree
  whose leaves are stacked on a new leading axis by `stack(list of leaves)` (default: np.stack for
  host numpy, jnp.stack otherwise)."""
  if "layers" in params:
    return params
  missing = [f"layers_{i}" for i in range(n_layers) if f"layers_{i}" not in params]
  if missing:
    raise ValueError(f"params: missing {missing[0]!r} to stack {n_layers} layers")
  per_layer = [params[f"layers_{i}"] for i in range(n_layers)]
  if stack is None:
    stack = np.stack if all(isinstance(x, np.ndarray) for x in jax.tree.leaves(per_layer)) else jnp.stack
  out = {k: v for k, v in params.items() if not k.startswith("layers_")}
  out["layers"] = jax.tree.map(lambda *xs: stack(xs), *per_layer)
  return out


def unstack_layers(params: Any, take: Any = None) -> Any:
  """The scanned layout -> per-layer params (`layers_i`), the layout of every file we write;
  `take(leaf, i)` reads layer i (default: leaf[i])."""
  if "layers" not in params:
    return params
  take = take or (lambda x, i: x[i])
  out = {k: v for k, v in params.items() if k != "layers"}
  n = jax.tree.leaves(params["layers"])[0].shape[0]
  for i in range(n):
    out[f"layers_{i}"] = jax.tree.map(lambda x: take(x, i), params["layers"])
  return out


def to_layout(cfg: ModelConfig, params: Any, stack: Any = None) -> Any:
  """params in the layout cfg.scan_layers asks for (either layout in; a scalar-head model's
  {'lm', 'score'} too); `stack` as in stack_layers."""
  if isinstance(params, dict) and "lm" in params and "score" in params:
    return {**params, "lm": to_layout(cfg, params["lm"], stack)}
  return stack_layers(params, cfg.n_layers, stack) if cfg.scan_layers else unstack_layers(params)
