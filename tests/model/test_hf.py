"""Hugging Face weights: logit parity, config mapping, load/save, errors.

Default tests use the committed fixtures (tests/model/fixtures/, made by
scripts/make_model_fixtures.py) and need no torch. Tests marked `parity` rebuild the HF models
live and are skipped when torch/transformers are not installed.
"""
import json
import os
import pathlib
import shutil

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import safetensors.flax
import safetensors.numpy

from spct_jax.model import config, hf, transformer
from spct_jax import mesh as mesh_lib

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
FAMILIES = ("llama", "qwen2", "gemma2", "gemma3", "mistral")

PUBLISHED = {"gemma2_2b": 2_614_341_888, "gemma2_9b": 9_241_705_984, "gemma2_27b": 27_227_128_320,
             "gemma3_270m": 268_098_176, "gemma3_1b": 999_885_952,
             "llama3_2_1b": 1_235_814_400, "llama3_1_8b": 8_030_261_248, "mistral_7b": 7_241_732_096}


def _max_real_diff(ours, theirs, mask) -> float:
  return float(np.abs(np.asarray(ours) - np.asarray(theirs))[np.asarray(mask, bool)].max())


@pytest.mark.parametrize("name", FAMILIES)
def test_fixture_logits_match_hf(forward, hf_fixture, name):
  cfg, params, io = hf_fixture(name)
  assert cfg.model_type == name
  assert not io["mask"][1, :3].any() and io["mask"][1, 3:].all()  # row 1 is left-padded by 3
  assert _max_real_diff(forward(cfg, params, io["tokens"], io["mask"]), io["logits"], io["mask"]) <= 1e-4


def test_fixture_configs_exercise_every_feature(hf_fixture):
  llama, qwen2, gemma2, mistral = (hf_fixture(n)[0] for n in ("llama", "qwen2", "gemma2", "mistral"))
  assert llama.n_kv_heads < llama.n_heads and not llama.tie_embeddings and llama.rope_scaling_factor == 8
  assert qwen2.qkv_bias and qwen2.tie_embeddings
  assert gemma2.local_layers == (True, False, True) and gemma2.sliding_window == 4
  assert (gemma2.attn_softcap, gemma2.final_softcap, gemma2.query_pre_attn_scalar) == (2.0, 5.0, 6.0)
  assert mistral.local_layers == (True, True) and mistral.n_kv_heads == 1
  gemma3 = hf_fixture("gemma3")[0]
  assert gemma3.local_layers == (True, True, False, True) and gemma3.qk_norm and gemma3.sliding_window == 4
  assert (gemma3.rope_theta, gemma3.rope_local_theta, gemma3.rope_scaling_type, gemma3.rope_scaling_factor) == (
      10000.0, 100.0, "linear", 4.0)
  assert gemma3.attn_softcap is None and gemma3.final_softcap is None
  for name in FAMILIES:
    folder = FIXTURES / name
    assert sum(os.path.getsize(folder / f) for f in os.listdir(folder)) < 300 * 1024


@pytest.mark.parametrize("name", sorted(config.PRESETS))
def test_config_to_hf_and_back(name):
  cfg = config.get_config(name)
  d = json.loads(json.dumps(hf.config_to_hf(cfg)))
  assert d["architectures"] == [hf.ARCHITECTURES[cfg.model_type]]
  assert hf.MODEL_TYPES[d["model_type"]] == cfg.model_type
  assert hf.config_from_hf(d) == cfg


