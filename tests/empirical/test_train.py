"""empirical.train: trainability on digits, vmapped = alone, resume = uninterrupted, bad input.

Compile time dominates on the CPU, so the default tests share one network
shape (tanh, width 32, depth 20, chunks of 4 or 1 networks); hyperparameters
that are traced (sigma_w2, learning_rate, steps) vary freely without
recompiling.
"""

from __future__ import annotations

import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import meanfield
from empirical import data as data_lib
from empirical import models
from empirical.streams import BATCHES
from empirical.training import OPTIMIZERS, optimizer, train

KEY = jax.random.key(0)
SIGMA_B2 = 0.05
# Critical tanh at sigma_b2 = 0.05 (chi_1 = 1; docs/theory.md: sigma_w2 = 1.7610, q* = 0.5700).
CRITICAL = 1.7610
# Far in the ordered phase: chi_1 = chi_c = 0.267 at q*, xi_c = -1/log chi_c = 0.76
# layers, so at depth 20 two inputs' correlation sits within chi_c^20 ~ 3e-12 of 1,
# below float32 resolution: the output cannot depend on the input.
ORDERED = 0.3
DEPTH = 20          # 26 xi_c of the ordered network; "moderate" for the critical one
WIDTH = 32
N_STEPS = 300
COMMON = dict(activation="tanh", width=WIDTH, depth=DEPTH, sigma_b2=SIGMA_B2, batch_size=32,
              probe_size=64, progress=False)


@pytest.fixture(scope="module")
def digits():
  return data_lib.load_digits(key=KEY)


@pytest.fixture(scope="module")
def reference(digits):
  """Ordered and critical networks, 2 seeds each, trained together (one chunk of 4)."""
  return train(KEY, data=digits, sigma_w2=[ORDERED, CRITICAL], n_seeds=2,
                         learning_rate=0.05, n_steps=N_STEPS, record_steps=[0, 100, N_STEPS],
                         **COMMON)


@pytest.mark.slow
def test_critical_network_trains_and_deep_ordered_network_stays_at_chance(digits, reference):
  # Chance level: a network whose output ignores its input predicts one class,
  # so its test accuracy is at most the largest class share p of the test split.
  # Thresholds in binomial standard errors of an accuracy near p measured on
  # n_test examples, se = sqrt(p (1 - p) / n_test) (0.016 here).
  n_test = digits.n_test
  p = np.bincount(np.asarray(digits.y_test)).max() / n_test
  se = math.sqrt(p * (1 - p) / n_test)
  final = reference.test_accuracy.sel(step=N_STEPS)
  critical = final.sel(sigma_w2=CRITICAL).values
  ordered = final.sel(sigma_w2=ORDERED).values
  assert np.all(critical > p + 10 * se), (critical, p, se)   # clearly above chance
  assert np.all(ordered < p + 3 * se), (ordered, p, se)      # near chance
  # Before training both are near chance, and nothing diverged.
  assert np.all(reference.test_accuracy.sel(step=0).values < p + 3 * se)
  assert not reference.diverged.any()
  # The critical networks' training loss fell; the ordered ones' stayed near log(10).
  loss = reference.train_loss.sel(step=N_STEPS)
  assert np.all(loss.sel(sigma_w2=CRITICAL).values < 0.5 * math.log(10))
  assert np.all(loss.sel(sigma_w2=ORDERED).values > 0.9 * math.log(10))


