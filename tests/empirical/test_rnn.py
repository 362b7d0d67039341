"""The RNN's experiment mirror (empirical.rnn) against meanfield.RNN: tolerances from width,
seeds and pairs; and its drivers on the engine (store, resume after a kill)."""

import os
import types

import jax
import numpy as np
import pytest

import empirical
import meanfield
from tests.empirical._spies import interrupting_writes

N, SEEDS, PAIRS, STEPS = 128, 8, 2, 16
HYPER = dict(activation="tanh", sigma_w2=1.5, sigma_b2=0.05, sigma_u2=1.0, q_input=1.0,
             c_input=0.5)
KAPPA = 2.0      # tanh: relative variance of |a|^2 per unit is at most 2/N (test_overlay)
STATS = ("q", "c", "grad_h2", "c_time")


def _statistics(*, key, steps, width, seeds=8, pairs=1, tied=True, sigma_u2=1.0, q_input=1.0,
                c_input=0.0, **kw):
  """``empirical.sweep`` of RNNs as arrays ``(seeds, steps)`` by name (one grid point)."""
  ds = empirical.sweep(key, arch=meanfield.RNN(sigma_u2=sigma_u2, tied=tied), depth=steps,
                       width=width, n_seeds=seeds, n_inputs=2 * pairs, q_input=q_input,
                       c_input=c_input, progress=False, **kw)
  return types.SimpleNamespace(ds=ds, **{name: ds[name].values for name in STATS})


def _theory(*, steps, sigma_u2=1.0, q_input=1.0, c_input=0.0, **kw):
  prop = meanfield.propagate(depth=steps, q_input=q_input, c_input=c_input,
                             arch=meanfield.RNN(sigma_u2=sigma_u2), **kw)
  return types.SimpleNamespace(q=prop.q, c=prop.c, chi_1=prop.chi_1, grad_h2=prop.extra["grad_h2"])


def _jacobian(*, key, steps, width, seeds=8, warmup=20, sigma_u2=1.0, **kw):
  """``(m1, m2)`` of ``empirical.jacobian_spectra(arch=RNN)``, each ``(seeds, steps)``."""
  ds = empirical.jacobian_spectra(key, arch=meanfield.RNN(sigma_u2=sigma_u2),
                                  depth=list(range(1, steps + 1)), width=width, n_seeds=seeds,
                                  warmup=warmup, progress=False, **kw)
  m = ds.moment.transpose("seed", "depth", "order").values
  return m[..., 0], m[..., 1]


@pytest.fixture(scope="module", params=["gaussian", "orthogonal"])
def measured(request):
  stats = _statistics(key=jax.random.key(7), steps=STEPS, width=N, seeds=SEEDS, pairs=PAIRS,
                      init=request.param, **HYPER)
  return stats, _theory(steps=STEPS, **HYPER)


def _memory(slopes):
  """A_t = sum_{s <= t} prod_{s < r <= t} e_r: how much of each step's error reaches step t.

  Worst case (errors of all steps fully correlated, as tied weights could make
  them): an error at step s is multiplied by the map's elasticity e_r at each
  later step. For the tanh q-map (concave, q_map(0) >= 0) the elasticity
  q q_map'(q) / q_map(q) is at most q_map'(q) <= chi_1(q) (E[phi'' phi] < 0);
  for the c-map the slope sigma_w2 E[phi'(u1) phi'(u2)] q_{t-1}/q_t is at most
  chi_1(q_{t-1}) q_{t-1}/q_t (Cauchy-Schwarz).
  """
  a, out = 0.0, []
  for e in slopes:
    a = e * a + 1.0
    out.append(a)
  return np.array(out)


