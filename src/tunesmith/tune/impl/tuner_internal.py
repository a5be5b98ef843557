"""``TunerInternal``: what a :class:`~tunesmith.tune.Tuner` does, behind its public face.

A ``Tuner`` keeps one as ``tuner._local_tuner`` (as Ray's does), built either
fresh (a trainable and its configs) or from an experiment directory to
continue (``restore_path``).
"""
from __future__ import annotations

import copy
import os
from typing import Any

from tunesmith.tune._run import load_tuner_file
from tunesmith.tune.result import EXPERIMENT_STATE_FILE, TUNER_FILE
from tunesmith.train._config import RunConfig
from tunesmith.tune.tune_config import TuneConfig

_RESUME_KEYS = ("resume_unfinished", "resume_errored", "restart_errored")


class TunerInternal:
    """Runs a Tuner's experiment: fresh, or continued from ``restore_path``.

    Args:
        restore_path: An experiment directory to continue (see ``Tuner.restore``); the
            configs then come from its tuner file, and ``trainable`` must be the one it ran.
        storage_filesystem: The ``pyarrow.fs`` filesystem of ``restore_path``.
        resume_config: Which trials to continue, as a dict with ``resume_unfinished``
            (default True), ``resume_errored`` and ``restart_errored`` (default False).
        trainable: A function, a ``tune.Trainable`` subclass, a registered name or a trainer.
        param_space: The search space; with ``restore_path``, the same space again to
            re-specify values that could not be saved.
        tune_config: A :class:`~tunesmith.tune.TuneConfig` (fresh runs).
        run_config: A :class:`~tunesmith.tune.RunConfig` (fresh runs).

    Raises:
        ValueError: ``restore_path`` holds no experiment to continue, or ``trainable`` /
            ``param_space`` do not match the one it ran.
    """

    def __init__(
        self,
        restore_path: str | os.PathLike | None = None,
        storage_filesystem=None,
        resume_config: dict | None = None,
        trainable: Any = None,
        param_space: dict | None = None,
        tune_config: TuneConfig | None = None,
        run_config: RunConfig | None = None,
        _tuner_kwargs: dict | None = None,
        _entrypoint: Any = None,
    ):
        if _tuner_kwargs:
            raise TypeError(f"TunerInternal: extra tune.run arguments are not supported here: {sorted(_tuner_kwargs)}.")
        self._result_grid = None
        self._restore_path: str | None = None
        self._restore_options: dict | None = None
        if restore_path is not None:
            self._init_restored(os.fspath(restore_path), storage_filesystem, resume_config or {},
                                trainable, param_space)
            return
        if trainable is None:
            raise ValueError("Tuner: pass the trainable to tune (a function, a tune.Trainable subclass, "
                             "a registered name or a trainer).")
        if isinstance(trainable, type) and hasattr(trainable, "as_trainable"):
            raise TypeError(
                f"Tuner({trainable.__name__}): pass a trainer instance, e.g. "
                f"Tuner({trainable.__name__}(train_loop_per_worker, scaling_config=...)), not the class."
            )
        # A trainer's own train_loop_config is not copied into each trial's config (as on Ray): it is
        # merged in when the trial runs, so a trainer passed to Tuner.restore brings its values.
        self._setup(trainable, param_space, tune_config, run_config)
        # As Ray does: the tuner file is written now, so Tuner.can_restore(path) holds even
        # if the process dies before the first trial starts.
        from tunesmith._internal.storage import default_experiment_name
        from tunesmith.tune._run import experiment_storage, save_tuner_file

        rc = self._input.run_config
        self._input.experiment_name = rc.name or default_experiment_name(self._trainable_name)
        try:
            save_tuner_file(experiment_storage(self._input, self._trainable_name), self._input,
                            self._trainable_name)
        except OSError:
            pass  # storage that cannot be written yet fails with a clear error in fit()

    def _setup(self, trainable, param_space, tune_config, run_config) -> None:
        from tunesmith.train._config import space_of_config_objects
        from tunesmith.tune._run import ExperimentInput, pickle_trainable, resolve_trainable

        if tune_config is not None and not isinstance(tune_config, TuneConfig):
            raise TypeError(f"Tuner(tune_config=...) must be a tune.TuneConfig, got {type(tune_config).__name__}.")
        if run_config is not None and not isinstance(run_config, RunConfig):
            raise TypeError(f"Tuner(run_config=...) must be a tune.RunConfig, got {type(run_config).__name__}.")
        param_space = space_of_config_objects(param_space)
        self._input = ExperimentInput(
            trainable=trainable,
            param_space=param_space if param_space is not None else {},
            tune_config=tune_config if tune_config is not None else TuneConfig(),
            run_config=_with_absolute_storage_path(
                run_config if run_config is not None else _trainer_run_config(trainable)),
        )
        # Fail early on input that can be checked without running anything.
        resolved, self._trainable_name = resolve_trainable(trainable)
        pickle_trainable(resolved, self._trainable_name)

    def _init_restored(self, path: str, storage_filesystem, resume_config: dict, trainable, param_space) -> None:
        from tunesmith.train._config import space_of_config_objects
        from tunesmith.tune.tuner import Tuner

        unknown = set(resume_config) - set(_RESUME_KEYS)
        if unknown:
            raise TypeError(f"resume_config takes {', '.join(_RESUME_KEYS)}; got {sorted(unknown)}.")
        if "://" not in path and (storage_filesystem is None or type(storage_filesystem).__name__ == "LocalFileSystem"):
            path = os.path.abspath(os.path.expanduser(path))
        if not Tuner.can_restore(path, storage_filesystem):
            if "://" not in path and storage_filesystem is None and os.path.isfile(
                os.path.join(path, EXPERIMENT_STATE_FILE)
            ):
                from tunesmith.tune._run import read_experiment_state

                read_experiment_state(path)  # raises with the file and what is wrong with it
            if "://" not in path and storage_filesystem is None and os.path.isfile(path):
                raise ValueError(
                    f"No experiment to restore at {path!r}: it is a file. Pass the experiment directory "
                    f"(<storage_path>/<name>), such as {os.path.dirname(path)!r}."
                )
            raise ValueError(
                f"No experiment to restore at {path!r}: it has no {EXPERIMENT_STATE_FILE}. "
                "Pass the experiment directory (<storage_path>/<name>)."
            )
        saved = _read_tuner_file(path, storage_filesystem)
        if saved.get("unsaved"):
            import logging

            logging.getLogger(__name__).warning(
                "These settings of the experiment at %s could not be saved with it, so the restored run goes on "
                "without them (a search algorithm left out makes no new trials; its finished and resumed trials "
                "are kept): %s.", path, "; ".join(f"{k} ({why})" for k, why in saved["unsaved"].items()),
            )
        param_space = space_of_config_objects(param_space)
        _check_same_experiment(saved, trainable, param_space, path)
        tune_config = saved.get("tune_config") or TuneConfig()
        run_config = saved.get("run_config") or RunConfig()
        from tunesmith._internal.storage import split_experiment_path

        run_config.storage_path, run_config.name = split_experiment_path(path)
        # As on Ray, the path is where the run goes on, read with the filesystem given here: a URI
        # names its store itself, and a local path is local. The run's own storage_filesystem (a
        # SubTreeFileSystem, say) would read either as a path inside it, and carry the run elsewhere.
        run_config.storage_filesystem = storage_filesystem
        self._setup(trainable, param_space if param_space is not None else saved.get("param_space"),
                    tune_config, run_config)
        self._input.resources_per_trial = saved.get("resources_per_trial")
        self._restore_path = path
        self._restore_options = {
            "resume_unfinished": resume_config.get("resume_unfinished", True),
            "resume_errored": resume_config.get("resume_errored", False),
            "restart_errored": resume_config.get("restart_errored", False),
            # the saved space, whose values a re-specified param_space replaces
            "respecified": saved.get("param_space") if param_space is not None else None,
        }

    # -- what Ray's TunerInternal offers ---------------------------------------------------------
    def get_run_config(self) -> RunConfig:
        """The run's :class:`~tunesmith.tune.RunConfig` (a restored run's comes from its directory)."""
        return self._input.run_config

    @property
    def trainable(self) -> Any:
        """What was passed to tune: a function, a class, a registered name or a trainer."""
        return self._input.trainable

    @property
    def converted_trainable(self) -> Any:
        """The trainable that runs in each trial (a trainer's ``as_trainable()``)."""
        trainable = self._input.trainable
        return trainable.as_trainable() if hasattr(trainable, "as_trainable") else trainable

    @property
    def param_space(self) -> dict:
        return self._input.param_space

    def fit(self):
        """Runs (or continues) the experiment; returns its :class:`~tunesmith.tune.ResultGrid`."""
        from tunesmith.tune._run import run_experiment
        from tunesmith.tune.result_grid import ResultGrid

        analysis, _ = run_experiment(self._input, self._restore_path, self._restore_options)
        # A restored Tuner goes on continuing its experiment when fit() is called again (as Ray's: after an
        # interruption it resumes); a fresh Tuner's next fit() runs the trials again.
        self._result_grid = ResultGrid(analysis)
        return self._result_grid

    def get_results(self):
        """The ResultGrid of the last ``fit()`` (or of the restored experiment, read from its directory)."""
        if self._result_grid is not None:
            return self._result_grid
        if self._restore_path is not None:
            from tunesmith.tune.analysis.experiment_analysis import ExperimentAnalysis
            from tunesmith.tune.result_grid import ResultGrid

            tc = self._input.tune_config
            return ResultGrid(ExperimentAnalysis(
                self._restore_path, default_metric=tc.metric, default_mode=tc.mode,
                storage_filesystem=self._input.run_config.storage_filesystem,
            ))
        raise RuntimeError("No results yet: call Tuner.fit() first.")


