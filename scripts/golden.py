"""Golden outputs: a fixed set of small, deterministic calls, saved and compared bit for bit.

A change that must not change any number (a refactor, a module split, a
new code path for the same result) runs ``save`` before it and ``check``
after it, on the same machine::

  python scripts/golden.py save /tmp/golden        # before the change
  python scripts/golden.py check /tmp/golden       # after it: every entry identical
  python scripts/golden.py save /tmp/golden --only sweep_mlp train_mlp

``save DIR`` runs every entry of :data:`ENTRIES` and writes its arrays to
``DIR/<entry>.npz``; ``check DIR`` runs them again and reports, per entry,
whether every array is byte-identical to the saved one: same dtype, same
shape, same bits (NaN equal to NaN, whatever its payload). It exits with
status 1 on any difference, a missing or extra array, or an entry that
raised. Bits may differ between CPU kinds and library versions, so this is
a tool to run around a change, not a test; the whole ``save`` takes about
5 minutes on a 2-core CPU (small widths, few seeds, depths up to 8;
mostly compiling).

An entry returns any mix of arrays, ``xarray.Dataset`` (its variables and
coordinates), NamedTuples, dataclasses, tuples and dicts; each leaf array
is stored under its path (``var/q``, ``coord/layer``, ``field/q_star``,
``0/1``, ...). Theory entries run in 64-bit (``jax.enable_x64``), as the
theory is meant to; empirical entries in the default 32-bit unless they
say otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import xarray as xr

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

import empirical  # pylint: disable=wrong-import-position
import meanfield  # pylint: disable=wrong-import-position
from meanfield import _checks, _fixed_points  # pylint: disable=wrong-import-position

KEY = 0
SW = [0.5, 1.0, 1.5, 2.5]        # sigma_w2 of the theory grids (ordered, critical-ish, chaotic)


def _key(i: int = KEY) -> jax.Array:
  return jax.random.key(i)


# ---------------------------------------------------------------------------
# Experiment entries (32-bit unless noted).


def _train_data():
  return empirical.gaussian_blobs(key=_key(3), n_samples=200, n_features=16, n_classes=3)


def train_mlp():
  """A small MLP grid with probes: sgd, two sigma_w2, two seeds."""
  return empirical.train(_key(), data=_train_data(), activation="tanh", width=16, depth=4,
                         sigma_w2=[1.0, 2.0], sigma_b2=0.05, n_seeds=2, learning_rate=0.05,
                         n_steps=12, batch_size=16, record_every=6, probe_size=32,
                         progress=False)


def train_mlp_variants():
  """Residual + LayerNorm, adam with clipping, two learning rates; then batch norm, momentum, no probes."""
  a = empirical.train(_key(1), data=_train_data(), activation="relu", width=16, depth=3,
                      sigma_w2=2.0, arch=meanfield.MLP(residual=True, norm="layer"),
                      optimizer="adam", clip_norm=1.0, learning_rate=[1e-3, 1e-2], n_steps=8,
                      batch_size=16, record_steps=[0, 3, 8], probe_size=32, progress=False)
  b = empirical.train(_key(2), data=_train_data(), activation="tanh", width=16, depth=3,
                      sigma_w2=1.5, arch=meanfield.MLP(norm="batch"), optimizer="momentum",
                      momentum=0.5, learning_rate=0.02, n_steps=8, batch_size=16, record_every=4,
                      probes=False, progress=False)
  return {"residual_layer_adam": a, "batch_momentum_noprobes": b}


def train_conv():
  """A small 2-D CNN on the 8x8 digits, delta-orthogonal and Gaussian kernels."""
  return empirical.train(_key(), arch=meanfield.Conv(kernel_size=3), init=["delta_orthogonal", "gaussian"],
                         activation="tanh", width=4, depth=3, sigma_w2=1.05, sigma_b2=2e-5,
                         optimizer="adam", learning_rate=1e-3, n_steps=6, batch_size=8,
                         record_every=3, probe_size=16, progress=False)


def jacobian_spectra():
  """float64 SVD spectra, Gaussian and orthogonal, two depths; projection estimates in 32-bit."""
  with jax.enable_x64(True):
    svd = empirical.jacobian_spectra(_key(), activation="tanh", width=16, depth=[2, 6],
                                     sigma_w2=[1.0, 1.5], sigma_b2=0.01,
                                     init=["gaussian", "orthogonal"], n_seeds=2,
                                     max_order=3, progress=False, dtype="float64")
  proj = empirical.jacobian_spectra(_key(1), activation="relu", width=16, depth=[3, 5],
                                    sigma_w2=2.0, sigma_b2=0.0, init=["gaussian", "orthogonal"],
                                    n_seeds=2, method="projection", n_probes=4,
                                    num_iterations=6, progress=False)
  return {"svd": svd, "projection": proj}


def jacobian_one_network():
  """The one-network functions of empirical.jacobian on one small float64 network."""
  with jax.enable_x64(True):
    k1, k2, k3 = jax.random.split(_key(5), 3)
    width, depth = 12, 5
    w = jax.random.normal(k1, (depth, width, width), "float64") / np.sqrt(width)
    b = 0.1 * jax.random.normal(k2, (depth, width), "float64")
    x = empirical.jacobian.jacobian_input(key=k3, activation="tanh", q=0.7, width=width,
                                          dtype="float64")
    out, d = empirical.jacobian.output_and_derivatives(w, b, x, activation="tanh")
    return {
        "x": x, "out": out, "derivs": d,
        "jacobian": empirical.jacobian.jacobian(w, b, x, activation="tanh"),
        "singular_values": empirical.jacobian.singular_values(w, b, x, activation="tanh",
                                                              depths=[1, 3, 5]),
        "moments": empirical.jacobian.moment_estimates(w, b, x, activation="tanh", key=_key(6),
                                                       n_probes=5, max_order=3),
        "extremes": empirical.jacobian.extreme_singular_values(w, b, x, activation="tanh",
                                                               key=_key(7), num_iterations=8),
        "density_l1": np.float64(empirical.spectra.density_l1(
            np.linspace(0.05, 0.95, 40), sigma=np.linspace(0, 1, 101),
            density=np.ones(101), bins=8, floor=0.1)),
    }


def _sweep(**kw):
  return empirical.sweep(_key(), activation=["tanh", "relu"], width=16, depth=6,
                         sigma_w2=[1.0, 2.0], sigma_b2=0.05, n_seeds=2, n_inputs=4,
                         in_features=8, q_input=0.8, c_input=0.3, progress=False, **kw)


def sweep_mlp():
  """The plain MLP sweep: two activations, two sigma_w2, two seeds."""
  return _sweep()


def sweep_residual():
  return _sweep(arch=meanfield.MLP(residual=True))


def sweep_layernorm():
  return _sweep(arch=meanfield.MLP(norm="layer"))


def sweep_batchnorm():
  return _sweep(arch=meanfield.MLP(norm="batch"))


def sweep_dropout():
  return _sweep(arch=meanfield.MLP(keep_prob=0.8))


def conv_sweep():
  """A 1-D CNN sweep (empirical.sweep with arch=Conv), two kernel schemes, and the CNN Jacobian's singular values."""
  x = jax.random.normal(_key(1), (8, 3))
  ds = empirical.sweep(_key(), arch=meanfield.Conv(kernel_size=3), inputs=x,
                       activation="tanh", width=6, depth=4,
                       init=["delta_orthogonal", "gaussian"], sigma_w2=[1.0, 1.5],
                       sigma_b2=0.01, n_seeds=2, progress=False)
  sv = empirical.jacobian_spectra(_key(2), arch=meanfield.Conv(kernel_size=3, spatial_size=4),
                                 activation="tanh", width=3, depth=3, sigma_w2=1.2,
                                 sigma_b2=0.01, q=1.0, n_seeds=2, progress=False)
  return {"sweep": ds, "singular_values": sv.singular_values.values}


