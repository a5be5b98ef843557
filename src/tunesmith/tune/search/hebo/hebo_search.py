"""``HEBOSearch``: Huawei's HEBO (heteroscedastic evolutionary Bayesian optimisation) as a Tune searcher."""
from __future__ import annotations

import contextlib
import logging
import math
from typing import Any, Iterator, Sequence

from tunesmith.tune.search._library import GlobalRandomState, LibrarySearcher, Param, mark_converted, parse_space

logger = logging.getLogger(__name__)


def _hebo_parameter(p: Param) -> dict:
    if p.kind == "categorical":
        return {"name": p.name, "type": "cat", "categories": [str(i) for i in range(len(p.categories))]}
    if p.log:
        kind = "pow_int" if p.kind == "int" else "pow"
        return {"name": p.name, "type": kind, "lb": p.low, "ub": p.high, "base": p.base}
    if p.kind == "int":
        return {"name": p.name, "type": "int", "lb": int(p.low), "ub": int(p.high)}
    return {"name": p.name, "type": "num", "lb": float(p.low), "ub": float(p.high)}


@contextlib.contextmanager
def _seeded_default_rng(active: bool) -> Iterator[None]:
    """Seeds the generators pymoo creates without a seed from the (private) global NumPy state.

    HEBO runs pymoo's evolutionary search without a seed, and pymoo >= 0.6.1 then
    draws one from the operating system, so a seeded HEBO would not repeat itself.
    Only while HEBO suggests (in the driver's thread), ``numpy.random.default_rng()``
    without a seed takes one from the global generator, which
    ``GlobalRandomState`` has set from the searcher's seed.
    """
    import numpy as np

    if not active:
        yield
        return
    original = np.random.default_rng

    def default_rng(seed=None):
        return original(np.random.randint(0, 2**31 - 1) if seed is None else seed)

    np.random.default_rng = default_rng
    try:
        yield
    finally:
        np.random.default_rng = original


