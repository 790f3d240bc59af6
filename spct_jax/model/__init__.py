"""The decoder-only transformer (Llama family and Gemma-2) and Hugging Face weight conversion.

    from spct_jax.model import config, transformer, hf
"""
