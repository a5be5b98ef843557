"""What the framework callbacks share: choosing metrics and reporting with a checkpoint."""
from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from typing import Any, Callable, Iterator, Mapping, Sequence, Union

logger = logging.getLogger(__name__)

Metrics = Union[str, Sequence[str], Mapping[str, str], None]


def normalize_metrics(metrics: Metrics, owner: str) -> list[str] | dict[str, str] | None:
    """``metrics`` as None, a list of names, or a dict of reported name -> framework name."""
    if metrics is None:
        return None
    if isinstance(metrics, str):
        return [metrics]
    if isinstance(metrics, Mapping):
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metrics.items()):
            raise TypeError(f"{owner}(metrics=...) must map reported names to the framework's metric names "
                            f"(strings), got {metrics!r}.")
        return dict(metrics)
    if isinstance(metrics, Sequence) and all(isinstance(m, str) for m in metrics):
        return list(metrics)
    raise TypeError(f"{owner}(metrics=...) must be None, a metric name, a list of names or a dict of "
                    f"reported name -> framework name, got {metrics!r}.")


def select_metrics(available: dict[str, Any], metrics: list[str] | dict[str, str] | None,
                   owner: str) -> dict[str, Any]:
    """The metrics to report, renamed; every available one when ``metrics`` is None."""
    if metrics is None:
        return dict(available)
    pairs = metrics.items() if isinstance(metrics, dict) else ((m, m) for m in metrics)
    out = {}
    for reported, name in pairs:
        if name not in available:
            raise KeyError(
                f"{owner} was asked to report {name!r}, but the training run has only "
                f"{sorted(available)}. Fix the name in metrics=..."
            )
        out[reported] = available[name]
    return out


def check_frequency(frequency: Any, owner: str) -> int:
    if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency < 0:
        raise ValueError(f"{owner}(frequency={frequency!r}) must be an integer >= 0 (0: no periodic checkpoints).")
    return frequency


@contextlib.contextmanager
def checkpoint_from(save: Callable[[str], None]) -> Iterator[Any]:
    """A checkpoint of a temporary directory that ``save(directory)`` fills; removed afterwards."""
    from tunesmith.train._checkpoint import Checkpoint

    directory = tempfile.mkdtemp(prefix="tunesmith-ckpt-")
    try:
        save(directory)
        yield Checkpoint.from_directory(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def report(metrics: dict, checkpoint=None) -> None:
    from tunesmith._internal.session import report as session_report

    session_report(metrics, checkpoint=checkpoint)
