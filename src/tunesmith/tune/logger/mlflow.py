"""MLflow: one MLflow run per trial (``MLflowLoggerCallback``) and ``setup_mlflow`` inside a trial.

Needs ``pip install mlflow`` (the ``mlflow`` extra). Nothing here imports
mlflow until a run is logged.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import time
from typing import Any, Iterator, TYPE_CHECKING

from tunesmith.tune.logger._tracker import (
    FAILED,
    FINISHED,
    ExperimentRecord,
    TrackerBackend,
    TrackerLoggerCallback,
    TrialRecord,
    flatten_dict,
    numeric_items,
    result_step,
)

if TYPE_CHECKING:
    from types import ModuleType

# Result fields that are bookkeeping, not measurements.
_NOT_METRICS = ("pid", "timestamp", "done", "should_checkpoint")
# MLflow's limits per log_batch call and per param value.
_MAX_METRICS_PER_BATCH = 1000
_MAX_PARAMS_PER_BATCH = 100
_MAX_PARAM_LENGTH = 6000
_INVALID_KEY_CHARS = re.compile(r"[^\w\-. /:]")


def _key(name: str) -> str:
    """A metric or param name MLflow accepts (letters, digits, ``_-. /:``)."""
    return _INVALID_KEY_CHARS.sub("_", str(name))[:250]


def _params(config: dict) -> dict[str, str]:
    out = {}
    for key, value in flatten_dict({k: v for k, v in config.items() if k != "mlflow"}).items():
        out[_key(key)] = str(value)[:_MAX_PARAM_LENGTH]
    return out


def _local_store_path(tracking_uri: str | None) -> str | None:
    """The local database or directory behind a ``sqlite:///`` or file tracking URI, else None."""
    uri = str(tracking_uri or "")
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///"):].split("?", 1)[0]
        return None if not path or path == ":memory:" else os.path.abspath(path)
    if uri.startswith("file:"):
        from urllib.parse import unquote, urlparse

        return os.path.abspath(unquote(urlparse(uri).path))
    if uri and "://" not in uri:
        return os.path.abspath(uri)
    return None


