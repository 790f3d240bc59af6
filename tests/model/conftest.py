"""Shared fixtures for the model tests: the committed HF parity fixtures and their generator."""
from __future__ import annotations

import functools
import importlib.util
import pathlib

import jax
import numpy as np
import pytest

from spct_jax.model import hf, transformer

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
SCRIPT = pathlib.Path(__file__).parents[2] / "scripts" / "make_model_fixtures.py"
FAMILIES = ("llama", "qwen2", "gemma2", "gemma3", "mistral")


@pytest.fixture(scope="session")
def hf_fixture():
  """name -> (cfg, params, io) for tests/model/fixtures/<name>; io has tokens, mask, logits."""
  loaded = {}

  def get(name: str):
    if name not in loaded:
      cfg, params = hf.load(str(FIXTURES / name))
      with np.load(FIXTURES / name / "io.npz") as io:
        loaded[name] = (cfg, params, dict(io))
    return loaded[name]

  return get


@pytest.fixture(scope="session")
def fixture_script():
  """scripts/make_model_fixtures.py as a module (builds the HF reference models)."""
  spec = importlib.util.spec_from_file_location("make_model_fixtures", SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@functools.partial(jax.jit, static_argnums=(0, 5))
def _forward(cfg, params, tokens, mask, positions, hidden):
  return transformer.Transformer(cfg).apply({"params": params}, tokens, pad_mask=mask, positions=positions,
                                            return_hidden=hidden)


@functools.partial(jax.jit, static_argnums=0)
def _cached(cfg, params, tokens, mask, cache):
  return transformer.Transformer(cfg).apply({"params": params}, tokens, pad_mask=mask, cache=cache)


@pytest.fixture(scope="session")
def forward():
  """Jitted full forward (one compile per config and shape, shared by all model tests):
  forward(cfg, params, tokens, mask=None, positions=None, hidden=False)."""
  return lambda cfg, params, tokens, mask=None, positions=None, hidden=False: _forward(
      cfg, params, tokens, mask, positions, hidden)


@pytest.fixture(scope="session")
def cached():
  """Jitted cached forward: cached(cfg, params, tokens, mask, cache) -> (logits, cache)."""
  return _cached