def test_config_from_published_style_json():
  """Keys as published on the Hub (legacy rope_theta/rope_scaling, torch_dtype, no layer_types)."""
  llama = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256,
           "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
           "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "hidden_act": "silu",
           "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
           "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                            "original_max_position_embeddings": 8192, "rope_type": "llama3"},
           "tie_word_embeddings": True, "torch_dtype": "bfloat16", "attention_bias": False,
           "mlp_bias": False, "bos_token_id": 128000, "eos_token_id": 128001}
  expect = config.get_config("llama3_2_1b", param_dtype="bfloat16", dtype="bfloat16")
  assert hf.config_from_hf(llama) == expect
  gemma = {"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "vocab_size": 256000,
           "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
           "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
           "hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh",
           "query_pre_attn_scalar": 256, "sliding_window": 4096, "final_logit_softcapping": 30.0,
           "attn_logit_softcapping": 50.0, "max_position_embeddings": 8192, "rms_norm_eps": 1e-06,
           "rope_theta": 10000.0, "torch_dtype": "float32", "cache_implementation": "hybrid"}
  assert hf.config_from_hf(gemma) == config.get_config("gemma2_2b")
  absent = ("query_pre_attn_scalar", "sliding_window", "final_logit_softcapping", "attn_logit_softcapping")
  defaults = {k: v for k, v in gemma.items() if k not in absent}
  assert hf.config_from_hf(defaults) == config.get_config("gemma2_2b")  # transformers' class defaults
  assert hf.config_from_hf(gemma, dtype="bfloat16").param_dtype == "bfloat16"
  # Gemma 3 1B as published (legacy rope keys, sliding_window_pattern, no layer_types)
  gemma3 = {"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "vocab_size": 262144,
            "hidden_size": 1152, "intermediate_size": 6912, "num_hidden_layers": 26,
            "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256,
            "hidden_activation": "gelu_pytorch_tanh", "query_pre_attn_scalar": 256, "sliding_window": 512,
            "sliding_window_pattern": 6, "rope_theta": 1000000, "rope_local_base_freq": 10000,
            "rope_scaling": None, "final_logit_softcapping": None, "attn_logit_softcapping": None,
            "max_position_embeddings": 32768, "rms_norm_eps": 1e-06, "torch_dtype": "float32"}
  assert hf.config_from_hf(gemma3) == config.get_config("gemma3_1b")
  assert config.get_config("gemma3_1b").local_layers[:6] == (True,) * 5 + (False,)
  # the text decoder of Gemma 3 4B: linear RoPE scaling on the global layers
  gemma3_4b = {**gemma3, "vocab_size": 262208, "hidden_size": 2560, "intermediate_size": 10240,
               "num_hidden_layers": 34, "num_attention_heads": 8, "num_key_value_heads": 4,
               "sliding_window": 1024, "max_position_embeddings": 131072,
               "rope_scaling": {"factor": 8.0, "rope_type": "linear"}}
  assert hf.config_from_hf(gemma3_4b) == config.get_config("gemma3_4b")
  with pytest.raises(ValueError, match="multimodal Gemma 3"):
    hf.config_from_hf({**gemma3, "model_type": "gemma3"})


@pytest.mark.parametrize("change, message", [
    (dict(model_type="gpt2"), "unsupported model_type 'gpt2'; supported: gemma2, gemma3_text, llama, mistral, qwen2"),
    (dict(hidden_act="gelu"), "activation 'gelu' is not supported for llama (supported: silu)"),
    (dict(rope_scaling={"rope_type": "yarn", "factor": 4.0}), "rope_type 'yarn' is not supported"),
    (dict(attention_bias=True), "attention_bias=true is not supported for llama"),
    (dict(hidden_size=None), "config.json (model_type llama): missing key 'hidden_size'"),
    (dict(rope_scaling={"rope_type": "llama3", "factor": 8.0}),
     "config.json (model_type llama): missing key rope_scaling.'low_freq_factor'"),
])
def test_config_from_hf_errors(change, message):
  d = {**hf.config_to_hf(config.get_config("llama3_2_1b")), **change}
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
    hf.config_from_hf(d)


def _copy_fixture(tmp_path, name="llama"):
  folder = tmp_path / name
  shutil.copytree(FIXTURES / name, folder)
  return folder


def _edit_tensors(folder, edit):
  path = folder / "model.safetensors"
  tensors = safetensors.numpy.load_file(path)
  edit(tensors)
  safetensors.numpy.save_file(tensors, path, metadata={"format": "pt"})