@contextlib.contextmanager
def _store_lock(tracking_uri: str | None) -> Iterator[None]:
    """Serialises setting up a local store among processes (the tracker helper and the trials).

    MLflow migrates a new SQLite database when a process first opens it, and
    checks an experiment name before creating it; processes doing either at
    the same time would fail, or create two experiments of one name.
    """
    path = _local_store_path(tracking_uri)
    if path is None:
        yield
        return
    import fcntl
    import hashlib
    import tempfile

    key = hashlib.sha1(path.encode()).hexdigest()[:16]
    with open(os.path.join(tempfile.gettempdir(), f"tunesmith-mlflow-{key}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _resolve_experiment(client, name: str | None, experiment_id: str | None, create: bool,
                        artifact_location: str | None = None, name_given: bool = False) -> str:
    """The id of the MLflow experiment to log to, creating it when allowed.

    An ``experiment_id`` that does not exist gives way to ``name`` when the user named one
    (``name_given``), as Ray documents; otherwise it is an error.
    """
    if experiment_id:
        try:
            found = client.get_experiment(experiment_id)
        except Exception:  # noqa: BLE001 - MLflow raises (or returns None) for an unknown id
            found = None
        if found is not None:
            return experiment_id
        if not name_given:
            raise ValueError(f"There is no MLflow experiment with experiment_id={experiment_id!r}.")
    with _store_lock(client.tracking_uri):
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        if not create:
            raise ValueError(
                f"There is no MLflow experiment named {name!r}. Create it, or pass "
                "create_experiment_if_not_exists=True."
            )
        try:
            return client.create_experiment(name, artifact_location=artifact_location)
        except Exception:
            # Another process (outside this lock) created it at the same time.
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id


# Tags that say which run belongs to which trial of which Tune experiment, and who made it (the
# callback, or setup_mlflow in a worker of some rank): a run is continued only by its own maker.
_SOURCE_TAG, _EXPERIMENT_TAG = "tunesmith_source", "tunesmith_experiment"


def _run_tags(trial_id: str, trial_name: str, experiment: str | None, source: str) -> dict[str, str]:
    return {"trial_name": str(trial_name), "trial_id": trial_id, _SOURCE_TAG: source,
            _EXPERIMENT_TAG: str(experiment or "")}


def _find_run(client, experiment_id: str, trial_id: str, experiment: str | None, source: str):
    """The run an earlier start of this trial made from the same place (``source``: the callback
    or setup_mlflow of one worker rank), after a pause, a retry or a restore; the newest such run,
    or None."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.trial_id = '{trial_id}'", max_results=200,
                              order_by=["attributes.start_time DESC"])
    for run in runs:  # the newest first; tags compared here, where any text may be in them
        tags = run.data.tags
        if tags.get(_SOURCE_TAG) == source and tags.get(_EXPERIMENT_TAG) == str(experiment or ""):
            return run
    return None


def _insert_metrics(store: Any, run_id: str, values: list[tuple]) -> None:
    """Writes a run's metric values to MLflow's SQL store in one transaction and one multi-row INSERT.

    ``values`` holds ``(key, value, timestamp_ms, step)``. ``MlflowClient.log_batch``
    on a SQL store builds an ORM object per value and flushes them in calls of at
    most 1000; for a fast experiment's results (20,000 results of 8 metrics) that
    takes most of a minute on SQLite here. This writes the same rows MLflow would,
    with MLflow's own table and helpers: values sanitised as MLflow does (NaN
    stored as 0 with ``is_nan``, infinities as the largest floats), duplicates
    within the batch dropped, the run checked to be active, and the
    ``latest_metrics`` rows updated by MLflow's own routine, given the newest value
    of each key. Any error rolls the transaction back; the caller then logs the
    batch through ``log_batch``.
    """
    from mlflow.store.tracking.dbmodels.models import SqlMetric

    rows = []
    newest: dict[str, dict] = {}
    sanitize = store.sanitize_metric_value
    for key, raw, timestamp, step in dict.fromkeys(values):  # duplicates dropped, order kept
        if raw != raw or raw in (math.inf, -math.inf):
            is_nan, value = sanitize(raw)
        else:
            is_nan, value = False, raw
        row = {"run_uuid": run_id, "key": key, "value": value, "timestamp": timestamp, "step": step,
               "is_nan": is_nan}
        rows.append(row)
        best = newest.get(key)
        if best is None or (step, timestamp, value) > (best["step"], best["timestamp"], best["value"]):
            newest[key] = row
    if not rows:
        return
    with store.ManagedSessionMaker(read_only=False) as session:  # a write (a routing store: the primary)
        run = store._get_run(run_uuid=run_id, session=session)
        store._check_run_is_active(run)
        _execute_many(session, SqlMetric.__table__, rows)
        store._update_latest_metrics_if_necessary([SqlMetric(**row) for row in newest.values()], session)
        session.commit()


# DB-API placeholder per paramstyle, for the statements sent to the driver as they are.
_PLACEHOLDERS = {"qmark": "?", "format": "%s"}


def _execute_many(session: Any, table: Any, rows: list[dict]) -> None:
    """Inserts ``rows`` into ``table`` with one ``executemany`` of the database driver.

    SQLAlchemy's Core ``insert`` builds its parameters row by row (about half of
    the time for plain rows like these); for SQLite and the drivers with the
    same placeholder style the statement goes to the driver as written, with
    tuples. Other drivers take the Core path.
    """
    connection = session.connection()
    placeholder = _PLACEHOLDERS.get(getattr(connection.dialect, "paramstyle", None))
    if placeholder is None:
        session.execute(table.insert(), rows)
        return
    columns = list(rows[0])
    preparer = connection.dialect.identifier_preparer
    statement = (f"INSERT INTO {preparer.format_table(table)} ({', '.join(preparer.quote(c) for c in columns)}) "
                 f"VALUES ({', '.join([placeholder] * len(columns))})")
    connection.exec_driver_sql(statement, [tuple(row[c] for c in columns) for row in rows])


def _is_duplicate_error(exc: Exception) -> bool:
    """A value logged before (an IntegrityError): MLflow's own path skips it, the next batch can go in bulk."""
    try:
        import sqlalchemy.exc
    except ImportError:
        return False
    return isinstance(exc, sqlalchemy.exc.IntegrityError)


