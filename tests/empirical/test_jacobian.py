"""Tests for empirical.jacobian and empirical.spectra: Jacobians, their singular values,
estimates and spectra of many networks."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from empirical import _input_length
from empirical import jacobian as jac
from empirical import spectra

# tanh at criticality with sigma_b2 = 0.05 (docs/theory.md's Monte Carlo anchor).
TANH_CRIT = dict(sigma_w2=1.7610, sigma_b2=0.05)
Q_STAR = 0.5700

SMALL_WIDTH, SMALL_DEPTH = 48, 6


def _params(key, depth, width, kind, dtype, *, sigma_w2=1.7610, sigma_b2=0.05):
  kw, kb = jax.random.split(key)
  if kind == "gaussian":
    w = jax.random.normal(kw, (depth, width, width), dtype) * math.sqrt(sigma_w2 / width)
  else:
    init = jax.nn.initializers.orthogonal(math.sqrt(sigma_w2))
    w = jax.vmap(lambda k: init(k, (width, width), dtype))(jax.random.split(kw, depth))
  b = jax.random.normal(kb, (depth, width), dtype) * math.sqrt(sigma_b2)
  return w.astype(dtype), b.astype(dtype)


def _small(dtype, kind="gaussian"):
  w, b = _params(jax.random.key(0), SMALL_DEPTH, SMALL_WIDTH, kind, dtype)
  x = jac.jacobian_input(key=jax.random.key(1), activation="tanh", q=Q_STAR,
                         width=SMALL_WIDTH, dtype=dtype)
  return w, b, x


def _network_fn(w, b):
  def f(x):
    for l in range(w.shape[0]):
      x = jnp.tanh(x @ w[l] + b[l])
    return x
  return f


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gaussian", "orthogonal"])
def test_jacobian_is_autodiff_jacobian(x64, kind):
  w, b, x = _small(jnp.float64, kind)
  expected = jax.jacfwd(_network_fn(w, b))(x)
  got = jac.jacobian(w, b, x, activation="tanh")
  # Same product of L matrices in a different order: float64 rounding only.
  np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-13)


@pytest.mark.slow
def test_forward_and_dtype_preserved():
  w, b, x = _small(jnp.float32)
  out, d = jac.output_and_derivatives(w, b, x, activation="tanh")
  np.testing.assert_allclose(out, _network_fn(w, b)(x), rtol=1e-5, atol=1e-6)
  assert d.shape == (SMALL_DEPTH, SMALL_WIDTH)
  assert out.dtype == d.dtype == jnp.float32
  assert jac.jacobian(w, b, x, activation="tanh").dtype == jnp.float32
  assert jac.singular_values(w, b, x, activation="tanh").dtype == jnp.float32


@pytest.mark.slow
def test_singular_values_at_several_depths_match_prefix_networks(x64):
  w, b, x = _small(jnp.float64)
  got = jac.singular_values(w, b, x, activation="tanh", depths=(1, 3, SMALL_DEPTH))
  assert got.shape == (3, SMALL_WIDTH)
  for row, depth in zip(got, (1, 3, SMALL_DEPTH)):
    expected = np.linalg.svd(np.asarray(jax.jacfwd(_network_fn(w[:depth], b[:depth]))(x)),
                             compute_uv=False)
    np.testing.assert_allclose(row, expected, rtol=1e-9, atol=1e-14)
  assert np.all(np.diff(got, axis=1) <= 0)  # descending


@pytest.mark.parametrize("kind", ["gaussian", "orthogonal"])
def test_moment_estimates_within_their_standard_errors(x64, kind):
  w, b, x = _small(jnp.float64, kind)
  lam = np.asarray(jac.singular_values(w, b, x, activation="tanh")) ** 2
  exact = np.array([np.mean(lam ** k) for k in (1, 2, 3)])
  est, err = jac.moment_estimates(w, b, x, activation="tanh", key=jax.random.key(7),
                                  n_probes=256, max_order=3)
  assert est.shape == err.shape == (3,)
  # The estimator is unbiased with the stated standard error (sample std over
  # 256 probes / 16, itself accurate to about 1/sqrt(2 * 256) = 4%); 4 of them
  # bound a two-sided deviation at about 6e-5 per comparison.
  assert np.all(np.abs(est - exact) < 4 * err), (est, exact, err)
  # and the stated error has the size theory gives: sqrt(2 m_2k / N / P).
  predicted = np.sqrt(2 * np.array([np.mean(lam ** (2 * k)) for k in (1, 2, 3)])
                      / SMALL_WIDTH / 256)
  np.testing.assert_allclose(err, predicted, rtol=0.5)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gaussian", "orthogonal"])
def test_lanczos_largest_singular_value(x64, kind):
  w, b, x = _small(jnp.float64, kind)
  sv = np.asarray(jac.singular_values(w, b, x, activation="tanh"))
  sigmas, errors = jac.extreme_singular_values(w, b, x, activation="tanh",
                                               key=jax.random.key(3), num_iterations=24)
  # Ritz values interlace: theta_max <= lambda_max, theta_min >= lambda_min.
  assert sigmas[0] <= sv[0] * (1 + 1e-12)
  assert sigmas[1] >= sv[-1] * (1 - 1e-12)
  # The residual bound holds for the top end, and is small there.
  assert abs(sigmas[0] - sv[0]) <= errors[0] + 1e-12 * sv[0]
  assert errors[0] < 1e-3 * sv[0]


@pytest.mark.slow
def test_lanczos_full_space_is_exact(x64):
  w, b, x = _small(jnp.float64, "orthogonal")
  sv = np.asarray(jac.singular_values(w, b, x, activation="tanh"))
  sigmas, _ = jac.extreme_singular_values(w, b, x, activation="tanh", key=jax.random.key(3),
                                          num_iterations=SMALL_WIDTH)
  np.testing.assert_allclose(sigmas, [sv[0], sv[-1]], rtol=1e-6)


@pytest.mark.slow
def test_input_is_at_the_fixed_point_length():
  # Fed through a critical tanh layer, x^0 = tanh(sqrt(q*) z) gives
  # pre-activations of length q*; width-N estimate: relative spread sqrt(2/N),
  # 5 standard errors.
  width = 4096
  x = jac.jacobian_input(key=jax.random.key(0), activation="tanh", q=Q_STAR, width=width)
  w, b = _params(jax.random.key(1), 1, width, "gaussian", jnp.float32)
  q1 = float(jnp.mean((x @ w[0] + b[0]) ** 2))
  assert abs(q1 / Q_STAR - 1) < 5 * math.sqrt(2 / width)


@pytest.mark.parametrize("call, match", [
    (lambda w, b, x: jac.jacobian(w[0], b, x, activation="tanh"), "`weights` must have shape"),
    (lambda w, b, x: jac.jacobian(w, b[:, :-1], x, activation="tanh"), "`biases` must have shape"),
    (lambda w, b, x: jac.jacobian(w, b, x[:-1], activation="tanh"), "`x` must have shape"),
    (lambda w, b, x: jac.jacobian(w, b, x, activation="tahn"), "`activation` must be one of"),
    (lambda w, b, x: jac.singular_values(w, b, x, activation="tanh", depths=(3, 2)),
     "`depths` must increase"),
    (lambda w, b, x: jac.singular_values(w, b, x, activation="tanh", depths=(0,)),
     "`depths` must be an integer >= 1"),
    (lambda w, b, x: jac.singular_values(w, b, x, activation="tanh", depths=(99,)),
     "not exceed"),
    (lambda w, b, x: jac.moment_estimates(w, b, x, activation="tanh", key=jax.random.key(0),
                                          n_probes=1), "`n_probes` must be an integer >= 2"),
    (lambda w, b, x: jac.moment_estimates(w, b, x, activation="tanh", key=jax.random.key(0),
                                          max_order=0), "`max_order` must be an integer >= 1"),
    (lambda w, b, x: jac.extreme_singular_values(w, b, x, activation="tanh",
                                                 key=jax.random.key(0), num_iterations=0),
     "`num_iterations` must be an integer in"),
    (lambda w, b, x: jac.jacobian_input(key=jax.random.key(0), activation="tanh", q=-1.0,
                                        width=4), "`q` must be a finite scalar >= 0"),
    (lambda w, b, x: jac.jacobian_input(key=jax.random.key(0), activation="tanh", q=1.0,
                                        width=0), "`width` must be an integer >= 1"),
])
def test_bad_input_raises(call, match):
  w, b, x = _small(jnp.float32)
  with pytest.raises(ValueError, match=match):
    call(w, b, x)


# ---------------------------------------------------------------------------
# Many networks: the Dataset.


def _spectra(**kw):
  args = dict(activation="tanh", width=32, depth=[2, 5], sigma_w2=[1.5, 1.7610],
              sigma_b2=0.05, init=["gaussian", "orthogonal"], n_seeds=3, progress=False)
  args.update(kw)
  return spectra.jacobian_spectra(jax.random.key(0), **args)


@pytest.mark.slow
def test_spectra_dataset_layout_and_values(x64, tmp_path):
  ds = _spectra(chunk_size=2, init=["orthogonal"])
  assert ds.singular_values.dims == ("init", "depth", "sigma_w2", "seed", "index")
  assert ds.moment.dims == ("init", "depth", "sigma_w2", "seed", "order")
  assert ds.sigma_max.dims == ("init", "depth", "sigma_w2", "seed")
  assert ds.singular_values.shape == (1, 2, 2, 3, 32)
  assert ds.q.dims == ("sigma_w2",)
  assert ds.singular_values.dtype == np.float64
  # Network 1, orthogonal, depth 5, sigma_w2 = 1.761, rebuilt by hand from
  # the key convention of empirical.models.
  from empirical import models
  k = models.network_key(jax.random.key(0), 1)
  std = models.standard_params(k, in_features=32, width=32, depth=5, init="orthogonal")
  ws, bs = models.layer_scales("orthogonal", 1.7610, 0.05, in_features=32, width=32, depth=5)
  p = models.scale_params(std, ws, bs)
  w = jnp.concatenate([p.w_in[None], p.w])
  b = jnp.concatenate([p.b_in[None], p.b])
  q = float(ds.q.sel(sigma_w2=1.7610))
  assert abs(q - Q_STAR) < 1e-3
  x = jnp.tanh(jnp.sqrt(q) * jax.random.normal(jax.random.fold_in(k, 3), (32,), jnp.float64))
  expected = jac.singular_values(w, b, x, activation="tanh")
  got = ds.singular_values.sel(init="orthogonal", depth=5, sigma_w2=1.7610, seed=1)
  np.testing.assert_allclose(got, expected, rtol=1e-10)
  np.testing.assert_allclose(ds.moment.sel(order=2), (ds.singular_values ** 4).mean("index"),
                             rtol=1e-12)
  # Chunking, storing and resuming do not change a network's numbers.
  one = dict(sigma_w2=1.7610, q=q, init=["orthogonal"], chunk_size=3, store=tmp_path / "run")
  again = _spectra(**one)
  # One setting instead of two compiles differently: float64 rounding only.
  np.testing.assert_allclose(again.singular_values, ds.singular_values.sel(sigma_w2=1.7610),
                             rtol=1e-12)
  chunks = sorted((tmp_path / "run").rglob("chunk-*.npz"))
  assert len(chunks) == 1
  chunks[0].unlink()                          # as if killed before the last chunk
  resumed = _spectra(**one)
  np.testing.assert_array_equal(resumed.singular_values, again.singular_values)


@pytest.mark.slow
def test_projection_dataset_agrees_with_svd(x64):
  ds = _spectra(init="gaussian", sigma_w2=[1.7610], q=Q_STAR)
  est = _spectra(init="gaussian", sigma_w2=[1.7610], q=Q_STAR, method="projection",
                 n_probes=64, num_iterations=24)
  assert est.moment_error.dims == ("depth", "sigma_w2", "seed", "order")
  # Hutchinson: unbiased with the stated standard error; 5 of them.
  z = np.abs(est.moment - ds.moment) / est.moment_error
  assert float(z.max()) < 5, z
  # Lanczos: the top end within its residual bound.
  assert np.all(np.abs(est.sigma_max - ds.sigma_max) <= est.sigma_max_error + 1e-9)


@pytest.mark.parametrize("kw, match", [
    (dict(method="qr"), "`method` must be one of svd, projection"),
    (dict(depth=[5, 2]), "`depth` must be one integer or an increasing list"),
    (dict(sigma_w2=None), "`sigma_w2` must be given"),
    (dict(sigma_w2=-1.0), "`sigma_w2` must be a finite number > 0"),
    (dict(sigma_b2=[0.1, -0.1]), "`sigma_b2` must be a finite number >= 0"),
    (dict(init="he_normal"), "`init` must be schemes by variance"),
    (dict(init="bogus"), "`init` must be one of"),
    (dict(n_seeds=0), "`n_seeds` must be an integer >= 1"),
    (dict(method="projection", num_iterations=64), "`num_iterations` must be at most"),
    (dict(activation="relu", sigma_w2=2.5, sigma_b2=0.0), "`q` must be given"),
])
def test_spectra_bad_input_raises(kw, match):
  with pytest.raises(ValueError, match=match):
    _spectra(**kw)


def test_density_l1():
  sigma = np.linspace(0.0, 1.0, 1001)
  uniform = np.ones_like(sigma)
  grid = (np.arange(1000) + 0.5) / 1000
  assert spectra.density_l1(grid, sigma=sigma, density=uniform) < 1e-12
  # All samples in the lower half: half the bins empty, half double: L1 = 1.
  assert abs(spectra.density_l1(grid / 2, sigma=sigma, density=uniform) - 1.0) < 1e-12
  # Below the floor only the lump's mass counts.
  assert spectra.density_l1(grid * (grid > 0.1) * 1.0, sigma=sigma, density=uniform,
                        floor=0.1001) < 0.01
  # A quarter of the law below the grid (sigma[0] = 0.5), the rest uniform on
  # [0.5, 1]: 200 samples below, 600 spread evenly above (30 per bin).
  half = sigma[500:]
  samples = np.r_[np.linspace(0.01, 0.49, 200), 0.5 + 0.5 * (np.arange(600) + 0.5) / 600]
  assert spectra.density_l1(samples, sigma=half, density=np.ones_like(half),
                        mass_below=0.25) < 1e-12
  # Without the lump the quarter below the grid falls into the first bin: far off.
  assert spectra.density_l1(samples, sigma=half, density=np.ones_like(half)) > 0.4
  with pytest.raises(ValueError, match="`mass_below` must be a number in"):
    spectra.density_l1(grid, sigma=sigma, density=uniform, mass_below=1.0)
  with pytest.raises(ValueError, match="`sigma` must be an increasing"):
    spectra.density_l1(grid, sigma=sigma[::-1], density=uniform)
  with pytest.raises(ValueError, match="`bins` must be an integer >= 2"):
    spectra.density_l1(grid, sigma=sigma, density=uniform, bins=1)


# ---------------------------------------------------------------------------
# Against the theory (Pennington, Schoenholz & Ganguli 2017).

# Log-spaced grid for the theory density: deep Gaussian spectra span decades.
THEORY_SIGMA = np.logspace(-30, 2, 3000)
# Float64 resolves singular values down to about 1e-16 of the largest; below
# this floor they are compared as one lump (see density_l1).
FLOOR = 1e-13


def _theory_spectra(width, n_seeds):
  with jax.enable_x64(True):
    return spectra.jacobian_spectra(jax.random.key(2024), activation="tanh", width=width,
                                depth=[4, 32], init=["orthogonal", "gaussian"],
                                n_seeds=n_seeds, progress=False, **TANH_CRIT)


# Default run: width 160, 6 networks (orthogonal draws at depth 32 dominate).
DEFAULT_WIDTH, DEFAULT_SEEDS = 160, 6


@pytest.fixture(scope="module")
def spectra_default():
  return _theory_spectra(DEFAULT_WIDTH, DEFAULT_SEEDS)


@pytest.fixture(scope="module")
def spectra_1000():
  return _theory_spectra(1000, 4)


CASES = [("orthogonal", 4), ("orthogonal", 32), ("gaussian", 4), ("gaussian", 32)]
# Default run: depth 4 only (each theory density costs seconds); depth 32 is slow.
# Default run: the Gaussian density at depth 4 (orthogonal's moments are checked by default too).
DEFAULT_DENSITY_CASES = [pytest.param(*c, marks=(pytest.mark.slow,) if c != ("gaussian", 4) else ())
                         for c in CASES]


def _check_density(ds, weights, depth, l1_tol):
  import meanfield
  with jax.enable_x64(True):
    theory = meanfield.jacobian_spectrum(activation="tanh", depth=depth, init=weights,
                                         sigma=THEORY_SIGMA, **TANH_CRIT)
  # Orthogonal depth 32 leaves scattered points below sigma ~ 1e-22 unconverged
  # (w meets the |z| < 9 cut-off of the law of phi'^2), where p sigma < 1e-18:
  # they count as 0.
  assert np.all(np.asarray(theory.converged) | (THEORY_SIGMA < 1e-20))
  dens = np.nan_to_num(np.asarray(theory.singular_value_density))
  mass = np.sum(0.5 * (dens[1:] + dens[:-1]) * np.diff(THEORY_SIGMA))
  below = 0.0
  if weights == "gaussian":
    # p ~ C sigma^-a as sigma -> 0 with a = (L - 1)/(L + 1), reached slowly:
    # at the grid's bottom (1e-30) the local exponent is still steeper (L = 32:
    # 0.957 against 0.939). The mass below the grid, p(s0) s0 / (1 - a), lies
    # between its values for the asymptotic and for the local exponent
    # (3.5% and 5.0% at L = 32; 1e-17 at L = 4).
    a_inf = (depth - 1) / (depth + 1)
    j = np.searchsorted(THEORY_SIGMA, 1e-28)
    a_loc = -np.log(dens[j] / dens[0]) / np.log(THEORY_SIGMA[j] / THEORY_SIGMA[0])
    lo, hi = (float(dens[0] * THEORY_SIGMA[0] / (1 - a)) for a in (a_inf, max(a_loc, a_inf)))
    # The theory must carry the whole mass before a distance means anything
    # (trapezoid rule on 3000 log-spaced points, 2.5% steps, coarse at the
    # upper square-root edge: 5e-3).
    assert mass + lo - 5e-3 <= 1 <= mass + hi + 5e-3, (mass, lo, hi)
    below = (lo + hi) / 2
  else:
    assert abs(mass - 1) < 1e-2, f"theory density has mass {mass:.3f}"
  l1 = spectra.density_l1(ds.singular_values.sel(init=weights, depth=depth), sigma=THEORY_SIGMA,
                      density=dens, floor=FLOOR, mass_below=below)
  assert l1 < l1_tol, (l1, l1_tol)


def _check_moments(ds, weights, depth):
  import meanfield
  assert abs(float(ds.q) - Q_STAR) < 1e-3
  # Mean and variance of the eigenvalues of J J^T. Each network's spectrum
  # fluctuates mostly by an overall scale (a product of L layer-wise factors
  # tr(D^2)/N, each with relative spread O(1/sqrt(N)), plus the fluctuation of
  # q^l); the standard error of the seed mean is estimated from the seeds, and
  # the bound is the t quantile (n_seeds - 1 dof) of a two-sided false alarm
  # of 1e-3: 6.9 standard errors for 6 seeds, 12.9 for 4 (few seeds estimate
  # the error poorly). Finite-width bias is O(1/N), far below that.
  m = ds.moment.sel(init=weights, depth=depth)
  mean, var = m.sel(order=1), m.sel(order=2) - m.sel(order=1) ** 2
  with jax.enable_x64(True):
    expected = meanfield.jacobian_moments(activation="tanh", depth=depth, init=weights,
                                          **TANH_CRIT)
  for name, values, target in (("mean", mean, expected.mean),
                               ("variance", var, expected.variance)):
    values = np.asarray(values)
    se = values.std(ddof=1) / math.sqrt(values.size)
    bound = stats.t.ppf(1 - 0.5e-3, values.size - 1) * se
    assert abs(values.mean() - float(target)) < bound, (name, values, float(target), bound)


@pytest.mark.slow
@pytest.mark.parametrize("weights, depth", CASES)
def test_moments_match_theory(spectra_default, weights, depth):
  _check_moments(spectra_default, weights, depth)


@pytest.mark.slow
@pytest.mark.parametrize("weights, depth", DEFAULT_DENSITY_CASES)
def test_density_matches_theory(spectra_default, weights, depth):
  # The criterion is 5% in L1 at width 1000 (the slow test below).
  # The finite-width deviation is dominated by the network-to-network
  # fluctuation of the spectrum's overall scale, whose relative size goes as
  # 1/sqrt(N): at N = 160 the tolerance is 5% * sqrt(1000 / 160) = 12.5%.
  _check_density(spectra_default, weights, depth, 0.05 * math.sqrt(1000 / DEFAULT_WIDTH))


@pytest.mark.slow
@pytest.mark.parametrize("weights, depth", CASES)
def test_moments_match_theory_at_width_1000(spectra_1000, weights, depth):
  _check_moments(spectra_1000, weights, depth)


@pytest.mark.slow
@pytest.mark.parametrize("weights, depth", CASES)
def test_density_matches_theory_at_width_1000(spectra_1000, weights, depth):
  _check_density(spectra_1000, weights, depth, 0.05)


ANCHOR_SEEDS = 12


@pytest.mark.slow
@pytest.mark.parametrize("weights", ["orthogonal", "gaussian"])
def test_top_eigenvalue_at_width_1000_is_the_edge_less_its_tracy_widom_shift(x64, weights):
  # docs/jacobian_edge.md: the largest eigenvalue of one network's J J^T is
  # lambda_1 = lambda_max + TW_1 / (gamma N^(2/3)) to leading order, with
  # lambda_max the theory's edge and gamma read off the theory's density at the
  # edge (figures._jacobian.edge_gamma). Its mean is the edge less
  # 1.2065 / (gamma N^(2/3)) (4.63 -> 4.58 orthogonal, 15.84 -> 15.46 Gaussian at
  # tanh criticality, depth 4, N = 1000); the next correction is O(1/N)
  # relative, far below the sampling error. A network's lambda_1 also moves
  # with its spectrum's overall scale (spread O(1/sqrt(N)) per layer), so the
  # standard error of the seed mean is estimated from the seeds, and the bound
  # is the t quantile (11 dof) of a two-sided false alarm of 1e-3 (4.4 of them).
  import meanfield
  from figures._jacobian import EDGE_OFFSETS, TW1_MEAN, edge_gamma
  width, depth = 1000, 4
  theory = dict(activation="tanh", depth=depth, init=weights, **TANH_CRIT)
  lam_max = float(meanfield.jacobian_spectrum_edge(**theory))
  lam = lam_max * (1 - np.asarray(EDGE_OFFSETS))
  rho = np.asarray(meanfield.jacobian_spectrum(sigma=np.sqrt(lam), **theory).eigenvalue_density)
  gamma = float(edge_gamma(lam_max, rho))
  assert np.isfinite(gamma)                            # a square-root edge at depth 4
  expected = lam_max + TW1_MEAN / (gamma * width ** (2 / 3))
  ds = spectra.jacobian_spectra(jax.random.key(7), activation="tanh", width=width, depth=depth,
                            init=weights, n_seeds=ANCHOR_SEEDS, progress=False, **TANH_CRIT)
  lam_1 = np.asarray(ds.sigma_max ** 2).ravel()
  se = lam_1.std(ddof=1) / math.sqrt(lam_1.size)
  bound = stats.t.ppf(1 - 0.5e-3, lam_1.size - 1) * se
  assert abs(lam_1.mean() - expected) < bound, (lam_1, lam_max, expected, bound)


@pytest.mark.slow
def test_spectra_of_huge_jacobians_in_float32():
  # ReLU, sigma_w2 = 256, width 64: sigma_max is about 2e11 at depth 10 and 4e32
  # at depth 30 (its square, 1e65, is beyond float32). Lanczos works on the
  # rescaled operator: its estimate is a lower bound within its residual bound
  # of the SVD's, which itself runs on the rescaled product. The forward pass
  # overflows (h^l beyond 3.4e38) near layer 37: flagged, and only there.
  common = dict(activation="relu", width=64, depth=[10, 30, 45], sigma_w2=256.0, q=1.0,
                progress=False)
  svd = spectra.jacobian_spectra(jax.random.key(0), method="svd", **common)
  proj = spectra.jacobian_spectra(jax.random.key(0), method="projection", **common)
  s_svd = svd.sigma_max.sel(seed=0).values[:2]
  s_proj, err = proj.sigma_max.sel(seed=0).values[:2], proj.sigma_max_error.sel(seed=0).values[:2]
  assert np.all(np.isfinite(s_svd)) and s_svd[1] > 1e30
  assert np.all(np.isfinite(s_proj)) and np.all(np.isfinite(err))
  # float32 rounding of two routes through 30 layers: 1e-4 relative.
  assert np.all(s_proj <= s_svd * (1 + 1e-4) + err)
  assert np.all(s_proj >= s_svd * (1 - 1e-4) - err)
  for ds in (svd, proj):
    first = ds.first_nonfinite.sel(seed=0).values
    assert first[0] == first[1] == 0
    assert 30 < first[2] <= 45
    assert ds.first_nonfinite.dims == ds.sigma_max.dims


@pytest.mark.slow
def test_lanczos_stops_at_an_invariant_subspace(x64):
  # A deep ReLU Jacobian has low rank: Lanczos meets an invariant Krylov space
  # long before 48 steps. Going on from the rounding noise made T differ from
  # Q^T A Q, and its largest Ritz value exceeded sigma_max^2 (4x here). A
  # Ritz value is a lower bound on the largest eigenvalue; with its bound it
  # brackets the SVD's.
  w = jax.random.normal(jax.random.key(1), (10, 64, 64), jnp.float64) * 2.0
  b = jnp.zeros((10, 64), jnp.float64)
  x = jax.random.normal(jax.random.key(2), (64,), jnp.float64)
  top = float(jac.singular_values(w, b, x, activation="relu")[0])
  (s_max, _), (err, _) = jac.extreme_singular_values(w, b, x, activation="relu",
                                                     key=jax.random.key(3))
  assert float(s_max) <= top * (1 + 1e-10)
  assert float(s_max) >= top * (1 - 1e-10) - float(err)


def test_spectra_bad_store_and_dtype(tmp_path):
  a_file = tmp_path / "file"
  a_file.write_text("x")
  with pytest.raises(ValueError, match=r"`store` must be a directory"):
    _spectra(store=a_file)
  with pytest.raises(ValueError, match=r"`dtype` must be None or a floating dtype"):
    _spectra(dtype="int32")
  with pytest.raises(ValueError, match=r"`memory_budget` = .* depth <= \d+ fits"):
    _spectra(depth=10**9)
  with pytest.raises(ValueError, match=r"`activation` must be an elementwise"):
    _spectra(activation=math.tanh)


@pytest.mark.slow
def test_q_star_zero_uses_the_limit_from_above():
  # ReLU at the He point: meanfield's q* is 0 (every length is fixed); inputs of length 0
  # would give all-zero Jacobians. The limit q -> 0+ of a scale-free network: at the He
  # point E[sigma^2] = chi_1^L = 1, so the mean squared singular value of every network
  # is of order 1 (it is 0 with zero inputs).
  ds = _spectra(activation="relu", sigma_w2=2.0, sigma_b2=0.0, depth=3, init="gaussian")
  assert float(ds.q.min()) == _input_length.Q_LIMIT
  mean_sq = (ds.singular_values ** 2).mean("index")
  assert float(mean_sq.min()) > 0.05 and float(mean_sq.max()) < 20