def test_load_errors_name_the_tensor(tmp_path):
  folder = _copy_fixture(tmp_path)
  _edit_tensors(folder, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
  with pytest.raises(ValueError, match=r"llama: missing tensor 'model\.layers\.1\.mlp\.up_proj\.weight'$"):
    hf.load(str(folder))

  folder = _copy_fixture(tmp_path / "b")
  _edit_tensors(folder, lambda t: t.update({"model.layers.0.extra.weight": np.zeros(3, np.float32)}))
  with pytest.raises(ValueError, match=r"unexpected tensor 'model\.layers\.0\.extra\.weight'$"):
    hf.load(str(folder))

  folder = _copy_fixture(tmp_path / "c")
  _edit_tensors(folder, lambda t: t.update({"model.norm.weight": np.zeros(33, np.float32)}))
  with pytest.raises(ValueError, match=r"model\.safetensors: tensor 'model\.norm\.weight' has shape \(33,\), "
                                       r"expected \(32,\) from config\.json"):
    hf.load(str(folder))

  folder = _copy_fixture(tmp_path / "d")
  cfg = json.loads((folder / "config.json").read_text())
  (folder / "config.json").write_text(json.dumps({**cfg, "model_type": "phi3"}))
  with pytest.raises(ValueError, match="unsupported model_type 'phi3'; supported: gemma2, gemma3_text, llama, mistral"):
    hf.load(str(folder))

  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="empty: no config.json"):
    hf.load(str(tmp_path / "empty"))
  os.remove(folder / "model.safetensors")
  (folder / "config.json").write_text(json.dumps(cfg))
  with pytest.raises(FileNotFoundError, match="no model.safetensors or model.safetensors.index.json"):
    hf.load(str(folder))


def test_load_sharded_index_and_ignored_buffers(tmp_path, hf_fixture):
  _, params, _ = hf_fixture("llama")
  folder = _copy_fixture(tmp_path)
  tensors = safetensors.numpy.load_file(folder / "model.safetensors")
  os.remove(folder / "model.safetensors")
  names = sorted(tensors)
  shards = {"model-00001-of-00002.safetensors": names[:10], "model-00002-of-00002.safetensors": names[10:]}
  for fname, part in shards.items():
    inv_freq = {"model.layers.0.self_attn.rotary_emb.inv_freq": np.ones(4, np.float32)}
    extra = inv_freq if "1-of" in fname else {}
    safetensors.numpy.save_file({**{n: tensors[n] for n in part}, **extra}, folder / fname)
  weight_map = {n: f for f, part in shards.items() for n in part}
  (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
  _, sharded = hf.load(str(folder))
  jax.tree.map(np.testing.assert_array_equal, sharded, params)


def test_save_load_round_trip_f32_and_bf16(tmp_path, hf_fixture):
  cfg, params, _ = hf_fixture("qwen2")  # q/k/v biases, tied
  hf.save(cfg, params, str(tmp_path / "f32"))
  cfg2, loaded = hf.load(str(tmp_path / "f32"))
  assert cfg2 == cfg
  jax.tree.map(np.testing.assert_array_equal, loaded, params)
  # safetensors itself reads our file: HF names, HF layouts, byte-identical to the fixture.
  ours = safetensors.numpy.load_file(tmp_path / "f32" / "model.safetensors")
  theirs = safetensors.numpy.load_file(FIXTURES / "qwen2" / "model.safetensors")
  assert {k: v.shape for k, v in ours.items()} == hf.hf_names_and_shapes(cfg)
  jax.tree.map(np.testing.assert_array_equal, ours, theirs)
  assert json.loads((tmp_path / "f32" / "config.json").read_text())["architectures"] == ["Qwen2ForCausalLM"]

  cfg, params, _ = hf_fixture("llama")  # untied: lm_head
  bf16 = jax.tree.map(lambda x: jnp.asarray(x, jnp.bfloat16), params)
  bcfg = config.replace(cfg, param_dtype="bfloat16", dtype="bfloat16")
  hf.save(bcfg, bf16, str(tmp_path / "bf16"))
  raw = safetensors.flax.load_file(str(tmp_path / "bf16" / "model.safetensors"))
  assert raw["lm_head.weight"].dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(raw["lm_head.weight"]), np.asarray(bf16["lm_head"]).T)
  cfg3, loaded = hf.load(str(tmp_path / "bf16"))
  assert cfg3 == bcfg and loaded["embed"].dtype == ml_dtypes.bfloat16
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, np.asarray(b)), loaded, bf16)
  # a bf16 file written by safetensors' own (flax) writer reads the same
  (tmp_path / "st").mkdir()
  shutil.copy(tmp_path / "bf16" / "config.json", tmp_path / "st" / "config.json")
  safetensors.flax.save_file(raw, str(tmp_path / "st" / "model.safetensors"))
  _, again = hf.load(str(tmp_path / "st"))
  jax.tree.map(np.testing.assert_array_equal, again, loaded)
  _, upcast = hf.load(str(tmp_path / "bf16"), dtype="float32")
  assert upcast["embed"].dtype == np.float32
  np.testing.assert_array_equal(upcast["embed"], np.asarray(bf16["embed"], np.float32))


