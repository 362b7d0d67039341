"""Independent references for the variant maps (residual, LayerNorm, dropout): NumPy only.

Gaussian integrals by the trapezoid rule in ``z`` on ``[-10, 10]`` (step
``H``): for an integrand analytic in a strip ``|Im z| < d`` the error is about
``exp(-2 pi d / H)`` (tanh at length ``q``: ``d = pi / (2 sqrt(q))``, so
``1e-12`` or better up to ``q`` of about 60 at ``H = 0.02``), plus the tail
beyond 10 standard deviations (``1e-23``). Closed forms for ReLU (arc-cosine
kernel, Cho & Saul 2009) and erf (arcsine kernel, Williams 1997). Nothing
here imports ``meanfield``.
"""

from __future__ import annotations

import numpy as np

H = 0.02
_Z = np.arange(-10.0, 10.0 + H / 2, H)
_W = H * np.exp(-_Z**2 / 2) / np.sqrt(2 * np.pi)


def moments(name: str, q: float, c: float) -> tuple[float, float, float]:
  """``(E[phi(u)^2], E[phi(u1) phi(u2)], E[phi'(u1) phi'(u2)])``, variance ``q``, correlation ``c``."""
  if name == "relu":
    theta = np.arccos(np.clip(c, -1, 1))
    cross = q / (2 * np.pi) * (np.sin(theta) + (np.pi - theta) * c)
    return q / 2, cross, (np.pi - theta) / (2 * np.pi)
  if name == "linear":
    return q, q * c, 1.0
  if name == "erf":
    m2 = 2 / np.pi * np.arcsin(2 * q / (1 + 2 * q))
    cross = 2 / np.pi * np.arcsin(2 * q * c / (1 + 2 * q))
    dd = 4 / np.pi / np.sqrt((1 + 2 * q) ** 2 - (2 * q * c) ** 2)
    return m2, cross, dd
  if name == "tanh":
    return trapezoid(np.tanh, lambda u: 1 / np.cosh(u) ** 2, q, c)
  raise ValueError(name)


def trapezoid(phi, dphi, q: float, c: float) -> tuple[float, float, float]:
  """:func:`moments` of any ``phi`` (with derivative ``dphi``) by the 2-D trapezoid rule."""
  s = np.sqrt(max(1 - c * c, 0.0))
  u1 = np.sqrt(q) * _Z[:, None]
  u2 = np.sqrt(q) * (c * _Z[:, None] + s * _Z[None, :])
  w2 = _W[:, None] * _W[None, :]
  m2 = float(np.sum(_W * phi(np.sqrt(q) * _Z) ** 2))
  return m2, float(np.sum(w2 * phi(u1) * phi(u2))), float(np.sum(w2 * dphi(u1) * dphi(u2)))


def propagate(name: str, *, q_input: float, c_input: float, depth: int, sigma_w2: float,
              sigma_b2: float, alpha: float = 1.0, residual: bool = False,
              layer_norm: bool = False, keep_prob: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
  """``q^l, c^l`` for ``l = 1..depth``, by the second moments written out layer by layer."""
  q = sigma_w2 * q_input + sigma_b2
  k = sigma_w2 * q_input * c_input + sigma_b2          # covariance q^l c^l
  qs, cs = [q], [k / q]
  for _ in range(depth - 1):
    q_phi = 1.0 if layer_norm else q
    m2, cross, _ = moments(name, q_phi, k / q)
    q_b = sigma_w2 / keep_prob * m2 + sigma_b2
    k_b = sigma_w2 * cross + sigma_b2
    skip = 1.0 if residual else 0.0
    q, k = skip * q + alpha**2 * q_b, skip * k + alpha**2 * k_b
    qs.append(q)
    cs.append(k / q)
  return np.array(qs), np.array(cs)
