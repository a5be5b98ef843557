"""Ending the processes that a trial started when its worker dies or is killed.

Each worker leads a process group of its own (see ``worker.lead_own_process_group``), and
what its trial starts joins that group. A worker that exits normally ends its leftover
children itself; one that crashed, was killed by the out-of-memory killer or was ended by
the driver cannot, and its children would outlive the experiment, holding memory, GPUs or
ports that the trial's retry needs. The driver ends them here: SIGTERM first, SIGKILL for
those still there after a grace period.

Processes are addressed through pidfds where the platform has them, so a process number
reused in the meantime is never signalled.
"""
from __future__ import annotations

import os
import signal
import sys
import time

_GRACE_S = 1.0


def group_members(pgid: int) -> list[int]:
    """The live processes of the process group ``pgid`` but its leader (Linux; empty elsewhere)."""
    members = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit() or name == str(pgid):
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 2 and fields[2] == str(pgid).encode() and fields[0] != b"Z":
            members.append(int(name))
    return members


class _Target:
    __slots__ = ("pid", "pidfd")

    def __init__(self, pid: int):
        self.pid = pid
        self.pidfd = None
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                self.pidfd = pidfd_open(pid)
            except OSError:
                pass  # gone already, or pidfds unsupported: plain kill below

    def signal(self, signum: int) -> bool:
        """Sends ``signum``; False when the process is gone."""
        try:
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, signum)
            else:
                os.kill(self.pid, signum)
            return True
        except OSError:  # gone (or no longer ours to signal)
            return False

    def alive(self) -> bool:
        if self.pidfd is not None:  # readable once the process has exited
            import select

            return not select.select([self.pidfd], [], [], 0)[0]
        try:
            os.kill(self.pid, 0)
            return True
        except OSError:
            return False

    def close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


class LeftoverReaper:
    """Ends the processes a dead worker's trial left running, without blocking the driver."""

    def __init__(self, grace_s: float = _GRACE_S):
        self.grace_s = grace_s
        self._pending: list[tuple[float, list[_Target]]] = []

    def end_group(self, pgid: int, what: str, also: set[int] = frozenset()) -> list[int]:
        """Asks every process of the group led by the worker ``pgid`` (and the processes ``also``)
        to end; returns their pids.

        The worker itself is the backend's to end. ``what`` names its trial in the message
        that says which processes were ended.
        """
        targets = []
        for pid in sorted(set(group_members(pgid)) | set(also)):
            target = _Target(pid)
            if target.signal(signal.SIGTERM):
                targets.append(target)
            else:
                target.close()
        if not targets:
            return []
        self._pending.append((time.monotonic() + self.grace_s, targets))
        pids = sorted(t.pid for t in targets)
        try:
            print(f"tunesmith: ending {len(pids)} process(es) that {what} started and left running "
                  f"(pids {pids}).", file=sys.stderr, flush=True)
        except (OSError, ValueError):
            pass
        return pids

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def seconds_to_next(self) -> float:
        """How long until the next SIGKILL is due (0 when one is due now)."""
        if not self._pending:
            return float("inf")
        return max(0.0, min(due for due, _ in self._pending) - time.monotonic())

    def escalate(self, force: bool = False) -> None:
        """Kills the processes whose grace period is over (all of them with ``force``)."""
        now = time.monotonic()
        keep = []
        for due, targets in self._pending:
            if force or now >= due:
                for target in targets:
                    target.signal(signal.SIGKILL)
                    target.close()
            else:
                keep.append((due, targets))
        self._pending = keep

    def close(self) -> None:
        """Gives the pending processes what is left of their grace period, then kills them."""
        if self._pending:
            last = max(due for due, _ in self._pending)
            while time.monotonic() < last and any(t.alive() for _, ts in self._pending for t in ts):
                time.sleep(0.02)
        self.escalate(force=True)
