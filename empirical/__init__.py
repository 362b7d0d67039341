"""Experiment: many random Flax networks at once, measured layer by layer."""

from empirical.data import (DataSplit, batch_indices, batches, gaussian_blobs, load_digits,
                            load_idx, load_mnist, sample_batch, split_data)
from empirical.train import train
