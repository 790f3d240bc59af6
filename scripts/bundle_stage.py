import sys
"""Trains a stage with its config exactly as written (the chain before it too, when missing) and
bundles the result in the package, spct_jax/assets/bundled/<name>/ (bundled.name), so that a chain reaching this
stage with this exact config installs it instead of training (spct_jax/train/bundled.py).

    python scripts/bundle_stage.py --config=configs/warmup.py --workdir=runs/bundle

A workdir where the stage is already done is bundled as it is. `measured_on` (a note of the
machine and its load while it trained) goes into the bundled summary.
"""
from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "stage config file")
_WORKDIR = flags.DEFINE_string("workdir", "runs/bundle", "where the stage trains")
_MEASURED_ON = flags.DEFINE_string("measured_on", "", "the machine it trained on, for the summary")


def main(argv):
  del argv
  import os
  from spct_jax.model import bundled
  from spct_jax.model import load
  from spct_jax.train import chain
  path = config_flags.get_config_filename(flags.FLAGS["config"])
  cfg = _CONFIG.value
  train_cfg = cfg.copy_and_resolve_references()
  train_cfg.bundled = False
  summary = chain.run_chain(train_cfg, path, _WORKDIR.value)
  if _MEASURED_ON.value:
    summary["measured_on"] = _MEASURED_ON.value
  dest = os.path.join(os.path.dirname(bundled.__file__), "..", "assets", "bundled", bundled.name(cfg))
  bundled.save(cfg, load.stage_dir(_WORKDIR.value, cfg.stage), summary, os.path.normpath(dest))
  print(f"bundled {cfg.stage} -> {os.path.normpath(dest)} (fingerprint {bundled.fingerprint(cfg)[:12]})")


if __name__ == "__main__":
  from spct_jax import configs
  sys.argv = configs.resolve_argv(sys.argv)
  flags.mark_flag_as_required("config")
  app.run(main)