def _read_tuner_file(path: str, storage_filesystem=None) -> dict:
    remote = storage_filesystem is not None or "://" in path
    if not remote and not os.path.exists(os.path.join(path, TUNER_FILE)):
        return {}
    try:
        saved = load_tuner_file(path, storage_filesystem)
    except FileNotFoundError:
        return {}
    except Exception as exc:
        raise ValueError(f"The tuner file {path.rstrip('/')}/{TUNER_FILE} cannot be read: {exc}") from exc
    return saved if isinstance(saved, dict) else {}


def _space_keys(space: Any, prefix: str = "") -> set[str]:
    if not isinstance(space, dict):
        return set()
    keys = set()
    for key, value in space.items():
        name = f"{prefix}{key}"
        keys.add(name)
        keys |= _space_keys(value, name + "/")
    return keys


def _check_same_experiment(saved: dict, trainable: Any, param_space: dict | None, path: str) -> None:
    """Restoring needs the original trainable and search space (values may be re-specified)."""
    from tunesmith.tune._run import resolve_trainable

    original = saved.get("trainable_name")
    if original is not None and trainable is not None and not isinstance(trainable, str):
        name = resolve_trainable(trainable)[1]
        if name != original:
            raise ValueError(
                f"The experiment at {path} ran the trainable {original!r}, but Tuner.restore was given "
                f"{name!r}. Pass the same trainable (it may be redefined, but under the same name)."
            )
    if param_space is not None and isinstance(saved.get("param_space"), dict):
        before, after = _space_keys(saved["param_space"]), _space_keys(param_space)
        if before != after:
            added, removed = sorted(after - before), sorted(before - after)
            raise ValueError(
                f"Tuner.restore(param_space=...) must have the keys of the original search space. "
                f"Added: {added or 'none'}; removed: {removed or 'none'}. Pass the param space again only "
                "to re-specify values that could not be saved."
            )


def _with_absolute_storage_path(run_config: RunConfig) -> RunConfig:
    """``run_config`` with a relative local ``storage_path`` made absolute (on a copy): the Tuner
    writes where the working directory was when it was made, even if ``fit()`` runs elsewhere."""
    path = getattr(run_config, "storage_path", None)
    if (not isinstance(path, str) or "://" in path or os.path.isabs(os.path.expanduser(path))
            or run_config.storage_filesystem is not None):  # a path inside that filesystem
        return run_config
    run_config = copy.copy(run_config)
    run_config.storage_path = os.path.abspath(os.path.expanduser(path))
    return run_config


def _trainer_run_config(trainable) -> RunConfig:
    rc = getattr(trainable, "run_config", None)
    return rc if isinstance(rc, RunConfig) else RunConfig()
