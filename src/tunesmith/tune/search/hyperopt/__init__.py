"""HyperOpt integration (``pip install 'tunesmith[hyperopt]'``)."""
from tunesmith.tune.search.hyperopt.hyperopt_search import HyperOptSearch

__all__ = ["HyperOptSearch"]
