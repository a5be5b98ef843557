"""A small writer of TensorBoard event files (the TFRecord format of ``Event`` protos).

Scalar events are encoded by hand: building protobuf objects for every result
would dominate the cost of logging. The encoding follows tensorboard's
``event.proto``/``summary.proto``; each record is framed with masked CRC32C
checksums as TFRecord requires.
"""
from __future__ import annotations

import itertools
import os
import socket
import struct
import time

_pack_d = struct.Struct("<d").pack
_pack_f = struct.Struct("<f").pack
_pack_q = struct.Struct("<Q").pack
_pack_i = struct.Struct("<I").pack


def _make_table() -> tuple[int, ...]:
    table = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``."""
    table = _TABLE
    crc = 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _find_crc32c():
    """A C implementation when one is installed (looked up on first use: importing costs time)."""
    try:
        from google_crc32c import value as native  # type: ignore  (imports in a fifth of crc32c's time)
    except Exception:
        try:
            from crc32c import crc32c as native  # type: ignore
        except Exception:
            native = crc32c
    return native


_crc32c_impl = None


def masked_crc32c(data: bytes) -> int:
    global _crc32c_impl
    if _crc32c_impl is None:
        _crc32c_impl = _find_crc32c()
    crc = _crc32c_impl(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


_SMALL_VARINTS = tuple(bytes((i,)) for i in range(0x80))


def varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _SMALL_VARINTS[value]  # field keys and most lengths: one byte
    value &= 0xFFFFFFFFFFFFFFFF  # int64 two's complement
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def record(data: bytes) -> bytes:
    """``data`` framed as one TFRecord."""
    header = _pack_q(len(data))
    return header + _pack_i(masked_crc32c(header)) + data + _pack_i(masked_crc32c(data))


def event(summary: bytes, step: int | None = None, wall_time: float | None = None) -> bytes:
    """A serialized ``Event`` holding a serialized ``Summary``."""
    out = b"\x09" + _pack_d(time.time() if wall_time is None else wall_time)
    if step:
        out += b"\x10" + varint(int(step))
    return out + b"\x2a" + varint(len(summary)) + summary


_counter = itertools.count()
_hostname: tuple[int, str] | None = None  # (pid, name): looked up once per process


def new_event_file_name() -> str:
    global _hostname
    pid = os.getpid()
    if _hostname is None or _hostname[0] != pid:
        _hostname = (pid, socket.gethostname())
    return f"events.out.tfevents.{int(time.time()):010d}.{_hostname[1]}.{pid}.{next(_counter)}"


def _value_prefix(tag: str) -> bytes:
    """A ``Summary.Value`` with ``tag``, up to its ``simple_value`` (4 bytes follow)."""
    raw = tag.encode("utf-8")
    inner = b"\x0a" + varint(len(raw)) + raw + b"\x15"
    return b"\x0a" + varint(len(inner) + 4) + inner


def _pack_scalar(value: float) -> bytes:
    try:
        return _pack_f(value)
    except (OverflowError, struct.error):  # beyond float32 (a float, or an int too large)
        return _pack_f(float("inf") if value > 0 else float("-inf"))


class ScalarEncoder:
    """Encodes a set of scalars into one ``Summary``, caching each tag's bytes."""

    def __init__(self):
        self._prefixes: dict[str, bytes] = {}
        self._by_key: dict = {}  # plain_summary's prefixes by result key (b"" for an excluded key)

    def summary(self, scalars: dict[str, float]) -> bytes:
        prefixes = self._prefixes
        parts = []
        for tag, value in scalars.items():
            prefix = prefixes.get(tag)
            if prefix is None:
                prefix = prefixes[tag] = _value_prefix(tag)
            parts.append(prefix + _pack_scalar(value))
        return b"".join(parts)

    def plain_summary(self, result: dict, exclude: frozenset, tag_prefix: str) -> bytes | None:
        """``summary`` of a flat result's int, float and bool fields (a flag as 0 or 1; NaN and the
        ``exclude`` keys left out, text and None skipped), tagged ``tag_prefix + key``; None when a field is
        anything else (a nested dict, a numpy value), for the caller's general path. One encoder
        is always called with the same ``exclude`` and ``tag_prefix``."""
        prefixes = self._by_key
        parts = []
        for key, value in result.items():
            kind = type(value)
            if kind is float:
                if value != value:
                    continue
            elif kind is bool:
                value = int(value)
            elif kind is not int:
                if kind is str or value is None or key in exclude:
                    continue
                return None
            prefix = prefixes.get(key)
            if prefix is None:
                if key in exclude:
                    prefix = prefixes[key] = b""
                else:
                    prefix = prefixes[key] = _value_prefix(tag_prefix + str(key))
            if not prefix:
                continue  # an excluded key
            parts.append(prefix + _pack_scalar(value))
        return b"".join(parts)

    def file_version_event(self) -> bytes:
        version = b"brain.Event:2"
        return b"\x09" + _pack_d(time.time()) + b"\x1a" + varint(len(version)) + version


