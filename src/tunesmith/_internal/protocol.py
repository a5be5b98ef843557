"""Messages between the driver and a worker process.

Each message is a tuple whose first item is one of the names below; it travels
pickled over a socket (locally) or as an actor call (on Ray).

driver -> worker
    LOAD(key, payload)         cloudpickled trainable, sent once per worker and key
    START(spec)                run a trial (``TrialSpec``)
    CONTINUE                   go on after a result (class trainables: train one more step)
    PAUSE                      checkpoint if possible and stop; the trial resumes later
    STOP(save)                 stop; ``save`` asks class trainables for a final checkpoint
    SAVE                       checkpoint now (class trainables, while a result is answered)
    EXIT                       leave the process

worker -> driver
    RESULT(metrics, checkpoint_dir_name)
    SAVED(checkpoint_dir_name or None)
    DONE(return_value, checkpoint_dir_name or None)   the trial ended on its own or on STOP
    PAUSED(checkpoint_dir_name or None)
    ERROR(traceback_text, pickled_exception or None[, "restore" | "startup"])
                               "restore": loading the checkpoint failed; "startup": the
                               process died before it ran any of the trial's code
    READY                      once per process, when it starts its first trial
"""
from __future__ import annotations

import os
import pickle as _pickle
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as _Connection
from typing import Any

LOAD = "load"
START = "start"
CONTINUE = "c"
PAUSE = "p"
STOP = "s"
SAVE = "save"
EXIT = "exit"

RESULT = "r"
SAVED = "saved"
DONE = "done"
PAUSED = "paused"
ERROR = "error"
READY = "ready"
RESTORE_PHASE = "restore"
STARTUP_PHASE = "startup"


@dataclass
class TrialSpec:
    """All a worker needs to run one trial."""

    trainable_key: str
    config: dict
    trial_info: Any
    checkpoint_path: str | None = None
    # Counters carried over from the run before a restore, so iterations continue.
    start_iteration: int = 0
    start_time_total: float = 0.0
    start_timesteps_total: float | None = None
    start_episodes_total: float | None = None
    checkpoint_index: int = 0
    checkpoint_frequency: int = 0
    env: dict[str, str] = field(default_factory=dict)
    chdir: bool = True
    log_to_file: tuple = (None, None)
    reuse: bool = True
    storage_uri: str | None = None
    # Remote storage (a ``storage.RemoteTarget``) the worker uploads checkpoints to; None for local.
    storage: Any = None
    # Function trainables go on without waiting for the driver's answer while fewer than
    # this many results are unanswered (TUNE_RESULT_BUFFER_LENGTH; 1 waits for each).
    result_buffer_length: int = 1
    # ``{result field: increasing values}`` where the trial may be stopped or paused (the
    # scheduler's decision points, the stop criteria): a pipelined trial waits for the answer
    # to a result that reaches the next of them (None: no such point is known).
    decision_points: dict | None = None
    # Formats a class trainable exports its model in (``Trainable.export_model``) when its trial ends.
    export_formats: tuple = ()


PIPELINE_ENV = "TUNESMITH_RESULT_PIPELINE_S"
_DEFAULT_PIPELINE_S = 0.002


def result_pipeline_s() -> float:
    """Seconds of a trial's own iterations that may run ahead of the driver's decisions.

    ``report()`` hands a result to the driver and waits for its answer (continue,
    stop, pause). For a trial whose iterations take less than this budget the
    round trip would cost more than the iteration itself, so such a trial goes on
    while its unanswered results took less than the budget together, and takes the
    answers as they come; a result that comes after a stop or pause decision is
    dropped by the driver, so what is logged still ends at the deciding result.
    An iteration that takes longer, and every checkpoint, waits for the answer as
    before. ``TUNESMITH_RESULT_PIPELINE_S=0`` turns this off, and so does setting
    ``TUNE_RESULT_BUFFER_LENGTH`` (whose own rule then applies).
    """
    if "TUNE_RESULT_BUFFER_LENGTH" in os.environ:
        return 0.0
    try:
        return max(0.0, float(os.environ.get(PIPELINE_ENV, _DEFAULT_PIPELINE_S)))
    except ValueError:
        raise ValueError(
            f"{PIPELINE_ENV} must be a number of seconds (0 turns pipelining off), got "
            f"{os.environ[PIPELINE_ENV]!r}."
        ) from None


