"""The random streams of a network: one table of every ``fold_in`` number.

Network ``i`` of an experiment with key ``key`` has the key
``k = fold_in(key, i)`` (:func:`empirical.models.network_key`), whatever the
grid, the chunk or the device it runs on. Everything random about that
network is drawn from ``fold_in(k, STREAM)`` with a stream of this table,
so no two draws share numbers by accident and each driver names what it
draws:

========================  ====  ===============================================
name                      k, n  what is drawn from ``fold_in(k, n)``
========================  ====  ===============================================
``WEIGHTS``               0     standard weights: layer ``l`` from
                                ``fold_in(fold_in(k, 0), l)``, the readout
                                (``train``) at ``l = L + 1``
``BIASES``                1     standard biases, layer ``l`` at ``fold_in(., l)``
``READOUT``               2     the probes' loss projection ``r``
                                (:func:`empirical.sweep`, also for an ``arch``
                                whose mirror keeps the default sweep,
                                :func:`empirical.train`, :func:`empirical.diagnose`)
``BATCHES``               3     minibatch roots in :func:`empirical.train`; step
                                ``t`` draws from ``fold_in(fold_in(k, 3), t)``
``JACOBIAN_INPUT``        3     the input noise ``z`` of
                                :func:`empirical.jacobian_spectra`
``TANGENTS``              3     the random tangents ``v`` of the partial
                                Jacobians in :func:`empirical.diagnose`
``HUTCHINSON``            4     the Hutchinson probes of ``method="projection"``
``LANCZOS``               5     the Lanczos start vector of ``method="projection"``
``DROPOUT``               6     dropout masks (:func:`empirical.models.forward` with
                                ``keep_prob < 1``): layer ``l`` from
                                ``fold_in(fold_in(k, 6), l)``
``CONV_READOUT``          1     the loss projection ``r`` of a CNN sweep,
                                :func:`empirical.sweep` with ``arch=Conv`` (a CNN's kernels
                                and biases come from ``WEIGHTS``: layer ``l``
                                from ``fold_in(fold_in(k, 0), l - 1)``)
``CONV_INPUT``            1     the input noise of a CNN's Jacobian spectra,
                                :func:`empirical.jacobian_spectra` with ``arch=Conv``
========================  ====  ===============================================

A number serves several names only where no driver draws two of them
(:data:`SHARED`): a training run has no Jacobian input, a spectrum no
minibatches, and a diagnosis neither; a CNN has no ``BIASES`` stream, and a
CNN sweep no input noise. The numbers are
those every stored result was drawn with, so they never change. The inputs
of a sweep are not a network's: they come from
``jax.random.split(key)[SWEEP_INPUTS]``, shared by every network.

The RNN's networks (:mod:`empirical.rnn`) are the exception: network ``i``'s
key is ``fold_in(key, i)`` as everywhere, then ``jax.random.split`` in five (a
sweep: ``W, U, b``, inputs, readout) or four (the Jacobian: ``W, U, b``,
input), as its stored results were drawn; an untied ``W`` of step ``t`` is
``fold_in(k_W, t)``.

Every ``fold_in`` of a network's key names its stream from this table
(``tests/test_house.py`` fails on a literal number anywhere else).
"""

from __future__ import annotations

__all__ = ["WEIGHTS", "BIASES", "READOUT", "BATCHES", "JACOBIAN_INPUT", "TANGENTS",
           "HUTCHINSON", "LANCZOS", "DROPOUT", "CONV_READOUT", "CONV_INPUT", "SWEEP_INPUTS", "SHARED"]

WEIGHTS = 0
BIASES = 1
READOUT = 2
BATCHES = 3
JACOBIAN_INPUT = 3
TANGENTS = 3
HUTCHINSON = 4
LANCZOS = 5
DROPOUT = 6
CONV_READOUT = 1
CONV_INPUT = 1
#: Index into ``jax.random.split(key)`` of a sweep's drawn inputs (not a network stream).
SWEEP_INPUTS = 1

#: The names that share a number, each group drawn by disjoint drivers (module docstring).
SHARED = (("BIASES", "CONV_READOUT", "CONV_INPUT"), ("BATCHES", "JACOBIAN_INPUT", "TANGENTS"))