def test_dataset_layout(reference):
  ds = reference
  assert ds.test_accuracy.dims == ("sigma_w2", "seed", "step")
  assert ds.q.dims == ("sigma_w2", "seed", "step", "layer")
  assert ds.weight_quantiles.dims == ("sigma_w2", "seed", "step", "layer", "weight_quantile")
  assert ds.sv_quantiles.dims == ("sigma_w2", "seed", "step", "layer", "sv_quantile")
  assert ds.diverged_step.dims == ("sigma_w2", "seed")
  np.testing.assert_array_equal(ds.step, [0, 100, N_STEPS])
  np.testing.assert_array_equal(ds.layer, np.arange(1, DEPTH + 1))
  assert float(ds.sigma_b2) == SIGMA_B2 and ds.attrs["data"] == "digits"
  # Summaries are ordered as their definitions demand.
  assert np.all(ds.sv_min <= ds.sv_quantiles.isel(sv_quantile=0))
  assert np.all(ds.sv_quantiles.isel(sv_quantile=-1) <= ds.sv_max)
  assert np.all(np.diff(ds.weight_quantiles.values, axis=-1) >= 0)
  # At step 0 the recorded weight variance is the init's, up to the sampling error
  # of a mean of fan_in * fan_out squared Gaussians: relative sd sqrt(2 / (32 * 32)) =
  # 0.044 for the hidden layers; 5 sd.
  hidden = ds.layer_sigma_w2.sel(step=0).isel(layer=slice(1, None))
  rel = hidden / hidden.sigma_w2 - 1
  assert float(np.abs(rel).max()) < 5 * math.sqrt(2 / WIDTH**2)


def test_divergence_is_recorded_not_raised(digits):
  # A learning rate of 1e38 (float32's largest number is 3.4e38) takes the readout
  # weights to ~1e37 in one step; the next step's backpropagated gradients
  # (~ W_out) times 1e38 overflow, and the loss turns nan.
  ds = train(KEY, data=digits, sigma_w2=CRITICAL, learning_rate=[0.05, 1e38],
                       n_seeds=2, n_steps=20, record_steps=[0, 20], **COMMON)
  assert ds.diverged.dims == ("learning_rate", "seed")
  np.testing.assert_array_equal(ds.diverged.values, [[False, False], [True, True]])
  bad = ds.sel(learning_rate=1e38)
  assert np.all((bad.diverged_step >= 0) & (bad.diverged_step < 20))
  assert np.all(np.isnan(bad.train_loss.sel(step=20)))
  assert np.all(np.isfinite(bad.train_loss.sel(step=0)))


# Exact comparisons run in float64: a batch of networks and a single one may
# round a few reductions in a different order, and 300 steps of training can
# grow float32's 1e-7 to 1e-4; in float64 the same growth stays below 1e-10.
SMALL = dict(activation="tanh", width=16, depth=6, sigma_w2=[1.2, CRITICAL, 3.0],
             sigma_b2=SIGMA_B2, n_seeds=2, learning_rate=0.05, batch_size=16, probe_size=32,
             progress=False)


@pytest.fixture(scope="module")
def digits64():
  # Returned, not yielded inside the context: a module-scoped fixture that yields inside
  # enable_x64 keeps 64-bit on for every later test of the module (tests that need it
  # ask for the `x64` fixture themselves).
  with jax.enable_x64(True):
    return data_lib.load_digits(key=KEY, dtype=jnp.float64)


@pytest.mark.slow
def test_vmapped_networks_equal_networks_trained_alone(digits64, x64):
  kw = dict(data=digits64, n_steps=100, record_every=50, dtype=jnp.float64, **SMALL)
  together = train(KEY, **kw)                 # one chunk of 6 networks
  alone = train(KEY, chunk_size=1, **kw)      # each network alone
  assert together.q.dtype == np.float64
  assert set(alone.data_vars) == set(together.data_vars)
  for name in together.data_vars:
    np.testing.assert_allclose(alone[name].values, together[name].values, rtol=1e-10,
                               atol=1e-12, err_msg=name)


@pytest.mark.slow
def test_orthogonal_networks_vmapped_equal_alone_and_start_orthogonal(digits64, x64):
  # Orthogonal draws are plain XLA products, vmapped over a chunk's networks:
  # a chunk of 6 trains as each network alone, and at step 0 every weight
  # matrix is sqrt(sigma_w2) times a (semi-)orthogonal one (the first layer
  # maps 64 features to 16 units: orthonormal columns).
  kw = dict(data=digits64, init="orthogonal", n_steps=20, record_every=20, dtype=jnp.float64,
            **SMALL)
  together = train(KEY, **kw)
  alone = train(KEY, chunk_size=1, **kw)
  for name in together.data_vars:
    np.testing.assert_allclose(alone[name].values, together[name].values, rtol=1e-10,
                               atol=1e-12, err_msg=name)
  start = together.sel(step=0)
  for name in ("sv_max", "sv_min"):   # xarray divides along the named sigma_w2 dim
    np.testing.assert_allclose((start[name] / np.sqrt(start.sigma_w2)).values, 1, rtol=1e-12)


