"""The network description: fields validated, and theory functions reading it."""

import dataclasses
import inspect
import logging

import jax
import numpy as np
import pytest

import meanfield as mf
from meanfield.network import MLP, Architecture, Network, accepts_network, weight_law

TANH = dict(activation="tanh", sigma_w2=1.5, sigma_b2=0.05)


@pytest.mark.slow
def test_theory_of_a_network_equals_the_keyword_call():
  net = Network(**TANH, depth=6)
  with jax.enable_x64(True):
    assert float(mf.q_star(net)) == float(mf.q_star(**TANH))
    assert float(mf.fixed_point(net).chi_c) == float(mf.fixed_point(**TANH).chi_c)
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
    mf.q_star(net.replace(arch=net.arch.replace(residual=True)))
  with pytest.raises(ValueError, match="must be a meanfield.Network"):
    mf.q_star({"sigma_w2": 1.0})


_MLP_FIELDS = ("residual", "alpha", "norm", "keep_prob")


@pytest.mark.parametrize("field, value, message", [
    ("sigma_w2", -1.0, "`sigma_w2` must be >= 0"),
    ("sigma_b2", [0.1, -0.2], r"`sigma_b2` must be >= 0, got an array containing .*-0.2"),
    ("sigma_w2", np.array([[1.0], [np.inf]]), "`sigma_w2` must be finite"),
    ("alpha", [0.5, 1.0], "`alpha` of a Network must be one concrete number"),
    ("keep_prob", np.array([0.5, 1.0]), "`keep_prob` of a Network must be one concrete number"),
    ("depth", 0, "`depth` must be an integer >= 1"),
    ("width", 2.5, "`width` must be an integer >= 1"),
    ("init", "haar", "`init` must be one of 'gaussian', 'orthogonal'"),
    ("residual", 1, "`residual` must be True or False, got 1"),
    ("norm", "group", "`norm` must be one of None"),
    ("keep_prob", 0.0, r"`keep_prob` must be in \(0, 1\]"),
    ("keep_prob", 1.5, r"`keep_prob` must be in \(0, 1\] .*got 1.5"),
    ("alpha", 0.0, "`alpha` must be > 0"),
    ("alpha", [1.0, -2.0], "`alpha` must be > 0 .*-2"),
    ("activation", "nope", "activation"),
])
def test_bad_fields_raise_naming_them(field, value, message):
  # the MLP's fields are checked by MLP itself, and a Network holds one number of each
  with pytest.raises(ValueError, match=message):
    Network(**({"arch": MLP(**{field: value})} if field in _MLP_FIELDS else {field: value}))


def test_mlp_is_a_value():
  a, b = MLP(residual=True, alpha=0.5), MLP(residual=np.bool_(True), alpha=0.5)
  assert a == b and hash(a) == hash(b) and len({a, b, MLP()}) == 2
  assert a != MLP(residual=True) and MLP() == MLP(alpha=1, keep_prob=np.float64(1.0))
  assert a.variants == {"residual": True, "alpha": 0.5} and MLP().variants == {}
  assert MLP(norm="layer").replace(keep_prob=0.8).variants == {"norm": "layer", "keep_prob": 0.8}
  # arrays (the keyword theory calls broadcast over them) by shape and value
  p = np.array([0.5, 1.0])
  assert MLP(keep_prob=p) == MLP(keep_prob=p.copy()) != MLP(keep_prob=np.array([0.5, 0.9]))
  assert hash(MLP(keep_prob=p)) == hash(MLP(keep_prob=[0.5, 1.0]))
  assert MLP(keep_prob=p).variants["keep_prob"] is p       # an array is a variant, even at 1
  assert MLP().inputs == ("q_input", "c_input") and MLP().stationary_inputs == ()
  # a tracer is left unchecked (jax.grad over keep_prob), and the default of every Network
  assert jax.jit(lambda x: MLP(keep_prob=x).keep_prob * 2)(0.5) == 1.0
  net = Network(arch=MLP(residual=True, alpha=np.float32(0.5), keep_prob=1))
  assert type(net.arch.alpha) is float and type(net.arch.keep_prob) is float
  assert Network().arch == MLP() and net.arch == MLP(residual=True, alpha=0.5)
  with pytest.raises(dataclasses.FrozenInstanceError):
    a.alpha = 2.0