def rnn_drivers():
  """The RNN's sweep (tied and untied) and its time-step Jacobian moments (jacobian_spectra);
  the entries keep the keys of the former rnn_statistics and rnn_jacobian_moments results."""
  kw = dict(activation="tanh", sigma_w2=1.2, sigma_b2=0.05, width=16, progress=False)
  stats = lambda ds: {name: ds[name].values for name in ("q", "c", "grad_h2", "c_time")}
  jac = empirical.jacobian_spectra(_key(2), arch=meanfield.RNN(sigma_u2=0.5), depth=[1, 2, 3, 4],
                                   warmup=3, n_seeds=3, **kw).moment.transpose("seed", "depth", "order")
  return {
      "tied": stats(empirical.sweep(_key(), arch=meanfield.RNN(sigma_u2=0.5), depth=6, n_seeds=3,
                                    n_inputs=4, c_input=0.3, **kw)),
      "untied": stats(empirical.sweep(_key(1), arch=meanfield.RNN(sigma_u2=0.5, tied=False),
                                      depth=6, n_seeds=3, **kw)),
      "jacobian": (np.ascontiguousarray(jac.values[..., 0]),
                   np.ascontiguousarray(jac.values[..., 1])),
  }


def diagnose_mlp():
  """diagnose on a small nnx MLP (empirical.models.MLP of sweep weights)."""
  width, depth, n_in = 12, 4, 6

  def factory(rngs):
    k = rngs.default.key[...]
    std = empirical.models.standard_params(k, in_features=n_in, width=width, depth=depth)
    ws, bs = empirical.models.layer_scales("gaussian", 1.5, 0.05, in_features=n_in, width=width,
                                           depth=depth)
    return empirical.models.MLP.from_params(empirical.models.scale_params(std, ws, bs),
                                            activation="tanh")

  x = jax.random.normal(_key(1), (8, n_in))
  return empirical.diagnose(factory, x, key=_key(), n_seeds=3, n_projections=2)


