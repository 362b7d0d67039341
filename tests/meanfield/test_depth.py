"""Depth scales against propagation through depth and their closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import meanfield as mf
from meanfield.depth import depth_scale

ERF = dict(sigma_b2=0.05, activation="erf")


def test_depth_scale_special_values():
  got = depth_scale(jnp.array([0.0, np.exp(-0.5), 1.0, 1.3, np.nan]))
  np.testing.assert_allclose(got[:4], [0.0, 2.0, np.inf, np.inf], rtol=1e-6)
  assert np.isnan(got[4])


@pytest.mark.slow
def test_xi_q_and_xi_c_match_the_approach_to_the_fixed_points(x64):
  # |q^l - q*| and |c^l - c*| shrink by exp(-1/xi) per layer (Schoenholz et al. 2017, Eqs. 5, 9).
  # Start 1e-6 away: the linearisation error is then ~1e-6, the roundoff in the ratio ~1e-10.
  sw2 = jnp.array([1.0, 3.0])                          # ordered, chaotic (erf: chi_1 crosses 1 near 1.6)
  xi = mf.depth_scales(sigma_w2=sw2, **ERF)
  q_star = mf.q_star(sigma_w2=sw2, **ERF)
  c_star = mf.fixed_point(sigma_w2=sw2, **ERF).c_star
  q_input = (q_star * (1 + 1e-6) - ERF["sigma_b2"]) / sw2       # so that q^1 = q* (1 + 1e-6)
  p = mf.propagate(q_input=q_input, c_input=0.9, depth=3, sigma_w2=sw2, **ERF)
  dq = np.asarray(p.q) - np.asarray(q_star)[:, None]
  np.testing.assert_allclose(dq[:, 2] / dq[:, 1], np.exp(-1 / xi.xi_q), rtol=1e-5)
  c0 = c_star - 1e-6
  c1 = mf.c_map(c0, sigma_w2=sw2, q=q_star, **ERF)
  c2 = mf.c_map(c1, sigma_w2=sw2, q=q_star, **ERF)
  np.testing.assert_allclose((c2 - c_star) / (c1 - c_star), np.exp(-1 / xi.xi_c), rtol=1e-5)


@pytest.mark.slow
def test_xi_c_diverges_at_criticality(x64):
  sw2 = mf.critical_sigma_w2(**ERF)
  xi = mf.depth_scales(sigma_w2=jnp.stack([sw2 - 1e-3, sw2, sw2 + 1e-3]), **ERF)
  # xi_c ~ 1 / |chi - 1|, with |chi - 1| ~ 1e-3 * dchi/dsigma_w2 (order 0.5)
  assert 100 < xi.xi_c[0] < 1e5 and 100 < xi.xi_c[2] < 1e5
  assert xi.xi_c[1] > 1e8


def test_ordered_xi_c_is_minus_one_over_log_chi_1(x64):
  sw2 = jnp.array([0.5, 1.2])
  xi = mf.depth_scales(sigma_w2=sw2, **ERF)
  chi = mf.chi_1(sigma_w2=sw2, **ERF)
  np.testing.assert_allclose(xi.xi_c, -1 / np.log(chi), rtol=1e-13)


@pytest.mark.slow
def test_relu_closed_forms(x64):
  sw2 = jnp.array([1.0, 1.5])
  xi = mf.depth_scales(sigma_w2=sw2, sigma_b2=0.1, activation="relu")
  # the ReLU q-map is affine with slope sigma_w2 / 2
  np.testing.assert_allclose(xi.xi_q, -1 / np.log(sw2 / 2), rtol=1e-13)
  np.testing.assert_allclose(mf.gradient_depth_scale(sigma_w2=jnp.array([1.0, 3.0]), sigma_b2=0.0,
                                                     activation="relu"),
                             1 / np.abs(np.log([0.5, 1.5])), rtol=1e-13)


@pytest.mark.slow
def test_shape_dtype_and_bad_input():
  xi = mf.depth_scales(sigma_w2=jnp.ones((2, 1), jnp.float32), sigma_b2=jnp.full((1, 3), 0.1),
                       activation="erf")
  assert xi.xi_q.shape == xi.xi_c.shape == (2, 3) and xi.xi_c.dtype == jnp.float32
  with pytest.raises(ValueError, match="`sigma_w2` must be >= 0"):
    mf.depth_scales(sigma_w2=-1.0, sigma_b2=0.1, activation="erf")


@pytest.mark.slow
def test_depth_scales_are_nan_where_q_star_is_infinite(x64):
  """ReLU above sigma_w2 = 2 has no fixed length: nan there, eagerly and under jit, not a raise."""
  sw2 = np.array([0.8, 1.5, 2.5])
  eager = mf.depth_scales(sigma_w2=sw2, sigma_b2=0.05, activation="relu")
  traced = jax.jit(lambda s: mf.depth_scales(sigma_w2=s, sigma_b2=0.05, activation="relu"))(sw2)
  for ds in (eager, traced):
    assert np.all(np.isfinite(np.asarray(ds.xi_c)[:2])) and np.isnan(np.asarray(ds.xi_c)[2])
    assert np.isnan(np.asarray(ds.xi_q)[2])
  np.testing.assert_allclose(np.asarray(eager.xi_c), np.asarray(traced.xi_c), rtol=1e-12)
