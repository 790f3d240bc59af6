"""Train state and optimizer: AdamW with linear warm-up + cosine decay and global-norm clipping.

Master weights and optimizer moments are kept in float32 whatever the compute dtype; the model
casts params to its compute dtype (bf16 on TPU/GPU) inside the forward pass.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from spct_jax.model import lora


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  lr: float = 1e-3                # peak learning rate
  warmup_steps: int = 0           # linear warm-up from 0 to lr
  total_steps: int = 1000         # cosine decay ends here
  end_lr_frac: float = 0.1        # final lr = lr * end_lr_frac
  b1: float = 0.9
  b2: float = 0.95
  eps: float = 1e-8
  weight_decay: float = 0.0       # decoupled; not applied to norm scales, biases or 1-D params
  clip_norm: float = 1.0          # global-norm gradient clipping; 0 disables

  @classmethod
  def from_dict(cls, d) -> "OptimConfig":
    d = dict(d)
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
      raise KeyError(f"config.opt has unknown keys {sorted(unknown)}; known: "
                     f"{[f.name for f in dataclasses.fields(cls)]}")
    return cls(**d)


@flax.struct.dataclass
class TrainState:
  step: jax.Array       # [] int32, number of updates applied
  params: Any           # float32 master weights of what is trained
  opt_state: Any        # optax state (float32 moments)
  rng: jax.Array        # PRNG key for anything stochastic inside the step
  frozen: Any = None    # params the model reads but nothing updates (LoRA's base weights), in
                        # the compute dtype; None when every param is trained


def model_params(state: TrainState) -> Any:
  """The model's whole param tree: the trained params joined with the frozen ones."""
  return state.params if state.frozen is None else lora.merge(state.frozen, state.params)


def schedule(cfg: OptimConfig) -> optax.Schedule:
  decay = max(cfg.total_steps, cfg.warmup_steps + 1)
  return optax.warmup_cosine_decay_schedule(0.0 if cfg.warmup_steps else cfg.lr, cfg.lr,
                                            cfg.warmup_steps, decay, cfg.lr * cfg.end_lr_frac)


def decay_mask(params: Any) -> Any:
  """True for the weights that get weight decay: matrices, not norm scales or biases."""
  def one(path, p):
    name = str(getattr(path[-1], "key", path[-1]))
    return p.ndim > 1 and not name.endswith("bias") and name != "scale"
  return jax.tree_util.tree_map_with_path(one, params)


def make_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
  adamw = optax.adamw(schedule(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                      weight_decay=cfg.weight_decay,
                      mask=decay_mask)
  if cfg.clip_norm > 0:
    return optax.chain(optax.clip_by_global_norm(cfg.clip_norm), adamw)
  return adamw


def create(params: Any, tx: optax.GradientTransformation, rng: jax.Array, frozen: Any = None,
           frozen_dtype: Any = None) -> TrainState:
  """A fresh state at step 0. Params are cast to float32 master weights; `frozen` params (read by
  the loss, never updated, no moments) to `frozen_dtype` (None: kept as they are).

  The state owns these buffers (a float32 input is not copied) and the jitted steps donate them:
  keep a `.copy()` of anything you still need, such as a frozen reference policy.
  """
  params = jax.tree.map(lambda p: p.astype(jnp.float32), params)
  if frozen is not None and frozen_dtype is not None:
    frozen = jax.tree.map(lambda p: p.astype(frozen_dtype), frozen)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=rng,
                    frozen=frozen)


def logical_axes(tx: optax.GradientTransformation, params_logical: Any, abstract_params: Any,
                 frozen_logical: Any = None) -> TrainState:
  """The logical axis names of every leaf of a TrainState.

  Moments shaped like params get the params' names; everything else (counts, step, rng) is
  replicated, written as an empty tuple; frozen params get `frozen_logical`.
  """
  abstract_opt = jax.eval_shape(tx.init, abstract_params)
  opt_names = optax.tree_map_params(
      tx, lambda _, names: names, abstract_opt, params_logical,
      transform_non_params=lambda x: (),
      is_leaf=lambda x: type(x) is tuple and all(isinstance(n, (str, type(None))) for n in x))
  return TrainState(step=(), params=params_logical, opt_state=opt_names, rng=(), frozen=frozen_logical)


def apply_gradients(state: TrainState, grads: Any, tx: optax.GradientTransformation) -> TrainState:
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                       opt_state=opt_state)
