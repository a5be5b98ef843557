"""``NevergradSearch``: Nevergrad's gradient-free optimisers as a Tune searcher."""
from __future__ import annotations

import logging
from typing import Any, Sequence

from tunesmith.tune.search._library import LibrarySearcher, Param, mark_converted, parse_space

logger = logging.getLogger(__name__)


def _allow_one_element_arrays_in_metamodel() -> None:
    """Lets Nevergrad's meta-model turn its one-element predictions into floats under NumPy 2.4.

    ``nevergrad.optimization.metamodel`` (1.0.12) minimises ``float(model.predict(x))``,
    where ``predict`` returns an array of one element. NumPy deprecated ``float()`` of an
    array with dimensions in 1.25, and the NumPy 2.4 installed with tunesmith raises
    ``TypeError: only 0-dimensional arrays can be converted to Python scalars``, which
    Nevergrad does not catch: ``NGOpt`` fails as soon as it switches to its meta-model
    (after a dozen trials for a budget of 200 on two parameters). This gives that module
    a ``float`` that takes the one element out first, as older NumPy did; everything else
    goes to the built-in ``float`` unchanged.
    """
    import numpy as np
    from nevergrad.optimization import metamodel

    if "float" in vars(metamodel):
        return

    def one_element_float(value: Any = 0.0) -> float:
        if isinstance(value, np.ndarray) and value.size == 1:
            value = value.reshape(())
        return float(value)

    metamodel.float = one_element_float


