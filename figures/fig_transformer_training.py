"""Collapsed transformers train worse at depth: digits read as 8 tokens of 8 pixels.

scikit-learn's handwritten digits (:func:`empirical.load_digits`), each 8x8 image
read as ``T = 8`` tokens (its rows) of 8 pixels, embedded to width ``d`` with a
learned position embedding, then ``L`` Post-LN transformer blocks (one-head
softmax self-attention of Flax nnx, a ReLU MLP of ``sigma_w2 = 2``), mean-pooled
and read out to 10 classes; trained with Adam (optax) on cross-entropy. Two
configurations the theory tells apart (docs/transformer.md):

- Post-LN, unit residual strengths: ``1 - c`` of the token correlation shrinks by
  ``chi_1 = 1/2`` per block (rank collapse within about ten blocks);
- Post-LN, both branches scaled by ``1/sqrt(L)``: ``chi_1 = 1/(1 + 1/L)``, so the
  collapse over the whole stack stays bounded.

- Left: test accuracy after training against depth (mean ± sd over seeds).
- Right: the token correlation of the last block's output at initialisation
  (markers: measured on the training inputs, mean over seeds) against depth, and
  the theory's (lines: :func:`meanfield.propagate` of Post-LN blocks with uniform
  attention from the embedded inputs' measured ``c``, an approximation: the model's
  softmax attention is not uniform, and its embedding sets ``c_input``).

CPU-sized default: width 32, depths 1, 4, 16, 300 steps, 2 seeds; ``--paper``:
width 64, depths 1, 2, 4, 8, 16, 32, 1500 steps, 4 seeds.
"""

from __future__ import annotations

import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import xarray as xr
from flax import nnx

import empirical
import meanfield
from figures import _common

SECONDS = 75   # measured: 72 s on the default settings, 2-core CPU shared with other work

TOKENS = 8
CASES = ("Post-LN, alpha = 1", "Post-LN, alpha = 1/sqrt(L)")
COLORS = {CASES[0]: "#b2182b", CASES[1]: "#1b7837"}
LEARNING_RATE, BATCH = 1e-3, 64


def _settings(paper: bool) -> dict:
  if paper:
    return dict(width=64, depths=(1, 2, 4, 8, 16, 32), steps=1500, seeds=4)
  return dict(width=32, depths=(1, 4, 16), steps=300, seeds=2)


class _Block(nnx.Module):
  """``x <- LN(x + alpha Attn(x))``, ``x <- LN(x + alpha MLP(x))``."""

  def __init__(self, d: int, alpha: float, *, rngs: nnx.Rngs):
    self.alpha = alpha
    self.attn = nnx.MultiHeadAttention(num_heads=1, in_features=d, decode=False, rngs=rngs)
    relu_init = jax.nn.initializers.variance_scaling(2.0, "fan_in", "normal")
    self.fc1 = nnx.Linear(d, d, kernel_init=relu_init, rngs=rngs)
    self.fc2 = nnx.Linear(d, d, kernel_init=relu_init, rngs=rngs)
    self.ln1, self.ln2 = nnx.LayerNorm(d, rngs=rngs), nnx.LayerNorm(d, rngs=rngs)

  def __call__(self, x):
    x = self.ln1(x + self.alpha * self.attn(x))
    return self.ln2(x + self.alpha * self.fc2(nnx.relu(self.fc1(x))))


class _Classifier(nnx.Module):
  def __init__(self, d: int, depth: int, alpha: float, *, rngs: nnx.Rngs):
    self.embed = nnx.Linear(TOKENS, d, rngs=rngs)
    self.position = nnx.Param(jax.random.normal(rngs.params(), (TOKENS, d)))
    self.blocks = nnx.List([_Block(d, alpha, rngs=rngs) for _ in range(depth)])
    self.head = nnx.Linear(d, 10, rngs=rngs)

  def tokens(self, x):
    """``(B, T, d)``: the embedded tokens and the last block's output."""
    h = self.embed(x.reshape(-1, TOKENS, TOKENS)) + self.position[...][None]
    first = h
    for block in self.blocks:
      h = block(h)
    return first, h

  def __call__(self, x):
    return self.head(jnp.mean(self.tokens(x)[1], axis=1))


def _token_c(h):
  """Mean pairwise cosine of the tokens of ``h`` ``(B, T, d)``, mean over inputs."""
  u = h / jnp.linalg.norm(h, axis=-1, keepdims=True)
  cos = jnp.einsum("btd,bsd->bts", u, u)
  t = h.shape[1]
  return float(jnp.mean((jnp.sum(cos, (1, 2)) - t) / (t * (t - 1))))


