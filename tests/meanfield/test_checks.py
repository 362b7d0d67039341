"""Bad input to every public theory function: a clear error naming the argument, before any work."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import meanfield as mf

HP = dict(sigma_w2=1.5, sigma_b2=0.1, activation="tanh")
SPEC = dict(activation="tanh", sigma_w2=1.5, sigma_b2=0.1, depth=2, init="orthogonal")

# (name, call taking the keyword arguments, its arguments): one row per public function.
CALLS = [
    ("q_map", lambda **k: mf.q_map(k.pop("q"), **k), dict(q=1.0, **HP)),
    ("q_map_slope", lambda **k: mf.q_map_slope(k.pop("q"), **k), dict(q=1.0, **HP)),
    ("c_map", lambda **k: mf.c_map(k.pop("c"), **k), dict(c=0.5, **HP)),
    ("chi_1", mf.chi_1, HP),
    ("propagate", mf.propagate, dict(q_input=1.0, c_input=0.5, depth=2, **HP)),
    ("q_star", mf.q_star, HP),
    ("fixed_point", mf.fixed_point, HP),
    ("depth_scales", mf.depth_scales, HP),
    ("gradient_depth_scale", mf.gradient_depth_scale, HP),
    ("critical_line", lambda **k: mf.critical_line(k.pop("q"), **k),
     dict(q=1.0, activation="tanh")),
    ("critical_sigma_w2", mf.critical_sigma_w2, dict(sigma_b2=0.05, activation="tanh")),
    ("phase_diagram", mf.phase_diagram, dict(sigma_w2=[1.0, 2.0], sigma_b2=[0.05],
                                             activation="tanh")),
    ("jacobian_moments", mf.jacobian_moments, SPEC),
    ("jacobian_spectrum", mf.jacobian_spectrum, dict(SPEC, n_points=4, n_nodes=16)),
    ("jacobian_spectrum_edge", mf.jacobian_spectrum_edge, dict(SPEC, n_nodes=16)),
]
# Every numeric array argument of every row (static integers such as propagate's depth and
# n_points have their own check), each fed the bad values below.
CASES = [(name, fn, args, key) for name, fn, args in CALLS for key, v in args.items()
         if not isinstance(v, str) and key not in ("n_points", "n_nodes")
         and (name, key) != ("propagate", "depth")]


def _grid(args, key, value):
  # phase_diagram takes 1-D grids: a bad element goes inside one
  return [value] if isinstance(args[key], list) else value


@pytest.mark.parametrize("name,fn,args,key", CASES, ids=[f"{c[0]}-{c[3]}" for c in CASES])
@pytest.mark.parametrize("bad,error,match", [
    (None, TypeError, "must be a real number"),
    ("0.5", TypeError, "must be a real number"),
    ([], ValueError, "must not be empty"),
    (math.inf, ValueError, "must be finite.*inf"),
    (1 + 2j, TypeError, "must be a real number"),
], ids=["None", "str", "empty", "inf", "complex"])
def test_bad_numbers_name_the_argument(name, fn, args, key, bad, error, match):
  value = bad if bad is None or isinstance(bad, (str, list)) else _grid(args, key, bad)
  if bad is None and name == "propagate" and key in ("q_input", "c_input"):
    # None is "not given": the architecture's inputs are required (the default MLP()'s)
    error, match = ValueError, "must be given to `propagate` for the fully connected MLP, got None"
  with pytest.raises(error, match=f"`{key}` {match}"):
    fn(**{**args, key: value})


# Lists go through the same conversion (_checks.real) everywhere: the default run checks the
# cheap functions; the rest compile for seconds each and run with -m slow.
_CHEAP = ("q_map", "q_map_slope", "q_star", "critical_line")


@pytest.mark.slow
@pytest.mark.parametrize("name,fn,args", [
    c if c[0] in _CHEAP else pytest.param(*c, marks=pytest.mark.slow) for c in CALLS],
    ids=[c[0] for c in CALLS])
def test_lists_work_like_arrays(name, fn, args):
  key = "sigma_b2" if "sigma_b2" in args else "q"
  value = args[key] if isinstance(args[key], list) else [args[key], 2 * args[key]]
  leaves = lambda r: jax.tree.leaves(r.to_dataarray() if hasattr(r, "to_dataarray") else r)
  listed = leaves(fn(**{**args, key: value}))
  arrayed = leaves(fn(**{**args, key: np.array(value)}))
  assert len(listed) == len(arrayed)
  for a, b in zip(listed, arrayed):
    np.testing.assert_array_equal(a, b)


def test_nan_is_data():
  assert np.isnan(mf.q_star(sigma_w2=np.nan, sigma_b2=0.1, activation="tanh"))
  assert np.isnan(mf.q_map([1.0, np.nan], sigma_w2=1.5, sigma_b2=0.1, activation="tanh")[1])


@pytest.mark.parametrize("fn,match", [
    (math.tanh, "`activation` must be an elementwise jax.numpy function"),
    (lambda x: jnp.sum(x), r"`activation` must be elementwise .* to shape \(\)"),
    (lambda x: x[0], r"`activation` must be elementwise .* to shape \(2,\)"),
    (lambda x: (x > 0), "`activation` must be elementwise .* dtype bool"),
])
def test_non_elementwise_callable_is_refused(fn, match):
  with pytest.raises(ValueError, match=match):
    mf.activation(fn)
  with pytest.raises(ValueError, match=match):
    mf.q_star(sigma_w2=1.5, sigma_b2=0.1, activation=fn)
  with pytest.raises(ValueError, match=match):
    mf.activation(mf.Activation("custom", fn))
