"""BOHB integration (``pip install 'tunesmith[bohb]'``)."""
from tunesmith.tune.search.bohb.bohb_search import TuneBOHB

__all__ = ["TuneBOHB"]