def test_weight_law_reads_a_scheme_law_attribute():
  class Scheme:
    law = "orthogonal"
  assert weight_law(Scheme()) == "orthogonal"
  assert weight_law("gaussian") == "gaussian"
  assert Network(init=Scheme()).law == "orthogonal"


# Every public theory function that takes a Network, with the arguments it needs besides the
# network's fields: (positional arguments, keywords).
_CALLS = {
    "c_map": ((0.3,), dict(q=0.7)), "chi_1": ((), {}),
    "critical_init": ((), {}),
    "critical_sigma_w2": ((), {}), "depth_scales": ((), {}),
    "finite_width_gradient": ((), dict(q_input=1.0)),
    "finite_width_jacobian": ((), dict(q_input=1.0)),
    "finite_width_q": ((), dict(q_input=1.0)), "fixed_point": ((), {}),
    "gradient_depth_scale": ((), {}), "jacobian_moments": ((), {}),
    "jacobian_spectrum": ((), dict(n_points=16)), "jacobian_spectrum_edge": ((), {}),
    "phase_diagram": ((), {}), "post_activation_variance": ((0.7,), {}),
    "propagate": ((), dict(q_input=1.0, c_input=0.3)),
    "q_map": ((0.7,), {}), "q_map_slope": ((0.7,), {}), "q_star": ((), {}),
    "ntk": ((), dict(gram=[[1.0, 0.3], [0.3, 1.0]])),
}
# A non-plain value of each variant field of the MLP.
_VARIANT_VALUES = dict(residual=True, alpha=0.5, norm="layer", keep_prob=0.8)
# The variant fields each function covers (the others raise).
_COVERS = {"q_map": _MLP_FIELDS, "c_map": _MLP_FIELDS, "propagate": _MLP_FIELDS,
           "ntk": _MLP_FIELDS,
           "fixed_point": ("norm", "keep_prob")}
_NET = Network(**TANH, depth=3, width=64)
# Covers its variants one at a time (LayerNorm with dropout raises ValueError).
_ONE_VARIANT_AT_A_TIME = {"fixed_point"}


def _takes_a_network(name: str) -> bool:
  fn = getattr(mf, name)
  return inspect.isfunction(fn) and "network" in inspect.signature(fn).parameters


def _fields(fn, net: Network) -> dict:
  """The keywords of ``fn`` that ``net`` holds, as a keyword call would give them."""
  params = inspect.signature(fn).parameters
  return {f.name: getattr(net, f.name) for f in dataclasses.fields(net) if f.name in params}


def _assert_same(a, b, name):
  la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
  assert len(la) == len(lb) > 0, name
  for x, y in zip(la, lb):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=name)


def test_every_public_theory_function_with_hyperparameters_takes_a_network():
  names = [n for n in dir(mf) if not n.startswith("_") and inspect.isfunction(getattr(mf, n))]
  for name in names:
    params = inspect.signature(getattr(mf, name)).parameters
    if "sigma_b2" in params or "sigma_w2" in params:
      assert "network" in params, name
  assert sorted(n for n in names if _takes_a_network(n) and n not in _READS_ONE_FIELD) == sorted(_CALLS)


# Public functions that take a Network only for one field, with their own checks (none now:
# BatchNorm's closed form is the method MLP.gradient_factor).
_READS_ONE_FIELD: set[str] = set()


# These need 1-D grids of variances; _NET holds one point (a Network of 1-d arrays can call them).
_GRID_ONLY = pytest.mark.xfail(raises=ValueError, strict=True,
                               reason="needs 1-D grids of sigma_w2, sigma_b2; _NET holds one point")


