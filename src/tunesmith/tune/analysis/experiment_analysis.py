"""``ExperimentAnalysis``: the trials of one experiment, their results and checkpoints."""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from tunesmith.train._checkpoint import Checkpoint
from tunesmith.tune.analysis import _loading
from tunesmith.tune.experiment.trial import Trial
from tunesmith.tune.result import CONFIG, DEFAULT_METRIC, TRAINING_ITERATION, TRIAL_ID
from tunesmith.tune.utils.serialization import with_objects_from

if TYPE_CHECKING:  # pragma: no cover
    import pandas
    import pyarrow.fs

logger = logging.getLogger(__name__)

SCOPES = ("last", "avg", "last-5-avg", "last-10-avg", "all")
_FILETYPES = ("json", "csv")


class _ByTrialId(dict):
    """``{trial id: value}``, as Ray 2.7 and later key them; a trial's path is accepted as a key too."""

    def __init__(self, data: dict, ids_by_path: dict[str, str]):
        super().__init__(data)
        self._ids = ids_by_path

    def __missing__(self, key):
        trial_id = self._ids.get(key) if isinstance(key, str) else None
        if trial_id is None or trial_id == key:
            raise KeyError(key)
        return self[trial_id]

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key) -> bool:
        return dict.__contains__(self, key) or (isinstance(key, str) and dict.__contains__(self, self._ids.get(key)))



