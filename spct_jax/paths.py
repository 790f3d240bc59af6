"""Paths that may live on a cluster's storage: every workdir, stage folder and output file goes
through `etils.epath`, so a GCS bucket path (`gs://bucket/run`) works wherever a local one does."""
from __future__ import annotations

import os

from etils import epath


def absolute(path: str | os.PathLike) -> epath.Path:
  """A local path made absolute; a URI (`gs://...`) as it is."""
  text = os.fspath(path)
  return epath.Path(text if "://" in text else os.path.abspath(text))
