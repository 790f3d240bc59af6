"""Export: Orbax params-only and a Hugging Face folder load back and give the same logits."""
import jax
import jax.numpy as jnp
import numpy as np

from spct_jax import export
from spct_jax.model import config as model_config
from spct_jax.model import hf, transformer
from spct_jax.model import orbax_io
from spct_jax.tokenizer import Tokenizer


def test_export_round_trips_through_orbax_and_hf(tmp_path):
  cfg = model_config.get_config("tiny", vocab_size=128, n_layers=2)
  params = transformer.init_params(cfg, jax.random.key(0))
  orbax_io.save(params, model_config.to_dict(cfg), str(tmp_path / "w" / "warmup" / "final"), Tokenizer.load())
  out = export.export(str(tmp_path / "w"), "warmup", str(tmp_path / "out"), hf_folder=True)
  tokens = jnp.array([[2, 5, 9, 11, 3, 7]])
  ref = transformer.Transformer(cfg).apply({"params": params}, tokens)
  p2, c2 = orbax_io.load(out)
  np.testing.assert_array_equal(transformer.Transformer(model_config.from_dict(c2)).apply({"params": p2}, tokens), ref)
  cfg3, p3 = hf.load(str(tmp_path / "out" / "hf"))
  np.testing.assert_allclose(transformer.Transformer(cfg3).apply({"params": p3}, tokens), ref, atol=1e-5)
