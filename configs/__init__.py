"""The stage configs, one file per stage (`get_config()` of each; their docstrings say what they run
and what it costs). Installed with the package as `spct_jax.configs`, so a config is named by its
stem from anywhere: `--config=grpo` is this folder's grpo.py; a path to a file of your own still
works (`--config=/path/to/my_grpo.py`).
"""
from __future__ import annotations

import importlib.resources
import os


def folder() -> str:
  """The folder of the shipped configs (this package's, in a checkout or an installed wheel)."""
  return str(importlib.resources.files(__name__))


def names() -> list[str]:
  return sorted(f[:-3] for f in os.listdir(folder()) if f.endswith(".py") and not f.startswith("_"))


def path(name_or_path: str) -> str:
  """A config file: an existing path as it is, else the shipped config of that name (`grpo`,
  `grpo.py`); an error listing the shipped names otherwise."""
  if os.path.exists(name_or_path):
    return name_or_path
  stem = os.path.basename(name_or_path)[:-3] if name_or_path.endswith(".py") else name_or_path
  if os.sep not in name_or_path.rstrip(os.sep) or name_or_path.startswith("configs" + os.sep):
    candidate = os.path.join(folder(), f"{stem}.py")
    if os.path.exists(candidate):
      return candidate
  raise FileNotFoundError(f"--config={name_or_path}: no such file, and no shipped config of that name "
                          f"(shipped: {', '.join(names())})")


def resolve_argv(argv: list[str]) -> list[str]:
  """argv with `--config=<name or path>` (config_flags' override suffixes kept) made a file path,
  before absl parses it."""
  out = []
  for a in argv:
    if a.startswith("--config=") and a != "--config=":
      value = a[len("--config="):]
      base, sep, arg = value.partition(":")  # config_flags: --config=file.py:arg
      out.append(f"--config={path(base)}{sep}{arg}")
    else:
      out.append(a)
  return out
