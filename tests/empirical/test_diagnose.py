"""empirical.diagnose on the toolkit's MLP (against the sweep) and on user-written models.

Independent references: the sweep (the same weights and inputs, its own
scanned forward pass); each user model's own submodules called by hand in the
test; exact Jacobians (``jax.jacfwd``) for the random-projection estimates;
mean-field theory (``meanfield.chi_1`` at ``q*``) for the verdict.
"""

import math
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from flax import nnx

import empirical
import meanfield
from empirical.models import MLP, layer_scales, network_key, scale_params, standard_params
from empirical.sweeping import make_inputs
from tests.empirical._spies import count_measured

KEY = jax.random.key(7)
IN, WIDTH, DEPTH, BATCH, SEEDS = 16, 64, 6, 8, 4
SIGMA_B2 = 0.05
# float32 rounding of the same products taken in another order (eps = 6e-8 per
# operation, a few hundred operations per value at depth 6, chi_1 <= 1.6 per layer).
RTOL_SAME = 2e-4


def _rel(a, b):
  return np.max(np.abs(np.asarray(a) - np.asarray(b)) / np.maximum(np.abs(np.asarray(b)), 1e-30))


# --- the toolkit's MLP against the sweep ------------------------------------------------

def _sweep_weights_factory(sigma_w2):
  """An MLP whose weights are those of sweep network i: the key of nnx.Rngs(k_i) is k_i."""
  def factory(rngs):
    k = rngs.default.key[...]
    std = standard_params(k, in_features=IN, width=WIDTH, depth=DEPTH)
    ws, bs = layer_scales("gaussian", sigma_w2, SIGMA_B2, in_features=IN,
                          width=WIDTH, depth=DEPTH)
    return MLP.from_params(scale_params(std, ws, bs), activation="tanh")
  return factory


@pytest.mark.slow
def test_mlp_matches_sweep_on_the_same_weights():
  sigma_w2 = 1.5
  x = jax.random.normal(jax.random.key(1), (BATCH, IN))
  ds = empirical.diagnose(_sweep_weights_factory(sigma_w2), x, key=KEY, n_seeds=SEEDS)
  sw = empirical.sweep(KEY, activation="tanh", width=WIDTH, depth=DEPTH, sigma_w2=sigma_w2,
                       sigma_b2=SIGMA_B2, n_seeds=SEEDS, inputs=x, progress=False)
  assert list(ds["kind"].values) == ["dense"] * DEPTH
  assert list(ds["activation"].values) == ["tanh"] * DEPTH
  for name in ("q", "c", "grad_h"):
    assert _rel(ds[name].values, sw[name].values) < RTOL_SAME, name
  for name in ("dead", "zero", "saturated"):   # fractions of B * N = 512 values: exact
    np.testing.assert_array_equal(ds[name].values, sw[name].values)
  # The input-output Jacobian of network 0 at x_0, directly (the models built as
  # diagnose builds them, vmapped over the seeds' keys, which reuses its compiled draw).
  factory = _sweep_weights_factory(sigma_w2)
  keys = jax.vmap(lambda i: network_key(KEY, i))(jnp.arange(SEEDS))
  graphdef = nnx.graphdef(nnx.eval_shape(lambda: factory(nnx.Rngs(KEY))))
  states = jax.vmap(lambda k: nnx.state(factory(nnx.Rngs(k))))(keys)
  model = nnx.merge(graphdef, jax.tree.map(lambda a: a[0], states))
  jac = jax.jacfwd(lambda v: model(v[None])[0])(x[0])
  sv = np.linalg.svd(np.asarray(jac, np.float64), compute_uv=False)
  assert _rel(ds["singular_values"].values[0], sv) < RTOL_SAME