# -- HParams plugin summaries -------------------------------------------------------------------
# Encoded by hand like the scalars: tensorboardX's own helper imports its whole package (and
# torch, when installed) on first use, seconds added to every run. The messages follow
# tensorboard's plugins/hparams/{plugin_data,api}.proto and google/protobuf/struct.proto.

_HPARAMS_PLUGIN = b"hparams"
_DATA_TYPE_STRING, _DATA_TYPE_BOOL, _DATA_TYPE_FLOAT64 = 1, 2, 3
_STATUS_SUCCESS = 1


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (string, bytes or message)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def _varint_field(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value) if value else b""


def _text(number: int, text) -> bytes:
    # Runs in the logger I/O thread: an unencodable name must not lose the file's other records.
    return _field(number, str(text).encode("utf-8", "replace"))


def _hparams_summary(tag: str, plugin_data: bytes) -> bytes:
    """A ``Summary`` with one value that carries only HParams plugin metadata."""
    plugin = _field(1, _HPARAMS_PLUGIN) + _field(2, plugin_data)  # SummaryMetadata.PluginData
    metadata = _field(1, plugin)  # SummaryMetadata
    value = _text(1, tag) + _field(9, metadata)  # Summary.Value
    return _field(1, value)


def hparams_summaries(hparams: dict, metric_tags) -> list[bytes]:
    """The experiment, session-start and session-end summaries of TensorBoard's HParams view.

    The same three summaries as ``tensorboardX.summary.hparams(hparams, metrics)``:
    strings, bools and numbers are logged with their values, a callable by its
    name, any other value by its name only; None values are left out.

    Args:
        hparams: Flat ``{name: value}`` of the trial's hyperparameters.
        metric_tags: The scalar tags to show as metrics next to them.

    Returns:
        Serialized ``Summary`` messages: experiment, session start info, session end info.
    """
    infos = []
    values = []
    for name, value in hparams.items():
        if value is None:
            continue
        kind = 0
        encoded = None
        if isinstance(value, str):
            kind, encoded = _DATA_TYPE_STRING, _text(3, value)
        elif isinstance(value, bool):
            kind, encoded = _DATA_TYPE_BOOL, b"\x20" + varint(int(value))
        elif isinstance(value, (int, float)):
            kind, encoded = _DATA_TYPE_FLOAT64, b"\x11" + _pack_d(float(value))
        elif callable(value):
            kind, encoded = _DATA_TYPE_STRING, _text(3, getattr(value, "__name__", str(value)))
        infos.append(_field(4, _text(1, name) + _varint_field(4, kind)))  # Experiment.hparam_infos
        if encoded is not None:
            entry = _text(1, name) + _field(2, encoded)  # map<string, google.protobuf.Value> entry
            values.append(_field(1, entry))
    infos += [_field(5, _field(1, _text(2, tag))) for tag in metric_tags]  # Experiment.metric_infos
    experiment = _hparams_summary("_hparams_/experiment", _field(2, b"".join(infos)))
    start = _hparams_summary("_hparams_/session_start_info", _field(3, b"".join(values)))
    end = _hparams_summary("_hparams_/session_end_info", _field(4, _varint_field(1, _STATUS_SUCCESS)))
    return [experiment, start, end]