@pytest.mark.slow    # kill/resume; the store itself is checked by the sweep's default tests
def test_resumed_run_equals_uninterrupted_run(digits64, x64, tmp_path):
  kw = dict(data=digits64, n_steps=40, record_every=20, chunk_size=1, dtype=jnp.float64,
            **SMALL)
  uninterrupted = train(KEY, **kw)
  store = tmp_path / "store"
  first = train(KEY, store=store, **kw)
  chunks = sorted((store / "config-0000").glob("chunk-*.npz"))
  assert len(chunks) == 6
  # Interrupt: the last three chunks never finished; the first three stay on disk.
  kept = {c: os.stat(c).st_mtime_ns for c in chunks[:3]}
  for c in chunks[3:]:
    c.unlink()
  resumed = train(KEY, store=store, **kw)
  assert all(os.stat(c).st_mtime_ns == t for c, t in kept.items())   # loaded, not redone
  assert all(c.exists() for c in chunks)
  for name in uninterrupted.data_vars:
    np.testing.assert_array_equal(resumed[name].values, uninterrupted[name].values, name)
    np.testing.assert_array_equal(first[name].values, uninterrupted[name].values, name)
  # A store made by other arguments is refused.
  with pytest.raises(ValueError, match="store"):
    train(KEY, store=store, **{**kw, "learning_rate": 0.1})


def test_train_matches_a_plain_optax_loop(digits64, x64):
  # An independent loop over one network, written from the documented conventions:
  # weights from models.standard_params at fold_in(key, seed) scaled by layer_scales,
  # readout scaled like a hidden layer, minibatch of step t from
  # fold_in(fold_in(network_key, BATCHES), t) with replacement, optax.sgd.
  seed, sigma_w2, lr, n_steps = 1, CRITICAL, 0.05, 5
  width, depth, f64 = SMALL["width"], SMALL["depth"], jnp.float64
  k = jax.random.fold_in(KEY, seed)

  # Jitted without XLA optimisation: the random draws compile in seconds, not tens.
  @functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
  def init(k):
    std = models.standard_params(k, in_features=64, width=width, depth=depth,
                                 out_features=10, dtype=f64)
    ws, bs = models.layer_scales("gaussian", sigma_w2, SIGMA_B2, in_features=64,
                                 width=width, depth=depth, dtype=f64)
    params = models.scale_params(std, ws, bs)
    return params._replace(w_out=params.w_out * math.sqrt(sigma_w2))

  params = init(k)
  tx = optax.sgd(lr)
  opt_state = tx.init(params)

  def loss_fn(p, x, y):
    logits = models.forward(p, x, activation="tanh")[0]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def step(p, s, t):
    bk = jax.random.fold_in(jax.random.fold_in(k, BATCHES), t)
    idx = jax.random.randint(bk, (SMALL["batch_size"],), 0, digits64.n_train)
    g = jax.grad(loss_fn)(p, digits64.x_train[idx], digits64.y_train[idx])
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s

  for t in range(n_steps):
    params, opt_state = step(params, opt_state, t)
  expected = float(loss_fn(params, digits64.x_test, digits64.y_test))

  # probes=False: the scores alone (test_dataset_layout compiles the probes)
  ds = train(KEY, data=digits64, n_steps=n_steps, record_steps=[n_steps], probes=False,
             chunk_size=1, dtype=f64, **{**SMALL, "learning_rate": lr})
  assert "q" not in ds and ds.attrs["probes"] == 0
  got = float(ds.test_loss.sel(sigma_w2=sigma_w2, seed=seed, step=n_steps))
  # lr * (-grad) against optax.sgd(lr)'s -(lr * grad): rounding only, in float64.
  np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("kwargs, match", [
    (dict(optimizer="rmsprop"), r"`optimizer` must be one of sgd, momentum, adam, got 'rmsprop'"),
    (dict(learning_rate=-0.1), r"`learning_rate` must be a finite number >= 0, got -0.1"),
    (dict(learning_rate=[0.1, -1.0]), r"`learning_rate` must be a finite number >= 0, got -1.0"),
    (dict(data="/no/such/dir"), r"`data` must be .*'digits'.*'/no/such/dir' \(no such directory\)"),
    (dict(data=42), r"`data` must be a DataSplit"),
    (dict(n_steps=-1), r"`n_steps` must be an integer >= 0, got -1"),
    (dict(clip_norm=0.0), r"`clip_norm` must be a finite number > 0, got 0.0"),
    (dict(momentum=1.0), r"`momentum` must be a finite number >= 0 and < 1, got 1.0"),
    (dict(record_steps=[0, 11]), r"`record_steps` must be .* \[0, 10\], got \[0, 11\]"),
    (dict(record_steps=[5, 5]), r"`record_steps` must be a non-empty increasing"),
    (dict(record_every=0), r"`record_every` must be an integer >= 1, got 0"),
    (dict(batch_size=0), r"`batch_size` must be an integer >= 1, got 0"),
    (dict(sigma_w2=-1.0), r"`sigma_w2` must be a finite number >= 0, got -1.0"),
    (dict(init="he_normal"), r"`sigma_w2` must be None for init 'he_normal'"),
    (dict(init=["gaussian", "he_normal"]), r"`init` must not mix"),
    (dict(init="kaiming"), r"`init` must be one of"),
    (dict(activation="nope"), r"activation"),
    (dict(arch=None), r"`arch` of `empirical.train` must be meanfield.MLP\(residual=..., "
                      r"norm=...\) .*got None"),
    (dict(arch=meanfield.MLP(keep_prob=0.9)),
     r"`arch` has keep_prob=0.9, which `empirical.train` does not run"),
    (dict(probe_size=10**6), r"`probe_size` must be <= n_train"),
    (dict(learning_rate=None), r"`learning_rate` must be given"),
    (dict(probes="no"), r"`probes` must be True or False, got 'no'"),
])
def test_bad_input_raises_value_error(digits, kwargs, match):
  kw = dict(data=digits, activation="tanh", width=8, depth=2, sigma_w2=1.0, learning_rate=0.1,
            n_steps=10, progress=False)
  kw.update(kwargs)
  with pytest.raises(ValueError, match=match):
    train(KEY, **kw)


