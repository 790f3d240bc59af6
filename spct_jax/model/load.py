"""One way to load a model: a source spec -> (model config, params, tokenizer).

    m = load("stage:grpo", workdir="runs/default")
    m = load("hf:/data/gemma-2-2b-it", dtype="bfloat16")
    m = load("scratch", preset="small", seed=0)
    m = load("gguf:gemma3-270m")                             # a packaged GGUF file, or gguf:/path/x.gguf
    m.config, m.params, m.tokenizer

Sources:
  scratch           fresh params of `preset`, initialised from `seed`
  stage:<name>      the output of a stage in `workdir` (<workdir>/<name>/final, an export folder)
  export:<folder>   a folder written by `python -m spct_jax.export` (model/orbax_io.py)
  bundled:<stage>   a stage result shipped in the package (model/bundled.py)
  hf:<folder>       a local Hugging Face folder (config.json + safetensors; model/hf.py)
  gguf:<file|name>  a llama.cpp GGUF file, dequantized (model/gguf.py), or a packaged one by name
                    (gguf:gemma3-270m, from the `gemma3` extra)

The tokenizer is `tokenizer` (a .model, a tokenizer.json, a .gguf or a folder with one) when given,
else the source's own (stage, export and hf sources: tokenizer.model or tokenizer.json, a folder
with neither is an error that says so, never a silent fallback; gguf: the file's metadata), else
(scratch, bundled) the bundled one. `dtype`, `remat`, `remat_policy`, `scan_layers` and
`lora_rank` replace the saved settings (None keeps them; a LoRA rank adds fresh adapters); files always hold the per-layer layout and
the params come back in the layout `scan_layers` asks for (transformer.to_layout). `reward_head=True` asks for a scalar-head
model ({"lm", "score"} params: a meta RM or scalar RM stage, or an HF *ForSequenceClassification).
"""
from __future__ import annotations

import dataclasses
from typing import Any

from etils import epath
import jax

from spct_jax import mesh as mesh_lib
from spct_jax import paths
from spct_jax.model import bundled
from spct_jax.model import config as config_lib
from spct_jax.model import gguf
from spct_jax.model import hf
from spct_jax.model import lora
from spct_jax.model import orbax_io
from spct_jax.model import reward
from spct_jax.model import transformer
from spct_jax.model.config import ModelConfig
from spct_jax.tokenizer import Tokenizer

SOURCES = ("scratch", "stage:<name>", "export:<folder>", "bundled:<stage>", "hf:<folder>", "gguf:<file|name>")


@dataclasses.dataclass(frozen=True)
class Loaded:
  """A model ready to run: its config, its params (a pytree of arrays) and its tokenizer."""
  config: ModelConfig
  params: Any
  tokenizer: Tokenizer


def stage_dir(workdir: str, stage: str) -> epath.Path:
  """Where stage `stage` of `workdir` writes (its output model is the `final/` folder inside)."""
  return paths.absolute(workdir) / stage


