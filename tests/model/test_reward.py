"""The scalar reward head (spct_jax/model/reward.py) and its HF `*ForSequenceClassification` layout.

Default tests need no torch. Tests marked `parity` build random tiny transformers reward models
live and are skipped when torch/transformers are not installed.
"""
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy

from spct_jax.model import config, hf, reward, transformer
from spct_jax import mesh as mesh_lib

TINY = config.get_config("tiny")  # gemma2, window 16, soft-capping
PAD = 0
MODELS = ("tiny", "tiny_llama")


@pytest.fixture(scope="module")
def model(hf_fixture):
  """name -> (cfg, params) of a random reward model whose scores are O(1) (a head of std D**-0.5):
  "tiny" from reward.init_params of the `tiny` preset; "tiny_llama" from reward.from_lm of the
  llama HF fixture (GQA, untied, V=97, D=32), so no new init is compiled."""
  def get(name, seed=0):
    if name == "tiny":
      cfg, params = TINY, reward.init_params(TINY, jax.random.key(seed))
    else:
      cfg, lm, _ = hf_fixture("llama")
      params = reward.from_lm(lm, cfg, jax.random.key(seed))
    return cfg, {**params, "score": params["score"] * cfg.d_model ** 0.5}
  return get


def _rows(cfg, lengths, seed=0):
  """Unpadded rows of random real tokens in [1, V) (0 is the pad id)."""
  r = np.random.default_rng(seed)
  return [r.integers(1, cfg.vocab_size, size=n).astype(np.int32) for n in lengths]


def _pad(rows, t, left):
  """rows -> tokens [B, t] int32 (pads = PAD), mask [B, t] bool; left[i]: row i padded on the left."""
  tokens, mask = np.full((len(rows), t), PAD, np.int32), np.zeros((len(rows), t), bool)
  for i, (row, l) in enumerate(zip(rows, left)):
    sl = slice(t - len(row), t) if l else slice(0, len(row))
    tokens[i, sl], mask[i, sl] = row, True
  return tokens, mask


def _batch(cfg, seed=0, t=20):
  """Rows of 20 tokens (no padding; 20 > TINY's window), 13 left-padded, 13 right-padded."""
  rows = _rows(cfg, (t, 13, 13), seed)
  return rows, _pad(rows, t, (True, True, False))


def test_last_real_index_matches_hf_rule():
  mask = np.array([[1, 1, 1, 1], [0, 0, 1, 1], [1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]], bool)
  np.testing.assert_array_equal(reward.last_real_index(jnp.asarray(mask)), [3, 3, 1, 1, 0])
  hf_rule = (np.arange(4) * mask).argmax(-1)  # GenericForSequenceClassification with ids != pad
  np.testing.assert_array_equal(reward.last_real_index(jnp.asarray(mask)), hf_rule)


@pytest.mark.parametrize("name", MODELS)
def test_padded_rows_score_like_the_row_alone(forward, model, name):
  cfg, params = model(name)
  rows, (tokens, mask) = _batch(cfg)
  got = np.asarray(reward.scores(cfg, params, tokens, mask))
  assert got.shape == (3,) and got.dtype == np.float32
  alone = np.concatenate([reward.scores(cfg, params, rows[0][None]),
                          reward.scores(cfg, params, np.stack(rows[1:]))])  # unpadded rows
  np.testing.assert_allclose(got, alone, atol=1e-5, rtol=1e-5)
  assert np.abs(alone).max() > 0.1 and len(set(np.round(alone, 4))) == 3  # O(1) and distinct
  # the score reads the last real token through the final norm, never the LM logits
  lm = {**params["lm"], "lm_head": jnp.zeros((cfg.d_model, cfg.vocab_size))}  # unused when tied
  _, hidden = forward(cfg, lm, jnp.asarray(rows[0][None]), hidden=True)
  np.testing.assert_allclose(alone[0], float(hidden[0, -1] @ params["score"][:, 0]), rtol=1e-5, atol=1e-6)
  # a Transformer module works as well as its config
  np.testing.assert_array_equal(reward.scores(transformer.Transformer(cfg), params, tokens, mask), got)