class NevergradSearch(LibrarySearcher):
    """Searches with a `Nevergrad <https://facebookresearch.github.io/nevergrad/>`_ optimiser.

    The Tune search space is converted to an ``ng.p.Dict`` parametrization
    (``Scalar``, ``Log``, integer casting, ``Choice``); a Nevergrad
    parametrization is accepted as ``space`` too, or an optimiser instance
    that already has one.

    Args:
        optimizer: A Nevergrad optimiser class or configured optimiser
            (``ng.optimizers.OnePlusOne``), its registry name (``"NGOpt"``), or
            an optimiser instance. Defaults to ``NGOpt`` when ``optimizer_kwargs``
            has a ``budget``, else ``OnePlusOne``.
        optimizer_kwargs: Keyword arguments for the optimiser class
            (``budget``, ``num_workers``, ...).
        space: A Tune search space or an ``ng.p.Dict``/``ng.p.Instrumentation``.
            None takes the Tuner's ``param_space``.
        metric: The result key to optimise.
        mode: ``"min"`` or ``"max"``.
        points_to_evaluate: Configurations to run first.
        seed: Seeds the parametrization's random state.

    Example:
        >>> import nevergrad as ng
        >>> from tunesmith import tune
        >>> from tunesmith.tune.search.nevergrad import NevergradSearch
        >>> algo = NevergradSearch(ng.optimizers.OnePlusOne, space={"x": tune.uniform(0, 1)},
        ...                        metric="loss", mode="min", seed=0)
        >>> 0 <= algo.suggest("t1")["x"] <= 1
        True
    """

    _extra = "nevergrad"
    _pip_name = "nevergrad"

    def __init__(
        self,
        optimizer: Any = None,
        optimizer_kwargs: dict | None = None,
        space: Any = None,
        metric: str | None = None,
        mode: str | None = None,
        points_to_evaluate: Sequence[dict] | None = None,
        seed: int | None = None,
    ):
        ng = self._require("nevergrad")
        _allow_one_element_arrays_in_metamodel()
        self._optimizer_kwargs = dict(optimizer_kwargs or {})
        self._opt = None
        self._opt_factory = None
        if optimizer is None:
            # NGOpt picks an algorithm from the budget; without one, a (1+1) evolution strategy.
            optimizer = ng.optimizers.NGOpt if self._optimizer_kwargs.get("budget") else ng.optimizers.OnePlusOne
        if isinstance(optimizer, str):
            if optimizer not in ng.optimizers.registry:
                raise ValueError(
                    f"NevergradSearch: unknown optimizer {optimizer!r}; use a name from nevergrad.optimizers.registry."
                )
            optimizer = ng.optimizers.registry[optimizer]
        self._names: list[str] | None = None
        if isinstance(optimizer, ng.optimization.Optimizer):
            if isinstance(space, (list, tuple)) and all(isinstance(n, str) for n in space):
                # As Ray: the names of the values of the instance's array parametrization, in order.
                self._names = list(space)
                size = getattr(optimizer.parametrization, "dimension", None)
                if size is not None and size != len(self._names):
                    raise ValueError(
                        f"NevergradSearch: the optimizer's parametrization has {size} values, but `space` names "
                        f"{len(self._names)}: {self._names}."
                    )
                space = None
            if space is not None:
                raise ValueError(
                    "NevergradSearch: an optimizer instance already has its parametrization; pass `space=None` "
                    "(or the list of its values' names), or pass the optimizer class and the space."
                )
            if self._optimizer_kwargs:
                raise ValueError("NevergradSearch: `optimizer_kwargs` only apply to an optimizer class, not an instance.")
            self._opt = optimizer
            space = optimizer.parametrization
        elif isinstance(optimizer, type) and issubclass(optimizer, ng.optimization.Optimizer) or isinstance(
            optimizer, ng.optimizers.base.ConfiguredOptimizer
        ):
            self._opt_factory = optimizer
        else:
            raise TypeError(
                "NevergradSearch: `optimizer` must be a nevergrad optimizer class, configured optimizer, registry "
                f"name or instance, got {optimizer!r}."
            )
        super().__init__(space=space, metric=metric, mode=mode, points_to_evaluate=points_to_evaluate, seed=seed)

    # -- spaces ---------------------------------------------------------------------
    def _is_native_space(self, space: Any) -> bool:
        import nevergrad as ng

        return isinstance(space, ng.p.Parameter)

    def _native_space_description(self) -> str:
        return "a nevergrad parametrization (ng.p.Dict or ng.p.Instrumentation)"

    @staticmethod
    def _parameter(p: Param) -> Any:
        import nevergrad as ng

        if p.kind == "categorical":
            return ng.p.Choice(p.choices())
        if p.log:
            param = ng.p.Log(lower=p.low, upper=p.high)
        else:
            param = ng.p.Scalar(lower=p.low, upper=p.high)
        if p.kind == "int" and p.q is None:
            param = param.set_integer_casting()
        return param

    @staticmethod
    def convert_search_space(spec: dict) -> Any:
        """Converts a Tune search space into an ``ng.p.Dict`` (flat ``/`` names).

        Example:
            >>> from tunesmith import tune
            >>> space = NevergradSearch.convert_search_space({"lr": tune.loguniform(1e-4, 1e-1)})
            >>> type(space).__name__
            'Dict'
        """
        import nevergrad as ng

        params = parse_space(spec, "NevergradSearch")
        return mark_converted(ng.p.Dict(**{p.name: NevergradSearch._parameter(p) for p in params}), params)

    # -- library ----------------------------------------------------------------------
    def _build(self) -> None:
        import nevergrad as ng
        import numpy as np

        if self._opt is None:
            if self._params is not None:
                parametrization = ng.p.Dict(**{p.name: self._parameter(p) for p in self._params})
            else:
                parametrization = self._native_space
            if self._seed is not None:
                parametrization.random_state = np.random.RandomState(self._seed)
            self._opt = self._opt_factory(parametrization=parametrization, **self._optimizer_kwargs)
        elif self._seed is not None:
            self._opt.parametrization.random_state = np.random.RandomState(self._seed)

    def _values(self, candidate: Any) -> dict:
        import nevergrad as ng

        if self._names is not None:
            value = candidate.args[0] if isinstance(self._opt.parametrization, ng.p.Instrumentation) else candidate.value
            return {name: float(v) for name, v in zip(self._names, value)}
        if isinstance(self._opt.parametrization, ng.p.Instrumentation):
            return dict(candidate.kwargs)
        return dict(candidate.value)

    def _ask(self, trial_id: str):
        candidate = self._opt.ask()
        return candidate, self._values(candidate)

    def _candidate(self, params: dict) -> Any:
        import nevergrad as ng
        import numpy as np

        if self._names is not None:
            array = np.asarray([params[name] for name in self._names], dtype=float)
            if isinstance(self._opt.parametrization, ng.p.Instrumentation):
                return self._opt.parametrization.spawn_child(new_value=((array,), {}))
            return self._opt.parametrization.spawn_child(new_value=array)
        if isinstance(self._opt.parametrization, ng.p.Instrumentation):
            return self._opt.parametrization.spawn_child(new_value=((), dict(params)))
        return self._opt.parametrization.spawn_child(new_value=dict(params))

    def _ask_point(self, trial_id: str, point: dict):
        return self._candidate(point)

    def _tell(self, trial_id, handle, params, value, error, intermediate) -> None:
        if value is None:
            return  # a failed trial is not a measurement; Nevergrad does not need every ask told
        self._opt.tell(handle, self._sign() * value)

    def _observe(self, params, value, error, pruned, intermediate) -> None:
        if error or value is None:
            return
        self._opt.tell(self._candidate(params), self._sign() * value)