class _MLflowBackend(TrackerBackend):
    library = "MLflow"

    def __init__(self, tracking_uri, registry_uri, experiment_name, tags, tracking_token, save_artifact,
                 log_params_on_trial_end=False):
        self.log_params_on_trial_end = log_params_on_trial_end
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri
        self.experiment_name = experiment_name
        self.tags = dict(tags or {})
        self.tracking_token = tracking_token
        self.save_artifact = save_artifact
        self._runs: dict[str, str] = {}
        self._params: dict[str, dict[str, str]] = {}
        self._sql_store: Any = None  # the store, when results go to a SQL store in bulk; False: never

    def setup(self, experiment: ExperimentRecord) -> None:
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        if self.tracking_token:
            os.environ["MLFLOW_TRACKING_TOKEN"] = self.tracking_token
        import mlflow
        from mlflow import MlflowClient

        uri = self.tracking_uri or mlflow.get_tracking_uri()
        with _store_lock(uri):  # a new SQLite store is created here
            self._client = MlflowClient(tracking_uri=uri, registry_uri=self.registry_uri)
            self._client.search_experiments(max_results=1)
        env_id = os.environ.get("MLFLOW_EXPERIMENT_ID") if not self.experiment_name else None
        name = self.experiment_name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or experiment.name or "Default"
        self._experiment_id = _resolve_experiment(self._client, name, env_id, create=True)

    def start_trial(self, trial: TrialRecord) -> None:
        client = self._client
        # A trial restarted from scratch (restart_errored) gets a run of its own, as on Ray.
        existing = None if trial.restarted else _find_run(
            client, self._experiment_id, trial.trial_id, trial.experiment_name, "callback")
        if existing is not None:
            run_id = existing.info.run_id
            client.update_run(run_id, status="RUNNING")
            self._params[trial.trial_id] = dict(existing.data.params)
        else:
            tags = {**{str(k): str(v) for k, v in self.tags.items()},
                    **_run_tags(trial.trial_id, trial.trial_name, trial.experiment_name, "callback")}
            run_id = client.create_run(self._experiment_id, run_name=trial.trial_name, tags=tags).info.run_id
            self._params[trial.trial_id] = {}
        self._runs[trial.trial_id] = run_id
        if not self.log_params_on_trial_end:
            self._log_params(trial)

    def update_trial(self, trial: TrialRecord) -> None:
        if not self.log_params_on_trial_end:
            self._log_params(trial)

    def _log_params(self, trial: TrialRecord) -> None:
        from mlflow.entities import Param

        logged = self._params[trial.trial_id]
        # A param's value cannot change in MLflow: a new value (PBT) is left out.
        new = {k: v for k, v in _params(trial.config).items() if k not in logged}
        items = [Param(k, v) for k, v in new.items()]
        for i in range(0, len(items), _MAX_PARAMS_PER_BATCH):
            self._client.log_batch(self._runs[trial.trial_id], params=items[i:i + _MAX_PARAMS_PER_BATCH])
        logged.update(new)

    def log_results(self, trial: TrialRecord, results: list[dict]) -> None:
        now = int(time.time() * 1000)
        values = []  # (key, value, timestamp in ms, step)
        keys: dict[str, str] = {}  # result field -> metric name, the same fields in every result
        for result in results:
            step = result_step(result)
            ts = result.get("timestamp")
            ts = int(ts * 1000) if isinstance(ts, (int, float)) and not isinstance(ts, bool) else now
            for field, value in numeric_items(result, exclude=_NOT_METRICS).items():
                key = keys.get(field)
                if key is None:
                    key = keys[field] = _key(field)
                values.append((key, float(value), ts, step))
        run_id = self._runs[trial.trial_id]
        store = self._bulk_store()
        if store is not None:
            try:
                _insert_metrics(store, run_id, values)
                return
            except Exception as exc:  # noqa: BLE001 - MLflow's own path below records them, or says why not
                if not _is_duplicate_error(exc):
                    self._sql_store = False  # not this MLflow: its own path from now on
        from mlflow.entities import Metric

        # MLflow splits a batch into calls of at most 1000 metrics.
        self._client.log_batch(run_id, metrics=[Metric(*v) for v in values])

    def _bulk_store(self) -> Any:
        """MLflow's SQL store behind the client (SQLite, the default, or a database), else None."""
        if self._sql_store is None:
            self._sql_store = False
            try:
                from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

                store = self._client._tracking_client.store
                if isinstance(store, SqlAlchemyStore) and all(
                    hasattr(store, name) for name in
                    ("ManagedSessionMaker", "_get_run", "_check_run_is_active", "_update_latest_metrics_if_necessary",
                     "sanitize_metric_value")
                ):
                    self._sql_store = store
            except Exception:  # noqa: BLE001 - an MLflow without it: the public API only
                pass
        return self._sql_store or None

    def end_trial(self, trial: TrialRecord, status: str) -> None:
        if self.log_params_on_trial_end:
            self._log_params(trial)
        run_id = self._runs.pop(trial.trial_id)
        if self.save_artifact and trial.local_path and os.path.isdir(trial.local_path):
            self._client.log_artifacts(run_id, trial.local_path)
        self._client.set_terminated(run_id, status={FINISHED: "FINISHED", FAILED: "FAILED"}.get(status, "KILLED"))