class ExperimentAnalysis:
    """Analyse the trials of an experiment: best trial, configs, checkpoints, dataframes.

    ``tune.run`` returns one; ``Tuner.fit`` wraps one in a ``ResultGrid``.
    Built from a path alone, it reads the experiment directory that a run
    wrote (also on S3 or any ``pyarrow.fs`` filesystem, and also after the
    directory was moved).

    Args:
        experiment_checkpoint_path: The experiment directory, or the path of its
            ``experiment_state.json``. A local path, a URI (``s3://...``,
            ``file://...``) or a path on ``storage_filesystem``.
        trials: Trials to analyse; when not given they are loaded from the path.
        default_metric: Metric used when a method is not given one.
        default_mode: ``"min"`` or ``"max"``, used when a method is not given one.
        storage_filesystem: The ``pyarrow.fs.FileSystem`` the path is on.

    Example:
        >>> from tunesmith import tune
        >>> analysis = tune.run(lambda config: {"score": config["x"]},  # doctest: +SKIP
        ...                     config={"x": tune.grid_search([1, 2])})
        >>> analysis = tune.ExperimentAnalysis("~/tunesmith_results/my_exp")  # doctest: +SKIP
        >>> analysis.get_best_config(metric="score", mode="max")  # doctest: +SKIP
        {'x': 2}
    """

    def __init__(
        self,
        experiment_checkpoint_path: str | os.PathLike,
        trials: list[Trial] | None = None,
        default_metric: str | None = None,
        default_mode: str | None = None,
        storage_filesystem: "pyarrow.fs.FileSystem | None" = None,
    ):
        if default_mode is not None and default_mode not in ("min", "max"):
            raise ValueError(f"ExperimentAnalysis: `default_mode` must be None, 'min' or 'max', got {default_mode!r}.")
        self._storage, path = _loading.Storage.resolve(experiment_checkpoint_path, storage_filesystem)
        if path.endswith(".json"):
            self._experiment_path = self._storage.dirname(path)
            self._state_file: str | None = path
        else:
            self._experiment_path = path
            self._state_file = None
        self._state: dict[str, Any] | None = None
        self._filetype = "json"
        self._trial_dataframes: _ByTrialId | None = None

        if trials is None:
            state = self._read_state(required=True)
            trials = self._trials_from_state(state)
            if default_metric is None and default_mode is None:
                default_metric = state.get("metric")
                default_mode = state.get("mode")
        self.trials: list[Trial] = list(trials)

        self.default_metric = default_metric
        self.default_mode = default_mode
        if self.default_metric is None and self.default_mode is not None:
            self.default_metric = DEFAULT_METRIC

    # -- loading -------------------------------------------------------------
    def _read_state(self, required: bool = False) -> dict[str, Any]:
        if self._state is not None:
            return self._state
        storage = self._storage
        state_file = self._state_file or _loading.find_experiment_state_file(storage, self._experiment_path)
        if state_file is None or not storage.isfile(state_file):
            if not required:
                self._state = {}
                return self._state
            raise ValueError(
                f"ExperimentAnalysis: no experiment state file (experiment_state.json) was found at "
                f"{state_file or self._experiment_path!r}. Pass the experiment directory "
                f"(<storage_path>/<experiment name>) or the path of its experiment_state.json."
            )
        self._state_file = state_file
        self._state = _loading.read_json(storage, state_file)
        return self._state

    def _trials_from_state(self, state: dict[str, Any]) -> list[Trial]:
        storage = self._storage
        trials = []
        if "trials" not in state and "trial_data" in state:
            raise ValueError(
                f"{self._state_file} was written by Ray Tune, whose experiment state tunesmith does not "
                "read. Run the experiment with tunesmith, or analyse it with Ray."
            )
        for trial_state in state.get("trials") or []:
            trial_state = _loading.rebase_trial_state(trial_state, self._experiment_path, storage)
            trial = Trial.from_json_state(
                trial_state, experiment_path=self._experiment_path, filesystem=storage.raw_filesystem
            )
            if trial_state.get("config_pickled"):
                # Values the state holds only as text (objects, arrays, tuples) come back as they were.
                config = _loading.pickled_config(
                    storage, storage.join(self._experiment_path, trial_state.get("trial_dirname") or "")
                )
                if config is not None:
                    # The pickle may be newer than the state (see with_objects_from): its objects only.
                    config = with_objects_from(trial.config, config)
                    if isinstance(trial.last_result, dict) and trial.last_result.get("config") == trial.config:
                        trial.last_result["config"] = config
                    trial.config = config
            trials.append(trial)
        return trials

    # -- paths ---------------------------------------------------------------
    @property
    def experiment_path(self) -> str:
        """The experiment directory (a path on :attr:`filesystem`)."""
        return self._experiment_path

    @property
    def filesystem(self) -> "pyarrow.fs.FileSystem":
        """The ``pyarrow.fs.FileSystem`` the experiment lives on."""
        return self._storage.filesystem

    # -- validation ----------------------------------------------------------
    def _validate_metric(self, metric: str | None) -> str:
        if not metric and not self.default_metric:
            raise ValueError(
                "No `metric` was passed and no default metric is set. Pass `metric=...`, or pass "
                "`metric` to `tune.run()` / `TuneConfig` so that it becomes the default."
            )
        return metric or self.default_metric

    def _validate_mode(self, mode: str | None) -> str:
        if not mode and not self.default_mode:
            raise ValueError(
                "No `mode` was passed and no default mode is set. Pass `mode='min'` or `mode='max'`, "
                "or pass `mode` to `tune.run()` / `TuneConfig` so that it becomes the default."
            )
        if mode and mode not in ("min", "max"):
            raise ValueError(f"`mode` must be 'min' or 'max', got {mode!r}.")
        return mode or self.default_mode

    def _require_defaults(self, what: str, alternative: str) -> None:
        if not self.default_metric or not self.default_mode:
            raise ValueError(
                f"To fetch `{what}`, pass `metric` and `mode` to `tune.run()` (or `TuneConfig`). "
                f"Alternatively, use `{alternative}` to give the metric and mode explicitly."
            )

    def _trial(self, trial: Trial | str) -> Trial:
        if isinstance(trial, Trial):
            return trial
        key = os.fspath(trial)
        for candidate in self.trials:
            if key in (candidate.local_path, candidate.trial_id, str(candidate)):
                return candidate
        raise ValueError(f"ExperimentAnalysis: no trial with path or id {key!r} in this experiment.")

    # -- best trial ------------------------------------------------------------
    def get_best_trial(
        self,
        metric: str | None = None,
        mode: str | None = None,
        scope: str = "last",
        filter_nan_and_inf: bool = True,
    ) -> Trial | None:
        """The trial with the best score on ``metric``.

        Args:
            metric: Metric to compare on (default: ``default_metric``).
            mode: ``"min"`` or ``"max"`` (default: ``default_mode``).
            scope: Which value of each trial is compared: ``"last"`` (its last
                result), ``"avg"`` (mean over all results), ``"last-5-avg"`` /
                ``"last-10-avg"`` (mean over the last 5 / 10), or ``"all"`` (its
                best value by ``mode`` over all results).
            filter_nan_and_inf: Never pick a trial whose score is NaN or infinite.

        Returns:
            The best trial, or None if no trial reported ``metric``.
        """
        if scope not in SCOPES:
            raise ValueError(
                f"ExperimentAnalysis: `scope` must be one of {list(SCOPES)}, got {scope!r}."
            )
        if len(self.trials) == 1 and metric is None and mode is None:
            return self.trials[0]  # the only trial is the best, with no metric needed (as on Ray)
        metric = self._validate_metric(metric)
        mode = self._validate_mode(mode)
        if len(self.trials) == 1:
            return self.trials[0]
        key = mode if scope == "all" else scope
        best_trial = None
        best_score = None
        for trial in self.trials:
            score = _trial_score(trial, metric, key)
            if score is None:
                continue
            if filter_nan_and_inf and _loading.is_nan_or_inf(score):
                continue
            # A NaN score (kept when not filtering) loses to every number.
            if (
                best_score is None
                or (best_score != best_score and score == score)
                or (score > best_score if mode == "max" else score < best_score)
            ):
                best_trial, best_score = trial, score
        if best_trial is None:
            logger.warning("Could not find a best trial: no trial reported metric %r.", metric)
        return best_trial

    def get_best_config(
        self, metric: str | None = None, mode: str | None = None, scope: str = "last"
    ) -> dict | None:
        """The config of :meth:`get_best_trial` (same arguments), or None."""
        trial = self.get_best_trial(metric, mode, scope)
        return trial.config if trial else None

    def get_best_logdir(
        self, metric: str | None = None, mode: str | None = None, scope: str = "last"
    ) -> str | None:
        """The directory of :meth:`get_best_trial` (same arguments), or None."""
        trial = self.get_best_trial(metric, mode, scope)
        return trial.local_path if trial else None

    @property
    def best_trial(self) -> Trial:
        """The best trial by the default metric and mode, on its last result."""
        self._require_defaults("best_trial", "get_best_trial(metric, mode)")
        return self.get_best_trial(self.default_metric, self.default_mode)

    @property
    def best_config(self) -> dict:
        """The config of :attr:`best_trial`."""
        self._require_defaults("best_config", "get_best_config(metric, mode)")
        return self.get_best_config(self.default_metric, self.default_mode)

    @property
    def best_checkpoint(self) -> Checkpoint | None:
        """The best checkpoint of :attr:`best_trial` by the default metric and mode."""
        self._require_defaults("best_checkpoint", "get_best_checkpoint(trial, metric, mode)")
        trial = self.best_trial
        if trial is None:
            raise ValueError(
                f"No best trial found for the default metric {self.default_metric!r} and mode "
                f"{self.default_mode!r}; did any trial report it?"
            )
        return self.get_best_checkpoint(trial, self.default_metric, self.default_mode)

    @property
    def best_logdir(self) -> str:
        """The directory of :attr:`best_trial`."""
        self._require_defaults("best_logdir", "get_best_logdir(metric, mode)")
        return self.best_trial.local_path

    best_path = best_logdir

    @property
    def best_dataframe(self) -> "pandas.DataFrame":
        """All results of :attr:`best_trial` as a dataframe."""
        self._require_defaults("best_dataframe", "get_best_trial(metric, mode)")
        return self.trial_dataframes[self.best_trial.trial_id]

    @property
    def best_result(self) -> dict:
        """The last result of :attr:`best_trial`."""
        self._require_defaults("best_result", "get_best_trial(metric, mode).last_result")
        return self.best_trial.last_result

    @property
    def best_result_df(self) -> "pandas.DataFrame":
        """The last result of :attr:`best_trial` as a one-row dataframe indexed by trial id."""
        import pandas as pd

        self._require_defaults("best_result_df", "get_best_trial(metric, mode).last_result")
        trial = self.best_trial
        row = _loading.flatten_dict(_with_trial_id(trial), _loading.result_delimiter())
        return pd.DataFrame.from_records([row], index=TRIAL_ID)

    # -- all trials ------------------------------------------------------------
    @property
    def results(self) -> dict[str, dict]:
        """``{trial_id: last result}`` of every trial."""
        return {trial.trial_id: trial.last_result for trial in self.trials}

    @property
    def results_df(self) -> "pandas.DataFrame":
        """The last result of every trial, one row per trial, indexed by trial id."""
        import pandas as pd

        delimiter = _loading.result_delimiter()
        rows = [_loading.flatten_dict(_with_trial_id(t), delimiter) for t in self.trials]
        if not rows:
            return pd.DataFrame()
        return pd.DataFrame.from_records(rows, index=TRIAL_ID)

    def _ids_by_path(self) -> dict[str, str]:
        return {t.local_path: t.trial_id for t in self.trials}

    def get_all_configs(self, prefix: bool = False) -> dict[str, dict]:
        """``{trial id: config}``; with ``prefix=True`` the config is flattened as ``config/<key>``.

        A trial's directory is accepted as a key too (older Ray releases keyed by it).
        """
        if prefix:
            configs = {t.trial_id: _loading.flatten_dict({CONFIG: t.config}) for t in self.trials}
        else:
            configs = {t.trial_id: t.config for t in self.trials}
        return _ByTrialId(configs, self._ids_by_path())

    # -- dataframes --------------------------------------------------------------
    def set_filetype(self, file_type: str | None = None) -> bool:
        """Reads trial dataframes from ``"json"`` (result.json, the default) or ``"csv"`` (progress.csv)."""
        file_type = file_type or "json"
        if file_type not in _FILETYPES:
            raise ValueError(f"ExperimentAnalysis.set_filetype: file_type must be one of {list(_FILETYPES)}, got {file_type!r}.")
        if file_type != self._filetype:
            self._filetype = file_type
            self._trial_dataframes = None
        return True

    def fetch_trial_dataframes(self) -> dict[str, "pandas.DataFrame"]:
        """Reads every trial's results from storage; returns ``{trial id: DataFrame}``.

        A trial's directory is accepted as a key too (older Ray releases keyed by it).
        """
        frames: dict[str, Any] = {}
        failures = []
        for trial in self.trials:
            path = trial.local_path
            try:
                storage = _loading.Storage(trial.filesystem) if trial.filesystem is not None else self._storage
                frames[trial.trial_id] = _loading.load_dataframe(storage, path, filetype=self._filetype)
            except Exception as exc:  # one unreadable trial must not hide the others
                import pandas as pd

                failures.append(f"- {trial}: {exc!r}")
                frames[trial.trial_id] = pd.DataFrame()
        if failures:
            logger.warning("Failed to read the results of %d trial(s):\n%s", len(failures), "\n".join(failures))
        self._trial_dataframes = _ByTrialId(frames, self._ids_by_path())
        return self._trial_dataframes

    @property
    def trial_dataframes(self) -> dict[str, "pandas.DataFrame"]:
        """``{trial id: DataFrame of all its results}``; read on first access (a trial's path works as a key too)."""
        if self._trial_dataframes is None:
            self.fetch_trial_dataframes()
        return self._trial_dataframes

    def dataframe(self, metric: str | None = None, mode: str | None = None) -> "pandas.DataFrame":
        """One row per trial: its last result, or with ``metric`` and ``mode`` its best result.

        Args:
            metric: Pick, per trial, the result where this metric is best.
            mode: ``"min"`` or ``"max"``. Without it (or without ``metric``) the
                last result of each trial is used.

        Returns:
            A ``pandas.DataFrame`` with the result fields (nested ones as
            ``a/b``), the config as ``config/<key>`` columns and the trial
            directory as ``logdir``.
        """
        import pandas as pd

        if mode is not None and mode not in ("min", "max"):
            raise ValueError(f"ExperimentAnalysis.dataframe: `mode` must be None, 'min' or 'max', got {mode!r}.")
        if mode and not metric:
            raise ValueError("ExperimentAnalysis.dataframe: a `mode` was passed without a `metric`; pass both.")
        delimiter = _loading.result_delimiter()
        rows = []
        frames = self.trial_dataframes if metric and mode else None
        for trial in self.trials:
            if not trial.last_result:
                continue  # a trial that reported nothing (it failed first) has no row, as on Ray
            row = None
            if frames is not None:
                row = _best_row(frames.get(trial.trial_id), metric, mode, delimiter)
            if row is None:
                row = _loading.flatten_dict(_with_trial_id(trial), delimiter)
                # A metric the trial reported only in earlier results has its column too (NaN here),
                # as in a frame of its result rows.
                for name in trial.metric_analysis:
                    row.setdefault(name.replace("/", delimiter), float("nan"))
            row.update(_loading.flatten_dict({CONFIG: trial.config}, delimiter))
            row["logdir"] = trial.local_path
            # An empty dict (in the config or a result) is no column, as on Ray.
            rows.append({k: v for k, v in row.items() if not (type(v) is dict and not v)})
        return pd.DataFrame(rows)

    # -- checkpoints -----------------------------------------------------------
    def _checkpoints_with_metric(
        self, trial: Trial, metric: str, all_kept: bool = False
    ) -> list[tuple[Checkpoint, Any]]:
        checkpoints = trial.checkpoint_manager.checkpoints if all_kept else trial.best_checkpoints
        return [
            (checkpoint, _loading.lookup_metric(metrics, metric, None))
            for checkpoint, metrics in checkpoints
        ]

    def get_trial_checkpoints_paths(self, trial: Trial | str, metric: str | None = None) -> list[tuple[str, Any]]:
        """``[(checkpoint path, metric value)]`` for each kept checkpoint of ``trial``.

        Args:
            trial: A trial or its directory.
            metric: Metric to pair with each checkpoint (default: the default
                metric, else ``training_iteration``).
        """
        metric = metric or self.default_metric or TRAINING_ITERATION
        return [(c.path, v) for c, v in self._checkpoints_with_metric(self._trial(trial), metric)]

    def get_best_checkpoint(
        self, trial: Trial | str, metric: str | None = None, mode: str | None = None
    ) -> Checkpoint | None:
        """The checkpoint of ``trial`` whose saved ``metric`` is best; checkpoints with NaN are skipped.

        Args:
            trial: A trial or its directory.
            metric: Default: the default metric, else ``training_iteration``.
            mode: ``"min"`` or ``"max"`` (default: the default mode).

        Returns:
            The checkpoint, or None when the trial has no checkpoint with ``metric``.
        """
        return self._best_checkpoint(trial, metric, mode, all_kept=False)

    def _best_checkpoint(self, trial, metric, mode, all_kept: bool) -> Checkpoint | None:
        metric = metric or self.default_metric or TRAINING_ITERATION
        mode = self._validate_mode(mode)
        trial = self._trial(trial)
        scored = []
        for checkpoint, value in self._checkpoints_with_metric(trial, metric, all_kept):
            score = _loading.metric_score(value)
            if score is not None and score == score:
                scored.append((score, checkpoint))
        if not scored:
            logger.warning("No checkpoints with metric %r were found for trial %s.", metric, trial)
            return None
        pick = max if mode == "max" else min
        return pick(scored, key=lambda item: item[0])[1]

    def get_last_checkpoint(
        self, trial: Trial | str | None = None, metric: str = TRAINING_ITERATION, mode: str = "max"
    ) -> Checkpoint | None:
        """The checkpoint of ``trial`` with the highest ``training_iteration``.

        Without ``trial``, the best trial by ``metric`` and ``mode`` is used.
        """
        trial = self._trial(trial) if trial is not None else self.get_best_trial(metric, mode)
        if trial is None:
            return None
        # The latest checkpoint counts here even when num_to_keep did not rank it among the best.
        return self._best_checkpoint(trial, TRAINING_ITERATION, "max", all_kept=True)

    # -- experiment metadata ---------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Statistics of the experiment run (from its state file)."""
        state = self._read_state()
        stats = dict(state.get("stats") or {})
        if "timestamp" in state:
            stats.setdefault("timestamp", state["timestamp"])
        stats.setdefault("num_trials", len(self.trials))
        return stats

    def runner_data(self) -> dict[str, Any]:
        """The experiment-level data of the state file (everything but the trials)."""
        state = self._read_state()
        return {k: v for k, v in state.items() if k not in ("trials", "trial_data")}

    def __repr__(self) -> str:
        return f"ExperimentAnalysis(experiment_path={self._experiment_path!r}, trials={len(self.trials)})"


def _with_trial_id(trial: Trial) -> dict[str, Any]:
    result = dict(trial.last_result)
    result.setdefault(TRIAL_ID, trial.trial_id)
    return result


def _trial_score(trial: Trial, metric: str, key: str) -> float | None:
    entry = trial.metric_analysis.get(metric)
    if entry is not None and key in entry:
        return _loading.as_score(entry[key])
    if key == "last":
        # Nested metrics (``"a/b"``) are not tracked per step; the last value still is.
        return _loading.metric_score(_loading.lookup_metric(trial.last_result, metric, None))
    return None


def _best_row(frame, metric: str, mode: str, delimiter: str = "/") -> dict[str, Any] | None:
    if frame is None or frame.empty:
        return None
    if metric not in frame.columns and delimiter != "/":
        metric = metric.replace("/", delimiter)  # the "a/b" name get_best_result takes
    if metric in frame.columns:
        import pandas as pd

        column = pd.to_numeric(frame[metric], errors="coerce")
        if column.notna().any():
            index = column.idxmax() if mode == "max" else column.idxmin()
            return frame.loc[index].to_dict()
    return frame.iloc[-1].to_dict()
