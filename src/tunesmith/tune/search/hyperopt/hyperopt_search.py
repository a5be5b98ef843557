"""``HyperOptSearch``: HyperOpt's Tree-structured Parzen Estimators as a Tune searcher."""
from __future__ import annotations

import copy
import functools
import math
from typing import Any, Sequence

from tunesmith.tune.search._library import LibrarySearcher, Param, _constants_of, mark_converted, parse_space
from tunesmith.tune.search.variant_generator import flatten_dict


def _identity(config: Any) -> Any:
    return config


class HyperOptSearch(LibrarySearcher):
    """Searches with `HyperOpt <http://hyperopt.github.io/hyperopt>`_'s TPE.

    The Tune search space is converted to ``hp.*`` expressions; a HyperOpt
    space (a dict of ``hp.*`` expressions, conditional ``hp.choice`` spaces
    included) is accepted too. For a HyperOpt space, ``points_to_evaluate``
    follow HyperOpt's convention: a ``hp.choice`` is given by its index.

    Args:
        space: A Tune search space or a HyperOpt space. None takes the
            Tuner's ``param_space``.
        metric: The result key to optimise.
        mode: ``"min"`` or ``"max"``.
        points_to_evaluate: Configurations to run first.
        n_initial_points: Random configurations before TPE takes over.
        random_state_seed: Seeds the search.
        gamma: TPE's quantile that splits good from bad configurations.

    Example:
        >>> from tunesmith import tune
        >>> from tunesmith.tune.search.hyperopt import HyperOptSearch
        >>> algo = HyperOptSearch(
        ...     {"x": tune.uniform(0, 1)}, metric="loss", mode="min", random_state_seed=0, n_initial_points=2
        ... )
        >>> config = algo.suggest("t1")
        >>> algo.on_trial_complete("t1", {"loss": config["x"]})
        >>> 0 <= algo.suggest("t2")["x"] <= 1
        True
    """

    _extra = "hyperopt"
    _pip_name = "hyperopt"
    _allow_normal = True

    def __init__(
        self,
        space: dict | None = None,
        metric: str | None = None,
        mode: str | None = None,
        points_to_evaluate: Sequence[dict] | None = None,
        n_initial_points: int = 20,
        random_state_seed: int | None = None,
        gamma: float = 0.25,
    ):
        self._require("hyperopt")
        if not isinstance(n_initial_points, int) or n_initial_points < 0:
            raise ValueError(f"HyperOptSearch: `n_initial_points` must be an integer >= 0, got {n_initial_points!r}.")
        if not (isinstance(gamma, (int, float)) and 0 < gamma < 1):
            raise ValueError(f"HyperOptSearch: `gamma` must be between 0 and 1, got {gamma!r}.")
        self._n_initial_points = n_initial_points
        self._gamma = float(gamma)
        self._trials = None
        self._domain = None
        self._rng = None
        super().__init__(
            space=space, metric=metric, mode=mode, points_to_evaluate=points_to_evaluate, seed=random_state_seed
        )

    # -- spaces ---------------------------------------------------------------------
    def _is_native_space(self, space: Any) -> bool:
        from hyperopt.pyll import Apply

        def has_apply(value: Any) -> bool:
            if isinstance(value, Apply):
                return True
            if isinstance(value, dict):
                return any(has_apply(v) for v in value.values())
            if isinstance(value, (list, tuple)):
                return any(has_apply(v) for v in value)
            return False

        return isinstance(space, dict) and has_apply(space)

    def _native_space_description(self) -> str:
        return "a dict of hyperopt `hp.*` expressions"

    @staticmethod
    def _expression(p: Param) -> Any:
        from hyperopt import hp
        from hyperopt.pyll import scope

        if p.kind == "categorical":
            return hp.choice(p.name, p.choices())
        if p.is_normal:
            if p.q is not None:
                expression = hp.qnormal(p.name, p.mean, p.sd, p.q)
            else:
                expression = hp.normal(p.name, p.mean, p.sd)
        elif p.log:
            low, high = math.log(p.low), math.log(p.high)
            if p.q is not None or p.kind == "int":
                expression = hp.qloguniform(p.name, low, high, p.q or 1)
            else:
                expression = hp.loguniform(p.name, low, high)
        elif p.q is not None or p.kind == "int":
            expression = hp.quniform(p.name, p.low, p.high, p.q or 1)
        else:
            expression = hp.uniform(p.name, p.low, p.high)
        # An integer parameter gives ints (as hp.uniformint does) where the space is used as hyperopt's own.
        return scope.int(expression) if p.kind == "int" else expression

    @staticmethod
    def convert_search_space(spec: dict) -> dict:
        """Converts a Tune search space into a dict of ``hp.*`` expressions (flat ``/`` names).

        Example:
            >>> from tunesmith import tune
            >>> space = HyperOptSearch.convert_search_space({"lr": tune.loguniform(1e-4, 1e-1)})
            >>> sorted(space)
            ['lr']
        """
        params = parse_space(spec, "HyperOptSearch", allow_normal=True)
        # Fixed values stay in the space (as on Ray), under their "/" names: the searcher gives them back.
        constants = flatten_dict(_constants_of(spec, params))
        return mark_converted({**constants, **{p.name: HyperOptSearch._expression(p) for p in params}}, params)

    # -- library ----------------------------------------------------------------------
    def _build(self) -> None:
        import hyperopt as hpo
        import numpy as np

        if self._params is not None:
            space = {p.name: self._expression(p) for p in self._params}
        else:
            space = self._native_space
        self._domain = hpo.base.Domain(_identity, space)
        self._trials = hpo.Trials()
        self._rng = np.random.default_rng(self._seed)
        self._algo = functools.partial(hpo.tpe.suggest, n_startup_jobs=self._n_initial_points, gamma=self._gamma)

    def _config_from_vals(self, doc: dict) -> dict:
        import hyperopt as hpo

        vals = doc["misc"]["vals"]
        if self._params is not None:
            raw = {}
            for p in self._params:
                value = vals[p.name][0]
                raw[p.name] = p.choices()[int(value)] if p.kind == "categorical" else value
            return raw
        config = hpo.base.spec_from_misc(doc["misc"])
        ctrl = hpo.base.Ctrl(self._trials, current_trial=doc)
        memo = self._domain.memo_from_config(config)
        hpo.utils.use_obj_for_literal_in_memo(self._domain.expr, ctrl, hpo.base.Ctrl, memo)
        return copy.deepcopy(
            hpo.pyll.rec_eval(self._domain.expr, memo=memo, print_node_on_error=False)
        )

    def _ask(self, trial_id: str):
        trials = self._trials
        new_ids = trials.new_trial_ids(1)
        trials.refresh()
        docs = self._algo(new_ids, self._domain, trials, int(self._rng.integers(2**31 - 1)))
        trials.insert_trial_docs(docs)
        trials.refresh()
        doc = trials._dynamic_trials[-1]
        return doc["tid"], self._config_from_vals(doc)

    def _vals_of(self, params: dict) -> dict:
        if self._params is not None:
            return {p.name: [p.choices().index(params[p.name]) if p.kind == "categorical" else params[p.name]]
                    for p in self._params}
        # A HyperOpt space: values as HyperOpt stores them (choice indices); inactive ones are empty.
        options = self._choice_options()
        return {name: ([_choice_index(name, params[name], options.get(name))] if name in params else [])
                for name in self._domain.params}

    def _choice_options(self) -> dict[str, list]:
        """``{label: options}`` of the hp.choice nodes of a HyperOpt space (an option that is not a
        plain value, such as a nested space, stands as ``_NOT_A_VALUE``)."""
        import hyperopt as hpo

        out = {}
        for node in hpo.pyll.dfs(self._domain.expr):
            if node.name == "switch" and node.pos_args and node.pos_args[0].name == "hyperopt_param":
                label = node.pos_args[0].arg["label"].obj
                out[label] = [a.obj if a.name == "literal" else _NOT_A_VALUE for a in node.pos_args[1:]]
        return out

    def _insert(self, vals: dict) -> int:
        import hyperopt as hpo

        trials = self._trials
        tid = trials.new_trial_ids(1)[0]
        misc = {
            "tid": tid,
            "cmd": self._domain.cmd,
            "workdir": self._domain.workdir,
            "idxs": {k: ([tid] if v else []) for k, v in vals.items()},
            "vals": vals,
        }
        docs = trials.new_trial_docs([tid], [None], [{"status": hpo.STATUS_NEW}], [misc])
        trials.insert_trial_docs(docs)
        trials.refresh()
        return tid

    def _doc(self, tid: int) -> dict:
        for doc in reversed(self._trials._dynamic_trials):
            if doc["tid"] == tid:
                return doc
        raise KeyError(tid)

    def _ask_point(self, trial_id: str, point: dict):
        if self._params is None:
            labels = sorted(self._domain.params)
            unknown = sorted(set(point) - set(labels))
            if unknown:
                raise ValueError(self._bad_point(point, f"it names {unknown}, which are no hp labels", labels))
        tid = self._insert(self._vals_of(point))
        if self._params is None:
            try:
                config = self._config_from_vals(self._doc(tid))
            except (AssertionError, KeyError, IndexError, TypeError) as exc:
                raise ValueError(self._bad_point(
                    point, f"HyperOpt could not evaluate it ({type(exc).__name__}: {exc}); a label of a "
                    "chosen branch is probably missing", labels)) from exc
            point.clear()
            point.update(config)
        return tid

    @staticmethod
    def _bad_point(point: dict, why: str, labels: list) -> str:
        return (
            f"HyperOptSearch: the points_to_evaluate entry {point!r} does not fit the HyperOpt space: {why}. "
            f"With a HyperOpt space a point gives a value for each hp label that its choices make active "
            f"(the space's labels: {labels}), and an hp.choice by its option's value (as on Ray), or by "
            "the option's index where the option is not a plain value."
        )

    def _finish(self, tid: int, value: Any, error: bool) -> None:
        import hyperopt as hpo

        doc = self._doc(tid)
        doc["refresh_time"] = hpo.utils.coarse_utcnow()
        if value is None:
            doc["state"] = hpo.base.JOB_STATE_ERROR
            doc["misc"]["error"] = ("TuneError", "the trial failed" if error else "the trial reported no metric")
        else:
            doc["state"] = hpo.base.JOB_STATE_DONE
            doc["result"] = {"loss": self._sign() * value, "status": hpo.STATUS_OK}
        self._trials.refresh()

    def _tell(self, trial_id, handle, params, value, error, intermediate) -> None:
        self._finish(handle, value, error)

    def _observe(self, params, value, error, pruned, intermediate) -> None:
        if self._params is None:
            raise TypeError(
                "HyperOptSearch adds evaluated points to a Tune search space only: a HyperOpt space's "
                "configurations cannot be mapped back to HyperOpt's values in general. Pass the space as "
                "`param_space` (tune.uniform/choice/...) to warm-start."
            )
        tid = self._insert(self._vals_of(params))
        self._finish(tid, None if error else value, error)


class _NotAValue:
    def __repr__(self) -> str:
        return "<an option that is not a plain value>"


_NOT_A_VALUE = _NotAValue()


def _choice_index(label: str, value: Any, options: list | None) -> Any:
    """The index HyperOpt stores for ``value`` of hp.choice ``label``: its option's position (as Ray reads
    a point's category values); an int that is no option's value is taken as the index itself."""
    if options is None:
        return value  # not a choice: the value itself
    for i, option in enumerate(options):
        if option is not _NOT_A_VALUE and type(option) is type(value) and option == value:
            return i
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(options):
        return value
    raise ValueError(
        f"HyperOptSearch: points_to_evaluate gives {value!r} for hp.choice {label!r}, which is none of its "
        f"options {options!r}."
    )
