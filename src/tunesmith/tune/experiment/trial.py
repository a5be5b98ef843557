"""A trial: one configuration of the trainable and everything known about its run."""
from __future__ import annotations

import json
import logging
import numbers
import os
import re
import time
from collections import deque
from typing import Any, Callable

from tunesmith.tune.execution.checkpoint_manager import CheckpointManager
from tunesmith.tune.execution.placement_groups import PlacementGroupFactory
from tunesmith.train._checkpoint import Checkpoint
from tunesmith.tune.result import TRAINING_ITERATION

logger = logging.getLogger(__name__)

# Results a running trial holds before they go into its statistics (Trial._fold).
_FOLD_BATCH = 16
_SKIPPED = frozenset((str, type(None)))
# Fields the controller sets in every result to text, a flag (or the config): never statistics.
_NOT_METRICS = frozenset(("config", "trial_id", "experiment_tag", "date", "hostname", "node_ip",
                          "checkpoint_dir_name", "done", "should_checkpoint"))
_PLAIN_NUMBERS = frozenset((int, float))
_UNSAFE = re.compile(r"[^A-Za-z0-9_.,=+\-\[\]]")


def max_len_identifier() -> int:
    return int(os.environ.get("TUNE_MAX_LEN_IDENTIFIER", "130"))


_MAX_DIRNAME = 240  # a file name's limit is 255 bytes; room is left for a "_abcd" suffix


def sanitize_dirname(name: str, max_len: int | None = None) -> str:
    """Makes a string safe as one directory name: no separators, no ``..``, bounded length."""
    name = _UNSAFE.sub("_", str(name))
    name = name.replace("..", "_")
    name = name.strip(". ") or "_"
    limit = max_len if max_len is not None else max_len_identifier()
    return name[:limit]


# What a name the user gave (trial_dirname_creator, trial_name_creator) may not hold in a directory name:
# path separators, control characters, and what some file systems refuse (as Ray, which keeps the rest).
_UNSAFE_IN_GIVEN = re.compile(r'[/\\\x00-\x1f\x7f<>:"|?*()]')


def given_dirname(name: str, max_bytes: int = _MAX_DIRNAME) -> str:
    """A name of the user's own as one directory name: kept as given (any language, spaces) but for path
    separators, control characters and ``<>:"|?*()``, no ``..``, at most ``max_bytes`` bytes in UTF-8.

    Example:
        >>> given_dirname("实验 猫/1")
        '实验 猫_1'
    """
    name = _UNSAFE_IN_GIVEN.sub("_", str(name)).replace("..", "_").strip(". ") or "_"
    encoded = name.encode("utf-8", "surrogateescape")
    if len(encoded) > max_bytes:
        name = encoded[:max_bytes].decode("utf-8", "ignore").strip(". ") or "_"
    return name


def _window_for(n: int, last: float, last5: Any, last10: Any) -> "deque | None":
    """Up to ten values ending with ``last`` whose last five and all average ``last5`` and ``last10``.

    A restored trial's statistics keep those averages, not the values: this stands in for the
    values so that ``last-5-avg``/``last-10-avg`` read as saved (and move on with new results).

    Example:
        >>> list(_window_for(6, 10.0, 8.0, 7.0))
        [2.0, 7.5, 7.5, 7.5, 7.5, 10.0]
    """
    count = min(n, 10)
    if count < 2 or not all(isinstance(v, (int, float)) and v == v for v in (last, last5, last10)):
        return None
    recent = min(count, 5)
    before_last = (recent * last5 - last) / (recent - 1)
    values = [before_last] * (recent - 1) + [last]
    if count > 5:
        older = (count * last10 - 5 * last5) / (count - 5)
        values = [older] * (count - 5) + values
    return deque(values, maxlen=10)