# jacobian_spectrum's densities compile for 40 s in 64-bit: slow tier (the same Network path
# stays in the default tier with jacobian_spectrum_edge and jacobian_moments).
_SLOW = pytest.mark.slow


@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(n, marks=_GRID_ONLY) if n in (
    "phase_diagram",) else pytest.param(n, marks=_SLOW)
    if n == "jacobian_spectrum" else n for n in sorted(_CALLS)])
def test_a_network_call_equals_the_keyword_call_for_every_variant(name):
  """Each function called with a Network (plain, and with every variant field it covers set)
  gives what the keyword call with the same fields gives; a variant it does not cover raises."""
  fn = getattr(mf, name)
  args, kwargs = _CALLS[name]
  params = inspect.signature(fn).parameters
  covered = {k: v for k, v in _VARIANT_VALUES.items() if k in _COVERS.get(name, ())}
  base = _NET
  with_variant = lambda **v: base.replace(arch=MLP(**v))
  by_keyword = params["network"].kind == inspect.Parameter.KEYWORD_ONLY

  def call(net):
    return fn(*args, network=net, **kwargs) if by_keyword else fn(net, *args, **kwargs)

  variants = ([{k: v} for k, v in covered.items()] if name in _ONE_VARIANT_AT_A_TIME
              else [covered] if covered else [])
  with jax.enable_x64(True):
    for net in [base] + [with_variant(**v) for v in variants]:
      _assert_same(call(net), fn(*args, **_fields(fn, net), **kwargs),
                   f"{name} {net.arch.variants}")
    if name in _ONE_VARIANT_AT_A_TIME:
      with pytest.raises(ValueError, match="not covered"):
        call(with_variant(**covered))
    for k, v in _VARIANT_VALUES.items():
      if k not in covered:
        with pytest.raises(ValueError, match=f"{k}=.*which `{name}` does not cover"):
          call(with_variant(**{k: v}))
        if "arch" in params:      # the same by keyword: the body checks what it covers
          with pytest.raises(ValueError, match=f"`arch` has {k}=.*which `{name}` does not"):
            fn(*args, **_fields(fn, with_variant(**{k: v})), **kwargs)


def test_a_supported_variant_is_passed_through():
  @accepts_network(supports=("keep_prob",))
  def f(*, sigma_w2, arch=MLP()):
    return sigma_w2 * arch.keep_prob
  assert f(Network(sigma_w2=2.0, arch=MLP(keep_prob=0.5))) == 1.0
  with pytest.raises(ValueError, match="norm='layer', which `f` does not cover"):
    f(Network(sigma_w2=2.0, arch=MLP(norm="layer", keep_prob=0.5)))

  @accepts_network
  def g(*, sigma_w2):              # no `arch`: the plain MLP's theory, nothing else
    return sigma_w2
  assert g(Network(sigma_w2=2.0)) == 2.0
  with pytest.raises(ValueError, match="keep_prob=0.5, which `g` does not cover"):
    g(Network(sigma_w2=2.0, arch=MLP(keep_prob=0.5)))


# --- a grid is one Network --------------------------------------------------------

_W = np.linspace(0.5, 3.0, 5)
_B = np.array([0.0, 0.05])


def test_a_grid_network_stores_arrays_and_scalars_stay_floats():
  net = Network(sigma_w2=_W[:, None], sigma_b2=[0.0, 0.05])
  assert isinstance(net.sigma_w2, np.ndarray) and net.sigma_w2.shape == (5, 1)
  assert isinstance(net.sigma_b2, np.ndarray) and net.sigma_b2.dtype == np.float64
  assert type(Network(sigma_w2=np.float32(1.5)).sigma_w2) is float
  assert repr(Network(sigma_w2=1.5)).startswith("Network(activation='tanh', sigma_w2=1.5, "
                                                "sigma_b2=0.0,")


