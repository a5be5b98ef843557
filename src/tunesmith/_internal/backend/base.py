"""The contract between the driver's controller and whatever runs trials.

The controller (:mod:`tunesmith.tune.execution`) talks to exactly one object,
an :class:`ExecutorBackend`, and to nothing else that knows about processes,
actors or time. Three backends implement it:

- ``LocalExecutor`` (:mod:`tunesmith._internal.backend.local`): worker processes
  on this machine; the default.
- ``SimulatedBackend`` (:mod:`tunesmith._internal.backend.simulated`): scripted
  trials on a virtual clock; no process at all.
- a Ray backend: actors on a Ray cluster, chosen by ``tunesmith.init(address=...)``.

Whatever the transport, what travels between the controller and a trial is the
vocabulary of :mod:`tunesmith._internal.protocol`: the controller sends
``P.CONTINUE``, ``P.PAUSE``, ``(P.STOP, save)`` and ``P.SAVE``; the backend hands
back ``P.RESULT``, ``P.SAVED``, ``P.DONE``, ``P.PAUSED`` and ``P.ERROR`` messages
wrapped in :class:`TrialEvent`.

The life of a trial on a backend::

    has_resources(r) -> True        the controller may start it now
    start_trial(trial, spec, ...)   resources are held from here on
    wait() -> TrialEvent(trial, (P.RESULT, ...))
    send(trial, P.CONTINUE)         ... one answer per result ...
    wait() -> TrialEvent(trial, (P.DONE | P.PAUSED | P.ERROR, ...))
    release_trial(trial)            resources are free again

See ``docs/backends.md`` for how to add a backend.
"""
from __future__ import annotations

import abc
import time
from typing import Any, NamedTuple


class TrialEvent(NamedTuple):
    """One message from a trial, as :meth:`ExecutorBackend.wait` returns it.

    Attributes:
        trial: The ``Trial`` the message is about (the object given to ``start_trial``).
        message: A protocol tuple whose first item names it: ``(P.RESULT, metrics,
            checkpoint_dir_name)``, ``(P.SAVED, checkpoint_dir_name)``, ``(P.DONE,
            return_value, checkpoint_dir_name)``, ``(P.PAUSED, checkpoint_dir_name)`` or
            ``(P.ERROR, traceback_text, pickled_exception[, phase])``.
    """

    trial: Any
    message: tuple


class WorkerLocation(NamedTuple):
    """Where a trial runs, as its results report it (``hostname``, ``node_ip``, ``pid``)."""

    hostname: str
    node_ip: str
    pid: int | None


def _driver_host() -> tuple[str, str]:
    from tunesmith._internal.host import host_identity

    return host_identity()


