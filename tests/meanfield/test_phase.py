"""Critical line and phase diagram."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import meanfield as mf
from meanfield.depth import depth_scale


@pytest.mark.slow
def test_tanh_critical_line_published_and_limit(x64):
  got = mf.critical_sigma_w2(sigma_b2=jnp.array([0.05, 1e-4, 1e-6, 1e-8, 0.0]), activation="tanh")
  np.testing.assert_allclose(got[0], 1.7610, atol=5e-5)          # Schoenholz et al. 2017
  # -> 1 as sigma_b2 -> 0, monotonically (sigma_w2 - 1 shrinks like a power of sigma_b2)
  assert np.all(np.diff(np.asarray(got)) < 0)
  assert 0 < got[3] - 1 < 1e-2
  np.testing.assert_allclose(got[4], 1.0, rtol=1e-14)       # q* = 0: 1 / tanh'(0)^2


@pytest.mark.slow
def test_piecewise_linear_critical_lines(x64):
  got = mf.critical_sigma_w2(sigma_b2=jnp.array([0.0, 0.05]), activation="relu")
  np.testing.assert_allclose(got[0], 2.0)
  assert np.isnan(got[1])
  assert mf.critical_sigma_w2(sigma_b2=0.0, activation="linear") == 1.0


@pytest.mark.slow
def test_critical_line_round_trip(x64):
  line = mf.critical_line(jnp.array([0.1, 1.0, 10.0]), activation="erf")
  assert np.all(line.sigma_b2 > 0)
  np.testing.assert_allclose(mf.critical_sigma_w2(sigma_b2=line.sigma_b2, activation="erf"),
                             line.sigma_w2, rtol=1e-12)
  np.testing.assert_allclose(mf.chi_1(sigma_w2=line.sigma_w2, sigma_b2=line.sigma_b2,
                                      activation="erf"), 1.0, rtol=1e-12)


@pytest.fixture(scope="module")
def erf_diagram():
  with jax.enable_x64(True):
    return mf.phase_diagram(sigma_w2=np.array([0.8, 1.2, 2.0, 3.0]),
                            sigma_b2=np.array([0.0, 0.02, 0.1]), activation="erf")


@pytest.mark.slow
def test_phase_diagram_layout(erf_diagram):
  ds = erf_diagram
  assert ds.sizes == {"sigma_w2": 4, "sigma_b2": 3}
  for name in ("q_star", "c_star", "chi_1", "chi_c", "xi_q", "xi_c", "phase", "converged"):
    assert ds[name].dims == ("sigma_w2", "sigma_b2")
  assert ds.critical_sigma_w2.dims == ("sigma_b2",)
  assert ds.q_star.dtype == np.float64 and bool(ds.converged.all())
  assert ds.phase.attrs["flag_meanings"] == "undefined ordered critical chaotic"


@pytest.mark.slow
def test_phase_diagram_values_match_the_functions(erf_diagram, x64):
  ds = erf_diagram
  sw2 = ds.sigma_w2.values[:, None]
  sb2 = ds.sigma_b2.values[None, :]
  np.testing.assert_allclose(ds.q_star, mf.q_star(sigma_w2=sw2, sigma_b2=sb2, activation="erf"))
  chi = ds.chi_1.values
  phase = ds.phase.values
  assert np.all((phase == mf.phase.ORDERED) == (chi < 1 - 1e-3))
  assert np.all((phase == mf.phase.CHAOTIC) == (chi > 1 + 1e-3))
  # c* < 1 exactly where chi_1 > 1 (the critical band may hold either); same solver as fixed_point
  assert np.all((ds.c_star.values < 1) == (chi > 1))
  np.testing.assert_allclose(ds.c_star.values[3, 1],
                             mf.fixed_point(sigma_w2=3.0, sigma_b2=0.02, activation="erf").c_star,
                             rtol=1e-14)
  np.testing.assert_allclose(ds.xi_c, depth_scale(ds.chi_c.values), rtol=1e-14)


@pytest.mark.slow
def test_tanh_phase_diagram_converges(x64):
  ds = mf.phase_diagram(sigma_w2=np.linspace(0.5, 4.0, 12), sigma_b2=np.linspace(0.0, 0.3, 6),
                        activation="tanh")
  assert bool(ds.converged.all())
  np.testing.assert_allclose(ds.critical_sigma_w2.values[0], 1.0)


def test_bad_input():
  with pytest.raises(ValueError, match="`sigma_w2` must be a 1-D array"):
    mf.phase_diagram(sigma_w2=np.ones((2, 2)), sigma_b2=np.ones(2), activation="erf")
  with pytest.raises(ValueError, match="`sigma_b2` must be >= 0"):
    mf.critical_sigma_w2(sigma_b2=-0.1, activation="tanh")
  with pytest.raises(ValueError, match="`q` must be >= 0"):
    mf.critical_line(-1.0, activation="tanh")


@pytest.mark.slow
def test_critical_sigma_w2_only_where_a_network_reaches_the_line(x64):
  # GELU's critical line at small sigma_b2 passes through unstable fixed points of the q-map:
  # the length runs to a smaller q* where chi_1 < 1, so there is no critical point (nan),
  # and critical_init refuses the same points. Wherever a value is given, chi_1 at the q* a
  # network reaches is 1.
  sigma_b2 = np.array([1e-4, 0.05, 0.1, 0.3, 1.0])
  got = np.asarray(mf.critical_sigma_w2(sigma_b2=sigma_b2, activation="gelu"))
  assert np.all(np.isnan(got[:3])) and np.all(np.isfinite(got[3:]))
  for name in ("gelu", "tanh", "erf", "elu", "selu", "sigmoid", "hard_tanh"):
    sb2 = np.array([0.0, 1e-6, 0.01, 0.05, 0.3, 1.0, 100.0])
    w2 = np.asarray(mf.critical_sigma_w2(sigma_b2=sb2, activation=name))
    ok = np.isfinite(w2)
    chi = np.asarray(mf.chi_1(sigma_w2=w2[ok], sigma_b2=sb2[ok], activation=name))
    np.testing.assert_allclose(chi, 1, atol=1e-7, err_msg=name)
  ds = mf.phase_diagram(sigma_w2=np.array([1.0, 2.0]), sigma_b2=np.array([0.05, 0.3]),
                        activation="gelu")
  assert np.isnan(ds.critical_sigma_w2.values[0]) and np.isfinite(ds.critical_sigma_w2.values[1])
