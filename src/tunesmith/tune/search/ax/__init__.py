"""Ax integration (``pip install 'tunesmith[ax]'``)."""
from tunesmith.tune.search.ax.ax_search import AxSearch

__all__ = ["AxSearch"]
