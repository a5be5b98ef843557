"""The ``Searcher`` base class: an algorithm that suggests one configuration at a time."""
from __future__ import annotations

import glob
import logging
import os
import pickle
from typing import Any

import cloudpickle

logger = logging.getLogger(__name__)

UNRESOLVED_SEARCH_SPACE = (
    "You passed a `{par}` parameter to {cls} that contains unresolved search space definitions. "
    "{cls} takes fully configured search spaces only; to have Tune convert the space for you, "
    "pass it as `param_space` to `tune.Tuner()` instead."
)
UNDEFINED_SEARCH_SPACE = (
    "Trying to sample a configuration from {cls}, but no search space has been defined. Either pass "
    "the `{space}` argument when instantiating the search algorithm, or pass a `param_space` to `tune.Tuner()`."
)
UNDEFINED_METRIC_MODE = (
    "Trying to sample a configuration from {cls}, but the `metric` ({metric}) or `mode` ({mode}) "
    "parameters have not been set. Either pass these arguments when instantiating the search "
    "algorithm, or pass them to `tune.TuneConfig()`."
)


def _validate_mode(mode: str | list[str] | None) -> None:
    # A list is a multi-objective searcher's, one mode per metric (as Ray's Searcher allows).
    modes = mode if isinstance(mode, (list, tuple)) else [mode]
    if mode is not None and any(m not in ("min", "max") for m in modes):
        raise ValueError(f"`mode` must be 'min' or 'max' (or a list of them, one per metric), got {mode!r}.")


def _atomic_dump(obj: Any, path: str) -> None:
    """Pickles ``obj`` to ``path`` atomically (see ``storage.write_atomic``)."""
    from tunesmith._internal.storage import write_atomic

    write_atomic(path, lambda f: cloudpickle.dump(obj, f))


def _load(path: str) -> Any:
    with open(path, "rb") as f:
        return pickle.load(f)


_NOT_A_PICKLE = object()


def _load_if_pickle(path: str) -> Any:
    """The pickled object in ``path``, or ``_NOT_A_PICKLE`` for a file in a searcher's own format."""
    try:
        return _load(path)
    except Exception:
        return _NOT_A_PICKLE


def _trials_of(source: Any) -> list:
    """The Trials of a ResultGrid, ExperimentAnalysis, experiment path, Trial or list of Trials."""
    if isinstance(source, (str, os.PathLike)):
        from tunesmith.tune.analysis.experiment_analysis import ExperimentAnalysis

        source = ExperimentAnalysis(os.fspath(source))
    analysis = getattr(source, "_experiment_analysis", None)
    if analysis is not None:  # a ResultGrid
        source = analysis
    if hasattr(source, "trials") and not isinstance(source, (list, tuple)):
        return list(source.trials)
    if isinstance(source, (list, tuple)):
        return list(source)
    if hasattr(source, "last_result") and hasattr(source, "config"):
        return [source]
    raise TypeError(
        "Expected a ResultGrid, an ExperimentAnalysis, an experiment path, a Trial or a list of Trials, "
        f"got {type(source).__name__}."
    )


def _newest(dirpath: str, pattern: str) -> str | None:
    """The newest file matching ``pattern`` in ``dirpath``; in an experiment directory, the one saved
    with its experiment state (its state slot, ``...-a.pkl`` or ``...-b.pkl``)."""
    from tunesmith._internal.storage import committed_state_slot

    paths = glob.glob(os.path.join(glob.escape(dirpath), pattern))
    slot = committed_state_slot(dirpath)
    if slot is not None:
        paths = [p for p in paths if p.endswith(f"-{slot}.pkl")]
    return max(paths) if paths else None


