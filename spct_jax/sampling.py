"""The k-critique sampler: prefill B prompts once, decode B*k completions together.

    out = sample(cfg, params, prompt_tokens, prompt_mask, rng, k=16, max_new_tokens=256,
                 sampling=Temperature(0.5), stop_ids=(tok.eos_id,))
    out.tokens    [B, k, N] int32    completion tokens; `pad_id` after the stop token
    out.lengths   [B, k]    int32    completion length, the stop token included
    out.logprobs  [B, k, N] float32  log-prob of each sampled token; 0 after the stop token
    out.done      [B, k]    bool     the row produced a stop token (False: the budget ran out)

How it runs (one `jax.jit`, compiled once per (B, prompt bucket, k, budget, method)):
1. the B left-padded prompts are padded on the left to a length bucket (`pipeline.bucket_length`), so a
   new prompt length does not recompile, and prefilled once into a KV cache of B rows;
2. that cache becomes the shared prefix of a decode cache of B*k rows (`transformer.share_prefix`;
   row b*k + j is sample j of prompt b) whose own slots hold only the generated tokens: the prompt's
   KV is stored and read once per prompt, so neither the prefill nor the prompt's memory and
   per-step reads grow with k; under a mesh the B*k rows are split over the data axes
   (`mesh.BATCH_AXES`), the prefix is placed by XLA and the params follow the model's logical-axis
   rules;
3. one `jax.lax.while_loop` over a `DecodeState` decodes all B*k rows in lockstep and stops when
   every row has written a stop token or the budget is spent.

Randomness: `rng` is B keys, one per prompt, or one key (prompt b then gets fold_in(rng, b)).
Sample j of prompt b uses fold_in(key_b, j), and its step t uses fold_in(that, t), so the draws
of a prompt depend only on its own key: a prompt gives the same samples alone or inside any batch
(with its own key), and the same key gives the same samples.

Log-probs: `logprobs` are log softmax(logits / temperature) at the sampled token, i.e. taken
after the temperature and BEFORE any top-k/top-p truncation. That is the distribution the trainer
recomputes (`spct_jax.train.sft.token_logprobs(..., temperature)`) and the one GRPO's ratio
pi_theta / pi_old needs. For `Greedy` they are log softmax of the raw logits (temperature 1).
`completion_batch` builds the [B*k, T+N] prompt + completion batch for that recomputation.

On CPU the B*k-row cache is a fresh allocation per call whose page faults can cost more than
writing it; running the process with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (transparent huge
pages) removes most of that (`python -m spct_jax.bench sampler` does so). Not for a GRPO stage:
there the optimizer step right after each sampler call measured 3-4 s slower with it (`medium`,
docs/benchmarks.md, "GRPO step").
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Any, Callable, ClassVar, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from spct_jax import mesh as mesh_lib
from spct_jax.data import pipeline
from spct_jax.example import user
from spct_jax.model import transformer
from spct_jax.model.config import ModelConfig

Array = jax.Array


# ----------------------------------------------------------------------------------------------
# Sampling methods: small frozen (hashable) dataclasses, usable as jit static arguments.


def _is_concrete_number(x) -> bool:
  return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


@dataclasses.dataclass(frozen=True)
class TopK:
  """Truncation: keeps the k largest logits (ties with the k-th largest are kept too)."""
  k: int

  def __post_init__(self):
    if _is_concrete_number(self.k) and (int(self.k) != self.k or self.k < 1):
      raise ValueError(f"TopK.k={self.k!r}: must be a positive int")

  def truncate(self, logits_V: Array) -> Array:
    """logits [V] -> logits [V] with the excluded entries set to -inf."""
    v = logits_V.shape[-1]
    if _is_concrete_number(self.k):  # a partial selection of k, not a sort of the vocabulary
      kth = jax.lax.top_k(logits_V, min(int(self.k), v))[0][-1]
    else:  # k traced: a sort
      kth = jnp.sort(logits_V)[v - jnp.clip(self.k, 1, v)]
    return jnp.where(logits_V >= kth, logits_V, -jnp.inf)


@dataclasses.dataclass(frozen=True)
class TopP:
  """Truncation (nucleus): keeps the most likely tokens until their mass reaches p.

  A token is kept when the probability mass of the tokens ranked above it is < p (so the most
  likely token is always kept); ties with the last kept logit are kept too.
  """
  p: float

  def __post_init__(self):
    if _is_concrete_number(self.p) and not 0.0 < self.p <= 1.0:
      raise ValueError(f"TopP.p={self.p!r}: must be in (0, 1]")

  def truncate(self, logits_V: Array) -> Array:
    """logits [V] -> logits [V] with the excluded entries set to -inf."""
    desc = jnp.sort(logits_V)[::-1]
    probs = jax.nn.softmax(desc)
    mass_before = jnp.cumsum(probs) - probs
    threshold = jnp.min(jnp.where(mass_before < self.p, desc, jnp.inf))
    return jnp.where(logits_V >= threshold, logits_V, -jnp.inf)


@dataclasses.dataclass(frozen=True)
class Greedy:
  """The argmax token. Its log-probs are those of softmax(raw logits)."""
  temperature: ClassVar[float] = 1.0

  def choose(self, u: Array, logits_V: Array) -> tuple[Array, Array]:
    """u: the row's uniform draw (unused); logits [V] float32 -> (token [] int32, its log-prob)."""
    del u
    tok = jnp.argmax(logits_V).astype(jnp.int32)
    return tok, logits_V[tok] - jax.nn.logsumexp(logits_V)


