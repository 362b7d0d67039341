"""empirical.diagnose on attention models: token statistics, attention entropy, the two
Lyapunov exponents and the token verdict.

Independent references: meanfield.Transformer's exact uniform-attention theory (zero
queries make every attention weight 1/T), log T for the entropy of uniform attention, and
the token statistics recomputed by hand from the model's own submodules.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import empirical
import meanfield
from empirical.models import network_key

KEY = jax.random.key(11)
TOKENS, WIDTH, DEPTH, SEEDS = 8, 64, 6, 4
normal = jax.nn.initializers.variance_scaling          # N(0, scale / fan_in) below
zeros = jax.nn.initializers.zeros


class Block(nnx.Module):
  """Post-LN (x <- LN(x + alpha f(x))) or Pre-LN (x <- x + alpha f(LN(x))), one head, ReLU MLP
  of sigma_w2 = 2, no biases; ``query_var`` the query kernel's variance (0: uniform attention)."""

  def __init__(self, d, *, norm, alpha, query_var, rngs, phi=nnx.relu, sigma_w2=2.0,
               alpha_mlp=None):
    self.norm, self.alpha, self.phi = norm, alpha, phi
    self.alpha_mlp = alpha if alpha_mlp is None else alpha_mlp
    q_init = zeros if query_var == 0 else normal(query_var, "fan_in", "normal")
    self.attn = nnx.MultiHeadAttention(
        num_heads=1, in_features=d, decode=False, use_bias=False, rngs=rngs,
        kernel_init=normal(1.0, "fan_in", "normal"))
    self.attn.query.kernel[...] = q_init(rngs.params(), self.attn.query.kernel.shape)
    init = normal(sigma_w2, "fan_in", "normal")
    self.fc1 = nnx.Linear(d, d, use_bias=False, kernel_init=init, rngs=rngs)
    self.fc2 = nnx.Linear(d, d, use_bias=False, kernel_init=init, rngs=rngs)
    self.ln1, self.ln2 = nnx.LayerNorm(d, rngs=rngs), nnx.LayerNorm(d, rngs=rngs)

  def __call__(self, x):
    mlp = lambda h: self.fc2(self.phi(self.fc1(h)))                        # noqa: E731
    if self.norm == "post":
      x = self.ln1(x + self.alpha * self.attn(x))
      return self.ln2(x + self.alpha_mlp * mlp(x))
    x = x + self.alpha * self.attn(self.ln1(x))
    return x + self.alpha_mlp * mlp(self.ln2(x))


class Net(nnx.Module):
  def __init__(self, d=WIDTH, depth=DEPTH, *, norm="post", alpha=1.0, query_var=0.0, rngs,
               **mlp):
    self.blocks = nnx.List([Block(d, norm=norm, alpha=alpha, query_var=query_var, rngs=rngs,
                                  **mlp) for _ in range(depth)])

  def __call__(self, x):
    for block in self.blocks:
      x = block(x)
    return x


def _tokens(c, batch=4, key=jax.random.key(3)):
  """``batch`` inputs of TOKENS unit tokens (|x_i|^2 / d = 1) with every pair's cosine ``c``."""
  e = jnp.linalg.qr(jax.random.normal(key, (batch, WIDTH, TOKENS + 1)))[0]
  common = e[:, :, :1].transpose(0, 2, 1)
  return math.sqrt(WIDTH) * (math.sqrt(c) * common
                             + math.sqrt(1 - c) * e[:, :, 1:].transpose(0, 2, 1))


@pytest.fixture(scope="module")
def uniform_post():
  ds = empirical.diagnose(lambda rngs: Net(rngs=rngs), _tokens(0.2), key=KEY, n_seeds=SEEDS,
                          n_projections=1, jacobian=False, progress=False)
  return ds


