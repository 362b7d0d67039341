"""Is my network critical? empirical.diagnose on a user's residual LayerNorm MLP at two inits.

A pre-LayerNorm residual MLP written the way a user writes it (``nnx.Linear``,
``nnx.LayerNorm``, ``h = h + W tanh(LN(h)) + b``, nothing added for the
toolkit), diagnosed by one call each at two initialisations of every kernel:
Flax's default (``lecun_normal``, ``sigma_w2 = 1``) and a wide normal
(``sigma_w2 = 4``). :func:`empirical.diagnose` finds the embedding, every
LayerNorm, every dense layer and every residual addition in the forward
pass's jaxpr, and measures them on several random networks at once:

- ``q^l``, the mean square per unit: the residual stream grows with depth
  (each block adds its branch's variance), the LayerNorm outputs stay at 1;
- the averaged partial Jacobian norm ``J^{l0,l}`` from the first residual
  addition (Doshi, He & Gromov 2023), with the verdict's exponential fit
  (dashed) over the residual stream;
- the backpropagated signal ``|dL/dh^l|`` for a random linear readout;
- the singular values of the input-output Jacobian.

Expected (Doshi et al. 2023): with LayerNorm before each branch and the
residual addition, ``J`` grows like a power of the depth, not exponentially,
at any weight variance, and both inits read critical. Here the two are the
same to the last digit: with zero biases the network is homogeneous in the
kernels' scale (all kernels times ``a`` multiply the residual stream by
``a``, which every LayerNorm removes), so ``J``, a ratio along the stream, does
not change, while ``q`` of the stream is 4 times larger, the Jacobian's
singular values 2 times (``log10 2 = 0.3``) and the LayerNorm outputs stay at
``q = 1``.
"""

from __future__ import annotations

import pathlib

import jax
from flax import nnx

import empirical
from figures import _common

IN, WIDTH, BATCH = 32, 128, 16


class ResidualMLP(nnx.Module):
  """A pre-LN residual MLP, as users write it."""

  def __init__(self, d_in, width, depth, *, kernel_init, rngs):
    self.embed = nnx.Linear(d_in, width, kernel_init=kernel_init, rngs=rngs)
    self.norms = nnx.List([nnx.LayerNorm(width, rngs=rngs) for _ in range(depth)])
    self.denses = nnx.List([nnx.Linear(width, width, kernel_init=kernel_init, rngs=rngs)
                            for _ in range(depth)])

  def __call__(self, x):
    h = self.embed(x)
    for norm, dense in zip(self.norms, self.denses):
      h = h + dense(nnx.tanh(norm(h)))
    return h


INITS = {
    r"Flax default (lecun_normal, $\sigma_w^2 = 1$)": nnx.initializers.lecun_normal(),
    r"normal, $\sigma_w^2 = 4$": nnx.initializers.variance_scaling(4.0, "fan_in", "normal"),
}


def _settings(paper: bool) -> dict:
  return dict(depth=24, n_seeds=16) if paper else dict(depth=10, n_seeds=6)


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  settings = _settings(paper)
  x = jax.random.normal(jax.random.key(1), (BATCH, IN))
  results = {}
  for label, kernel_init in INITS.items():
    def factory(rngs, kernel_init=kernel_init):
      return ResidualMLP(IN, WIDTH, settings["depth"], kernel_init=kernel_init, rngs=rngs)
    results[label] = empirical.diagnose(factory, x, key=jax.random.key(0),
                                        n_seeds=settings["n_seeds"])
  fig, axes = _common.subplots(2, 2, figsize=(11, 7.6))
  empirical.diagnose_figure(results, axes=axes)
  verdicts = [f"{label}: {ds.attrs['verdict']}" for label, ds in results.items()]
  fig.suptitle("empirical.diagnose on a user's pre-LN residual MLP\n" + "\n".join(verdicts),
               fontsize=7.5)
  data = {f"{key}_{i}": ds[key].values for i, ds in enumerate(results.values())
          for key in ("q", "partial_jacobian", "grad_h", "singular_values")}
  return _common.save(fig, data, outdir / "diagnose")
