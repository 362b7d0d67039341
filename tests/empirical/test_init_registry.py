"""A new init is one table entry: registered in a test and swept."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import empirical
from empirical import inits


def _ones(key, shape, dtype=jnp.float32):
  del key
  return jnp.ones(shape, dtype)


# Every weight sqrt(sigma_w2 / fan_in): deterministic, so the sweep's numbers are known exactly.
FLAT = inits.Init("flat", _ones, lambda sigma_w2, fan_in, fan_out: (sigma_w2 / fan_in) ** 0.5,
                  lambda fan_in, fan_out: 1.0)


def test_a_new_init_is_one_entry(monkeypatch):
  monkeypatch.setitem(inits.INITS, "flat", FLAT)
  assert "flat" in empirical.init_names() and empirical.init("flat") is FLAT
  x = np.array([[1.0, 2.0, -0.5, 0.25], [0.5, -1.0, 1.0, 2.0]], np.float32)
  width, sigma_w2 = 8, np.array([1.0, 2.0])
  ds = empirical.sweep(jax.random.key(0), activation="linear", width=width, depth=2,
                       sigma_w2=list(sigma_w2), sigma_b2=0.0, init="flat", n_seeds=2,
                       inputs=x, progress=False)
  assert str(ds.init.values) == "flat"
  # Linear, no bias, all weights sqrt(sigma_w2 / fan_in): every unit of layer 1 is
  # sqrt(sigma_w2 / 4) sum_i x_i, and layer 2 multiplies by sqrt(sigma_w2 / 8) * 8, so
  # q^1 = sigma_w2 / 4 * mean_b (sum_i x_bi)^2 and q^2 = 8 sigma_w2 q^1, for every seed.
  q1 = sigma_w2 / 4 * np.mean(x.sum(axis=1) ** 2)
  want = np.stack([q1, width * sigma_w2 * q1], axis=-1)[:, None, :]     # (sigma_w2, seed, layer)
  np.testing.assert_allclose(ds.q.transpose("sigma_w2", "seed", "layer").values,
                             np.broadcast_to(want, (2, 2, 2)), rtol=1e-6)   # float32 rounding
  np.testing.assert_allclose(ds.layer_sigma_w2.values, np.repeat(sigma_w2[:, None], 2, 1))
