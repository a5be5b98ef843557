"""HEBO integration (``pip install 'tunesmith[hebo]'``)."""
from tunesmith.tune.search.hebo.hebo_search import HEBOSearch

__all__ = ["HEBOSearch"]