def test_params_structure_axes_and_from_lm(hf_fixture):
  llama, lm, _ = hf_fixture("llama")  # untied: has lm_head
  for cfg in (TINY, llama):
    params = jax.eval_shape(functools.partial(reward.init_params, cfg), jax.random.key(0))
    assert set(params) == {"lm", "score"} and "lm_head" not in params["lm"]
    assert params["score"].shape == (cfg.d_model, 1) and params["score"].dtype == jnp.float32
    axes = reward.logical_axes(cfg)
    assert jax.tree.structure(axes, is_leaf=mesh_lib._is_names) == jax.tree.structure(params)
    assert axes["score"] == ("embed", None)
    assert reward.abstract_params(cfg) == params
    # the mesh rules place every leaf, the head's embed dim over fsdp
    mesh = mesh_lib.make_mesh((2, 2, 2))
    sh = mesh_lib.shardings_for(axes, reward.abstract_params(cfg), mesh)
    assert sh["score"].spec == jax.sharding.PartitionSpec("fsdp", None)

  head = reward.init_head(TINY, jax.random.key(0))
  assert head.shape == (64, 1) and abs(float(head.std()) * 64 - 1) < 0.3  # std 1/D
  rm = reward.from_lm(lm, llama, jax.random.key(2))
  assert "lm_head" not in rm["lm"] and rm["lm"]["embed"] is lm["embed"]
  tokens = jnp.asarray(_rows(llama, (6,))[0][None])
  # an lm_head left in params["lm"] is ignored
  np.testing.assert_array_equal(reward.scores(llama, rm, tokens), reward.scores(llama, {**rm, "lm": lm}, tokens))
  bad = {**lm, "final_norm": {"scale": jnp.zeros(33)}}
  with pytest.raises(ValueError, match=r"lm_params: final_norm/scale has shape \(33,\), expected \(32,\)"):
    reward.from_lm(bad, llama, jax.random.key(0))
  with pytest.raises(ValueError, match=r"lm_params: missing param 'layers_1/mlp/up'"):
    reward.from_lm({**lm, "layers_1": {**lm["layers_1"], "mlp": {"gate": 0, "down": 0}}},
                   llama, jax.random.key(0))


def test_scores_errors_name_the_key(model):
  cfg, params = model("tiny_llama")
  tokens = jnp.ones((2, 5), jnp.int32)
  with pytest.raises(KeyError, match="reward params: missing key 'score'"):
    reward.scores(cfg, {"lm": params["lm"]}, tokens)
  with pytest.raises(ValueError, match=r"reward params: score has shape \(32, 2\), expected \(32, 1\)"):
    reward.scores(cfg, {**params, "score": jnp.zeros((32, 2))}, tokens)
  with pytest.raises(ValueError, match=r"pad_mask has shape \(2, 4\), tokens \(2, 5\)"):
    reward.scores(cfg, params, tokens, jnp.ones((2, 4), bool))
  with pytest.raises(ValueError, match=r"tokens out of range \[0, 97\)"):
    reward.scores(cfg, params, tokens * 97)


@pytest.mark.parametrize("name", MODELS)
def test_hf_save_load_round_trip(tmp_path, model, name):
  cfg, params = model(name, seed=3)
  hf.save_reward(cfg, params, str(tmp_path), pad_token_id=PAD)
  d = json.loads((tmp_path / "config.json").read_text())
  assert d["architectures"] == [hf.REWARD_ARCHITECTURES[cfg.model_type]]
  assert (d["num_labels"], d["id2label"], d["label2id"], d["pad_token_id"]) == (1, {"0": "LABEL_0"},
                                                                               {"LABEL_0": 0}, PAD)
  raw = safetensors.numpy.load_file(tmp_path / "model.safetensors")
  assert {k: v.shape for k, v in raw.items()} == hf.hf_names_and_shapes(cfg, reward=True)
  assert "lm_head.weight" not in raw and raw["score.weight"].shape == (1, cfg.d_model)
  np.testing.assert_array_equal(raw["score.weight"], np.asarray(params["score"]).T)
  cfg2, loaded = hf.load_reward(str(tmp_path))
  assert cfg2 == cfg
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, np.asarray(b)), loaded, params)
  _, (tokens, mask) = _batch(cfg)
  np.testing.assert_array_equal(reward.scores(cfg2, loaded, tokens, mask),
                                reward.scores(cfg, params, tokens, mask))
  # bf16 on disk, read back as float32
  bcfg = config.replace(cfg, param_dtype="bfloat16", dtype="bfloat16")
  hf.save_reward(bcfg, jax.tree.map(lambda x: x.astype(jnp.bfloat16), params), str(tmp_path / "bf16"),
                 pad_token_id=PAD)
  cfg3, up = hf.load_reward(str(tmp_path / "bf16"), dtype="float32")
  assert cfg3 == cfg and up["score"].dtype == np.float32