class ExecutorBackend(abc.ABC):
    """Runs trials somewhere and hands back what they send, as protocol messages.

    The controller knows nothing of processes: it asks whether a trial's resources
    fit, starts it with a :class:`~tunesmith._internal.protocol.TrialSpec`, answers its
    results with protocol messages and waits for :class:`TrialEvent` s. A backend
    knows nothing of searchers or schedulers.

    Every method is called from the controller's one thread. Trials are the
    controller's ``Trial`` objects, used as keys (hashable, compared by identity).

    Attributes:
        total: What the backend can hand out to trials in all, e.g.
            ``{"CPU": 8.0, "GPU": 1.0, "memory": ...}`` plus custom resources.
        available: What is not held by this experiment's trials now (the same keys).
        place: Where the resources are, as error messages name it.
        more_resources_hint: How a user makes more of them available, for the same messages.

    Errors: a backend never raises out of ``send``/``wait`` for a trial whose
    worker died; it reports the death as a ``P.ERROR`` event for that trial
    (``P.STARTUP_PHASE`` as fourth item when the trial's code never ran), at once,
    not after a timeout.

    Example:
        >>> from tunesmith._internal.backend.simulated import SimulatedBackend
        >>> backend = SimulatedBackend(total_resources={"CPU": 4})
        >>> isinstance(backend, ExecutorBackend), backend.can_ever_fit({"CPU": 8})
        (True, False)
    """

    total: dict[str, float]
    available: dict[str, float]
    place = "this machine"
    more_resources_hint = "declare more with tunesmith.init(num_cpus=..., num_gpus=..., resources=...)"

    # -- resources ---------------------------------------------------------------------
    @abc.abstractmethod
    def can_ever_fit(self, resources: dict[str, float]) -> bool:
        """Whether ``resources`` (e.g. ``{"CPU": 2, "GPU": 0.5}``) fit in :attr:`total` at all.

        False makes the controller fail the experiment up front with an error
        that names the request and what the backend has.
        """

    @abc.abstractmethod
    def has_resources(self, resources: dict[str, float]) -> bool:
        """Whether a trial asking for ``resources`` can start now.

        True is a promise for the next :meth:`start_trial` call only; the
        resources are taken by ``start_trial``, not by this call.
        """

    def contended(self) -> bool:
        """True when resources may free up without an event of this experiment.

        (Other experiments share the machine or the cluster.) The controller then
        asks :meth:`has_resources` again every turn of its loop instead of only
        after one of its own trials released something.
        """
        return False

    def sharing_summary(self) -> str:
        """One sentence on who else holds resources, for the "no trial is running" warning."""
        return ""

    # -- trials ------------------------------------------------------------------------
    #: How many workers the run asks :meth:`prestart` for at most. Locally, workers past the
    #: first few are forked in milliseconds when needed; a remote worker (a Ray actor) takes
    #: seconds to boot, so such a backend boots one per CPU at once.
    max_prestart: int = 8

    def prestart(self, count: int, trainable_key: str | None = None, payload: bytes | None = None,
                 resources=None) -> None:
        """Optionally gets ``count`` workers ready before the first trial (a hint; may do nothing).

        With ``trainable_key``/``payload`` the workers may load the trainable ahead. ``resources``: the
        ``PlacementGroupFactory`` every trial asks for, when it is known before any config is (else None).
        """

    @abc.abstractmethod
    def start_trial(self, trial: Any, spec: Any, trainable_key: str, payload: bytes) -> None:
        """Takes the trial's resources and starts it on a worker.

        Args:
            trial: The controller's ``Trial``; ``trial.placement_group_factory`` says
                what it needs (called only after :meth:`has_resources` said yes).
            spec: A :class:`~tunesmith._internal.protocol.TrialSpec`.
            trainable_key: Identifies the trainable; a worker that already loaded it
                is not sent ``payload`` again.
            payload: The cloudpickled trainable.

        A worker that cannot be started, or dies before the trial runs, is reported
        through :meth:`wait` as ``(P.ERROR, text, None, P.STARTUP_PHASE)``, never raised.
        """

    @abc.abstractmethod
    def send(self, trial: Any, message: Any) -> None:
        """Sends a protocol message to a running trial without waiting for a reply.

        The messages are ``P.CONTINUE`` (the answer to a result), ``P.PAUSE``,
        ``(P.STOP, save)`` and ``P.SAVE``. A trial that is not running (already
        released, or its worker died) is ignored silently: its death arrives as an
        event.
        """

    @abc.abstractmethod
    def call(self, trial: Any, message: Any) -> tuple:
        """Sends a message to a trial that is waiting for the answer to a result, and returns its reply.

        Used for ``P.SAVE`` (reply ``(P.SAVED, checkpoint_dir_name or None)``) while
        the controller processes that trial's result.

        Raises:
            KeyError: the trial is not running on this backend.
            EOFError, OSError: the worker died before it replied.
        """

    @abc.abstractmethod
    def release_trial(self, trial: Any, reuse: bool = True) -> None:
        """Frees the trial's resources and its worker (kept for another trial when ``reuse``).

        Called once after the trial's last event (``P.DONE``, ``P.PAUSED``,
        ``P.ERROR``) or after :meth:`kill_trial_worker`; releasing a trial that holds
        nothing does nothing.
        """

    @abc.abstractmethod
    def kill_trial_worker(self, trial: Any) -> None:
        """Ends the trial's worker by force (it did not stop in time); no event follows."""

    @abc.abstractmethod
    def wait(self, timeout: float | None) -> list[TrialEvent]:
        """Waits up to ``timeout`` seconds (``None``: without limit) for trials' messages.

        Returns every event that is ready, in the order each trial sent them, and an
        empty list when the timeout passed first. With no trial running it still
        waits for the timeout (the controller's next timer), so the controller never
        spins. The timeout is in the backend's clock (:meth:`time`).
        """

    def worker_location(self, trial: Any) -> WorkerLocation:
        """Where the trial runs: the host, its IP and the worker's pid (results report them)."""
        host = getattr(self, "_driver_host", None)
        if host is None:
            host = self._driver_host = _driver_host()
        return WorkerLocation(host[0], host[1], self.worker_pid(trial))

    def worker_pid(self, trial: Any) -> int | None:
        """The process id of the trial's worker, or None where there is none."""
        return None

    def time(self) -> float:
        """The clock the controller's timers read (seconds since the epoch; virtual when simulated)."""
        return time.time()

    @abc.abstractmethod
    def shutdown(self) -> None:
        """Ends every worker (killing those still in a trial) and frees everything; idempotent."""
