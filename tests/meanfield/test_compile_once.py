"""Every public theory function compiles once, then serves new values from JAX's cache.

For each function: a first call (which may compile), then a call with new
values of its continuous arguments, of the same shapes and dtypes, which must
compile nothing (counted from ``jax.log_compiles``). A function that retraced
on every value, or ran its work as eager operations of value-dependent shapes,
fails here. The default run checks one function of each module; the rest run
with ``-m slow``.
"""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import meanfield as mf
from meanfield.gaussian import bivariate_expectation, gaussian_expectation

T = dict(activation="tanh", sigma_b2=0.05)
COV = np.eye(4) * 0.6 + 0.1
CONV = mf.Conv(kernel_size=3, spatial_size=4)
RNN = mf.RNN(sigma_u2=0.5)

#: name -> call with a value v (1.5 on the first call, 1.7 on the second)
CALLS = {
    "gaussian_expectation": lambda v: gaussian_expectation(jnp.tanh, v),
    "bivariate_expectation": lambda v: bivariate_expectation(jnp.multiply, v, v, 0.5 * v),
    "q_map": lambda v: mf.q_map(v, sigma_w2=2.0, **T),
    "c_map": lambda v: mf.c_map(v / 2, sigma_w2=2.5, **T),
    "q_map_slope": lambda v: mf.q_map_slope(v, sigma_w2=2.0, **T),
    "post_activation_variance": lambda v: mf.post_activation_variance(v, activation="tanh"),
    "q_star": lambda v: mf.q_star(sigma_w2=v, **T),
    "chi_1": lambda v: mf.chi_1(sigma_w2=v, **T),
    "fixed_point": lambda v: mf.fixed_point(sigma_w2=v + 1, **T),
    "fixed_point_at_q": lambda v: mf.fixed_point(sigma_w2=v + 1, q=v, **T),
    "depth_scales": lambda v: mf.depth_scales(sigma_w2=v + 1, **T),
    "gradient_depth_scale": lambda v: mf.gradient_depth_scale(sigma_w2=v + 1, **T),
    "critical_sigma_w2": lambda v: mf.critical_sigma_w2(sigma_b2=v / 10, activation="tanh"),
    "critical_line": lambda v: mf.critical_line(v / 3, activation="tanh"),
    "propagate": lambda v: mf.propagate(q_input=1.0, c_input=0.5, depth=5, sigma_w2=v, **T),
    "jacobian_moments": lambda v: mf.jacobian_moments(sigma_w2=v, depth=5, init="orthogonal",
                                                      **T),
    "jacobian_spectrum_edge": lambda v: mf.jacobian_spectrum_edge(
        sigma_w2=v, depth=5, init="gaussian", **T),
    "fixed_point_dropout": lambda v: mf.fixed_point(sigma_w2=v, arch=mf.MLP(keep_prob=0.9), **T),
    "propagate(keep_prob)": lambda v: mf.propagate(q_input=1.0, c_input=0.5, depth=5,
                                                   sigma_w2=v, arch=mf.MLP(keep_prob=0.9), **T),
    "fixed_point_layernorm": lambda v: mf.fixed_point(sigma_w2=v, arch=mf.MLP(norm="layer"), **T),
    "propagate(norm)": lambda v: mf.propagate(q_input=1.0, c_input=0.5, depth=5, sigma_w2=v,
                                              arch=mf.MLP(norm="layer"), **T),
    "q_map(residual)": lambda v: mf.q_map(v, sigma_w2=1.5, arch=mf.MLP(residual=True), **T),
    "c_map(keep_prob)": lambda v: mf.c_map(v / 2, sigma_w2=1.5, arch=mf.MLP(keep_prob=0.9), **T),
    "propagate(residual)": lambda v: mf.propagate(q_input=1.0, c_input=0.5, depth=5,
                                                  sigma_w2=v, arch=mf.MLP(residual=True), **T),
    "finite_width_q": lambda v: mf.finite_width_q(q_input=1.0, depth=5, width=128, sigma_w2=v,
                                                  **T),
    "finite_width_jacobian": lambda v: mf.finite_width_jacobian(q_input=1.0, depth=5, width=128,
                                                                sigma_w2=v, **T),
    "finite_width_gradient": lambda v: mf.finite_width_gradient(q_input=1.0, depth=5, width=128,
                                                                sigma_w2=v, **T),
    "fixed_point(arch=RNN)": lambda v: mf.fixed_point(sigma_w2=v, q_input=0.8, arch=RNN, **T),
    "propagate(arch=RNN)": lambda v: mf.propagate(sigma_w2=v, depth=5, q_input=1.0, c_input=0.5,
                                                  arch=RNN, **T),
    "jacobian_moments(arch=RNN)": lambda v: mf.jacobian_moments(sigma_w2=v, depth=np.arange(1, 6),
                                                                arch=RNN, **T),
    "Conv.covariance_map": lambda v: CONV.covariance_map(COV, sigma_w2=v, **T),
    "fixed_point(arch=Conv)": lambda v: mf.fixed_point(sigma_w2=v, arch=CONV, **T),
    "depth_scales(arch=Conv)": lambda v: mf.depth_scales(sigma_w2=v, arch=CONV, **T),
    "propagate(arch=Conv)": lambda v: mf.propagate(covariance=COV, depth=3, sigma_w2=v,
                                                   arch=CONV, **T),
}
# One per module in the default run (their programs are among the cheapest to compile).
DEFAULT = {"gaussian_expectation", "q_map", "q_star", "propagate", "jacobian_moments",
           "propagate(keep_prob)", "finite_width_q", "Conv.covariance_map"}