@pytest.mark.slow
def test_q_follows_theory(measured):
  stats, th = measured
  # Per step: |h_t|^2/N of a Gaussian vector has relative variance 2/N, its variance
  # (|a_{t-1}|^2 W and |x U|^2) adds kappa/N; the 2 P sequences share weights (one sample).
  e = np.append(0.0, np.asarray(th.chi_1)[:-1])
  se = np.sqrt((2 + KAPPA) / (N * SEEDS)) * _memory(e)
  err = np.log(stats.q.mean(0)) - np.log(th.q)
  assert np.all(np.abs(err) < 5 * se), err / se
  # The spread over seeds is no larger than derived (a bug adding noise fails here).
  assert np.all(np.log(stats.q).std(0) < 2 * se * np.sqrt(SEEDS))


def test_c_follows_theory(measured):
  stats, th = measured
  # Fisher: a width-N sample correlation has standard deviation <= 1/sqrt(N); pairs use
  # independent input directions, seeds independent networks; the q noise adds kappa.
  q = np.asarray(th.q)
  e = np.append(0.0, np.asarray(th.chi_1)[:-1] * q[:-1] / q[1:])
  se = np.sqrt((1 + KAPPA) / (N * SEEDS * PAIRS)) * _memory(e)
  err = stats.c.mean(0) - np.asarray(th.c)
  assert np.all(np.abs(err) < 5 * se), err / se


def test_gradient_through_time_follows_chi(measured):
  stats, th = measured
  # |dL/dh_T|^2 = 1 exactly (unit readout). Each step back multiplies by |W^T D delta|^2 /
  # |delta|^2, relative variance (2 + kappa')/N with kappa' <= 2 for phi'^2, and chi_1(q_s)
  # carries the forward q error: (6 + kappa)/N per step, as for depth (test_overlay),
  # counting steps as independent. That independence is checked by the spread below: were
  # the tied steps' errors correlated, the spread over seeds would grow like the lag, not
  # its square root, and exceed the bound.
  np.testing.assert_allclose(stats.grad_h2[:, -1], 1.0, rtol=1e-5)
  lag = STEPS - np.arange(1, STEPS + 1)
  se = np.sqrt((6 + KAPPA) * lag / (N * SEEDS))
  err = np.log(stats.grad_h2.mean(0)) - np.log(th.grad_h2)
  assert np.all(np.abs(err) <= 5 * se + 1e-6), err
  assert np.all(np.log(stats.grad_h2).std(0) <= 2 * se * np.sqrt(SEEDS) + 1e-6)
  assert th.grad_h2[0] < 1e-3        # this point is ordered: the signal really vanishes


@pytest.mark.slow
def test_linear_jacobian_tied():
  # J_k = W^k. Orthogonal: sigma_w2^k times an orthogonal matrix, exactly (float32 rounding).
  # Gaussian: the Fuss-Catalan law of order k (powers of one Ginibre matrix, Alexeev, Goetze
  # & Tikhomirov 2010), m_1 = sigma_w2^k, m_2 = (k + 1) sigma_w2^2k; tolerance 5 standard
  # errors of the seed mean (finite-N bias O(k^2/N), below that at N = 128, k <= 4).
  k = np.arange(1, 5)
  common = dict(key=jax.random.key(3), activation="linear", sigma_w2=0.9, sigma_b2=0.1,
                steps=4, width=N, seeds=16, warmup=0)
  m1, m2 = _jacobian(init="orthogonal", **common)
  np.testing.assert_allclose(m1, np.broadcast_to(0.9 ** k, m1.shape), rtol=1e-4)
  np.testing.assert_allclose(m2, m1 ** 2, rtol=1e-4)
  m1, m2 = _jacobian(init="gaussian", **common)
  theory = meanfield.jacobian_moments(activation="linear", sigma_w2=0.9, sigma_b2=0.1,
                                      depth=k, init="gaussian", arch=meanfield.RNN())
  np.testing.assert_allclose(theory.second_moment, (k + 1) * 0.9 ** (2 * k), rtol=1e-6)
  for emp, pred in ((m1, theory.mean), (m2, theory.second_moment)):
    se = emp.std(0, ddof=1) / np.sqrt(emp.shape[0])
    assert np.all(np.abs(emp.mean(0) - pred) < 5 * se), (emp.mean(0) - pred) / se