def test_save_errors_name_the_param(tmp_path, hf_fixture):
  cfg, params, _ = hf_fixture("gemma2")
  broken = {**params, "layers_0": {**params["layers_0"], "mlp": {"gate": params["layers_0"]["mlp"]["gate"]}}}
  with pytest.raises(ValueError, match=r"params: 2 missing params: 'layers_0/mlp/down', 'layers_0/mlp/up'"):
    hf.save(cfg, broken, str(tmp_path))
  with pytest.raises(ValueError, match=r"params: unexpected param 'lm_head'"):
    hf.save(cfg, {**params, "lm_head": np.zeros((32, 97), np.float32)}, str(tmp_path))
  wrong = {**params, "final_norm": {"scale": np.zeros(33, np.float32)}}
  with pytest.raises(ValueError, match=r"params: final_norm/scale has shape \(33,\), expected \(32,\)"):
    hf.save(cfg, wrong, str(tmp_path))


def test_lazy_load_then_put_places_each_shard(hf_fixture):
  cfg, params, _ = hf_fixture("gemma2")
  mesh = mesh_lib.make_mesh((2, 2, 2))
  shardings = mesh_lib.shardings_for(transformer.logical_axes(cfg), transformer.abstract_params(cfg), mesh)
  _, lazy = hf.load(str(FIXTURES / "gemma2"), lazy=True)
  # views of the memory-mapped file, nothing copied yet
  assert all(not x.flags.owndata for x in jax.tree.leaves(lazy))
  placed = mesh_lib.put(lazy, shardings, dtype=cfg.param_dtype)
  gate = placed["layers_0"]["mlp"]["gate"]
  assert isinstance(gate, jax.Array) and gate.sharding == shardings["layers_0"]["mlp"]["gate"]
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), placed, params)


# ---- live comparisons against torch/transformers

@pytest.mark.parity
@pytest.mark.parametrize("name", FAMILIES)
def test_live_parity_with_fresh_hf_models(tmp_path, forward, fixture_script, name):
  pytest.importorskip("torch")
  pytest.importorskip("transformers")
  model = fixture_script.build_hf_model(name, seed=7)
  model.save_pretrained(tmp_path)
  tokens, mask = fixture_script.make_inputs(seed=7)
  expected = fixture_script.hf_logits(model, tokens, mask)
  cfg, params = hf.load(str(tmp_path))
  assert _max_real_diff(forward(cfg, params, tokens, mask), expected, mask) <= 1e-4


@pytest.mark.parity
@pytest.mark.parametrize("name", FAMILIES)
def test_live_save_then_transformers_from_pretrained(tmp_path, forward, hf_fixture, fixture_script, name):
  pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  cfg, params, io = hf_fixture(name)
  keys = jax.random.split(jax.random.key(3), len(jax.tree.leaves(params)))
  leaves, tree = jax.tree.flatten(params)
  params = jax.tree.unflatten(tree, [x + 0.05 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
  hf.save(cfg, params, str(tmp_path))
  model = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), attn_implementation="eager",
                                                            dtype="float32")
  expected = fixture_script.hf_logits(model, io["tokens"], io["mask"])
  assert _max_real_diff(forward(cfg, params, io["tokens"], io["mask"]), expected, io["mask"]) <= 1e-4


@pytest.mark.parity
def test_live_preset_param_counts_and_hf_keys():
  """Every preset's HF config builds (meta device, no memory) with our tensor names and shapes."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  for name in config.PRESETS:
    cfg = config.get_config(name)
    d = hf.config_to_hf(cfg)
    hf_cfg = transformers.AutoConfig.for_model(d.pop("model_type"), **d)
    with torch.device("meta"):
      model = transformers.AutoModelForCausalLM.from_config(hf_cfg)
    shapes = {k: tuple(v.shape) for k, v in model.named_parameters()}
    assert shapes == hf.hf_names_and_shapes(cfg), name
    count = sum(v.numel() for v in model.parameters())
    assert count == transformer.param_count(cfg) == PUBLISHED.get(name, count), name
