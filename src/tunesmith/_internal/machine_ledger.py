"""Sharing one machine between experiments that run at the same time.

Each experiment process keeps one entry (a small file) in a directory private
to the user. The entry says what the experiment's trials hold, the machine
totals the experiment was given, and, while it waits, the request it waits for
and since when. ``docs/machine_sharing.md`` states the same rules and argues
them at more length; the two are kept in step.

Who may start a trial, and when
-------------------------------
An experiment that wants to start a trial first checks its own bookkeeping: the
request must fit in its totals minus what its own trials hold. If it does not,
the experiment is not waiting for anyone else and records no wait. If it does,
it writes its holdings with the trial included to its entry, then looks for
other entries; if there are none, it starts the trial (no lock, no reads). A
newcomer that reads the entry after that look sees the trial, so nothing is
overcommitted. Otherwise, under an exclusive lock on the directory, it reads
every entry (the claim just written is replaced by the decision) and starts
the trial only if

1. the request fits in what nobody holds (its totals minus what all entries
   hold, per resource kind), and
2. after setting aside the requests of every live waiter that has priority
   over it, the request still fits, per kind it asks for; a request for GPUs
   also defers to any waiter with priority that asks for GPUs, because GPUs
   are handed out by device, not by amount.

If it starts, its entry records the new holdings and its wait is cleared, all
before the lock is released. If not, its entry records the wait: the request,
when the wait began (kept while it keeps waiting) and when it last asked.

Priority is a strict total order on waiters: lower *dominant share* first
(the largest, over resource kinds other than memory, of what the experiment
holds divided by its own total of that kind), then the earlier start of the
wait, then the entry's name. Values of 0 count as nothing held.

A wait is *live* while its experiment's process lives (pid and process start
time, so a reused pid does not count) and it asked within the last
``WAIT_TTL_S`` seconds; a driver asks at every turn of its event loop while a
trial waits, so only a stuck or finished wait lapses. Entries of dead
processes are removed by whoever reads them.

With what share
---------------
The lowest waiter is never held back by rule 2, and everyone else leaves room
for it, so freed resources drain towards it. This is dominant-resource
fairness: experiments that keep trials waiting end up with equal dominant
shares, within one trial.

Why some experiment always makes progress
-----------------------------------------
Assume every trial ends within ``D`` seconds of its start (or its experiment
dies), a waiting experiment asks again at least every ``R`` seconds, and dead
entries are noticed within ``A`` seconds. Suppose some live experiment waits
at time ``t`` and no trial starts anywhere during ``[t, t + D + R +
max(WAIT_TTL_S, A)]``. Without starts, holdings only shrink: after ``D`` no
trial runs, after ``max(WAIT_TTL_S, A)`` every remaining wait is live. All
waiters then hold nothing, so the order is by wait start and name, and has a
least element ``M`` (there is one waiter at least: the experiment that waited
at ``t`` stops waiting only by starting a trial, by no longer wanting one, or
by dying). ``M``'s request fit its own totals when it recorded the wait, and
nothing is held, so rule 1 holds; nobody has priority over ``M``, so rule 2
holds. ``M`` starts its trial at its next ask, a contradiction. Hence some
experiment starts a trial within ``D + R + max(WAIT_TTL_S, A)``: no deadlock.
No experiment starves either: while ``M`` waits, every other start leaves
``M``'s request free, and the experiments ahead of ``M`` change only when
their share falls below ``M``'s.

An experiment that frees resources (a trial ends, it stops waiting, it exits)
writes a byte to the others' ``.wake`` FIFOs, so a driver blocked on its
trials' results (:class:`WakePoller`) asks again at once rather than at its
next timeout.

Cost when an experiment runs alone: one ``stat`` of the directory per check
(its modification time changes when another experiment appears or leaves) and
one ``pwrite`` of the entry when its holdings change; no lock, no reads, no
wakes.

The directory (``TUNESMITH_LEDGER_DIR``, default ``<tmp>/tunesmith-<uid>``)
is created with mode 0700; an existing one is used only if it is a real
directory owned by this user with no group or other permissions, so another
user cannot plant entries. Entry files are 0600.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

logger = logging.getLogger(__name__)

_EPS = 1e-9
WAIT_TTL_S = 3.0  # a wait not refreshed for this long no longer counts
ALIVE_RECHECK_S = 1.0  # how long a liveness check of another entry is trusted
LOCK_WAIT_S = 5.0  # the lock is held for milliseconds: longer means its holder is stopped
_RECORD = 512  # bytes; an entry is rewritten in place with one pwrite, padded with spaces
_PREFIX, _SUFFIX, _WAKE = "exp-", ".json", ".wake"


class LedgerDirectoryError(OSError):
    """The ledger directory exists but is not private to this user, so it is not used."""


def ledger_dir() -> str:
    """The directory the ledger files live in (per user)."""
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    given = os.environ.get("TUNESMITH_LEDGER_DIR")
    if given:  # "~/x" as a .env file or docker -e gives it; a relative one is taken from here
        return os.path.abspath(os.path.expanduser(given))
    return os.path.join(tempfile.gettempdir(), f"tunesmith-{uid}")


def ensure_private_directory(path: str) -> None:
    """Creates ``path`` with mode 0700, or checks that the existing one is private to this user.

    Raises:
        LedgerDirectoryError: ``path`` is a symbolic link or not a directory, belongs to
            another user, or grants permissions to group or others.
    """
    parent = os.path.dirname(os.path.abspath(path))
    try:
        if not os.path.isdir(parent):
            os.makedirs(parent)  # raises when a part of the path is a file
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
    except OSError as exc:
        raise LedgerDirectoryError(
            f"the machine ledger directory {path} cannot be made ({exc.strerror or exc}: a part of its path is "
            "not a directory, or cannot be written). Set TUNESMITH_LEDGER_DIR to a directory that only you "
            "can read and write (mode 0700)."
        ) from exc
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise LedgerDirectoryError(f"the machine ledger directory {path} cannot be read ({exc}). Set "
                                   "TUNESMITH_LEDGER_DIR to a directory of mode 0700.") from exc
    fix = ("Remove it, or set TUNESMITH_LEDGER_DIR to a directory that only you can read and write "
           "(mode 0700)")
    if stat.S_ISLNK(st.st_mode):
        problem = "is a symbolic link"
    elif not stat.S_ISDIR(st.st_mode):
        problem = "is not a directory"
    elif hasattr(os, "getuid") and st.st_uid != os.getuid():
        problem = f"belongs to uid {st.st_uid}, not to this user (uid {os.getuid()})"
    elif hasattr(os, "getuid") and st.st_mode & 0o077:
        problem = f"has mode {stat.S_IMODE(st.st_mode):04o}, so other users may read or write it"
        fix = f"Run `chmod 700 {path}`, or set TUNESMITH_LEDGER_DIR to a directory of mode 0700"
    else:
        lock = os.path.join(path, "ledger.lock")
        try:
            lock_st = os.lstat(lock)
        except FileNotFoundError:
            return
        if stat.S_ISREG(lock_st.st_mode):
            return
        problem, fix = f"holds {lock}, which is not a regular file", f"Remove {lock}"
    raise LedgerDirectoryError(f"the machine ledger directory {path} {problem}. {fix}.")


def dominant_share(held: dict[str, float], total: dict[str, float]) -> float:
    """The largest fraction of its own total that an experiment holds, over kinds other than memory."""
    share = 0.0
    for key, value in held.items():
        if key == "memory" or value <= _EPS:
            continue
        cap = total.get(key, 0.0)
        if cap > _EPS:
            share = max(share, value / cap)
    return share


@dataclass
class Entry:
    """One experiment's entry in the ledger, as read from its file.

    Args:
        name: The entry's name (its file name without ``.json``); breaks ties in priority.
        pid: The experiment's process id.
        started: When that process started (to tell a reused pid apart).
        held: Resources its trials hold, by kind.
        gpus: Fractions of GPU devices its trials hold, by device id.
        total: The machine totals the experiment was given.
        wait_request: What it waits for, or None when it does not wait.
        wait_since: When the wait began.
        wait_seen: When it last asked.
    """

    name: str
    pid: int = -1
    started: Optional[float] = None
    held: dict = field(default_factory=dict)
    gpus: dict = field(default_factory=dict)
    total: dict = field(default_factory=dict)
    wait_request: Optional[dict] = None
    wait_since: float = 0.0
    wait_seen: float = 0.0

    @property
    def share(self) -> float:
        return dominant_share(self.held, self.total)

    def waiting(self, now: float, ttl: float = WAIT_TTL_S) -> bool:
        """True while the entry waits and asked within ``ttl`` seconds of ``now``."""
        return self.wait_request is not None and now - self.wait_seen <= ttl

    def priority(self) -> tuple[float, float, str]:
        """The waiter's place in the order: lower dominant share, earlier wait, then name."""
        return (round(self.share, 9), self.wait_since, self.name)

    def to_json(self) -> str:
        wait = None
        if self.wait_request is not None:
            wait = {"request": self.wait_request, "since": self.wait_since, "seen": self.wait_seen}
        return json.dumps({"pid": self.pid, "started": self.started, "held": self.held, "gpus": self.gpus,
                           "total": self.total, "wait": wait})

    @classmethod
    def from_json(cls, name: str, text: str) -> Entry:
        data = json.loads(text)  # the padding after the record is whitespace
        if not isinstance(data, dict):
            raise ValueError("not an entry")
        wait = data.get("wait") or None
        return cls(
            name=name,
            pid=int(data.get("pid", -1)),
            started=data.get("started"),
            held=_positive(data.get("held") or {}),
            gpus=_positive(data.get("gpus") or {}),
            total={str(k): float(v) for k, v in (data.get("total") or {}).items()},
            wait_request=_positive(wait["request"]) if isinstance(wait, dict) else None,
            wait_since=float(wait.get("since", 0.0)) if isinstance(wait, dict) else 0.0,
            wait_seen=float(wait.get("seen", 0.0)) if isinstance(wait, dict) else 0.0,
        )


