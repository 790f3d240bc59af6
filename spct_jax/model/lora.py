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
import numpy as np

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


def fold(params: Any, alpha: float, rank: int, dtype: Any = None) -> Any:
  """Plain host params: every adapted weight w replaced by w + (alpha / rank) * a @ b (reshaped to
  w's shape), the adapters dropped. Computed in float32 numpy on the host, one layer at a time with a
  leading `layers` axis, and returned in `dtype` (None: w's dtype), so the update is not rounded
  to a bf16 base's precision and no device holds a whole stacked weight."""
  scale = np.float32(alpha / rank)
  out = {}
  for key, value in params.items():
    if isinstance(value, dict):
      out[key] = fold(value, alpha, rank, dtype)
    elif not is_adapter(key):
      a, b = params.get(f"{key}_lora_a"), params.get(f"{key}_lora_b")
      want = np.dtype(dtype) if dtype is not None else np.asarray(value).dtype
      if a is None:
        out[key] = np.asarray(value).astype(want, copy=False)
        continue
      w = np.array(value, dtype=np.float32)  # a copy, updated in place
      a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
      if a.ndim == 2:
        w += scale * (a @ b).reshape(w.shape)
      else:  # stacked layers: [L, c, r] @ [L, r, o], one layer at a time
        for i in range(a.shape[0]):
          w[i] += scale * (a[i] @ b[i]).reshape(w.shape[1:])
      out[key] = w.astype(want, copy=False)
  return out


def count(params: Any) -> int:
  """Number of adapter parameters in a tree."""
  return sum(x.size for x in jax.tree.leaves(split(params)[1]))