@pytest.mark.slow
def test_residual_relu_mlp_matches_sweep():
  """The toolkit's residual MLP: h^l (l >= 2) is the residual addition diagnose finds."""
  width, depth, x = 32, 5, jax.random.normal(jax.random.key(8), (6, IN))

  def factory(rngs):
    std = standard_params(rngs.default.key[...], in_features=IN, width=width,
                          depth=depth)
    ws, bs = layer_scales("gaussian", 1.0, 0.1, in_features=IN, width=width,
                          depth=depth)
    return MLP.from_params(scale_params(std, ws, bs), activation="relu",
                                     residual=True)

  ds = empirical.diagnose(factory, x, key=KEY, n_seeds=2, jacobian=False, n_projections=1)
  sw = empirical.sweep(KEY, activation="relu", width=width, depth=depth, sigma_w2=1.0,
                       sigma_b2=0.1, n_seeds=2, inputs=x, arch=meanfield.MLP(residual=True),
                       progress=False)
  assert list(ds["name"].values) == ["dense1"] + [
      n for l in range(2, depth + 1) for n in (f"dense{l}", f"residual{l - 1}")]
  h = np.r_[0, np.flatnonzero(ds["kind"].values == "residual")]
  for name in ("q", "c", "grad_h"):
    assert _rel(ds[name].values[:, h], sw[name].values) < RTOL_SAME, name
  np.testing.assert_array_equal(ds["dead"].values[:, h], sw["dead"].values)
  assert list(ds["activation"].values[h]) == ["max"] * depth       # ReLU: max(h, 0)


@pytest.mark.parametrize("sigma_w2, phase", [(0.5, "ordered"), (None, "critical"),
                                             (6.0, "chaotic")])
def test_verdict_of_a_tanh_mlp_in_each_phase(sigma_w2, phase):
  if sigma_w2 is None:
    sigma_w2 = float(meanfield.critical_sigma_w2(sigma_b2=SIGMA_B2, activation="tanh"))
  q_star = float(meanfield.q_star(sigma_w2=sigma_w2, sigma_b2=SIGMA_B2, activation="tanh"))
  chi_1 = float(meanfield.chi_1(sigma_w2=sigma_w2, sigma_b2=SIGMA_B2, activation="tanh",
                                q=q_star))
  # Inputs with q^1 = sigma_w2 |x|^2/IN + sigma_b2 = q*: every layer starts at the fixed point.
  x = make_inputs(jax.random.key(2), n_inputs=BATCH, in_features=IN,
                  q_input=(q_star - SIGMA_B2) / sigma_w2)
  ds = empirical.diagnose(_sweep_weights_factory(sigma_w2), x, key=KEY, n_seeds=SEEDS)
  v = empirical.verdict(ds)
  assert v.phase == phase == ds.attrs["phase"]
  assert v.span == DEPTH - 1
  # Each layer multiplies J by (1/N)||W D||_F^2 = chi_1 (1 + O(sqrt(2/N))) (a chi-square
  # of the weights); the least-squares slope of a random walk of n = DEPTH - 1 such steps
  # has sd sqrt(6/(5n)) per-step sd, and the mean over seeds divides it by sqrt(SEEDS).
  sd = math.sqrt(2 / WIDTH) * math.sqrt(6 / (5 * (DEPTH - 1))) / math.sqrt(SEEDS)
  assert abs(v.slope - math.log(chi_1)) < 4 * sd, (v.slope, math.log(chi_1), sd)


@pytest.mark.parametrize("j, phase, law", [
    (lambda d: 0.5 ** d, "ordered", "exponential"),
    (lambda d: 1.5 ** d, "chaotic", "exponential"),
    (lambda d: 1.02 ** d, "critical", "exponential"),      # xi = 50 layers > span 9
    (lambda d: (d + 1.0) ** 1.5, "critical", "power"),
    (lambda d: (d + 1.0) ** -1.0, "critical", "power"),
])
def test_verdict_reads_the_law_of_j(j, phase, law):
  """The fit alone, on exact exponentials and power laws over 10 layers."""
  d = np.arange(10.0)
  ds = xr.Dataset({"partial_jacobian": (("seed", "layer"), np.stack([j(d), j(d)]))},
                  coords={"in_fit": ("layer", np.ones(10, bool))}, attrs={"l0": "h1"})
  v = empirical.verdict(ds)
  assert (v.phase, v.law) == (phase, law)
  if law == "exponential":
    np.testing.assert_allclose(v.chi_J, j(1.0), rtol=1e-9)
  else:
    np.testing.assert_allclose(v.exponent, math.log(j(1.0)) / math.log(2.0), rtol=1e-9)


# --- user-written models ----------------------------------------------------------------

