"""The Jacobian spectra's default input length: ``q*``, with one rule where it is 0 or infinite.

Shared by :func:`empirical.jacobian_spectra`'s MLP (:mod:`empirical.spectra`)
and its CNN (:mod:`empirical.conv`); a module of its own so that neither
imports the other.
"""

from __future__ import annotations

import jax
import numpy as np

from meanfield.activations import Activation
from meanfield.fixed_points import q_star

__all__ = ["Q_LIMIT", "fixed_point_q"]

#: The input length standing for the limit q -> 0+ where q* = 0 (see :func:`fixed_point_q`).
Q_LIMIT = 1e-6


def fixed_point_q(act: Activation, sigma_w2, sigma_b2) -> np.ndarray:
  """``q*`` of each ``(sigma_w2, sigma_b2)`` from :func:`meanfield.q_star` (float64), > 0.

  Where ``q* = 0`` (ordered, no bias: tanh below ``sigma_w2 = 1``, ReLU at
  the He point ``(2, 0)``, where every length is fixed and ``meanfield``
  reports 0) the theory is the limit ``q -> 0+``; inputs of length 0 would
  make every ReLU derivative 0. The networks get ``q = Q_LIMIT`` instead: a
  ReLU network without bias is scale-free (any length gives the same
  Jacobians), and a smooth activation is then in its linear regime
  (``phi'(h)^2`` within about ``1e-6`` of ``phi'(0)^2``).

  Args:
    act: the activation.
    sigma_w2: float64 array (any shape), or ``None`` for a scheme that fixes
      the weight variance (no ``q*`` to read: a ``ValueError``).
    sigma_b2: float64 array broadcasting with ``sigma_w2``.

  Returns:
    A float64 array of the broadcast shape.

  Raises:
    ValueError: where ``q*`` is not finite (or ``sigma_w2`` is None): the
      caller must give ``q`` there.
  """
  sb2 = np.asarray(sigma_b2, np.float64)
  if sigma_w2 is None:
    sw2, values = np.full_like(sb2, np.nan), np.full_like(sb2, np.nan)
  else:
    sw2 = np.asarray(sigma_w2, np.float64)
    with jax.enable_x64(True):
      values = np.asarray(q_star(sigma_w2=sw2, sigma_b2=sb2, activation=act), np.float64)
  bad = ~np.isfinite(values)
  if np.any(bad):
    i = np.unravel_index(int(np.argmax(bad)), bad.shape)
    sw2, sb2 = np.broadcast_arrays(sw2, sb2)
    raise ValueError(
        f"`q` must be given for activation {act.name!r} at sigma_w2="
        f"{None if sigma_w2 is None else sw2[i]}, sigma_b2={sb2[i]}: the length map has no "
        f"finite fixed point there (meanfield.q_star = {values[i]})")
  return np.where(values > 0, values, Q_LIMIT)
