"""The interface between the driver and whatever runs trials."""
from __future__ import annotations

from typing import Any


class ExecutorBackend:
    """Starts trials on workers and returns what the workers send.

    The driver knows nothing of processes: it asks whether a trial's resources
    fit, starts it with a spec, sends it protocol messages and waits for events.
    """

    def can_ever_fit(self, resources: dict[str, float]) -> bool:
        raise NotImplementedError

    def has_resources(self, resources: dict[str, float]) -> bool:
        raise NotImplementedError

    def start_trial(self, trial, spec, trainable_key: str, payload: bytes) -> None:
        raise NotImplementedError

    def send(self, trial, message: Any) -> None:
        raise NotImplementedError

    def release_trial(self, trial, reuse: bool = True) -> None:
        raise NotImplementedError

    def wait(self, timeout: float | None) -> list[tuple[Any, tuple]]:
        raise NotImplementedError

    def worker_pid(self, trial) -> int | None:
        return None

    def contended(self) -> bool:
        """True when resources may free up without an event of this experiment (others share them)."""
        return False

    def shutdown(self) -> None:
        raise NotImplementedError
