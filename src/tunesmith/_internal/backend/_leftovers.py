"""Ending the processes that a trial started when its worker dies or is killed.

Each worker leads a process group of its own (see ``worker.lead_own_process_group``), and
what its trial starts joins that group. A worker that exits normally ends its leftover
children itself; one that crashed, was killed by the out-of-memory killer or was ended by
the driver cannot, and its children would outlive the experiment, holding memory, GPUs or
ports that the trial's retry needs. The driver ends them here: SIGTERM first, SIGKILL for
those still there after a grace period.

Processes are addressed through pidfds where the platform has them, so a process number
reused in the meantime is never signalled.

A driver that is killed (SIGKILL, the out-of-memory killer) ends nothing: its workers die with
it (PDEATHSIG) and their trials' processes would live on. ``DriverSentinel`` is a small process
of its own (this module run as a script) that the driver tells of each worker's group; when the
driver goes without saying goodbye, it ends those groups as the driver would have.
"""
from __future__ import annotations

import os
import signal
import sys
import time

_GRACE_S = 1.0


def _members(pgids: set[int]) -> list[tuple[int, int]]:
    """``(pid, pgid)`` of the live processes of the process groups ``pgids`` but their leaders.

    Raises:
        OSError: /proc cannot be read (not Linux).
    """
    encoded = {str(g).encode(): g for g in pgids}
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in pgids:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 2 and fields[2] in encoded and fields[0] != b"Z":
            members.append((int(name), encoded[fields[2]]))
    return members


def group_members(pgids: int | set[int]) -> list[int]:
    """The live processes of the process groups ``pgids`` but their leaders (Linux; empty elsewhere)."""
    wanted = {pgids} if isinstance(pgids, int) else set(pgids)
    if not wanted:
        return []
    try:
        return [pid for pid, _ in _members(wanted)]
    except OSError:
        return []


