"""Optional dependencies: what a feature needs beyond the core install, and the extra that brings it.

    pq = extras.require("pyarrow.parquet", "parquet", "reading Parquet files")
"""
from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str, feature: str) -> ModuleType:
  """`module`, or an ImportError that names the feature and the extra to install."""
  try:
    return importlib.import_module(module)
  except ImportError as e:
    raise ImportError(f"{feature} needs {module.split('.')[0]}, an optional dependency: "
                      f"pip install 'spct_jax[{extra}]' ({e})") from e


def available(module: str) -> bool:
  try:
    importlib.import_module(module)
    return True
  except ImportError:
    return False
