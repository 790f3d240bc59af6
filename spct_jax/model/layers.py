"""Flax Linen building blocks: RMSNorm, RoPE, attention (GQA, q/k norms, soft-capping, KV cache), gated MLP.

Every parameter is created with logical axis names (`nn.with_logical_partitioning`); the names are
read back by `transformer.logical_axes` and mapped to mesh axes by spct_jax/train/mesh.py.
Parameters are stored in `cfg.param_dtype` and cast to the compute dtype `cfg.dtype` here.
Normalisation, softmax and RoPE run in float32.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from spct_jax.model.config import ModelConfig

Array = jax.Array
NEG_INF = float(np.finfo(np.float32).min)  # masked attention logits (finite: no NaN on empty rows)


def _param(module: nn.Module, name: str, init, shape: tuple[int, ...], names: tuple[str, ...],
           dtype) -> Array:
  return module.param(name, nn.with_logical_partitioning(init, names), shape, dtype)


def _fan_in(in_axis, out_axis):
  return nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal", in_axis=in_axis,
                                          out_axis=out_axis)


def softcap(x: Array, cap: float | None) -> Array:
  """cap * tanh(x / cap); identity when cap is None."""
  return x if cap is None else cap * jnp.tanh(x / cap)


class RMSNorm(nn.Module):
  """x / rms(x) * w (Llama) or * (1 + w) (Gemma). x: [..., D] (or [..., H] for Gemma 3's q/k norms,
  with axis "head_dim")."""
  cfg: ModelConfig
  axis: str = "embed"  # logical name of the normalised axis

  @nn.compact
  def __call__(self, x: Array) -> Array:
    cfg = self.cfg
    init = nn.initializers.zeros if cfg.is_gemma else nn.initializers.ones
    scale = _param(self, "scale", init, (x.shape[-1],), (self.axis,), cfg.jnp_param_dtype)
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + cfg.norm_eps)
    if cfg.is_gemma:
      return (y * (1.0 + scale.astype(jnp.float32))).astype(x.dtype)
    return y.astype(x.dtype) * scale.astype(x.dtype)


def rope_inv_freq(cfg: ModelConfig, local: bool = False) -> np.ndarray:
  """Inverse frequencies [H/2] float32 of a global layer, or of a local one (`local`: base
  cfg.rope_local_theta when set, never scaled). cfg.rope_scaling_factor scales the layers on
  cfg.rope_theta: "linear" divides every frequency by the factor, "llama3" by frequency band."""
  h = cfg.head_dim
  own_base = local and cfg.rope_local_theta is not None
  theta = cfg.rope_local_theta if own_base else cfg.rope_theta
  inv = (1.0 / (theta ** (np.arange(0, h, 2, dtype=np.float32) / np.float32(h)))).astype(np.float32)
  if cfg.rope_scaling_factor is None or own_base:
    return inv
  if cfg.rope_scaling_type == "linear":
    return (inv / np.float32(cfg.rope_scaling_factor)).astype(np.float32)
  factor, low, high = cfg.rope_scaling_factor, cfg.rope_low_freq_factor, cfg.rope_high_freq_factor
  old = cfg.rope_original_max_len
  wavelen = 2 * np.pi / inv
  scaled = np.where(wavelen > old / low, inv / factor, inv)
  smooth = (old / wavelen - low) / (high - low)
  smoothed = (1 - smooth) * scaled / factor + smooth * scaled
  medium = ~(wavelen < old / high) & ~(wavelen > old / low)
  return np.where(medium, smoothed, scaled).astype(np.float32)


def apply_rope(x: Array, positions: Array, inv_freq: np.ndarray) -> Array:
  """Rotates halves of x [B, T, N, H] by angles positions [B, T] * inv_freq [H/2] (HF layout)."""
  angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)  # [B, T, H/2]
  cos = jnp.cos(angles)[:, :, None, :]
  sin = jnp.sin(angles)[:, :, None, :]
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x.dtype)


def attention_mask(q_slot: Array, q_pos: Array, k_slot: Array, k_pos: Array, k_valid: Array,
                   window: int | None) -> Array:
  """Which keys each query attends to: [B, T, S] bool.

  q_slot, q_pos: [B, T] int32 (slot in the sequence/cache; token position).
  k_slot: [S] int32; k_pos: [B, S] int32; k_valid: [B, S] bool (False: padding or empty slot).
  Causal by slot; the sliding window by position distance (q_pos - k_pos < window), which equals
  the slot distance of HF Gemma-2 / Mistral for real tokens of left-padded contiguous rows.
  """
  mask = (k_slot[None, None, :] <= q_slot[:, :, None]) & k_valid[:, None, :]
  if window is not None:
    mask &= (q_pos[:, :, None] - k_pos[:, None, :]) < window
  return mask


def _scores(q: Array, keys: Array) -> Array:
  """Attention logits [P, K, J, T, G, S] float32 of queries q [P, J, T, K, G, H] (J rows that read
  the same keys: the samples of a shared prompt, or J = 1) and keys [P, K, H, S]. XLA:CPU has no
  bf16 x bf16 -> f32 dot for every layout, so on the CPU low-precision inputs are upcast first;
  elsewhere the matmul accumulates in f32 directly."""
  if q.dtype != jnp.float32 and jax.default_backend() == "cpu":
    q, keys = q.astype(jnp.float32), keys.astype(jnp.float32)
  return _qk(q, keys)


# The score product and its backward keep J, T and G as separate dims of one dot_general: merging
# them into one dim (an earlier version) was as fast on XLA:CPU but, with heads split over a
# tensor axis, cost the TPU compiler's plan of the 27B GRPO stage 1.9 GiB more temporaries per
# chip in the train step and 1.4 GiB in the reference pass (docs/scale.md).
def _qk_fwd(q: Array, keys: Array):
  qm = jnp.transpose(q, (0, 3, 1, 2, 4, 5))  # [P, K, J, T, G, H]
  out = jax.lax.dot_general(qm, keys, (((5,), (2,)), ((0, 1), (0, 1))), preferred_element_type=jnp.float32)
  return out, (qm, keys)


def _qk_bwd(res, d: Array):
  # the keys' gradient as q . d over (J, T, G), emitted in the keys' [P, K, H, S] layout (JAX's own
  # transpose of the product made the `medium` GRPO step about 4% slower on XLA:CPU)
  qm, keys = res
  dq = jax.lax.dot_general(d, keys, (((5,), (3,)), ((0, 1), (0, 1))))
  dk = jax.lax.dot_general(qm, d, (((2, 3, 4), (2, 3, 4)), ((0, 1), (0, 1))))
  dq = jnp.transpose(dq, (0, 2, 3, 1, 4, 5))
  return dq.astype(qm.dtype), dk.astype(keys.dtype)


_qk = jax.custom_vjp(lambda q, keys: _qk_fwd(q, keys)[0])
_qk.defvjp(_qk_fwd, _qk_bwd)


def _contract(x: Array, w: Array, n: int, out: Any = None) -> Array:
  """x [..., C1..Cn] . w [C1..Cn, O...] -> [..., O...]: a plain dot_general over x's last n dims
  and w's first n; out: the result's dtype, accumulated in it (None: the inputs')."""
  return jax.lax.dot_general(x, w, ((tuple(range(x.ndim - n, x.ndim)), tuple(range(n))), ((), ())),
                             preferred_element_type=out)


# `_contract` with a backward pass of two products emitted in the layouts of x and w: dx = dy . w
# over the O dims, dw = x . dy over the leading dims. JAX's own transpose of dot_general yields the
# same values, but XLA:CPU then adds layout copies of the activations' gradients and weights and runs
# the backward matmuls at under half the forward's rate; with this one they run at the same rate
# (docs/benchmarks.md, the train step).
_dot = jax.custom_vjp(_contract, nondiff_argnums=(2, 3))


def _dot_fwd(x: Array, w: Array, n: int, out: Any):
  return _contract(x, w, n, out), (x, w)


def _dot_bwd(n: int, out: Any, res, dy: Array):
  x, w = res
  lead, rest = x.ndim - n, w.ndim - n
  dx = jax.lax.dot_general(dy, w, ((tuple(range(lead, lead + rest)), tuple(range(n, w.ndim))), ((), ())))
  dw = jax.lax.dot_general(x, dy, ((tuple(range(lead)), tuple(range(lead))), ((), ())))
  return dx.astype(x.dtype), dw.astype(w.dtype)


_dot.defvjp(_dot_fwd, _dot_bwd)


def _project(x: Array, w: Array, n_contract: int, plain: bool = False) -> Array:
  """x [..., C1..Cn] times a weight [C1..Cn, O...] over the n contracted dims: [..., O...] in x's
  dtype, through `_dot`. plain: the bare dot_general (`_contract`) instead, the call that LoRA through qwix
  intercepts in Linen modules (it finds the weight by tracing the dot's rhs back to its param and
  adds its float32 adapters' term)."""
  return (_contract if plain else _dot)(x, w, n_contract, None).astype(x.dtype)


def head_dot(x: Array, w: Array) -> Array:
  """x [..., D] . w [D, V] -> [..., V] float32 (accumulated in float32; the LM head's logits), with
  `_dot`'s backward: the weight's gradient over the leading dims of x and dy, not a transposed
  copy of the [..., V] gradient."""
  return _dot(x, w, 1, jnp.float32)


class Attention(nn.Module):
  """Grouped-query self-attention with RoPE and an optional KV cache."""
  cfg: ModelConfig
  window: int | None  # sliding window of this layer; None = global

  @nn.compact
  def __call__(self, x: Array, positions: Array, mask: Array,
               cache: dict[str, Array] | None = None, index: Array | None = None,
               local: Array | None = None) -> tuple[Array, dict[str, Array] | None]:
    """x: [B, T, D]; positions: [B, T] int32; mask: [B, T, S] bool (S = T, or cache length).

    cache: {'k': [B, K, H, S], 'v': [B, K, S, H]} or None; index: [] int32, the slot where x's
      first token goes (rows advance in lockstep, so one scalar-index write updates every row).
      A decode cache with a shared prefix (`transformer.share_prefix`) also holds the prompt's keys
      and values once per prompt, 'prefix_k' [P, K, H, Tp] and 'prefix_v' [P, K, Tp, H], row
      r = p * (B // P) + j being sample j of prompt p; `mask` then covers [Tp prefix keys, S slots]
      and the scores of both parts go through one softmax (exact; the prefix is never copied per row).
    local: [] bool, whether this layer is local (its RoPE base) when the layer is one step of a
      scan over layers; None: from `window`.
    Returns (out [B, T, D], updated {'k', 'v'} or None).
    """
    cfg = self.cfg
    d, n, k, h = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    pdt, dt = cfg.jnp_param_dtype, cfg.jnp_dtype
    wq = _param(self, "q", _fan_in(0, (1, 2)), (d, n, h), ("embed", "heads", "head_dim"), pdt)
    wk = _param(self, "k", _fan_in(0, (1, 2)), (d, k, h), ("embed", "kv_heads", "head_dim"), pdt)
    wv = _param(self, "v", _fan_in(0, (1, 2)), (d, k, h), ("embed", "kv_heads", "head_dim"), pdt)
    wo = _param(self, "o", _fan_in((0, 1), 2), (n, h, d), ("heads", "head_dim", "embed"), pdt)
    x = x.astype(dt)
    lora = cfg.lora_rank > 0
    q, kk, vv = (_project(x, w.astype(dt), 1, lora) for w in (wq, wk, wv))  # [B, T, N|K, H]
    if cfg.qkv_bias:
      zeros = nn.initializers.zeros
      q += _param(self, "q_bias", zeros, (n, h), ("heads", "head_dim"), pdt).astype(dt)
      kk += _param(self, "k_bias", zeros, (k, h), ("kv_heads", "head_dim"), pdt).astype(dt)
      vv += _param(self, "v_bias", zeros, (k, h), ("kv_heads", "head_dim"), pdt).astype(dt)
    if cfg.qk_norm:
      q = RMSNorm(cfg, "head_dim", name="q_norm")(q)
      kk = RMSNorm(cfg, "head_dim", name="k_norm")(kk)
    if local is None:
      inv_freq = rope_inv_freq(cfg, local=self.window is not None)
    else:
      inv_freq = jnp.where(local, rope_inv_freq(cfg, local=True), rope_inv_freq(cfg, local=False))
    q = nn.with_logical_constraint(apply_rope(q, positions, inv_freq), ("batch", "length", "heads", "head_dim"))
    kk = nn.with_logical_constraint(apply_rope(kk, positions, inv_freq), ("batch", "length", "kv_heads", "head_dim"))
    vv = nn.with_logical_constraint(vv, ("batch", "length", "kv_heads", "head_dim"))

    # Keys as [B, K, H, S] and values as [B, K, S, H]: the layouts the score and value matmuls
    # read without transposing the whole cache at every decode step (in training, reading them as
    # projected, [B, S, K, H], measured no faster on CPU).
    kk = jnp.transpose(kk, (0, 2, 3, 1))
    vv = jnp.transpose(vv, (0, 2, 1, 3))
    prefix = None
    if cache is not None:
      if "prefix_k" in cache:
        prefix = cache["prefix_k"].astype(dt), cache["prefix_v"].astype(dt)
      cache = {"k": jax.lax.dynamic_update_slice_in_dim(cache["k"], kk.astype(cache["k"].dtype), index, axis=3),
               "v": jax.lax.dynamic_update_slice_in_dim(cache["v"], vv.astype(cache["v"].dtype), index, axis=2)}
      kk, vv = cache["k"].astype(dt), cache["v"].astype(dt)

    b, t = x.shape[:2]
    g = n // k
    q = q.reshape(b, t, k, g, h)
    tp = 0 if prefix is None else prefix[0].shape[-1]

    def masked(scores, m):
      return jnp.where(m, softcap(scores * cfg.query_scale, cfg.attn_softcap), NEG_INF)

    # Scores in the layout their matmul produces, [B, K, T, G, S], so that neither they nor their
    # gradients are transposed (only q and the [.., H] output are). A shared prompt's scores,
    # [P, K, J, T, G, Tp] (row b = p * J + j), go through the same softmax as the rows' own: one
    # max over both parts, their sums added (exact). The division comes after the value product
    # (the [.., H] output, not the [.., S] scores), as in flash attention.
    own = masked(_scores(q[:, None], kk)[:, :, 0], mask[:, None, :, None, tp:])
    top = own.max(-1)                                                   # [B, K, T, G]
    if prefix is not None:
      p = prefix[0].shape[0]
      to_rows = lambda y: jnp.swapaxes(y, 1, 2).reshape((b, k) + y.shape[3:])  # noqa: E731  [P, K, J, ..] -> [B, K, ..]
      qp = q.reshape(p, b // p, t, k, g, h)
      pre = masked(_scores(qp, prefix[0]),
                   mask[:, :, :tp].reshape(p, b // p, t, tp)[:, None, :, :, None, :])
      top = jnp.maximum(top, to_rows(pre.max(-1)))
    top = jax.lax.stop_gradient(top)
    probs = jnp.exp(own - top[..., None])
    denom = probs.sum(-1)
    out = jnp.einsum("bktgs,bksh->bktgh", probs.astype(dt), vv)
    if prefix is not None:
      top_p = jnp.swapaxes(top.reshape(p, b // p, k, t, g), 1, 2)
      probs = jnp.exp(pre - top_p[..., None])
      denom = denom + to_rows(probs.sum(-1))
      out = out + to_rows(jnp.einsum("pkjtgs,pksh->pkjtgh", probs.astype(dt), prefix[1]))
    out = out / denom[..., None].astype(dt)
    out = jnp.transpose(out, (0, 2, 1, 3, 4)).reshape(b, t, n, h)
    return _project(out, wo.astype(dt), 2, lora), cache


class MLP(nn.Module):
  """Gated MLP: down(act(gate(x)) * up(x)); act = SiLU (Llama) or tanh-GELU (Gemma). x: [B, T, D]."""
  cfg: ModelConfig

  @nn.compact
  def __call__(self, x: Array) -> Array:
    cfg = self.cfg
    d, f, pdt, dt = cfg.d_model, cfg.mlp_dim, cfg.jnp_param_dtype, cfg.jnp_dtype
    wg = _param(self, "gate", _fan_in(0, 1), (d, f), ("embed", "mlp"), pdt)
    wu = _param(self, "up", _fan_in(0, 1), (d, f), ("embed", "mlp"), pdt)
    wd = _param(self, "down", _fan_in(0, 1), (f, d), ("mlp", "embed"), pdt)
    x, lora = x.astype(dt), cfg.lora_rank > 0
    gate = _project(x, wg.astype(dt), 1, lora)
    act = jax.nn.gelu(gate, approximate=True) if cfg.is_gemma else jax.nn.silu(gate)
    hidden = nn.with_logical_constraint(act * _project(x, wu.astype(dt), 1, lora), ("batch", "length", "mlp"))
    return _project(hidden, wd.astype(dt), 1, lora)


class Block(nn.Module):
  """One decoder layer. Llama: x + attn(norm(x)); x + mlp(norm(x)). Gemma-2 adds post-norms."""
  cfg: ModelConfig
  window: int | None

  @nn.compact
  def __call__(self, x: Array, positions: Array, mask: Array, cache: Any = None,
               index: Array | None = None, local: Array | None = None,
               mask_global: Array | None = None) -> tuple[Array, Any]:
    """x: [B, T, D] -> ([B, T, D], updated layer cache or None).

    As one step of a scan over layers (`transformer`, cfg.scan_layers): `local` is the layer's
    scanned [] bool flag, `mask` the local layers' mask and `mask_global` the global ones', so one
    traced body serves every layer of a local/global pattern (mask and RoPE base chosen by the flag).
    """
    cfg = self.cfg
    if mask_global is not None:
      mask = jnp.where(local, mask, mask_global)
    h = RMSNorm(cfg, name="pre_attn_norm")(x)
    h, cache = Attention(cfg, self.window, name="attn")(h, positions, mask, cache, index, local)
    if cfg.is_gemma:
      h = RMSNorm(cfg, name="post_attn_norm")(h)
    x = x + h
    h = MLP(cfg, name="mlp")(RMSNorm(cfg, name="pre_mlp_norm")(x))
    if cfg.is_gemma:
      h = RMSNorm(cfg, name="post_mlp_norm")(h)
    return nn.with_logical_constraint(x + h, ("batch", "length", "embed")), cache