def _live(pid: int) -> bool:
    """Whether ``pid`` runs (is not a zombie waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rfind(b")") + 2:].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks after boot), or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return int(stat[stat.rfind(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def groups_with_members(pgids: set[int]) -> set[int]:
    """Which of the process groups ``pgids`` still have a live process other than their leader (Linux)."""
    if not pgids:
        return set()
    try:
        return {pgid for _, pgid in _members(set(pgids))}
    except OSError:
        return set(pgids)  # cannot tell: taken as still there


def groups_still_ours(leaders: dict[int, int | None]) -> set[int]:
    """The process groups of ``{leader pid: its start time}`` whose number no other process took since:
    a leader that is gone (a group lives on in its members) or still the same process."""
    ours = set()
    for pid, started in leaders.items():
        now = start_time(pid)
        if now is None or now == started:
            ours.add(pid)
    return ours


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

            poller = select.poll()
            poller.register(self.pidfd, select.POLLIN)
            return not poller.poll(0)
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
        # (SIGKILL due at, the groups, the processes asked to end)
        self._pending: list[tuple[float, set[int], list[_Target]]] = []

    def end_group(self, pgid: int | set[int], what: str, also: set[int] = frozenset()) -> list[int]:
        """Asks every process of the groups led by the workers ``pgid`` (and the processes ``also``)
        to end; returns their pids.

        The workers themselves are the backend's to end. ``what`` names their trial in the message
        that says which processes were ended.
        """
        pgids = {pgid} if isinstance(pgid, int) else set(pgid)
        targets = []
        for pid in sorted(set(group_members(pgids)) | {p for p in also if _live(p)}):
            target = _Target(pid)
            if target.signal(signal.SIGTERM):
                targets.append(target)
            else:
                target.close()
        if not targets:
            return []
        self._pending.append((time.monotonic() + self.grace_s, pgids, targets))
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

    def pending_groups(self) -> set[int]:
        """The process groups whose processes are being ended."""
        return {pgid for _, pgids, _ in self._pending for pgid in pgids}

    def seconds_to_next(self) -> float:
        """How long until the next SIGKILL is due (0 when one is due now)."""
        if not self._pending:
            return float("inf")
        return max(0.0, min(due for due, _, _ in self._pending) - time.monotonic())

    def escalate(self, force: bool = False) -> None:
        """Kills the processes whose grace period is over (all of them with ``force``), and whatever
        joined their groups meanwhile (a ``multiprocessing.Pool`` replaces the workers it loses)."""
        now = time.monotonic()
        keep = []
        for due, pgids, targets in self._pending:
            if not (force or now >= due):
                keep.append((due, pgids, targets))
                continue
            for attempt in range(5):
                for target in targets:
                    target.signal(signal.SIGKILL)
                    target.close()
                targets = [_Target(pid) for pid in group_members(pgids)] if attempt < 4 else []
                if not targets:
                    break
        self._pending = keep

    def close(self) -> None:
        """Gives the pending processes what is left of their grace period, then kills them."""
        if self._pending:
            last = max(due for due, _, _ in self._pending)
            while time.monotonic() < last and any(t.alive() for _, _, ts in self._pending for t in ts):
                time.sleep(0.02)
        self.escalate(force=True)


class DriverSentinel:
    """The driver's side of the sentinel process (Linux): started with the first worker it is told of."""

    def __init__(self) -> None:
        self._proc = None
        self._failed = not sys.platform.startswith("linux")

    def watch(self, pid: int, started: int | None) -> None:
        """Tells the sentinel of a worker that leads a process group (``started``: its start time)."""
        if self._failed:
            return
        import subprocess

        try:
            if self._proc is None:
                # A session of its own: the terminal's Ctrl+C or hang-up that ends the driver spares it.
                # This file run as a script, without site-packages (-S) or the environment's settings (-E):
                # it needs only the standard library, and starts in a few milliseconds.
                self._proc = subprocess.Popen(
                    [sys.executable, "-S", "-E", os.path.abspath(__file__), str(os.getpid())],
                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, close_fds=True, start_new_session=True,
                )
            self._send(f"{pid} {started if started is not None else -1}\n")
        except (OSError, ValueError):
            self._failed = True  # no sentinel: a killed driver's trials may leave processes running

    def forget(self, pid: int) -> None:
        """The group of worker ``pid`` ended for good: its number may go to an unrelated process."""
        if self._proc is not None and not self._failed:
            try:
                self._send(f"-{pid}\n")
            except (OSError, ValueError):
                self._failed = True

    def _send(self, line: str) -> None:
        self._proc.stdin.write(line.encode())
        self._proc.stdin.flush()

    def close(self) -> None:
        """Says goodbye (the driver ends its workers' groups itself) and lets the sentinel go."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.stdin.write(b"exit\n")
            proc.stdin.close()
            proc.wait(timeout=5)
        except Exception:
            proc.kill()
            proc.wait()


def _sentinel_main(driver: int) -> None:
    """Reads ``<pid> <start time>`` (and ``-<pid>``: forget it) lines until ``exit`` (the driver ended
    normally), or until the driver ``driver`` is gone (its pidfd, or the end of the input where there are
    no pidfds; a process the driver forked may hold the pipe open): then ends every process still in
    those workers' groups."""
    import select
    import signal as _signal

    for sig in (_signal.SIGINT, _signal.SIGHUP):
        _signal.signal(sig, _signal.SIG_IGN)
    leaders: dict[int, int | None] = {}
    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)
    poller = select.poll()
    poller.register(stdin, select.POLLIN)
    pidfd = None
    if os.getppid() == driver and hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(driver)
            poller.register(pidfd, select.POLLIN)
        except OSError:
            pass
    pending, gone = b"", os.getppid() != driver
    while not gone:
        ready = {fd for fd, _ in poller.poll()}
        gone = pidfd in ready
        try:
            data = os.read(stdin, 65536)
        except BlockingIOError:
            data = None
        if data == b"":
            gone = True
        pending += data or b""
        *lines, pending = pending.split(b"\n")
        for line in lines:
            parts = line.split()
            if parts == [b"exit"]:
                return
            try:
                if len(parts) == 1 and parts[0].startswith(b"-"):
                    leaders.pop(int(parts[0][1:]), None)
                else:
                    started = int(parts[1])
                    leaders[int(parts[0])] = None if started < 0 else started
            except (IndexError, ValueError):
                continue
    reaper = LeftoverReaper()
    reaper.end_group(groups_still_ours(leaders), "the trials of a driver that ended without stopping them")
    reaper.close()


if __name__ == "__main__":
    _sentinel_main(int(sys.argv[1]))
