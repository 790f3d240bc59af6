"""TFDS builders (array_record, no TensorFlow) and grain input pipelines over them.

    builder = build_synthetic(data_dir)                              # spct_synthetic/all
    builder = build_synthetic(data_dir, SyntheticConfig(name="tiny", families=("summary",),
                                                        splits=(("train", 64), ("test", 16))))
    builder = build_preferences(data_dir, PreferencesConfig(
        name="rb", format="rewardbench", files=(("test", "/data/rewardbench.jsonl"),)))
    source = data_source(builder.data_dir, "train")         # tfds.builder_from_directory(...)
    for batch in grain_dataset(source, batch_size=8, seed=0):   # list of 8 GRMExamples
      ...

`spct_synthetic`: the synthetic families (data/synthetic.py) with train/validation/test splits,
one builder config per family mix ("all" = every family, equal weights; one config per family).
The splits use different generator seeds (validation: seed + 1_000_003, the warm-up's held-out
offset; test: seed + 2_000_006). `spct_preferences`: built from users' files (data/sources.py
formats); each split's LoadStats (records read, loaded, skipped per reason) is stored in the
dataset's metadata (metadata.json), so nothing is dropped uncounted.

TensorFlow: tensorflow_datasets 4.9.10 builds array_record datasets without TensorFlow. We
checked with a GeneratorBasedBuilder(file_format="array_record") in an environment without
TensorFlow: TFDS serializes the examples with its own numpy and protobuf example serializer,
writes the shards with array_record, and writes dataset_info.json and features.json.
`tfds.data_source` and `tfds.builder_from_directory(...).as_data_source()` read them back
(Text features come back as bytes; `record_to_example` decodes them). Everything is offline:
TFDS's GCS lookups are off by default and nothing is downloaded.

Every record holds one GRMExample (FEATURES): id, family, roles [C], turns [C] (the context,
oldest first), responses [N] and label (int32).

grain: `grain_dataset` shards the index space per host (records shard_index::shard_count; by
default jax.process_index() of jax.process_count()), shuffles with a seed (reshuffled each epoch),
repeats, decodes records into GRMExamples and batches them as lists.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

import grain
import numpy as np

from spct_jax import extras

tfds = extras.require("tensorflow_datasets", "tfds", "The TFDS builders")
from spct_jax.data import sources, synthetic
from spct_jax.example import GRMExample, Turn

VERSION = "1.0.0"
SPLIT_SEED_OFFSETS = {"train": 0, "validation": 1_000_003, "test": 2_000_006}


def features() -> tfds.features.FeaturesDict:
  """The record of one GRMExample."""
  text = tfds.features.Text()
  return tfds.features.FeaturesDict({
      "id": text, "family": text,
      "roles": tfds.features.Sequence(text), "turns": tfds.features.Sequence(text),
      "responses": tfds.features.Sequence(text), "label": np.int32})


def example_to_record(ex: GRMExample) -> dict[str, Any]:
  return {"id": ex.id, "family": ex.family, "roles": [t.role for t in ex.context],
          "turns": [t.text for t in ex.context], "responses": list(ex.responses),
          "label": np.int32(ex.label)}


def _str(x) -> str:
  return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def record_to_example(record: dict[str, Any]) -> GRMExample:
  """A decoded record (as a TFDS data source returns it: text as bytes) -> GRMExample."""
  context = tuple(Turn(_str(r), _str(t)) for r, t in zip(record["roles"], record["turns"]))
  return GRMExample(context=context, responses=tuple(_str(r) for r in record["responses"]),
                    label=int(record["label"]), family=_str(record["family"]), id=_str(record["id"]))


def _no_code_path(cls) -> None:
  """TFDS looks for a checksums file beside a builder's code; ours download nothing. (For a
  builder defined in a package TFDS 4.9.10 would otherwise import `importlib_resources`, which
  is not a dependency.)"""
  return None


# ---------------------------------------------------------------------------------------------
# spct_synthetic

@dataclasses.dataclass(eq=False)
class SyntheticConfig(tfds.core.BuilderConfig):
  """One family mix of synthetic.generate (see its arguments) and the split sizes."""
  families: tuple[str, ...] = synthetic.FAMILIES
  mix: tuple[float, ...] | None = None
  n_responses: tuple[int, ...] = (1, 2, 3, 4)
  response_weights: tuple[float, ...] | None = None
  difficulty: int = 1
  seed: int = 0
  splits: tuple[tuple[str, int], ...] = (("train", 4096), ("validation", 256), ("test", 256))


def _family_configs() -> list[SyntheticConfig]:
  configs = [SyntheticConfig(name="all", description="every synthetic family, equal weights")]
  configs += [SyntheticConfig(name=f, families=(f,), description=f"the {f} family only")
              for f in synthetic.FAMILIES]
  return configs


class SpctSynthetic(tfds.core.GeneratorBasedBuilder):
  """Synthetic GRM tasks with labels known by construction (spct_jax.data.synthetic)."""
  VERSION = tfds.core.Version(VERSION)
  BUILDER_CONFIGS = _family_configs()
  code_path = tfds.core.utils.classproperty(classmethod(_no_code_path))

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=self, features=features(), description=self.__doc__)

  def _split_generators(self, dl_manager):
    cfg = self.builder_config
    for split, _ in cfg.splits:
      if split not in SPLIT_SEED_OFFSETS:
        raise ValueError(f"SyntheticConfig(name={cfg.name!r}).splits: unknown split {split!r}, "
                         f"expected some of {tuple(SPLIT_SEED_OFFSETS)}")
    return {split: self._generate_examples(split, n) for split, n in cfg.splits}

  def _generate_examples(self, split: str, n: int):
    cfg = self.builder_config
    for ex in synthetic.generate(n, cfg.seed + SPLIT_SEED_OFFSETS[split], families=cfg.families,
                                 mix=cfg.mix, n_responses=cfg.n_responses,
                                 response_weights=cfg.response_weights, difficulty=cfg.difficulty):
      yield ex.id, example_to_record(ex)


# ---------------------------------------------------------------------------------------------
# spct_preferences

@dataclasses.dataclass(eq=False)
class PreferencesConfig(tfds.core.BuilderConfig):
  """Users' files: files = ((split, path), ...) in `format` (sources.FORMATS).

  skip_invalid: skip and count bad records instead of raising; family: overrides the family.
  """
  files: tuple[tuple[str, str], ...] = ()
  format: str = "auto"
  skip_invalid: bool = False
  family: str | None = None


class SpctPreferences(tfds.core.GeneratorBasedBuilder):
  """Preference data from RewardBench-, PPE- or GRM-JSONL-shaped files (spct_jax.data.sources)."""
  VERSION = tfds.core.Version(VERSION)
  code_path = tfds.core.utils.classproperty(classmethod(_no_code_path))

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=self, features=features(), description=self.__doc__,
                                 metadata=tfds.core.MetadataDict())

  def _split_generators(self, dl_manager):
    cfg = self.builder_config
    if not cfg.files:
      raise ValueError(f"PreferencesConfig(name={cfg.name!r}).files is empty: give ((split, path), ...)")
    out = {}
    for split, path in cfg.files:
      if split in out:
        raise ValueError(f"PreferencesConfig(name={cfg.name!r}).files: split {split!r} appears twice")
      examples, stats = sources.load_examples(path, cfg.format, cfg.skip_invalid, family=cfg.family)
      self.info.metadata[f"{split}_load_stats"] = dataclasses.asdict(stats)
      out[split] = self._generate_examples(examples)
    return out

  def _generate_examples(self, examples: Sequence[GRMExample]):
    for ex in examples:
      yield ex.id, example_to_record(ex)


# ---------------------------------------------------------------------------------------------
# Building and reading.

def build_synthetic(data_dir: str | os.PathLike, config: str | SyntheticConfig = "all") -> SpctSynthetic:
  """Builds spct_synthetic/<config> under data_dir (array_record), or reuses a finished build."""
  builder = SpctSynthetic(data_dir=os.fspath(data_dir), config=config, file_format="array_record")
  builder.download_and_prepare()
  return builder


def build_preferences(data_dir: str | os.PathLike, config: PreferencesConfig) -> SpctPreferences:
  """Builds spct_preferences/<config.name> under data_dir from the config's files."""
  if not isinstance(config, PreferencesConfig):
    raise TypeError(f"build_preferences: config must be a PreferencesConfig, got {type(config).__name__}")
  builder = SpctPreferences(data_dir=os.fspath(data_dir), config=config, file_format="array_record")
  builder.download_and_prepare()
  return builder