def test_optimizer_table(x64):
  # In 64-bit: in float32, adam's bias correction 1 - 0.999 is itself off by
  # about 1e-5 relative, which would swamp the eps = 1e-8 this test can resolve.
  assert OPTIMIZERS == ("sgd", "momentum", "adam")
  params = {"w": jnp.asarray([1.0, -2.0])}
  grads = {"w": jnp.asarray([3.0, 4.0])}   # global norm 5
  for name in OPTIMIZERS:
    tx = optimizer(name, clip_norm=1.0)
    updates, _ = tx.update(grads, tx.init(params), params)
    # Clipped to norm 1: sgd and momentum's first step is -g/|g|; adam's first
    # step is -sign(g) (m/sqrt(v) = g/|g| elementwise, up to eps = 1e-8).
    expected = {"sgd": [-0.6, -0.8], "momentum": [-0.6, -0.8], "adam": [-1.0, -1.0]}[name]
    np.testing.assert_allclose(updates["w"], expected, rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("options", [
    dict(optimizer="momentum"), dict(optimizer="adam", clip_norm=1.0),
    dict(arch=meanfield.MLP(norm="batch")), dict(arch=meanfield.MLP(norm="layer", residual=True))])
def test_options_train_the_critical_network(digits, options):
  # Every optimizer and architecture option trains a critical network well above
  # chance (same threshold as above: p + 10 binomial standard errors).
  lr = 1e-3 if options.get("optimizer") == "adam" else 0.02
  ds = train(KEY, data=digits, sigma_w2=CRITICAL, learning_rate=lr, n_seeds=2,
                       n_steps=N_STEPS, record_steps=[0, N_STEPS], **{**COMMON, **options})
  p = np.bincount(np.asarray(digits.y_test)).max() / digits.n_test
  se = math.sqrt(p * (1 - p) / digits.n_test)
  assert np.all(ds.test_accuracy.sel(step=N_STEPS).values > p + 10 * se)
  assert not ds.diverged.any()


def _blobs(n):
  return data_lib.gaussian_blobs(key=KEY, n_samples=n, n_features=4, n_classes=3)


@pytest.mark.slow
@pytest.mark.parametrize("field, value, match", [
    ("y_train", lambda s: s.y_train.at[0].set(3), r"`data.y_train` must hold labels in \[0, n_classes\) = \[0, 3\), got 3"),
    ("y_train", lambda s: s.y_train.at[1].set(-1), r"`data.y_train` must hold labels .*got -1"),
    ("y_test", lambda s: s.y_test.astype(jnp.float32), r"`data.y_test` must hold integer labels"),
    ("x_train", lambda s: s.x_train.at[2, 0].set(jnp.nan), r"`data.x_train` must be finite.*example 2"),
    ("x_test", lambda s: s.x_test.at[0, 1].set(jnp.inf), r"`data.x_test` must be finite"),
    ("y_train", lambda s: s.y_train[:-1], r"`data.y_train` must have shape \(n,\)"),
    ("x_test", lambda s: s.x_test[:, :2], r"`data.x_test` must have the input shape"),
    ("x_train", lambda s: s.x_train[:, 0], r"`data.x_train` must have shape \(n, \*input_shape\)"),
])
def test_a_bad_data_split_is_named(field, value, match):
  split = _blobs(50)
  bad = split.replace(**{field: value(split)})
  with pytest.raises(ValueError, match=match):
    train(KEY, data=bad, width=8, depth=2, sigma_w2=1.0, learning_rate=0.1, n_steps=1,
          progress=False)


@pytest.mark.slow
def test_default_probe_batch_fits_a_small_data_set():
  ds = train(KEY, data=_blobs(60), width=8, depth=2, sigma_w2=1.0, learning_rate=0.1,
             n_steps=1, progress=False)
  assert ds.attrs["probe_size"] == ds.attrs["n_train"] == 48


@pytest.mark.slow
def test_without_probes_the_scores_are_the_same(digits, reference):
  # probes=False trains the same networks (same keys, same steps) and records only the
  # losses and accuracies: they must equal the full run's bit for bit.
  light = train(KEY, data=digits, sigma_w2=[ORDERED, CRITICAL], n_seeds=2, learning_rate=0.05,
                n_steps=N_STEPS, record_steps=[0, 100, N_STEPS], probes=False, **COMMON)
  assert "q" not in light and "sv_max" not in light and light.attrs["probes"] == 0
  for name in ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "diverged_step"):
    np.testing.assert_array_equal(light[name].values, reference[name].values, err_msg=name)


