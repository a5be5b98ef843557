"""``ResultGrid``: the results of all trials of a ``Tuner.fit()`` run."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Iterator

from tunesmith.train._result import Result
from tunesmith.tune.experiment.trial import Trial

if TYPE_CHECKING:  # pragma: no cover
    import pandas
    import pyarrow.fs

    from tunesmith.tune.analysis.experiment_analysis import ExperimentAnalysis


class ResultGrid:
    """The :class:`~tunesmith.train.Result` of every trial of an experiment.

    Returned by ``Tuner.fit()``; it holds one ``Result`` per trial, in trial
    order, whatever the trial's status (a trial that did not finish gives its
    latest result and checkpoint).

    Args:
        experiment_analysis: The experiment's :class:`ExperimentAnalysis`.

    Example:
        >>> from tunesmith import tune
        >>> tuner = tune.Tuner(lambda config: {"score": config["x"]},  # doctest: +SKIP
        ...                    param_space={"x": tune.grid_search([1, 2, 3])})
        >>> results = tuner.fit()  # doctest: +SKIP
        >>> for result in results:  # doctest: +SKIP
        ...     print(result.config, result.metrics["score"], result.error)
        >>> best = results.get_best_result(metric="score", mode="max")  # doctest: +SKIP
        >>> best.config  # doctest: +SKIP
        {'x': 3}
    """

    def __init__(self, experiment_analysis: "ExperimentAnalysis"):
        self._experiment_analysis = experiment_analysis
        self._results: dict[int, Result] = {}

    # -- results ---------------------------------------------------------------
    def _trial_to_result(self, trial: Trial) -> Result:
        key = id(trial)
        result = self._results.get(key)
        if result is None:
            analysis = self._experiment_analysis
            result = Result._from_trial(trial, analysis._filetype, analysis._storage.raw_filesystem)
            self._results[key] = result
        return result

    def __len__(self) -> int:
        return len(self._experiment_analysis.trials)

    def __getitem__(self, i: int) -> Result:
        """The result of the ``i``-th trial."""
        trials = self._experiment_analysis.trials
        if isinstance(i, slice):
            return [self._trial_to_result(t) for t in trials[i]]
        return self._trial_to_result(trials[i])

    def __iter__(self) -> Iterator[Result]:
        for trial in self._experiment_analysis.trials:
            yield self._trial_to_result(trial)

    def get_best_result(
        self,
        metric: str | None = None,
        mode: str | None = None,
        scope: str = "last",
        filter_nan_and_inf: bool = True,
    ) -> Result:
        """The result of the best trial.

        Args:
            metric: Metric to compare on. Defaults to the ``metric`` of the Tuner's ``TuneConfig``.
            mode: ``"min"`` or ``"max"``. Defaults to the ``mode`` of the Tuner's ``TuneConfig``.
            scope: Which value of each trial is compared: ``"last"`` (its last
                result), ``"avg"`` (the mean of all its results), ``"last-5-avg"``
                / ``"last-10-avg"`` (the mean of its last 5 / 10 results) or
                ``"all"`` (its best result by ``mode``).
            filter_nan_and_inf: Never pick a trial whose score is NaN or infinite.

        With a single trial, that trial's result is returned whatever the metric and mode.

        Raises:
            ValueError: If no metric or mode is given and the Tuner set none.
            RuntimeError: If no trial reported ``metric`` (with a finite value).
        """
        analysis = self._experiment_analysis
        if len(analysis.trials) == 1:
            return self._trial_to_result(analysis.trials[0])
        if not metric and not analysis.default_metric:
            raise ValueError(
                "No metric was given. Pass `metric` to `get_best_result`, or set `metric` in the "
                "`TuneConfig` of your `Tuner`."
            )
        if not mode and not analysis.default_mode:
            raise ValueError(
                "No mode was given. Pass `mode='min'` or `mode='max'` to `get_best_result`, or set "
                "`mode` in the `TuneConfig` of your `Tuner`."
            )
        best_trial = analysis.get_best_trial(
            metric=metric, mode=mode, scope=scope, filter_nan_and_inf=filter_nan_and_inf
        )
        if best_trial is None:
            name = metric or analysis.default_metric
            message = f"No best trial found for the metric {name!r}: no trial reported this metric"
            if filter_nan_and_inf:
                message += (
                    ", or every value reported for it is NaN or infinite. To consider such values, "
                    "pass `filter_nan_and_inf=False`."
                )
            else:
                message += "."
            raise RuntimeError(message)
        return self._trial_to_result(best_trial)

    def get_dataframe(
        self, filter_metric: str | None = None, filter_mode: str | None = None
    ) -> "pandas.DataFrame":
        """One row per trial with its reported results and config.

        By default each row is the trial's last result. With ``filter_metric``
        and ``filter_mode`` it is the trial's result where ``filter_metric`` was
        best (``"max"``: highest, ``"min"``: lowest).

        Args:
            filter_metric: Metric to pick each trial's row by.
            filter_mode: ``"min"`` or ``"max"``.

        Returns:
            A ``pandas.DataFrame`` with the result fields, ``config/<key>``
            columns and the trial directory in ``logdir``.
        """
        return self._experiment_analysis.dataframe(metric=filter_metric, mode=filter_mode)

    # -- summary ---------------------------------------------------------------
    @property
    def errors(self) -> list[BaseException]:
        """The errors of the trials that failed."""
        return [r.error for t, r in zip(self._experiment_analysis.trials, self) if t.status == Trial.ERROR and r.error]

    @property
    def num_errors(self) -> int:
        """How many trials failed."""
        return sum(1 for t in self._experiment_analysis.trials if t.status == Trial.ERROR)

    @property
    def num_terminated(self) -> int:
        """How many trials finished without error."""
        return sum(1 for t in self._experiment_analysis.trials if t.status == Trial.TERMINATED)

    @property
    def experiment_path(self) -> str:
        """The experiment directory (a path on :attr:`filesystem`)."""
        return self._experiment_analysis.experiment_path

    @property
    def filesystem(self) -> "pyarrow.fs.FileSystem":
        """The ``pyarrow.fs.FileSystem`` the experiment lives on."""
        return self._experiment_analysis.filesystem

    def report(self, path: str | None = None, metric: str | None = None, mode: str | None = None) -> str:
        """Writes a self-contained HTML report of the experiment and returns its path.

        The page shows the best trial and its config, the learning curves of
        the metric, config against final metric (parallel coordinates), the
        scheduler's early stops and the errors; it opens offline. The same
        as ``tunesmith report <experiment dir>``.

        Args:
            path: Where to write the file, a local path or a URI such as
                ``s3://bucket/report.html`` (a directory gets ``report.html``);
                ``<experiment dir>/report.html`` by default.
            metric: Metric to rank and plot; the Tuner's ``TuneConfig`` metric by default.
            mode: ``"min"`` or ``"max"``; the ``TuneConfig`` mode by default.

        Returns:
            The path of the written report.
        """
        from tunesmith.tune.analysis.html_report import write_html_report

        analysis = self._experiment_analysis
        metric = metric or analysis.default_metric
        mode = mode or analysis.default_mode
        if analysis._storage.local:
            return write_html_report(analysis.experiment_path, path, metric=metric, mode=mode)
        # On remote storage: copy what the report reads (no checkpoints) to a local directory.
        import tempfile

        with tempfile.TemporaryDirectory() as local:
            _copy_report_inputs(analysis, local)
            if path is not None:  # a local path, or a URI (s3://bucket/report.html)
                return write_html_report(local, path, metric=metric, mode=mode, shown_path=analysis.experiment_path)
            # Beside the experiment, on its store.
            from tunesmith._internal.storage import storage_uri, upload_bytes
            from tunesmith.tune.analysis.html_report import REPORT_FILE

            written = write_html_report(local, os.path.join(local, REPORT_FILE), metric=metric, mode=mode,
                                        shown_path=analysis.experiment_path)
            with open(written, "rb") as f:
                target = f"{analysis.experiment_path.rstrip('/')}/{REPORT_FILE}"
                upload_bytes(f.read(), analysis.filesystem, target, 60.0)
            return storage_uri(analysis.filesystem, target)

    def __repr__(self) -> str:
        if not len(self):
            return "ResultGrid<[]>"
        body = ",\n".join(result._repr(indent=2) for result in self)
        return f"ResultGrid<[\n{body}\n]>"


def _copy_report_inputs(analysis, local_dir: str) -> None:
    """Copies an experiment's state file and each trial's result and error files to ``local_dir``."""
    import os

    import pyarrow.fs

    from tunesmith.tune.result import EXPERIMENT_STATE_FILE, EXPR_ERROR_FILE, EXPR_RESULT_FILE

    fs = analysis.filesystem
    root = analysis.experiment_path.rstrip("/")
    wanted = {EXPERIMENT_STATE_FILE, EXPR_RESULT_FILE, EXPR_ERROR_FILE}
    for info in fs.get_file_info(pyarrow.fs.FileSelector(root, recursive=True)):
        if info.type != pyarrow.fs.FileType.File or info.base_name not in wanted:
            continue
        rel = info.path[len(root):].lstrip("/")
        if rel.count("/") > 1:
            continue  # only the experiment's own files and its trials' (not inside checkpoints)
        target = os.path.join(local_dir, *rel.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with fs.open_input_stream(info.path) as src, open(target, "wb") as dst:
            dst.write(src.read())