@pytest.mark.parametrize("bad, match", [
    (dict(init="he_normal"), "init"), (dict(sigma_w2=-1.0), "sigma_w2"),
    (dict(c_input=2.0), "c_input"), (dict(depth=0), "depth"), (dict(width=1), "width"),
    (dict(sigma_w2=None), r"`sigma_w2` must be given"),
    (dict(sigma_w2="1.0"), r"`sigma_w2` must be a finite number >= 0, got '1.0'"),
    (dict(sigma_b2=None), r"`sigma_b2` must be a finite number >= 0, got None"),
    (dict(c_input="0.5"), r"`c_input` must be a number in \[-1, 1\], got '0.5'"),
    (dict(n_inputs=3), "n_inputs"), (dict(inputs=np.ones((2, 8))), "inputs"),
    (dict(in_features=8), "in_features"),
    (dict(arch=meanfield.RNN(sigma_u2=[1.0, 2.0])), "sigma_u2"),
    (dict(key=0), r"`key` must be a PRNG key \(jax.random.key\(0\)\), got 0")])
def test_bad_input_raises(bad, match):
  kw = {**dict(key=jax.random.key(0), sigma_w2=1.0, depth=3, width=8, arch=meanfield.RNN()),
        **bad}
  key = kw.pop("key")
  with pytest.raises(ValueError, match=match):
    empirical.sweep(key, progress=False, **kw)
  # the Jacobian driver's checks are the same, but for the sweep's own keywords (and it
  # wants sigma_w2 > 0, not >= 0)
  if not set(bad) & {"c_input", "n_inputs", "inputs", "in_features"} and ">= 0" not in match:
    with pytest.raises(ValueError, match=match):
      empirical.jacobian_spectra(key, progress=False, **kw)


def test_jacobian_refuses_what_it_does_not_run():
  kw = dict(sigma_w2=1.0, depth=3, width=8, arch=meanfield.RNN(), progress=False)
  for bad, match in ((dict(max_order=3), "max_order"), (dict(warmup=-1), "warmup"),
                     (dict(method="projection"), "method"), (dict(q=1.0), "`q`"),
                     (dict(depth=[3, 2]), "increasing")):
    with pytest.raises(ValueError, match=match):
      empirical.jacobian_spectra(jax.random.key(0), **{**kw, **bad})
  with pytest.raises(ValueError, match="warmup"):       # the RNN's keywords, not the MLP's
    empirical.jacobian_spectra(jax.random.key(0), sigma_w2=1.0, depth=2, width=8, warmup=3,
                               progress=False)