class MLflowLoggerCallback(TrackerLoggerCallback):
    """Logs each trial as an MLflow run: its config as params, its results as metrics.

    For each trial, a run named after the trial is created (tagged with
    ``trial_name``, ``trial_id`` and ``tags``); the trial's config is logged
    as params (nested keys joined with ``/``); every numeric result field
    (nested ones joined with ``/``) is logged as a metric at the step
    ``training_iteration`` (``timesteps_total`` when reported); when the
    trial ends the run is set to ``FINISHED`` or ``FAILED`` (``KILLED`` if
    the experiment was interrupted), and with ``save_artifact=True`` the
    trial directory, checkpoints included, is logged as the run's artifacts.
    A restored trial continues its run.

    The MLflow calls happen in a helper process, so a slow tracking server
    does not slow the experiment; ``Tuner.fit()`` returns once everything
    has been recorded.

    Args:
        tracking_uri: Where runs are recorded, e.g. ``"sqlite:///mlflow.db"``
            or ``"http://host:5000"``; MLflow's default when None.
        registry_uri: The model registry's URI.
        experiment_name: The MLflow experiment to log to; created if it does
            not exist. Defaults to ``MLFLOW_EXPERIMENT_NAME``, then
            ``MLFLOW_EXPERIMENT_ID``, then the Tune experiment's name.
        tags: Tags set on every run.
        tracking_token: Token for an authenticated tracking server.
        save_artifact: Log each trial's directory as artifacts of its run at the end.
        log_params_on_trial_end: Log the config as params when the trial ends instead of when it
            starts (a config that changes during the trial, under PBT, is then logged as it ended).

    Example:
        >>> from tunesmith import tune
        >>> from tunesmith.tune.logger.mlflow import MLflowLoggerCallback
        >>> callback = MLflowLoggerCallback(
        ...     tracking_uri="sqlite:///mlflow.db", experiment_name="my-exp", tags={"team": "a"},
        ...     save_artifact=True)
        >>> run_config = tune.RunConfig(callbacks=[callback])
    """

    _library = "MLflow"
    _module = "mlflow"

    def __init__(
        self,
        tracking_uri: str | None = None,
        *,
        registry_uri: str | None = None,
        experiment_name: str | None = None,
        tags: dict | None = None,
        tracking_token: str | None = None,
        save_artifact: bool = False,
        log_params_on_trial_end: bool = False,
    ):
        if tags is not None and not isinstance(tags, dict):
            raise TypeError(f"MLflowLoggerCallback(tags=...) must be a dict of tag -> value, got {tags!r}.")
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri
        self.experiment_name = experiment_name
        self.tags = dict(tags or {})
        self.tracking_token = tracking_token
        self.should_save_artifact = bool(save_artifact)
        self.log_params_on_trial_end = bool(log_params_on_trial_end)
        super().__init__()

    def _make_backend(self) -> TrackerBackend:
        return _MLflowBackend(self.tracking_uri, self.registry_uri, self.experiment_name, self.tags,
                              self.tracking_token, self.should_save_artifact, self.log_params_on_trial_end)