# ---------------------------------------------------------------------------
# Theory entries (64-bit).


def _theory(fn: Callable[[], Any]) -> Callable[[], Any]:
  def run():
    with jax.enable_x64(True):
      return fn()
  run.__name__, run.__doc__ = fn.__name__, fn.__doc__
  return run


@_theory
def theory_mlp():
  """Propagation, fixed points, slopes and depth scales of the MLP, tanh and relu."""
  sw = np.asarray(SW)[:, None]
  sb = np.asarray([0.0, 0.05])[None, :]
  out = {}
  for act in ("tanh", "relu"):
    kw = dict(sigma_w2=sw, sigma_b2=sb, activation=act)
    fp = meanfield.fixed_point(**kw)
    phi, checked = meanfield.activation(act), _checks.hyperparameters(sw, sb)
    out[act] = {
        "propagate": meanfield.propagate(q_input=0.8, c_input=0.4, depth=8, **kw),
        "q_map": meanfield.q_map(0.7, **kw), "q_map_slope": meanfield.q_map_slope(0.7, **kw),
        "c_map": meanfield.c_map(0.3, q=0.7, **kw),
        "q_star": meanfield.q_star(**kw), "c_star": fp.c_star, "chi_c": fp.chi_c,
        # the solvers' own reports (iteration counts), from the private module
        "q_star_solve": _fixed_points.q_root(phi, *checked),
        "correlation_fixed_point": _fixed_points.c_root(phi, *checked, None),
        "chi_1": meanfield.chi_1(**kw), "depth_scales": meanfield.depth_scales(**kw),
        "gradient_depth_scale": meanfield.gradient_depth_scale(**kw),
        "critical_sigma_w2": meanfield.critical_sigma_w2(sigma_b2=[0.0, 0.05], activation=act),
        "post_activation_variance": meanfield.post_activation_variance(0.7, activation=act),
    }
  out["critical_line"] = meanfield.critical_line(np.asarray([0.2, 1.0, 3.0]), activation="tanh")
  out["phase_diagram"] = meanfield.phase_diagram(sigma_w2=SW, sigma_b2=[0.0, 0.05],
                                                 activation="tanh")
  out["critical_init"] = meanfield.critical_init("tanh", sigma_b2=0.05, depth=8)
  return out


@_theory
def theory_spectrum():
  """Jacobian moments, spectrum (small grid) and edge, Gaussian and orthogonal."""
  out = {}
  for init in ("gaussian", "orthogonal"):
    kw = dict(activation="tanh", sigma_w2=1.2, sigma_b2=0.01, init=init)
    out[init] = {
        "moments": meanfield.jacobian_moments(depth=[2, 8], **kw),
        "spectrum": meanfield.jacobian_spectrum(depth=4, n_points=64, **kw),
        "edge": meanfield.jacobian_spectrum_edge(depth=4, **kw),
    }
  return out


def _fields(result: Any, **keys: str) -> dict[str, Any]:
  """``{key: result.<field>}``: a result stored under the keys of an earlier result type."""
  return {key: getattr(result, field) for key, field in keys.items()}


