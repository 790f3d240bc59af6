"""Tokenizers: special ids, batched encode/decode, chat templates, one interface for two kinds.

`Tokenizer.load()` loads the bundled tokenizer of the embedded default
(spct_jax/assets/spct_tokenizer.model, 4096 pieces, trained by scripts/train_tokenizer.py);
`Tokenizer.load(path)` loads a SentencePiece `.model` file (Gemma's and Llama-2's included), a
Hugging Face `tokenizer.json` (Llama-3, Qwen2, ...: an `HFTokenizer`, with the chat template of
the `tokenizer_config.json` beside it), or a model folder holding either (`tokenizer.model`
first). A folder with neither is an error that says what was looked for. The tokenizer of a GGUF
file is an `HFTokenizer` built from its metadata (spct_jax/model/gguf.py).
`tok.save(folder)` writes the files `Tokenizer.load(folder)` reads back.

Chat templates (`chat_template`):
  "gemma": <start_of_turn>user\\n{text}<end_of_turn>\\n ... <start_of_turn>model\\n
           (Gemma has no system role: a system turn is prepended to the next user turn.)
  "plain": <|user|>\\n{text}\\n ... <|assistant|>\\n   (markers <|system|>, <|user|>,
           <|assistant|> are single pieces in the bundled tokenizer; any other vocabulary spells
           them out as ordinary text.)
  "auto" (default): "gemma" if the vocabulary has <start_of_turn>, else "plain".

Decoding drops control pieces (pad, bos, eos) and every pad_id; user-defined pieces (chat markers such as
<end_of_turn> or <|user|>) come back as their text. With a byte-fallback vocabulary and the
identity normalization (the bundled tokenizer), decode(encode(s)) == s for every string that
has no U+2581 ('▁', SentencePiece's own word-boundary mark: in input it is read as a space, and
decodes as one).

pad_id: the model's pad id; a model without one (Llama-2) falls back to its unk id, which a
byte-fallback vocabulary never produces when encoding, so `tokens != pad_id` stays a valid mask
(eos is not used as padding because it is a real target token); `decode` drops it like a pad.
"""
from __future__ import annotations

import dataclasses
import importlib.resources
import json
import os
from typing import Sequence

from etils import epath
import jinja2
import jinja2.sandbox
import numpy as np
import sentencepiece as spm
import tokenizers

from spct_jax.example import ROLES, Turn

BUNDLED_MODEL = "spct_tokenizer.model"  # inside the spct_jax.assets package data
CHAT_TEMPLATES = ("gemma", "plain")
GEMMA_START, GEMMA_END = "<start_of_turn>", "<end_of_turn>"
PLAIN_MARKERS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}


def bundled_model_bytes() -> bytes:
  """The serialized bundled model (works from an installed wheel or a source checkout)."""
  return importlib.resources.files("spct_jax").joinpath("assets").joinpath(BUNDLED_MODEL).read_bytes()