def _edit(folder, edit_tensors=None, edit_config=None):
  if edit_tensors:
    tensors = safetensors.numpy.load_file(folder / "model.safetensors")
    edit_tensors(tensors)
    safetensors.numpy.save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
  if edit_config:
    d = json.loads((folder / "config.json").read_text())
    edit_config(d)
    (folder / "config.json").write_text(json.dumps(d))


def test_hf_errors_name_the_tensor(tmp_path, model):
  cfg, params = model("tiny_llama")
  fresh = lambda name: (hf.save_reward(cfg, params, str(tmp_path / name), pad_token_id=PAD), tmp_path / name)[1]

  folder = fresh("missing")
  _edit(folder, lambda t: t.pop("score.weight"))
  with pytest.raises(ValueError, match=r"missing: missing tensor 'score\.weight'$"):
    hf.load_reward(str(folder))

  folder = fresh("shape")
  _edit(folder, lambda t: t.update({"score.weight": np.zeros((2, 32), np.float32)}))
  with pytest.raises(ValueError, match=r"tensor 'score\.weight' has shape \(2, 32\), expected \(1, 32\)"):
    hf.load_reward(str(folder))

  folder = fresh("bias")
  _edit(folder, lambda t: t.update({"score.bias": np.zeros(1, np.float32)}))
  with pytest.raises(ValueError, match=r"unexpected tensor 'score\.bias'$"):
    hf.load_reward(str(folder))

  folder = fresh("labels")
  _edit(folder, edit_config=lambda d: d.update(id2label={"0": "A", "1": "B"}, label2id={"A": 0, "B": 1},
                                                num_labels=2))
  with pytest.raises(ValueError, match=r"num_labels=2 .*only num_labels=1 \(a scalar reward head"):
    hf.load_reward(str(folder))
  _edit(folder, edit_config=lambda d: [d.pop(k) for k in ("id2label", "label2id", "num_labels")])
  with pytest.raises(ValueError, match=r"num_labels=2"):  # transformers' default when neither is given
    hf.load_reward(str(folder))

  folder = fresh("kinds")
  with pytest.raises(ValueError, match=r"\['LlamaForSequenceClassification'\] is a sequence-classification "
                                       r"\(reward\) checkpoint; read it with hf\.load_reward"):
    hf.load(str(folder))
  hf.save(cfg, {**params["lm"], "lm_head": np.zeros((32, 97), np.float32)}, str(tmp_path / "lm"))
  with pytest.raises(ValueError, match=r"\['LlamaForCausalLM'\] is not a \*ForSequenceClassification "
                                       r"checkpoint; read it with hf\.load \(and add a fresh score head"):
    hf.load_reward(str(tmp_path / "lm"))
  # no `architectures`: judged by id2label and the tensors
  _edit(folder, edit_config=lambda d: d.pop("architectures"))
  assert hf.load_reward(str(folder))[0] == cfg

  with pytest.raises(ValueError, match=r"params: score has shape \(32, 2\), expected \(32, 1\)"):
    hf.save_reward(cfg, {**params, "score": np.zeros((32, 2), np.float32)}, str(tmp_path / "x"), pad_token_id=0)
  with_head = {**params, "lm": {**params["lm"], "lm_head": np.zeros((32, 97), np.float32)}}
  with pytest.raises(ValueError, match=r"params: unexpected param 'lm/lm_head'"):
    hf.save_reward(cfg, with_head, str(tmp_path / "x"), pad_token_id=0)
  with pytest.raises(ValueError, match=r"params: missing param 'score'"):
    hf.save_reward(cfg, {"lm": params["lm"]}, str(tmp_path / "x"), pad_token_id=0)
  with pytest.raises(ValueError, match=r"pad_token_id=97 is outside the vocabulary \[0, 97\)"):
    hf.save_reward(cfg, params, str(tmp_path / "x"), pad_token_id=97)


# ---- live comparisons against torch/transformers

def _hf_scores(model, tokens, mask):
  """transformers' scores [B] with attention_mask = mask, position_ids = clip(cumsum - 1, 0); the
  model finds each row's last token itself, from input_ids != pad_token_id."""
  import torch
  position_ids = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
  with torch.no_grad():
    out = model(input_ids=torch.from_numpy(tokens.astype(np.int64)),
                attention_mask=torch.from_numpy(mask.astype(np.int64)),
                position_ids=torch.from_numpy(position_ids.astype(np.int64)))
  assert out.logits.shape == (len(tokens), 1)
  return out.logits[:, 0].float().numpy()


