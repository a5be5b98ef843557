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

from dataclasses import dataclass, field
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
