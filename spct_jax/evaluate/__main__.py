"""python -m spct_jax.evaluate --config=configs/eval.py [--config.x=y ...] [--workdir=DIR]

Evaluates a GRM (`--config.init`: stage:<name> in the workdir, export:<dir> or hf:<dir>) on the
synthetic test split or a user's file (`--config.data.source=rb.jsonl`): greedy and voting@k
accuracy from one pool of samples per item, mode and meta-RM guided voting, Cohen's kappa, score
margins, the scalar-RM baseline; writes results.json, results.md, curve.png and samples.jsonl to
<workdir>/eval/<name>/ (spct_jax/evaluate/run.py). A `stage:<name>` missing from the workdir is
trained first, as the train CLI does.
"""
from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from spct_jax import mesh

_CONFIG = config_flags.DEFINE_config_file("config", None, "evaluation config file (configs/eval.py)")
_INIT_DISTRIBUTED = mesh.define_distributed_flags()  # several hosts: flags or JAX_* environment variables
_WORKDIR = flags.DEFINE_string("workdir", "runs/default", "the workdir of the stages it evaluates; results go to <workdir>/eval/")


def main(argv):
  del argv
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  from spct_jax.evaluate import run
  from spct_jax.train import chain
  _INIT_DISTRIBUTED()
  path = config_flags.get_config_filename(flags.FLAGS["config"])
  overrides = config_flags.get_override_values(flags.FLAGS["config"])
  run.run(chain.as_run(_CONFIG.value), _WORKDIR.value, path, overrides)


if __name__ == "__main__":
  from spct_jax import configs
  sys.argv = configs.resolve_argv(sys.argv)
  flags.mark_flag_as_required("config")
  app.run(main)