def _build_hf_reward_model(fixture_script, name, seed):
  """A random transformers `<Family>ForSequenceClassification` (num_labels 1, pad id 0, fp32, eager)
  on the HF parity fixture's config for `name`."""
  import torch
  import transformers
  kw = dict(fixture_script.HF_CONFIGS[name])
  hf_cfg = transformers.AutoConfig.for_model(kw.pop("model_type"), **kw, num_labels=1, pad_token_id=PAD)
  model = transformers.AutoModelForSequenceClassification.from_config(hf_cfg, attn_implementation="eager",
                                                                      dtype=torch.float32)
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for pname, p in model.named_parameters():
      if pname.endswith("norm.weight"):
        p.copy_((0.0 if name == "gemma2" else 1.0) + 0.2 * torch.randn(p.shape, generator=gen))
      elif "embed_tokens" in pname:
        p.copy_(torch.randn(p.shape, generator=gen) * fixture_script.EMBED_STD.get(name, 1.0))
      else:  # [out, in] linear weights, score.weight included
        p.copy_(torch.randn(p.shape, generator=gen) * p.shape[1] ** -0.5)
  return model.eval()


@pytest.mark.parity
@pytest.mark.parametrize("name", ["gemma2", "llama"])
def test_live_parity_with_fresh_hf_reward_models(tmp_path, fixture_script, name):
  pytest.importorskip("torch")
  pytest.importorskip("transformers")
  hf_model = _build_hf_reward_model(fixture_script, name, seed=11)
  hf_model.save_pretrained(tmp_path)
  cfg, params = hf.load_reward(str(tmp_path))
  if name == "gemma2":  # window shorter than the sequence, both soft-caps
    assert cfg.sliding_window == 4 and cfg.attn_softcap and cfg.final_softcap
  else:
    assert cfg.n_kv_heads < cfg.n_heads and not cfg.tie_embeddings
  rows = _rows(cfg, (12, 9, 5, 12), seed=5)
  tokens, mask = _pad(rows, 12, (True, True, True, False))  # rows 1, 2 left-padded; 3 unpadded
  tokens[3, 8:], mask[3, 8:] = PAD, False  # row 3 right-padded
  expected = _hf_scores(hf_model, tokens, mask)
  ours = np.asarray(reward.scores(cfg, params, tokens, mask))
  assert np.abs(ours - expected).max() <= 1e-4, (ours, expected)
  assert np.abs(expected).max() > 0.1


@pytest.mark.parity
@pytest.mark.parametrize("name", MODELS)
def test_live_save_reward_then_transformers_from_pretrained(tmp_path, model, name):
  pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  cfg, params = model(name, seed=4)
  hf.save_reward(cfg, params, str(tmp_path), pad_token_id=PAD)
  hf_model, info = transformers.AutoModelForSequenceClassification.from_pretrained(
      str(tmp_path), attn_implementation="eager", dtype="float32", output_loading_info=True)
  assert type(hf_model).__name__ == hf.REWARD_ARCHITECTURES[cfg.model_type]
  assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
  assert hf_model.config.num_labels == 1 and hf_model.config.pad_token_id == PAD
  _, (tokens, mask) = _batch(cfg)
  expected = _hf_scores(hf_model.eval(), tokens, mask)
  ours = np.asarray(reward.scores(cfg, params, tokens, mask))
  assert np.abs(ours - expected).max() <= 1e-4, (ours, expected)


@pytest.mark.parity
def test_live_reward_hf_keys_of_presets():
  """transformers' *ForSequenceClassification (meta device) has exactly our tensor names and shapes."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  for name in ("tiny", "gemma2_2b", "llama3_1_8b", "mistral_7b"):
    cfg = config.get_config(name)
    d = hf.config_to_hf(cfg, reward=True, pad_token_id=0)
    hf_cfg = transformers.AutoConfig.for_model(d.pop("model_type"), **d)
    with torch.device("meta"):
      hf_model = transformers.AutoModelForSequenceClassification.from_config(hf_cfg)
    assert {k: tuple(v.shape) for k, v in hf_model.named_parameters()} == hf.hf_names_and_shapes(cfg, reward=True)
    assert hf.config_from_hf(hf.config_to_hf(cfg, reward=True, pad_token_id=0)) == cfg
