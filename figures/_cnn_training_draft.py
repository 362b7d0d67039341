"""DRAFT, not in the gallery (untuned): Xiao et al.'s headline at CPU scale.

Status (2026-12-01): at depth 64-128, 16-32 channels, 300 steps, neither scheme trains
usefully yet (test accuracy 0.1-0.24; delta-orthogonal ahead at depth 64 with SGD
lr 1e-2, 1-D over 64 pixels; with rows as positions and pixels as channels, depth 128,
neither). Tried: SGD+momentum lr 5e-2 (diverges), 1e-2, 3e-3; Adam 3e-3. Likely causes:
q* = 0.026 makes phi(h^L) small (readout signal ~0.16) and Xiao et al. train for thousands
of steps; the delta first layer mixes no positions until training grows the off-centre taps.

After Xiao et al. 2018 (Fig. 1: 10,000-layer vanilla tanh CNNs on MNIST and
CIFAR-10). Tanh at their critical point ``(sigma_w2, sigma_b2) = (1.05,
2.01e-5)``; circular 1-D CNN over the 64 pixels of scikit-learn's 8x8 digits
(row by row, one input channel; :func:`empirical.load_digits`), kernel size
3, mean over positions of ``phi(h^L)`` then a linear readout to 10 classes;
the same data order, readout and optimiser (SGD with momentum 0.9, full
fixed learning rate) for both kernel schemes. Default: depth 128, 32
channels, 300 steps of batch 64, learning rate 1e-2; ``--paper``: depth
1024, 64 channels, 2000 steps (Xiao et al. go to 10,000 layers and
beyond, on GPUs). Curves: test accuracy every 10 steps and training loss.
The delta-orthogonal network sits on the orthogonal-MLP Jacobian spectrum
(see ``cnn_jacobian``); with Gaussian kernels every non-uniform spatial
mode of the signal is forgotten within a few layers (``cnn_phase``) and the
Jacobian spreads over decades.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import xarray as xr

import empirical
from empirical import conv as _conv
from figures import _common

SIGMA_W2, SIGMA_B2 = 1.05, 2.01e-5
INITS = ("delta_orthogonal", "gaussian")


def _settings(paper: bool) -> dict:
  return (dict(depth=1024, width=64, steps=2000, batch=64, lr=1e-2) if paper
          else dict(depth=128, width=32, steps=300, batch=64, lr=1e-2))


def _logits(params, x, phi):
  conv_p, w_out = params
  h = jax.vmap(lambda xi: _conv._layers(phi, conv_p, xi)[-1])(x)      # (B, n, C)
  return jnp.mean(phi.fn(h), axis=1) @ w_out


def _train(init, data, *, depth, width, steps, batch, lr, key):
  from meanfield.activations import activation as _act
  phi = _act("tanh")
  k_p, k_o, k_b = jax.random.split(key, 3)
  conv_p = _conv.conv_params(k_p, in_channels=8, width=width, depth=depth, kernel_size=3,
                             init=init, sigma_w2=SIGMA_W2, sigma_b2=SIGMA_B2)
  w_out = jax.random.normal(k_o, (width, 10)) / np.sqrt(width)
  params = (conv_p, w_out)
  opt = optax.sgd(lr, momentum=0.9)
  state = opt.init(params)
  x_tr, y_tr = data.x_train.reshape(-1, 8, 8), data.y_train   # rows as positions, pixels as channels
  x_te, y_te = data.x_test.reshape(-1, 8, 8), data.y_test

  def loss_fn(p, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(_logits(p, x, phi), y).mean()

  @jax.jit
  def step(p, s, idx):
    loss, g = jax.value_and_grad(loss_fn)(p, x_tr[idx], y_tr[idx])
    upd, s = opt.update(g, s, p)
    return optax.apply_updates(p, upd), s, loss

  @jax.jit
  def accuracy(p):
    return jnp.mean(jnp.argmax(_logits(p, x_te, phi), -1) == y_te)

  losses, accs = [], []
  order = jax.random.randint(k_b, (steps, batch), 0, x_tr.shape[0])
  for t in range(steps):
    if t % 10 == 0:
      accs.append(float(accuracy(params)))
    params, state, loss = step(params, state, order[t])
    losses.append(float(loss))
  accs.append(float(accuracy(params)))
  return np.array(losses), np.array(accs)


def compute(*, depth, width, steps, batch, lr) -> xr.Dataset:
  data = empirical.load_digits(key=jax.random.key(0))
  out = [_train(init, data, depth=depth, width=width, steps=steps, batch=batch, lr=lr,
                key=jax.random.key(1)) for init in INITS]
  acc_steps = np.append(np.arange(0, steps, 10), steps)
  return xr.Dataset(
      {"train_loss": (("init", "step"), np.stack([o[0] for o in out])),
       "test_accuracy": (("init", "eval_step"), np.stack([o[1] for o in out]))},
      coords={"init": list(INITS), "step": np.arange(1, steps + 1), "eval_step": acc_steps},
      attrs=dict(depth=depth, width=width, steps=steps, batch=batch, lr=lr,
                 sigma_w2=SIGMA_W2, sigma_b2=SIGMA_B2, optimizer="sgd momentum 0.9"))


def draw(ds: xr.Dataset):
  fig, (ax_l, ax_a) = _common.subplots(1, 2, figsize=(10, 3.8))
  for i, init in enumerate(INITS):
    loss = ds.train_loss.sel(init=init).values
    smooth = np.convolve(loss, np.ones(10) / 10, mode="valid")
    ax_l.plot(ds.step.values[9:], smooth, color=f"C{i}", label=f"{init} kernels")
    ax_a.plot(ds.eval_step, ds.test_accuracy.sel(init=init), "o-", ms=3, color=f"C{i}",
              label=f"{init} kernels")
  ax_l.set(xlabel="step", ylabel="training loss (mean of 10 steps)", yscale="log")
  ax_a.set(xlabel="step", ylabel="test accuracy", ylim=(0, 1))
  ax_a.axhline(0.1, color="0.6", lw=0.8, ls=":")
  ax_l.legend()
  a = ds.attrs
  fig.suptitle(f"tanh CNN on 8x8 digits, depth {a['depth']}, {a['width']} channels, k = 3, "
               f"at $(\\sigma_w^2, \\sigma_b^2) = ({SIGMA_W2}, {SIGMA_B2})$; SGD+momentum, "
               f"lr {a['lr']}, batch {a['batch']}")
  return fig


def make(outdir: pathlib.Path, *, paper: bool = False) -> list[pathlib.Path]:
  ds = compute(**_settings(paper))
  return _common.save(draw(ds), ds, pathlib.Path(outdir) / "cnn_training")
