"""Experiment: many random Flax networks at once, measured layer by layer."""

from empirical.data import (DataSplit, batch_indices, batches, gaussian_blobs, load_digits,
                            load_idx, load_mnist, sample_batch, split_data)
from empirical.description import networks
from empirical.engine import DEFAULT_MEMORY_BUDGET, SWEPT, atomic_write, run_chunked
from empirical.training import train
from empirical.inits import INITS, Init, init, init_names
from empirical.jacobian import (extreme_singular_values, jacobian_input, moment_estimates,
                                singular_values)
from empirical.spectra import density_l1, jacobian_spectra
from empirical.models import MLP, Params, forward, layer_scales, network_key, scale_params, standard_params
from empirical.overlay import theory
from empirical.probes import Stats, measure
from empirical.rnn import RNNStats, rnn_jacobian_moments, rnn_statistics
from empirical.reinit import reinit
from empirical.diagnosis import DIAGNOSE_DOCS, Verdict, diagnose, verdict
from empirical.conv import (CNN, ConvInit, ConvParams, ConvStats, conv_forward, conv_jacobian, conv_logits, conv_measure, conv_params, conv_singular_values, conv_sweep, kernel_init, kernel_init_names, conv_layer_q)
from empirical.sweeping import input_statistics, make_inputs, sweep