@pytest.mark.parametrize("driver", ["sweep", "jacobian_spectra"])
def test_a_killed_run_resumes_and_a_rerun_recomputes_nothing(tmp_path, monkeypatch, driver):
  # Both RNN drivers on the engine: a run killed after 3 chunks leaves them in the store; the
  # rerun computes only the missing ones (the kept ones are not rewritten: their times stay
  # set back) and ends bitwise at the uninterrupted result, which a rerun on the full store
  # reads back without computing anything; a different computation refuses the store.
  # (The sweep's sizes are the fixture's, so its program is compiled once for both.)
  run = getattr(empirical, driver)
  args = dict(arch=meanfield.RNN(sigma_u2=0.5), activation="tanh", sigma_w2=[1.0, 1.5],
              sigma_b2=0.05, progress=False)
  if driver == "sweep":
    args.update(width=N, depth=STEPS, n_inputs=2 * PAIRS, n_seeds=2 * SEEDS, chunk_size=SEEDS)
  else:
    args.update(width=8, depth=3, n_seeds=4, chunk_size=2)
  name = "q" if driver == "sweep" else "moment"
  whole = run(jax.random.key(0), **args)
  dims = ("layer",) if driver == "sweep" else ("order",)
  assert whole[name].dims == ("sigma_w2", "seed") + dims    # the MLP's drivers' axes
  if driver == "jacobian_spectra":          # its networks: depth is the lag; no overlay
    assert empirical.networks(whole).values[1].depth == 3
    with pytest.raises(NotImplementedError, match="Jacobian moments"):
      empirical.theory(whole)
  store = tmp_path / "store"
  with monkeypatch.context() as m:
    interrupting_writes(m, after=3)
    with pytest.raises(KeyboardInterrupt):
      run(jax.random.key(0), store=str(store), **args)
  kept = sorted(store.glob("config-*/chunk-*.npz"))
  assert len(kept) == 3
  for c in kept:
    os.utime(c, (1.0, 1.0))
  resumed = run(jax.random.key(0), store=str(store), **args)
  np.testing.assert_array_equal(resumed[name].values, whole[name].values)
  assert [os.path.getmtime(c) for c in kept] == [1.0] * 3
  chunks = sorted(store.glob("config-*/chunk-*.npz"))
  assert len(chunks) == 4                       # 2 configurations (sigma_w2) x 2 chunks
  for c in chunks:
    os.utime(c, (2.0, 2.0))
  with monkeypatch.context() as m:
    interrupting_writes(m, after=0)              # any chunk computed would raise here
    again = run(jax.random.key(0), store=str(store), **args)
  np.testing.assert_array_equal(again[name].values, whole[name].values)
  assert all(os.path.getmtime(c) == 2.0 for c in chunks)
  with pytest.raises(ValueError, match="different computation"):
    run(jax.random.key(0), store=str(store), **{**args, "arch": meanfield.RNN(sigma_u2=0.6)})


def test_networks_and_theory_read_the_dataset_back(measured):
  # empirical.networks and empirical.theory on an RNN sweep's Dataset: the Network of the grid
  # point (depth = steps, the arch's fields from the attributes) and propagate's numbers.
  stats, th = measured
  net = empirical.networks(stats.ds).item()
  assert net.arch == meanfield.RNN(sigma_u2=HYPER["sigma_u2"]) and net.depth == STEPS
  assert net.width == N and net.sigma_w2 == HYPER["sigma_w2"]
  overlay = empirical.theory(stats.ds)
  np.testing.assert_array_equal(overlay.q.values, th.q)
  np.testing.assert_array_equal(overlay.grad_h2.values, th.grad_h2)
  assert overlay.q.dims == ("layer",)


@pytest.mark.slow   # a second compile of the sweep and of the theory: the fixture's test has it
def test_datasets_name_their_axes_and_overlay_the_theory():
  # A list makes a dimension; layers beyond a network's depth are nan; seed and layer as in
  # the MLP's sweep. empirical.networks and empirical.theory read the Dataset back.
  ds = empirical.sweep(jax.random.key(0), arch=meanfield.RNN(sigma_u2=0.5), width=8,
                       depth=[2, 3], sigma_w2=[1.0, 1.5], n_seeds=2, progress=False)
  assert ds.q.dims == ("depth", "sigma_w2", "seed", "layer")
  assert np.all(np.isnan(ds.q.sel(depth=2, layer=3))) and not np.any(np.isnan(ds.q.sel(depth=3)))
  assert ds.attrs["architecture"] == "rnn"
  net = empirical.networks(ds).values[1, 0]
  assert net.arch == meanfield.RNN(sigma_u2=0.5) and net.depth == 3 and net.sigma_w2 == 1.0
  th = empirical.theory(ds)
  prop = meanfield.propagate(net, q_input=1.0, c_input=0.0)
  np.testing.assert_array_equal(th.q.sel(depth=3, sigma_w2=1.0).values, prop.q)
  np.testing.assert_array_equal(th.grad_h2.sel(depth=3, sigma_w2=1.0).values,
                                prop.extra["grad_h2"])
  assert np.isnan(th.q.sel(depth=2, layer=3)).all()