class HEBOSearch(LibrarySearcher):
    """Searches with `HEBO <https://github.com/huawei-noah/HEBO>`_.

    HEBO proposes a batch of ``max_concurrent`` configurations at a time
    (its MACE acquisition is built for batches); the batch is handed out one
    trial at a time and a new one is computed when it is used up. With a
    seed, the next batch waits for every result before it, so the same seed
    gives the same configurations. The Tune
    space is converted to a ``hebo`` ``DesignSpace``; a ``DesignSpace`` is
    accepted as ``space`` too.

    Args:
        space: A Tune search space or a ``hebo.design_space.design_space.DesignSpace``.
            None takes the Tuner's ``param_space``.
        metric: The result key to optimise.
        mode: ``"min"`` or ``"max"``.
        points_to_evaluate: Configurations to run first.
        evaluated_rewards: Metric values of ``points_to_evaluate`` that were
            already evaluated; they are observed, not run.
        random_state_seed: Seeds HEBO's sampling (NumPy and torch generators,
            reseeded from it before each batch).
        max_concurrent: Trials running at once, and the batch size.
        **kwargs: Passed to ``hebo.optimizers.hebo.HEBO`` (``rand_sample``,
            ``model_name``, ...).

    Example:
        >>> from tunesmith import tune
        >>> from tunesmith.tune.search.hebo import HEBOSearch
        >>> algo = HEBOSearch({"x": tune.uniform(0, 1)}, metric="loss", mode="min", random_state_seed=0)  # doctest: +SKIP
        >>> 0 <= algo.suggest("t1")["x"] <= 1  # doctest: +SKIP
        True
    """

    _extra = "hebo"
    _pip_name = "HEBO"
    # HEBO's metadata pins numpy<1.25 and pymoo==0.6.0; the extra brings what it imports.
    _install_hint = "`pip install 'tunesmith[hebo]' && pip install --no-deps HEBO==0.3.6`"

    def __init__(
        self,
        space: Any = None,
        metric: str | None = None,
        mode: str | None = None,
        points_to_evaluate: Sequence[dict] | None = None,
        evaluated_rewards: Sequence[Any] | None = None,
        random_state_seed: int | None = None,
        max_concurrent: int = 8,
        **kwargs: Any,
    ):
        self._require("hebo.optimizers.hebo")
        if not isinstance(max_concurrent, int) or max_concurrent < 1:
            raise ValueError(f"HEBOSearch: `max_concurrent` must be a positive integer, got {max_concurrent!r}.")
        self._hebo_config = kwargs
        self._opt = None
        self._batch: list[dict] = []
        self._rng = None
        self._num_batches = 0
        super().__init__(
            space=space, metric=metric, mode=mode, points_to_evaluate=points_to_evaluate,
            evaluated_rewards=evaluated_rewards, seed=random_state_seed, max_concurrent=max_concurrent,
        )

    # -- spaces ---------------------------------------------------------------------
    def _is_native_space(self, space: Any) -> bool:
        from hebo.design_space.design_space import DesignSpace

        return isinstance(space, DesignSpace)

    def _native_space_description(self) -> str:
        return "a hebo DesignSpace"

    @staticmethod
    def convert_search_space(spec: dict) -> Any:
        """Converts a Tune search space into a HEBO ``DesignSpace`` (flat ``/`` names).

        Example:
            >>> from tunesmith import tune
            >>> HEBOSearch.convert_search_space({"lr": tune.loguniform(1e-4, 1e-1)}).para_names  # doctest: +SKIP
            ['lr']
        """
        from hebo.design_space.design_space import DesignSpace

        params = parse_space(spec, "HEBOSearch")
        return mark_converted(DesignSpace().parse([_hebo_parameter(p) for p in params]), params)

    # -- library ----------------------------------------------------------------------
    @property
    def _deterministic(self) -> bool:
        # Batches are proposed together; order results by suggestion when seeded.
        return self._seed is not None and not self._last_suggested

    def _build(self) -> None:
        from hebo.design_space.design_space import DesignSpace
        from hebo.optimizers.hebo import HEBO

        if self._params is not None:
            space = DesignSpace().parse([_hebo_parameter(p) for p in self._params])
        else:
            space = self._native_space
        config = dict(self._hebo_config)
        if self._seed is not None:
            config.setdefault("scramble_seed", self._seed)
        self._rng = GlobalRandomState(self._seed)
        self._opt = HEBO(space, **config)

    def _from_hebo(self, row: dict) -> dict:
        if self._params is None:
            return {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        out = {}
        for p in self._params:
            v = row[p.name]
            v = v.item() if hasattr(v, "item") else v
            out[p.name] = p.choices()[int(v)] if p.kind == "categorical" else v
        return out

    def _to_hebo(self, params: dict) -> dict:
        if self._params is None:
            return dict(params)
        out = {}
        for p in self._params:
            v = p.encode(p.decode(params[p.name]))
            out[p.name] = str(p.choices().index(v)) if p.kind == "categorical" else v
        return out

    def _ask(self, trial_id: str):
        if not self._batch and self._deterministic and self._num_told < self._num_suggested:
            return None  # a seeded run computes the next batch from all results before it
        if not self._batch:
            import torch

            with self._rng.active(), torch.random.fork_rng(devices=[]), _seeded_default_rng(self._seed is not None):
                if self._seed is not None:
                    torch.manual_seed(self._seed + self._num_batches)
                frame = self._opt.suggest(n_suggestions=max(1, self._max_concurrent))
            self._num_batches += 1
            self._batch = frame.to_dict("records")
        return None, self._from_hebo(self._batch.pop(0))

    def _tell(self, trial_id, handle, params, value, error, intermediate) -> None:
        pass  # handles are None: results arrive through _observe

    def _observe(self, params, value, error, pruned, intermediate) -> None:
        if error or value is None:
            return  # a failed trial is left out of the model
        import numpy as np
        import pandas as pd

        y = self._sign() * float(value)
        if not math.isfinite(y):
            return
        self._opt.observe(pd.DataFrame([self._to_hebo(params)]), np.array([[y]]))