@dataclasses.dataclass(frozen=True)
class Tokenizer:
  """sp: the SentencePiece processor; chat_template: "gemma" | "plain"; source: where it came from."""
  sp: spm.SentencePieceProcessor
  chat_template: str
  source: str

  @classmethod
  def load(cls, path: str | os.PathLike | None = None, chat_template: str = "auto") -> "Tokenizer | HFTokenizer":
    """path None -> the bundled tokenizer; a .model file; a tokenizer.json; a folder with either."""
    if path is None:
      return cls.from_bytes(bundled_model_bytes(), chat_template=chat_template,
                            source=f"<bundled spct_jax/assets/{BUNDLED_MODEL}>")
    p = epath.Path(path)
    if p.is_dir():
      for name in ("tokenizer.model", "tokenizer.json"):
        if (p / name).exists():
          return cls.load(p / name, chat_template)
      raise FileNotFoundError(f"Tokenizer.load: no tokenizer in {os.fspath(path)!r}: looked for tokenizer.model "
                              f"(SentencePiece) and tokenizer.json (Hugging Face tokenizers)")
    if not p.exists():
      raise FileNotFoundError(f"Tokenizer.load: no tokenizer file at {os.fspath(path)!r}")
    if p.name.endswith(".json"):
      return HFTokenizer.from_file(p, chat_template)
    return cls.from_bytes(p.read_bytes(), chat_template=chat_template, source=os.fspath(path))

  @classmethod
  def from_bytes(cls, proto: bytes, chat_template: str = "auto", source: str = "<bytes>"
                 ) -> "Tokenizer":
    """A tokenizer from a serialized SentencePiece ModelProto."""
    sp = spm.SentencePieceProcessor()
    try:
      sp.LoadFromSerializedProto(proto)
    except (RuntimeError, OSError, TypeError) as e:
      raise ValueError(f"Tokenizer.load: {source!r} is not a valid SentencePiece model ({e})") from e
    has_gemma = _has_piece(sp, GEMMA_START) and _has_piece(sp, GEMMA_END)
    if chat_template == "auto":
      chat_template = "gemma" if _has_piece(sp, GEMMA_START) else "plain"
    if chat_template not in CHAT_TEMPLATES:
      raise ValueError(f"Tokenizer.load: chat_template={chat_template!r}, expected 'auto' or one of "
                       f"{CHAT_TEMPLATES}")
    if chat_template == "gemma" and not has_gemma:
      raise ValueError(f"Tokenizer.load: chat_template='gemma' needs {GEMMA_START} and {GEMMA_END} "
                       f"in the vocabulary of {source!r}")
    if sp.eos_id() < 0:
      raise ValueError(f"Tokenizer.load: {source!r} defines no eos piece; generation cannot stop")
    return cls(sp=sp, chat_template=chat_template, source=source)

  def save(self, folder: str | os.PathLike) -> None:
    """Writes folder/tokenizer.model (what `Tokenizer.load(folder)` reads back)."""
    (epath.Path(folder) / "tokenizer.model").write_bytes(self.sp.serialized_model_proto())

  # ---- special ids -------------------------------------------------------------------------
  @property
  def vocab_size(self) -> int:
    return self.sp.GetPieceSize()

  @property
  def bos_id(self) -> int:
    """-1 if the model has no bos piece (then add_bos=True raises)."""
    return self.sp.bos_id()

  @property
  def eos_id(self) -> int:
    return self.sp.eos_id()

  @property
  def unk_id(self) -> int:
    return self.sp.unk_id()

  @property
  def pad_id(self) -> int:
    """The model's pad id, or its unk id when it defines none (see the module docstring)."""
    pad = self.sp.pad_id()
    return pad if pad >= 0 else self.sp.unk_id()

  @property
  def end_of_turn_ids(self) -> list[int]:
    """Ids that end the model's answer: [eos] (plain) or [eos, <end_of_turn>] (gemma)."""
    if self.chat_template == "gemma":
      return [self.eos_id, self.sp.PieceToId(GEMMA_END)]
    return [self.eos_id]

  @property
  def answer_end_id(self) -> int:
    """The id appended after an answer in training: <end_of_turn> (gemma) or eos (plain)."""
    return self.end_of_turn_ids[-1]

  def piece_id(self, piece: str) -> int | None:
    """The id of a piece, or None when the vocabulary does not have it."""
    return self.sp.PieceToId(piece) if _has_piece(self.sp, piece) else None

  # ---- encode / decode ---------------------------------------------------------------------
  def encode(self, text: str | Sequence[str], add_bos: bool = False, add_eos: bool = False
             ) -> list[int] | list[list[int]]:
    """str -> [T] ids; list of str -> list of [T_b] ids (no padding)."""
    if add_bos and self.bos_id < 0:
      raise ValueError(f"Tokenizer.encode: add_bos=True but {self.source!r} defines no bos piece")
    if isinstance(text, str):
      return self.sp.Encode(text, add_bos=add_bos, add_eos=add_eos)
    if isinstance(text, (list, tuple)):
      for b, t in enumerate(text):
        if not isinstance(t, str):
          raise TypeError(f"Tokenizer.encode: text[{b}] is {type(t).__name__}, expected str")
      return self.sp.Encode(list(text), add_bos=add_bos, add_eos=add_eos)
    raise TypeError(f"Tokenizer.encode: expected str or list of str, got {type(text).__name__}")

  def decode(self, ids) -> str | list[str]:
    """[T] ids -> str; [B, T] ids (nested lists or a 2-D array) -> list of B str.

    Control pieces (pad, bos, eos) and pad_id are dropped, so padded rows decode to their text;
    ids outside [0, vocab_size) raise ValueError.
    """
    if isinstance(ids, (list, tuple)) and ids and np.ndim(ids[0]) > 0:
      return [self._decode_one(row, f"ids[{b}]") for b, row in enumerate(ids)]
    arr = ids if isinstance(ids, (list, tuple)) else np.asarray(ids)
    if isinstance(arr, np.ndarray) and arr.ndim == 2:
      return [self._decode_one(row, f"ids[{b}]") for b, row in enumerate(arr)]
    if isinstance(arr, np.ndarray) and arr.ndim != 1:
      raise ValueError(f"Tokenizer.decode: ids of shape {arr.shape}, expected [T] or [B, T]")
    return self._decode_one(arr, "ids")

  def _decode_one(self, row, name: str) -> str:
    row = [int(i) for i in np.asarray(row, dtype=np.int64).reshape(-1)]
    for t, i in enumerate(row):
      if not 0 <= i < self.vocab_size:
        raise ValueError(f"Tokenizer.decode: {name}[{t}]={i} is outside [0, {self.vocab_size})")
    pad = self.pad_id
    return self.sp.Decode([i for i in row if i != pad])

  # ---- chat --------------------------------------------------------------------------------
  def chat_prompt(self, turns: Sequence[Turn], add_generation_prompt: bool = True) -> str:
    """The text to encode (with add_bos=True) before the model's answer.

    turns: the conversation, oldest first (Turn.role in system/user/assistant).
    add_generation_prompt: end with the opening of the model's turn.
    """
    if not turns:
      raise ValueError("Tokenizer.chat_prompt: no turns")
    for i, t in enumerate(turns):
      if t.role not in ROLES:
        raise ValueError(f"Tokenizer.chat_prompt: turns[{i}].role={t.role!r}, expected one of {ROLES}")
    if self.chat_template == "gemma":
      return gemma_chat(turns, add_generation_prompt)
    return plain_chat(turns, add_generation_prompt)