def test_uniform_attention_against_the_transformer_theory(uniform_post):
  ds = uniform_post
  # zero queries: every weight 1/T, entropy log T to rounding
  assert ds.sizes["attention"] == DEPTH and list(ds["keys"].values) == [TOKENS] * DEPTH
  np.testing.assert_allclose(ds["attention_entropy"].values, math.log(TOKENS), rtol=1e-5)
  # the token correlation after each block (the second residual addition, before ln2: LN
  # rescales each token, so the cosines are those after the block up to the feature mean)
  net = meanfield.Network(activation="relu", sigma_w2=2.0, sigma_b2=0.0, depth=DEPTH,
                          width=WIDTH, arch=meanfield.Transformer(tokens=TOKENS, norm="post"))
  with jax.enable_x64(True):
    theory = np.asarray(meanfield.propagate(net, q_input=1.0, c_input=0.2).c)
  fit = ds.sel(layer=ds["in_fit"])
  assert fit.sizes["layer"] == 2 * DEPTH                   # two residual additions per block
  got = fit["token_c"].isel(layer=slice(1, None, 2))
  se = got.std("seed", ddof=1).values / math.sqrt(SEEDS)
  # four standard errors of the seeds' mean plus 1/d, the infinite-width theory's bias of a
  # measured cosine (the tolerance of tests/empirical/test_transformer.py)
  np.testing.assert_array_less(np.abs(got.mean("seed").values - theory), 4 * se + 1 / WIDTH)
  # the angle exponent per block: log chi_1 = log(1/2) (Post-LN, ReLU, unit strengths);
  # docs/transformer.md), over the MLP's residual additions: one per block
  gaps = np.log(fit["aligned_gap"].values)                    # (seed, layer)
  steps = np.diff(gaps[:, 1::2], axis=1)                      # log ratio per block
  assert abs(steps.mean() - math.log(0.5)) < 4 * steps.std(ddof=1) / math.sqrt(steps.size) \
      + 1 / WIDTH
  # the attribute: the mean log ratio per layer of the fit, from its first to its last layer
  n = fit.sizes["layer"]
  assert ds.attrs["angle_exponent"] == pytest.approx(np.mean(gaps[:, -1] - gaps[:, 0]) / (n - 1))
  assert ds.attrs["tokens"] == "rank collapse"               # c -> 0.98 at block 6
  assert "tokens: rank collapse" in ds.attrs["verdict"]


def test_token_statistics_by_hand(uniform_post):
  ds, x = uniform_post, _tokens(0.2)
  model = Net(rngs=nnx.Rngs(network_key(KEY, 1)))
  h = model(x)
  u = h / jnp.linalg.norm(h, axis=-1, keepdims=True)
  cos = jnp.einsum("btd,bsd->bts", u, u)
  want_c = float(jnp.mean((jnp.sum(cos, (1, 2)) - TOKENS) / (TOKENS * (TOKENS - 1))))
  s = jnp.linalg.svd(h, compute_uv=False)
  want_rank = float(jnp.mean(jnp.sum(s ** 2, -1) / s[:, 0] ** 2))
  out = ds.sel(seed=1, layer=ds["name"] == f"blocks.{DEPTH - 1}.ln2")    # the output
  np.testing.assert_allclose(out["token_c"].values, [want_c], rtol=1e-4)
  np.testing.assert_allclose(out["stable_rank"].values, [want_rank], rtol=1e-4)


@pytest.mark.slow
def test_verdicts_of_a_collapsed_and_a_healthy_configuration():
  x = _tokens(0.2)
  run = lambda **kw: empirical.diagnose(                                   # noqa: E731
      lambda rngs: Net(depth=3, **kw, rngs=rngs), x, key=KEY, n_seeds=2, n_projections=1,
      jacobian=False, progress=False)
  # queries of variance 256 / d: scores of spread about 14, the softmax on one key
  hot = run(norm="pre", alpha=0.5, query_var=256.0)
  assert "entropy collapse" in hot.attrs["tokens"]
  assert float(hot["attention_entropy"].isel(attention=-1).mean()) < 0.2 * math.log(TOKENS)
  # Pre-LN, 1/sqrt(L) branches, unit-variance queries: tokens stay apart, no chaos
  healthy = run(norm="pre", alpha=0.5, query_var=1.0)
  assert healthy.attrs["tokens"] == "healthy", healthy.attrs["verdict"]
  assert abs(healthy.attrs["angle_exponent"]) < empirical.diagnosis.CHAOS
  # a weak attention branch beside a strongly chaotic tanh MLP (sigma_w2 = 4): the theory's
  # Post-LN slope at c = 1 is chi_1 = 1.42 per block, so nearly aligned tokens separate
  chaotic = run(norm="post", alpha=0.1, alpha_mlp=1.0, phi=nnx.tanh, sigma_w2=4.0)
  net = meanfield.Network(activation="tanh", sigma_w2=4.0, sigma_b2=0.0, depth=3,
                          arch=meanfield.Transformer(tokens=TOKENS, norm="post", alpha_sa=0.1))
  chi_1 = float(meanfield.fixed_point(net).chi_1)
  assert chi_1 > 1.4
  assert chaotic.attrs["tokens"] == "chaos", chaotic.attrs["verdict"]
  gaps = np.log(chaotic["aligned_gap"].sel(layer=chaotic["in_fit"]).values)
  steps = np.diff(gaps[:, 1::2], axis=1)                     # per block, as above
  assert abs(steps.mean() - math.log(chi_1)) < 4 * steps.std(ddof=1) / math.sqrt(steps.size) \
      + 1 / WIDTH


