"""Random nnx transformer blocks (empirical.transformer) against meanfield.Transformer.

Tolerances: the mean over ``n`` seeds of a per-network statistic has the standard error
``s / sqrt(n)`` (``s`` the seeds' standard deviation); the infinite-width theory also
misses an ``O(1/d)`` bias of the measured cosine, bounded here by ``1/d`` (at ``d = 64``
it measured about ``-0.02`` with 64 seeds). Each check is ``|mean - theory| <= 4 s /
sqrt(n) + 1/d``, and each test also checks that the tolerance is small against the
difference it is meant to see (Post-LN against Pre-LN).
"""

import jax
import numpy as np
import pytest

import empirical
import meanfield

D, T, DEPTH, SEEDS = 64, 16, 4, 16


def _sweep(norm, *, width=D, tokens=T, depth=DEPTH, seeds=SEEDS, activation="erf",
           sigma_w2=1.5, sigma_b2=0.05, c_input=0.2, key=0, **arch):
  net = meanfield.Network(activation=activation, sigma_w2=sigma_w2, sigma_b2=sigma_b2,
                          depth=depth, width=width,
                          arch=meanfield.Transformer(tokens=tokens, norm=norm, **arch))
  ds = empirical.sweep(jax.random.key(key), network=net, n_seeds=seeds, q_input=1.0,
                       c_input=c_input, progress=False)
  return ds, empirical.theory(ds)


def _agree(ds, th, name, width):
  """``(|mean - theory|, tolerance)`` per block of the statistic ``name``."""
  n = ds.sizes["seed"]
  mean, se = ds[name].mean("seed").values, ds[name].std("seed").values / np.sqrt(n)
  return np.abs(mean - th[name].values), 4 * se + 1 / width


def test_post_ln_blocks_match_the_theory_and_not_pre_ln():
  post, th_post = _sweep("post", heads=2)
  err, tol = _agree(post, th_post, "c", D)
  assert np.all(err <= tol), (err, tol)
  np.testing.assert_allclose(post.q.values, 1.0, atol=1e-5)      # LayerNorm, eps = 1e-6
  # Pre-LN's theory differs from Post-LN's by more than twice the tolerance at the last
  # block, so a measurement within it of one is outside it of the other; and it is
  th_pre = meanfield.propagate(empirical.networks(post).values[()].replace(
      arch=meanfield.Transformer(tokens=T, heads=2, norm="pre")), q_input=1.0, c_input=0.2)
  assert abs(th_post.c.values[-1] - th_pre.c[-1]) > 2 * tol[-1]
  assert abs(post.c.mean("seed").values[-1] - th_pre.c[-1]) > tol[-1]
  # uniform attention: entropy log T; the loss's own block has |dL/dx_i|^2 = 1
  np.testing.assert_allclose(post.entropy.values, np.log(T), rtol=1e-5)
  np.testing.assert_allclose(post.grad_x2.values[:, -1], 1.0, rtol=1e-5)
  assert np.all((post.stable_rank.values >= 1) & (post.stable_rank.values <= T))
  assert post.attrs["architecture"] == "transformer" and post.c.dims == ("seed", "layer")


@pytest.mark.slow
def test_pre_ln_blocks_match_the_theory():
  pre, th = _sweep("pre", heads=2)
  err, tol = _agree(pre, th, "c", D)
  assert np.all(err <= tol), (err, tol)
  err_q = np.abs(pre.q.mean("seed").values - th.q.values)
  assert np.all(err_q <= 4 * pre.q.std("seed").values / np.sqrt(SEEDS) + th.q.values / D)


@pytest.mark.slow
def test_causal_mask_and_store_resume(tmp_path):
  net = meanfield.Network(activation="relu", sigma_w2=2.0, depth=2, width=32,
                          arch=meanfield.Transformer(tokens=8, causal=True, beta=1.0))
  run = lambda: empirical.sweep(jax.random.key(3), network=net, n_seeds=3, c_input=0.5,
                                store=str(tmp_path), progress=False, chunk_size=2)
  first, again = run(), run()
  np.testing.assert_array_equal(first.c.values, again.c.values)
  assert np.all(first.entropy.values < np.log(8))                 # token 1 sees itself only
  with pytest.raises(ValueError, match="causal"):
    empirical.theory(first)


@pytest.mark.parametrize("kw, match", [
    (dict(init="orthogonal"), "`init`"), (dict(width=8), "`width`"),
    (dict(c_input=-0.1), "`c_input`"), (dict(inputs=np.ones((4, 32))), "`inputs`")])
def test_bad_sweep_arguments_raise(kw, match):
  args = dict(arch=meanfield.Transformer(tokens=8, heads=2), width=32, depth=2, sigma_w2=1.0,
              progress=False)
  args.update(kw)
  with pytest.raises(ValueError, match=match):
    empirical.sweep(jax.random.key(0), **args)


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["pre", "post", None])
def test_wide_blocks_match_the_theory(norm):
  """d = 256, T = 64, uniform attention, six blocks."""
  ds, th = _sweep(norm, width=256, tokens=64, depth=6, seeds=12, activation="relu",
                  sigma_w2=2.0, sigma_b2=0.0, heads=4)
  err, tol = _agree(ds, th, "c", 256)
  assert np.all(err <= tol), (err, tol)
  rel = ds.q.mean("seed").values / th.q.values - 1
  assert np.all(np.abs(rel) <= 4 * ds.q.std("seed").values / np.sqrt(12) / th.q.values
                + 1 / 256), rel


@pytest.mark.slow
def test_softmax_blocks_match_the_large_t_theory():
  """Post-LN, beta = 4 above beta_c = sqrt(2 / (1 - c)): T = 256 tokens, d = 512.

  Where the theory holds: at T = 64 the large-T theory's error grows to about 4 standard
  errors by block 5 (finite-T corrections, docs/transformer.md); here, three blocks.
  """
  ds, th = _sweep("post", width=512, tokens=256, depth=3, seeds=8, activation="relu",
                  sigma_w2=0.5, sigma_b2=0.0, beta=4.0)
  err, tol = _agree(ds, th, "c", 512)
  assert np.all(err <= tol), (err, tol)
  uniform = meanfield.propagate(empirical.networks(ds).values[()].replace(
      arch=meanfield.Transformer(tokens=256, norm="post")), q_input=1.0, c_input=0.2)
  assert np.all(np.abs(uniform.c - th.c.values) > 3 * tol)     # softmax is not uniform here


@pytest.mark.slow
def test_critical_init_strength_keeps_random_blocks_apart():
  """meanfield.critical_init's residual strength for a transformer, on random blocks: the
  measured token correlation after the blocks is the c_max it was asked for, and the given
  unit strengths measure far above it."""
  arch = meanfield.Transformer(tokens=T, norm="post")
  with jax.enable_x64(True):
    ci = meanfield.critical_init("relu", sigma_b2=0.0, depth=DEPTH, arch=arch, c_max=0.7,
                                 c_input=0.2)
  net = ci.network(width=D)
  ds = empirical.sweep(jax.random.key(4), network=net, n_seeds=SEEDS, q_input=1.0,
                       c_input=0.2, progress=False)
  err, tol = _agree(ds, empirical.theory(ds), "c", D)
  assert np.all(err <= tol), (err, tol)
  last = ds.c.mean("seed").values[-1]
  assert abs(last - 0.7) <= tol[-1]
  assert ci.extra["c_given"] - 0.7 > 2 * tol[-1]         # the strength made the difference
