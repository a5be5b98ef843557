"""``AxSearch``: Ax's Bayesian optimisation (BoTorch) as a Tune searcher."""
from __future__ import annotations

import logging
import math
from typing import Any, Sequence

from tunesmith.tune.search._library import LibrarySearcher, Param, mark_converted, parse_space

logger = logging.getLogger(__name__)


def _ax_parameter(p: Param) -> dict:
    if p.kind == "categorical":
        values = p.choices()
        if len(values) == 1:
            return {"name": p.name, "type": "fixed", "value": values[0]}
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        parameter = {"name": p.name, "type": "choice", "values": values, "is_ordered": False, "sort_values": numeric}
        if numeric and len({type(v) for v in values}) > 1:
            # Ints and floats together (tune.choice([0.001, 0.01, 1])): Ax wants one type; the value
            # it proposes maps back to the user's own (1.0 -> 1).
            parameter.update(values=[float(v) for v in values], value_type="float")
        # Ax wants numeric choices sorted; string ones keep the user's order.
        return parameter
    value_type = "int" if p.kind == "int" else "float"
    low, high = (int(p.low), int(p.high)) if value_type == "int" else (float(p.low), float(p.high))
    if low == high:
        return {"name": p.name, "type": "fixed", "value": low}
    # Ax ranges have no step: quantized values are rounded when they come back.
    return {"name": p.name, "type": "range", "bounds": [low, high], "value_type": value_type, "log_scale": p.log}