_PLAIN_TYPES = frozenset((str, int, float, bool, type(None)))


def _is_plain(value: Any, depth: int = 0) -> bool:
    """True for scalars and dicts, lists and tuples of them: what the standard pickler sends as it is."""
    kind = type(value)
    if kind in _PLAIN_TYPES:
        return True
    if depth > 32:
        return False
    if kind is dict:
        return all(type(k) in _PLAIN_TYPES and _is_plain(v, depth + 1) for k, v in value.items())
    if kind is list or kind is tuple:
        return all(_is_plain(v, depth + 1) for v in value)
    return False


class ByValue:
    """A value cloudpickled in the driver, unpickled by the worker when it needs it.

    A config may hold objects of classes or functions defined in the user's
    script (``__main__``), which the standard pickler sends by name and a
    worker cannot find; cloudpickle sends them by value, as Ray does.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes):
        self.data = data

    def load(self) -> Any:
        import cloudpickle  # noqa: F401  (its functions rebuild what it pickled by value)

        return _pickle.loads(self.data)


def spec_to_send(spec: TrialSpec) -> TrialSpec:
    """``spec`` as a backend sends it: a config that is not plain data travels as :class:`ByValue`."""
    if _is_plain(spec.config):
        return spec
    import dataclasses

    from tunesmith._internal.pickling import dumps

    return dataclasses.replace(spec, config=ByValue(dumps(spec.config)))


class PlainConnection(_Connection):
    """A worker's end of the pipe: messages are pickled with the standard pickler.

    ``Connection.send`` uses multiprocessing's ``ForkingPickler``, to which
    libraries add reducers that hand objects over as shared memory (PyTorch
    sends a tensor's storage as a file descriptor through a per-process
    resource sharer). The driver is not the process such reducers expect, so
    a result holding a tensor could not be read there. Plain pickle sends the
    values themselves; the driver reads them with ``recv`` as before.
    """

    def send(self, obj: Any) -> None:
        self._check_closed()
        self._check_writable()
        self._send_bytes(message_bytes(obj))


def message_bytes(obj: Any) -> bytes:
    """``obj`` pickled as a worker sends it to the driver (raises what pickling it raises)."""
    try:
        return _pickle.dumps(obj, protocol=_pickle.HIGHEST_PROTOCOL)
    except (_pickle.PicklingError, AttributeError, TypeError):
        # An object of a class the trainable defined or got by value (from the user's
        # script): the standard pickler refers to it by a name the driver may not have.
        import cloudpickle

        return cloudpickle.dumps(obj, protocol=_pickle.HIGHEST_PROTOCOL)


def plain_metrics(result: dict) -> dict:
    """Turns one-element tensors among ``result``'s values into Python numbers.

    Loggers, schedulers and the progress table then see numbers, as they do for
    ``float`` metrics; larger tensors become numpy arrays (no PyTorch needed to
    read them). ``result`` (the worker's own copy) changes in place; a nested dict
    that holds tensors is replaced by a converted copy, so that the trainable's own
    dicts keep their tensors. Called only once PyTorch is imported in the worker.
    """
    for key, value in result.items():
        plain = _plain(value)
        if plain is not value:
            result[key] = plain
    return result


def _plain(value: Any) -> Any:
    """``value`` with its tensors turned into numbers or arrays: ``value`` itself when it holds none."""
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        value = value.detach().cpu()
        return value.item() if value.numel() == 1 else value.numpy()
    if isinstance(value, dict):
        copy = None
        for key, item in value.items():
            plain = _plain(item)
            if plain is not item:
                if copy is None:
                    copy = dict(value)
                copy[key] = plain
        return value if copy is None else copy
    return value
