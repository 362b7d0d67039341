from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from empirical import models

IN, WIDTH, DEPTH, BATCH = 5, 16, 4, 6
KEY = jax.random.key(3)
X = jax.random.normal(jax.random.key(4), (BATCH, IN))
# Jitted once per static configuration: eager dispatch dominates on the CPU.
FORWARD = jax.jit(models.forward, static_argnames=("activation", "residual", "norm", "probe"))


def _pre(h, a, a_in):
  del a, a_in
  return h


def _loop_forward(p, x, act, residual=False, norm=None):
  """An independent per-layer NumPy loop (float64) of the module docstring's formula."""
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
  x = np.asarray(x, np.float64)

  def nu(h, l):
    if norm is None:
      return h
    axis = -1 if norm == "layer" else 0
    eps = 1e-6 if norm == "layer" else 1e-5
    m = h.mean(axis=axis, keepdims=True)
    v = h.var(axis=axis, keepdims=True)
    return (h - m) / np.sqrt(v + eps) * p.norm_scale[l] + p.norm_bias[l]

  h = x @ p.w_in + p.b_in
  hs = [h]
  for l in range(DEPTH - 1):
    h = (h if residual else 0.0) + act(nu(h, l)) @ p.w[l] + p.b[l]
    hs.append(h)
  out = act(nu(h, DEPTH - 1))
  if p.w_out is not None:
    out = out @ p.w_out + p.b_out
  return out, np.stack(hs)


@pytest.mark.slow
@pytest.mark.parametrize("residual,norm", [(False, None), (True, None), (False, "layer"),
                                           (True, "batch")])
def test_mlp_matches_a_layer_loop(residual, norm):
  model = models.MLP(IN, WIDTH, DEPTH, activation="tanh", sigma_w2=1.5, sigma_b2=0.1,
                     residual=residual, norm=norm, out_features=3, rngs=nnx.Rngs(0))
  out, hs = FORWARD(model.params(), X, activation="tanh", residual=residual, norm=norm,
                    probe=_pre)
  np.testing.assert_allclose(model(X), out, rtol=1e-6, atol=1e-6)
  ref_out, ref_hs = _loop_forward(model.params(), X, np.tanh, residual, norm)
  assert out.shape == (BATCH, 3) and out.dtype == jnp.float32
  assert hs.shape == (DEPTH, 1, BATCH, WIDTH)
  np.testing.assert_allclose(hs[:, 0], ref_hs, rtol=2e-5, atol=2e-5)
  np.testing.assert_allclose(out, ref_out, rtol=2e-5, atol=2e-5)


@pytest.mark.slow
def test_params_follow_init_and_key_convention():
  k = jax.random.key(11)
  std = models.standard_params(k, in_features=IN, width=WIDTH, depth=DEPTH, init="gaussian")
  ws, bs = models.layer_scales("gaussian", 2.0, 0.25, in_features=IN, width=WIDTH, depth=DEPTH)
  p = models.scale_params(std, ws, bs)
  # Layer l's weights come from fold_in(fold_in(k, 0), l), whatever the depth.
  w2 = jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal")(
      jax.random.fold_in(jax.random.fold_in(k, 0), 2), (WIDTH, WIDTH))
  np.testing.assert_allclose(p.w[0], np.sqrt(2.0) * w2, rtol=1e-6)
  deeper = models.standard_params(k, in_features=IN, width=WIDTH, depth=DEPTH + 3)
  np.testing.assert_array_equal(deeper.w[: DEPTH - 1], std.w)
  np.testing.assert_allclose(p.b_in, 0.5 * std.b_in, rtol=1e-6)
  # The module holds exactly these parameters when given them.
  model = models.MLP.from_params(p, activation="relu")
  np.testing.assert_array_equal(model(X), models.forward(p, X, activation="relu")[0])


@pytest.mark.slow
def test_settings_share_one_product():
  # w_scale/b_scale of shape (L, S) run S networks that differ only in scale.
  std = models.standard_params(KEY, in_features=IN, width=WIDTH, depth=DEPTH, init="orthogonal")
  sw2 = jnp.array([0.5, 1.0, 3.0])
  sb2 = jnp.array([0.0, 0.1, 0.2])
  ws, bs = models.layer_scales("orthogonal", sw2, sb2, in_features=IN, width=WIDTH, depth=DEPTH)
  assert ws.shape == bs.shape == (DEPTH, 3)
  xs = jnp.broadcast_to(X, (3, BATCH, IN))
  out, _ = FORWARD(std, xs, activation="erf", w_scale=ws, b_scale=bs)
  for s in range(3):
    one = models.scale_params(std, ws[:, s], bs[:, s])
    np.testing.assert_allclose(out[s], FORWARD(one, X, activation="erf")[0],
                               rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_compiled_program_does_not_grow_with_depth():
  def size(depth):
    p = models.standard_params(KEY, in_features=IN, width=WIDTH, depth=depth)
    jaxpr = jax.make_jaxpr(lambda p: models.forward(p, X, activation="tanh")[0])(p)
    return len(jaxpr.jaxpr.eqns)
  assert size(3) == size(40)


@pytest.mark.slow
def test_trains_with_nnx_optimizer():
  model = models.MLP(IN, WIDTH, DEPTH, activation="relu", init="he_normal", sigma_w2=None,
                     out_features=1, rngs=nnx.Rngs(1))
  y = jnp.sum(X, axis=1, keepdims=True)
  opt = nnx.Optimizer(model, optax.sgd(1e-2), wrt=nnx.Param)

  def loss_fn(m):
    return jnp.mean((m(X) - y) ** 2)

  @nnx.jit
  def step(model, opt):
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    opt.update(model, grads)
    return loss

  losses = [float(step(model, opt)) for _ in range(3)]
  assert losses[-1] < losses[0]
  assert model.w[...].shape == (DEPTH - 1, WIDTH, WIDTH)


@pytest.mark.slow
def test_dtype_preserved(x64):
  p = models.standard_params(KEY, in_features=IN, width=WIDTH, depth=DEPTH, dtype=jnp.float64)
  out, _ = models.forward(p, X.astype(jnp.float64), activation="tanh")
  assert p.w.dtype == out.dtype == jnp.float64


def test_errors():
  with pytest.raises(ValueError, match=r"`depth` must be an integer >= 1, got 0"):
    models.MLP(IN, WIDTH, 0, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"`activation` must be one of .*relu.*tanh.*got 'tan'"):
    models.MLP(IN, WIDTH, DEPTH, activation="tan", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"`norm` must be one of None, 'layer', 'batch', got 'group'"):
    models.MLP(IN, WIDTH, DEPTH, norm="group", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"`sigma_b2` must be a finite number >= 0, got -1"):
    models.MLP(IN, WIDTH, DEPTH, sigma_b2=-1.0, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"`init` must be one of"):
    models.MLP(IN, WIDTH, DEPTH, init="kaiming", rngs=nnx.Rngs(0))


def test_wrong_input_width_is_named():
  mlp = models.MLP(IN, WIDTH, DEPTH, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=rf"in_features = {IN} .*got shape \(6, 3\)"):
    mlp(X[:, :3])