class Trial:
    """One run of a trainable with one configuration.

    Schedulers, searchers, stoppers and callbacks see trials; they read its
    attributes and never touch the process that runs it.

    Attributes:
        trial_id: Unique id within the experiment, such as ``"3a6f1_00004"``.
        trainable_name: Name of the trainable.
        config: The resolved configuration.
        evaluated_params: The sampled (non-constant) parameters, flattened with ``/``.
        experiment_tag: ``"<index>_<param>=<value>,..."``.
        status: One of PENDING, RUNNING, PAUSED, TERMINATED, ERROR.
        last_result: The latest result dict (auto-filled fields included).
        metric_analysis: Per numeric metric ``{"max","min","avg","last","last-5-avg","last-10-avg"}``.
        placement_group_factory: The trial's resources.
        local_path / path: The trial directory.
        checkpoint: The latest persisted checkpoint, if any.
        restore_checkpoint: The checkpoint the trial starts from on its next start.
        error_file / error_msg: Where the last error's traceback is and its text.
        num_failures: How many times the trial has failed.
    """

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    TERMINATED = "TERMINATED"
    ERROR = "ERROR"

    # Attributes live in slots, not in a per-trial dict: with thousands of trials the dict (over
    # thirty keys, more than Python shares between instances) was the largest part of a trial.
    # ``__dict__`` stays for attributes that callers add themselves.
    __slots__ = (
        "trainable_name", "config", "trial_id", "experiment_tag", "evaluated_params", "placement_group_factory",
        "stopping_criterion", "experiment_path", "experiment_dir_name", "filesystem", "storage_path",
        "checkpoint_config", "max_failures", "log_to_file", "status", "last_result", "_stats", "_pending",
        "num_results", "checkpoint_manager", "restore_checkpoint", "error_file", "pickled_error_file",
        "error_msg", "num_failures", "start_time", "return_value", "custom_trial_name", "trial_dirname",
        "restored_iteration", "checkpoint_rows", "dir_created", "scheduler_stop_iteration", "started_from",
        "started_from_iteration", "start_points",
        "_checkpoint_requested", "_json_state", "_frozen", "_checkpoint_texts", "_path", "__dict__", "__weakref__",
    )

    def __init__(
        self,
        trainable_name: str,
        config: dict | None = None,
        trial_id: str | None = None,
        experiment_tag: str = "",
        evaluated_params: dict | None = None,
        placement_group_factory: PlacementGroupFactory | None = None,
        stopping_criterion: dict | None = None,
        experiment_path: str | None = None,
        checkpoint_config=None,
        max_failures: int = 0,
        log_to_file: tuple[str | None, str | None] = (None, None),
        trial_name_creator: Callable[["Trial"], str] | None = None,
        trial_dirname_creator: Callable[["Trial"], str] | None = None,
        experiment_dir_name: str | None = None,
        filesystem=None,
    ):
        # Set by checkpoint_now(); the driver saves the trial before it goes on past a result.
        self._checkpoint_requested = False
        # A finished trial's saved state as (cache key, JSON text), kept between snapshots.
        self._json_state: tuple[tuple, str] | None = None
        # Whether the statistics are frozen into _json_state (a finished trial's).
        self._frozen = False
        # While the trial runs: each kept checkpoint's entry in the saved state, as JSON text
        # by path, so that a snapshot encodes a checkpoint once and not at every save.
        self._checkpoint_texts: dict[str, tuple[dict, tuple, str]] | None = None
        # (experiment_path, trial_dirname, their join): the driver asks for local_path many times a trial.
        self._path: tuple[str, str, str] | None = None
        self.trainable_name = trainable_name
        self.config = config if config is not None else {}
        self.trial_id = trial_id or "00000"
        self.experiment_tag = experiment_tag
        self.evaluated_params = evaluated_params or {}
        self.placement_group_factory = placement_group_factory or PlacementGroupFactory([{"CPU": 1}])
        self.stopping_criterion = stopping_criterion or {}
        self.experiment_path = experiment_path
        self.experiment_dir_name = experiment_dir_name
        self.filesystem = filesystem
        # The experiment directory on remote storage, where the trial's checkpoints live
        # while the driver writes its other files locally (None: all in experiment_path).
        self.storage_path: str | None = None
        self.checkpoint_config = checkpoint_config
        self.max_failures = max_failures
        self.log_to_file = log_to_file
        self.status = Trial.PENDING
        self.last_result: dict[str, Any] = {}
        self._stats: dict[str, list] = {}
        self._pending: list[dict] = []  # results not yet in _stats (see _fold)
        self.num_results = 0
        self.checkpoint_manager = CheckpointManager(checkpoint_config)
        self.restore_checkpoint: Checkpoint | None = None
        self.error_file: str | None = None
        self.pickled_error_file: str | None = None
        self.error_msg: str | None = None
        self.num_failures = 0
        self.start_time: float | None = None
        self.return_value = None
        self.custom_trial_name = trial_name_creator(self) if trial_name_creator else None
        if trial_dirname_creator:
            # A name of the user's own is used as given (as on Ray), up to what a file system takes.
            dirname = trial_dirname_creator(self)
            if not isinstance(dirname, str) or not dirname.strip():
                raise TypeError(f"trial_dirname_creator must return a non-empty string (a directory name) for "
                                f"trial {trial_id}, it returned {dirname!r}.")
            self.trial_dirname = given_dirname(dirname)
        else:
            self.trial_dirname = self._default_dirname()
        # Offset of iteration counters when the trial restarts from a checkpoint.
        self.restored_iteration = 0
        # Result rows logged when each checkpoint was taken (by checkpoint path): a trial that
        # resumes from a checkpoint has its logs cut back to that many rows.
        self.checkpoint_rows: dict[str, int] = {}
        self.dir_created = False
        # The iteration at which the scheduler stopped the trial early, if it did.
        self.scheduler_stop_iteration: int | None = None
        # The checkpoint the trial last started from when it is not one of its own (PBT's exploit, the
        # checkpoint of tune.run(restore=...)), until it saves one of its own: see resume_checkpoint.
        self.started_from: Checkpoint | None = None
        self.started_from_iteration = 0  # the iteration that checkpoint was taken at
        # The counters (training_iteration, time_total_s, timesteps_total) at restore_checkpoint and
        # started_from, by path, kept with the state: another trial's checkpoint (PBT's exploit) that
        # its trial has dropped is known by nothing else after a restore.
        self.start_points: dict[str, dict] = {}

    # -- names and paths -------------------------------------------------
    def _default_dirname(self) -> str:
        """``<trial name>_<tag>`` cut to ``TUNE_MAX_LEN_IDENTIFIER``: the name is ``<trainable>_<trial id>``
        (never cut, so that no two trials share a directory) or the one ``trial_name_creator`` gave."""
        if self.custom_trial_name:
            name = given_dirname(self.custom_trial_name, max_bytes=max_len_identifier())
        else:
            name = sanitize_dirname(f"{self.trainable_name}_{self.trial_id}", max_len=200)
        room = max_len_identifier() - len(name) - 1
        if self.experiment_tag and room > 0:
            tag = sanitize_dirname(self.experiment_tag, max_len=room)
            if tag != "_":
                name += f"_{tag}"
        return name

    @property
    def local_path(self) -> str | None:
        base = self.experiment_path
        if base is None:
            return None
        cached = self._path
        if cached is not None and cached[0] is base and cached[1] is self.trial_dirname:
            return cached[2]
        path = os.path.join(base, self.trial_dirname)
        self._path = (base, self.trial_dirname, path)
        return path

    # Ray exposes both spellings.
    path = local_path
    logdir = local_path

    @property
    def trial_name(self) -> str:
        return str(self)

    def __str__(self) -> str:
        if self.custom_trial_name:
            return self.custom_trial_name
        return f"{self.trainable_name}_{self.trial_id}"

    def __repr__(self) -> str:
        return str(self)

    # -- status -----------------------------------------------------------
    def set_status(self, status: str) -> None:
        if status == Trial.RUNNING and self.start_time is None:
            self.start_time = time.time()
        self.status = status

    def is_finished(self) -> bool:
        return self.status in (Trial.TERMINATED, Trial.ERROR)

    def set_config(self, config: dict) -> None:
        self.config = config

    def set_experiment_tag(self, experiment_tag: str) -> None:
        self.experiment_tag = experiment_tag

    def checkpoint_now(self) -> None:
        """Asks for a checkpoint of this trial at its next step, e.g. from a callback.

        Called from ``Callback.on_trial_result``, the trial saves before it
        continues past that result; from any other hook, at its next result.
        A class trainable saves through ``save_checkpoint``; a function
        trainable cannot be saved from outside, so its latest reported
        checkpoint stays the one to resume from.
        """
        self._checkpoint_requested = True

    @property
    def resources(self) -> dict[str, float]:
        return self.placement_group_factory.required_resources

    # -- results and checkpoints ------------------------------------------
    @property
    def checkpoint(self) -> Checkpoint | None:
        return self.checkpoint_manager.latest_checkpoint

    @property
    def best_checkpoints(self):
        return self.checkpoint_manager.best_checkpoints

    def update_last_result(self, result: dict[str, Any]) -> None:
        self.last_result = result
        self.num_results += 1
        if self._frozen:
            self._thaw_analysis()
        pending = self._pending
        pending.append(result)
        if len(pending) >= _FOLD_BATCH:
            self._fold()

    def _thaw_analysis(self) -> None:
        """A finished trial runs again: its statistics continue from the kept analysis."""
        self.metric_analysis = self.metric_analysis

    def _fold(self) -> None:
        """Adds the pending results to the statistics, a field at a time over all of them.

        Statistics are kept for every numeric field of every result: one field of one result
        at a time, in Python, that was the largest part of the controller's cost per result.
        When the pending results have the same fields, each field's values are gathered once
        and a field of plain numbers is summed, compared and windowed by Python's builtins;
        a field of text, flags or None is skipped; any other field (numpy scalars, nested
        dicts, mixed types) goes value by value. Results whose fields differ go one by one.
        """
        pending = self._pending
        if not pending:
            return
        self._pending = []
        keys = pending[0].keys()
        if len(pending) < 4 or any(r.keys() != keys for r in pending):
            for result in pending:
                self._analyse(result, "")
            return
        stats = self._stats
        for metric in keys:
            if metric in _NOT_METRICS:
                continue
            values = [r[metric] for r in pending]
            kinds = set(map(type, values))
            if kinds <= _SKIPPED:
                continue
            if not kinds <= _PLAIN_NUMBERS:
                for value in values:
                    self._analyse({metric: value}, "")
                continue
            entry = stats.get(metric)
            if entry is None:
                entry = stats[metric] = [0, values[0], values[0], 0, values[0], None]
            entry[0] += len(values)
            numbers_only = [v for v in values if v == v]  # a NaN neither is nor hides the max/min
            if numbers_only:
                top, bottom = max(numbers_only), min(numbers_only)
                if entry[1] != entry[1] or top > entry[1]:
                    entry[1] = top
                if entry[2] != entry[2] or bottom < entry[2]:
                    entry[2] = bottom
            entry[3] += sum(values)
            window = entry[5]
            if window is None:
                window = entry[5] = deque((), maxlen=10) if entry[0] == len(values) else deque((entry[4],), maxlen=10)
            window.extend(values[-10:])
            entry[4] = values[-1]

    def _analyse(self, result: dict, prefix: str) -> None:
        # Per numeric metric: [n, max, min, sum, last, window]; the window (a deque of the
        # last ten values, for the last-5/10 averages) is made at the second value: with
        # thousands of one-result trials the windows would cost more than the trials.
        # This runs for every field of every result: the common types are tested first.
        stats = self._stats
        for metric, value in result.items():
            if not prefix and metric in _NOT_METRICS:
                continue
            kind = type(value)
            if kind is not float and kind is not int:
                if kind is str or value is None:
                    continue
                if kind is bool:
                    value = int(value)  # a flag is a number, as on Ray ("solved": True can be the metric)
                elif kind is dict:
                    if metric != "config":
                        self._analyse(value, f"{prefix}{metric}/")
                    continue
                if not isinstance(value, numbers.Real):
                    continue
                value = float(value)  # numpy scalars and the like
            if prefix:
                metric = prefix + (metric if type(metric) is str else str(metric))  # {0: 0.9} -> "per_class/0"
            entry = stats.get(metric)
            if entry is None:
                stats[metric] = [1, value, value, value, value, None]
                continue
            entry[0] += 1
            if value > entry[1]:
                entry[1] = value
            elif value < entry[2]:
                entry[2] = value
            elif entry[1] != entry[1] and value == value:  # the first values were NaN: a number replaces them
                entry[1] = entry[2] = value
            entry[3] += value
            window = entry[5]
            if window is None:
                window = entry[5] = deque((entry[4],), maxlen=10)
            window.append(value)
            entry[4] = value

    @property
    def metric_analysis(self) -> dict[str, dict[str, float]]:
        """Per numeric metric: max, min, avg, last, last-5-avg and last-10-avg over all results."""
        if self._frozen:
            # A finished trial keeps its statistics only in its saved state.
            return json.loads(self._json_state[1])["metric_analysis"]
        self._fold()
        out = {}
        for metric, e in self._stats.items():
            window = list(e[5] or (e[4],))
            last5 = window[-5:]
            if type(metric) is not str:  # a result key such as (1, 2): JSON names fields by text
                metric = str(metric)
            out[metric] = {
                "max": e[1], "min": e[2], "avg": e[3] / e[0], "last": e[4],
                "last-5-avg": sum(last5) / len(last5), "last-10-avg": sum(window) / len(window), "_n": e[0],
            }
            if e[5] is not None:
                out[metric]["_window"] = window  # the last ten values: a resumed trial averages on from them
        return out

    @metric_analysis.setter
    def metric_analysis(self, analysis: dict[str, dict[str, float]]) -> None:
        # Restored from saved state: the last-5/10 windows are rebuilt so that they give the saved
        # averages (and go on from there as new results come).
        self._frozen = False
        self._json_state = None
        self._stats = {}
        self._pending = []
        for metric, a in (analysis or {}).items():
            try:
                n = int(a.get("_n", 1))
                saved = a.get("_window")
                if isinstance(saved, list) and saved:
                    window = deque(saved, maxlen=10)
                else:  # a state saved before the values were kept: stand-ins with the saved averages
                    window = _window_for(n, a["last"], a.get("last-5-avg"), a.get("last-10-avg"))
                self._stats[metric] = [n, a["max"], a["min"], a["avg"] * n, a["last"], window]
            except (KeyError, TypeError, AttributeError):
                continue

    @property
    def iteration(self) -> int:
        return self.last_result.get(TRAINING_ITERATION, 0)

    def resume_checkpoint(self) -> Checkpoint | None:
        """The checkpoint that holds the trial's progress: the one it last started from when that was
        another trial's (a PBT exploit copied its state) and it has saved none of its own since;
        otherwise its latest checkpoint. A retry, a pause or a restore resumes from it (as on Ray)."""
        return self.started_from if self.started_from is not None else self.checkpoint

    def rows_at(self, checkpoint: Checkpoint | None) -> int | None:
        """How many result rows the trial had logged when ``checkpoint`` was taken.

        0 for no checkpoint (a start from scratch); None for a checkpoint the trial did
        not take itself (another trial's, or one given by the user).
        """
        if checkpoint is None:
            return 0
        return self.checkpoint_rows.get(checkpoint.path)

    # -- persistence ---------------------------------------------------------
    def _relative(self, path: str | None) -> str | None:
        """``path`` relative to the experiment directory when it lies inside it."""
        if path and self.storage_path:
            base = self.storage_path.rstrip("/")
            if path.startswith(base + "/"):
                return path[len(base) + 1:]
        if not path or not self.experiment_path:
            return path
        base = self.experiment_path.rstrip("/\\")
        if path.startswith(base + "/") or path.startswith(base + os.sep):
            return path[len(base) + 1:]
        return path

    def _absolute(self, path: str | None) -> str | None:
        if not path or not self.experiment_path or "://" in path or os.path.isabs(path):
            return path
        base = self.experiment_path.rstrip("/\\")
        if path.startswith(base + "/"):
            return path  # already under the experiment directory (a path on a remote filesystem)
        return f"{base}/{path}" if "/" in base and os.sep != "/" else os.path.join(base, path)

    def get_json_state(self) -> dict[str, Any]:
        """The trial as JSON-safe data for the experiment state file.

        Paths inside the experiment directory are stored relative to it, so a
        moved or copied experiment restores from its own files.
        """
        if self._finished_key() is not None:
            return json.loads(self.get_json_text())
        return self._build_state()

    def get_json_text(self) -> str:
        """:meth:`get_json_state` encoded as JSON text (``NaN`` and infinities allowed).

        A finished trial's text is the same snapshot after snapshot: it is kept, not
        rebuilt, and it is the only copy of the trial's statistics until the trial runs
        again (with thousands of trials, rebuilding it dominated each save and keeping it
        as dicts dominated the driver's memory).
        """
        key = self._finished_key()
        if key is None:
            return self._encode_state()
        cached = self._json_state
        if cached is not None and cached[0] == key:
            return cached[1]
        text = self._encode_state()
        self._json_state = (key, text)
        self._frozen = True
        self._stats = {}
        self._checkpoint_texts = None  # the kept text holds them
        return text

    def _encode_state(self) -> str:
        """The text of :meth:`_build_state`, with each checkpoint's entry encoded once while it is kept."""
        head = json.dumps(self._build_state(with_checkpoints=False), allow_nan=True)
        texts = self._checkpoint_texts or {}
        fresh = {}
        parts = []
        for entry in self.checkpoint_manager.get_state():
            path, metrics = entry["path"], entry["metrics"]
            # The metrics object itself is held (compared by identity), so its id cannot be reused.
            key = (entry.get("latest_only", False), self.checkpoint_rows.get(path, 0), self._relative(path))
            hit = texts.get(path)
            if hit is None or hit[0] is not metrics or hit[1] != key:
                hit = (metrics, key, json.dumps(self._checkpoint_entry(entry), allow_nan=True))
            fresh[path] = hit
            parts.append(hit[2])
        self._checkpoint_texts = fresh  # checkpoints no longer kept are forgotten
        return f'{head[:-1]}, "checkpoints": [{", ".join(parts)}]}}'

    def _checkpoint_entry(self, entry: dict[str, Any]) -> dict[str, Any]:
        from tunesmith.tune.utils.serialization import to_jsonable

        return to_jsonable(dict(entry, path=self._relative(entry["path"]), rows=self.checkpoint_rows.get(entry["path"], 0)))

    def _finished_key(self) -> tuple | None:
        """What a finished trial's saved state depends on; None while it is not finished."""
        if self.status not in (Trial.TERMINATED, Trial.ERROR):
            return None
        restore = self.restore_checkpoint
        return (self.status, self.num_results, self.num_failures, id(self.last_result), id(self.config),
                self.error_file, self.error_msg, restore.path if restore else None,
                len(self.checkpoint_rows), self.scheduler_stop_iteration, self.restored_iteration)

    def _build_state(self, with_checkpoints: bool = True) -> dict[str, Any]:
        from tunesmith.tune.utils.serialization import is_json_exact, to_jsonable

        rel = self._relative
        restore = self.restore_checkpoint
        state = {
            "trial_id": self.trial_id,
            "trainable_name": self.trainable_name,
            "config": to_jsonable(self.config),
            # Values JSON keeps only as text (objects, arrays, tuples): readers load params.pkl.
            "config_pickled": not is_json_exact(self.config),
            "evaluated_params": to_jsonable(self.evaluated_params),
            "experiment_tag": self.experiment_tag,
            "status": self.status,
            "trial_dirname": self.trial_dirname,
            "custom_trial_name": self.custom_trial_name,
            "last_result": to_jsonable(self.last_result),
            "metric_analysis": self.metric_analysis,  # str keys, float and int values
            "restore_checkpoint": rel(restore.path) if restore else None,
            "restore_checkpoint_rows": self.rows_at(restore),
            "started_from": rel(self.started_from.path) if self.started_from is not None else None,
            "started_from_rows": self.rows_at(self.started_from) if self.started_from is not None else None,
            "resources": self.placement_group_factory.bundles,
            "error_file": rel(self.error_file),
            "pickled_error_file": rel(self.pickled_error_file),
            "num_results": self.num_results,
            "max_failures": self.max_failures,
            "log_to_file": list(self.log_to_file),
            "error_msg": self.error_msg,
            "num_failures": self.num_failures,
            "stopping_criterion": to_jsonable(self.stopping_criterion),
            "restored_iteration": self.restored_iteration,
            "start_time": self.start_time,
            "scheduler_stop_iteration": self.scheduler_stop_iteration,
        }
        if self.start_points:
            state["start_points"] = {rel(path): counters for path, counters in self.start_points.items()}
        manager = self.checkpoint_manager
        if manager.score_attribute is not None:
            # How best_checkpoints are ranked, for readers without the CheckpointConfig.
            state["checkpoint_score"] = [manager.score_attribute, manager.score_order]
        if self.return_value is not None:
            encoded = encode_return_value(self.return_value)
            if encoded is not None:
                state["return_value"] = encoded
        if with_checkpoints:
            state["checkpoints"] = [self._checkpoint_entry(e) for e in self.checkpoint_manager.get_state()]
        return state

    def _checkpoint_absolute(self, path: str | None) -> str | None:
        if path and self.storage_path and "://" not in path and not os.path.isabs(path):
            base = self.storage_path.rstrip("/")
            return path if path.startswith(base + "/") else f"{base}/{path}"
        return self._absolute(path)

    @classmethod
    def from_json_state(cls, state: dict[str, Any], experiment_path: str | None = None, filesystem=None,
                        checkpoint_config=None, storage_path: str | None = None,
                        checkpoint_filesystem=None) -> "Trial":
        """Rebuilds a trial from :meth:`get_json_state` data.

        ``storage_path`` and ``checkpoint_filesystem`` place the checkpoints on remote
        storage while the trial's other files are read from ``experiment_path``.

        Raises:
            ValueError: The state names a trial directory that is not one plain
                directory name (it could lead outside the experiment directory).
        """
        dirname = state["trial_dirname"]
        if not isinstance(dirname, str) or given_dirname(dirname, max_bytes=255) != dirname:
            raise ValueError(
                f"The saved state of trial {state.get('trial_id')!r} names the trial directory {dirname!r}, "
                "which is not a plain directory name inside the experiment; the state file was changed "
                "or is corrupt."
            )
        log_to_file = state.get("log_to_file") or (None, None)
        for name in log_to_file:
            if name and (os.path.isabs(name) or ".." in name.replace("\\", "/").split("/")):
                raise ValueError(
                    f"The saved state of trial {state.get('trial_id')!r} sends its output to {name!r}, "
                    "outside the trial directory; the state file was changed or is corrupt."
                )
        trial = cls(
            state["trainable_name"],
            config=state.get("config") or {},
            trial_id=state["trial_id"],
            experiment_tag=state.get("experiment_tag", ""),
            evaluated_params=state.get("evaluated_params"),
            placement_group_factory=PlacementGroupFactory(state.get("resources") or [{"CPU": 1}]),
            stopping_criterion=state.get("stopping_criterion"),
            experiment_path=experiment_path,
            filesystem=filesystem,
            checkpoint_config=checkpoint_config,
            max_failures=int(state.get("max_failures", 0) or 0),
            log_to_file=tuple(log_to_file),
        )
        trial.trial_dirname = dirname
        trial.custom_trial_name = state.get("custom_trial_name")
        if state["status"] not in (cls.PENDING, cls.RUNNING, cls.PAUSED, cls.TERMINATED, cls.ERROR):
            raise ValueError(f"trial {state['trial_id']!r} has no status tunesmith knows ({state['status']!r})")
        trial.status = state["status"]
        trial.last_result = state.get("last_result") or {}
        if not isinstance(trial.last_result, dict) or not isinstance(state.get("metric_analysis") or {}, dict):
            raise ValueError(f"trial {state['trial_id']!r} has a last result or metric analysis that is not a dict")
        trial.metric_analysis = state.get("metric_analysis") or {}
        trial.storage_path = storage_path
        if checkpoint_filesystem is None:
            checkpoint_filesystem = filesystem
        absolute = trial._absolute
        ckpt_absolute = trial._checkpoint_absolute
        entries = [dict(e, path=ckpt_absolute(e["path"])) for e in state.get("checkpoints") or []]
        trial.checkpoint_manager.set_state(entries, checkpoint_filesystem)
        score = state.get("checkpoint_score")
        if checkpoint_config is None and isinstance(score, list) and len(score) == 2:
            # Read back without the run's CheckpointConfig: best_checkpoints ranked as the run ranked them.
            trial.checkpoint_manager.score_attribute, trial.checkpoint_manager.score_order = score
        # (states of version 1 have no row counts: a trial resuming from such a checkpoint keeps its rows)
        trial.checkpoint_rows = {e["path"]: int(e["rows"] or 0) for e in entries if "rows" in e}
        if state.get("restore_checkpoint"):
            path = ckpt_absolute(state["restore_checkpoint"])
            trial.restore_checkpoint = Checkpoint(path, checkpoint_filesystem)
            if state.get("restore_checkpoint_rows") is not None:
                trial.checkpoint_rows.setdefault(path, int(state["restore_checkpoint_rows"]))
        if state.get("started_from"):
            path = ckpt_absolute(state["started_from"])
            trial.started_from = Checkpoint(path, checkpoint_filesystem)
            if state.get("started_from_rows") is not None:
                trial.checkpoint_rows.setdefault(path, int(state["started_from_rows"]))
        trial.start_points = {ckpt_absolute(path): counters
                              for path, counters in (state.get("start_points") or {}).items()}
        trial.num_results = int(state.get("num_results", 0) or 0)
        trial.error_file = absolute(state.get("error_file"))
        trial.pickled_error_file = absolute(state.get("pickled_error_file"))
        trial.error_msg = state.get("error_msg")
        trial.num_failures = state.get("num_failures", 0)
        trial.restored_iteration = state.get("restored_iteration", 0)
        trial.start_time = state.get("start_time")
        trial.scheduler_stop_iteration = state.get("scheduler_stop_iteration")
        trial.return_value = decode_return_value(state.get("return_value"))
        return trial


def encode_return_value(value: Any) -> str | None:
    """What a trainer's function returned, as text for the saved trial state (None: it cannot be pickled)."""
    import base64

    from tunesmith._internal.pickling import dumps

    try:
        return base64.b64encode(dumps(value)).decode("ascii")
    except Exception:  # noqa: BLE001 - a value that cannot be kept is only not kept
        logger.warning("The return value %r cannot be pickled; Result.from_path and a restored run will not "
                       "have it.", type(value).__name__)
        return None


def decode_return_value(text: Any) -> Any:
    """The value :func:`encode_return_value` saved; None when there is none or it cannot be read here."""
    if not isinstance(text, str):
        return None
    import base64
    import pickle

    try:
        import cloudpickle  # noqa: F401  (rebuilds what was pickled by value)

        return pickle.loads(base64.b64decode(text))
    except Exception as exc:  # noqa: BLE001 - a class this process cannot import, say
        logger.warning("A saved return value cannot be read (%s: %s); return_value is None.", type(exc).__name__, exc)
        return None
