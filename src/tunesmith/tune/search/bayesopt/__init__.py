"""Bayesian optimisation integration (``pip install 'tunesmith[bayesopt]'``)."""
from tunesmith.tune.search.bayesopt.bayesopt_search import BayesOptSearch

__all__ = ["BayesOptSearch"]
