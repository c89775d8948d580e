"""Shared test configuration.

Hypothesis runs without per-example deadlines: the first call of a jitted
function compiles, which says nothing about the code under test.
"""

from hypothesis import settings

settings.register_profile("anasim", deadline=None, print_blob=True)
settings.load_profile("anasim")