def test_networks_compare_and_hash_by_value():
  a = Network(sigma_w2=_W[:, None], sigma_b2=_B)
  b = Network(sigma_w2=_W[:, None].copy(), sigma_b2=list(_B))
  assert a == b and hash(a) == hash(b) and len({a, b}) == 1
  assert a != a.replace(sigma_b2=_B + 0.01)
  assert a != a.replace(sigma_w2=_W)                   # same values, another shape
  assert a != a.replace(sigma_w2=1.0) and Network(sigma_w2=1.0) != a
  assert Network(**TANH) == Network(**TANH) and hash(Network(**TANH)) == hash(Network(**TANH))
  assert Network(**TANH) != Network(**TANH, depth=3)


@pytest.mark.slow     # the fixed-point solvers compile for several seconds
def test_a_grid_network_answers_as_the_keyword_call_bitwise():
  net = Network(activation="tanh", sigma_w2=_W[:, None], sigma_b2=_B[None, :], depth=4)
  with jax.enable_x64(True):
    fp = mf.fixed_point(net)
    assert np.shape(fp.q_star) == (5, 2)
    _assert_same(fp, mf.fixed_point(activation="tanh", sigma_w2=_W[:, None],
                                    sigma_b2=_B[None, :]), "fixed_point")
  _assert_same(mf.propagate(net, q_input=1.0, c_input=0.3),
               mf.propagate(activation="tanh", sigma_w2=_W[:, None], sigma_b2=_B[None, :],
                            depth=4, q_input=1.0, c_input=0.3), "propagate")


def test_a_network_is_a_pytree_of_its_variances():
  net = Network(**_RELU, depth=3)
  leaves, tree = jax.tree_util.tree_flatten(net)
  assert leaves == [0.7, 0.05]
  assert jax.tree_util.tree_unflatten(tree, leaves) == net
  # an unflattened Network is not checked: a gradient may be negative
  assert jax.tree_util.tree_unflatten(tree, [-1.0, 2.0]).sigma_w2 == -1.0


def test_a_network_passes_through_jit_grad_and_vmap():
  net = Network(**_RELU, depth=3)
  with jax.enable_x64(True):
    assert float(jax.jit(mf.q_star)(net)) == float(mf.q_star(net))
    grad = jax.grad(lambda n: mf.q_star(n))(net)
    assert isinstance(grad, Network) and grad.depth == 3
    by_w = jax.grad(lambda w: mf.q_star(**dict(_RELU, sigma_w2=w)))(0.7)
    by_b = jax.grad(lambda b: mf.q_star(**dict(_RELU, sigma_b2=b)))(0.05)
    assert (float(grad.sigma_w2), float(grad.sigma_b2)) == (float(by_w), float(by_b))
    grid = net.replace(sigma_w2=_W, sigma_b2=np.full(5, 0.05))
    np.testing.assert_array_equal(jax.vmap(mf.q_star)(grid),
                                  mf.q_star(**dict(_RELU, sigma_w2=_W)))
    # built inside a traced function: the tracers pass unchecked
    assert float(jax.jit(lambda w: mf.q_star(Network(**dict(_RELU, sigma_w2=w))))(0.7)) \
        == float(mf.q_star(net))


def test_a_network_of_new_values_compiles_nothing(caplog):
  """A Network's variances are traced leaves: new values of the same shapes reuse the program
  (its static fields, depth here, key the cache)."""
  f = jax.jit(lambda n: mf.propagate(n, q_input=1.0, c_input=0.5).c)
  first = f(Network(**_RELU, depth=3))
  with caplog.at_level(logging.WARNING, logger="jax"), jax.log_compiles(True):
    second = f(Network(**dict(_RELU, sigma_w2=0.9, sigma_b2=0.1), depth=3))
  assert not [r for r in caplog.records if r.getMessage().startswith("Compiling")]
  assert not np.array_equal(first, second)
  with caplog.at_level(logging.WARNING, logger="jax"), jax.log_compiles(True):
    f(Network(**_RELU, depth=4))                   # a static field: a new program
  assert [r for r in caplog.records if r.getMessage().startswith("Compiling")]


