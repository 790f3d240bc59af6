"""A scalar reward head on the transformer backbone: the meta RM and the Bradley-Terry baseline.

    params = reward.init_params(cfg, rng)                 # {"lm": backbone, "score": [D, 1]}
    params = reward.from_lm(grm_params, cfg, rng)         # backbone = an existing GRM's params
    r = reward.scores(cfg, params, tokens, pad_mask)      # [B] float32

Parameter tree (a plain dict):
    lm     the transformer params of `cfg` (transformer.init_params) without `lm_head`: a reward
           model has no LM head (nor has a Hugging Face `*ForSequenceClassification` checkpoint).
           For tied configs (every Gemma-2 preset) this is exactly transformer.init_params's tree.
    score  [D, 1] in cfg.param_dtype                       ('embed', None)

The score of a row is `hidden[last] @ score`, where `hidden` is the backbone's output after the
final norm (what `Transformer(..., return_hidden=True)` returns; Gemma-2's final logit
soft-capping applies to the LM logits only, never to this head) and `last` is the rightmost
position where pad_mask is True, so left- and right-padded rows score alike. That is Hugging
Face's `GenericForSequenceClassification` (Gemma2/Llama/Mistral/Qwen2 ForSequenceClassification):
HF takes `argmax(arange(T) * (input_ids != pad_token_id))`, we take the same argmax over
pad_mask; they agree whenever pad_mask == (tokens != pad_token_id), i.e. the pad id is never a
real token. A row without real tokens scores position 0 in both (a meaningless value: weight it 0).

Head init (`init_head`): normal with std 1/D. The final norm makes the hidden state's RMS about 1,
so initial scores are about D**-0.5 in size: the initial BCE / Bradley-Terry losses are close to
log 2 (no arbitrary initial preference), while the backbone still receives gradients from step 0
(a zero head would block them until the head has moved).
"""
from __future__ import annotations

import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp

from spct_jax.model import config as config_lib
from spct_jax.model import transformer
from spct_jax.model.config import ModelConfig

Array = jax.Array


def _backbone_cfg(cfg: ModelConfig) -> ModelConfig:
  """`cfg` with the output projection tied: the same backbone params, and no `lm_head` param."""
  return cfg if cfg.tie_embeddings else config_lib.replace(cfg, tie_embeddings=True)


def _drop_lm_head(tree: Any) -> dict:
  return {k: v for k, v in tree.items() if k != "lm_head"}


def _as_cfg(model_or_cfg: Any) -> ModelConfig:
  cfg = getattr(model_or_cfg, "cfg", model_or_cfg)
  if not isinstance(cfg, ModelConfig):
    raise TypeError(f"expected a ModelConfig or a Transformer, got {type(model_or_cfg).__name__}")
  return cfg


def init_head(cfg: ModelConfig, rng: Array) -> Array:
  """The score projection [D, 1] in cfg.param_dtype, normal with std 1/D (module docstring)."""
  w = jax.random.normal(rng, (cfg.d_model, 1), jnp.float32) / cfg.d_model
  return w.astype(cfg.jnp_param_dtype)


def init_params(cfg: ModelConfig, rng: Array) -> dict[str, Any]:
  """A fresh reward model: {"lm": backbone params, "score": [D, 1]} (plain arrays).

  Traceable, so a large model can be initialised sharded:
  `jax.jit(functools.partial(reward.init_params, cfg), out_shardings=shardings)(rng)`.
  """
  lm_rng, head_rng = jax.random.split(rng)
  return {"lm": transformer.init_params(_backbone_cfg(cfg), lm_rng), "score": init_head(cfg, head_rng)}


def from_lm(lm_params: Any, cfg: ModelConfig, rng: Array) -> dict[str, Any]:
  """A reward model whose backbone is an existing LM's (e.g. the trained GRM's) params and whose
  score head is fresh. The LM's `lm_head` (untied configs) is dropped; the arrays are shared, not
  copied. Raises (naming the param) when lm_params do not fit cfg."""
  lm = _drop_lm_head(lm_params)
  _check_tree(lm, abstract_params(cfg)["lm"], "lm_params")
  return {"lm": lm, "score": init_head(cfg, rng)}