class AxSearch(LibrarySearcher):
    """Searches with `Ax <https://ax.dev>`_ (Sobol initialisation, then BoTorch Bayesian optimisation).

    The Tune space is converted to Ax parameter dicts; a list of Ax parameter
    dicts (``{"name": ..., "type": "range", "bounds": [...]}``) is accepted
    as ``space`` too, or an ``AxClient`` whose experiment is already created.
    When Ax wants to wait for results before it generates more (its
    parallelism limits), the searcher suggests nothing until a trial ends.

    Args:
        space: A Tune search space or a list of Ax parameter dicts. None takes
            the Tuner's ``param_space``.
        metric: The result key to optimise.
        mode: ``"min"`` or ``"max"``.
        points_to_evaluate: Configurations to run first (attached to the experiment).
        parameter_constraints: Ax parameter constraints (``["x1 + x2 <= 2.0"]``).
        outcome_constraints: Ax outcome constraints (``["qps >= 100"]``).
        ax_client: An ``AxClient`` to use.
        seed: Seeds the ``AxClient`` this searcher creates.
        **ax_kwargs: Passed to the ``AxClient`` this searcher creates (as on Ray).

    Example:
        >>> from tunesmith import tune
        >>> from tunesmith.tune.search.ax import AxSearch
        >>> algo = AxSearch(metric="loss", mode="min", seed=0)  # doctest: +SKIP
        >>> algo.set_search_properties(None, None, {"x": tune.uniform(0, 1)})  # doctest: +SKIP
        True
        >>> 0 <= algo.suggest("t1")["x"] <= 1  # doctest: +SKIP
        True
    """

    _extra = "ax"
    _pip_name = "ax-platform"

    def __init__(
        self,
        space: dict | list | None = None,
        metric: str | None = None,
        mode: str | None = None,
        points_to_evaluate: Sequence[dict] | None = None,
        parameter_constraints: list | None = None,
        outcome_constraints: list | None = None,
        ax_client: Any = None,
        seed: int | None = None,
        **ax_kwargs: Any,
    ):
        self._require("ax.service.ax_client")
        self._parameter_constraints = parameter_constraints
        self._outcome_constraints = outcome_constraints
        self._ax_kwargs = ax_kwargs
        self._ax = ax_client
        self._ax_snapshot: dict | None = None
        self._told_result: dict | None = None
        if ax_client is not None and getattr(ax_client, "_experiment", None) is not None:
            if space is None:
                space = [{"name": name} for name in ax_client.experiment.search_space.parameters]
            if metric is None:
                # As Ray: the experiment the user created says what is optimised, and which way.
                objective = ax_client.experiment.optimization_config.objective
                metric = objective.metric_names[0]
                if mode is None:
                    mode = "min" if getattr(objective, "minimize", True) else "max"
        super().__init__(space=space, metric=metric, mode=mode, points_to_evaluate=points_to_evaluate, seed=seed)

    # -- spaces ---------------------------------------------------------------------
    def _is_native_space(self, space: Any) -> bool:
        return isinstance(space, list) and bool(space) and all(isinstance(p, dict) and "name" in p for p in space)

    def _native_space_description(self) -> str:
        return "a list of Ax parameter dicts"

    @staticmethod
    def convert_search_space(spec: dict) -> list[dict]:
        """Converts a Tune search space into a list of Ax parameter dicts (flat ``/`` names).

        Example:
            >>> from tunesmith import tune
            >>> AxSearch.convert_search_space({"lr": tune.loguniform(1e-4, 1e-1)})[0]["log_scale"]
            True
        """
        params = parse_space(spec, "AxSearch")
        return mark_converted([_ax_parameter(p) for p in params], params)

    # -- library ----------------------------------------------------------------------
    def _client(self) -> Any:
        if self._ax is None and self._ax_snapshot is not None:
            from ax.service.ax_client import AxClient

            self._ax = AxClient.from_json_snapshot(self._ax_snapshot, verbose_logging=False)
            self._ax_snapshot = None
        return self._ax

    def _build(self) -> None:
        from ax.service.ax_client import AxClient
        from ax.service.utils.instantiation import ObjectiveProperties

        if self._ax is None:
            kwargs = {"random_seed": self._seed, "verbose_logging": False, **self._ax_kwargs}
            self._ax = AxClient(**kwargs)
        if getattr(self._ax, "_experiment", None) is not None:
            objectives = self._ax.experiment.optimization_config.objective.metric_names
            if self._metric not in objectives:
                raise ValueError(
                    f"AxSearch: the AxClient's experiment optimises {objectives}, not metric {self._metric!r}."
                )
            return
        parameters = [_ax_parameter(p) for p in self._params] if self._params is not None else self._native_space
        self._ax.create_experiment(
            parameters=parameters,
            objectives={self._metric: ObjectiveProperties(minimize=self._mode != "max")},
            parameter_constraints=self._parameter_constraints,
            outcome_constraints=self._outcome_constraints,
        )

    def _ask(self, trial_id: str):
        from ax.exceptions.core import DataRequiredError
        from ax.exceptions.generation_strategy import MaxParallelismReachedException

        try:
            params, index = self._client().get_next_trial()
        except (MaxParallelismReachedException, DataRequiredError):
            return None  # Ax waits for results first
        return index, dict(params)

    def _ask_point(self, trial_id: str, point: dict):
        _, index = self._client().attach_trial(parameters=dict(point))
        return index

    def _tell_live(self, trial_id, live, result, error) -> None:
        self._told_result = result  # the constraints' metrics go to Ax with the objective
        try:
            super()._tell_live(trial_id, live, result, error)
        finally:
            self._told_result = None

    def _raw_data(self, value: float) -> dict | None:
        """The objective and every outcome constraint's metric; None when a constraint's is missing or not finite."""
        data = {self._metric: (float(value), None)}
        config = self._client().experiment.optimization_config
        for constraint in getattr(config, "outcome_constraints", None) or []:
            names = getattr(constraint, "metric_names", None) or [constraint.metric.name]
            for name in names:
                metric = (self._told_result or {}).get(name)
                if not isinstance(metric, (int, float)) or isinstance(metric, bool) or not math.isfinite(metric):
                    return None
                data[name] = (float(metric), None)
        return data

    def _complete(self, client, index: int, value: Any) -> None:
        data = None if value is None else self._raw_data(value)
        if data is None:
            client.log_trial_failure(trial_index=index)
        else:
            client.complete_trial(trial_index=index, raw_data=data)

    def _tell(self, trial_id, handle, params, value, error, intermediate) -> None:
        self._complete(self._client(), handle, value)

    def _observe(self, params, value, error, pruned, intermediate) -> None:
        client = self._client()
        _, index = client.attach_trial(parameters=dict(params))
        self._complete(client, index, None if error else value)

    # -- state: the AxClient is saved as its JSON snapshot ---------------------------------
    def get_state(self) -> dict:
        state = dict(self.__dict__)
        if self._ax is not None and getattr(self._ax, "_experiment", None) is not None:
            state["_ax_snapshot"] = self._ax.to_json_snapshot()
            state["_ax"] = None
        return state

    def set_state(self, state: dict) -> None:
        self.__dict__.update(state)
        self._client()