@dataclasses.dataclass(frozen=True)
class Temperature:
  """Random sampling from softmax(logits / temperature), truncated by `filters` in order.

  Composes: `Temperature(0.7, (TopK(40), TopP(0.95)))` is temperature, then top-k, then top-p
  (the order of Hugging Face's default logits processors).
  """
  temperature: float = 1.0
  filters: tuple[TopK | TopP, ...] = ()

  def __post_init__(self):
    if _is_concrete_number(self.temperature) and not self.temperature > 0:
      raise ValueError(f"Temperature.temperature={self.temperature!r}: must be > 0 (use Greedy)")
    object.__setattr__(self, "filters", tuple(self.filters))
    for f in self.filters:
      if not isinstance(f, (TopK, TopP)):
        raise TypeError(f"Temperature.filters: {f!r} is not a TopK or TopP")

  def choose(self, u: Array, logits_V: Array) -> tuple[Array, Array]:
    """u: the row's uniform draw in [0, 1); logits [V] float32 -> (token [] int32, its log-prob
    under softmax(logits / temperature), before truncation).

    Inverse-CDF sampling: one uniform draw per token instead of V Gumbel draws (the PRNG is
    the costly part on CPU). Truncated tokens have probability 0 and are never drawn.
    """
    x = logits_V.astype(jnp.float32) / self.temperature
    top = jnp.max(x)
    e = jnp.exp(x - top)                                       # one exp pass serves both uses:
    lse = top + jnp.log(jnp.sum(e))                            # the log-prob's normaliser,
    kept = x
    for f in self.filters:
      kept = f.truncate(kept)
    p = e if not self.filters else jnp.where(kept > -jnp.inf, e, 0.0)  # and the (truncated) weights
    token = _inverse_cdf(p, u)
    return token, x[token] - lse


def _first_above(cum_N: Array, target: Array, w_N: Array) -> Array:
  """The first index whose cumulative weight exceeds target, never one of weight 0 (guards
  against rounding: target is clipped at 0, and the result at the last index of weight > 0)."""
  i = jnp.sum(cum_N <= jnp.maximum(target, 0.0))
  last = w_N.shape[-1] - 1 - jnp.argmax(w_N[::-1] > 0)
  return jnp.minimum(i, last)


