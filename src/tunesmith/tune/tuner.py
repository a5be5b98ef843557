"""``Tuner``: the entry point that runs an experiment and returns a ``ResultGrid``."""
from __future__ import annotations

import os
from typing import Any

from tunesmith.tune._run import ExperimentInput, load_tuner_file, run_experiment
from tunesmith.tune.result import EXPERIMENT_STATE_FILE, TUNER_FILE
from tunesmith.tune.tune_config import TuneConfig
from tunesmith.train._config import RunConfig


class Tuner:
    """Tunes a trainable over a search space.

    Args:
        trainable: A function ``f(config)``, a ``tune.Trainable`` subclass, a registered
            name, or a trainer (``TorchTrainer`` ...).
        param_space: The search space: constants, ``tune.uniform(...)`` and friends,
            ``tune.grid_search([...])``, nested dicts and lists.
        tune_config: A :class:`~tunesmith.tune.TuneConfig`.
        run_config: A :class:`~tunesmith.tune.RunConfig`.

    Example:
        >>> from tunesmith import tune
        >>> def objective(config):
        ...     return {"score": (config["x"] - 3) ** 2}
        >>> tuner = tune.Tuner(
        ...     objective,
        ...     param_space={"x": tune.uniform(0, 10)},
        ...     tune_config=tune.TuneConfig(metric="score", mode="min", num_samples=8),
        ...     run_config=tune.RunConfig(verbose=0),
        ... )
        >>> best = tuner.fit().get_best_result()  # doctest: +SKIP
    """

    def __init__(
        self,
        trainable: Any = None,
        *,
        param_space: dict | None = None,
        tune_config: TuneConfig | None = None,
        run_config: RunConfig | None = None,
        _restore_path: str | None = None,
        _restore_options: dict | None = None,
    ):
        if hasattr(trainable, "as_trainable") and param_space is None and hasattr(trainable, "_param_space_default"):
            param_space = trainable._param_space_default()
        from tunesmith.train._config import space_of_config_objects

        param_space = space_of_config_objects(param_space)
        self._input = ExperimentInput(
            trainable=trainable,
            param_space=param_space if param_space is not None else {},
            tune_config=tune_config if tune_config is not None else TuneConfig(),
            run_config=run_config if run_config is not None else _trainer_run_config(trainable),
        )
        self._restore_path = _restore_path
        self._restore_options = _restore_options
        self._result_grid = None
        # Fail early on input that can be checked without running anything.
        from tunesmith.tune._run import pickle_trainable, resolve_trainable

        resolved, name = resolve_trainable(trainable)
        pickle_trainable(resolved, name)
        if _restore_path is None:
            # As Ray does: the tuner file is written now, so Tuner.can_restore(path) holds even
            # if the process dies before the first trial starts.
            from tunesmith._internal.storage import default_experiment_name
            from tunesmith.tune._run import experiment_storage, save_tuner_file

            rc = self._input.run_config
            self._input.experiment_name = rc.name or default_experiment_name(name)
            try:
                save_tuner_file(experiment_storage(self._input, name), self._input, name)
            except OSError:
                pass  # storage that cannot be written yet fails with a clear error in fit()

    def fit(self):
        """Runs the experiment and returns a :class:`~tunesmith.tune.ResultGrid`.

        A trial that fails does not raise here: its error is in the ResultGrid.
        """
        from tunesmith.tune.result_grid import ResultGrid

        analysis, _ = run_experiment(self._input, self._restore_path, self._restore_options)
        self._restore_path = None
        self._result_grid = ResultGrid(analysis)
        return self._result_grid

    def get_results(self):
        """Returns the ResultGrid of the last ``fit()`` (or reads it back from a restored experiment)."""
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

    @classmethod
    def can_restore(cls, path: str | os.PathLike, storage_filesystem=None) -> bool:
        """True if ``path`` holds an experiment that ``Tuner.restore`` can continue.

        That is a directory with the tuner file (written when the Tuner was built)
        and, once the run has saved one, a readable experiment state.
        """
        from tunesmith._internal.storage import resolve_storage

        fs, path = resolve_storage(path, storage_filesystem)
        if fs is not None:
            import pyarrow.fs

            infos = fs.get_file_info([f"{path}/{EXPERIMENT_STATE_FILE}", f"{path}/{TUNER_FILE}"])
            return any(info.type == pyarrow.fs.FileType.File for info in infos)
        state_file = os.path.join(path, EXPERIMENT_STATE_FILE)
        if not os.path.isfile(state_file):
            return os.path.isfile(os.path.join(path, TUNER_FILE))
        from tunesmith.tune._run import read_experiment_state

        try:
            read_experiment_state(path)
        except ValueError:
            return False
        return True

    @classmethod
    def restore(
        cls,
        path: str | os.PathLike,
        trainable: Any,
        resume_unfinished: bool = True,
        resume_errored: bool = False,
        restart_errored: bool = False,
        param_space: dict | None = None,
        storage_filesystem=None,
        _resume_config=None,
    ) -> "Tuner":
        """Continues an interrupted experiment from its directory.

        Finished trials are kept; unfinished ones resume from their latest
        checkpoint; errored ones resume (``resume_errored``) or start over
        (``restart_errored``) if asked.

        Args:
            path: The experiment directory.
            trainable: The same trainable the experiment ran (it is not stored).
            resume_unfinished: Resume trials that had not finished.
            resume_errored: Resume errored trials from their latest checkpoint.
            restart_errored: Start errored trials over from scratch.
            param_space: The param space again, with the same structure, to give new objects in place
                of the saved ones (objects that do not outlive a session, such as object references
                on a cluster): trials yet to finish and trials yet to be created use the new values
                (a constant is replaced; a ``grid_search`` or ``tune.choice`` entry by the new entry at
                the same position; sampled values stay).
            storage_filesystem: The ``pyarrow.fs`` filesystem of ``path``.
        """
        path = os.fspath(path)
        if "://" not in path and (storage_filesystem is None or type(storage_filesystem).__name__ == "LocalFileSystem"):
            path = os.path.abspath(os.path.expanduser(path))
        if not cls.can_restore(path, storage_filesystem):
            if "://" not in path and storage_filesystem is None and os.path.isfile(
                os.path.join(path, EXPERIMENT_STATE_FILE)
            ):
                from tunesmith.tune._run import read_experiment_state

                read_experiment_state(path)  # raises with the file and what is wrong with it
            raise ValueError(
                f"No experiment to restore at {path!r}: it has no {EXPERIMENT_STATE_FILE}. "
                "Pass the experiment directory (<storage_path>/<name>)."
            )
        from tunesmith.train._config import space_of_config_objects

        saved = _read_tuner_file(path, storage_filesystem)
        param_space = space_of_config_objects(param_space)
        _check_same_experiment(saved, trainable, param_space, path)
        tune_config = saved.get("tune_config") or TuneConfig()
        run_config = saved.get("run_config") or RunConfig()
        run_config.name = os.path.basename(path.rstrip("/"))
        run_config.storage_path = os.path.dirname(path.rstrip("/"))
        if storage_filesystem is not None:
            run_config.storage_filesystem = storage_filesystem
        tuner = cls(
            trainable,
            param_space=param_space if param_space is not None else saved.get("param_space"),
            tune_config=tune_config,
            run_config=run_config,
            _restore_path=path,
            _restore_options={
                "resume_unfinished": resume_unfinished,
                "resume_errored": resume_errored,
                "restart_errored": restart_errored,
                # the saved space, whose values a re-specified param_space replaces
                "respecified": saved.get("param_space") if param_space is not None else None,
            },
        )
        tuner._input.resources_per_trial = saved.get("resources_per_trial")
        return tuner


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


def _trainer_run_config(trainable) -> RunConfig:
    rc = getattr(trainable, "run_config", None)
    return rc if isinstance(rc, RunConfig) else RunConfig()
