"""GRPO maths against hand-computed values (METHOD.md section 4; PPO's clipped objective)."""
import math

import jax.numpy as jnp
import numpy as np
import pytest

from spct_jax.train import rl


def test_advantages_are_group_normalised_and_zero_for_equal_rewards():
  r = jnp.array([1.0, -1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0])
  a = np.asarray(rl.group_advantages(r, 4))
  # group 1: mean -0.5, std sqrt(0.75)
  np.testing.assert_allclose(a[:4], np.array([1.5, -0.5, -0.5, -0.5]) / (math.sqrt(0.75) + 1e-6), rtol=1e-6)
  np.testing.assert_array_equal(a[4:], 0.0)


@pytest.mark.parametrize("adv, ratio, expected, clipped", [
    (2.0, 1.5, 2.0 * 1.2, True),    # A > 0, ratio above 1+eps: clipped at 1.2
    (2.0, 0.5, 2.0 * 0.5, False),   # A > 0, ratio below 1-eps: the unclipped r*A is smaller
    (-2.0, 1.5, -2.0 * 1.5, False),  # A < 0, ratio above: the unclipped r*A is smaller (more negative)
    (-2.0, 0.5, -2.0 * 0.8, True),   # A < 0, ratio below 1-eps: clipped at 0.8
    (2.0, 1.1, 2.0 * 1.1, False),   # inside the range: r*A
    (-2.0, 0.9, -2.0 * 0.9, False),
])
def test_clipped_surrogate_hand_values(adv, ratio, expected, clipped):
  logp_old = jnp.array([[-1.0]])
  logp = logp_old + math.log(ratio)
  obj, was = rl.clipped_surrogate(logp, logp_old, jnp.array([adv]), clip_eps=0.2)
  np.testing.assert_allclose(float(obj[0, 0]), expected, rtol=1e-6)
  assert bool(was[0, 0]) == clipped


def test_kl_estimators_hand_values():
  logp, logp_ref = jnp.array([[-1.0]]), jnp.array([[-1.5]])  # log(pi/pi_ref) = 0.5
  assert float(rl.kl_penalty(logp, logp_ref, "k1")[0, 0]) == pytest.approx(0.5)
  assert float(rl.kl_penalty(logp, logp_ref, "k2")[0, 0]) == pytest.approx(0.125)
  assert float(rl.kl_penalty(logp, logp_ref, "k3")[0, 0]) == pytest.approx(math.exp(-0.5) + 0.5 - 1.0)
  assert float(rl.kl_penalty(logp, logp, "k3")[0, 0]) == 0.0
  with pytest.raises(ValueError, match="grpo.kl_estimator='k4'"):
    rl.kl_penalty(logp, logp_ref, "k4")


def test_k3_is_unbiased_for_the_kl():
  # samples x ~ p; mean of k3 estimates KL(p||q)
  p = np.array([0.5, 0.3, 0.2]); q = np.array([0.2, 0.5, 0.3])
  x = np.random.default_rng(0).choice(3, size=200_000, p=p)
  est = rl.kl_penalty(jnp.log(p[x])[None], jnp.log(q[x])[None], "k3").mean()
  assert float(est) == pytest.approx(float((p * np.log(p / q)).sum()), abs=3e-3)


def test_aggregation_modes():
  per_tok = jnp.array([[1.0, 2.0, 3.0, 0.0], [4.0, 0.0, 0.0, 0.0]])
  mask = jnp.array([[1, 1, 1, 0], [1, 0, 0, 0]])
  s, c = rl.aggregate(per_tok, mask, "token-mean")
  assert float(s / c) == pytest.approx((1 + 2 + 3 + 4) / 4)
  s, c = rl.aggregate(per_tok, mask, "sequence-mean-token-mean")
  assert float(s / c) == pytest.approx((2.0 + 4.0) / 2)
  with pytest.raises(ValueError, match="grpo.aggregation='mean'"):
    rl.aggregate(per_tok, mask, "mean")