def _train(data, d: int, depth: int, alpha: float, steps: int, seed: int):
  """``(test accuracy after training, c of the embedding, c of the last block at init)``."""
  key = jax.random.key(seed)
  model = _Classifier(d, depth, alpha, rngs=nnx.Rngs(key))
  c0, c_last = (_token_c(h) for h in model.tokens(data.x_train[:256]))
  graphdef, params = nnx.split(model)
  opt = optax.adam(LEARNING_RATE)

  def loss(p, x, y):
    logits = nnx.merge(graphdef, p)(x)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))

  def step(carry, idx):
    p, state = carry
    g = jax.grad(loss)(p, data.x_train[idx], data.y_train[idx])
    updates, state = opt.update(g, state, p)
    return (optax.apply_updates(p, updates), state), None

  n = data.x_train.shape[0]
  idx = jax.random.randint(jax.random.fold_in(key, steps), (steps, BATCH), 0, n)
  (params, _), _ = jax.jit(lambda c, i: jax.lax.scan(step, c, i))((params, opt.init(params)),
                                                                   idx)
  logits = nnx.merge(graphdef, params)(data.x_test)
  return float(jnp.mean(jnp.argmax(logits, -1) == data.y_test)), c0, c_last


def _theory_c(depth: int, alpha: float, c_input: float) -> float:
  net = meanfield.Network(activation="relu", sigma_w2=2.0, sigma_b2=0.0, depth=depth,
                          arch=meanfield.Transformer(tokens=TOKENS, norm="post",
                                                     alpha_sa=alpha, alpha_mlp=alpha))
  return float(np.asarray(meanfield.propagate(net, q_input=1.0, c_input=c_input).c)[-1])


def compute(*, width: int, depths, steps: int, seeds: int) -> xr.Dataset:
  """Test accuracy and token correlations per (case, depth, seed), with the theory's."""
  data = empirical.load_digits(key=jax.random.key(0))
  shape = (len(CASES), len(depths), seeds)
  acc, c0, c_last, theory = np.zeros(shape), np.zeros(shape), np.zeros(shape), np.zeros(shape[:2])
  for i, case in enumerate(CASES):
    for j, depth in enumerate(depths):
      alpha = 1.0 if i == 0 else 1 / math.sqrt(depth)
      for s in range(seeds):
        acc[i, j, s], c0[i, j, s], c_last[i, j, s] = _train(data, width, depth, alpha, steps, s)
      theory[i, j] = _theory_c(depth, alpha, float(np.clip(c0[i, j].mean(), 0.0, 1.0)))
  dims = ("case", "depth", "seed")
  return xr.Dataset(
      {"test_accuracy": (dims, acc), "c_embedded": (dims, c0), "c_init": (dims, c_last),
       "theory_c": (("case", "depth"), theory)},
      coords={"case": list(CASES), "depth": list(depths), "seed": np.arange(seeds)},
      attrs=dict(width=width, tokens=TOKENS, steps=steps, learning_rate=LEARNING_RATE,
                 batch=BATCH))


def draw(ds: xr.Dataset):
  fig, (left, right) = _common.subplots(1, 2, figsize=(9.0, 3.6))
  depth = ds.depth.values
  for case in ds.case.values:
    color = COLORS[str(case)]
    acc = ds.test_accuracy.sel(case=case)
    left.errorbar(depth, acc.mean("seed"), yerr=acc.std("seed"), color=color, marker="o",
                  ms=4, capsize=2, label=str(case))
    right.plot(depth, ds.theory_c.sel(case=case), color=color, lw=1.4, label=str(case))
    right.plot(depth, ds.c_init.sel(case=case).mean("seed"), "o", color=color, ms=4)
  for ax in (left, right):
    ax.set_xscale("log", base=2)
    ax.set_xlabel("depth $L$ (blocks)")
  left.set_ylabel("test accuracy after training")
  left.set_title(f"digits as {TOKENS} tokens, d={ds.attrs['width']}, "
                 f"{ds.attrs['steps']} Adam steps (mean ± sd)", fontsize=8)
  left.legend(fontsize=7, frameon=False)
  right.set_ylabel("token correlation after $L$ blocks, at init")
  right.set_ylim(0, 1.02)
  right.set_title("theory, uniform attention (lines); measured (markers)", fontsize=8)
  return fig


def make(outdir: pathlib.Path, *, paper: bool = False,
         progress: bool = True) -> list[pathlib.Path]:
  ds = compute(**_settings(paper))
  return _common.save(draw(ds), ds, pathlib.Path(outdir) / "transformer_training")
