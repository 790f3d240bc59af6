"""python -m spct_jax.train --config=configs/<stage>.py [--config.x=y ...] [--workdir=DIR]

Runs one stage (warmup, rft, grpo, ...) into <workdir>/<stage>/. A stage whose config says
`init = "stage:<name>"` starts from that stage's output in the same workdir; when it is not there
yet, that stage's config (configs/<name>.py beside this one) is run first, with this run's
overrides of the shared sections (model, tokenizer, mesh, seed, smoke). So on a fresh machine
`python -m spct_jax.train --config=configs/grpo.py` runs warm-up -> RFT -> GRPO.
Rerunning the same command resumes from the last checkpoint of the unfinished stage.
"""
from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from spct_jax import mesh

_CONFIG = config_flags.DEFINE_config_file("config", None, "stage config file (configs/*.py)")
_INIT_DISTRIBUTED = mesh.define_distributed_flags()  # several hosts: flags or JAX_* environment variables
_WORKDIR = flags.DEFINE_string("workdir", "runs/default", "where stages write checkpoints, metrics and exports")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "load the configs and print the stages that would run, then exit")


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax and absl are chatty at INFO; -v 0 restores it
  from spct_jax.train import chain, loop
  _INIT_DISTRIBUTED()  # several hosts (TPU pod slices, SLURM, explicit): one process each
  path = config_flags.get_config_filename(flags.FLAGS["config"])
  overrides = config_flags.get_override_values(flags.FLAGS["config"])
  if _DRY_RUN.value:
    from spct_jax.model import bundled
    for stage_cfg, done in chain.plan_chain(_CONFIG.value, path, _WORKDIR.value, overrides):
      if done:
        what = "(done: skipped)"
      elif bundled.find(stage_cfg):
        what = "(would install the bundled result)"
      else:
        what = f"(would run: {stage_cfg.get('cost', 'cost not stated')})"
      model = stage_cfg.model.preset if stage_cfg.init == "scratch" else "(the init's)"  # load.load
      print(f"[dry run] {stage_cfg.stage:<8s} init={stage_cfg.init:<16s} model={model:<12s} "
            f"steps={stage_cfg.train.steps:<5d} batch={stage_cfg.train.batch_size:<4d} {what}")
    return
  try:
    chain.run_chain(_CONFIG.value, path, _WORKDIR.value, overrides)
  except loop.Preempted as e:
    print(f"[train] {e}. Rerun the same command to resume (exit code {loop.EXIT_PREEMPTED}).", flush=True)
    sys.exit(loop.EXIT_PREEMPTED)


if __name__ == "__main__":
  from spct_jax import configs
  sys.argv = configs.resolve_argv(sys.argv)
  flags.mark_flag_as_required("config")
  app.run(main)