def load(spec: str, *, workdir: str | None = None, preset: str | None = None, seed: int = 0,
         param_dtype: str = "float32", dtype: str | None = None, remat: bool | None = None,
         remat_policy: str | None = None, scan_layers: bool | None = None, lora_rank: int | None = None,
         lora_alpha: float | None = None, lora_targets: str | None = None,
         tokenizer: str = "", reward_head: bool = False, mesh: Any = None,
         what: str = "model source") -> Loaded:
  """The model `spec` names (module docstring); `what` names the setting in error messages.

  mesh: place the params on it by the model's logical-axis rules (spct_jax/mesh.py), each device
  receiving only its shards (fresh params are initialised already sharded; a Hugging Face folder
  is memory-mapped and each shard read from the files, the scanned layout stacked lazily, so a
  host reads only what its devices hold); without it the params are host numpy (device arrays
  for `scratch`)."""
  kind, _, where = spec.partition(":")
  overrides = {k: v for k, v in (("dtype", dtype), ("remat", remat), ("remat_policy", remat_policy),
                                 ("scan_layers", scan_layers), ("lora_rank", lora_rank),
                                 ("lora_alpha", lora_alpha), ("lora_targets", lora_targets)) if v is not None}
  if spec == "scratch":
    if preset is None:
      raise ValueError(f"{what}='scratch' needs a preset (config model.preset)")
    cfg = config_lib.get_config(preset, param_dtype=param_dtype, **overrides)
    if mesh is None:
      params = transformer.init_params(cfg, jax.random.key(seed))
    else:  # created sharded: no device ever holds the whole model
      shardings = mesh_lib.shardings_for(transformer.logical_axes(cfg), transformer.abstract_params(cfg), mesh)
      params = jax.jit(lambda: transformer.init_params(cfg, jax.random.key(seed)), out_shardings=shardings)()
  elif kind == "hf" and where:
    # with a mesh: views of the mapped files, each device's shard read by mesh.put below
    cfg, params = (hf.load_reward if reward_head else hf.load)(where, lazy=mesh is not None)
  elif kind == "gguf" and where:
    if reward_head:
      raise ValueError(f"{what}={spec!r}: a GGUF file holds a language model, not a scalar-head model")
    cfg, params = gguf.load(gguf.resolve(where), dtype=param_dtype)
  elif kind == "bundled" and where:
    params, saved, _ = bundled.load(bundled.folder(where))
    cfg = config_lib.from_dict(saved)
  elif kind in ("export", "stage") and where:
    folder = _folder(spec, workdir, what)
    cfg = config_lib.from_dict(orbax_io.read_config(folder))
    abstract = None
    if mesh is not None:  # restored straight into the shards of the file's (per-layer) layout
      saved = orbax_io.shapes(folder)
      flat = config_lib.replace(cfg, scan_layers=False)
      logical = reward.logical_axes(flat) if "score" in saved else transformer.logical_axes(flat)
      abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, cfg.param_dtype, sharding=s),
                              saved, mesh_lib.shardings_for(logical, saved, mesh))
    params, _ = orbax_io.load(folder, abstract)
  else:
    raise ValueError(f"{what}={spec!r}: expected one of {', '.join(SOURCES)}")
  cfg = config_lib.replace(cfg, **overrides) if overrides else cfg
  params = transformer.to_layout(cfg, params, stack=_stacker(params) if mesh is not None else None)
  if cfg.lora_rank and not reward_head and not lora.count(params):
    params = lora.merge(params, fresh_adapters(cfg, seed))
  if reward_head and "score" not in params:
    raise ValueError(f"{what}={spec!r}: not a scalar-head model (no 'score' param); give a meta RM / "
                     "scalar RM stage, export or Hugging Face *ForSequenceClassification folder")
  if mesh is not None:
    logical = reward.logical_axes(cfg) if reward_head else transformer.logical_axes(cfg)
    params = mesh_lib.put(params, mesh_lib.shardings_for(logical, params, mesh), dtype=cfg.param_dtype)
  return Loaded(cfg, params, load_tokenizer(spec, workdir=workdir, tokenizer=tokenizer, what=what))


def _stacker(params: Any):
  """How to stack layers that are about to be placed on a mesh: host values lazily (each shard
  read when placed), device arrays one param at a time, each layer's copy freed once stacked."""
  if not any(isinstance(x, jax.Array) for x in jax.tree.leaves(params)):
    return mesh_lib.LazyStack

  def stack(xs):
    out = jax.numpy.stack(xs)
    for x in xs:
      x.delete()
    return out
  return stack


def fresh_adapters(cfg: ModelConfig, seed: int) -> Any:
  """New LoRA adapters for cfg (B zero: the model starts as its base), without the base weights
  (under jit the base's initialisation is dead code)."""
  return jax.jit(lambda: lora.split(transformer.init_params(cfg, jax.random.key(seed)))[1])()


def check_vocab(m: Loaded, what: str = "model") -> Loaded:
  """m, after checking that every id of its tokenizer has a row in the model's embedding."""
  if m.config.vocab_size < m.tokenizer.vocab_size:
    raise ValueError(f"{what}: the tokenizer ({m.tokenizer.source}) has {m.tokenizer.vocab_size} pieces but "
                     f"the model's vocab_size is {m.config.vocab_size}")
  return m


def load_tokenizer(spec: str, *, workdir: str | None = None, tokenizer: str = "",
                   what: str = "model source") -> Tokenizer:
  """The tokenizer of the model `spec` names (module docstring), without loading the model."""
  if tokenizer:
    return gguf.tokenizer(tokenizer) if tokenizer.endswith(".gguf") else Tokenizer.load(tokenizer)
  kind, _, where = spec.partition(":")
  if kind == "gguf" and where:
    return gguf.tokenizer(gguf.resolve(where))
  folder = where if kind == "hf" else _folder(spec, workdir, what) if kind in ("export", "stage") else None
  if folder is None:
    return Tokenizer.load()
  try:
    return Tokenizer.load(folder)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"{what}={spec!r}: {e}; give one with the tokenizer setting "
                            "(--config.tokenizer=PATH, --tokenizer=PATH)") from None


def _folder(spec: str, workdir: str | None, what: str) -> str:
  """The export folder of an `export:` or `stage:` spec."""
  kind, _, where = spec.partition(":")
  if kind == "export":
    return where
  if workdir is None:
    raise ValueError(f"{what}={spec!r}: a stage source needs a workdir")
  return str(stage_dir(workdir, where) / "final")
