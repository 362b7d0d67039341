"""When does a random RNN's gradient through time leave the chi_1^k law? Measured against width.

Reproduces the numbers of docs/rnn.md, "When the gradient leaves chi_1^k"
(a few minutes on 2 cores)::

  python scripts/rnn_departure.py            # tanh, tied and untied, and linear
  python scripts/rnn_departure.py --seeds 32 --key 100

``R_k = |dL/dh_{T-k}|^2 / theory`` per network (theory:
:func:`meanfield.propagate` with ``arch=meanfield.RNN``), for the figure's network (tanh,
``sigma_u2 = 0.1``, ``sigma_b2 = 0``, ``q_input = 1``, ``sigma_w2`` 0.8 x
critical) at widths 32..512 over ``T = 20 + 8 sqrt(N)`` steps. Printed per
width: the lag where the seed mean of ``R_k`` first exceeds 2, the lag where
the standard deviation of ``log R_k`` over networks reaches 1, that standard
deviation at ``k = N/4`` and at ``k = 4 sqrt(N)``, and power-law fits in
``N``. Then the linear tied network in NumPy (float64), where the gradient
is ``|(W^T)^k r|^2`` exactly: each network's late growth rate of
``log R_k`` against ``2 log(rho / sqrt(sigma_w2))``, ``rho`` the spectral
radius of its ``W``.
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

import empirical
import meanfield

WIDTHS = (32, 64, 128, 256, 512)
SIGMA_U2 = 0.1


def _steps(n: int) -> int:
  return 20 + int(8 * np.sqrt(n))


def _first(mask: np.ndarray) -> float:
  return float(np.argmax(mask)) if np.any(mask) else np.nan


def _power(ns, ks) -> float:
  ns, ks = np.asarray(ns, float), np.asarray(ks, float)
  ok = np.isfinite(ks)
  return float(np.polyfit(np.log(ns[ok]), np.log(ks[ok]), 1)[0]) if ok.sum() > 1 else np.nan


def tanh_ratios(n: int, *, tied: bool, seeds: int, key: int) -> np.ndarray:
  """``R_k``, shape ``(seeds, T)``, index ``k`` (steps back from ``T``)."""
  sigma_w2 = 0.8 * float(meanfield.critical_sigma_w2(activation="tanh", sigma_b2=SIGMA_U2))
  net = meanfield.Network(activation="tanh", sigma_w2=sigma_w2, sigma_b2=0.0, depth=_steps(n),
                          width=n, arch=meanfield.RNN(sigma_u2=SIGMA_U2, tied=tied))
  stats = empirical.sweep(jax.random.key(key + n), network=net, n_seeds=seeds, q_input=1.0,
                          progress=False)
  theory = meanfield.propagate(net, q_input=1.0, c_input=0.0)
  return (np.asarray(stats.grad_h2.values, np.float64)[:, ::-1]
          / np.asarray(theory.extra["grad_h2"], np.float64)[::-1])


def report_tanh(*, tied: bool, seeds: int, key: int) -> None:
  print(f"tanh, {'tied' if tied else 'untied'} Gaussian W, {seeds} networks per width")
  k_mean, k_sd = [], []
  for n in WIDTHS:
    r = tanh_ratios(n, tied=tied, seeds=seeds, key=key)
    use = slice(0, r.shape[1] - 15)               # leave out the first steps from h_0 = 0
    sd = np.log(r).std(0, ddof=1)[use]
    k_mean.append(_first(r.mean(0)[use] > 2))
    k_sd.append(_first(sd >= 1))
    print(f"  N={n:4d}  mean R > 2 from k={k_mean[-1]:4.0f}  sd(log R) >= 1 from "
          f"k={k_sd[-1]:4.0f} (k/N={k_sd[-1] / n:.2f})  sd at k=N/4: {sd[n // 4]:.2f}, at "
          f"k=4 sqrt(N): {sd[int(round(4 * np.sqrt(n)))]:.2f}")
  print(f"  fitted exponents in N: mean R > 2: {_power(WIDTHS, k_mean):.2f}, "
        f"sd(log R) >= 1: {_power(WIDTHS, k_sd):.2f}")


def report_linear(*, seeds: int, key: int, sigma_w2: float = 0.8) -> None:
  print(f"linear, tied Gaussian W (NumPy, float64), sigma_w2 = {sigma_w2}, {seeds} networks")
  rng = np.random.default_rng(key)
  k_mean = []
  for n in WIDTHS:
    steps = int(4 * np.sqrt(n * np.log(n)))
    logs, rho = np.zeros((seeds, steps + 1)), np.zeros(seeds)
    for s in range(seeds):
      w = rng.standard_normal((n, n)) * np.sqrt(sigma_w2 / n)
      rho[s] = np.max(np.abs(np.linalg.eigvals(w))) / np.sqrt(sigma_w2)
      v = rng.standard_normal(n)
      v /= np.linalg.norm(v)
      for k in range(1, steps + 1):
        v = w.T @ v
        norm = np.linalg.norm(v)
        logs[s, k] = logs[s, k - 1] + np.log(norm**2 / sigma_w2)
        v /= norm
    k_mean.append(_first(np.exp(logs).mean(0) > 2))
    late = slice(steps // 2, steps + 1)
    rate = np.polyfit(np.arange(steps + 1)[late], logs[:, late].T, 1)[0]
    predicted = 2 * np.log(rho)
    print(f"  N={n:4d}  mean R > 2 from k={k_mean[-1]:3.0f} (k/sqrt(N)="
          f"{k_mean[-1] / np.sqrt(n):.1f})  late rate / 2 log(rho): median "
          f"{np.median(rate / predicted):.2f}, correlation {np.corrcoef(rate, predicted)[0, 1]:.2f}"
          f"  median rho - 1: {np.median(rho) - 1:.3f}")
  print(f"  fitted exponent in N: mean R > 2: {_power(WIDTHS, k_mean):.2f}")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seeds", type=int, default=64)
  parser.add_argument("--key", type=int, default=200)
  args = parser.parse_args()
  report_tanh(tied=True, seeds=args.seeds, key=args.key)
  report_tanh(tied=False, seeds=args.seeds, key=args.key)
  report_linear(seeds=32, key=0)


if __name__ == "__main__":
  main()
