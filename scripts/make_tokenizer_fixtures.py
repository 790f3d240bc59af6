"""Builds the Hugging Face tokenizer fixtures of the tests: a Llama-3-style and a Qwen2-style
byte-level BPE `tokenizer.json` (each family's pre-tokenizer split pattern, special tokens and
chat format), trained small (1,000 merges) on synthetic and multilingual text, with the
`tokenizer_config.json` beside it (special tokens, the chat template as Jinja, the fast tokenizer
class) that `transformers.AutoTokenizer` reads.

    python scripts/make_tokenizer_fixtures.py --out tests/fixtures/tokenizers

Deterministic: the same corpus and trainer settings give the same files. The chat templates are
written here from the documented chat formats of the two families, not copied.
"""
from __future__ import annotations

import argparse
import json
import pathlib

import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

# The pre-tokenizer split patterns of the two families (contractions, letters, numbers, other runs, whitespace).
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")

LLAMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
QWEN2_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}"
    "{% endif %}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

FAMILIES = {
    "llama3": dict(split=LLAMA3_SPLIT, template=LLAMA3_TEMPLATE,
                   specials=["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                             "<|eot_id|>", "<|finetune_right_pad_id|>"],
                   config={"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}),
    "qwen2": dict(split=QWEN2_SPLIT, template=QWEN2_TEMPLATE,
                  specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                  config={"bos_token": None, "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}),
}


def corpus() -> list[str]:
  """The training text: the synthetic tasks' prompts and critiques, and multilingual lines."""
  from spct_jax.data import synthetic
  from spct_jax.grm import prompts
  import numpy as np
  rng = np.random.default_rng(0)
  lines = ["Grüße aus München, ça va? ¿Qué tal? Привет, как дела? 你好，世界。こんにちは。 안녕하세요 😀",
           "def f(x):\n    return x ** 2  # squared\n\n\tindented\ttabs   and   spaces",
           "Numbers 1234567 and 3.14159, dates 2026-12-02, emails a.b@c.de"]
  for ex in synthetic.generate(400, seed=1):
    shown, _ = prompts.shuffle(ex, rng)
    lines.append(prompts.render(shown, style="compact"))
    lines.append(synthetic.teacher_critique(shown, rng))
  return lines


def build(family: str) -> tuple[tokenizers.Tokenizer, dict]:
  spec = FAMILIES[family]
  tok = tokenizers.Tokenizer(models.BPE(byte_fallback=False))
  tok.pre_tokenizer = pre_tokenizers.Sequence([
      pre_tokenizers.Split(tokenizers.Regex(spec["split"]), behavior="isolated"),
      pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(vocab_size=256 + 1000, special_tokens=spec["specials"], show_progress=False,
                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
  tok.train_from_iterator(corpus(), trainer=trainer)
  config = {"tokenizer_class": "PreTrainedTokenizerFast", "chat_template": spec["template"],
            "model_max_length": 8192, "clean_up_tokenization_spaces": False, **spec["config"]}
  return tok, config


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default="tests/fixtures/tokenizers")
  args = parser.parse_args(argv)
  for family in FAMILIES:
    tok, config = build(family)
    out = pathlib.Path(args.out) / family
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.json").write_text(tok.to_str(pretty=False))
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"{family}: {tok.get_vocab_size()} tokens -> {out}")


if __name__ == "__main__":
  main()
