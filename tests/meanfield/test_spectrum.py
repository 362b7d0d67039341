"""Tests of meanfield.spectrum: Jacobian spectrum moments and densities.

Most density tests share one compiled solver (64-bit, one configuration,
the default grid of 400 points and 512 segments) to keep compile time down.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats

import meanfield as mf

# tanh at criticality with sigma_b2 = 0.05 (docs/theory.md; Pennington et al. 2017).
TANH = dict(activation="tanh", sigma_w2=1.7610, sigma_b2=0.05, q=0.5700)


def _grid_moments(r: mf.JacobianSpectrum, ks=(0, 1, 2)) -> list[float]:
  """``E[lambda^k]`` from the density by the midpoint rule on the uniform sigma grid, plus atoms."""
  sigma = np.asarray(r.sigma)
  p = np.asarray(r.singular_value_density)
  ds = sigma[1] - sigma[0]
  out = []
  for k in ks:
    m = np.sum(p * sigma ** (2 * k)) * ds
    if float(r.atom_mass) > 0:
      m += float(r.atom_mass) * float(r.atom_lambda) ** k
    if k == 0:
      m += float(r.zero_mass)
    out.append(m)
  return out


# --- closed-form moments -------------------------------------------------------


@pytest.mark.parametrize("weights,s1", [("orthogonal", 0.0), ("gaussian", -1.0)])
def test_relu_at_criticality_variance_is_l_or_2l(x64, weights, s1):
  depth = jnp.arange(1, 7)
  m = mf.jacobian_moments(activation="relu", sigma_w2=2.0, sigma_b2=0.0, depth=depth,
                          init=weights, q=1.0)
  # mu_1 = mu_2 = 1/2: variance L (1/mu_1 - 1 - s_1) = L (orthogonal), 2L (Gaussian).
  # Quadrature split at the kink is exact to ~1e-13.
  np.testing.assert_allclose(m.mean, 1.0, rtol=1e-12)
  np.testing.assert_allclose(m.variance, np.arange(1, 7) * (1 - s1), rtol=1e-12)
  np.testing.assert_allclose(m.second_moment, m.variance + 1.0, rtol=1e-12)


def test_linear_moments(x64):
  depth = jnp.arange(1, 5)
  gauss = mf.jacobian_moments(activation="linear", sigma_w2=1.5, sigma_b2=0.0, depth=depth,
                              init="gaussian", q=2.0)
  orth = mf.jacobian_moments(activation="linear", sigma_w2=1.5, sigma_b2=0.0, depth=depth,
                             init="orthogonal", q=2.0)
  np.testing.assert_allclose(gauss.mean, 1.5 ** np.arange(1, 5), rtol=1e-13)
  # Fuss-Catalan: m_2 = (L + 1) sigma_w2^(2L).
  np.testing.assert_allclose(gauss.second_moment, np.arange(2, 6) * 1.5 ** (2 * np.arange(1, 5)),
                             rtol=1e-13)
  np.testing.assert_allclose(orth.variance, 0.0, atol=1e-12)


@pytest.mark.slow
def test_tanh_moments_against_scipy_and_chi_1(x64):
  depth = 4
  m = mf.jacobian_moments(init="gaussian", depth=depth, **TANH)
  q = TANH["q"]

  def x_moment(k):
    f = lambda z: (1 - np.tanh(np.sqrt(q) * z) ** 2) ** (2 * k) * stats.norm.pdf(z)
    return integrate.quad(f, -np.inf, np.inf, epsabs=0, epsrel=1e-13)[0]

  mu1, mu2 = x_moment(1), x_moment(2)
  chi = TANH["sigma_w2"] * mu1
  np.testing.assert_allclose(m.mean, chi**depth, rtol=1e-11)
  np.testing.assert_allclose(m.variance, chi ** (2 * depth) * depth * (mu2 / mu1**2), rtol=1e-11)
  chi_1 = mf.chi_1(sigma_w2=TANH["sigma_w2"], sigma_b2=TANH["sigma_b2"], activation="tanh", q=q)
  np.testing.assert_allclose(m.mean, chi_1**depth, rtol=1e-11)
  # Criticality: the published (sigma_w2, q*) have 4-5 digits, so chi_1 = 1
  # to about 1e-4 and the mean of lambda = chi_1^L to about L * 1e-4.
  assert abs(float(m.mean) - 1.0) < 5e-4 * depth


@pytest.mark.slow
def test_q_none_uses_the_fixed_point(x64):
  kw = dict(activation="tanh", sigma_w2=1.7610, sigma_b2=0.05, depth=4, init="orthogonal")
  q_star = mf.q_star(sigma_w2=1.7610, sigma_b2=0.05, activation="tanh")
  assert abs(float(q_star) - 0.5700) < 1e-3  # docs/theory.md: q* = 0.5700
  m = mf.jacobian_moments(**kw)
  m_q = mf.jacobian_moments(**kw, q=q_star)
  np.testing.assert_allclose(m.mean, m_q.mean, rtol=1e-14)
  np.testing.assert_allclose(m.variance, m_q.variance, rtol=1e-14)


def test_moments_broadcast_and_keep_dtype():
  m = mf.jacobian_moments(activation="erf", sigma_w2=jnp.array([[1.0], [1.5], [2.0]]),
                          sigma_b2=0.1, depth=jnp.arange(1, 5), init="orthogonal",
                          q=jnp.float32(0.5))
  assert m.mean.shape == m.variance.shape == m.second_moment.shape == (3, 4)
  assert m.mean.dtype == jnp.float32


def test_moments_jit_matches_eager(x64):
  def f(sigma_w2, q):
    return mf.jacobian_moments(activation="tanh", sigma_w2=sigma_w2, sigma_b2=0.05,
                               depth=8, init="gaussian", q=q)

  args = (jnp.array([1.2, 1.7610, 2.5]), jnp.array([0.3, 0.57, 1.1]))
  eager, jitted = f(*args), jax.jit(f)(*args)
  np.testing.assert_allclose(jitted.mean, eager.mean, rtol=1e-13)
  np.testing.assert_allclose(jitted.variance, eager.variance, rtol=1e-13)


@pytest.mark.slow
@pytest.mark.parametrize("weights", [
    "gaussian",
    # QR of 32 matrices 400 x 400 takes many seconds on a shared CPU.
    pytest.param("orthogonal", marks=pytest.mark.slow),
])
def test_monte_carlo_moments_of_random_products(x64, weights):
  """``tr(JJ^T)/N`` and ``tr((JJ^T)^2)/N`` of sampled ``prod D W`` against theory."""
  width, depth, samples = 400, 4, 8
  q, sigma_w2 = TANH["q"], TANH["sigma_w2"]

  def trace_moments(key):
    j = jnp.eye(width)
    for k in jax.random.split(key, depth):
      kw, kd = jax.random.split(k)
      g = jax.random.normal(kw, (width, width), jnp.float64)
      # NumPy's QR: jnp.linalg.qr is far slower on CPU at this size.
      w = jnp.asarray(np.linalg.qr(g)[0]) if weights == "orthogonal" else g / np.sqrt(width)
      h = np.sqrt(q) * jax.random.normal(kd, (width,), jnp.float64)
      j = (1 - jnp.tanh(h) ** 2)[:, None] * (np.sqrt(sigma_w2) * w) @ j
    jjt = j @ j.T
    return float(jnp.trace(jjt)) / width, float(jnp.sum(jjt * jjt)) / width

  m1s, m2s = zip(*map(trace_moments, jax.random.split(jax.random.key(0), samples)))
  theory = mf.jacobian_moments(activation="tanh", sigma_w2=sigma_w2, sigma_b2=0.05,
                               depth=depth, init=weights, q=q)
  for sample, value in ((m1s, theory.mean), (m2s, theory.second_moment)):
    # 5 standard errors of the mean over samples, plus the O(L/N) finite-width
    # correction of normalised traces (e.g. Wishart: m_2 = 2 + 1/N), bounded by 2L/N.
    sample = np.asarray(sample)
    se = np.std(sample, ddof=1) / np.sqrt(samples)
    tol = 5 * se + 2 * depth / width * float(value)
    assert abs(np.mean(sample) - float(value)) < tol, (np.mean(sample), value, tol)


# --- densities -------------------------------------------------------------------


@pytest.mark.slow
def test_marchenko_pastur(x64):
  r = mf.jacobian_spectrum(activation="linear", sigma_w2=1.0, sigma_b2=0.0, depth=1,
                           init="gaussian", q=1.0)
  eps = 1e-7  # the default relative imaginary part in 64-bit
  lam = np.asarray(r.lam)
  rho = np.asarray(r.eigenvalue_density)
  exact = np.sqrt(np.clip(4 / lam - 1, 0, None)) / (2 * np.pi)
  assert np.all(r.converged)
  # Lorentzian smoothing of half-width eps*lam: O(sqrt(eps)) next to the
  # square-root edge, O(eps lam / distance to the edge) relative inside.
  np.testing.assert_allclose(rho, exact, atol=np.sqrt(eps), rtol=0)
  inside = (lam > 0.01) & (lam < 3.9)
  np.testing.assert_allclose(rho[inside], exact[inside], rtol=100 * eps * 4 / 0.1)
  np.testing.assert_allclose(r.singular_value_density, 2 * r.sigma * r.eigenvalue_density)
  np.testing.assert_allclose(r.lambda_max, 4.0, rtol=1e-8)
  assert float(r.zero_mass) == 0 and float(r.atom_mass) == 0
  # p(sigma) = sqrt(4 - sigma^2)/pi is bounded: the midpoint rule converges as
  # h^(3/2) at the edge, h = 2.2/400: 4e-4 is an upper bound.
  m0, m1, m2 = _grid_moments(r)
  np.testing.assert_allclose([m0, m1, m2 - m1**2], [1.0, 1.0, 1.0], rtol=4e-4)
  ds = r.to_dataset()
  assert ds.sizes["sigma"] == 400 and float(ds.lambda_max) == float(r.lambda_max)
  # The singular-value edge reads like the experiment's `sigma_max`: MP's sqrt(4) = 2.
  np.testing.assert_allclose(r.sigma_max, 2.0, rtol=1e-8)
  assert float(ds.sigma_max) == float(r.sigma_max)


@pytest.mark.parametrize("depth", [2, 3])
def test_fuss_catalan(x64, depth):
  r = mf.jacobian_spectrum(activation="linear", sigma_w2=1.0, sigma_b2=0.0, depth=depth,
                           init="gaussian", q=1.0)
  assert np.all(r.converged)
  # Edge of the Fuss-Catalan law: (L + 1)^(L + 1) / L^L.
  np.testing.assert_allclose(r.lambda_max, (depth + 1.0) ** (depth + 1) / depth**depth,
                             rtol=1e-8)
  moments = _grid_moments(r, ks=(1, 2, 3))
  fuss_catalan = [special.binom((depth + 1) * k, k) / (depth * k + 1) for k in (1, 2, 3)]
  # Midpoint rule, h = 1.1 sigma_max / 400: at the square-root edge the
  # error is about h^(3/2) lambda_max^k p, below 1e-3 relative for k <= 3.
  np.testing.assert_allclose(moments, fuss_catalan, rtol=1e-3)


@pytest.mark.slow
def test_edge_broadcasts_over_depth(x64):
  depth = np.array([[1], [2], [5]])
  edge = mf.jacobian_spectrum_edge(activation="linear", sigma_w2=np.array([1.0, 2.0]),
                                   sigma_b2=0.0, depth=depth, init="gaussian", q=1.0)
  assert edge.shape == (3, 2)
  expected = (depth + 1.0) ** (depth + 1) / depth**depth * np.array([1.0, 2.0]) ** depth
  np.testing.assert_allclose(edge, expected, rtol=1e-8)


def test_linear_orthogonal_is_a_point_mass(x64):
  r = mf.jacobian_spectrum(activation="linear", sigma_w2=1.3, sigma_b2=0.0, depth=3,
                           init="orthogonal", q=1.0)
  np.testing.assert_allclose(r.atom_lambda, 1.3**3, rtol=1e-13)
  np.testing.assert_allclose(r.atom_mass, 1.0, rtol=1e-13)
  # Singular values all equal sigma_w2^(L/2).
  np.testing.assert_allclose(np.sqrt(r.atom_lambda), 1.3**1.5, rtol=1e-13)
  conv = np.asarray(r.converged)
  # Only points right next to the atom are flagged (the subtraction cancels).
  assert conv.mean() > 0.95
  p = np.asarray(r.singular_value_density)
  assert np.all(np.isnan(p[~conv]))
  np.testing.assert_allclose(p[conv], 0.0, atol=1e-8)


@pytest.mark.slow
@pytest.mark.parametrize("activation,sigma_w2,q,depth,weights,normalised", [
    ("relu", 2.0, 1.0, 1, "gaussian", True),
    ("relu", 2.0, 1.0, 4, "orthogonal", False),
    ("tanh", TANH["sigma_w2"], TANH["q"], 4, "orthogonal", True),
    ("tanh", TANH["sigma_w2"], TANH["q"], 4, "gaussian", False),
    ("hard_tanh", 1.05, 0.1, 2, "orthogonal", True),
])
def test_density_reproduces_closed_form_moments(x64, activation, sigma_w2, q, depth,
                                                weights, normalised):
  kw = dict(activation=activation, sigma_w2=sigma_w2, sigma_b2=0.0, depth=depth,
            init=weights, q=q)
  r = mf.jacobian_spectrum(**kw)
  assert np.all(r.converged)
  assert np.nanmin(r.singular_value_density) > -1e-8
  m = mf.jacobian_moments(**kw)
  m0, m1, m2 = _grid_moments(r)
  # Midpoint rule on 400 points (error ~ h^(3/2) at square-root edges, and
  # where p(sigma) grows as sigma -> 0) plus the error of the law of phi'^2
  # for tanh (its variance to 2e-4): 1e-3 relative bounds both.
  np.testing.assert_allclose(m1, m.mean, rtol=1e-3)
  np.testing.assert_allclose(m2 - m1**2, m.variance, rtol=2e-3)
  if normalised:  # p(sigma) bounded near 0, so the grid holds all the mass
    if activation == "tanh":
      # The first cell [0, h] on its own, on a log grid of the same 400
      # points: there p(sigma) climbs from ~0 (sigma < 1e-4 needs |z| > 7 in
      # some layer) to near its maximum, which the midpoint rule misses by
      # ~p h / 10 (ReLU, hard-tanh: p is flat there).
      h = 2 * float(r.sigma[0])
      fine = np.geomspace(1e-10 * h, h, 400)
      p_fine = np.asarray(mf.jacobian_spectrum(**kw, sigma=fine).singular_value_density)
      m0 += np.trapezoid(p_fine * fine, np.log(fine)) - float(r.singular_value_density[0]) * h
    np.testing.assert_allclose(m0, 1.0, atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("q", [1e-6, 1e-3, 0.57, 4.0])
@pytest.mark.parametrize("activation", ["tanh", "erf", "gelu", "softplus", "hard_tanh",
                                        "relu"])
def test_law_of_phi_prime_squared_keeps_its_moments(x64, activation, q):
  """The segments standing for the law of ``x = phi'(sqrt(q) z)^2`` keep ``E[x]``, ``Var[x]``.

  Private, but every density rests on it: its mean sets ``E[lambda]`` and its
  variance the spread of the spectrum (``Var[lambda] = m_1^2 L Var[x]/mu_1^2``
  for orthogonal weights). Against scipy's adaptive quadrature in ``z``, cut
  at the kinks. The mean is matched segment by segment (quadrature error,
  1e-10); the variance up to the segments where a uniform law with the
  segment's mean cannot have its variance too (the one next to ``z = 0``
  for even ``phi'``): 1e-3 bounds that at ``n_nodes = 512`` (1.7e-4 seen
  for tanh at small ``q``).
  """
  from meanfield.spectrum._law import x_law  # pylint: disable=import-outside-toplevel

  act = mf.activation(activation)
  law = x_law(act, jnp.asarray(q, jnp.float64), 512)
  mid, half, mass = (np.asarray(v) for v in (law.mid, law.half, law.mass))
  mu1 = float(np.sum(mass * mid))
  var = float(np.sum(mass * ((mid - mu1) ** 2 + half ** 2 / 3)))

  derivative = jax.jit(act.derivative)

  def x(z):
    return float(derivative(jnp.asarray(np.sqrt(q) * z, jnp.float64))) ** 2

  cuts = sorted({0.0, *(k / np.sqrt(q) for k in act.kinks if abs(k / np.sqrt(q)) < 40)})
  ends = [-40.0, *cuts, 40.0]

  def expect(f):
    return sum(integrate.quad(lambda z: f(z) * stats.norm.pdf(z), a, b, epsabs=0,
                              epsrel=1e-13, limit=200)[0] for a, b in zip(ends[:-1], ends[1:]))

  e1 = expect(x)
  e_var = expect(lambda z: (x(z) - e1) ** 2)
  np.testing.assert_allclose(np.sum(mass), 1.0, rtol=1e-12)
  np.testing.assert_allclose(mu1, e1, rtol=1e-10)
  np.testing.assert_allclose(var, e_var, rtol=1e-3, atol=1e-15 * e1**2)


@pytest.mark.slow
def test_density_at_small_q_star_keeps_the_closed_form_variance(x64):
  """Orthogonal tanh at criticality, ``q* ~ 9e-4``: ``J J^T`` at depth 32 is nearly a point mass.

  ``Var[lambda] = 2.1e-4`` (``mu_2/mu_1^2 - 1 ~ 8 q*^2``); a law of
  ``phi'^2`` that was uniform between its values at segment ends gave this
  density 4.7 times that variance and 10% of its mass in a spurious tail
  below ``sigma = 0.985``. The bulk is ``[0.975, 1.012]`` with square-root
  edges (1.3e-7 of the mass lies below 0.9): on 400 points over ``[0.96,
  1.02]`` (step ``h = 1.5e-4``) the midpoint rule errs by about
  ``0.2 A h^(3/2) ~ 2e-4`` in mass at each edge (``p ~ A sqrt(distance)``,
  ``A ~ 600``), which is ~1e-3 of the variance after normalising by the
  mass (edge distance from the mean ~0.02, squared, over ``Var[lambda]``);
  the law's own variance error is 2e-4. So: mass to 1e-3, mean to 1e-5,
  variance to 5e-3.
  """
  sigma_b2 = 1e-9
  sigma_w2 = float(mf.critical_sigma_w2(sigma_b2=sigma_b2, activation="tanh"))
  kw = dict(activation="tanh", sigma_w2=sigma_w2, sigma_b2=sigma_b2, depth=32,
            init="orthogonal")
  r = mf.jacobian_spectrum(**kw, sigma=np.linspace(0.96, 1.02, 400))
  assert np.all(r.converged)
  m = mf.jacobian_moments(**kw)
  assert 1e-4 < float(m.variance) < 1e-3
  m0, m1, m2 = _grid_moments(r)
  np.testing.assert_allclose(m0, 1.0, atol=1e-3)
  np.testing.assert_allclose(m1 / m0, m.mean, rtol=1e-5)
  np.testing.assert_allclose(m2 / m0 - (m1 / m0) ** 2, m.variance, rtol=5e-3)


def _log_grid_mass(r: mf.JacobianSpectrum, sigma) -> float:
  """Trapezoid rule for ``integral p(sigma) sigma dlog(sigma)``, plus the atoms.

  In ``log sigma`` the power law ``p ~ sigma^-a`` at small sigma is smooth.
  """
  f = np.asarray(r.singular_value_density) * sigma
  return (float(np.sum(0.5 * (f[1:] + f[:-1]) * np.diff(np.log(sigma))))
          + float(r.zero_mass)
          + float(r.atom_mass))


def _log_then_linear_grid(sigma_max: float) -> np.ndarray:
  """200 log-spaced points on [1e-16, 0.05), 200 uniform ones on [0.05, 1.05 sigma_max].

  400 points in all, the shape of the default grid (one compiled solver).
  """
  return np.concatenate([np.geomspace(1e-16, 0.05, 200, endpoint=False),
                         np.linspace(0.05, 1.05 * sigma_max, 200)])


@pytest.mark.slow
@pytest.mark.parametrize("activation,sigma_w2,q,depth,weights,tol", [
    # Below sigma = 1e-16 tanh Gaussian depth 4 holds ~3e-6 of the mass
    # (p ~ sigma^(-3/5)); the trapezoid rule in log sigma (ratio 1.18 where
    # p is a power law; step sigma_max/190 at the square-root edge, error
    # ~ (1/190)^(3/2) ~ 4e-4) and the O(n_nodes^-2) law of phi'^2: 1e-3.
    ("tanh", TANH["sigma_w2"], TANH["q"], 4, "gaussian", 1e-3),
    ("tanh", TANH["sigma_w2"], TANH["q"], 4, "orthogonal", 1e-3),
    ("relu", 2.0, 1.0, 4, "gaussian", 1e-3),
])
def test_density_converges_at_small_sigma_and_holds_the_mass(x64, activation, sigma_w2, q,
                                                               depth, weights, tol):
  kw = dict(activation=activation, sigma_w2=sigma_w2, sigma_b2=0.0, depth=depth,
            init=weights, q=q)
  sigma = _log_then_linear_grid(float(np.sqrt(mf.jacobian_spectrum_edge(**kw))))
  r = mf.jacobian_spectrum(**kw, sigma=sigma)
  # Down to sigma = 1e-16 of sigma_max: the continuation in Im z
  # follows the path however long it gets as lambda -> 0.
  assert np.all(r.converged)
  np.testing.assert_allclose(_log_grid_mass(r, sigma), 1.0, atol=tol)


def test_atoms_of_relu_and_hard_tanh(x64):
  relu = mf.jacobian_spectrum(activation="relu", sigma_w2=2.0, sigma_b2=0.0, depth=1,
                              init="orthogonal", q=1.0)
  # Depth 1, orthogonal: J J^T = sigma_w2 D^2, atoms 1/2 at 0 and at sigma_w2.
  np.testing.assert_allclose([relu.zero_mass, relu.atom_mass, relu.atom_lambda],
                             [0.5, 0.5, 2.0], rtol=1e-12)
  q = 0.1
  hard = mf.jacobian_spectrum(activation="hard_tanh", sigma_w2=1.05, sigma_b2=0.0, depth=8,
                              init="orthogonal", q=q)
  p_linear = special.erf(1 / np.sqrt(2 * q))
  np.testing.assert_allclose(hard.zero_mass, 1 - p_linear, rtol=1e-10)
  np.testing.assert_allclose(hard.atom_mass, 8 * p_linear - 7, rtol=1e-10)
  np.testing.assert_allclose(hard.atom_lambda, 1.05**8, rtol=1e-12)


def test_tanh_depth_one_orthogonal_is_the_law_of_phi_prime_squared(x64):
  """Depth 1, orthogonal: ``lambda = sigma_w2 x`` with ``x = sech^4(sqrt(q) z)``, in closed form.

  The law of ``x`` is represented by segments, each holding its exact mass
  (a 1/249 share of one of the two half-lines, at most 2.0e-3) inside the
  range of ``x`` it stands for; so the distribution function of the density
  can miss the exact one by at most one segment's mass anywhere, and is exact
  at the segment ends. Compared as increments of ``P(x <= t)`` from
  ``t = 0.02`` to ``0.95`` (trapezoid rule on 400 points across ~480 jumps of
  about 1% of the density: ~1e-4, 1e-3 allowed).
  """
  sigma_w2, q = TANH["sigma_w2"], TANH["q"]
  t = np.linspace(0.02, 0.95, 400)
  r = mf.jacobian_spectrum(activation="tanh", sigma_w2=sigma_w2, sigma_b2=0.05, depth=1,
                           init="orthogonal", q=q, sigma=np.sqrt(sigma_w2 * t))
  assert np.all(r.converged)
  np.testing.assert_allclose(np.asarray(r.lam) / sigma_w2, t, rtol=1e-12)
  rho = np.asarray(r.eigenvalue_density) * sigma_w2   # density per unit x

  def cdf(x):  # P(sech^4(sqrt(q) |z|) <= x)
    return 2 * stats.norm.cdf(-np.arccosh(x ** -0.25) / np.sqrt(q))

  computed = np.r_[0.0, np.cumsum(0.5 * (rho[1:] + rho[:-1]) * np.diff(t))]
  exact = cdf(t) - cdf(t[0])
  assert exact[-1] > 0.8   # the window holds most of the law
  np.testing.assert_allclose(computed, exact, rtol=0, atol=0.5 / 249 + 1e-3)


@pytest.mark.slow
def test_float32_marchenko_pastur():
  r = mf.jacobian_spectrum(activation="linear", sigma_w2=1.0, sigma_b2=0.0, depth=1,
                           init="gaussian", q=1.0)
  assert r.singular_value_density.dtype == jnp.float32
  assert np.all(r.converged)
  lam = np.asarray(r.lam, np.float64)
  exact = np.sqrt(np.clip(4 / lam - 1, 0, None)) / (2 * np.pi)
  # eps = 1e-4 in float32: sqrt(eps) next to the edge.
  np.testing.assert_allclose(r.eigenvalue_density, exact, atol=1e-2, rtol=0)
  inside = (lam > 0.01) & (lam < 3.9)
  np.testing.assert_allclose(np.asarray(r.eigenvalue_density)[inside], exact[inside],
                             rtol=1e-3)


def test_spectrum_shared_grid_and_validation_of_sigma(x64):
  sigma = np.linspace(0.05, 1.95, 400)  # as many points as the default grid: one compile
  r = mf.jacobian_spectrum(activation="linear", sigma_w2=1.0, sigma_b2=0.0, depth=1,
                           init="gaussian", q=1.0, sigma=sigma)
  np.testing.assert_allclose(r.sigma, sigma)
  np.testing.assert_allclose(r.singular_value_density, np.sqrt(4 - sigma**2) / np.pi,
                             atol=1e-6)
  with pytest.raises(ValueError, match="`sigma` must be > 0"):
    mf.jacobian_spectrum(activation="linear", sigma_w2=1.0, sigma_b2=0.0, depth=1,
                         init="gaussian", q=1.0, sigma=np.array([0.0, 1.0]))
  with pytest.raises(ValueError, match="`sigma` must be a 1-D array"):
    mf.jacobian_spectrum(activation="linear", sigma_w2=1.0, sigma_b2=0.0, depth=1,
                         init="gaussian", q=1.0, sigma=np.ones((2, 2)))


# --- validation --------------------------------------------------------------------

BASE = dict(activation="tanh", sigma_w2=1.0, sigma_b2=0.0, depth=2, init="gaussian", q=0.5)


@pytest.mark.parametrize("fn", [mf.jacobian_moments, mf.jacobian_spectrum,
                                mf.jacobian_spectrum_edge])
@pytest.mark.parametrize("change,message", [
    (dict(init="haar"), "`init` must be one of 'gaussian', 'orthogonal'"),
    (dict(depth=0), "`depth` must be an integer >= 1, got 0"),
    (dict(depth=2.5), "`depth` must be an integer >= 1, got 2.5"),
    (dict(sigma_w2=0.0), "`sigma_w2` must be > 0"),
    (dict(sigma_b2=-0.1), "`sigma_b2` must be >= 0"),
    (dict(q=-1.0), "`q` must be >= 0"),
    (dict(activation="tanhh"), "`activation` must be one of"),
])
def test_bad_input_raises(fn, change, message):
  with pytest.raises(ValueError, match=message.replace("(", r"\(")):
    fn(**{**BASE, **change})


def test_bad_grid_arguments_raise():
  for change, message in ((dict(n_points=0), "`n_points` must be an integer >= 1, got 0"),
                          (dict(n_nodes=2.5), "`n_nodes` must be an integer >= 1"),
                          (dict(eps=0.0), "`eps` must be in")):
    with pytest.raises(ValueError, match=message):
      mf.jacobian_spectrum(**BASE, **change)


@pytest.mark.slow
def test_spectrum_jit_matches_eager(x64):
  def f(sigma_w2):
    return mf.jacobian_spectrum(activation="tanh", sigma_w2=sigma_w2, sigma_b2=0.05,
                                depth=jnp.array([2, 4]), init="orthogonal", q=0.57)

  eager, jitted = f(1.761), jax.jit(f)(1.761)
  assert eager.singular_value_density.shape == (2, 400)
  np.testing.assert_allclose(jitted.singular_value_density, eager.singular_value_density,
                             rtol=1e-10)
  np.testing.assert_array_equal(jitted.converged, eager.converged)


@pytest.mark.slow
@pytest.mark.parametrize("activation", mf.activation_names())
def test_every_activation_converges_and_keeps_its_moments(x64, activation):
  kw = dict(activation=activation, sigma_w2=1.5, sigma_b2=0.0, depth=6, init="orthogonal",
            q=0.7)
  r = mf.jacobian_spectrum(**kw)
  assert np.mean(r.converged) > 0.99
  m = mf.jacobian_moments(**kw)
  _, m1, _ = _grid_moments(jax.tree.map(lambda a: jnp.nan_to_num(a), r))
  np.testing.assert_allclose(m1, m.mean, rtol=1e-2)


@pytest.mark.slow
def test_density_at_a_point_does_not_depend_on_the_rest_of_the_grid(x64):
  """A point's continuation starts at its own distance from the spectrum.

  ReLU, orthogonal, depth 128 (sigma_max ~ 25): on a grid reaching sigma =
  1e3 every point once started 1e6 above the real axis, and the point
  sigma = 1.883 landed on another root, converged, at 10 times its
  neighbours' density. Here the same points inside the support, computed on
  that wide grid and on a grid confined to the support, must agree to the
  solver's tolerance.
  """
  kw = dict(activation="relu", sigma_w2=2.0, sigma_b2=0.0, q=1.0, depth=128,
            init="orthogonal")
  wide = np.sort(np.r_[np.geomspace(1e-3, 1e3, 399), 1.882998178616926])
  inside = (wide > 0.5) & (wide < 5.0)
  narrow = np.sort(np.r_[wide[inside], np.linspace(0.51, 4.99, 400 - inside.sum())])
  p_wide = np.asarray(mf.jacobian_spectrum(**kw, sigma=wide).singular_value_density)[inside]
  r = mf.jacobian_spectrum(**kw, sigma=narrow)
  assert np.all(r.converged)
  p_narrow = np.asarray(r.singular_value_density)[np.isin(narrow, wide[inside])]
  np.testing.assert_allclose(p_wide, p_narrow, rtol=1e-6)


def test_tanh_law_at_large_q_has_no_spurious_atom_at_zero(x64):
  # tanh' = 1/cosh^2 is positive everywhere: no segment of the law of x may be a point mass
  # at 0 (1 - tanh^2 rounded to 0 beyond |h| ~ 19, which at sigma_w2 = 100, q* ~ 95 put
  # 3.6% of the mass in a spurious zero_mass).
  from meanfield.spectrum._law import x_law  # pylint: disable=import-outside-toplevel

  # jitted, as the spectrum runs it: one program (eager, ~100 operations compiled one by one)
  law = jax.jit(x_law, static_argnums=(0, 2))(mf.activation("tanh"),
                                              jnp.asarray(95.0, jnp.float64), 512)
  atom_at_zero = (np.asarray(law.half) == 0) & (np.asarray(law.mid) == 0) & (
      np.asarray(law.mass) > 0)
  assert not np.any(atom_at_zero)
  assert np.all(np.asarray(law.mid)[np.asarray(law.mass) > 0] > 0)


@pytest.mark.slow
def test_law_at_q_zero_is_the_limit_from_above(x64):
  # ReLU networks are scale-free: at q = 0 the law of x = phi'(sqrt(q) z)^2 is the same
  # Bernoulli(1/2) on {0, 1} as at every q > 0 (phi' at the kink itself gave mean 0).
  from meanfield.spectrum._law import x_law, x_moments  # pylint: disable=import-outside-toplevel

  relu = mf.activation("relu")
  np.testing.assert_array_equal(x_moments(relu, jnp.asarray([0.0, 1.0])), [[0.5, 0.5]] * 2)
  at_zero, at_one = (x_law(relu, jnp.asarray(q, jnp.float64), 64) for q in (0.0, 1.0))
  for a, b in zip(jax.tree.leaves(at_zero), jax.tree.leaves(at_one)):
    np.testing.assert_array_equal(a, b)
  # so ReLU below the He point (q* = 0) has mean chi_1^L and relative variance L (orthogonal)
  m = mf.jacobian_moments(activation="relu", sigma_w2=1.99, sigma_b2=0.0, depth=4,
                          init="orthogonal")
  np.testing.assert_allclose([m.mean, m.variance / m.mean**2], [0.995**4, 4.0], rtol=1e-12)
  # smooth phi: a point mass at phi'(0)^2 (tanh: 1)
  np.testing.assert_array_equal(x_moments(mf.activation("tanh"), jnp.asarray(0.0)), [1.0, 1.0])


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["tanh", "relu", "hard_tanh"])
def test_real_log_z_right_of_the_support_is_the_complex_one(x64, activation):
  """The edge search's real-arithmetic log z(w) and its slope are the complex path's on
  the real axis right of the support of x (both orthogonal and Gaussian weights)."""
  from meanfield.activations import activation as get
  from meanfield.spectrum._law import x_law
  from meanfield.spectrum._transforms import log_z, log_z_real
  law = x_law(get(activation), jnp.asarray(0.7), 64)
  x_max = float(jnp.max(law.mid + law.half))
  w = x_max * (1.0 + jnp.geomspace(1e-6, 1e3, 40))
  for orthogonal in (0.0, 1.0):
    f, df = jax.vmap(lambda v: log_z_real(v, law, 8.0, jnp.log(1.3), orthogonal))(w)
    fc, dfc, _ = jax.vmap(lambda v: log_z(v, law, 8.0, jnp.log(1.3), orthogonal))(
        w.astype(jnp.complex128))
    # The same float64 quantities by two formulas (log1p of real ratios against complex
    # atanh pieces): log z is O(1-10), agreement to 1e4 eps; the slope cancels up to
    # 1/(w - x_max) ~ 1e6 x larger terms at the grid's nearest point, so 1e-9 relative.
    np.testing.assert_allclose(f, fc.real, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(df, dfc.real, rtol=1e-9)
    np.testing.assert_allclose(fc.imag, 0.0, atol=1e-12)