@_theory
def theory_variants():
  """Residual, LayerNorm, BatchNorm and dropout theory."""
  kw = dict(sigma_w2=np.asarray([0.8, 1.5]), sigma_b2=0.05, activation="tanh")
  prop = dict(q_input=0.8, c_input=0.4, depth=8, **kw)
  MLP = meanfield.MLP
  return {
      "residual_propagate": meanfield.propagate(arch=MLP(residual=True, alpha=0.7), **prop),
      "residual_q_map": meanfield.q_map(0.7, arch=MLP(residual=True, alpha=0.7), **kw),
      "residual_c_map": meanfield.c_map(0.3, q=0.7, arch=MLP(residual=True, alpha=0.7),
                                        **kw),
      "layernorm_propagate": meanfield.propagate(arch=MLP(norm="layer"), **prop),
      "layernorm_c_map": meanfield.c_map(0.3, arch=MLP(norm="layer"), **kw),
      "layernorm_fixed_point": _fields(meanfield.fixed_point(arch=MLP(norm="layer"), **kw),
                                       q="q_star", c_star="c_star", chi_c="chi_c",
                                       chi_1="chi_1", xi_c="xi_c"),
      "batchnorm_gradient_factor": MLP(norm="batch").gradient_factor(n_inputs=[4, 16]),
      "dropout_propagate": meanfield.propagate(arch=MLP(keep_prob=0.8), **prop),
      "dropout_q_map": meanfield.q_map(0.7, arch=MLP(keep_prob=0.8), **kw),
      "dropout_c_map": meanfield.c_map(0.3, q=0.7, arch=MLP(keep_prob=0.8), **kw),
      "dropout_fixed_point": _fields(meanfield.fixed_point(arch=MLP(keep_prob=0.8), **kw),
                                     q_star="q_star", c_star="c_star", chi_c="chi_c",
                                     chi_1="chi_1", xi_c="xi_c"),
  }


def _rnn_propagation(prop):
  return dict(q=prop.q, c=prop.c, chi_1=prop.chi_1, grad_h2=prop.extra["grad_h2"])


def _rnn_fixed_point(fp):
  return dict(q_star=fp.q_star, c_star=fp.c_star, chi_1=fp.chi_1, chi_c=fp.chi_c, xi_c=fp.xi_c,
              xi_grad=fp.extra["xi_grad"])


@_theory
def theory_conv_rnn():
  """CNN and RNN theory, finite width and the transforms."""
  kw = dict(sigma_w2=1.3, sigma_b2=0.02, activation="tanh")
  cov = 0.5 * np.eye(4) + 0.2
  rnn = dict(activation="tanh", sigma_w2=1.2, sigma_b2=0.05, arch=meanfield.RNN(sigma_u2=0.5))
  # the CNN entries keep the keys of the former conv_* functions' results
  arch = meanfield.Conv(kernel_size=3, spatial_size=4)
  prop = meanfield.propagate(covariance=cov, depth=6, arch=meanfield.Conv(kernel_size=3), **kw)
  fp = meanfield.fixed_point(arch=arch, **kw)
  ds = meanfield.depth_scales(arch=arch, **kw)
  return {
      "conv_propagate": dict(covariance=prop.extra["covariance"], q=prop.q, c=prop.c),
      "conv_covariance_map": arch.covariance_map(cov, **kw),
      "conv_fixed_point": dict(q_star=fp.q_star, c_star=fp.c_star,
                               covariance=fp.extra["covariance"], converged=fp.converged),
      "conv_depth_scales": dict(ds.extra, xi_q=ds.xi_q, xi_c=ds.xi_c),
      # the RNN entries keep the keys of the former rnn_* functions' results
      "rnn_propagate": _rnn_propagation(meanfield.propagate(depth=6, q_input=0.8, c_input=0.3,
                                                            **rnn)),
      "rnn_fixed_point": _rnn_fixed_point(meanfield.fixed_point(**rnn)),
      "rnn_jacobian_moments": meanfield.jacobian_moments(depth=np.arange(1, 5), **rnn),
      "finite_width_q": meanfield.finite_width_q(q_input=0.8, depth=6, width=32, **kw),
      "finite_width_jacobian": meanfield.finite_width_jacobian(q_input=0.8, depth=6, width=32,
                                                               **kw),
      "dks_transform": meanfield.dks_transform("tanh", depth=8),
  }


#: Every golden entry: name -> a function of no arguments returning the arrays to compare.
#: An entry stored under another name than its function's (the name its arrays were saved
#: under before the function it calls was renamed), so that check compares old with new.
ENTRIES: dict[str, Callable[[], Any]] = {f.__name__: f for f in (
    train_mlp, train_mlp_variants, train_conv, jacobian_spectra, jacobian_one_network,
    sweep_mlp, sweep_residual, sweep_layernorm, sweep_batchnorm, sweep_dropout, conv_sweep,
    rnn_drivers, diagnose_mlp, theory_mlp, theory_spectrum, theory_variants, theory_conv_rnn)}


# ---------------------------------------------------------------------------
# Flattening, saving, comparing.


