"""Evaluation of a GRM: metrics.py (pure metric functions over pools of sampled judgements),
report.py (Markdown tables, the voting@k plot) and run.py (`python -m spct_jax.evaluate`: the
models, the data, the samples, the outputs). Import the submodules directly."""
