"""The one jitted update step that every stage (SFT, RFT, GRPO, meta-RM) builds on.

A stage supplies a loss written as a (sum, count) pair over one micro-batch:
    loss_fn(params, micro_batch, rng) -> (loss_sum [], count [], aux: dict[str, []] of sums)
The step splits the global batch into `micro_batches` equal micro-batches, accumulates the
gradients of the sums and the counts with `lax.scan`, and divides once by the global count.
That makes accumulation exact: the result equals the full-batch gradient of sum / count, not a
mean of per-micro-batch means. The step is one `jax.jit` with explicit in/out shardings and the
state donated.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from spct_jax.model import lora
from spct_jax.train import state as state_lib

LossFn = Callable[[Any, Any, jax.Array], tuple[jax.Array, jax.Array, dict]]


def split_micro(batch: Any, micro_batches: int) -> Any:
  """[B, ...] leaves -> [M, B/M, ...]; micro-batch m holds rows m, m+M, m+2M, ...

  Strided so that, with rows sharded in blocks over the data axes, every device keeps a share
  of every micro-batch.
  """
  def one(x):
    b = x.shape[0]
    if b % micro_batches:
      raise ValueError(f"batch of {b} rows does not split into micro_batches={micro_batches}")
    x = x.reshape((b // micro_batches, micro_batches) + x.shape[1:])
    return jnp.swapaxes(x, 0, 1)
  return jax.tree.map(one, batch)


def accumulate(loss_fn: LossFn, params: Any, batch: Any, rng: jax.Array, micro_batches: int = 1,
               frozen: Any = None):
  """Gradient of sum(loss)/sum(count) over the whole batch, computed micro-batch by micro-batch.

  frozen: params the loss also reads (joined with `params`, lora.merge) but that get no gradient.
  Returns (grads, loss, count, aux_sums) with grads and loss already divided by the global count.
  """
  if frozen is not None:
    inner = loss_fn
    loss_fn = lambda p, mb, r: inner(lora.merge(frozen, p), mb, r)  # noqa: E731
  grad_fn = jax.grad(lambda p, mb, r: _with_aux(loss_fn, p, mb, r), has_aux=True)
  if micro_batches == 1:
    g, (s, c, aux) = grad_fn(params, batch, rng)
  else:
    micro = split_micro(batch, micro_batches)
    rngs = jax.random.split(rng, micro_batches)
    _, (_, _, aux0) = jax.eval_shape(lambda: grad_fn(params, jax.tree.map(lambda x: x[0], micro), rngs[0]))
    zeros = (jax.tree.map(jnp.zeros_like, params), jnp.zeros(()), jnp.zeros(()),
             jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), aux0))

    def body(carry, xs):
      mb, r = xs
      g_i, (s_i, c_i, aux_i) = grad_fn(params, mb, r)
      g, s, c, aux = carry
      return (jax.tree.map(jnp.add, g, g_i), s + s_i, c + c_i, jax.tree.map(jnp.add, aux, aux_i)), None

    (g, s, c, aux), _ = jax.lax.scan(body, zeros, (micro, rngs))
  denom = jnp.maximum(c, 1.0)
  grads = jax.tree.map(lambda x: x / denom, g)
  return grads, s / denom, c, aux


def _with_aux(loss_fn, params, mb, rng):
  s, c, aux = loss_fn(params, mb, rng)
  return s, (s, c.astype(jnp.float32), aux)


def make_step(loss_fn: LossFn, tx: optax.GradientTransformation, *, micro_batches: int = 1,
              state_shardings: Any = None, batch_shardings: Any = None,
              schedule: optax.Schedule | None = None) -> Callable:
  """jit(step)(state, batch) -> (state, metrics); state is donated.

  metrics: loss (sum/count), count, grad_norm (before clipping), lr, and every aux sum
  divided by count under its own name (`aux/<name>` sums are returned raw as `<name>_sum`).
  """
  def step(state: state_lib.TrainState, batch: Any):
    rng, step_rng = jax.random.split(state.rng)
    grads, loss, count, aux = accumulate(loss_fn, state.params, batch, step_rng, micro_batches, state.frozen)
    new_state = state_lib.apply_gradients(state, grads, tx).replace(rng=rng)
    metrics = {"loss": loss, "count": count, "grad_norm": optax.tree.norm(grads)}
    if schedule is not None:
      metrics["lr"] = schedule(state.step)
    metrics.update({f"{k}_sum": v for k, v in aux.items()})
    return new_state, metrics

  if state_shardings is None:
    return jax.jit(step, donate_argnums=0)
  replicated = jax.sharding.NamedSharding(jax.tree.leaves(state_shardings)[0].mesh, jax.sharding.PartitionSpec())
  return jax.jit(step, in_shardings=(state_shardings, batch_shardings),
                 out_shardings=(state_shardings, replicated), donate_argnums=0)