def _positive(values: dict) -> dict[str, float]:
    """Drops zero (and negative) amounts: holding ``{"CPU": 0.0}`` is holding nothing."""
    return {str(k): float(v) for k, v in values.items() if float(v) > _EPS}


def may_start(request: dict[str, float], free: dict[str, float], priority: tuple,
              waiters: list[Entry]) -> bool:
    """The sharing rule: may an experiment with ``priority`` start ``request`` now?

    Args:
        request: What the trial asks for, by kind.
        free: What nobody holds, by kind, in the asking experiment's totals.
        priority: The asking experiment's :meth:`Entry.priority`.
        waiters: The other experiments' live waits.
    """
    ahead = [w.wait_request or {} for w in waiters if w.priority() < priority]
    for key, value in request.items():
        if value <= _EPS:
            continue
        needed = value + sum(r.get(key, 0.0) for r in ahead)
        if free.get(key, 0.0) + _EPS < needed:
            return False
    if request.get("GPU", 0.0) > _EPS and any(r.get("GPU", 0.0) > _EPS for r in ahead):
        return False
    return True


def _lock_within(fd: int, seconds: float) -> bool:
    """Takes the exclusive lock on ``fd``, waiting at most ``seconds``; False when it could not."""
    import fcntl

    deadline, pause = time.monotonic() + seconds, 0.0005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.05)


