"""Experiment: many random Flax networks at once, measured layer by layer."""
