"""LoRA through qwix (the library Tunix uses for it): low-rank adapters on every projection of
the decoder's attention and MLP, the base weights frozen.

With cfg.lora_rank > 0 the transformer's layer class is wrapped by `qwix.apply_lora_to_model`,
so every model built from that config has, beside each projection weight `w` matched by
cfg.lora_targets (a regex over module paths such as `layers_3/attn`), two adapter params
    w_lora_a [..., prod(contracted dims), r]   (he-uniform init; a leading `layers` axis when scanned)
    w_lora_b [..., r, prod(output dims)]       (zeros: a fresh adapter leaves the model unchanged)
and computes x.w + (alpha / r) * (x.a).b. Training keeps the adapters as the trainable params and
the base as frozen params (train/state.py); `fold` merges adapters into the base weights
(w + (alpha / r) * a @ b, reshaped to w) for export, and `split` / `merge` separate and join the
two parts of a tree.
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

SUFFIXES = ("_lora_a", "_lora_b")


def is_adapter(name: str) -> bool:
  return name.endswith(SUFFIXES)


@functools.lru_cache(maxsize=None)
def wrap_class(cfg) -> type:
  """The decoder layer class (layers.Block) with qwix's LoRA interception of its projections, for
  cfg.lora_rank / lora_alpha / lora_targets (one class per config)."""
  from spct_jax import extras
  from spct_jax.model import layers
  qwix = extras.require("qwix", "lora", "LoRA (model.lora_rank > 0)")
  provider = qwix.LoraProvider([qwix.LoraRule(module_path=cfg.lora_targets, rank=cfg.lora_rank,
                                              alpha=cfg.lora_alpha)])
  return type(qwix.apply_lora_to_model(layers.Block(cfg, None), provider))


def split(params: Any) -> tuple[Any, Any]:
  """(base, adapters): the same tree cut in two by leaf name (dicts; empty subtrees dropped)."""
  base, adapters = {}, {}
  for key, value in params.items():
    if isinstance(value, dict):
      b, a = split(value)
      if b:
        base[key] = b
      if a:
        adapters[key] = a
    elif is_adapter(key):
      adapters[key] = value
    else:
      base[key] = value
  return base, adapters


def merge(base: Any, adapters: Any) -> Any:
  """The inverse of `split`: one tree with the leaves of both (any two dict trees with disjoint
  leaves)."""
  out = dict(base)
  for key, value in adapters.items():
    out[key] = merge(out.get(key, {}), value) if isinstance(value, dict) else value
  return out


def fold(params: Any, alpha: float, rank: int) -> Any:
  """Plain params: every adapted weight w replaced by w + (alpha / rank) * a @ b (reshaped to w's
  shape, in w's dtype), the adapters dropped. With a leading `layers` axis the product is per layer."""
  scale = alpha / rank
  out = {}
  for key, value in params.items():
    if isinstance(value, dict):
      out[key] = fold(value, alpha, rank)
    elif not is_adapter(key):
      a, b = params.get(f"{key}_lora_a"), params.get(f"{key}_lora_b")
      if a is None:
        out[key] = value
      else:
        delta = jnp.einsum("...cr,...ro->...co", a.astype(jnp.float32), b.astype(jnp.float32))
        out[key] = (value.astype(jnp.float32) + scale * delta.reshape(value.shape)).astype(value.dtype)
  return out


def count(params: Any) -> int:
  """Number of adapter parameters in a tree."""
  return sum(x.size for x in jax.tree.leaves(split(params)[1]))
