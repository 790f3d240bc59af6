"""The data layer: example.py (GRMExample), synthetic.py (verifiable tasks + teacher),
sources.py (RewardBench / PPE / JSONL readers), tfds_builders.py (array_record TFDS builders and
grain pipelines), pipeline.py (tokenize, pad, batch). Import the submodules directly."""