def flatten(result: Any, prefix: str = "") -> dict[str, np.ndarray]:
  """The leaf arrays of ``result`` by path (callables and None are skipped)."""
  join = (lambda k: f"{prefix}/{k}") if prefix else str
  if isinstance(result, xr.Dataset):
    out = {}
    for name, var in result.data_vars.items():
      out.update(flatten(var.values, join(f"var/{name}")))
    for name, var in result.coords.items():
      out.update(flatten(var.values, join(f"coord/{name}")))
    return out
  if isinstance(result, xr.DataArray):
    return flatten(result.to_dataset(name="value"), prefix)
  if isinstance(result, tuple) and hasattr(result, "_fields"):
    items = zip(result._fields, result)
  elif dataclasses.is_dataclass(result) and not isinstance(result, type):
    items = ((f.name, getattr(result, f.name)) for f in dataclasses.fields(result))
  elif isinstance(result, dict):
    items = result.items()
  elif isinstance(result, (list, tuple)):
    items = enumerate(result)
  elif result is None or callable(result) and not isinstance(result, (np.ndarray, jax.Array)):
    return {}
  else:
    a = np.asarray(result)
    if a.dtype == object:   # labels (xarray keeps strings as objects): compared as text
      if not all(isinstance(v, str) for v in a.flat):
        raise TypeError(f"golden entry {prefix!r}: an object array cannot be compared by bits")
      a = a.astype(str)
    return {prefix or "value": a}
  out = {}
  for k, v in items:
    out.update(flatten(v, join(k)))
  return out


def identical(a: np.ndarray, b: np.ndarray) -> bool:
  """Same dtype, shape and bits; a NaN equals any NaN."""
  if a.dtype != b.dtype or a.shape != b.shape:
    return False
  if a.dtype.kind in "fc":
    both_nan = np.isnan(a) & np.isnan(b)
    a, b = np.where(both_nan, 0, a), np.where(both_nan, 0, b)
  return np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def differences(saved: dict[str, np.ndarray], now: dict[str, np.ndarray]) -> list[str]:
  """One line per array that is missing, extra or not identical."""
  lines = [f"missing now: {k}" for k in sorted(saved.keys() - now.keys())]
  lines += [f"new: {k}" for k in sorted(now.keys() - saved.keys())]
  for k in sorted(saved.keys() & now.keys()):
    a, b = saved[k], now[k]
    if not identical(a, b):
      what = (f"{a.dtype}{a.shape} -> {b.dtype}{b.shape}"
              if a.dtype != b.dtype or a.shape != b.shape else
              f"{int(np.sum(a != b))} of {a.size} values differ")
      lines.append(f"differs: {k}: {what}")
  return lines


def _run(names: list[str]) -> dict[str, dict[str, np.ndarray] | Exception]:
  out = {}
  for name in names:
    start = time.perf_counter()
    try:
      out[name] = flatten(ENTRIES[name]())
    except Exception as err:  # pylint: disable=broad-except
      out[name] = err
    print(f"  {name}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
  return out


def save(directory: pathlib.Path, names: list[str]) -> int:
  directory.mkdir(parents=True, exist_ok=True)
  status = 0
  for name, arrays in _run(names).items():
    if isinstance(arrays, Exception):
      print(f"{name}: FAILED ({type(arrays).__name__}: {arrays})")
      status = 1
      continue
    np.savez(directory / f"{name}.npz", **arrays)
    print(f"{name}: saved {len(arrays)} arrays")
  return status


def check(directory: pathlib.Path, names: list[str]) -> int:
  status = 0
  for name, arrays in _run(names).items():
    path = directory / f"{name}.npz"
    if isinstance(arrays, Exception):
      print(f"{name}: FAILED ({type(arrays).__name__}: {arrays})")
      status = 1
      continue
    if not path.exists():
      print(f"{name}: NOT SAVED ({path} missing)")
      status = 1
      continue
    with np.load(path) as f:
      saved = {k: f[k] for k in f.files}
    lines = differences(saved, arrays)
    print(f"{name}: {'identical' if not lines else 'DIFFERS'} ({len(saved)} arrays)")
    for line in lines:
      print(f"    {line}")
    status |= bool(lines)
  return status


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("command", choices=("save", "check", "list"))
  parser.add_argument("directory", nargs="?", type=pathlib.Path)
  parser.add_argument("--only", nargs="+", choices=sorted(ENTRIES), metavar="ENTRY",
                      help="run only these entries")
  args = parser.parse_args(argv)
  names = args.only or list(ENTRIES)
  if args.command == "list":
    for name in names:
      print(f"{name}: {(ENTRIES[name].__doc__ or '').strip().splitlines()[0:1]}")
    return 0
  if args.directory is None:
    parser.error(f"{args.command} needs a directory")
  return (save if args.command == "save" else check)(args.directory, names)


if __name__ == "__main__":
  sys.exit(main())
