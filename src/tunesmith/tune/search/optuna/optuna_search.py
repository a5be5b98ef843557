"""``OptunaSearch``: Optuna's samplers (TPE by default) as a Tune searcher."""
from __future__ import annotations

import logging
import math
from typing import Any, Callable, Sequence

from tunesmith.tune.search._library import LibrarySearcher, Param, unflatten_dict

logger = logging.getLogger(__name__)


class OptunaSearch(LibrarySearcher):
    """Searches with `Optuna <https://optuna.org>`_ through its ask-and-tell interface.

    The Tune search space is converted to Optuna distributions
    (``FloatDistribution``, ``IntDistribution``, ``CategoricalDistribution``);
    an Optuna space is accepted too: a dict of distributions, or a
    define-by-run function ``space(trial)`` that calls ``trial.suggest_*``
    and may return a dict of constants. Intermediate results are reported to
    the Optuna trial (``trial.report``); a trial that fails is told as
    ``FAIL`` and one that ends without the metric as ``PRUNED``.

    Args:
        space: A Tune search space, a dict of Optuna distributions, or a
            define-by-run function. None takes the Tuner's ``param_space``.
        metric: The result key to optimise, or a list of keys for
            multi-objective search.
        mode: ``"min"`` or ``"max"``, or a list of them for multi-objective search.
        points_to_evaluate: Configurations to run first (enqueued in the study).
        sampler: An ``optuna.samplers.BaseSampler``; defaults to
            ``TPESampler(seed=seed)``.
        seed: Seeds the default sampler.
        evaluated_rewards: Metric values of ``points_to_evaluate`` that were
            already evaluated; they are added to the study, not run.

    Example:
        >>> from tunesmith import tune
        >>> from tunesmith.tune.search.optuna import OptunaSearch
        >>> def objective(config):
        ...     return {"loss": (config["x"] - 2) ** 2}
        >>> tuner = tune.Tuner(
        ...     objective,
        ...     param_space={"x": tune.uniform(-5, 5)},
        ...     tune_config=tune.TuneConfig(search_alg=OptunaSearch(seed=0), metric="loss", mode="min", num_samples=4),
        ... )
        >>> best = tuner.fit().get_best_result()  # doctest: +SKIP

        The searcher on its own:

        >>> algo = OptunaSearch({"x": tune.uniform(-5, 5)}, metric="loss", mode="min", seed=0)
        >>> config = algo.suggest("t1")
        >>> algo.on_trial_complete("t1", objective(config))
        >>> -5 <= algo.suggest("t2")["x"] <= 5
        True
    """

    _extra = "optuna"
    _uses_intermediate = True
    _pip_name = "optuna"
    _multi_objective = True

    def __init__(
        self,
        space: dict | Callable | None = None,
        metric: str | list[str] | None = None,
        mode: str | list[str] | None = None,
        points_to_evaluate: Sequence[dict] | None = None,
        sampler: Any = None,
        seed: int | None = None,
        evaluated_rewards: Sequence[Any] | None = None,
    ):
        ot = self._require("optuna")
        if sampler is not None and not isinstance(sampler, ot.samplers.BaseSampler):
            raise TypeError(
                f"OptunaSearch: `sampler` must be an optuna.samplers.BaseSampler, got {type(sampler).__name__}."
            )
        if sampler is not None and seed is not None:
            logger.warning("OptunaSearch: `seed` is ignored because a `sampler` was given; seed the sampler instead.")
        self._sampler = sampler
        self._study = None
        self._dists: dict | None = None
        super().__init__(
            space=space,
            metric=metric,
            mode=mode,
            points_to_evaluate=points_to_evaluate,
            evaluated_rewards=evaluated_rewards,
            seed=seed,
        )

    # -- spaces ---------------------------------------------------------------------
    def _is_native_space(self, space: Any) -> bool:
        import optuna as ot

        if callable(space) and not isinstance(space, dict):
            return True
        return isinstance(space, dict) and bool(space) and all(
            isinstance(d, ot.distributions.BaseDistribution) for d in space.values()
        )

    def _native_space_description(self) -> str:
        return "a dict of optuna.distributions or a define-by-run function `space(trial)`"

    @staticmethod
    def _distribution(param: Param) -> Any:
        import optuna as ot

        if param.kind == "categorical":
            return ot.distributions.CategoricalDistribution(param.choices())
        if param.kind == "int":
            step = int(param.q) if param.q is not None and not param.log else 1
            return ot.distributions.IntDistribution(int(param.low), int(param.high), log=param.log, step=step)
        # Optuna has no step in log space: the value is quantized when it comes back.
        step = param.q if param.q is not None and not param.log else None
        return ot.distributions.FloatDistribution(param.low, param.high, log=param.log, step=step)

    @staticmethod
    def convert_search_space(spec: dict) -> dict:
        """Converts a Tune search space into a dict of Optuna distributions (flat ``/`` names).

        Example:
            >>> from tunesmith import tune
            >>> space = OptunaSearch.convert_search_space({"a": {"lr": tune.loguniform(1e-4, 1e-1)}})
            >>> type(space["a/lr"]).__name__
            'FloatDistribution'
        """
        from tunesmith.tune.search._library import mark_converted, parse_space

        params = parse_space(spec, "OptunaSearch")
        return mark_converted({p.name: OptunaSearch._distribution(p) for p in params}, params)

    # -- library ----------------------------------------------------------------------
    def _directions(self) -> list[str] | str:
        def one(mode: str) -> str:
            return "maximize" if mode == "max" else "minimize"

        if isinstance(self._mode, list):
            return [one(m) for m in self._mode]
        return one(self._mode)

    def _build(self) -> None:
        import optuna as ot

        if isinstance(self._metric, list) != isinstance(self._mode, list):
            raise ValueError(
                f"OptunaSearch: for multi-objective search give `metric` and `mode` as lists of the same length, "
                f"got metric={self._metric!r}, mode={self._mode!r}."
            )
        if isinstance(self._metric, list) and len(self._metric) != len(self._mode):
            raise ValueError(
                f"OptunaSearch: `metric` and `mode` must have the same length, got {self._metric!r} and {self._mode!r}."
            )
        sampler = self._sampler or ot.samplers.TPESampler(seed=self._seed)
        directions = self._directions()
        if isinstance(directions, list):
            self._study = ot.create_study(sampler=sampler, directions=directions)
        else:
            self._study = ot.create_study(sampler=sampler, direction=directions)
        if self._params is not None:
            self._dists = {p.name: self._distribution(p) for p in self._params}
        elif isinstance(self._native_space, dict):
            self._dists = dict(self._native_space)
        else:
            self._dists = None  # define-by-run

    def _run_define_by_run(self, trial: Any) -> dict:
        constants = self._native_space(trial)
        if constants is not None and not isinstance(constants, dict):
            raise TypeError(
                "OptunaSearch: the define-by-run function must return None or a dict of constants, "
                f"got {type(constants).__name__}."
            )
        return {**trial.params, **(constants or {})}

    def _ask(self, trial_id: str):
        if self._dists is None:
            trial = self._study.ask()
            return trial, self._run_define_by_run(trial)
        trial = self._study.ask(fixed_distributions=self._dists)
        return trial, dict(trial.params)

    def _ask_point(self, trial_id: str, point: dict):
        self._study.enqueue_trial(point, skip_if_exists=False)
        trial, params = self._ask(trial_id)
        if self._dists is None:
            point.clear()
            point.update(params)
        else:  # a partial point: Optuna sampled the rest, and the trial runs with it
            for key, value in params.items():
                point.setdefault(key, value)
        return trial

    def _tell(self, trial_id, handle, params, value, error, intermediate) -> None:
        from optuna.trial import TrialState

        if not isinstance(self._metric, list):
            seen = set()
            for step, v in intermediate:
                if step not in seen:
                    seen.add(step)
                    handle.report(v, step)
        if value is not None:
            state, values = TrialState.COMPLETE, value
        else:
            state, values = (TrialState.FAIL if error else TrialState.PRUNED), None
        try:
            self._study.tell(handle, values, state=state)
        except Exception as exc:  # noqa: BLE001 - Optuna rejects some values; the run goes on
            logger.warning("OptunaSearch: Optuna did not accept the result of trial %s: %s", trial_id, exc)

    def _observe(self, params, value, error, pruned, intermediate) -> None:
        import optuna as ot
        from optuna.trial import TrialState

        if self._dists is None:
            raise TypeError(
                "OptunaSearch cannot add evaluated points to a define-by-run search space: its distributions are "
                "only known when the function runs. Pass a dict of distributions or a Tune search space instead."
            )
        if error:
            state = TrialState.FAIL
        elif pruned:
            state = TrialState.PRUNED
        else:
            state = TrialState.COMPLETE
        kwargs: dict = {"state": state, "params": params, "distributions": self._dists}
        if state == TrialState.COMPLETE:
            kwargs["values" if isinstance(value, list) else "value"] = value
        if intermediate and not isinstance(self._metric, list):
            kwargs["intermediate_values"] = {int(s): float(v) for s, v in intermediate if math.isfinite(v)}
        self._study.add_trial(ot.trial.create_trial(**kwargs))

    def _suggestion_of(self, live) -> dict:
        if self._params is None:
            return unflatten_dict(dict(live.params))
        return super()._suggestion_of(live)
