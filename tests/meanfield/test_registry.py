"""A new activation is one table entry: registered in a test, its theory checked by scipy."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

import meanfield as mf
from meanfield import activations
from tests.meanfield import quadrature_reference as ref

SIGMA_W2, SIGMA_B2 = 2.5, 0.05   # arctan (slope 1 at 0, like tanh) is chaotic here: c* < 1


def _arctan_theory_by_scipy():
  """q*, chi_1 and the c-map at q* for phi = arctan, phi' = 1 / (1 + h^2), by QUADPACK."""
  m2 = lambda q: ref.expectation(lambda h: np.arctan(h) ** 2, q)
  q = optimize.brentq(lambda q: SIGMA_W2 * m2(q) + SIGMA_B2 - q, 1e-3, 10.0, xtol=1e-15,
                      rtol=1e-15)
  chi_1 = SIGMA_W2 * ref.expectation(lambda h: 1 / (1 + h * h) ** 2, q)
  c_map = lambda c: (SIGMA_W2 * ref.bivariate(lambda a, b: np.arctan(a) * np.arctan(b), q, c)
                     + SIGMA_B2) / q
  return q, chi_1, c_map


@pytest.mark.slow
def test_a_new_activation_is_one_entry(monkeypatch, x64):
  # One line in the table, nothing in _DERIVATIVES or _CLOSED_FORMS: phi' and phi''
  # by autodiff, every integral by quadrature.
  monkeypatch.setitem(activations.ACTIVATIONS, "arctan", activations._entry("arctan", jnp.arctan))
  assert "arctan" in mf.activation_names() and "arctan" not in activations._DERIVATIVES
  act = mf.activation("arctan")
  assert act.dfn is None and act.closed_forms == {}
  np.testing.assert_allclose(act.derivative(jnp.array([0.0, 2.0])), [1.0, 0.2], rtol=1e-15)

  kw = dict(sigma_w2=SIGMA_W2, sigma_b2=SIGMA_B2, activation="arctan")
  q_want, chi_1_want, c_map = _arctan_theory_by_scipy()
  # 64-bit theory agrees with high-precision quadrature to ~1e-10 relative (the README's
  # accuracy claim); QUADPACK here is at 1e-13.
  np.testing.assert_allclose(mf.q_star(**kw), q_want, rtol=1e-10)
  np.testing.assert_allclose(mf.chi_1(**kw), chi_1_want, rtol=1e-10)
  assert chi_1_want > 1.05                                  # chaotic, so c* < 1 is a real test
  c = float(mf.fixed_point(**kw).c_star)
  assert 0 < c < 0.99
  # The independent c-map's root lies within 1e-9 of c*: c_map(c) - c changes sign across
  # [c* - 1e-9, c* + 1e-9] (its slope there is chi_c - 1 = O(0.1), so a 1e-9 shift moves it by
  # ~1e-10, far above QUADPACK's 1e-13).
  d = 1e-9
  assert c_map(c - d) - (c - d) > 0 > c_map(c + d) - (c + d)
  # The Network description reads the new name too.
  net = mf.Network(activation="arctan", sigma_w2=SIGMA_W2, sigma_b2=SIGMA_B2, depth=3)
  np.testing.assert_allclose(mf.q_star(net), q_want, rtol=1e-10)


def test_the_entry_is_gone_after_the_test():
  # monkeypatch above changed the table for that test only.
  assert "arctan" not in mf.activation_names()
  with pytest.raises(ValueError, match="`activation` must be one of"):
    mf.activation("arctan")