@pytest.mark.slow
@pytest.mark.parametrize("name", [
    pytest.param(n, marks=() if n in DEFAULT else (pytest.mark.slow,)) for n in CALLS])
def test_a_new_value_compiles_nothing(x64, caplog, name):
  call = CALLS[name]
  first = jax.block_until_ready(call(1.5))
  with caplog.at_level(logging.WARNING, logger="jax"), jax.log_compiles(True):
    second = jax.block_until_ready(call(1.7))
  compiled = [r.getMessage().split(" with ")[0] for r in caplog.records
              if r.getMessage().startswith("Compiling")]
  assert not compiled, compiled
  # The second call answered for its own value (not a cached result).
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(first),
                                                      jax.tree.leaves(second)))


# --- the CNN's theory on a Network grid (arch=Conv) ---------------------------------

CONV8 = mf.Conv(kernel_size=3, spatial_size=8)
COV8 = np.eye(8) * 0.6 + 0.1

#: name -> (call with a Network, whether the call reads the network's depth)
CONV_CALLS = {
    "propagate": (lambda net: mf.propagate(net, covariance=COV8), True),
    "fixed_point": (mf.fixed_point, False),
    "depth_scales": (mf.depth_scales, False),
}


def _conv_grid(v: float, depth: int = 3) -> mf.Network:
  """Three CNNs in one Network: ``sigma_w2 = v * (1, 1.25, 1.5)``."""
  return mf.Network(activation="tanh", sigma_w2=v * np.array([1.0, 1.25, 1.5]), sigma_b2=0.05,
                    depth=depth, arch=CONV8)


def _compiled(caplog, call) -> tuple:
  """``(call(), the names of the programs it compiled)``."""
  caplog.clear()
  with caplog.at_level(logging.WARNING, logger="jax"), jax.log_compiles(True):
    out = jax.block_until_ready(call())
  return out, [r.getMessage().split(" with ")[0] for r in caplog.records
               if r.getMessage().startswith("Compiling")]


@pytest.mark.slow     # the CNN's programs compile for 4 to 20 s each
@pytest.mark.parametrize("name", CONV_CALLS)
def test_a_conv_grid_of_new_values_compiles_nothing_and_a_new_depth_only_where_read(
    x64, caplog, name):
  call, reads_depth = CONV_CALLS[name]
  first = jax.block_until_ready(call(_conv_grid(1.5)))
  second, compiled = _compiled(caplog, lambda: call(_conv_grid(1.7)))
  assert not compiled, compiled
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(first),
                                                      jax.tree.leaves(second)))
  _, compiled = _compiled(caplog, lambda: call(_conv_grid(1.7, depth=4)))
  # depth is static: a new program where the call reads it, none where it does not
  assert bool(compiled) == reads_depth, compiled
