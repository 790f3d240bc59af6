"""ModelConfig presets, validation, and the logical axis names of every parameter."""
import json

import jax
import pytest

from spct_jax.model import config, transformer
from spct_jax import mesh as mesh_lib

# Published parameter totals (embeddings counted once when tied).
PUBLISHED = {
    "gemma2_2b": 2_614_341_888,
    "gemma2_9b": 9_241_705_984,
    "gemma2_27b": 27_227_128_320,
    "gemma3_270m": 268_098_176,
    "gemma3_1b": 999_885_952,
    "llama3_2_1b": 1_235_814_400,
    "llama3_1_8b": 8_030_261_248,
    "mistral_7b": 7_241_732_096,
}
AXIS_NAMES = {"vocab", "embed", "heads", "kv_heads", "head_dim", "mlp"}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_preset_param_count_matches_published(name):
  assert transformer.param_count(config.get_config(name)) == PUBLISHED[name]


def test_own_presets_sizes_and_vocab():
  counts = {n: transformer.param_count(config.get_config(n)) for n in ("tiny", "small", "medium")}
  assert counts == {"tiny": 336_448, "small": 1_509_504, "medium": 41_439_744}
  for name in counts:
    cfg = config.get_config(name)
    assert cfg.vocab_size == 4096 and cfg.is_gemma and cfg.tie_embeddings


def test_preset_shapes():
  g = config.get_config("gemma2_27b")
  shape = (g.d_model, g.n_layers, g.n_heads, g.n_kv_heads, g.head_dim, g.mlp_dim)
  assert shape == (4608, 46, 32, 16, 128, 36864)
  assert (g.query_pre_attn_scalar, g.sliding_window, g.attn_softcap, g.final_softcap) == (144, 4096, 50, 30)
  assert g.query_scale == pytest.approx(144 ** -0.5)
  l1 = config.get_config("llama3_2_1b")
  assert l1.tie_embeddings and l1.rope_theta == 500000 and l1.rope_scaling_factor == 32
  l8 = config.get_config("llama3_1_8b")
  assert not l8.tie_embeddings and l8.rope_scaling_factor == 8
  m = config.get_config("mistral_7b")
  assert (m.vocab_size, m.rope_theta, m.tie_embeddings, m.sliding_window) == (32000, 10000, False, 4096)


def test_local_layers():
  assert config.get_config("tiny").local_layers == (True, False)
  assert config.get_config("gemma2_2b").local_layers[:4] == (True, False, True, False)
  assert config.get_config("mistral_7b").local_layers == (True,) * 32
  assert config.get_config("llama3_1_8b").local_layers == (False,) * 32
  assert config.get_config("tiny", sliding_window=None).local_layers == (False, False)


def test_get_config_overrides_and_errors():
  cfg = config.get_config("tiny", dtype="bfloat16", remat=True)
  assert cfg.dtype == "bfloat16" and cfg.remat and cfg.param_dtype == "float32"
  with pytest.raises(KeyError, match=r"unknown model preset 'huge'; presets: tiny, small, medium"):
    config.get_config("huge")
  with pytest.raises(KeyError, match=r"unknown ModelConfig fields \['d_modle'\]"):
    config.get_config("tiny", d_modle=3)


@pytest.mark.parametrize("overrides, message", [
    (dict(n_kv_heads=3), "ModelConfig.n_heads=4 is not a multiple of n_kv_heads=3"),
    (dict(model_type="gpt2"), "ModelConfig.model_type='gpt2'; supported: gemma2, gemma3, llama, mistral, qwen2"),
    (dict(model_type="llama", attn_softcap=None, final_softcap=None, query_pre_attn_scalar=None,
          sliding_window=None, qkv_bias=True), "qkv_bias=True with model_type='llama'"),
    (dict(model_type="llama", sliding_window=None, query_pre_attn_scalar=None),
     "ModelConfig.attn_softcap is a Gemma feature; model_type='llama'"),
    (dict(dtype="float64"), "ModelConfig.dtype='float64'; supported: float32, bfloat16, float16"),
    (dict(head_dim=15), "RoPE needs an even head_dim"),
    (dict(sliding_window=0), "ModelConfig.sliding_window=0: must be >= 1 or None"),
])
def test_config_validation_errors(overrides, message):
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
    config.get_config("tiny", **overrides)


def test_to_dict_from_dict_round_trip():
  for name in config.PRESETS:
    cfg = config.get_config(name)
    assert config.from_dict(json.loads(json.dumps(config.to_dict(cfg)))) == cfg
  with pytest.raises(KeyError, match="unknown ModelConfig fields"):
    config.from_dict({"bogus": 1})


@pytest.mark.parametrize("name, overrides", [
    ("tiny", {}),
    ("tiny", dict(model_type="qwen2", qkv_bias=True, tie_embeddings=False, sliding_window=None,
                  attn_softcap=None, final_softcap=None, query_pre_attn_scalar=None)),
    ("llama3_1_8b", {}),
])
def test_logical_axes_cover_every_param(name, overrides):
  cfg = config.get_config(name, **overrides)
  names = transformer.logical_axes(cfg)
  abstract = transformer.abstract_params(cfg)
  is_names = lambda x: isinstance(x, tuple) and all(isinstance(n, str) for n in x)
  assert jax.tree.structure(names, is_leaf=is_names) == jax.tree.structure(abstract)
  for axes, leaf in zip(jax.tree.leaves(names, is_leaf=is_names), jax.tree.leaves(abstract)):
    assert len(axes) == leaf.ndim and set(axes) <= AXIS_NAMES
  layer = names["layers_0"]["attn"]
  assert layer["q"] == ("embed", "heads", "head_dim") and layer["k"] == ("embed", "kv_heads", "head_dim")
  assert layer["o"] == ("heads", "head_dim", "embed") and names["embed"] == ("vocab", "embed")
  assert ("q_bias" in layer) == cfg.qkv_bias and ("lm_head" in names) == (not cfg.tie_embeddings)


def test_logical_axes_shard_through_the_mesh_rules():
  cfg = config.get_config("tiny")
  mesh = mesh_lib.make_mesh((2, 2, 2))
  shardings = mesh_lib.shardings_for(transformer.logical_axes(cfg), transformer.abstract_params(cfg), mesh)
  assert shardings["layers_0"]["mlp"]["gate"].spec == jax.sharding.PartitionSpec("fsdp", "tensor")
  assert shardings["embed"].spec == jax.sharding.PartitionSpec("tensor", "fsdp")
