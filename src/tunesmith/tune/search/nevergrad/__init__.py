"""Nevergrad integration (``pip install 'tunesmith[nevergrad]'``)."""
from tunesmith.tune.search.nevergrad.nevergrad_search import NevergradSearch

__all__ = ["NevergradSearch"]