def _inverse_cdf(p_V: Array, u: Array) -> Array:
  """The token whose cumulative weight first exceeds u * sum(p), p [V] >= 0 with sum > 0.

  Two levels, each a scan of about sqrt(V) entries: the cumulative sums of blocks of the
  vocabulary pick a block, then that block's own cumulative sum picks the token (a scan over all
  V entries per row and step is what XLA:CPU runs slowly)."""
  v = p_V.shape[-1]
  width = 1 << max(0, (v.bit_length() + 1) // 2)             # a power of two, ~sqrt(V)
  blocks = jnp.pad(p_V, (0, -v % width)).reshape(-1, width)   # [V / width, width], zeros padded
  sums = jnp.sum(blocks, axis=1)
  cum = jnp.cumsum(sums)
  target = u * cum[-1]
  j = _first_above(cum, target, sums)
  row = blocks[j]
  i = _first_above(jnp.cumsum(row), target - (cum[j] - sums[j]), row)
  return (j * width + i).astype(jnp.int32)


Sampling = Greedy | Temperature


# ----------------------------------------------------------------------------------------------
# Outputs and the decode state.


@flax.struct.dataclass
class SampleOutput:
  """k completions for each of B prompts (N = max_new_tokens)."""
  tokens: Array    # [B, k, N] int32, pad_id after the stop token
  lengths: Array   # [B, k] int32, stop token included
  logprobs: Array  # [B, k, N] float32, log softmax(logits / temperature) at the token; 0 after stop
  done: Array      # [B, k] bool, a stop token was produced


@flax.struct.dataclass
class DecodeState:
  """The while_loop carry; R = B*k rows."""
  step: Array      # [] int32, column of the next token to write
  cache: Any       # KV cache of R rows (transformer.init_cache)
  last: Array      # [R] int32, the token written last (fed to the model next)
  tokens: Array    # [R, N] int32
  logprobs: Array  # [R, N] float32
  lengths: Array   # [R] int32
  done: Array      # [R] bool


# ----------------------------------------------------------------------------------------------
# Host-side helpers: buckets, padding, keys, validation.


def _check_prompts(tokens: np.ndarray, mask: np.ndarray) -> None:
  if tokens.ndim != 2 or mask.shape != tokens.shape:
    raise ValueError(f"prompt_tokens {tokens.shape} and prompt_mask {mask.shape} must both be [B, T]")
  if tokens.shape[0] == 0:
    raise ValueError("prompt_tokens has no rows")
  empty = np.flatnonzero(~mask.any(axis=1))
  if empty.size:
    raise ValueError(f"prompt_mask rows {empty.tolist()} have no real token; every prompt needs one")
  # left-padded: once a row turns True it stays True.
  bad = np.flatnonzero((np.diff(mask.astype(np.int8), axis=1) < 0).any(axis=1))
  if bad.size:
    raise ValueError(f"prompt_mask rows {bad.tolist()} are not left-padded (padding after a real token)")


def pad_prompts(prompt_tokens: Any, prompt_mask: Any, length: int, pad_id: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
  """Left-padded [B, T] prompts -> [B, length]: drops all-padding left columns, pads on the left."""
  tokens = np.asarray(prompt_tokens)
  mask = np.asarray(prompt_mask).astype(bool)
  real = int(mask.sum(axis=1).max())
  if real > length:
    raise ValueError(f"prompt of {real} tokens does not fit length {length}")
  tokens, mask = tokens[:, tokens.shape[1] - real:], mask[:, mask.shape[1] - real:]
  out_t = np.full((tokens.shape[0], length), pad_id, np.int32)
  out_m = np.zeros((tokens.shape[0], length), bool)
  out_t[:, length - real:] = np.where(mask, tokens, pad_id)
  out_m[:, length - real:] = mask
  return out_t, out_m


def prompt_keys(rng: Any, batch: int) -> Array:
  """One typed PRNG key per prompt [B]: `rng` is one key (prompt b gets fold_in(rng, b), which
  does not depend on B) or already B keys (raw uint32 key data is accepted too)."""
  rng = jnp.asarray(rng) if not isinstance(rng, jax.Array) else rng
  if not jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
    if rng.dtype != jnp.uint32 or rng.shape[-1:] != (2,):
      raise ValueError(f"rng {rng.dtype}{tuple(rng.shape)}: expected a PRNG key or raw uint32 key data")
    rng = jax.random.wrap_key_data(rng)
  if rng.shape == ():
    return jax.vmap(lambda b: jax.random.fold_in(rng, b))(jnp.arange(batch))
  if rng.shape == (batch,):
    return rng
  raise ValueError(f"rng has shape {tuple(rng.shape)}: expected one key or {batch} keys (one per prompt)")


def shard_params(cfg: ModelConfig, params: Any, mesh: Mesh) -> Any:
  """Places params on `mesh` by the model's logical-axis rules (no-op when already there)."""
  shardings = mesh_lib.shardings_for(transformer.logical_axes(cfg), params, mesh)
  return mesh_lib.put(params, shardings)


# ----------------------------------------------------------------------------------------------
# The jitted core.


def _rows(x: Array, mesh: Mesh | None) -> Array:
  """Constrains axis 0 (the rows) of x to the mesh's data axes; other axes left to XLA."""
  if mesh is None:
    return x
  spec = P(mesh_lib.BATCH_AXES, *([P.UNCONSTRAINED] * (x.ndim - 1)))
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


def _cache_rows(cache: Any, r: int, mesh: Mesh | None) -> Any:
  """`_rows` on the cache leaves of the R sample rows; a shared prefix (one row per prompt) is
  left to XLA."""
  return jax.tree.map(lambda x: _rows(x, mesh) if x.shape[0] == r else x, cache)


def _draws(keys_R: Array, n: int) -> Array:
  """[R, n] uniform draws, made once before decoding: row r's draw at step t is
  uniform(fold_in(keys_R[r], t)), the same stream whatever the batch."""
  return jax.vmap(lambda key: jax.vmap(lambda t: jax.random.uniform(jax.random.fold_in(key, t)))(
      jnp.arange(n)))(keys_R)


def _pick(sampling: Sampling, u_RxN: Array, logits_RxV: Array, step: Array) -> tuple[Array, Array]:
  """Samples one token per row; returns (tokens [R] int32, logprobs [R] float32)."""
  u_R = jax.lax.dynamic_index_in_dim(u_RxN, step, axis=1, keepdims=False)
  return jax.vmap(sampling.choose)(u_R, logits_RxV.astype(jnp.float32))


def _write(state: DecodeState, tok_R: Array, lp_R: Array, stop_ids: tuple[int, ...],
           pad_id: int) -> DecodeState:
  """Writes the step's tokens into live rows; finished rows get pad_id and log-prob 0."""
  live = ~state.done
  tok_R = jnp.where(live, tok_R, pad_id)
  lp_R = jnp.where(live, lp_R, 0.0)
  col = state.step
  return state.replace(
      step=col + 1,
      last=tok_R,
      tokens=jax.lax.dynamic_update_slice_in_dim(state.tokens, tok_R[:, None], col, axis=1),
      logprobs=jax.lax.dynamic_update_slice_in_dim(state.logprobs, lp_R[:, None], col, axis=1),
      lengths=state.lengths + live.astype(jnp.int32),
      done=state.done | (live & jnp.isin(tok_R, jnp.asarray(stop_ids, jnp.int32))))


def _last_logits(cfg: ModelConfig, params: Any, hidden: Array) -> Array:
  """The LM head at the prompt's last position only ([B, V] float32; prompts are left-padded):
  the prefill needs no other logits (a [B, T, V] head costs more than the layers for a large
  vocabulary)."""
  return transformer.head_logits(cfg, hidden[:, -1], transformer.head_weight(cfg, params))


@functools.partial(jax.jit, static_argnames=("cfg", "k", "max_new_tokens", "sampling", "stop_ids",
                                              "pad_id", "mesh", "share_prefix"))
def _sample_jit(params: Any, prompt_tokens: Array, prompt_mask: Array, keys_B: Array, *,
                cfg: ModelConfig, k: int, max_new_tokens: int, sampling: Sampling,
                stop_ids: tuple[int, ...], pad_id: int, mesh: Mesh | None,
                share_prefix: bool) -> SampleOutput:
  """prompt_tokens, prompt_mask: [B, T] left-padded; keys_B: [B] typed keys."""
  model = transformer.Transformer(cfg)
  b, t = prompt_tokens.shape
  r, n = b * k, max_new_tokens
  max_len = t + n
  if share_prefix:  # the prompt's KV once per prompt, each sample's own KV after it
    cache = transformer.init_cache(cfg, b, t)
    hidden, cache = model.apply({"params": params}, prompt_tokens, pad_mask=prompt_mask, cache=cache, head=False)
    cache = transformer.share_prefix(cfg, cache, k, n)
    last_logits = jnp.repeat(_last_logits(cfg, params, hidden), k, axis=0)  # [R, V]
  else:  # the baseline: every sample prefills its own copy of the prompt
    tokens_R = _rows(jnp.repeat(prompt_tokens, k, axis=0), mesh)
    mask_R = _rows(jnp.repeat(prompt_mask, k, axis=0), mesh)
    cache = jax.tree.map(lambda x: _rows(x, mesh), transformer.init_cache(cfg, r, max_len))
    hidden, cache = model.apply({"params": params}, tokens_R, pad_mask=mask_R, cache=cache, head=False)
    last_logits = _last_logits(cfg, params, hidden)
  cache = _cache_rows(cache, r, mesh)
  last_logits = _rows(last_logits, mesh)

  keys_R = jax.vmap(lambda key: jax.vmap(lambda j: jax.random.fold_in(key, j))(jnp.arange(k)))(keys_B)
  keys_R = _rows(keys_R.reshape(r), mesh)
  u_RxN = _rows(_draws(keys_R, n), mesh)

  state = DecodeState(
      step=jnp.zeros((), jnp.int32), cache=cache, last=jnp.full((r,), pad_id, jnp.int32),
      tokens=_rows(jnp.full((r, n), pad_id, jnp.int32), mesh),
      logprobs=_rows(jnp.zeros((r, n), jnp.float32), mesh),
      lengths=jnp.zeros((r,), jnp.int32), done=jnp.zeros((r,), bool))
  state = _write(state, *_pick(sampling, u_RxN, last_logits, state.step), stop_ids, pad_id)

  def cond(s: DecodeState) -> Array:
    return (s.step < n) & ~jnp.all(s.done)

  def body(s: DecodeState) -> DecodeState:
    logits, cache = model.apply({"params": params}, s.last[:, None], cache=s.cache)
    s = s.replace(cache=_cache_rows(cache, r, mesh))
    return _write(s, *_pick(sampling, u_RxN, logits[:, 0], s.step), stop_ids, pad_id)

  state = jax.lax.while_loop(cond, body, state)
  return SampleOutput(tokens=state.tokens.reshape(b, k, n), lengths=state.lengths.reshape(b, k),
                      logprobs=state.logprobs.reshape(b, k, n), done=state.done.reshape(b, k))


# ----------------------------------------------------------------------------------------------
# Public API.


def _prepare(cfg: ModelConfig, params: Any, prompt_tokens: Any, prompt_mask: Any, rng: Any, *,
             k: int, max_new_tokens: int, sampling: Sampling, stop_ids: Sequence[int], pad_id: int,
             mesh: Mesh | None, buckets: Sequence[int] | None, share_prefix: bool
             ) -> tuple[tuple[Any, ...], dict[str, Any]]:
  """Checks and pads the inputs; returns (dynamic args, static kwargs) of `_sample_jit`."""
  tokens, mask = np.asarray(prompt_tokens), np.asarray(prompt_mask).astype(bool)
  _check_prompts(tokens, mask)
  if not isinstance(k, (int, np.integer)) or k < 1:
    raise ValueError(f"k={k!r}: must be a positive int")
  if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 1:
    raise ValueError(f"max_new_tokens={max_new_tokens!r}: must be a positive int")
  if not isinstance(sampling, (Greedy, Temperature)):
    raise TypeError(f"sampling={sampling!r}: expected Greedy() or Temperature(...)")
  stop_ids = tuple(int(s) for s in stop_ids)
  for s in stop_ids + (pad_id,):
    if not 0 <= s < cfg.vocab_size:
      raise ValueError(f"stop/pad id {s} is outside the vocabulary [0, {cfg.vocab_size})")
  length = pipeline.bucket_length(int(mask.sum(axis=1).max()), buckets)
  if length + max_new_tokens > cfg.max_len:
    raise ValueError(f"prompt bucket {length} + max_new_tokens {max_new_tokens} exceeds "
                     f"ModelConfig.max_len={cfg.max_len}")
  tokens, mask = pad_prompts(tokens, mask, length, pad_id)
  keys = prompt_keys(rng, tokens.shape[0])
  if mesh is not None:
    mesh_lib.check_batch(tokens.shape[0] * k, mesh, key="B*k (prompts x samples)")
    params = shard_params(cfg, params, mesh)
    tokens, mask, keys = mesh_lib.put((tokens, mask, keys), mesh_lib.replicated(mesh))
  static = dict(cfg=cfg, k=int(k), max_new_tokens=int(max_new_tokens), sampling=sampling,
                stop_ids=stop_ids, pad_id=int(pad_id), mesh=mesh, share_prefix=bool(share_prefix))
  return (params, tokens, mask, keys), static


def sample(cfg: ModelConfig, params: Any, prompt_tokens: Any, prompt_mask: Any, rng: Any, *,
           k: int, max_new_tokens: int, sampling: Sampling = Greedy(),
           stop_ids: Sequence[int] = (), pad_id: int = 0, mesh: Mesh | None = None,
           buckets: Sequence[int] | None = None, share_prefix: bool = True) -> SampleOutput:
  """Draws k completions for each of B left-padded prompts (see the module docstring).

  prompt_tokens: [B, T] int32, left-padded; prompt_mask: [B, T] bool, True on real tokens.
  rng: one PRNG key or [B] keys (one per prompt). sampling: Greedy() or Temperature(t, filters).
  stop_ids: tokens that end a row (e.g. (eos_id, end_of_turn_id)); () decodes the full budget.
  pad_id: written after a row's stop token (and used to pad prompts to their bucket).
  mesh: rows B*k are split over its data axes (B*k must divide), params by the logical rules,
    and the model's activation annotations apply (`mesh.activation_sharding`).
  buckets: prompt-length buckets (default: powers of two >= 16).
  share_prefix: False prefills the prompt k times (the usual JAX sampler; for benchmarks).
  Returns SampleOutput with tokens/logprobs [B, k, max_new_tokens], lengths/done [B, k].
  """
  args, static = _prepare(cfg, params, prompt_tokens, prompt_mask, rng, k=k,
                          max_new_tokens=max_new_tokens, sampling=sampling, stop_ids=stop_ids,
                          pad_id=pad_id, mesh=mesh, buckets=buckets, share_prefix=share_prefix)
  with _activation_sharding(mesh):
    return _sample_jit(*args, **static)


def _activation_sharding(mesh: Mesh | None):
  """The model's activation annotations take effect under a mesh (traced inside this context)."""
  return contextlib.nullcontext() if mesh is None else mesh_lib.activation_sharding(mesh)


def compile_sample(cfg: ModelConfig, params: Any, prompt_tokens: Any, prompt_mask: Any, rng: Any,
                   **kwargs: Any) -> tuple[Callable[[], SampleOutput], jax.stages.Compiled]:
  """Ahead-of-time compiles `sample` for these inputs (same keyword arguments).

  Returns (run, compiled): run() executes it on these inputs (benchmarks time it without the
  compile); compiled.memory_analysis() / cost_analysis() describe the executable.
  """
  defaults = dict(sampling=Greedy(), stop_ids=(), pad_id=0, mesh=None, buckets=None, share_prefix=True)
  args, static = _prepare(cfg, params, prompt_tokens, prompt_mask, rng, **{**defaults, **kwargs})
  with _activation_sharding(static["mesh"]):
    compiled = _sample_jit.lower(*args, **static).compile()
  return (lambda: compiled(*args)), compiled


def completion_batch(prompt_tokens: Any, prompt_mask: Any, out: SampleOutput) -> dict[str, Array]:
  """Prompt + completion rows for the trainer's log-prob recomputation (and RFT's SFT batch).

  prompt_tokens, prompt_mask: the [B, T] left-padded prompts given to `sample`.
  Returns {'tokens', 'pad_mask', 'loss_mask'}: [B*k, T+N]; row b*k + j is sample j of prompt b;
  loss_mask is True on the completion tokens (stop token included). Then
      sft.token_logprobs(model, params, tokens, pad_mask, temperature, start=T - 1)
  equals out.logprobs.reshape(B*k, N) wherever loss_mask[:, T:] is True.
  """
  b, k, n = out.tokens.shape
  prompt_tokens = jnp.repeat(jnp.asarray(prompt_tokens, jnp.int32), k, axis=0)
  prompt_mask = jnp.repeat(jnp.asarray(prompt_mask, bool), k, axis=0)
  comp = out.tokens.reshape(b * k, n)
  comp_mask = jnp.arange(n)[None, :] < out.lengths.reshape(b * k, 1)
  return {"tokens": jnp.concatenate([prompt_tokens, comp], axis=1),
          "pad_mask": jnp.concatenate([prompt_mask, comp_mask], axis=1),
          "loss_mask": jnp.concatenate([jnp.zeros_like(prompt_mask), comp_mask], axis=1)}


def generate(texts: Sequence[str], *, cfg: ModelConfig, params: Any, tokenizer: Any, k: int = 1,
             max_new_tokens: int = 256, sampling: Sampling = Greedy(), rng: Any = None,
             chat: bool = False, stop_ids: Sequence[int] | None = None, mesh: Mesh | None = None,
             buckets: Sequence[int] | None = None) -> list[list[str]]:
  """k completions (decoded text, stop token dropped) for each prompt string.

  texts: prompt strings already in the chat format (with the generation prompt); with chat=True
  each text is a user message wrapped by `tokenizer.chat_prompt`.
  rng: PRNG key (None: jax.random.key(0), so repeated calls give the same samples).
  stop_ids: default the tokenizer's EOS and end-of-turn ids.
  """
  if isinstance(texts, str):
    raise TypeError("generate(texts=...) takes a list of prompt strings, got one str")
  if chat:
    texts = [tokenizer.chat_prompt([user(t)], add_generation_prompt=True) for t in texts]
  if stop_ids is None:
    stop_ids = (tokenizer.eos_id, *tokenizer.end_of_turn_ids)
  seqs = [tokenizer.encode(t, add_bos=True) for t in texts]
  tokens, mask = pipeline.pad(seqs, tokenizer.pad_id, left=True)
  rng = jax.random.key(0) if rng is None else rng
  out = sample(cfg, params, tokens, mask, rng, k=k, max_new_tokens=max_new_tokens,
               sampling=sampling, stop_ids=stop_ids, pad_id=tokenizer.pad_id, mesh=mesh,
               buckets=buckets)
  toks, lengths, done = mesh_lib.fetch((out.tokens, out.lengths, out.done))
  return [[tokenizer.decode(toks[i, j, :lengths[i, j] - int(done[i, j])].tolist()) for j in range(k)]
          for i in range(len(texts))]