class Searcher:
    """Base class of search algorithms that suggest one configuration per trial.

    Subclasses implement :meth:`suggest` and :meth:`on_trial_complete` (and,
    to learn from intermediate results, :meth:`on_trial_result`). Tune wraps
    a searcher in a :class:`~tunesmith.tune.search.SearchGenerator`, which
    merges the suggestions into the ``param_space`` and counts samples.

    Args:
        metric: The result key to optimise; may be set later through
            ``TuneConfig(metric=...)``.
        mode: ``"min"`` or ``"max"``.

    Example:
        >>> import random
        >>> class RandomX(Searcher):
        ...     def suggest(self, trial_id):
        ...         return {"x": random.random()}
        ...     def on_trial_complete(self, trial_id, result=None, error=False):
        ...         pass
        >>> 0 <= RandomX(metric="loss", mode="min").suggest("t1")["x"] < 1
        True
    """

    FINISHED = "FINISHED"
    CKPT_FILE_TMPL = "searcher-state-{}.pkl"
    _metric: str | None = None
    _mode: str | None = None

    def __init__(self, metric: str | None = None, mode: str | None = None):
        _validate_mode(mode)
        self._metric = metric
        self._mode = mode

    @property
    def metric(self) -> str | None:
        """The result key this searcher optimises."""
        return self._metric

    @property
    def mode(self) -> str | None:
        """``"min"`` or ``"max"``."""
        return self._mode

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        """Passes the metric, mode and ``param_space`` from the Tuner.

        Returns True if the searcher took the search space from ``config``;
        the default fills in a metric and mode the searcher does not have yet
        and returns False (the searcher defines its own space).
        """
        _validate_mode(mode)
        if self._metric is None and metric is not None:
            self._metric = metric
        if self._mode is None and mode is not None:
            self._mode = mode
        return False

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        """Lets the searcher limit concurrency itself; True if it does.

        The default returns False, and a
        :class:`~tunesmith.tune.search.ConcurrencyLimiter` does the limiting.
        """
        return False

    def suggest(self, trial_id: str) -> dict | None | str:
        """Returns a configuration for a new trial.

        Returns None when nothing can be suggested now (try again later) and
        :attr:`Searcher.FINISHED` when the search is over.
        """
        raise NotImplementedError

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Called with every intermediate result of a trial."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Called once when a trial ends, with its last result or ``error=True``."""

    def add_evaluated_point(
        self,
        parameters: dict,
        value: float,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: list[float] | None = None,
    ) -> None:
        """Tells the searcher about a configuration evaluated outside this search."""
        raise NotImplementedError(f"{type(self).__name__} does not support add_evaluated_point().")

    def add_evaluated_trials(self, trials_or_analysis: Any, metric: str | None = None) -> None:
        """Warm-starts the searcher with the finished trials of an earlier run.

        Calls :meth:`add_evaluated_point` for every trial that ended
        (``TERMINATED`` with ``metric`` in its last result, or ``ERROR``), so
        a new search starts from what an earlier experiment learned.

        Args:
            trials_or_analysis: A ``ResultGrid`` (what ``Tuner.fit()``
                returns), an ``ExperimentAnalysis``, the path of an
                experiment directory, a ``Trial`` or a list of Trials.
            metric: The result key to read each trial's value from; defaults
                to the searcher's metric.

        Example:
            >>> from tunesmith import tune
            >>> from tunesmith.tune.search.optuna import OptunaSearch
            >>> first = tune.Tuner(lambda c: {"loss": c["x"] ** 2}, param_space={"x": tune.uniform(-1, 1)},
            ...     tune_config=tune.TuneConfig(num_samples=3)).fit()  # doctest: +SKIP
            >>> searcher = OptunaSearch(metric="loss", mode="min")
            >>> searcher.add_evaluated_trials(first)  # doctest: +SKIP
        """
        metric = metric if metric is not None else self.metric
        if not isinstance(metric, str):
            raise ValueError(
                f"{type(self).__name__}.add_evaluated_trials: pass the `metric` to read from the trials "
                f"(the searcher has metric={self.metric!r})."
            )
        trials = _trials_of(trials_or_analysis)
        finished = [t for t in trials if getattr(t, "status", None) == "TERMINATED"]
        with_metric = [t for t in finished if metric in (getattr(t, "last_result", None) or {})]
        if finished and not with_metric:
            # Checked before anything is added: a misspelled metric leaves the searcher as it was.
            raise ValueError(
                f"None of the {len(finished)} finished trials given reported the metric {metric!r}; check the "
                "metric name."
            )
        if not with_metric:
            import logging

            logging.getLogger(__name__).warning(
                "%s.add_evaluated_trials: none of the %d trials given finished (only their errors are added).",
                type(self).__name__, len(trials))
        for trial in trials:
            last = getattr(trial, "last_result", None) or {}
            status = getattr(trial, "status", None)
            if status == "TERMINATED" and metric in last:
                self.add_evaluated_point(parameters=trial.config, value=last[metric])
            elif status == "ERROR":
                self.add_evaluated_point(parameters=trial.config, value=None, error=True)

    # ------------------------------------------------------------------ state

    def get_state(self) -> dict:
        """Returns the searcher's state; the default is a copy of its attributes."""
        return dict(self.__dict__)

    def set_state(self, state: dict) -> None:
        """Restores a state from :meth:`get_state`."""
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        """Writes the searcher's state to ``checkpoint_path`` (atomically)."""
        _atomic_dump(self.get_state(), checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        """Restores the state written by :meth:`save` (also one saved around it by a wrapper such as
        ``ConcurrencyLimiter``, or by ``TuneConfig(max_concurrent_trials=...)``)."""
        state = _load(checkpoint_path)
        if _is_wrapper_state(state):
            _restore_from_bytes(self, state["searcher_bytes"], checkpoint_path)
            return
        self.set_state(state)

    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        """Saves the state as ``searcher-state-<session_str>.pkl`` in ``checkpoint_dir``.

        A searcher whose state cannot be pickled is skipped with a warning.
        """
        path = os.path.join(checkpoint_dir, self.CKPT_FILE_TMPL.format(session_str))
        try:
            self.save(path)
        except (NotImplementedError, pickle.PicklingError, TypeError, AttributeError) as exc:
            if os.path.exists(path):
                os.remove(path)  # an older state must not pass for this one
            if not self.__dict__.get("_warned_unsaved"):
                self.__dict__["_warned_unsaved"] = True
                why = "it does not implement save()" if isinstance(exc, NotImplementedError) else str(exc)
                logger.warning("The state of %s cannot be saved (%s); a restored run goes on with a fresh one.",
                               type(self).__name__, why)

    def restore_from_dir(self, checkpoint_dir: str) -> None:
        """Restores the newest state saved by :meth:`save_to_dir` in ``checkpoint_dir``.

        ``checkpoint_dir`` may be an experiment directory: the searcher state saved with its
        experiment state is read (as ``searcher.restore_from_dir(<storage_path>/<name>)`` on Ray).
        """
        checkpoint_dir = os.path.expanduser(os.fspath(checkpoint_dir))
        path = _newest(checkpoint_dir, self.CKPT_FILE_TMPL.format("*"))
        if path is None:
            raise RuntimeError(f"{type(self).__name__} found no saved state in {checkpoint_dir!r}.")
        if not isinstance(self, _WrappingSearcher):
            # Runs before the wrappers kept their state beside the file (ConcurrencyLimiter,
            # max_concurrent_trials) saved this searcher's own file inside the wrapper's: restore()
            # gets that file as it was written. A file in the searcher's own format is its own.
            state = _load_if_pickle(path)
            if _is_wrapper_state(state):
                _restore_from_bytes(self, state["searcher_bytes"], path)
                return
        self.restore(path)

    def has_checkpoint(self, checkpoint_dir: str) -> bool:
        """Whether :meth:`save_to_dir` has written a state in ``checkpoint_dir``."""
        return _newest(os.path.expanduser(os.fspath(checkpoint_dir)), self.CKPT_FILE_TMPL.format("*")) is not None


def leftover_random_state(searcher: Any, index: int) -> Any:
    """A generator for the values a searcher's suggestion ``index`` leaves to sample: seeded from the
    library searcher's seed (found through wrappers such as ConcurrencyLimiter and Repeater), so that a
    seeded search samples them the same way in every run; None for an unseeded one."""
    import numbers

    seed = None
    for _ in range(8):
        seed = getattr(searcher, "_seed", None)
        if isinstance(seed, numbers.Integral) or getattr(searcher, "searcher", None) is None:
            break
        searcher = searcher.searcher
    if not isinstance(seed, numbers.Integral):
        return None
    import numpy as np

    return np.random.default_rng([int(seed) & 0xFFFFFFFF, index])


def _is_wrapper_state(state: Any) -> bool:
    """Whether a saved state is the one :class:`_WrappingSearcher` writes around its searcher's file."""
    return isinstance(state, dict) and state.keys() == {"own", "searcher_bytes"}


def _restore_from_bytes(searcher: Searcher, data: bytes, near: str) -> None:
    """Calls ``searcher.restore`` on a file holding ``data`` (written next to ``near``, then removed)."""
    path = f"{near}.inner-{os.getpid()}"
    try:
        with open(path, "wb") as f:
            f.write(data)
        searcher.restore(path)
    finally:
        if os.path.exists(path):
            os.remove(path)


class _WrappingSearcher(Searcher):
    """A searcher that wraps another one and adds behaviour around it."""

    searcher: Searcher

    @property
    def metric(self) -> str | None:
        return self.searcher.metric

    @property
    def mode(self) -> str | None:
        return self.searcher.mode

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        return self.searcher.set_max_concurrency(max_concurrent)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.searcher.on_trial_result(trial_id, result)

    def _state_file(self, checkpoint_path: str) -> str:
        """Where :meth:`save` keeps this wrapper's own state: beside the wrapped searcher's file,
        named by how many wrappers deep it is (a limiter around a repeater keeps two)."""
        depth, inner = 1, self.searcher
        while isinstance(inner, _WrappingSearcher):
            depth, inner = depth + 1, inner.searcher
        return f"{checkpoint_path}.wrapper{depth}"

    def add_evaluated_point(self, *args, **kwargs) -> None:
        self.searcher.add_evaluated_point(*args, **kwargs)

    def _own_state(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "searcher"}

    def get_state(self) -> dict:
        return {"own": self._own_state(), "searcher": self.searcher.get_state()}

    def set_state(self, state: dict) -> None:
        self.__dict__.update(state["own"])
        self.searcher.set_state(state["searcher"])

    def save(self, checkpoint_path: str) -> None:
        # As on Ray, the file is the wrapped searcher's own (which may have its own format, and
        # which it can restore alone); the wrapper's state goes beside it.
        self.searcher.save(checkpoint_path)
        _atomic_dump(self._own_state(), self._state_file(checkpoint_path))

    def restore(self, checkpoint_path: str) -> None:
        own = self._state_file(checkpoint_path)
        if os.path.exists(own):
            self.__dict__.update(_load(own))
            self.searcher.restore(checkpoint_path)
            return
        state = _load_if_pickle(checkpoint_path)
        if not _is_wrapper_state(state):
            # The wrapped searcher's own file (saved by it, unwrapped): it restores from it itself.
            self.searcher.restore(checkpoint_path)
            return
        # A file of an earlier version, with the wrapped searcher's file inside.
        self.__dict__.update(state["own"])
        _restore_from_bytes(self.searcher, state["searcher_bytes"], checkpoint_path)
