"""The GRM as the reward of a policy's RL, in a plain JAX loop (the README's example).

A toy policy (a softmax over the candidate answers of one query, parameters = one logit each)
samples a group of G answers per step; the GRM judges the group in one call and returns G rewards;
a group-normalised REINFORCE step moves the policy. The policy drifts to the answer the GRM prefers.

    python scripts/grm_reward_example.py --grm=bundled:warmup --steps=15
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

from spct_jax import api
from spct_jax.data import synthetic


def train(grm: api.GRM, query, candidates, *, steps: int = 15, group: int = 4, k: int = 4, lr: float = 0.5,
          seed: int = 0, sign: float = 1.0) -> list[np.ndarray]:
  """The policy's probabilities over `candidates` after every step (the first: before any)."""
  reward = grm.reward_fn(k=k)
  logits = jnp.zeros(len(candidates))
  opt = optax.adam(lr)
  opt_state = opt.init(logits)
  rng = jax.random.key(seed)
  history = [np.asarray(jax.nn.softmax(logits))]

  def loss(logits, picks, advantages):
    return -(advantages * jax.nn.log_softmax(logits)[picks]).mean()

  for step in range(steps):
    rng, key = jax.random.split(rng)
    picks = jax.random.categorical(key, logits, shape=(group,))                 # the rollout
    r = reward(query, [candidates[int(i)] for i in picks], seed=step)           # G rewards, one GRM call
    adv = sign * (r - r.mean()) / (r.std() + 1e-6)
    grads = jax.grad(loss)(logits, picks, jnp.asarray(adv))
    updates, opt_state = opt.update(grads, opt_state)
    logits = optax.apply_updates(logits, updates)
    history.append(np.asarray(jax.nn.softmax(logits)))
  return history


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--grm", default="bundled:warmup")
  parser.add_argument("--steps", type=int, default=15)
  args = parser.parse_args()
  grm = api.GRM.load(args.grm)
  item = synthetic.generate(1, seed=3, families=("bias",), n_responses=(3,))[0]
  prefs = grm.score(item.context, item.responses, k=16).voted["sum"].scores
  print("query:", item.query)
  for c, p in zip(item.responses, prefs):
    print(f"  GRM sum over 16 critiques {p:5.1f}  {c}")
  history = train(grm, item.context, list(item.responses), steps=args.steps)
  for step in (0, len(history) - 1):
    print(f"step {step:2d}: policy " + " ".join(f"{p:.2f}" for p in history[step]))


if __name__ == "__main__":
  main()
