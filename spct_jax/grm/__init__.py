"""The GRM protocol: prompt template (prompts), score extraction and the correctness rule
(scores), voting over sampled critiques (voting). Pure Python, no JAX."""
from spct_jax.grm import prompts, scores, voting

__all__ = ["prompts", "scores", "voting"]