class LinenNet(nn.Module):
  """A Post-LN transformer in Flax Linen: self-attention, then a ReLU MLP (sigma_w2 = 2)."""
  depth: int = 4

  @nn.compact
  def __call__(self, x):
    d = x.shape[-1]
    for _ in range(self.depth):
      attention = nn.MultiHeadDotProductAttention(
          num_heads=1, use_bias=False, kernel_init=normal(1.0, "fan_in", "normal"))
      x = nn.LayerNorm()(x + attention(x))
      h = nn.relu(nn.Dense(d, use_bias=False, kernel_init=normal(2.0, "fan_in", "normal"))(x))
      x = nn.LayerNorm()(x + nn.Dense(d, use_bias=False,
                                      kernel_init=normal(2.0, "fan_in", "normal"))(h))
    return x


@pytest.mark.slow
def test_linen_transformer():
  x, module = _tokens(0.2), LinenNet()
  ds = empirical.diagnose(module, x, key=KEY, n_seeds=SEEDS, n_projections=1, jacobian=False,
                          progress=False)
  assert ds.sizes["attention"] == 4
  # by hand: network 1's output, and its last attention's weights
  params = module.init(network_key(KEY, 1), x)
  out = module.apply(params, x)
  u = out / jnp.linalg.norm(out, axis=-1, keepdims=True)
  cos = jnp.einsum("btd,bsd->bts", u, u)
  want = float(jnp.mean((jnp.sum(cos, (1, 2)) - TOKENS) / (TOKENS * (TOKENS - 1))))
  np.testing.assert_allclose(ds["token_c"].sel(seed=1).values[-1], want, rtol=1e-4)
  entropy = ds["attention_entropy"].values
  assert np.all((entropy > 0) & (entropy < math.log(TOKENS)))
  # zero queries (the query kernels zeroed after init, an (init, apply) pair): uniform
  # attention, entropy log T, and the token correlation of meanfield.Transformer's theory
  def init(k, x):
    p = module.init(k, x)
    return jax.tree_util.tree_map_with_path(
        lambda path, v: jnp.zeros_like(v) if "query" in jax.tree_util.keystr(path) else v, p)
  zero = empirical.diagnose((init, module.apply), x, key=KEY, n_seeds=SEEDS, n_projections=1,
                            jacobian=False, progress=False)
  np.testing.assert_allclose(zero["attention_entropy"].values, math.log(TOKENS), rtol=1e-5)
  net = meanfield.Network(activation="relu", sigma_w2=2.0, sigma_b2=0.0, depth=4,
                          width=WIDTH, arch=meanfield.Transformer(tokens=TOKENS, norm="post"))
  with jax.enable_x64(True):
    theory = np.asarray(meanfield.propagate(net, q_input=1.0, c_input=0.2).c)
  got = zero["token_c"].sel(layer=zero["in_fit"]).isel(layer=slice(1, None, 2))
  se = got.std("seed", ddof=1).values / math.sqrt(SEEDS)
  np.testing.assert_array_less(np.abs(got.mean("seed").values - theory), 4 * se + 1 / WIDTH)
