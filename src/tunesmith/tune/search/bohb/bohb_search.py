"""``TuneBOHB``: BOHB's model-based configuration sampler (HpBandSter) as a Tune searcher."""
from __future__ import annotations

import logging
from typing import Any, Sequence

from tunesmith.tune.search._library import GlobalRandomState, LibrarySearcher, Param, mark_converted, parse_space

logger = logging.getLogger(__name__)


class _JobWrapper:
    """The shape of a finished HpBandSter job that ``BOHB.new_result`` reads."""

    def __init__(self, loss: float | None, budget: float, config: dict):
        self.result = None if loss is None else {"loss": loss}
        self.kwargs = {"budget": budget, "config": dict(config)}
        self.exception = None


class TuneBOHB(LibrarySearcher):
    """BOHB: Bayesian optimisation (kernel density estimates per budget) with HyperBand.

    Pair it with :class:`~tunesmith.tune.schedulers.HyperBandForBOHB`, which
    marks the result that completes each rung with its budget
    (``result["hyperband_info"]["budget"]``); TuneBOHB fits its model on the
    largest budget that has enough results. Without that scheduler, each
    trial's final result counts at the budget of its ``training_iteration``.
    The Tune space is converted to a ``ConfigSpace.ConfigurationSpace``; a
    ``ConfigurationSpace`` is accepted as ``space`` too.

    Args:
        space: A Tune search space or a ``ConfigSpace.ConfigurationSpace``.
            None takes the Tuner's ``param_space``.
        bohb_config: Keyword arguments for HpBandSter's BOHB config generator
            (``min_points_in_model``, ``top_n_percent``, ``num_samples``,
            ``random_fraction``, ``bandwidth_factor``, ``min_bandwidth``).
        metric: The result key to optimise.
        mode: ``"min"`` or ``"max"``.
        points_to_evaluate: Configurations to run first.
        seed: Seeds the configuration space and the sampler.
        max_concurrent: Most trials running at once (paused ones do not count; 0: no limit).

    Example:
        >>> from tunesmith import tune
        >>> from tunesmith.tune.schedulers import HyperBandForBOHB
        >>> from tunesmith.tune.search.bohb import TuneBOHB
        >>> def train_fn(config):
        ...     for i in range(9):
        ...         tune.report({"loss": (config["x"] - 1) ** 2 / (i + 1)},
        ...                     checkpoint=tune.Checkpoint.from_directory(tune.get_context().get_trial_dir()))
        >>> tuner = tune.Tuner(train_fn, param_space={"x": tune.uniform(-3, 3)},
        ...     tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=4, search_alg=TuneBOHB(seed=0),
        ...         scheduler=HyperBandForBOHB(max_t=9, reduction_factor=3)),
        ...     run_config=tune.RunConfig(verbose=0))
        >>> len(tuner.fit())  # doctest: +SKIP
        4
    """

    _extra = "bohb"
    _uses_intermediate = True
    _pip_name = "hpbandster ConfigSpace"

    def __init__(
        self,
        space: Any = None,
        bohb_config: dict | None = None,
        metric: str | None = None,
        mode: str | None = None,
        points_to_evaluate: Sequence[dict] | None = None,
        seed: int | None = None,
        max_concurrent: int = 0,
    ):
        self._require("ConfigSpace")
        self._require("hpbandster.optimizers.config_generators.bohb")
        self._bohb_config = dict(bohb_config or {})
        self._bohber = None
        self._rng = None
        self.running: set[str] = set()
        self.paused: set[str] = set()
        self._budget_seen: set[str] = set()
        self._warned_no_budget = False
        self._ever_paused = False
        super().__init__(
            space=space, metric=metric, mode=mode, points_to_evaluate=points_to_evaluate, seed=seed,
            max_concurrent=max_concurrent,
        )

    # -- spaces ---------------------------------------------------------------------
    def _is_native_space(self, space: Any) -> bool:
        import ConfigSpace

        return isinstance(space, ConfigSpace.ConfigurationSpace)

    def _native_space_description(self) -> str:
        return "a ConfigSpace.ConfigurationSpace"

    @staticmethod
    def _hyperparameter(p: Param) -> Any:
        import ConfigSpace as CS

        if p.kind == "categorical":
            return CS.CategoricalHyperparameter(p.name, p.choices())
        if p.kind == "int":
            return CS.UniformIntegerHyperparameter(p.name, int(p.low), int(p.high), log=p.log)
        # ConfigSpace has no quantization: the value is quantized when it comes back.
        return CS.UniformFloatHyperparameter(p.name, float(p.low), float(p.high), log=p.log)

    @staticmethod
    def convert_search_space(spec: dict) -> Any:
        """Converts a Tune search space into a ``ConfigSpace.ConfigurationSpace`` (flat ``/`` names).

        Example:
            >>> from tunesmith import tune
            >>> cs = TuneBOHB.convert_search_space({"n": tune.randint(1, 5)})
            >>> list(cs)
            ['n']
        """
        import ConfigSpace as CS

        cs = CS.ConfigurationSpace()
        params = parse_space(spec, "TuneBOHB")
        cs.add([TuneBOHB._hyperparameter(p) for p in params])
        return mark_converted(cs, params)

    # -- library ----------------------------------------------------------------------
    @property
    def _deterministic(self) -> bool:
        # HyperBand pauses trials until their rung fills, so once a trial was paused results
        # cannot wait for suggestion order any more.
        return super()._deterministic and not self._ever_paused

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self._max_concurrent = int(max_concurrent)
        return True

    def _build(self) -> None:
        import ConfigSpace as CS
        from hpbandster.optimizers.config_generators.bohb import BOHB

        if self._params is not None:
            cs = CS.ConfigurationSpace()
            cs.add([self._hyperparameter(p) for p in self._params])
        else:
            cs = self._native_space
        if self._seed is not None:
            cs.seed(self._seed)
        self._rng = GlobalRandomState(self._seed)
        with self._rng.active():
            self._bohber = BOHB(cs, **self._bohb_config)

    def suggest(self, trial_id: str):
        limit = self._max_concurrent
        if limit and trial_id not in self._live and len(self.running) >= limit:
            return None
        self._max_concurrent = 0  # the base counts paused trials too; BOHB counts running ones only
        try:
            suggestion = super().suggest(trial_id)
        finally:
            self._max_concurrent = limit
        if isinstance(suggestion, dict):
            self.running.add(trial_id)
        return suggestion

    def _ask(self, trial_id: str):
        with self._rng.active():
            config, _info = self._bohber.get_config(None)
        return None, {k: (v.item() if hasattr(v, "item") else v) for k, v in dict(config).items()}

    def _ask_point(self, trial_id: str, point: dict):
        return None

    def _new_result(self, params: dict, loss: float | None, budget: float) -> None:
        with self._rng.active():
            self._bohber.new_result(_JobWrapper(loss, float(budget), self._library_config(params)))

    def _library_config(self, params: dict) -> dict:
        if self._params is None:
            return dict(params)
        # The values the trial ran with, as the configuration space holds them.
        return {p.name: p.encode(p.decode(params[p.name])) for p in self._params}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        super().on_trial_result(trial_id, result)
        if trial_id not in self.paused:
            self.running.add(trial_id)
        live = self._live.get(trial_id)
        if live is None:
            return
        info = result.get("hyperband_info")
        if info is None:
            if not self._warned_no_budget:
                self._warned_no_budget = True
                logger.warning(
                    "TuneBOHB: no budget information in the results; use the HyperBandForBOHB scheduler. "
                    "Until then each trial's final result counts at its training_iteration."
                )
            return
        value = result.get(self._metric)
        if "budget" in info and isinstance(value, (int, float)):
            self._budget_seen.add(trial_id)
            self._new_result(live.params, self._sign() * float(value), info["budget"])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.running.discard(trial_id)
        self.paused.discard(trial_id)
        super().on_trial_complete(trial_id, result, error)
        self._budget_seen.discard(trial_id)

    def _tell(self, trial_id, handle, params, value, error, intermediate) -> None:
        pass  # handles are None: results arrive through _observe

    def _tell_live(self, trial_id, live, result, error) -> None:
        if trial_id in self._budget_seen or error:
            return  # its rungs were reported; a failed trial is left out of the model
        value = self._value_of(result)
        if value is None:
            return
        from tunesmith.tune.result import TRAINING_ITERATION

        self._new_result(live.params, self._sign() * value, float((result or {}).get(TRAINING_ITERATION, 1)))

    def _observe(self, params, value, error, pruned, intermediate) -> None:
        if error or value is None:
            return
        budget = float(intermediate[-1][0]) if intermediate else 1.0
        self._new_result(params, self._sign() * value, budget)

    # -- HyperBandForBOHB hooks ------------------------------------------------------------
    def on_pause(self, trial_id: str) -> None:
        """Called by HyperBandForBOHB when a trial waits at a rung."""
        if not self._ever_paused:
            self._ever_paused = True
            self._flush_all()
        self.paused.add(trial_id)
        self.running.discard(trial_id)

    def on_unpause(self, trial_id: str) -> None:
        """Called by HyperBandForBOHB when a paused trial goes on."""
        self.paused.discard(trial_id)
        self.running.add(trial_id)