class ResMLP(nnx.Module):
  """Pre-LayerNorm residual MLP, as a user writes it."""

  def __init__(self, d_in, width, depth, *, rngs):
    self.embed = nnx.Linear(d_in, width, rngs=rngs)
    self.norms = nnx.List([nnx.LayerNorm(width, rngs=rngs) for _ in range(depth)])
    self.denses = nnx.List([nnx.Linear(width, width, rngs=rngs) for _ in range(depth)])

  def __call__(self, x):
    h = self.embed(x)
    for ln, lin in zip(self.norms, self.denses):
      h = h + lin(nnx.relu(ln(h)))
    return h

  def by_hand(self, x):
    """The layer values in the order diagnose should find them."""
    h = self.embed(x)
    out = [h]
    for ln, lin in zip(self.norms, self.denses):
      n = ln(h)
      d = lin(nnx.relu(n))
      h = h + d
      out += [n, d, h]
    return out


class CNN(nnx.Module):
  def __init__(self, *, rngs):
    self.c1 = nnx.Conv(1, 4, (3, 3), rngs=rngs)
    self.c2 = nnx.Conv(4, 4, (3, 3), rngs=rngs)
    self.out = nnx.Linear(10 * 10 * 4, 3, rngs=rngs)

  def __call__(self, x):
    return self.out(jnp.tanh(self.c2(jnp.tanh(self.c1(x)))).reshape(x.shape[0], -1))

  def by_hand(self, x):
    a = self.c1(x)
    b = self.c2(jnp.tanh(a))
    return [a, b, self.out(jnp.tanh(b).reshape(x.shape[0], -1))]


