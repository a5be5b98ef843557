"""The ``SearchAlgorithm`` interface the driver asks for new trials."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrialSuggestion:
    """A configuration the search algorithm wants run as a new trial.

    Attributes:
        config: The fully resolved configuration handed to the trainable.
        evaluated_params: The sampled parameters, flattened with ``/`` (used in
            directory names and the progress table).
        experiment_tag: ``"<index>_<param>=<value>,..."`` as Ray writes it.
        trial_id: The id the suggestion was made for (made up when ``next_trial()``
            was called without one); pass it to ``on_trial_complete``.
    """

    config: dict[str, Any]
    evaluated_params: dict[str, Any] = field(default_factory=dict)
    experiment_tag: str = ""
    trial_id: str | None = None


def new_trial_id() -> str:
    """An id for a suggestion asked for without one (``next_trial()``), as Ray's trials have."""
    import uuid

    return uuid.uuid4().hex[:8]


def as_experiments(value: Any) -> list | None:
    """The ``Experiment`` objects in ``value`` (one, or a list of them), or None for a param space."""
    from tunesmith.tune.experiment.experiment import Experiment

    if isinstance(value, Experiment):
        return [value]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, Experiment) for v in value):
        return list(value)
    return None


class SearchAlgorithm:
    """Hands the driver configurations to run.

    The driver calls :meth:`set_search_properties` and
    :meth:`add_configurations` once, then :meth:`next_trial` whenever it can
    start a trial, until :meth:`is_finished` is True. ``next_trial`` returns
    None when nothing can be suggested right now (for example a concurrency
    limit) but more may come later.
    """

    _finished = False
    _metric: str | None = None
    _mode: str | None = None

    @property
    def metric(self) -> str | None:
        return self._metric

    @property
    def mode(self) -> str | None:
        return self._mode

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec) -> bool:
        """Passes TuneConfig's metric and mode and the param space; False if they conflict."""
        return True

    def add_configurations(self, param_space: dict, num_samples: int = 1, **spec) -> None:
        """Tells the algorithm the search space and how many samples to draw.

        ``param_space`` may also be an ``Experiment`` (or a list of them), whose
        config and ``num_samples`` are used.
        """
        raise NotImplementedError

    def next_trial(self, trial_id: str | None = None) -> TrialSuggestion | None:
        """Returns a configuration for trial ``trial_id``, or None if none is ready now.

        Without ``trial_id``, an id is made up and returned as ``suggestion.trial_id``.
        """
        raise NotImplementedError

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Called with each intermediate result of a trial."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Called when a trial has finished, with its last result or ``error=True``."""

    def is_finished(self) -> bool:
        return self._finished

    def set_finished(self) -> None:
        self._finished = True

    @property
    def total_samples(self) -> int | None:
        """How many trials the algorithm will create in all, if known."""
        return None

    def save_to_dir(self, dirpath: str, session_str: str = "default") -> None:
        """Saves the algorithm's state into the experiment directory."""

    def restore_from_dir(self, dirpath: str) -> None:
        """Restores the state written by :meth:`save_to_dir`."""

    def has_checkpoint(self, dirpath: str) -> bool:
        return False