def data_source(builder_dir: str | os.PathLike, split: str):
  """The random-access source of one split of a built dataset (its versioned directory)."""
  return tfds.builder_from_directory(os.fspath(builder_dir)).as_data_source(split=split)


def load_stats(builder_dir: str | os.PathLike) -> dict[str, dict]:
  """split -> LoadStats fields of a built spct_preferences dataset."""
  meta = tfds.builder_from_directory(os.fspath(builder_dir)).info.metadata or {}
  return {k[:-len("_load_stats")]: dict(v) for k, v in meta.items() if k.endswith("_load_stats")}


def grain_dataset(source, *, batch_size: int | None, seed: int, shuffle: bool = True,
                  num_epochs: int | None = None, shard_index: int | None = None,
                  shard_count: int | None = None, drop_remainder: bool = True) -> grain.MapDataset:
  """source -> grain MapDataset of GRMExamples (batch_size None) or of lists of batch_size.

  Sharding: this host reads records shard_index, shard_index + shard_count, ... (default:
  jax.process_index() of jax.process_count()), so hosts read disjoint records.
  shuffle: a seeded permutation of this host's records, a new one each epoch.
  num_epochs: None repeats forever. drop_remainder: drop the last, smaller batch of a finite
  dataset (with drop_remainder=False it is kept).
  """
  if shard_index is None or shard_count is None:
    import jax
    shard_index = jax.process_index() if shard_index is None else shard_index
    shard_count = jax.process_count() if shard_count is None else shard_count
  if not 0 <= shard_index < shard_count:
    raise ValueError(f"grain_dataset: shard_index={shard_index} is not in [0, shard_count={shard_count})")
  if batch_size is not None and batch_size < 1:
    raise ValueError(f"grain_dataset: batch_size={batch_size} must be >= 1")
  ds = grain.MapDataset.source(source)
  if len(ds) < shard_count:
    raise ValueError(f"grain_dataset: {len(ds)} records cannot be split over {shard_count} hosts")
  ds = ds[shard_index::shard_count]
  if shuffle:
    ds = ds.shuffle(seed=seed)
  if num_epochs != 1:
    ds = ds.repeat(num_epochs)
  ds = ds.map(record_to_example)
  if batch_size is not None:
    ds = ds.batch(batch_size, drop_remainder=drop_remainder, batch_fn=list)
  return ds