# --- the architecture as a value ---------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Wider(Architecture):
  """A toy architecture written here alone: the MLP at ``scale * sigma_w2`` (no depth_scales)."""

  scale: float = 2.0
  inputs = ("q_input", "c_input")

  def propagate(self, act, depth, sigma_w2, sigma_b2, *, q_input, c_input):
    return mf.propagate(q_input=q_input, c_input=c_input, depth=depth,
                        sigma_w2=self.scale * sigma_w2, sigma_b2=sigma_b2, activation=act)

  def fixed_point(self, act, sigma_w2, sigma_b2):
    return mf.fixed_point(sigma_w2=self.scale * sigma_w2, sigma_b2=sigma_b2, activation=act)


_RELU = dict(activation="relu", sigma_w2=0.7, sigma_b2=0.05)   # closed forms: cheap to compile


def test_a_toy_architecture_plugs_in_by_subclassing():
  net = Network(**_RELU, depth=4, arch=_Wider())
  wide = dict(_RELU, sigma_w2=1.4)                # 2 * 0.7, exactly
  _assert_same(mf.propagate(net, q_input=1.0, c_input=0.3),
               mf.propagate(**wide, depth=4, q_input=1.0, c_input=0.3), "propagate")
  _assert_same(mf.propagate(**_RELU, depth=4, q_input=1.0, c_input=0.3, arch=_Wider()),
               mf.propagate(net, q_input=1.0, c_input=0.3), "keyword arch")
  with pytest.raises(NotImplementedError, match="`depth_scales` has no theory for the "
                                                r"_Wider\(scale=2.0\) architecture"):
    mf.depth_scales(net)
  # a function that does not dispatch on the architecture refuses it, naming both
  with pytest.raises(ValueError, match=r"arch=_Wider\(scale=2.0\), which `jacobian_spectrum` "
                                       "does not cover"):
    mf.jacobian_spectrum(net)


@pytest.mark.slow   # the MLP's fixed-point solvers compile for several seconds
def test_a_toy_architecture_answers_fixed_point():
  _assert_same(mf.fixed_point(Network(**_RELU, arch=_Wider())),
               mf.fixed_point(**dict(_RELU, sigma_w2=1.4)), "fixed_point")


@pytest.mark.parametrize("changes, message", [
    (dict(arch="conv"), r"`arch` must be meanfield.MLP\(...\) .* or another "
                        r"meanfield.network.Architecture.*'conv'"),
    (dict(arch=None), r"`arch` must be meanfield.MLP\(...\) \(the fully connected MLP; the "
                      r"default, MLP\(\), is the plain one\).*got None"),
])
def test_a_bad_architecture_raises(changes, message):
  with pytest.raises(ValueError, match=message):
    Network(**changes)


@pytest.mark.slow
@pytest.mark.parametrize("name, kwargs", [("propagate", dict(covariance=0.5 + 0.3 * np.eye(4))),
                                          ("fixed_point", {}), ("depth_scales", {})])
def test_a_conv_network_call_equals_the_keyword_call(name, kwargs):
  arch = mf.Conv(kernel_size=3, spatial_size=4)
  net = _NET.replace(arch=arch)
  fn = getattr(mf, name)
  with jax.enable_x64(True):
    _assert_same(fn(net, **kwargs), fn(**_fields(fn, net), **kwargs), name)


@pytest.mark.parametrize("name, kwargs", [
    pytest.param("propagate", dict(q_input=0.8, c_input=0.3), marks=pytest.mark.slow),
    ("jacobian_moments", dict(q_input=0.8)),
    pytest.param("fixed_point", dict(q_input=0.8), marks=pytest.mark.slow),
    pytest.param("depth_scales", dict(c_input=0.2), marks=pytest.mark.slow)])
def test_an_rnn_network_call_equals_the_keyword_call(name, kwargs):
  # depth is the number of time steps (propagate) or the lag (jacobian_moments)
  net = _NET.replace(arch=mf.RNN(sigma_u2=0.5, tied=False))
  fn = getattr(mf, name)
  with jax.enable_x64(True):
    _assert_same(fn(net, **kwargs), fn(**_fields(fn, net), **kwargs), name)
