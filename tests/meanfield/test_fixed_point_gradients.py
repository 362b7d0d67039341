"""jax.grad of every public fixed point against central finite differences, at one chaotic point.

Each function's differentiable fields, in ``(sigma_w2, sigma_b2)`` (and the variant's own
parameter), by reverse mode (``jax.jacrev``, the mode of ``jax.grad``). Central differences
with ``h = 1e-5``: truncation ``~h^2 f''' ~ 1e-10``, the solvers' ``16 eps`` on the values
``~4e-16 / h ~ 4e-11``; so ``rtol=1e-6``, ``atol=1e-8``. The RNN's (``arch=RNN(...)``) has its own
test in test_rnn.py (every argument).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import meanfield as mf

H = 1e-5
X0 = np.array([2.5, 0.05])        # (sigma_w2, sigma_b2): chaotic for erf and tanh


def _check(f, x0):
  jac = np.asarray(jax.jacrev(f)(jnp.asarray(x0)))
  assert np.all(np.isfinite(jac))
  for j in range(len(x0)):
    step = np.eye(len(x0))[j] * H
    fd = (np.asarray(f(x0 + step)) - np.asarray(f(x0 - step))) / (2 * H)
    np.testing.assert_allclose(jac[:, j], fd, rtol=1e-6, atol=1e-8, err_msg=f"argument {j}")
  return jac


def _fields(fp, names):
  return jnp.stack([getattr(fp, k) for k in names])


CASES = {
    "q_star": lambda x: mf.q_star(sigma_w2=x[0], sigma_b2=x[1], activation="erf")[None],
    "fixed_point": lambda x: _fields(
        mf.fixed_point(sigma_w2=x[0], sigma_b2=x[1], activation="erf"),
        ("q_star", "c_star", "chi_1", "chi_c", "xi_q", "xi_c")),
    "depth_scales": lambda x: _fields(
        mf.depth_scales(sigma_w2=x[0], sigma_b2=x[1], activation="erf"), ("xi_q", "xi_c")),
    "fixed_point_dropout": lambda x: _fields(
        mf.fixed_point(sigma_w2=x[0], sigma_b2=x[1], activation="erf", arch=mf.MLP(keep_prob=x[2])),
        ("q_star", "c_star", "chi_c", "chi_1", "xi_q", "xi_c")),
    "fixed_point_dropout_relu": lambda x: _fields(       # closed forms: the cheap one
        mf.fixed_point(sigma_w2=x[0], sigma_b2=x[1], activation="relu",
                       arch=mf.MLP(keep_prob=x[2])),
        ("q_star", "c_star", "chi_c", "chi_1", "xi_q", "xi_c")),
    "fixed_point_layernorm": lambda x: _fields(
        mf.fixed_point(sigma_w2=x[0], sigma_b2=x[1], activation="erf", arch=mf.MLP(norm="layer")),
        ("q_star", "c_star", "chi_c", "chi_1", "xi_c")),
    "fixed_point(arch=Conv)": lambda x: jnp.concatenate([jnp.ravel(a) for a in jax.tree.leaves(
        mf.fixed_point(sigma_w2=x[0], sigma_b2=x[1], activation="erf",
                       arch=mf.Conv(kernel_size=3, spatial_size=4)))]),
}
ARGS = {"fixed_point_dropout": np.append(X0, 0.8),
        "fixed_point_dropout_relu": np.array([1.5, 0.05, 0.8])}    # sigma_w2 / p < 2: q* finite
SLOW = set(CASES) - {"fixed_point_dropout_relu"}     # tens of seconds of compiling each


@pytest.mark.slow
@pytest.mark.parametrize("name", [
    pytest.param(n, marks=(pytest.mark.slow,) if n in SLOW else ()) for n in CASES])
def test_gradient_matches_finite_differences(x64, name):
  jac = _check(CASES[name], ARGS.get(name, X0))
  assert np.any(np.abs(jac) > 1e-3)         # a gradient that is there, not a silent zero