class Block(nnx.Module):
  """A pre-LN transformer block."""

  def __init__(self, d, heads, *, rngs):
    self.ln1 = nnx.LayerNorm(d, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(num_heads=heads, in_features=d, decode=False, rngs=rngs)
    self.ln2 = nnx.LayerNorm(d, rngs=rngs)
    self.fc1 = nnx.Linear(d, 2 * d, rngs=rngs)
    self.fc2 = nnx.Linear(2 * d, d, rngs=rngs)

  def __call__(self, x):
    x = x + self.attn(self.ln1(x))
    return x + self.fc2(nnx.gelu(self.fc1(self.ln2(x))))


class Transformer(nnx.Module):
  def __init__(self, d, heads, depth, *, rngs):
    self.blocks = nnx.List([Block(d, heads, rngs=rngs) for _ in range(depth)])

  def __call__(self, x):
    for b in self.blocks:
      x = b(x)
    return x


def _by_hand_q(factory, x, seed):
  model = factory(nnx.Rngs(network_key(KEY, seed)))
  return [float(jnp.mean(jnp.square(v))) for v in model.by_hand(x)]


@pytest.fixture(scope="module")
def resmlp():
  x = jax.random.normal(jax.random.key(3), (6, 8))
  factory = lambda rngs: ResMLP(8, 16, 3, rngs=rngs)                       # noqa: E731
  return factory, x, empirical.diagnose(factory, x, key=KEY, n_seeds=2, n_projections=4)


@pytest.mark.slow
def test_residual_mlp_with_layernorm(resmlp):
  factory, x, ds = resmlp
  assert list(ds["name"].values) == ["embed"] + [
      n for i in range(3) for n in (f"norms.{i}", f"denses.{i}", f"residual{i + 1}")]
  assert list(ds["module"].values[:3]) == ["Linear", "LayerNorm", "Linear"]
  assert list(ds["activation"].values[1:3]) == ["relu", ""]
  assert list(ds["name"].values[ds["in_fit"].values]) == ["residual1", "residual2", "residual3"]
  for seed in range(2):
    assert _rel(ds["q"].values[seed], _by_hand_q(factory, x, seed)) < RTOL_SAME
  # ReLU after LayerNorm: about half the post-activations are exactly zero.
  zero = ds["zero"].sel(layer=ds["kind"] == "module").values
  assert np.all((zero > 0.2) & (zero < 0.8))


@pytest.mark.slow
def test_partial_jacobian_against_the_exact_one(resmlp):
  """J^{l0,l} by random JVPs against (1/N)||dh^l/dh^l0||_F^2 from jax.jacfwd."""
  factory, x, ds = resmlp
  model = factory(nnx.Rngs(network_key(KEY, 0)))

  def stream(h0, start, stop):          # residual stream from after block `start` to `stop`
    h = h0
    for ln, lin in list(zip(model.norms, model.denses))[start:stop]:
      h = h + lin(nnx.relu(ln(h)))
    return h

  h1 = model.by_hand(x)[3]                              # residual1
  n_proj, batch, width = 4, x.shape[0], 16
  for stop, layer in ((2, "residual2"), (3, "residual3")):
    jac = jax.vmap(jax.jacfwd(lambda h: stream(h[None], 1, stop)[0]))(h1)   # (B, N, N)
    fro = jnp.sum(jnp.square(jac), axis=(1, 2))                             # ||J_a||_F^2
    jtj = jnp.sum(jnp.square(jnp.einsum("bij,bik->bjk", jac, jac)), axis=(1, 2))
    exact = float(jnp.mean(fro) / width)
    # ||J_a v||^2, v ~ N(0, I), has mean ||J_a||_F^2 and variance 2||J_a^T J_a||_F^2; the
    # estimate averages n_proj draws per input and the B inputs.
    sd = float(jnp.sqrt(jnp.sum(2 * jtj) / n_proj) / batch / width)
    got = float(ds["partial_jacobian"].sel(seed=0).values[ds["name"].values == layer][0])
    assert abs(got - exact) < 4 * sd, (layer, got, exact, sd)


@pytest.mark.slow
def test_small_cnn():
  x = jax.random.normal(jax.random.key(4), (4, 10, 10, 1))
  factory = lambda rngs: CNN(rngs=rngs)                                    # noqa: E731
  ds = empirical.diagnose(factory, x, key=KEY, n_seeds=2, n_projections=1, jacobian=False)
  assert list(ds["name"].values) == ["c1", "c2", "out"]
  assert list(ds["kind"].values) == ["conv", "conv", "dense"]
  assert list(ds["units"].values) == [10 * 10 * 4, 10 * 10 * 4, 3]   # padding "SAME"
  assert list(ds["activation"].values) == ["tanh", "tanh", ""]
  for seed in range(2):
    assert _rel(ds["q"].values[seed], _by_hand_q(factory, x, seed)) < RTOL_SAME


@pytest.mark.slow
def test_transformer_block():
  x = jax.random.normal(jax.random.key(5), (4, 5, 8))          # (batch, tokens, features)
  factory = lambda rngs: Transformer(8, 2, 1, rngs=rngs)                   # noqa: E731
  ds = empirical.diagnose(factory, x, key=KEY, n_seeds=2, n_projections=1, jacobian=False)
  block = ["ln1", "attn.query", "attn.key", "attn.value", "attn.out", None, "ln2", "fc1", "fc2"]
  # The first residual addition of a block is not a module's output; the second is the block's.
  want = [f"blocks.0.{n}" if n else "residual1" for n in block] + ["blocks.0"]
  assert list(ds["name"].values) == want
  assert list(ds["kind"].values[[5, 9]]) == ["residual", "residual"]
  assert ds.attrs["phase"] == "undetermined"          # two residual additions: too few to fit
  assert list(ds["module"].values[:5]) == ["LayerNorm"] + ["LinearGeneral"] * 4
  assert set(ds["units"].values) == {5 * 8, 5 * 16}
  assert "singular_values" not in ds
  # LayerNorm outputs (scale 1, bias 0 at init) have mean 0 and mean square 1 per token,
  # up to epsilon 1e-6 over a variance of order 1.
  ln = ds["module"] == "LayerNorm"
  np.testing.assert_allclose(ds["q"].sel(layer=ln).values, 1.0, rtol=1e-4)
  np.testing.assert_allclose(ds["mean"].sel(layer=ln).values, 0.0, atol=1e-5)
  # The residual stream by hand, block by block.
  model = factory(nnx.Rngs(network_key(KEY, 1)))
  h, want = x, []
  for b in model.blocks:
    h = h + b.attn(b.ln1(h))
    want.append(float(jnp.mean(jnp.square(h))))
    h = h + b.fc2(nnx.gelu(b.fc1(b.ln2(h))))
    want.append(float(jnp.mean(jnp.square(h))))
  got = ds["q"].sel(seed=1, layer=ds["kind"] == "residual").values
  assert _rel(got, want) < RTOL_SAME


class LinenMLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    for _ in range(3):
      x = nn.tanh(nn.Dense(16)(x))
    return x


@pytest.mark.slow
def test_linen_module_and_init_apply_pair_agree():
  x = jax.random.normal(jax.random.key(6), (4, 8))
  module = LinenMLP()
  a = empirical.diagnose(module, x, key=KEY, n_seeds=2, n_projections=1, jacobian=False)
  b = empirical.diagnose((module.init, module.apply), x, key=KEY, n_seeds=2, n_projections=1,
                         jacobian=False)
  assert list(a["name"].values) == ["Dense_0", "Dense_1", "Dense_2"]
  assert list(b["name"].values) == ["dense1", "dense2", "dense3"]
  for name in ("q", "c", "grad_h", "partial_jacobian"):
    np.testing.assert_array_equal(a[name].values, b[name].values)
  params = module.init(network_key(KEY, 1), x)
  h = x
  for i in range(3):
    dense = params["params"][f"Dense_{i}"]
    h = h @ dense["kernel"] + dense["bias"][None]
    assert _rel(a["q"].values[1, i], jnp.mean(jnp.square(h))) < RTOL_SAME
    h = jnp.tanh(h)


# --- arguments, figure ------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    (dict(n_seeds=0), "n_seeds"),
    (dict(n_projections=-1), "n_projections"),
    (dict(jacobian="yes"), "jacobian"),
    (dict(key=0), "key"),
    (dict(x=jnp.zeros((0, 8))), "`x`"),
    (dict(x=jnp.zeros((4, 8), jnp.int32)), "`x`"),
    (dict(model=3), "`model`"),
    (dict(l0="nope"), "`l0`"),
    (dict(fit="embed"), "`fit`"),
    (dict(chunk_size=1.5), "`chunk_size`"),
    (dict(store=42), "`store`"),
    (dict(devices=0), "`devices`"),
])
def test_bad_arguments_raise(kwargs, match):
  args = dict(model=lambda rngs: ResMLP(8, 16, 3, rngs=rngs), x=jnp.ones((6, 8)), key=KEY)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    empirical.diagnose(args.pop("model"), args.pop("x"), **args)


