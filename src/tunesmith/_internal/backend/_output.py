"""Forwards what worker processes print to the driver's console, one prefixed line at a time."""
from __future__ import annotations

import os
import select
import sys
from typing import Callable


# A line longer than this is forwarded in pieces of about this size (its memory stays bounded).
_MAX_LINE = 1 << 20


class _Stream:
    __slots__ = ("fd", "file", "to_stderr", "label", "partial", "partial_len")

    def __init__(self, file, to_stderr: bool, label: Callable[[], str]):
        self.file = file
        self.fd = file.fileno()
        self.to_stderr = to_stderr
        self.label = label
        # The start of a line not ended yet, as the chunks read (joined once, when it ends: a long
        # line read chunk by chunk would otherwise be copied again with every chunk).
        self.partial: list[bytes] = []
        self.partial_len = 0


class OutputForwarder:
    """Reads workers' stdout and stderr pipes and writes each line to ``sys.stdout``/``sys.stderr``.

    Lines are prefixed ``(<trainable> pid=<pid>)`` as Ray prints them, and go
    through the driver's Python streams, so they show in notebooks and in
    captured output. The pipes share the executor's poll object; nothing is
    read unless a worker printed something.
    """

    def __init__(self, poller: select.poll):
        self._poller = poller
        self._streams: dict[int, _Stream] = {}

    def __contains__(self, fd: int) -> bool:
        return fd in self._streams

    def __bool__(self) -> bool:
        return bool(self._streams)

    def add(self, file, to_stderr: bool, label: Callable[[], str]) -> None:
        """Forwards the pipe ``file`` (a worker's ``proc.stdout``/``proc.stderr``) until its end.

        The file object, not just its descriptor, is kept and closed here: closing
        the bare descriptor would leave the object to close the same number again
        later, when it may already belong to another file (a trial's results).
        """
        fd = file.fileno()
        os.set_blocking(fd, False)
        self._streams[fd] = _Stream(file, to_stderr, label)
        self._poller.register(fd, select.POLLIN)

    def read(self, fd: int) -> None:
        """Forwards what is ready on ``fd``; closes it at end of file."""
        stream = self._streams[fd]
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._close(stream)
                return
            head, newline, tail = data.rpartition(b"\n")
            if not newline:
                stream.partial.append(data)
                stream.partial_len += len(data)
                if stream.partial_len >= _MAX_LINE:
                    self._write(stream, [b"".join(stream.partial)])
                    stream.partial, stream.partial_len = [], 0
                continue
            if stream.partial:
                stream.partial.append(head)
                head = b"".join(stream.partial)
            stream.partial, stream.partial_len = ([tail], len(tail)) if tail else ([], 0)
            self._write(stream, head.split(b"\n"))

    def _write(self, stream: _Stream, lines: list[bytes]) -> None:
        if not lines:
            return
        prefix = f"({stream.label()}) "
        text = "".join(prefix + line.decode("utf-8", errors="replace") + "\n" for line in lines)
        out = sys.stderr if stream.to_stderr else sys.stdout
        try:
            out.write(text)
            out.flush()
        except Exception:  # noqa: BLE001 - closed, None, or a stand-in without flush(): the output is lost, not the run
            pass

    def _close(self, stream: _Stream) -> None:
        if stream.partial:
            self._write(stream, [b"".join(stream.partial)])
            stream.partial, stream.partial_len = [], 0
        self._streams.pop(stream.fd, None)
        try:
            self._poller.unregister(stream.fd)
        except (KeyError, ValueError):
            pass
        try:
            stream.file.close()
        except OSError:
            pass

    def drain(self) -> None:
        """Forwards everything left in the pipes of workers that have exited."""
        for fd in list(self._streams):
            self.read(fd)
