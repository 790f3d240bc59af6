"""The decoder-only transformer (Llama family and Gemma-2), its scalar-head variant, and every way
to read and write its weights; `load.load(spec)` is the one entry point for a model.

    from spct_jax.model import config, transformer, load
    m = load.load("stage:grpo", workdir="runs/default")   # m.config, m.params, m.tokenizer
"""
