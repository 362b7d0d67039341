"""The network description: fields validated, and theory functions reading it."""

import inspect

import jax
import numpy as np
import pytest

import meanfield as mf
from meanfield.network import Network, accepts_network, weight_law

TANH = dict(activation="tanh", sigma_w2=1.5, sigma_b2=0.05)


def test_theory_of_a_network_equals_the_keyword_call():
  net = Network(**TANH, depth=6)
  with jax.enable_x64(True):
    assert float(mf.q_star(net)) == float(mf.q_star(**TANH))
    assert float(mf.chi_c(net)) == float(mf.chi_c(**TANH))
    a = mf.propagate(net, q_input=1.0, c_input=0.3)
    b = mf.propagate(**TANH, depth=6, q_input=1.0, c_input=0.3)
    np.testing.assert_array_equal(np.asarray(a.c), np.asarray(b.c))
    assert float(mf.q_map(0.7, network=net)) == float(mf.q_map(0.7, **TANH))
    m = mf.jacobian_moments(net.replace(init="orthogonal"))
    m2 = mf.jacobian_moments(**TANH, depth=6, init="orthogonal")
    assert float(m.variance) == float(m2.variance)


def test_a_field_given_twice_or_an_uncovered_variant_raises():
  net = Network(**TANH)
  with pytest.raises(ValueError, match="'sigma_w2' both from `network`"):
    mf.q_star(net, sigma_w2=2.0)
  with pytest.raises(ValueError, match="residual=True, which `q_star` does not cover"):
    mf.q_star(net.replace(residual=True))
  with pytest.raises(ValueError, match="must be a meanfield.Network"):
    mf.q_star({"sigma_w2": 1.0})


@pytest.mark.parametrize("field, value, message", [
    ("sigma_w2", -1.0, "`sigma_w2` must be >= 0"),
    ("sigma_b2", [0.1, 0.2], "one number"),
    ("depth", 0, "`depth` must be an integer >= 1"),
    ("width", 2.5, "`width` must be an integer >= 1"),
    ("init", "haar", "`init` must be one of 'gaussian', 'orthogonal'"),
    ("norm", "group", "`norm` must be one of None"),
    ("keep_prob", 0.0, "`keep_prob` must be > 0 and <= 1"),
    ("keep_prob", 1.5, "`keep_prob` must be > 0 and <= 1"),
    ("alpha", 0.0, "`alpha` must be > 0"),
    ("activation", "nope", "activation"),
])
def test_bad_fields_raise_naming_them(field, value, message):
  with pytest.raises(ValueError, match=message):
    Network(**{field: value})


def test_weight_law_reads_a_scheme_law_attribute():
  class Scheme:
    law = "orthogonal"
  assert weight_law(Scheme()) == "orthogonal"
  assert weight_law("gaussian") == "gaussian"
  assert Network(init=Scheme()).law == "orthogonal"


def test_every_public_theory_function_takes_a_network():
  """Each function of meanfield with the hyperparameter keywords accepts a Network."""
  names = [n for n in dir(mf) if not n.startswith("_")]
  for name in names:
    fn = getattr(mf, name)
    if not inspect.isfunction(fn):
      continue
    params = inspect.signature(fn).parameters
    if "sigma_b2" in params or "sigma_w2" in params:
      assert "network" in params, name


def test_a_supported_variant_is_passed_through():
  @accepts_network(supports=("keep_prob",))
  def f(*, sigma_w2, keep_prob=1.0):
    return sigma_w2 * keep_prob
  assert f(Network(sigma_w2=2.0, keep_prob=0.5)) == 1.0
