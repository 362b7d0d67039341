"""What the ``jacobian_spectra`` and ``jacobian_depth`` figures share: networks, settings, edge theory.

Both figures read one sweep of random networks per activation
(:func:`networks`, cached in the process, so making both figures runs the
networks once), at one width and one list of depths (one compiled program
per activation and weight law).

The largest singular value at finite width (:func:`sigma_max_expected`):
the infinite-width theory gives the edge ``lambda_max`` of the eigenvalue
density ``rho`` of ``J J^T``; near a square-root edge ``rho(lambda) ~
(gamma^{3/2} / pi) sqrt(lambda_max - lambda)``, and the largest of the ``N``
eigenvalues of one network is ``lambda_max + TW_1 / (gamma N^{2/3})`` to
leading order, ``TW_1`` the Tracy-Widom law of real ensembles (soft-edge
universality: Tracy & Widom 1996; Johnstone 2001 for Wishart matrices; Liu,
Wang & Zhang 2016 for products of Ginibre matrices). So the expected
``sigma_max`` is ``sqrt(lambda_max + E[TW_1] / (gamma N^{2/3}))``, below the
edge by an amount that grows as the density thins towards its edge with
depth (``gamma`` falls); derivation and checks in docs/jacobian_edge.md.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import xarray as xr

import empirical
import meanfield

TANH_SIGMA_B2 = 0.05
# (activation, sigma_w2, sigma_b2, q): sigma_w2 None means the critical line,
# q None means q*; ReLU and linear networks at criticality have no finite q*,
# and their spectra do not depend on q. :func:`network` is each case's Network.
CASES = {
    "tanh": ("tanh", None, TANH_SIGMA_B2, None),
    "relu": ("relu", 2.0, 0.0, 1.0),
    "linear": ("linear", 1.0, 0.0, 1.0),
}
WEIGHTS = ("orthogonal", "gaussian")
#: Mean of the Tracy-Widom law TW_1 (Tracy & Widom 1996; digits from Bornemann 2010, Table 10).
TW1_MEAN = -1.2065335745820
#: Relative distances ``delta`` below the edge, ``lambda = lambda_max (1 - delta)``, where
#: the edge coefficient is read off the theory's density (Richardson-extrapolated to 0).
EDGE_OFFSETS = (1e-5, 4e-5)
#: The expected ``sigma_max`` is drawn up to depth ``L = MAX_DEPTH_RATIO N``: beyond, the
#: leading-order correction is no longer small (ReLU, Gaussian, ``L = N / 2``: it predicts
#: half the measured value).
MAX_DEPTH_RATIO = 0.25

_CACHE: dict[tuple, xr.Dataset] = {}


def settings(paper: bool) -> dict:
  """Width ``N``, networks per (activation, weights) and the depths swept."""
  if paper:
    return dict(width=256, n_seeds=64, depths=(1, 2, 4, 8, 16, 32, 64))
  return dict(width=64, n_seeds=256, depths=(1, 2, 4, 8, 16, 32))


@functools.cache
def network(name: str) -> meanfield.Network:
  """Case ``name`` of :data:`CASES` as a Network, its ``sigma_w2`` on the critical line
  (solved in 64-bit) where the table says None. Its depth and width are the figures' own:
  they sweep depths in one call, which a Network (one depth) does not hold.
  """
  activation, sigma_w2, sigma_b2, _ = CASES[name]
  net = meanfield.Network(activation=activation, sigma_b2=sigma_b2)
  if sigma_w2 is None:
    with jax.enable_x64(True):
      sigma_w2 = float(meanfield.critical_sigma_w2(net))
  return net.replace(sigma_w2=sigma_w2)


def theory_kwargs(name: str, q: float | None = None) -> dict:
  """Keyword arguments of the spectrum functions for case ``name`` (float64), from its
  :func:`network`; the caller adds ``depth`` (an array of depths: one call for all).

  ``q``: the input length, e.g. the networks' ``ds.q`` (saves solving for
  ``q*`` again); default the case's own (``None``: ``q*``).
  """
  net, case_q = network(name), CASES[name][3]
  q = case_q if q is None else q
  return dict(activation=net.activation, sigma_w2=np.float64(net.sigma_w2),
              sigma_b2=np.float64(net.sigma_b2), q=None if q is None else np.float64(q))


def networks(name: str, *, width: int, n_seeds: int, depths, progress: bool) -> xr.Dataset:
  """Float64 SVD spectra of ``n_seeds`` networks per weight law (:func:`empirical.jacobian_spectra`).

  Network ``i`` of case ``name`` is the same in both figures (key from the
  case's position in ``CASES``); the result is cached for the process.
  """
  key = (name, width, n_seeds, tuple(depths))
  if key not in _CACHE:
    # One call runs every depth and weight law of the case's Network (one compiled program).
    net = network(name)
    with jax.enable_x64(True):
      _CACHE[key] = empirical.jacobian_spectra(
          jax.random.key(list(CASES).index(name)), activation=net.activation, width=width,
          depth=list(depths), sigma_w2=net.sigma_w2, sigma_b2=net.sigma_b2, q=CASES[name][3],
          init=list(WEIGHTS), n_seeds=n_seeds, progress=progress, dtype=np.float64)
  return _CACHE[key]


def edge_gamma(lam_max, rho_edge) -> np.ndarray:
  """``gamma`` with ``rho(lambda) ~ gamma^{3/2} sqrt(lambda_max - lambda) / pi`` near the edge.

  Args:
    lam_max: the edge ``lambda_max``, shape ``S``.
    rho_edge: the theory's eigenvalue density at ``lambda_max (1 - delta)``
      for ``delta`` in ``EDGE_OFFSETS``, shape ``S + (2,)``.

  Returns:
    ``gamma`` (shape ``S``), extrapolated to ``delta -> 0`` to first order
    in ``delta``; nan where the edge is not a square root (the two points
    disagree by more than 1%, as at depth 1 with orthogonal weights, where
    the density is that of ``sigma_w2 phi'(h)^2`` and diverges at its edge)
    or has no density.
  """
  lam_max, rho_edge = np.asarray(lam_max, np.float64), np.asarray(rho_edge, np.float64)
  delta = np.asarray(EDGE_OFFSETS)
  with np.errstate(divide="ignore", invalid="ignore"):
    f = rho_edge / np.sqrt(lam_max[..., None] * delta)
    ratio = delta[1] / delta[0]
    amplitude = (ratio * f[..., 0] - f[..., 1]) / (ratio - 1)
    square_root = (np.abs(f[..., 0] / f[..., 1] - 1) < 0.01) & (f[..., 1] > 0)
    return np.where(square_root, (np.pi * np.abs(amplitude)) ** (2 / 3), np.nan)


def tracy_widom_sigma_max(lam_max, gamma, width: int) -> np.ndarray:
  """``sqrt(lambda_max + E[TW_1] / (gamma N^{2/3}))``: the expected largest singular value at width ``N``.

  Leading order of the soft-edge (Tracy-Widom) scaling; nan where ``gamma``
  is nan or the correction would pass 0.
  """
  lam = np.asarray(lam_max, np.float64) + TW1_MEAN / (np.asarray(gamma) * float(width) ** (2 / 3))
  with np.errstate(invalid="ignore"):
    return np.sqrt(np.where(lam > 0, lam, np.nan))


def sigma_max_expected(name: str, init: str, depths, width: int, q: float | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
  """``(edge, expected)`` per depth: ``sqrt(lambda_max)`` and :func:`tracy_widom_sigma_max`.

  The density at the edge comes from :func:`meanfield.jacobian_spectrum`
  at ``lambda_max (1 - delta)``, ``delta`` in ``EDGE_OFFSETS`` (one call for
  all depths). Call inside ``jax.enable_x64``.
  """
  depths = np.asarray(depths)
  kwargs = theory_kwargs(name, q)
  lam_max = np.asarray(meanfield.jacobian_spectrum_edge(init=init, depth=depths, **kwargs))
  lam = lam_max[:, None] * (1 - np.asarray(EDGE_OFFSETS))[None, :]   # (depth, offset)
  spec = meanfield.jacobian_spectrum(init=init, depth=depths, sigma=np.sqrt(lam.ravel()),
                                     **kwargs)
  n = len(depths)
  rho = np.asarray(spec.eigenvalue_density).reshape(n, n, len(EDGE_OFFSETS))
  rho = rho[np.arange(n), np.arange(n)]                           # each depth's own points
  gamma = edge_gamma(lam_max, rho)
  return np.sqrt(lam_max), tracy_widom_sigma_max(lam_max, gamma, width)


def relu_zero_fraction(width: int, depth) -> np.ndarray:
  """Expected fraction of zero singular values of ``J`` for a ReLU network of width ``N`` (no bias).

  ``J = D^L W^L ... D^1 W^1`` has rank ``min_l n_l``, ``n_l`` the active units
  of layer ``l``: with ``sigma_b2 = 0`` the signs of ``h^l = x^{l-1} W^l``
  are independent fair coins for Gaussian and for Haar-orthogonal ``W^l``
  (a rotation-invariant vector's signs), so the ``n_l`` are independent
  ``Binomial(N, 1/2)`` and ``E[min_l n_l] = sum_k P(n >= k)^L``. The
  fraction ``1 - E[min_l n_l] / N`` tends to the theory's atom ``1/2`` as
  ``N -> infinity``, from above: at finite width the fewest active units of
  ``L`` layers set the rank.
  """
  from scipy import stats  # pylint: disable=import-outside-toplevel
  k = np.arange(1, width + 1)
  tail = stats.binom.sf(k - 1, width, 0.5)                      # P(n >= k)
  depth = np.asarray(depth, np.float64)
  return 1.0 - np.sum(tail[:, None] ** depth.ravel()[None, :], axis=0).reshape(depth.shape) / width
