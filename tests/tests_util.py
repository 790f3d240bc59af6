"""Helpers shared by tests."""
import jax
import numpy as np


def assert_params_close(ref, got, rtol: float = 1e-5) -> None:
  """||got - ref|| <= rtol * ||ref|| over all leaves together (the relative error of the update)."""
  diff = sum(float(np.sum((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
             for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(got), strict=True))
  norm = sum(float(np.sum(np.asarray(a, np.float64) ** 2)) for a in jax.tree.leaves(ref))
  assert diff ** 0.5 <= rtol * norm ** 0.5, f"relative error {diff ** 0.5 / norm ** 0.5:.3g} > {rtol}"
