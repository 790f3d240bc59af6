"""Orbax checkpoints of a train state: save, resume, survive preemption.

Layout of a stage's checkpoint directory (one Orbax step folder per save):
  <dir>/<step>/state   the TrainState (params, optimizer state, step, rng), sharded as in memory
  <dir>/<step>/meta    JSON: the data iterator position and anything the stage needs to resume

Saves are asynchronous (training continues while the files are written); the last `keep_last`
steps and the `keep_best` best by `best_metric` are kept. Orbax finalises a step atomically, so
a half-written save is never listed; a step whose files are damaged fails to restore and
`restore_latest` falls back to the one before, saying so. A step saved with the other layer layout
(model.scan_layers changed between runs) is read in its own layout and converted, saying so.
"""
from __future__ import annotations

import contextlib
import signal
from typing import Any

from absl import logging
import jax
import orbax.checkpoint as ocp

from spct_jax import paths
from spct_jax.model import transformer
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp


def manager(directory: str, *, keep_last: int = 3, keep_best: int = 1,
            best_metric: str = "val_accuracy", async_save: bool = True) -> ocp.CheckpointManager:
  policies = [pp.LatestN(n=keep_last)]
  if keep_best:
    policies.append(pp.BestN(get_metric_fn=lambda m: m[best_metric], n=keep_best,
                             keep_checkpoints_without_metrics=False))
  options = ocp.CheckpointManagerOptions(
      preservation_policy=pp.AnyPreservationPolicy(policies),
      enable_async_checkpointing=async_save, create=True)
  return ocp.CheckpointManager(paths.absolute(directory), options=options)


def save(mngr: ocp.CheckpointManager, step: int, state: Any, meta: dict | None = None,
         metrics: dict | None = None, force: bool = False) -> bool:
  """Starts an (async) save of `state` and JSON `meta` at `step`; returns whether it saved."""
  args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta or {}))
  return mngr.save(int(step), args=args, metrics=metrics, force=force)


def _scanned(tree: Any) -> bool | None:
  """True when the tree's layers are stacked (a `layers` key), False when they are per layer
  (`layers_0`), None when it holds no layers."""
  keys = {str(getattr(k, "key", "")) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0] for k in path}
  return True if "layers" in keys else False if "layers_0" in keys else None


def _has_layers(x: Any) -> bool:
  return isinstance(x, dict) and ("layers" in x or "layers_0" in x)


def _relayout(tree: Any, scanned: bool, stack: Any = None, take: Any = None) -> Any:
  """Every layer stack in `tree` (params, moments, frozen params) in the scanned or per-layer layout."""
  def one(x):
    if not _has_layers(x):
      return x
    if scanned:
      return transformer.stack_layers(x, sum(k.startswith("layers_") for k in x), stack)
    return transformer.unstack_layers(x, take)
  return jax.tree.map(one, tree, is_leaf=_has_layers)


def _with_spec(x: jax.ShapeDtypeStruct, shape: tuple, spec: Any) -> jax.ShapeDtypeStruct:
  sharding = x.sharding
  if isinstance(sharding, jax.sharding.NamedSharding):
    sharding = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec(*spec))
  return jax.ShapeDtypeStruct(shape, x.dtype, sharding=sharding)


def _abstract_relayout(abstract: Any, scanned: bool) -> Any:
  """`_relayout` of ShapeDtypeStructs: a stacked leaf is sharded like its layers, with the layer
  axis whole."""
  spec = lambda x: tuple(getattr(x.sharding, "spec", ()))  # noqa: E731
  stack = lambda xs: _with_spec(xs[0], (len(xs), *xs[0].shape), (None, *spec(xs[0])))  # noqa: E731
  take = lambda x, i: _with_spec(x, x.shape[1:], spec(x)[1:])  # noqa: E731
  return _relayout(abstract, scanned, stack, take)


def _saved_tree(mngr: ocp.CheckpointManager, step: int) -> Any:
  """The saved state's tree of array metadata, read from the step's files (a manager that has not
  saved or restored yet knows no handler for the item, so its item_metadata is empty)."""
  with ocp.StandardCheckpointer() as ckptr:
    meta = ckptr.metadata(paths.absolute(mngr.directory) / str(int(step)) / "state")
  return getattr(getattr(meta, "item_metadata", meta), "tree", meta)


def restore(mngr: ocp.CheckpointManager, step: int, abstract_state: Any) -> tuple[Any, dict]:
  """Restores step `step` into the structure, dtypes and shardings of `abstract_state`; a step saved
  in the other layer layout is read as saved and converted."""
  want = _scanned(abstract_state)
  saved = _scanned(_saved_tree(mngr, step)) if want is not None else None
  target = abstract_state
  if saved is not None and saved != want:
    layout = {True: "scanned layers (model.scan_layers=True)", False: "per-layer (model.scan_layers=False)"}
    if jax.process_index() == 0:
      print(f"[checkpoint] step {step} in {mngr.directory} holds {layout[saved]}; converting it to this "
            f"run's {layout[want]}", flush=True)
    target = _abstract_relayout(abstract_state, saved)
  args = ocp.args.Composite(state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore())
  out = mngr.restore(int(step), args=args)
  state = out.state
  if target is not abstract_state:
    shardings = jax.tree.map(lambda x: x.sharding, abstract_state)
    state = jax.jit(lambda s: _relayout(s, want), out_shardings=shardings)(state)
  return state, dict(out.meta or {})


def restore_latest(mngr: ocp.CheckpointManager, abstract_state: Any) -> tuple[Any, dict, int] | None:
  """The newest step that restores cleanly, as (state, meta, step); None when there is none.

  A damaged step is reported and skipped: training resumes from the one before.
  """
  for step in sorted(mngr.all_steps(), reverse=True):
    try:
      state, meta = restore(mngr, step, abstract_state)
    except Exception as e:  # noqa: BLE001 - any failure to read a step means "use an older one"
      logging.warning("checkpoint %s/%d is unreadable (%s: %s); trying the previous one",
                      mngr.directory, step, type(e).__name__, str(e).splitlines()[0][:200])
      print(f"[checkpoint] step {step} in {mngr.directory} is unreadable "
            f"({type(e).__name__}); falling back to the previous checkpoint", flush=True)
      continue
    return state, meta, step
  return None


def abstract_like(tree: Any) -> Any:
  """ShapeDtypeStructs (with shardings) of a pytree of arrays, for `restore`."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), tree)


# ---- Preemption: SIGTERM sets a flag; the loop saves and exits at the next step boundary.

class Preemption:
  """Catches SIGTERM (what TPU/GPU schedulers send before preempting) while active.

  with Preemption() as pre:
    for step in ...:
      ...
      if pre.requested: save(...); break

  enabled=False installs no handler (several hosts: JAX's preemption service owns SIGTERM and
  Orbax's sync point decides the step, see train/loop.py).
  """

  def __init__(self, enabled: bool = True):
    self.enabled = enabled
    self.requested = False
    self._previous = None

  def _handler(self, signum, frame):
    del frame
    self.requested = True
    print(f"[preemption] signal {signum} received: saving at the end of this step", flush=True)

  def __enter__(self) -> "Preemption":
    if self.enabled:
      with contextlib.suppress(ValueError):  # not the main thread: no handler, never requested
        self._previous = signal.signal(signal.SIGTERM, self._handler)
    return self

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
    return False