def logical_axes(cfg: ModelConfig) -> dict[str, Any]:
  """Same structure as the params; each leaf a tuple of logical axis names (spct_jax/train/mesh.py)."""
  return {"lm": transformer.logical_axes(_backbone_cfg(cfg)), "score": ("embed", None)}


def abstract_params(cfg: ModelConfig) -> dict[str, Any]:
  """Same structure as the params; each leaf a jax.ShapeDtypeStruct (no memory spent)."""
  return {"lm": transformer.abstract_params(_backbone_cfg(cfg)),
          "score": jax.ShapeDtypeStruct((cfg.d_model, 1), cfg.jnp_param_dtype)}


def _flat(tree: Any) -> dict[str, Any]:
  return {"/".join(str(getattr(k, "key", k)) for k in kp): leaf
          for kp, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _check_tree(tree: Any, expected: Any, what: str) -> None:
  """Raises ValueError naming the first missing, unexpected or wrongly shaped leaf."""
  got, want = _flat(tree), _flat(expected)
  missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
  for kind, names in (("missing", missing), ("unexpected", extra)):
    if names:
      more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
      raise ValueError(f"{what}: {kind} param {names[0]!r}{more}")
  for name, w in want.items():
    if tuple(got[name].shape) != tuple(w.shape):
      raise ValueError(f"{what}: {name} has shape {tuple(got[name].shape)}, expected {tuple(w.shape)}")


def last_real_index(pad_mask: Array) -> Array:
  """pad_mask: [B, T] bool -> [B] int32, the rightmost position where pad_mask is True (0 when a
  row has none). Exactly HF's `argmax(arange(T) * non_pad_mask)`."""
  t = pad_mask.shape[1]
  return jnp.argmax(jnp.arange(t, dtype=jnp.int32) * pad_mask.astype(jnp.int32), axis=1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnums=0)
def _scores(cfg: ModelConfig, params: dict[str, Any], tokens: Array, pad_mask: Array) -> Array:
  # Under jit the unused LM logits ([B, T, V]) are dead code and never computed.
  _, hidden = transformer.Transformer(_backbone_cfg(cfg)).apply(
      {"params": params["lm"]}, tokens, pad_mask=pad_mask, return_hidden=True)  # [B, T, D] f32
  last = last_real_index(pad_mask)
  h = jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]  # [B, D]
  return (h @ params["score"].astype(jnp.float32))[:, 0]


def scores(model_or_cfg: Any, params: dict[str, Any], tokens: Array, pad_mask: Array | None = None) -> Array:
  """The scalar reward of each row: [B] float32.

  model_or_cfg: a ModelConfig or a Transformer (its cfg is used);
  params: {"lm": ..., "score": [D, 1]} (an `lm_head` in params["lm"] is ignored);
  tokens: [B, T] int32; pad_mask: [B, T] bool (True = real token; None = all real). Padding may be
    on either side; the score is read at the last real token of each row.
  """
  cfg = _as_cfg(model_or_cfg)
  for key in ("lm", "score"):
    if not isinstance(params, Mapping) or key not in params:
      raise KeyError(f"reward params: missing key {key!r} (expected {{'lm': ..., 'score': [D, 1]}})")
  if tuple(params["score"].shape) != (cfg.d_model, 1):
    raise ValueError(f"reward params: score has shape {tuple(params['score'].shape)}, "
                     f"expected {(cfg.d_model, 1)}")
  if tokens.ndim != 2:
    raise ValueError(f"tokens: expected [B, T], got shape {tuple(tokens.shape)}")
  pad_mask = jnp.ones(tokens.shape, bool) if pad_mask is None else jnp.asarray(pad_mask).astype(bool)
  if pad_mask.shape != tokens.shape:
    raise ValueError(f"pad_mask has shape {tuple(pad_mask.shape)}, tokens {tuple(tokens.shape)}")
  concrete = transformer._concrete(tokens)  # the range check Transformer does outside jit
  if concrete is not None and concrete.size and (concrete.min() < 0 or concrete.max() >= cfg.vocab_size):
    raise ValueError(f"tokens out of range [0, {cfg.vocab_size}): min {concrete.min()}, max {concrete.max()}")
  return _scores(cfg, params, tokens, pad_mask)
