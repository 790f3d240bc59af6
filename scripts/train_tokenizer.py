"""Train the bundled tokenizer of the embedded default: spct_jax/assets/spct_tokenizer.model.

Command (from the repository root; deterministic, so rerunning it writes the same bytes):
  python scripts/train_tokenizer.py --out=spct_jax/assets/spct_tokenizer.model
Check that the committed file is what this script produces (exit 1 if not):
  python scripts/train_tokenizer.py --check

The corpus: synthetic tasks (spct_jax.data.synthetic) rendered as GRM prompts in both styles
and every variant, wrapped in the plain chat template and followed by a teacher critique; the
responses on their own; and a generic line of every printable ASCII character.
The model: SentencePiece BPE, exactly 4096 pieces, digits split, byte fallback,
identity normalization, no extra-whitespace removal and no dummy prefix (so decode(encode(s)) == s
for every string), ids pad 0, eos 1, bos 2, unk 3, and the plain chat markers as single pieces.
Single-threaded, input not shuffled or sampled: the result depends on the corpus only.
"""
from __future__ import annotations

import argparse
import io
import pathlib
import string
import sys

import numpy as np
import sentencepiece as spm

from spct_jax import tokenizer
from spct_jax.data import synthetic
from spct_jax.example import user
from spct_jax.grm import prompts

VOCAB_SIZE = 4096
DEFAULT_OUT = pathlib.Path(__file__).resolve().parents[1] / "spct_jax" / "assets" / tokenizer.BUNDLED_MODEL

TRAINER_SPEC = dict(
    vocab_size=VOCAB_SIZE,
    model_type="bpe",
    split_digits=True,
    byte_fallback=True,
    normalization_rule_name="identity",
    remove_extra_whitespaces=False,
    add_dummy_prefix=False,
    allow_whitespace_only_pieces=True,
    character_coverage=1.0,
    pad_id=0, eos_id=1, bos_id=2, unk_id=3,
    user_defined_symbols=list(tokenizer.PLAIN_MARKERS.values()),
    hard_vocab_limit=False,         # a small corpus may support fewer pieces: see pad_vocab
    max_sentence_length=1 << 16,
    input_sentence_size=0,          # use every sentence (no sampling)
    shuffle_input_sentence=False,
    num_threads=1,
    minloglevel=2,
)


def ascii_lines() -> list[str]:
  """Every printable ASCII character, alone and in runs, so each gets a piece of its own."""
  printable = "".join(chr(c) for c in range(32, 127))
  return [printable, " ".join(printable), string.digits * 4, "\t\n\r" + string.punctuation]


def corpus(num_examples: int, seed: int) -> list[str]:
  """The training sentences (each may span several lines)."""
  rng = np.random.default_rng(seed)
  lines = ascii_lines()
  for ex in synthetic.generate(num_examples, seed=seed):
    shown, _ = prompts.shuffle(ex, rng)
    critique = synthetic.teacher_critique(shown, rng)
    for style in prompts.STYLES:
      for variant in prompts.VARIANTS:
        if variant == "hinted" and shown.n < 2:
          continue
        text = prompts.render(shown, variant=variant, style=style)
        lines.append(tokenizer.plain_chat([user(text)]) + critique)
    lines.extend(shown.responses)
    lines.extend(t.text for t in shown.context)
  return lines


def pad_vocab(model: bytes, size: int) -> bytes:
  """Append UNUSED pieces '<unused0>', '<unused1>', ... until the vocabulary has `size` pieces.

  Like Gemma's reserved pieces: never produced by encoding, kept so the model presets' embedding
  tables (4096 rows) match the vocabulary exactly.
  """
  from sentencepiece import sentencepiece_model_pb2 as model_pb2  # needs protobuf (via tfds)
  proto = model_pb2.ModelProto()
  proto.ParseFromString(model)
  if len(proto.pieces) > size:
    raise ValueError(f"pad_vocab: the model has {len(proto.pieces)} pieces, more than {size}")
  for k in range(size - len(proto.pieces)):
    piece = proto.pieces.add()
    piece.piece, piece.score, piece.type = f"<unused{k}>", 0.0, model_pb2.ModelProto.SentencePiece.UNUSED
  proto.trainer_spec.vocab_size = size
  return proto.SerializeToString(deterministic=True)


def train(num_examples: int, seed: int) -> bytes:
  """The serialized model, exactly VOCAB_SIZE pieces."""
  out = io.BytesIO()
  spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus(num_examples, seed)),
                                 model_writer=out, **TRAINER_SPEC)
  return pad_vocab(out.getvalue(), VOCAB_SIZE)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
  parser.add_argument("--examples", type=int, default=1500, help="synthetic examples to render")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--check", action="store_true",
                      help="compare with --out instead of writing it; exit 1 when different")
  args = parser.parse_args(argv)
  model = train(args.examples, args.seed)
  if args.check:
    same = args.out.is_file() and args.out.read_bytes() == model
    print(f"{args.out}: {'up to date' if same else 'DIFFERS from a fresh training run'}")
    return 0 if same else 1
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_bytes(model)
  tok = tokenizer.Tokenizer.from_bytes(model, source=str(args.out))
  print(f"wrote {args.out}: {len(model)} bytes, vocab_size={tok.vocab_size}, "
        f"pad/eos/bos/unk={tok.pad_id}/{tok.eos_id}/{tok.bos_id}/{tok.unk_id}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