def _process_start(pid: int) -> float | None:
    """When process ``pid`` started, or None if there is no such process (or it has ended and only
    waits to be reaped: a killed experiment whose parent has not called wait() yet)."""
    import psutil

    if not isinstance(pid, int) or pid <= 0:
        return None  # an entry without a usable pid (a damaged file) belongs to no process
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process.create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.Error:
        return -1.0  # exists but cannot be inspected: assume it is the one that wrote the entry


def process_alive(entry: Entry) -> bool:
    """True if the process that wrote ``entry`` still runs (a reused pid does not count)."""
    started = _process_start(entry.pid)
    if started is None:
        return False
    if started < 0 or entry.started is None:
        return True
    return abs(started - float(entry.started)) < 1.0


def _pid_from_name(name: str) -> int:
    try:
        return int(name[len(_PREFIX):].split("-", 1)[0])
    except ValueError:
        return -1


class MachineLedger:
    """This experiment's entry in the machine-wide ledger, and the rule for starting trials.

    Args:
        directory: Where the ledger files live (default: :func:`ledger_dir`); it must be
            private to this user (see :func:`ensure_private_directory`).
        total: The resources this experiment may use, by kind.
        clock: Wall-clock time in seconds (shared by all experiments on the machine).
        alive: Whether the process that wrote an entry still runs.
        name: The entry's name (default: ``exp-<pid>-<random>``).

    Example:
        >>> import tempfile, os
        >>> d = os.path.join(tempfile.mkdtemp(), "ledger")
        >>> a = MachineLedger(d, total={"CPU": 2.0})
        >>> b = MachineLedger(d, total={"CPU": 2.0})
        >>> a.try_start({"CPU": 2.0}, held={})
        True
        >>> b.try_start({"CPU": 1.0}, held={})  # nothing free: b waits, with priority
        False
        >>> a.update({"CPU": 1.0}, {})  # one of a's trials ends
        >>> a.try_start({"CPU": 1.0}, held={"CPU": 1.0})  # b holds less and waits: a defers
        False
        >>> b.try_start({"CPU": 1.0}, held={})
        True
        >>> a.close(); b.close()
    """

    def __init__(self, directory: str | None = None, total: dict[str, float] | None = None, *,
                 clock: Callable[[], float] = time.time, alive: Callable[[Entry], bool] = process_alive,
                 name: str | None = None, wakeable: bool = False, machine: dict[str, float] | None = None):
        self.directory = directory or ledger_dir()
        # What the machine has (detected): experiments that each declared less (tunesmith.init(num_cpus=1)
        # twice on a 2-CPU machine) still share all of it, each within its own total.
        self._machine = _positive(machine or {})
        ensure_private_directory(self.directory)
        self._clock = clock
        self._alive = alive
        self.name = name or f"{_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._path = os.path.join(self.directory, self.name + _SUFFIX)
        self._entry = Entry(self.name, pid=os.getpid(), started=_process_start(os.getpid()),
                            total=_positive(total or {}))
        self._lock_fd: int | None = None
        self._fd: int | None = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
        self._size = 0
        self._seen_mtime = -1
        self._said_gone = False
        self._said_lock_held = False
        self._lock_stuck = False  # its holder did not let go at the last turn
        self._names: list[str] = []
        self._others: list[Entry] = []
        self._alive_checked: dict[str, tuple[float, bool]] = {}
        self._parsed: dict[str, tuple[str, Entry]] = {}  # entries read before, by name, with their text
        self._wake_fds: tuple[int, int] | None = None
        if wakeable and hasattr(os, "mkfifo"):
            self._open_wake_fifo()
        self._write()

    def _open_wake_fifo(self) -> None:
        path = os.path.join(self.directory, self.name + _WAKE)
        try:
            os.mkfifo(path, 0o600)
            read_fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW)
            # A writer of our own keeps the FIFO from signalling end-of-file when wakers close it.
            self._wake_fds = (read_fd, os.open(path, os.O_WRONLY | os.O_NONBLOCK | _NOFOLLOW))
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(path)

    @property
    def wake_fd(self) -> int | None:
        """Readable when another experiment freed resources (with ``wakeable=True``); see :meth:`drain_wakes`."""
        return self._wake_fds[0] if self._wake_fds else None

    def drain_wakes(self) -> None:
        """Empties the wake FIFO, so that it is readable again only at the next wake."""
        if self._wake_fds:
            with contextlib.suppress(OSError):
                while os.read(self._wake_fds[0], 4096):
                    pass

    def _wake_others(self) -> None:
        """Tells the other experiments (as last listed: no reads here) that resources were freed."""
        for name in self._names:
            try:
                fd = os.open(os.path.join(self.directory, name + _WAKE), os.O_WRONLY | os.O_NONBLOCK | _NOFOLLOW)
            except OSError:  # not wakeable, gone, or no reader
                continue
            try:
                os.write(fd, b".")
            except OSError:  # full: a wake is already pending
                pass
            finally:
                os.close(fd)

    # -- our entry --------------------------------------------------------------------------
    def _write(self) -> None:
        if self._fd is None:
            return
        data = self._entry.to_json()
        # Padded to at least the longest record written, so no tail of an older one survives.
        self._size = max(self._size, -(-len(data) // _RECORD) * _RECORD)
        try:
            os.pwrite(self._fd, data.ljust(self._size).encode(), 0)
        except OSError:
            pass

    @property
    def held(self) -> dict[str, float]:
        """What this experiment's entry says its trials hold."""
        return dict(self._entry.held)

    @property
    def waiting(self) -> bool:
        """True while this experiment's entry records a wait."""
        return self._entry.wait_request is not None

    def update(self, held: dict[str, float], gpus: dict[str, float]) -> None:
        """Records what our trials hold now (after a trial started or ended)."""
        held = {k: v for k, v in held.items() if v > _EPS}
        gpus = {g: v for g, v in gpus.items() if v > _EPS}
        if held != self._entry.held or gpus != self._entry.gpus:
            freed = any(v > held.get(k, 0.0) + _EPS for k, v in self._entry.held.items())
            if freed and self._entry.wait_request is not None:
                # It just had its turn: behind those that waited meanwhile (a newcomer is first in line
                # for the next freed resources, not the experiment that freed them).
                self._entry.wait_since = self._clock()
            self._entry.held, self._entry.gpus = held, gpus
            self._write()
            if freed and self._names:
                self._wake_others()

    def stop_waiting(self) -> None:
        """Clears our wait: we no longer want a trial started, or cannot start one with our own totals."""
        if self._entry.wait_request is not None:
            self._entry.wait_request = None
            self._write()
            if self._names:
                self._wake_others()  # those that left room for our request may use it

    def try_start(self, request: dict[str, float], held: dict[str, float],
                  place: Callable[[], Optional[dict[str, float]]] | None = None) -> bool:
        """Applies the sharing rule under the lock; on success records ``held + request`` as ours.

        Args:
            request: What the trial asks for, by kind.
            held: What our trials hold now.
            place: For a request with GPUs: picks devices given :meth:`held_by_others`, and
                returns our GPU usage after the start, or None if the devices do not fit.

        Returns:
            True if the trial may start now; False if it must wait (the wait is recorded).
        """
        request = _positive(request)
        held = _positive(held)
        self.drain_wakes()
        with self._locked():
            now = self._clock()
            others = self._read_others(now)
            taken: dict[str, float] = dict(held)
            # The machine, when experiments declare different totals (tunesmith.init(num_cpus=1) next
            # to one that sees the whole machine), is the largest of them and of what it has; each
            # experiment's own total is its own limit. (Against its own total alone, the smaller one saw a full machine while
            # the other held its share, and waited for ever while the other kept room for it.)
            machine: dict[str, float] = dict(self._entry.total)
            for key, value in self._machine.items():
                machine[key] = max(machine.get(key, 0.0), value)
            for entry in others:
                for key, value in entry.held.items():
                    taken[key] = taken.get(key, 0.0) + value
                for key, value in entry.total.items():
                    machine[key] = max(machine.get(key, 0.0), value)
            free = {k: min(v - held.get(k, 0.0), machine[k] - taken.get(k, 0.0))
                    for k, v in self._entry.total.items()}
            me = self._entry
            if me.wait_request is None or now - me.wait_seen > WAIT_TTL_S:
                me.wait_since = now
            me.held = held
            waiters = [e for e in others if e.waiting(now)]
            ok = may_start(request, free, me.priority(), waiters)
            gpus_after = None
            if ok and request.get("GPU", 0.0) > _EPS and place is not None:
                gpus_after = place()
                ok = gpus_after is not None
            if ok:
                me.held = {k: held.get(k, 0.0) + request.get(k, 0.0) for k in set(held) | set(request)}
                if gpus_after is not None:
                    me.gpus = _positive(gpus_after)
                me.wait_request = None
            else:
                me.wait_request, me.wait_seen = request, now
            self._write()
            return ok

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            import fcntl
        except ImportError:  # no advisory locks on this platform: best effort
            yield
            return
        if self._lock_fd is None:
            self._lock_fd = os.open(os.path.join(self.directory, "ledger.lock"),
                                    os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o600)
        # Once its holder is seen not to let go, each later turn only looks whether it has (a wait of
        # LOCK_WAIT_S at every turn would slow this experiment to one decision per wait).
        if not _lock_within(self._lock_fd, 0.01 if self._lock_stuck else LOCK_WAIT_S):
            # Its holder does not let go (a driver stopped with Ctrl+Z while it held it): deciding without
            # the lock beats waiting for as long as that driver stays stopped.
            self._lock_stuck = True
            if not self._said_lock_held:
                self._said_lock_held = True
                logger.warning("The machine ledger's lock (%s) has been held for over %g s by another process "
                               "(a driver stopped with Ctrl+Z?); this experiment decides without it meanwhile.",
                               os.path.join(self.directory, "ledger.lock"), LOCK_WAIT_S)
            yield
            return
        self._lock_stuck = False
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Removes our entry: what our trials held is free for the others."""
        for fd in (self._fd, self._lock_fd, *(self._wake_fds or ())):
            if fd is not None:
                os.close(fd)
        self._fd = self._lock_fd = self._wake_fds = None
        for path in (self._path, self._path[:-len(_SUFFIX)] + _WAKE):
            with contextlib.suppress(OSError):
                os.unlink(path)
        if self._names:
            self._wake_others()

    # -- the others -------------------------------------------------------------------------
    def _other_names(self) -> list[str]:
        """Names of the other entries, listed again only when the directory changed."""
        try:
            mtime = os.stat(self.directory).st_mtime_ns
        except OSError:
            mtime = -2
        if mtime == self._seen_mtime:
            return self._names
        try:
            listing = os.listdir(self.directory)
        except OSError as exc:
            listing = []
            if not self._said_gone:
                self._said_gone = True
                logger.warning("The machine ledger directory %s cannot be read (%s): this experiment no longer "
                               "sees the others on this machine, and may use what they hold.", self.directory, exc)
        self._names = [n[:-len(_SUFFIX)] for n in listing
                       if n.startswith(_PREFIX) and n.endswith(_SUFFIX) and n[:-len(_SUFFIX)] != self.name]
        # The modification time has a coarse clock: a change within the same tick as this
        # listing would not move it, so a recent one is not trusted.
        self._seen_mtime = mtime if time.time_ns() - mtime > 50_000_000 else -1
        return self._names

    def alone(self) -> bool:
        """True when no other experiment has an entry (one ``stat`` when nothing changed)."""
        return not self._other_names()

    def _is_alive(self, entry: Entry, now: float) -> bool:
        checked = self._alive_checked.get(entry.name)
        if checked is not None and now - checked[0] < ALIVE_RECHECK_S:
            return checked[1]
        alive = self._alive(entry)
        self._alive_checked[entry.name] = (now, alive)
        return alive

    def _read_others(self, now: float | None = None) -> list[Entry]:
        """Reads every other entry afresh; removes those of dead processes."""
        now = self._clock() if now is None else now
        self._seen_mtime = -1
        entries = []
        for name in self._other_names():
            path = os.path.join(self.directory, name + _SUFFIX)
            entry = None
            for _ in range(3):  # a read may meet a write in progress
                try:
                    text = _read(path)
                    cached = self._parsed.get(name)
                    if cached is not None and cached[0] == text:
                        entry = cached[1]
                    else:
                        entry = Entry.from_json(name, text)
                        self._parsed[name] = (text, entry)
                    break
                except FileNotFoundError:
                    break
                except (OSError, ValueError, TypeError, KeyError, AttributeError):
                    entry = None
            if entry is None:
                if not os.path.exists(path):
                    continue
                entry = Entry(name, pid=_pid_from_name(name))  # unreadable: judge by its pid
                if self._is_alive(entry, now):
                    continue
            elif self._is_alive(entry, now):
                entries.append(entry)
                continue
            for dead in (path, os.path.join(self.directory, name + _WAKE)):
                with contextlib.suppress(OSError):
                    os.unlink(dead)
            self._alive_checked.pop(name, None)
            self._parsed.pop(name, None)
        if len(self._parsed) > len(entries):  # forget entries that are gone
            keep = {e.name for e in entries}
            self._parsed = {n: v for n, v in self._parsed.items() if n in keep}
            self._alive_checked = {n: v for n, v in self._alive_checked.items() if n in keep}
        self._others = entries
        return entries

    def others(self) -> list[Entry]:
        """The entries of the other live experiments, read afresh."""
        return self._read_others()

    def held_by_others(self) -> tuple[dict[str, float], dict[str, float]]:
        """Resources and GPU shares the other experiments held at the last read."""
        held: dict[str, float] = {}
        gpus: dict[str, float] = {}
        for entry in self._others:
            for key, value in entry.held.items():
                held[key] = held.get(key, 0.0) + value
            for gpu, value in entry.gpus.items():
                gpus[gpu] = gpus.get(gpu, 0.0) + value
        return held, gpus

    def summary(self) -> str:
        """One sentence on what the other experiments hold and wait for."""
        now = self._clock()
        others = self._read_others(now)
        if not others:
            return "No other tunesmith experiment shares this machine."
        held, _ = self.held_by_others()
        parts = []
        for entry in sorted(others, key=lambda e: e.name):
            text = f"pid {entry.pid} holds {_fmt(entry.held)}"
            if entry.waiting(now):
                text += f" and has waited {now - entry.wait_since:.0f} s for {_fmt(entry.wait_request or {})}"
                if self._entry.waiting(now) and entry.priority() < self._entry.priority():
                    text += " (it holds a smaller share or waited longer: it goes first)"
            parts.append(text)
        return (f"{len(others)} other tunesmith experiment(s) on this machine hold {_fmt(held)} "
                f"({'; '.join(parts)}; ledger: {self.directory}).")


class WakePoller:
    """A ``select.poll`` object that also watches a ledger's wake FIFO, and hides it from its caller.

    A driver blocked in ``poll`` with trials running returns early when another
    experiment frees resources, so a waiting experiment asks again at once; the
    FIFO is drained here, so it never keeps ``poll`` from blocking.

    Args:
        poller: The ``select.poll`` object to wrap; file descriptors registered with
            either stay registered with both.
        ledger: The ledger whose :attr:`MachineLedger.wake_fd` to watch.
    """

    def __init__(self, poller, ledger: MachineLedger):
        import select

        self._poller = poller
        self._ledger = ledger
        self._wake_fd = ledger.wake_fd
        poller.register(self._wake_fd, select.POLLIN)

    def register(self, fd, eventmask: int | None = None) -> None:
        if eventmask is None:
            self._poller.register(fd)
        else:
            self._poller.register(fd, eventmask)

    def modify(self, fd, eventmask: int) -> None:
        self._poller.modify(fd, eventmask)

    def unregister(self, fd) -> None:
        self._poller.unregister(fd)

    def poll(self, timeout=None) -> list[tuple[int, int]]:
        ready = self._poller.poll(timeout)
        for i, (fd, _) in enumerate(ready):
            if fd == self._wake_fd:
                if self._ledger.wake_fd is None:  # the ledger was closed
                    self._poller.unregister(fd)
                    self._wake_fd = None
                self._ledger.drain_wakes()
                return ready[:i] + ready[i + 1:]
        return ready


def _read(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    try:
        return os.read(fd, 1 << 16).decode()
    finally:
        os.close(fd)


def _fmt(resources: dict[str, float]) -> str:
    shown = {k: round(v, 3) for k, v in sorted(resources.items()) if k != "memory"}
    return str(shown) if shown else "nothing"


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
