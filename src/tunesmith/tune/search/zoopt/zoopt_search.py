"""``ZOOptSearch``: ZOOpt's sequential RACOS as a Tune searcher."""
from __future__ import annotations

import math
from typing import Any, Sequence

from tunesmith.tune.search._library import LibrarySearcher, Param, _NUMPY_VIEWS, mark_converted, parse_space, private_numpy_random
from tunesmith.tune.search.searcher import Searcher

_ALGOS = ("sracos", "asracos")


def _dimension(p: Param) -> tuple:
    from zoopt import ValueType

    if p.kind == "categorical":
        return (ValueType.GRID, p.choices())
    if p.log:
        return (ValueType.CONTINUOUS, [math.log(p.low), math.log(p.high)], 1e-10)
    if p.kind == "int" and p.q is None:
        return (ValueType.DISCRETE, [int(p.low), int(p.high)], True)
    if p.q is not None:
        # The multiples of q, by index: RACOS keeps some coordinates of good points exactly, and
        # two continuous values that round to one multiple would repeat a configuration.
        return (ValueType.DISCRETE, [round(p.low / p.q), round(p.high / p.q)], True)
    return (ValueType.CONTINUOUS, [float(p.low), float(p.high)], 1e-10)


class ZOOptSearch(LibrarySearcher):
    """Searches with `ZOOpt <https://github.com/polixir/ZOOpt>`_'s (asynchronous) sequential RACOS.

    The Tune search space is converted to a ``zoopt.Dimension2`` (log domains
    searched in log space, ``choice`` as a grid dimension); ZOOpt's own
    ``dim_dict`` (``{name: (ValueType.CONTINUOUS, [low, high], precision)}``)
    is accepted too. ZOOpt draws from NumPy's global generator; with a seed,
    ZOOpt's modules draw from this searcher's own ``numpy.random.RandomState``
    while it calls them (see :func:`private_numpy_random`), so the same seed
    gives the same configurations whatever else uses the global generator,
    and the global generator is left alone.

    Args:
        algo: ``"asracos"`` (asynchronous) or ``"sracos"``.
        budget: How many trials ZOOpt plans for (sizes its initial sample);
            required.
        dim_dict: A ZOOpt ``dim_dict`` search space. None takes the Tuner's
            ``param_space``.
        metric: The result key to optimise.
        mode: ``"min"`` or ``"max"``.
        points_to_evaluate: Configurations to run first.
        parallel_num: How many trials ZOOpt lets run at once.
        **kwargs: Passed to ``zoopt.Parameter`` (for example ``seed``).

    Example:
        >>> from tunesmith import tune
        >>> from tunesmith.tune.search.zoopt import ZOOptSearch
        >>> algo = ZOOptSearch(budget=20, metric="loss", mode="min", seed=0)
        >>> algo.set_search_properties(None, None, {"x": tune.uniform(0, 1)})
        True
        >>> 0 <= algo.suggest("t1")["x"] <= 1
        True
    """

    _extra = "zoopt"
    _x_as_is = False  # set by _build: ZOOpt's values are the parameters' values (no log or quantized domain)
    _pip_name = "zoopt"
    _allow_object_choices = True
    _space_argument = "dim_dict"

    def __init__(
        self,
        algo: str = "asracos",
        budget: int | None = None,
        dim_dict: dict | None = None,
        metric: str | None = None,
        mode: str | None = None,
        points_to_evaluate: Sequence[dict] | None = None,
        parallel_num: int = 1,
        **kwargs: Any,
    ):
        self._require("zoopt")
        algo = algo.lower() if isinstance(algo, str) else algo  # "Asracos" in Ray's own example
        if algo not in _ALGOS:
            raise ValueError(f"ZOOptSearch: `algo` must be one of {list(_ALGOS)}, got {algo!r}.")
        if budget is None or not isinstance(budget, int) or budget < 1:
            raise ValueError(
                f"ZOOptSearch: `budget` must be a positive integer (how many trials the search plans for), got {budget!r}."
            )
        if not isinstance(parallel_num, int) or parallel_num < 1:
            raise ValueError(f"ZOOptSearch: `parallel_num` must be a positive integer, got {parallel_num!r}.")
        if "space" in kwargs:
            raise TypeError("ZOOptSearch takes its search space as `dim_dict` (a Tune search space or ZOOpt's "
                            "own), not `space`.")
        seed = kwargs.pop("seed", None)
        self._algo = algo
        self._budget = budget
        self._parallel_num = parallel_num
        self._kwargs = kwargs
        self._optimizer = None
        self._rng = None
        super().__init__(space=dim_dict, metric=metric, mode=mode, points_to_evaluate=points_to_evaluate, seed=seed)

    # -- spaces ---------------------------------------------------------------------
    def _is_native_space(self, space: Any) -> bool:
        from zoopt import ValueType

        return isinstance(space, dict) and bool(space) and all(
            isinstance(v, tuple) and len(v) >= 2 and isinstance(v[0], type(ValueType.CONTINUOUS)) for v in space.values()
        )

    def _native_space_description(self) -> str:
        return "a ZOOpt dim_dict {name: (ValueType..., [low, high], ...)}"

    @staticmethod
    def convert_search_space(spec: dict) -> dict:
        """Converts a Tune search space into a ZOOpt ``dim_dict`` (flat ``/`` names).

        Example:
            >>> from tunesmith import tune
            >>> dims = ZOOptSearch.convert_search_space({"n": tune.randint(1, 5)})
            >>> dims["n"][1]
            [1, 4]
        """
        params = parse_space(spec, "ZOOptSearch")
        return mark_converted({p.name: _dimension(p) for p in params}, params)

    # -- library ----------------------------------------------------------------------
    def _dims(self) -> dict:
        if self._params is not None:
            return {p.name: _dimension(p) for p in self._params}
        return dict(self._native_space)

    def _build(self) -> None:
        import numpy as np
        import zoopt
        from zoopt.algos.opt_algorithms.racos.sracos import SRacosTune

        private_numpy_random("zoopt")  # ZOOpt's modules are all imported now
        self._rng = None if self._seed is None else np.random.RandomState(self._seed)
        dims = self._dims()
        self._dim_keys = list(dims)
        # Without log or quantized domains ZOOpt's values are the parameters' values.
        self._x_as_is = self._params is not None and all(not p.log and p.q is None for p in self._params)
        dimension = zoopt.Dimension2([dims[k] for k in self._dim_keys])
        from zoopt.utils.zoo_global import gl

        # ZOOpt keeps the dimensions' precisions in a process-wide global that Dimension2 sets:
        # they are kept here too, to be put back for this searcher (in a restoring process, or
        # next to another ZOOpt searcher).
        self._float_precisions = list(gl.float_precisions)
        parallel_num = max(self._parallel_num, self._max_concurrent)
        parameter = zoopt.Parameter(budget=self._budget, **self._kwargs)
        self._optimizer = self._call(lambda: SRacosTune(dimension=dimension, parameter=parameter, parallel_num=parallel_num))

    def _use_precisions(self) -> None:
        """Puts this searcher's precisions into ZOOpt's process-wide global."""
        precisions = self.__dict__.get("_float_precisions")
        if precisions is None:
            if getattr(self, "_optimizer", None) is not None:
                self._restore_precisions()
            return
        from zoopt.utils.zoo_global import gl

        if gl.float_precisions != precisions:
            gl.float_precisions = list(precisions)

    def _call(self, func: Any, *args: Any) -> Any:
        """Calls into ZOOpt, which draws from the searcher's own generator when it has a seed."""
        self._use_precisions()
        rng = self._rng
        if rng is None:
            return func(*args)
        # A restored searcher's process may not have switched ZOOpt's modules over yet.
        view = _NUMPY_VIEWS.get("zoopt") or private_numpy_random("zoopt")
        view.random = rng
        try:
            return func(*args)
        finally:
            view.random = view.global_random

    def _restore_precisions(self) -> None:
        """Sets ZOOpt's precisions global for a searcher saved without them (builds its dimensions again)."""
        import zoopt
        from zoopt.utils.zoo_global import gl

        dims = self._dims()
        zoopt.Dimension2([dims[k] for k in self._dim_keys])
        self._float_precisions = list(gl.float_precisions)

    def _from_x(self, x: list) -> dict:
        if self._x_as_is or self._params is None:
            return dict(zip(self._dim_keys, x))
        out = {}
        for p, v in zip(self._params, x):  # the dimensions are in the order of the parameters
            if p.log:
                v = math.exp(v)
            elif p.q is not None:
                v = v * p.q
            out[p.name] = v
        return out

    def _to_x(self, params: dict) -> list:
        if self._params is None:
            return [params[k] for k in self._dim_keys]
        out = []
        for p in self._params:
            v = p.encode(p.decode(params[p.name]))
            if p.log:
                v = math.log(v)
            elif p.q is not None:
                v = int(round(v / p.q))
            out.append(v)
        return out

    def _ask(self, trial_id: str):
        opt = self._optimizer
        solution = self._call(opt.suggest)
        if solution is None and opt.semaphore == 0 and opt.complete_num >= opt._parameter.get_train_size():
            # The initial sample completed before ZOOpt closed it: open the next phase.
            opt.semaphore = 1
            solution = self._call(opt.suggest)
        if solution is None:
            return None
        if isinstance(solution, str):  # "FINISHED"
            # RACOS's model region holds no unseen point; rather than end before
            # `num_samples`, explore: a distinct point from the whole space.
            solution, distinct = self._call(
                opt.distinct_sample, opt.get_objective().get_dim(), opt._positive_data + opt._negative_data
            )
            if not distinct:
                return Searcher.FINISHED
            opt.live_num += 1
            opt.init_num += 1
        return solution, self._from_x(solution.get_x())

    def _complete(self, solution: Any, loss: float) -> None:
        # Not through _call: completing draws no random numbers (SRacosTune replaces the worst
        # solution, strategy "WR"), and this runs once a trial. It compares solutions by precision.
        self._use_precisions()
        self._optimizer.complete(solution, loss)

    def _tell(self, trial_id, handle, params, value, error, intermediate) -> None:
        if value is None:
            # ZOOpt needs every suggestion completed; a failed one counts as the worst value seen.
            worst = self._worst()
            loss = math.inf if worst is None else worst
        else:
            loss = -value if self._mode == "max" else value
        self._complete(handle, loss)

    def _worst(self) -> float | None:
        opt = self._optimizer
        values = [s.get_value() for s in list(opt._data) + list(opt._positive_data) + list(opt._negative_data)
                  if s is not None and s.get_value() is not None and math.isfinite(s.get_value())]
        return max(values) if values else None

    def _observe(self, params, value, error, pruned, intermediate) -> None:
        from zoopt import Solution

        if error or value is None:
            return
        opt = self._optimizer
        solution = Solution(x=self._to_x(params))
        # Account for the point as if ZOOpt had suggested it, then complete it.
        if opt.init_num < opt._parameter.get_train_size():
            opt.init_num += 1
            opt._init_data.append(solution)
        opt.live_num += 1
        self._complete(solution, self._sign() * value)
