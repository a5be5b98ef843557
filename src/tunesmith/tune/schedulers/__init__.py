"""Trial schedulers: algorithms that stop, pause, clone or re-resource trials while they run.

All schedulers work on :class:`~tunesmith.tune.experiment.trial.Trial` objects
and result dicts through the small controller interface described in
:mod:`tunesmith.tune.schedulers.trial_scheduler`.
"""
from __future__ import annotations

from typing import Any

from tunesmith.tune.schedulers._util import class_names, unwrap_searcher
from tunesmith.tune.schedulers.async_hyperband import ASHAScheduler, AsyncHyperBandScheduler
from tunesmith.tune.schedulers.hb_bohb import HyperBandForBOHB
from tunesmith.tune.schedulers.hyperband import HyperBandScheduler
from tunesmith.tune.schedulers.median_stopping_rule import MedianStoppingRule
from tunesmith.tune.schedulers.pb2 import PB2
from tunesmith.tune.schedulers.pbt import PopulationBasedTraining, PopulationBasedTrainingReplay
from tunesmith.tune.schedulers.resource_changing_scheduler import (
    DistributeResources,
    DistributeResourcesToTopJob,
    ResourceChangingScheduler,
)
from tunesmith.tune.schedulers.trial_scheduler import FIFOScheduler, TrialScheduler

_SCHEDULERS: dict[str, type] = {
    "fifo": FIFOScheduler,
    "async_hyperband": AsyncHyperBandScheduler,
    "asynchyperband": AsyncHyperBandScheduler,
    "asha": ASHAScheduler,
    "median_stopping_rule": MedianStoppingRule,
    "medianstopping": MedianStoppingRule,
    "hyperband": HyperBandScheduler,
    "hb_bohb": HyperBandForBOHB,
    "pbt": PopulationBasedTraining,
    "pbt_replay": PopulationBasedTrainingReplay,
    "pb2": PB2,
    "resource_changing": ResourceChangingScheduler,
}


def create_scheduler(scheduler: str, **kwargs: Any) -> TrialScheduler:
    """Creates a scheduler from its name, for configs and command lines.

    Args:
        scheduler: One of ``"fifo"``, ``"async_hyperband"`` (or ``"asynchyperband"``),
            ``"asha"``, ``"median_stopping_rule"`` (or ``"medianstopping"``),
            ``"hyperband"``, ``"hb_bohb"``, ``"pbt"``, ``"pbt_replay"``, ``"pb2"``,
            ``"resource_changing"`` (case-insensitive).
        **kwargs: Passed to the scheduler's constructor; those it does not take are left out
            (as on Ray: one settings dict can serve several scheduler names).

    Example:
        >>> from tunesmith import tune
        >>> asha = tune.create_scheduler("asha", metric="loss", mode="min", max_t=20)
        >>> type(asha).__name__
        'AsyncHyperBandScheduler'
    """
    if not isinstance(scheduler, str):
        raise TypeError(f"create_scheduler expects a scheduler name (str), got {type(scheduler).__name__}.")
    cls = _SCHEDULERS.get(scheduler.lower())
    if cls is None:
        raise ValueError(f"Unknown scheduler {scheduler!r}. Choose one of: {', '.join(sorted(_SCHEDULERS))}.")
    import inspect

    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return cls(**kwargs)


def _trainable_can_checkpoint(trainable: Any) -> bool | None:
    """True/False for a class trainable (does it implement saving?); None when it cannot be told."""
    if not isinstance(trainable, type):
        return None
    mro = trainable.__mro__
    if not any(cls.__name__ == "Trainable" for cls in mro):
        return None
    for cls in mro:
        if cls.__name__ in ("Trainable", "DurableTrainable", "object"):
            continue
        if "save_checkpoint" in cls.__dict__ or "_save" in cls.__dict__:
            return True
    return False


def check_scheduler_compatibility(
    scheduler: TrialScheduler | None,
    search_alg: Any = None,
    trainable: Any = None,
    can_checkpoint: bool | None = None,
) -> None:
    """Raises ValueError when a scheduler is combined with what it cannot work with.

    Follows the scheduler compatibility matrix: PBT, PB2 and PBT replay work
    only with the default variant generator, ``HyperBandForBOHB`` only with it
    or ``TuneBOHB``; schedulers that pause trials and restart them from
    checkpoints (HyperBand, BOHB, PBT, PB2, ResourceChangingScheduler) need a
    trainable that can save checkpoints.

    Args:
        scheduler: The scheduler (None: FIFO, always fine).
        search_alg: The search algorithm or searcher (None: the default generator).
        trainable: The trainable; a ``Trainable`` subclass is checked for
            ``save_checkpoint``/``_save``.
        can_checkpoint: Overrides the check of ``trainable`` when not None.

    Example:
        >>> from tunesmith.tune.schedulers import check_scheduler_compatibility, ASHAScheduler
        >>> check_scheduler_compatibility(ASHAScheduler(), search_alg=None)
    """
    if scheduler is None:
        return
    name = type(scheduler).__name__
    if not scheduler._supports_search_alg(search_alg):
        searcher = unwrap_searcher(search_alg)
        allowed = "the default search (no search_alg)"
        if isinstance(scheduler, HyperBandForBOHB) or "HyperBandForBOHB" in class_names(
            getattr(scheduler, "base_scheduler", None)
        ):
            allowed += " or TuneBOHB"
        raise ValueError(
            f"{name} cannot be used with the search algorithm {type(searcher).__name__}: it works only with "
            f"{allowed}. Remove `search_alg` from TuneConfig, or choose another scheduler (ASHA, HyperBand and "
            "MedianStoppingRule work with every search algorithm)."
        )
    if not scheduler._requires_checkpointing:
        return
    if can_checkpoint is None:
        can_checkpoint = _trainable_can_checkpoint(trainable)
    if can_checkpoint is False:
        raise ValueError(
            f"{name} pauses trials and restarts them from checkpoints, but the trainable "
            f"{getattr(trainable, '__name__', trainable)!r} cannot save checkpoints. Implement "
            "`save_checkpoint(checkpoint_dir)` and `load_checkpoint(checkpoint)` on the Trainable "
            "(or report checkpoints with train.report(..., checkpoint=...) from a function), "
            "or use a scheduler that does not need them (ASHA, MedianStoppingRule, FIFO)."
        )


__all__ = [
    "TrialScheduler",
    "FIFOScheduler",
    "AsyncHyperBandScheduler",
    "ASHAScheduler",
    "HyperBandScheduler",
    "HyperBandForBOHB",
    "MedianStoppingRule",
    "PopulationBasedTraining",
    "PopulationBasedTrainingReplay",
    "PB2",
    "ResourceChangingScheduler",
    "DistributeResources",
    "DistributeResourcesToTopJob",
    "create_scheduler",
    "check_scheduler_compatibility",
]