@pytest.mark.slow
def test_figure(resmlp):
  import matplotlib.figure
  from figures._diagnose_plot import diagnose_figure
  fig = diagnose_figure(resmlp[2])
  assert isinstance(fig, matplotlib.figure.Figure)
  axes = fig.get_axes()
  assert len(axes) == 4
  assert all(ax.get_xlabel() and ax.get_ylabel() for ax in axes)
  assert resmlp[2].attrs["verdict"] in fig._suptitle.get_text()


class _IntegerOut(nnx.Module):
  def __init__(self, rngs):
    self.dense = nnx.Linear(8, 4, rngs=rngs)

  def __call__(self, x):
    return jnp.round(self.dense(x)).astype(jnp.int32)


def _resmlp_factory(rngs):
  return ResMLP(8, 16, 3, rngs=rngs)


@pytest.mark.parametrize("model, match", [
    (lambda rngs: _IntegerOut(rngs), r"`model`'s output must be a float array .*int32"),
    (lambda x: jnp.tanh(x), r"`model` must be a factory taking nnx.Rngs .* raised TypeError"),
    (lambda rngs: None, r"`model` must return an nnx.Module when called with nnx.Rngs, "
                        r"got NoneType"),
])
def test_unusable_models_are_named(model, match):
  with pytest.raises(ValueError, match=match):
    empirical.diagnose(model, jnp.ones((6, 8)), key=KEY, n_seeds=2)


@pytest.mark.slow
@pytest.mark.parametrize("n_seeds", [1, 3])
def test_a_factory_that_ignores_its_rngs_is_refused(n_seeds):
  # Every seed would be the same network, measured as if independent.
  with pytest.raises(ValueError, match=r"`model` builds identical networks from different keys"):
    empirical.diagnose(lambda rngs: ResMLP(8, 16, 3, rngs=nnx.Rngs(0)), jnp.ones((6, 8)),
                       key=KEY, n_seeds=n_seeds)
  module = LinenMLP()
  with pytest.raises(ValueError, match=r"`model` builds identical networks"):
    empirical.diagnose((lambda k, x: module.init(jax.random.key(0), x), module.apply),
                       jnp.ones((4, 8)), key=KEY, n_seeds=n_seeds)


class _Normed(nnx.Module):
  def __init__(self, rngs):
    self.norm = nnx.LayerNorm(8, rngs=rngs)

  def __call__(self, x):
    return jnp.tanh(self.norm(x))


@pytest.mark.slow
def test_a_model_without_random_parameters_is_measured():
  # Deterministic parameters (LayerNorm's ones and zeros) are no sign of ignored rngs.
  ds = empirical.diagnose(_Normed, jnp.arange(48.0).reshape(6, 8), key=KEY, n_seeds=2,
                          n_projections=1)
  assert ds.sizes["seed"] == 2


