"""One way to load a model: every source spec gives (config, params, tokenizer), and bad specs
name the setting that holds them."""
import jax
import numpy as np
import pytest

from spct_jax.model import bundled, hf, load, orbax_io, reward, transformer
from spct_jax.model import config as model_config
from spct_jax.tokenizer import Tokenizer

TINY = model_config.get_config("tiny")


def _same(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def params():
  return transformer.init_params(TINY, jax.random.key(3))


def test_orbax_folder_round_trip_and_a_missing_config_is_named(tmp_path):
  tree = {"layer": {"w": np.arange(6.0, dtype=np.float32).reshape(2, 3)}}
  orbax_io.save(tree, {"preset": "tiny", "d_model": 3}, str(tmp_path / "export"), Tokenizer.load())
  loaded, cfg = orbax_io.load(str(tmp_path / "export"))
  assert cfg == {"preset": "tiny", "d_model": 3}
  np.testing.assert_array_equal(loaded["layer"]["w"], tree["layer"]["w"])
  assert Tokenizer.load(str(tmp_path / "export" / "tokenizer.model")).vocab_size == Tokenizer.load().vocab_size
  with pytest.raises(FileNotFoundError, match="model_config.json missing"):
    orbax_io.load(str(tmp_path))


def test_scratch_is_the_preset_initialised_from_the_seed():
  m = load.load("scratch", preset="tiny", seed=3, dtype="bfloat16")
  assert m.config == model_config.replace(TINY, dtype="bfloat16")
  _same(m.params, transformer.init_params(TINY, jax.random.key(3)))
  assert m.tokenizer.source.startswith("<bundled")
  with pytest.raises(ValueError, match="'scratch' needs a preset"):
    load.load("scratch")


def test_stage_and_export_read_the_same_folder_with_its_tokenizer(tmp_path, params):
  folder = tmp_path / "w" / "rft" / "final"
  orbax_io.save(params, model_config.to_dict(TINY), str(folder), Tokenizer.load())
  by_stage = load.load("stage:rft", workdir=str(tmp_path / "w"), remat=True)
  by_export = load.load(f"export:{folder}")
  _same(by_stage.params, params)
  _same(by_export.params, params)
  assert by_stage.config == model_config.replace(TINY, remat=True) and by_export.config == TINY
  assert by_stage.tokenizer.source == str(folder / "tokenizer.model")
  other = tmp_path / "tokenizer.model"
  Tokenizer.load().save(str(tmp_path))
  assert load.load("stage:rft", workdir=str(tmp_path / "w"), tokenizer=str(other)).tokenizer.source == str(other)
  with pytest.raises(ValueError, match="needs a workdir"):
    load.load("stage:rft")


def test_hf_folder_and_its_scalar_head(tmp_path, params):
  hf.save(TINY, params, str(tmp_path / "lm"))
  with pytest.raises(FileNotFoundError, match="no tokenizer in .*lm.*looked for tokenizer.model .* and tokenizer.json"):
    load.load(f"hf:{tmp_path / 'lm'}")  # a folder without a tokenizer: never a silent fallback
  Tokenizer.load().save(str(tmp_path / "lm"))
  m = load.load(f"hf:{tmp_path / 'lm'}")
  assert m.config.model_type == TINY.model_type and m.tokenizer.source == str(tmp_path / "lm" / "tokenizer.model")
  for x, y in zip(jax.tree.leaves(m.params), jax.tree.leaves(params)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-6)
  plain = orbax_io.save(params, model_config.to_dict(TINY), str(tmp_path / "plain"))
  with pytest.raises(ValueError, match="--meta_rm='export:.*': not a scalar-head model"):
    load.load(f"export:{plain}", reward_head=True, what="--meta_rm")
  rparams = reward.from_lm(params, TINY, jax.random.key(1))
  hf.save_reward(TINY, rparams, str(tmp_path / "rm"), pad_token_id=0)
  r = load.load(f"hf:{tmp_path / 'rm'}", reward_head=True, tokenizer=str(tmp_path / "lm"))
  assert set(r.params) == {"lm", "score"}


def test_bundled_source_is_the_shipped_result():
  m = load.load("bundled:warmup")
  want, saved, _ = bundled.load(bundled.folder("warmup"))
  assert m.config == model_config.from_dict(saved)
  _same(m.params, want)


@pytest.mark.parametrize("spec", ["s3://weights", "hf:", "stage", "gguf"])
def test_an_unknown_source_names_the_setting_and_the_choices(spec):
  with pytest.raises(ValueError, match=f"config init={spec!r}: expected one of scratch, stage:<name>"):
    load.load(spec, preset="tiny", what="config init")


def test_check_vocab_names_both_sizes(params):
  m = load.Loaded(model_config.replace(TINY, vocab_size=100), params, Tokenizer.load())
  with pytest.raises(ValueError, match=r"--model=x: the tokenizer .* has 4096 pieces but the model's vocab_size is 100"):
    load.check_vocab(m, "--model=x")
  assert load.check_vocab(load.Loaded(TINY, params, Tokenizer.load())).config == TINY


def test_files_hold_the_per_layer_layout_and_load_in_either(tmp_path, params):
  """A scanned model is written per layer (export and HF folder alike) and loads back in the
  layout the loader asks for: per layer by default, stacked with scan_layers=True."""
  scfg = model_config.replace(TINY, scan_layers=True)
  stacked = transformer.to_layout(scfg, params)
  orbax_io.save(stacked, model_config.to_dict(scfg), str(tmp_path / "export"), Tokenizer.load())
  raw, saved = orbax_io.load(str(tmp_path / "export"))
  assert saved["scan_layers"] is False and "layers_0" in raw and "layers" not in raw
  _same(load.load(f"export:{tmp_path / 'export'}").params, params)
  m = load.load(f"export:{tmp_path / 'export'}", scan_layers=True)
  assert m.config.scan_layers
  _same(m.params, stacked)
  hf.save(scfg, stacked, str(tmp_path / "hf"))
  cfg, loaded = hf.load(str(tmp_path / "hf"))
  assert not cfg.scan_layers
  _same(loaded, params)


@pytest.mark.parametrize("scan", [False, True])
def test_hf_onto_a_mesh_reads_each_shard_from_the_mapped_files(tmp_path, params, scan):
  """With a mesh, a Hugging Face folder is memory-mapped and every device's shard read from the
  files (the scanned layout stacked lazily, bfloat16 cast to the float32 asked for as it is read):
  the same values as loading it whole, in the model's shardings."""
  from spct_jax import mesh as mesh_lib
  import ml_dtypes
  bf16 = jax.tree.map(lambda x: np.asarray(x).astype(ml_dtypes.bfloat16), params)
  hf.save(model_config.replace(TINY, param_dtype="bfloat16"), bf16, str(tmp_path / "hf"))
  Tokenizer.load().save(str(tmp_path / "hf"))
  whole = load.load(f"hf:{tmp_path / 'hf'}", scan_layers=scan)
  mesh = mesh_lib.make_mesh((1, 8, 1))
  m = load.load(f"hf:{tmp_path / 'hf'}", scan_layers=scan, mesh=mesh)
  assert m.config == whole.config and ("layers" in m.params) == scan
  want = mesh_lib.shardings_for(transformer.logical_axes(m.config), whole.params, mesh)
  assert jax.tree.structure(m.params) == jax.tree.structure(whole.params)
  for got, ref, sharding in zip(jax.tree.leaves(m.params), jax.tree.leaves(whole.params), jax.tree.leaves(want)):
    assert got.sharding == sharding and got.dtype == np.dtype(m.config.param_dtype) == ref.dtype
    np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))