def _has_piece(sp: spm.SentencePieceProcessor, piece: str) -> bool:
  i = sp.PieceToId(piece)
  return i != sp.unk_id() and sp.IdToPiece(i) == piece


def plain_chat(turns: Sequence[Turn], add_generation_prompt: bool = True) -> str:
  """The "plain" template: <|role|>\n{text}\n per turn, then <|assistant|>\n."""
  text = "".join(f"{PLAIN_MARKERS[t.role]}\n{t.text}\n" for t in turns)
  return text + (PLAIN_MARKERS["assistant"] + "\n" if add_generation_prompt else "")


def gemma_chat(turns: Sequence[Turn], add_generation_prompt: bool = True) -> str:
  """Gemma's template; system turns are prepended to the next user turn."""
  parts, system = [], []
  for t in turns:
    if t.role == "system":
      system.append(t.text)
      continue
    text = t.text
    if t.role == "user" and system:
      text = "\n\n".join(system + [text])
      system = []
    role = "model" if t.role == "assistant" else "user"
    parts.append(f"{GEMMA_START}{role}\n{text}{GEMMA_END}\n")
  if system:  # a trailing system turn becomes a user turn of its own
    parts.append(f"{GEMMA_START}user\n" + "\n\n".join(system) + f"{GEMMA_END}\n")
  if add_generation_prompt:
    parts.append(f"{GEMMA_START}model\n")
  return "".join(parts)


# ---------------------------------------------------------------------------------------------
# Hugging Face tokenizer.json.

# End-of-turn markers of the chat formats we know; those in a vocabulary end an answer too.
END_OF_TURN_MARKERS = ("<|eot_id|>", "<|im_end|>", GEMMA_END, "<|end|>")
# Pad fallbacks, in order, for a tokenizer_config.json without a pad_token (never eos: eos is a target).
PAD_FALLBACKS = ("<|finetune_right_pad_id|>", "<|endoftext|>", "<pad>", "<unk>")


def _token_text(value) -> str | None:
  """A special token of tokenizer_config.json: a string, or {"content": ...} (AddedToken)."""
  return value.get("content") if isinstance(value, dict) else value


