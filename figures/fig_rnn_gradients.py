"""Orthogonal recurrent weights keep gradients alive over many steps: tanh RNNs, theory against networks.

A tanh RNN ``h_t = W phi(h_{t-1}) + U x_t + b`` with tied recurrent ``W``
(``arch=meanfield.RNN(sigma_u2=0.1)``: :mod:`meanfield.rnn`, :mod:`empirical.rnn`),
inputs independent over time (``q_input = 1``, ``sigma_u2 = 0.1``, ``sigma_b2 = 0``: the
input is a bias of variance 0.1 at every step), loss ``r . h_T`` at the last step.

- Left: the mean squared gradient ``|dL/dh_{T-k}|^2`` against the number of
  steps back ``k``, ordered (``chi_1 < 1``), critical (``chi_1 = 1``) and
  chaotic (``chi_1 > 1``) recurrent variances, Gaussian and orthogonal ``W``.
  Theory ``prod chi_1(q_s)`` (lines): the *mean* is the same for both laws
  at infinite width, and it vanishes or explodes exponentially off
  criticality whatever the law. Orthogonal networks follow it over all 60
  steps; the mean of these few Gaussian ones leaves it after a few tens of
  steps: in the ordered phase it decays more slowly than ``chi_1^k``,
  carried by the networks whose gradient decays slowest (at this width
  partly those whose ``W`` has the largest spectral radius). That is a
  finite-width effect of *tying*; how its lag scales with the width
  (0.3-0.7 ``N`` for this network, about ``2 sqrt(N)`` for a linear one) is
  measured in docs/rnn.md. (The rise at the largest ``k`` is the
  first steps from ``h_0 = 0``, where ``q_t`` is small and ``chi_1(q_t)``
  large. At criticality these 6 Gaussian networks' mean falls to about half
  the law beyond ``k`` of about 35: not examined further; one network's
  gradient spreads about the law by a factor ``e`` at ``k`` of about ``N/4``.)
- Right: at criticality, the spread of the squared singular values of the
  time-step Jacobian ``dh_T/dh_{T-k}``, ``Var[lambda] / E[lambda]^2``: theory
  ``k (mu_2/mu_1^2 - 1 - s_1)`` (lines; Gaussian ``s_1 = -1``, orthogonal 0;
  :func:`meanfield.jacobian_moments` with ``arch=RNN``, the untied approximation of Chen,
  Pennington & Schoenholz 2018), each network's own spectrum (markers,
  median over networks). It grows by about 1.5 per step with Gaussian ``W``
  and 0.5 with orthogonal ``W``: with Gaussian weights most directions'
  gradients vanish while a few explode, orthogonal weights keep far more of
  them alive (and all of them as ``q* -> 0``, where ``mu_2/mu_1^2 -> 1``).

Markers are means over networks (left) of width 128. ``--paper``: width
512, more networks and steps.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import xarray as xr

import empirical
import meanfield
from figures import _common

SECONDS = 16   # measured: default settings, 2-core CPU, one figure at a time

INITS = ("gaussian", "orthogonal")
SIGMA_U2, SIGMA_B2, Q_INPUT = 0.1, 0.0, 1.0
REGIMES = {"ordered": 0.8, "critical": 1.0, "chaotic": 1.25}   # x the critical sigma_w2
MARKERS = {"gaussian": "s", "orthogonal": "o"}
FILL = {"gaussian": "none", "orthogonal": "full"}


def _settings(paper: bool) -> dict:
  if paper:
    return dict(width=512, seeds=16, steps=100, jac_steps=50, jac_seeds=8)
  return dict(width=128, seeds=6, steps=60, jac_steps=30, jac_seeds=4)


def _compute(s: dict) -> xr.Dataset:
  hyper = dict(activation="tanh", sigma_b2=SIGMA_B2)
  arch = meanfield.RNN(sigma_u2=SIGMA_U2)
  critical = float(meanfield.critical_sigma_w2(activation="tanh",
                                               sigma_b2=SIGMA_U2 * Q_INPUT + SIGMA_B2))
  sw2 = np.array([critical * REGIMES[r] for r in REGIMES])
  theory = meanfield.propagate(sigma_w2=sw2, depth=s["steps"], q_input=Q_INPUT, c_input=0.0,
                               arch=arch, **hyper)
  grad = np.zeros((len(INITS), len(sw2), s["steps"]))
  for i, init in enumerate(INITS):
    for j, w in enumerate(sw2):
      net = meanfield.Network(sigma_w2=float(w), depth=s["steps"], width=s["width"], init=init,
                              arch=arch, **hyper)
      ds = empirical.sweep(jax.random.key(10 + j), network=net, n_seeds=s["seeds"],
                           q_input=Q_INPUT, progress=False)
      grad[i, j] = ds.grad_h2.values.mean(0)
  jac = np.zeros((len(INITS), s["jac_steps"]))
  jac_th = np.zeros((len(INITS), s["jac_steps"]))
  lags = np.arange(1, s["jac_steps"] + 1)
  for i, init in enumerate(INITS):
    ds = empirical.jacobian_spectra(
        jax.random.key(20), sigma_w2=critical, depth=list(lags), width=s["width"], init=init,
        n_seeds=s["jac_seeds"], warmup=20, q_input=Q_INPUT, arch=arch, progress=False, **hyper)
    m1, m2 = ds.moment.sel(order=1).values, ds.moment.sel(order=2).values   # (lag, seed)
    jac[i] = np.median(m2 / m1 ** 2 - 1, axis=1)
    th = meanfield.jacobian_moments(sigma_w2=critical, depth=lags, init=init, q_input=Q_INPUT,
                                    arch=arch, **hyper)
    jac_th[i] = np.asarray(th.variance) / np.asarray(th.mean) ** 2
  lag = s["steps"] - np.arange(1, s["steps"] + 1)
  coords = dict(init=list(INITS), regime=list(REGIMES))
  return xr.Dataset(
      {"grad_h2": (("init", "regime", "lag"), grad[:, :, ::-1]),
       "grad_h2_theory": (("regime", "lag"), np.asarray(theory.extra["grad_h2"])[:, ::-1]),
       "chi_1_star": (("regime",), np.asarray(theory.chi_1)[:, -1]),
       "sigma_w2": (("regime",), sw2),
       "relative_variance": (("init", "k"), jac),
       "relative_variance_theory": (("init", "k"), jac_th)},
      coords={**coords, "lag": lag[::-1], "k": np.arange(1, s["jac_steps"] + 1)},
      attrs=dict(width=s["width"], seeds=s["seeds"], sigma_u2=SIGMA_U2, sigma_b2=SIGMA_B2,
                 q_input=Q_INPUT, activation="tanh"))


def _draw(ds: xr.Dataset):
  fig, (left, right) = _common.subplots(1, 2, figsize=(9.0, 3.6))
  for regime in ds.regime.values:
    color = _common.PHASE_COLORS[str(regime)]
    chi = float(ds.chi_1_star.sel(regime=regime))
    left.plot(ds.lag, ds.grad_h2_theory.sel(regime=regime), color=color, lw=1.2,
              label=fr"{regime}, $\chi_1$={chi:.2f}")
    for init in ds.init.values:
      y = ds.grad_h2.sel(init=init, regime=regime)
      left.plot(ds.lag[::3], y[::3], MARKERS[str(init)], color=color, ms=4,
                fillstyle=FILL[str(init)], ls="none")
  for init in ds.init.values:
    left.plot([], [], MARKERS[str(init)], color="gray", fillstyle=FILL[str(init)],
              label=f"{init} W")
  left.set_yscale("log")
  left.set_xlabel(r"steps back $k$")
  left.set_ylabel(r"$|\partial L/\partial h_{T-k}|^2$")
  left.set_title("mean gradient: the same for both laws", fontsize=9)
  left.legend(fontsize=7, frameon=False)
  for init in ds.init.values:
    color = "#b2182b" if init == "gaussian" else "#2166ac"
    right.plot(ds.k, ds.relative_variance_theory.sel(init=init), color=color, lw=1.2,
               label=f"{init} W, theory")
    right.plot(ds.k, ds.relative_variance.sel(init=init), MARKERS[str(init)], color=color,
               ms=4, fillstyle=FILL[str(init)], ls="none", label=f"{init} W, networks")
  right.set_xlabel(r"steps back $k$")
  right.set_ylabel(r"Var$[\lambda]$ / E$[\lambda]^2$ of $J_k J_k^T$")
  right.set_title(r"critical: spread of the squared singular values", fontsize=9)
  right.legend(fontsize=7, frameon=False)
  return fig


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  ds = _compute(_settings(paper))
  fig = _draw(ds)
  return _common.save(fig, ds, pathlib.Path(outdir) / "rnn_gradients")
