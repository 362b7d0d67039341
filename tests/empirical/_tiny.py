"""The smallest sweep, for tests that need a sweep to exist but not its size.

Test files that share it share its compiled program (in one process, or
through the on-disk compilation cache across the test workers).
"""

TINY = dict(width=8, depth=2, sigma_w2=1.0, n_inputs=2, in_features=4, progress=False)