class _NoopModule:
    """Stands in for the ``mlflow`` module on workers that do not log (``rank_zero_only``)."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None

    def __bool__(self) -> bool:
        return False


def setup_mlflow(
    config: dict | None = None,
    tracking_uri: str | None = None,
    registry_uri: str | None = None,
    experiment_id: str | None = None,
    experiment_name: str | None = None,
    tracking_token: str | None = None,
    artifact_location: str | None = None,
    run_name: str | None = None,
    create_experiment_if_not_exists: bool = False,
    tags: dict | None = None,
    rank_zero_only: bool = True,
) -> "ModuleType | _NoopModule":
    """Starts an MLflow run for the current trial and returns the ``mlflow`` module.

    Call it inside a training function (or a ``Trainable``'s ``setup``) and
    log with the returned module (``mlflow.log_metric(...)``,
    ``mlflow.log_artifact(...)``). The run is named after the trial and
    tagged with its id and name; ``config`` (without an ``"mlflow"`` entry)
    is logged as params. When the trial ends the run is ended, ``FINISHED``
    or ``FAILED``; a paused trial continues its run when it resumes. Outside
    a trial it starts a plain run.

    Args:
        config: The trial's config, logged as params.
        tracking_uri: Where runs are recorded; MLflow's default when None.
        registry_uri: The model registry's URI.
        experiment_id: The id of an existing MLflow experiment to log to.
        experiment_name: The experiment's name; defaults to
            ``MLFLOW_EXPERIMENT_NAME``, then the Tune experiment's name (which
            is created if needed).
        tracking_token: Token for an authenticated tracking server.
        artifact_location: Where a newly created experiment stores artifacts.
        run_name: The run's name; the trial's name by default.
        create_experiment_if_not_exists: Create ``experiment_name`` if it does not exist.
        tags: Tags set on the run.
        rank_zero_only: In a distributed training function, only the worker
            of rank 0 logs; the others get a module whose calls do nothing.

    Returns:
        The ``mlflow`` module with the trial's run active.

    Example:
        >>> from tunesmith import tune
        >>> from tunesmith.tune.logger.mlflow import setup_mlflow
        >>> def train_fn(config):
        ...     mlflow = setup_mlflow(config, tracking_uri="sqlite:///mlflow.db")
        ...     for step in range(3):
        ...         mlflow.log_metric("loss", 1 / (step + 1), step=step)
        ...         tune.report({"loss": 1 / (step + 1)})
    """
    try:
        import mlflow
    except ImportError as exc:
        raise ImportError("setup_mlflow needs mlflow: `pip install mlflow`.") from exc
    from tunesmith._internal import trial_hooks
    from tunesmith._internal.session import get_context

    context = get_context()
    if rank_zero_only and context.get_world_rank() != 0:
        return _NoopModule()
    trial_id, trial_name = context.get_trial_id(), context.get_trial_name()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if tracking_token:
        os.environ["MLFLOW_TRACKING_TOKEN"] = tracking_token
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    if registry_uri:
        mlflow.set_registry_uri(registry_uri)
    with _store_lock(mlflow.get_tracking_uri()):  # a new SQLite store is created here
        client = mlflow.MlflowClient()
        client.search_experiments(max_results=1)
    defaulted = not (experiment_id or experiment_name or os.environ.get("MLFLOW_EXPERIMENT_NAME")
                     or os.environ.get("MLFLOW_EXPERIMENT_ID"))
    name = experiment_name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or context.get_experiment_name() or "Default"
    exp_id = _resolve_experiment(
        client, name, experiment_id or (os.environ.get("MLFLOW_EXPERIMENT_ID") if not experiment_name else None),
        create=create_experiment_if_not_exists or defaulted, artifact_location=artifact_location,
        name_given=bool(experiment_name),
    )
    if mlflow.active_run() is not None:
        mlflow.end_run()  # left over from an earlier trial in this process
    # Each worker that logs has a run of its own; a retry or restore of the trial continues it.
    source = "setup_mlflow" if rank_zero_only else f"setup_mlflow/rank{context.get_world_rank()}"
    experiment = context.get_experiment_name()
    existing = _find_run(client, exp_id, trial_id, experiment, source) if trial_id else None
    if existing is not None:
        run = mlflow.start_run(run_id=existing.info.run_id)
    else:
        run_tags = {str(k): str(v) for k, v in (tags or {}).items()}
        if trial_id:
            run_tags.update(_run_tags(trial_id, trial_name, experiment, source))
        run = mlflow.start_run(experiment_id=exp_id, run_name=run_name or trial_name, tags=run_tags)
    if config:
        logged = dict(run.data.params) if existing is not None else {}
        params = {k: v for k, v in _params(config).items() if k not in logged}
        if params:
            mlflow.log_params(params)
    if trial_id:
        run_id = run.info.run_id

        def _end(outcome: str) -> None:
            active = mlflow.active_run()
            if active is not None and active.info.run_id == run_id:
                mlflow.end_run(status="FAILED" if outcome == trial_hooks.FAILED else "FINISHED")

        trial_hooks.add_trial_end_hook(_end)
    return mlflow


__all__ = ["MLflowLoggerCallback", "setup_mlflow"]
