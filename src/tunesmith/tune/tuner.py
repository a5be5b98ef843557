"""``Tuner``: the entry point that runs an experiment and returns a ``ResultGrid``."""
from __future__ import annotations

import os
from typing import Any

from tunesmith.tune.impl.tuner_internal import TunerInternal
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
        _tuner_internal: TunerInternal | None = None,
    ):
        self._local_tuner = _tuner_internal if _tuner_internal is not None else TunerInternal(
            trainable=trainable, param_space=param_space, tune_config=tune_config, run_config=run_config,
        )

    def fit(self):
        """Runs the experiment and returns a :class:`~tunesmith.tune.ResultGrid`.

        A trial that fails does not raise here: its error is in the ResultGrid.
        """
        return self._local_tuner.fit()

    def get_results(self):
        """Returns the ResultGrid of the last ``fit()`` (or reads it back from a restored experiment)."""
        return self._local_tuner.get_results()

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
        return cls(_tuner_internal=TunerInternal(
            restore_path=path,
            storage_filesystem=storage_filesystem,
            resume_config={"resume_unfinished": resume_unfinished, "resume_errored": resume_errored,
                           "restart_errored": restart_errored},
            trainable=trainable,
            param_space=param_space,
        ))