def test_sizes_are_checked_before_any_work():
  # One group of networks needs far more than the budget: refused at once, whatever n_seeds.
  with pytest.raises(ValueError, match=r"`memory_budget` = 1000 bytes is too small for 2 "
                                       r"networks of `model` measured at once"):
    empirical.diagnose(_resmlp_factory, jnp.ones((6, 8)), key=KEY, n_seeds=10**6,
                       memory_budget=1000)
  with pytest.raises(ValueError, match=r"`memory_budget` must be an integer >= 1, got 0"):
    empirical.diagnose(_resmlp_factory, jnp.ones((6, 8)), key=KEY, memory_budget=0)
  with pytest.raises(ValueError, match=r"`chunk_size` must be an integer >= 1, got 0"):
    empirical.diagnose(_resmlp_factory, jnp.ones((6, 8)), key=KEY, chunk_size=0)


@pytest.mark.slow
def test_seeds_are_measured_in_groups_that_fit_the_budget(monkeypatch):
  # A budget of one group (two networks): five seeds in chunks of two, each network's
  # numbers bitwise those of the one-chunk run (the same program on the same networks).
  x = jax.random.normal(jax.random.key(3), (6, 8))
  with pytest.raises(ValueError, match="memory_budget") as err:
    empirical.diagnose(_resmlp_factory, x, key=KEY, memory_budget=1, n_projections=2)
  group = int(re.search(r"need about (\d+) bytes", str(err.value)).group(1))
  whole = empirical.diagnose(_resmlp_factory, x, key=KEY, n_seeds=5, n_projections=2,
                             progress=False)
  sizes = count_measured(monkeypatch)
  chunked = empirical.diagnose(_resmlp_factory, x, key=KEY, n_seeds=5, n_projections=2,
                               memory_budget=group + 1, progress=False)
  assert sizes == [2, 2, 2]
  assert chunked.identical(whole)


# --- the empirical NTK (ntk=True) ---------------------------------------------------------

def _pair_init(key, x):
  k1, k2, k3 = jax.random.split(key, 3)
  return {"w1": jax.random.normal(k1, (x.shape[1], 16)) * math.sqrt(1.5 / x.shape[1]),
          "b1": jax.random.normal(k2, (16,)) * 0.2,
          "w2": jax.random.normal(k3, (16, 3)) * math.sqrt(1.5 / 16)}


def _pair_apply(p, x):
  return jnp.tanh(x @ p["w1"] + p["b1"][None]) @ p["w2"]


@pytest.mark.slow
def test_ntk_is_j_j_transpose_over_the_parameters_with_its_spread():
  """Network 1's NTK against jax.jacrev of r . out over its parameters, by hand."""
  from empirical import probes, streams
  x = jax.random.normal(jax.random.key(6), (5, 8))
  ds = empirical.diagnose((_pair_init, _pair_apply), x, key=KEY, n_seeds=3, n_projections=1,
                          jacobian=False, ntk=True, progress=False)
  assert ds["ntk"].dims == ("seed", "input_a", "input_b") and ds["ntk_condition"].dims == ("seed",)
  k1 = network_key(KEY, 1)
  params = _pair_init(k1, x)
  r = probes.readout(jax.random.fold_in(k1, streams.READOUT), 3, jnp.float32)
  jac = jax.jacrev(lambda p: _pair_apply(p, x) @ r)(params)
  theta = sum(np.asarray(j).reshape(5, -1) @ np.asarray(j).reshape(5, -1).T
              for j in jax.tree.leaves(jac))
  assert _rel(ds["ntk"].values[1], theta) < RTOL_SAME
  eig = np.linalg.eigvalsh(theta.astype(np.float64))
  np.testing.assert_allclose(ds["ntk_condition"].values[1], eig[-1] / eig[0], rtol=1e-3)
  assert "NTK condition number: median" in ds.attrs["ntk_condition"]
  plain = empirical.diagnose((_pair_init, _pair_apply), x, key=KEY, n_seeds=3,
                             n_projections=1, jacobian=False, progress=False)
  assert "ntk" not in plain and "ntk_condition" not in plain.attrs
  with pytest.raises(ValueError, match="`ntk` must be True or False"):
    empirical.diagnose((_pair_init, _pair_apply), x, key=KEY, ntk="yes")
