"""The experiment's trials, indexed by status, with the transitions that are under way."""
from __future__ import annotations

from tunesmith.tune.experiment.trial import Trial

STATUSES = (Trial.PENDING, Trial.RUNNING, Trial.PAUSED, Trial.TERMINATED, Trial.ERROR)

# What the controller asked a RUNNING trial to do, until its worker confirms.
STOP = "stop"
PAUSE = "pause"  # checkpoint, then resume from that checkpoint
PAUSE_KEEP = "pause_keep"  # resume from the checkpoint it already has


class TrialTable:
    """All trials of one experiment in creation order, plus an index by status.

    Lookups by status are O(1) per trial returned, so per-result work does not
    grow with the number of trials. ``stopping`` holds RUNNING trials that were
    asked to stop or pause (:data:`STOP`, :data:`PAUSE`, :data:`PAUSE_KEEP`) and
    whose worker has not confirmed yet.

    ``resources_changed`` turns True whenever a trial becomes PENDING or PAUSED
    (or whoever frees resources sets it), telling the loop to try starting trials.

    Example:
        >>> table = TrialTable()
        >>> trial = Trial("f", {}, trial_id="t_00000")
        >>> table.add(trial)
        >>> table.set_status(trial, Trial.RUNNING)
        >>> table.count(Trial.RUNNING), table.num_live()
        (1, 1)
    """

    def __init__(self) -> None:
        self.trials: list[Trial] = []
        self._created: dict[Trial, int] = {}  # each trial's place in creation order
        self.by_status: dict[str, dict[Trial, None]] = {s: {} for s in STATUSES}
        self.stopping: dict[Trial, str] = {}
        self.resources_changed = True

    def add(self, trial: Trial) -> None:
        """Adds a trial in whatever status it has."""
        self._created[trial] = len(self.trials)
        self.trials.append(trial)
        self.by_status[trial.status][trial] = None

    def set_status(self, trial: Trial, status: str) -> None:
        """Moves a trial to ``status`` and keeps the index in step."""
        self.by_status[trial.status].pop(trial, None)
        trial.set_status(status)
        self.by_status[status][trial] = None
        if status in (Trial.PENDING, Trial.PAUSED):
            self.resources_changed = True

    def with_status(self, status: str) -> dict[Trial, None]:
        """The trials in ``status``, oldest first (a live view: copy it before changing statuses)."""
        return self.by_status[status]

    def count(self, status: str) -> int:
        return len(self.by_status[status])

    def first_with_status(self, status: str) -> Trial | None:
        """The trial in ``status``, not being stopped or paused, that came first: the first to become
        PENDING, and of PAUSED trials the first created (as on Ray, where a scheduler's paused
        trials, MedianStoppingRule's below-median ones say, wait behind the others)."""
        if status == Trial.PAUSED:
            created = self._created
            return min((t for t in self.by_status[status] if t not in self.stopping),
                       key=created.__getitem__, default=None)
        for trial in self.by_status[status]:
            if trial not in self.stopping:
                return trial
        return None

    def num_live(self) -> int:
        """Trials that are not finished (PENDING, RUNNING or PAUSED)."""
        s = self.by_status
        return len(s[Trial.PENDING]) + len(s[Trial.RUNNING]) + len(s[Trial.PAUSED])

    def live(self) -> list[Trial]:
        return [t for t in self.trials if not t.is_finished()]