@pytest.mark.parametrize("kwargs, match", [
    (dict(input_shape=(8, 8)), r"`input_shape` applies only to arch=meanfield.Conv\(...\), "
                               r"got input_shape=\(8, 8\) with arch=MLP\(residual=False"),
    (dict(momentum=0.5), r"`momentum` applies only to optimizer='momentum', got "
                         r"momentum=0.5 with optimizer='sgd'"),
    (dict(momentum=0.5, optimizer="adam"), r"`momentum` applies only to optimizer='momentum'"),
    (dict(weight_quantile=(0.5,), probes=False), r"`weight_quantile` applies only with "
                                                 r"probes=True"),
    (dict(sv_quantile=(0.5,), probes=False), r"`sv_quantile` applies only with probes=True"),
    (dict(sv_quantile=(0.5,), arch=meanfield.Conv(kernel_size=3)),
     r"`sv_quantile` does not apply to arch=Conv\(kernel_size=3"),
])
def test_keyword_that_does_not_apply_raises(digits, kwargs, match):
  # A keyword the chosen network or run would not use is an error, never ignored.
  kw = dict(data=digits, activation="tanh", width=8, depth=2, sigma_w2=1.0, learning_rate=0.1,
            n_steps=10, progress=False)
  kw.update(kwargs)
  with pytest.raises(ValueError, match=match):
    train(KEY, **kw)
