"""Is my network critical? empirical.diagnose on a user's own tanh MLPs, plain and residual.

Two networks written the way a user writes them (``nnx.Linear``,
``nnx.LayerNorm``, nothing added for the toolkit): a plain MLP
``h = W tanh(h) + b`` and a pre-LayerNorm residual MLP
``h = h + W tanh(LN(h)) + b``, diagnosed by one call each. The plain MLP at
Flax's default init (``lecun_normal``, ``sigma_w2 = 1``, zero biases: tanh's
critical end point) and at a wide normal init (``sigma_w2 = 4``, chaotic in
mean-field theory: chi_1 > 1); the residual LayerNorm MLP at the same wide
init. :func:`empirical.diagnose` finds every dense layer, LayerNorm and
residual addition in the forward pass's jaxpr, and measures them on several
random networks at once:

- ``q^l``, the mean square per unit;
- the averaged partial Jacobian norm ``J^{l0,l}`` (Doshi, He & Gromov 2023),
  with the verdict's fit (dashed);
- the backpropagated signal ``|dL/dh^l|`` for a random linear readout;
- the singular values of the input-output Jacobian.

Expected: the plain MLP at the default init reads critical (``J`` close to
flat), at ``sigma_w2 = 4`` chaotic (``J`` grows by a factor chi_J > 1 per
layer, which is mean-field chi_1 at q*); the residual LayerNorm MLP with the
same chaotic weights reads critical, ``J`` growing like a power of the depth
(Doshi et al. 2023): LayerNorm before each branch and the residual addition
rescue an init that would be chaotic without them. (With zero biases that
network is homogeneous in the kernels' scale, so its ``J`` is the same at
any ``sigma_w2``.)
"""

from __future__ import annotations

import pathlib

import jax
from flax import nnx

import empirical
from figures import _common
from figures._diagnose_plot import diagnose_figure

IN, WIDTH, BATCH = 32, 128, 16


class PlainMLP(nnx.Module):
  """A plain tanh MLP, as users write it."""

  def __init__(self, d_in, width, depth, *, kernel_init, rngs):
    self.embed = nnx.Linear(d_in, width, kernel_init=kernel_init, rngs=rngs)
    self.denses = nnx.List([nnx.Linear(width, width, kernel_init=kernel_init, rngs=rngs)
                            for _ in range(depth)])

  def __call__(self, x):
    h = self.embed(x)
    for dense in self.denses:
      h = dense(nnx.tanh(h))
    return h


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


DEFAULT = nnx.initializers.lecun_normal()
WIDE = nnx.initializers.variance_scaling(4.0, "fan_in", "normal")
MODELS = {
    r"plain MLP, Flax default ($\sigma_w^2 = 1$)": (PlainMLP, DEFAULT),
    r"plain MLP, normal $\sigma_w^2 = 4$": (PlainMLP, WIDE),
    r"pre-LN residual MLP, normal $\sigma_w^2 = 4$": (ResidualMLP, WIDE),
}
SECONDS = 10   # measured: default settings, 2-core CPU, one figure at a time


def _settings(paper: bool) -> dict:
  return dict(depth=24, n_seeds=16) if paper else dict(depth=16, n_seeds=6)


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  settings = _settings(paper)
  x = jax.random.normal(jax.random.key(1), (BATCH, IN))
  results = {}
  for label, (model, kernel_init) in MODELS.items():
    def factory(rngs, model=model, kernel_init=kernel_init):
      return model(IN, WIDTH, settings["depth"], kernel_init=kernel_init, rngs=rngs)
    results[label] = empirical.diagnose(factory, x, key=jax.random.key(0),
                                        n_seeds=settings["n_seeds"], progress=progress)
  fig, axes = _common.subplots(2, 2, figsize=(11, 7.6))
  diagnose_figure(results, axes=axes)
  verdicts = [f"{label}: {ds.attrs['verdict']}" for label, ds in results.items()]
  fig.suptitle("empirical.diagnose on a user's tanh MLPs (verdicts in words)\n"
               + "\n".join(verdicts), fontsize=7.5)
  data = {f"{key}_{i}": ds[key].values for i, ds in enumerate(results.values())
          for key in ("q", "partial_jacobian", "grad_h", "singular_values")}
  return _common.save(fig, data, outdir / "diagnose")
