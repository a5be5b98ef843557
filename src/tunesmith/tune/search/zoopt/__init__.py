"""ZOOpt integration (``pip install 'tunesmith[zoopt]'``)."""
from tunesmith.tune.search.zoopt.zoopt_search import ZOOptSearch

__all__ = ["ZOOptSearch"]
