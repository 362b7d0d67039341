"""Experiment: many random Flax networks at once, measured layer by layer."""

from empirical.data import DataSplit, gaussian_blobs, load_digits, load_mnist, split_data
from empirical.description import networks
from empirical.training import train
from empirical.inits import Init, init, init_names
from empirical.spectra import jacobian_spectra
from empirical.overlay import theory
from empirical.reinit import reinit
from empirical.diagnosis import Verdict, diagnose, verdict
from empirical.sweeping import sweep
from empirical.tangent import ntk
import empirical.rnn as _rnn  # registers meanfield.RNN's experiment mirror (no public names)
import empirical.transformer as _transformer  # registers meanfield.Transformer's experiment mirror (no public names)