@dataclasses.dataclass(frozen=True)
class HFTokenizer:
  """A Hugging Face `tokenizers` tokenizer with the same interface as `Tokenizer`.

  config: the tokenizer_config.json beside the tokenizer.json ({} when absent): bos/eos/pad
  tokens and the Jinja `chat_template`, rendered as `transformers.apply_chat_template` does
  (messages, add_generation_prompt, bos_token, eos_token). Encoding adds no special token but the
  bos that add_bos asks for, when the model has one (Qwen2 has none); the rendered chat text's
  leading bos is dropped (encode adds it).
  """
  tok: tokenizers.Tokenizer
  config: dict
  source: str

  @classmethod
  def from_file(cls, path: str | os.PathLike, chat_template: str = "auto") -> "HFTokenizer":
    path = epath.Path(path)
    try:
      tok = tokenizers.Tokenizer.from_str(path.read_text())
    except Exception as e:  # tokenizers raises its own exception type for a malformed file
      raise ValueError(f"Tokenizer.load: {os.fspath(path)!r} is not a valid tokenizer.json ({e})") from e
    cfg_path = path.parent / "tokenizer_config.json"
    config = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
    if chat_template not in ("auto", "model"):
      raise ValueError(f"Tokenizer.load: chat_template={chat_template!r}: a tokenizer.json uses its own "
                       "template (tokenizer_config.json); expected 'auto'")
    out = cls(tok, config, os.fspath(path))
    if out.eos_id < 0:
      raise ValueError(f"Tokenizer.load: {os.fspath(path)!r} defines no eos token; generation cannot stop")
    return out

  @property
  def chat_template(self) -> str:
    """"model" (the Jinja template of tokenizer_config.json), else "gemma" when the vocabulary has
    Gemma's turn markers (a GGUF base model), else "plain"."""
    if self.config.get("chat_template"):
      return "model"
    return "gemma" if self._id(GEMMA_START) >= 0 and self._id(GEMMA_END) >= 0 else "plain"

  def save(self, folder: str | os.PathLike) -> None:
    """Writes folder/tokenizer.json and folder/tokenizer_config.json."""
    folder = epath.Path(folder)
    (folder / "tokenizer.json").write_text(self.tok.to_str())
    (folder / "tokenizer_config.json").write_text(json.dumps(self.config, indent=2))

  def _id(self, token: str | None) -> int:
    i = self.tok.token_to_id(token) if token else None
    return -1 if i is None else i

  @property
  def vocab_size(self) -> int:
    return self.tok.get_vocab_size(with_added_tokens=True)

  @property
  def bos_id(self) -> int:
    return self._id(_token_text(self.config.get("bos_token")))

  @property
  def eos_id(self) -> int:
    return self._id(_token_text(self.config.get("eos_token"))) if self.config.get("eos_token") else \
        next((self._id(t) for t in ("</s>", "<|endoftext|>", "<|end_of_text|>", "<eos>") if self._id(t) >= 0), -1)

  @property
  def unk_id(self) -> int:
    return self._id(_token_text(self.config.get("unk_token")) or "<unk>")

  @property
  def pad_id(self) -> int:
    pad = self._id(_token_text(self.config.get("pad_token")))
    if pad >= 0:
      return pad
    return next((self._id(t) for t in PAD_FALLBACKS if self._id(t) >= 0 and self._id(t) != self.eos_id), self.eos_id)

  @property
  def end_of_turn_ids(self) -> list[int]:
    return list(dict.fromkeys([self.eos_id] + [self._id(t) for t in END_OF_TURN_MARKERS if self._id(t) >= 0]))

  @property
  def answer_end_id(self) -> int:
    return self.end_of_turn_ids[-1]

  def piece_id(self, piece: str) -> int | None:
    i = self._id(piece)
    return None if i < 0 else i

  def encode(self, text: str | Sequence[str], add_bos: bool = False, add_eos: bool = False
             ) -> list[int] | list[list[int]]:
    if isinstance(text, (list, tuple)):
      return [self.encode(t, add_bos, add_eos) for t in text]
    if not isinstance(text, str):
      raise TypeError(f"Tokenizer.encode: expected str or list of str, got {type(text).__name__}")
    ids = self.tok.encode(text, add_special_tokens=False).ids
    return ([self.bos_id] if add_bos and self.bos_id >= 0 else []) + ids + ([self.eos_id] if add_eos else [])

  def decode(self, ids) -> str | list[str]:
    arr = np.asarray(ids, dtype=np.int64) if not isinstance(ids, (list, tuple)) or not ids or np.ndim(ids[0]) == 0 \
        else None
    if arr is None or arr.ndim == 2:
      return [self.decode(list(row)) for row in (ids if arr is None else arr)]
    if arr.ndim != 1:
      raise ValueError(f"Tokenizer.decode: ids of shape {arr.shape}, expected [T] or [B, T]")
    for t, i in enumerate(arr.tolist()):
      if not 0 <= i < self.vocab_size:
        raise ValueError(f"Tokenizer.decode: ids[{t}]={i} is outside [0, {self.vocab_size})")
    drop = {self.pad_id, self.bos_id, self.eos_id}
    return self.tok.decode([i for i in arr.tolist() if i not in drop], skip_special_tokens=False)

  def chat_prompt(self, turns: Sequence[Turn], add_generation_prompt: bool = True) -> str:
    if not turns:
      raise ValueError("Tokenizer.chat_prompt: no turns")
    for i, t in enumerate(turns):
      if t.role not in ROLES:
        raise ValueError(f"Tokenizer.chat_prompt: turns[{i}].role={t.role!r}, expected one of {ROLES}")
    template = self.config.get("chat_template")
    if not template:
      return (gemma_chat if self.chat_template == "gemma" else plain_chat)(turns, add_generation_prompt)
    bos = _token_text(self.config.get("bos_token")) or ""
    text = _render(template, messages=[{"role": t.role, "content": t.text} for t in turns],
                   add_generation_prompt=add_generation_prompt, bos_token=bos,
                   eos_token=_token_text(self.config.get("eos_token")) or "")
    return text[len(bos):] if bos and text.startswith(bos) else text


def _render(template: str, **context) -> str:
  """A chat template rendered as transformers does (sandboxed Jinja, trimmed blocks)."""
  def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)
  env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
  env.globals["raise_exception"] = raise_exception
  return env.from_string(template).render(**context)