@pytest.mark.slow
def test_two_time_steps_correlation_is_what_tying_changes():
  # Tied W: h_t and h_{t-1} of one sequence correlate at the c-map's fixed point for inputs
  # independent in time (c_input = 0); untied W only through the bias, sigma_b2 / q*.
  # Statistic per network: c_time averaged over the last 8 (stationary) steps; its standard
  # error is the spread over the 16 independent networks / 4 (a t-test with 15 degrees of
  # freedom; 4.5 standard errors is p < 1e-3).
  hyper = dict(activation="tanh", sigma_w2=1.5, sigma_b2=0.3, sigma_u2=1.0, q_input=1.0)
  fp = meanfield.fixed_point(activation="tanh", sigma_w2=1.5, sigma_b2=0.3, q_input=1.0,
                             c_input=0.0, arch=meanfield.RNN(sigma_u2=1.0))
  tied_theory, untied_theory = float(fp.c_star), float(0.3 / fp.q_star)
  for tied, theory, other in ((True, tied_theory, untied_theory),
                              (False, untied_theory, tied_theory)):
    stats = _statistics(key=jax.random.key(1), steps=16, width=2 * N, seeds=16, pairs=2,
                               tied=tied, c_input=0.5, **hyper)
    per_network = np.asarray(stats.c_time)[:, -8:].mean(1)
    mean, se = per_network.mean(), per_network.std(ddof=1) / 4
    assert abs(mean - theory) < 4.5 * se, (tied, mean, theory, se)
    assert abs(mean - other) > 4.5 * se, (tied, mean, other, se)    # the test can tell them apart
    assert np.isnan(stats.c_time[:, 0]).all()


def _log_spread(width, steps, seeds=64):
  """Per network ``log R_k``, ``R_k = |dL/dh_{T-k}|^2`` over ``prod chi_1`` (``(seeds, steps)``,
  index k), for the ordered tanh RNN of docs/rnn.md ("When the gradient leaves chi_1^k")."""
  sw2 = 0.8 * float(meanfield.critical_sigma_w2(activation="tanh", sigma_b2=0.1))
  hyper = dict(activation="tanh", sigma_w2=sw2, sigma_b2=0.0, sigma_u2=0.1, q_input=1.0,
               steps=steps)
  stats = _statistics(key=jax.random.key(11), width=width, seeds=seeds, **hyper)
  theory = _theory(**hyper)
  return np.log(np.asarray(stats.grad_h2, np.float64)[:, ::-1]
                / np.asarray(theory.grad_h2, np.float64)[::-1])


def _sd_and_se(x):
  """Standard deviation over networks and its standard error, ``sd sqrt((kurtosis - 1) / 4n)``
  (the delta method on the variance, with the sample's own kurtosis: no normality assumed)."""
  n, sd = len(x), np.std(x, ddof=1)
  kurtosis = np.mean((x - x.mean()) ** 4) / np.var(x) ** 2
  return sd, sd * np.sqrt((kurtosis - 1) / (4 * n))


@pytest.mark.slow
def test_tied_gradient_spread_scales_with_lag_over_width():
  # docs/rnn.md: one network's log gradient spreads about chi_1^k like a random walk of
  # variance ~ k / N. At width 256, k = N/4 = 4 sqrt(N) = 64: the spread there equals
  # width 32's at k = N/4 = 8, and is well below width 32's at k = 4 sqrt(N) = 23 (a
  # sqrt(N) law would make those two equal; the k/N law makes them differ by sqrt(2.9)).
  # Independent networks at each width: the two sds are independent estimates.
  # Lags up to T - 15, clear of the first steps from h_0 = 0 (T = 20 + 8 sqrt(N)); many
  # networks, since a few extreme ones carry much of the sd (kurtosis about 3-7 here).
  narrow, wide = _log_spread(32, 65, seeds=512), _log_spread(256, 148, seeds=256)
  s2, e2 = _sd_and_se(wide[:, 64])
  s1, e1 = _sd_and_se(narrow[:, 8])
  assert abs(s1 - s2) < 5 * np.hypot(e1, e2), (s1, e1, s2, e2)
  s1, e1 = _sd_and_se(narrow[:, 23])
  assert s1 - s2 > 5 * np.hypot(e1, e2), (s1, e1, s2, e2)
