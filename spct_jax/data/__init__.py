"""The data layer: synthetic.py (verifiable tasks + teacher), sources.py (RewardBench / PPE / JSONL
readers), tfds_builders.py (array_record TFDS builders and grain pipelines), pipeline.py (tokenize,
length policy, padding, length buckets). The example type itself is spct_jax/example.py. Import
the submodules directly."""
