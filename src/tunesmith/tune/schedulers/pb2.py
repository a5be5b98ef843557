"""Population Based Bandits: ``PB2``, PBT whose explore step is GP-UCB."""
from __future__ import annotations

import copy
import importlib.util
import math
import random
from typing import TYPE_CHECKING, Any, Callable

from tunesmith.tune.schedulers.pbt import PopulationBasedTraining, _PBTTrialState
from tunesmith.tune.utils.nested import lookup

if TYPE_CHECKING:
    from tunesmith.tune.experiment.trial import Trial

# Only the most recent observations enter the model, which keeps fitting cheap.
_MAX_DATA = 1000
_NUM_CANDIDATES = 2000

_INSTALL_HINT = 'pip install "tunesmith[pb2]"'


def _gp_backend() -> str:
    """``"gpy"`` when GPy is installed, else ``"sklearn"``; ImportError naming the extra otherwise."""
    if importlib.util.find_spec("GPy") is not None:
        return "gpy"
    if importlib.util.find_spec("sklearn") is not None:
        return "sklearn"
    raise ImportError(
        "PB2 fits a Gaussian process and needs scikit-learn (GPy is used when installed). "
        f"Install them with: {_INSTALL_HINT}"
    )


class _GP:
    """A Gaussian process on inputs in [0, 1]^d: ``fit``, ``predict`` (mean, std) and
    ``condition`` (same kernel, more data) for batch-UCB hallucinations."""

    def __init__(self, backend: str):
        self.backend = backend
        self._model = None

    def fit(self, X, y) -> "_GP":
        import numpy as np

        if self.backend == "gpy":
            import GPy

            kern = GPy.kern.RBF(X.shape[1], ARD=False) + GPy.kern.White(X.shape[1], variance=1e-3)
            model = GPy.models.GPRegression(X, y.reshape(-1, 1), kern)
            model.optimize(messages=False)
            self._model = model
        else:
            from sklearn.gaussian_process import GaussianProcessRegressor
            from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

            kernel = ConstantKernel(1.0, (1e-3, 1e3)) * RBF(
                length_scale=np.ones(X.shape[1]), length_scale_bounds=(1e-2, 1e2)
            ) + WhiteKernel(1e-3, (1e-6, 1e0))
            model = GaussianProcessRegressor(kernel=kernel, normalize_y=False, random_state=0)
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(X, y)
            self._model = model
        return self

    def condition(self, X, y) -> "_GP":
        """A GP with this one's fitted kernel, conditioned on (X, y) without refitting."""
        other = _GP(self.backend)
        if self.backend == "gpy":
            import GPy

            import numpy as np

            noise = float(np.asarray(self._model.Gaussian_noise.variance).ravel()[0])
            other._model = GPy.models.GPRegression(X, y.reshape(-1, 1), self._model.kern.copy(), noise_var=noise)
        else:
            from sklearn.gaussian_process import GaussianProcessRegressor

            other._model = GaussianProcessRegressor(kernel=self._model.kernel_, optimizer=None)
            other._model.fit(X, y)
        return other

    def predict(self, X):
        import numpy as np

        if self.backend == "gpy":
            mean, var = self._model.predict(X)
            return mean.ravel(), np.sqrt(np.maximum(var.ravel(), 0.0))
        mean, std = self._model.predict(X, return_std=True)
        return mean.ravel(), std.ravel()


def select_config(
    X,
    y,
    newpoint,
    num_fixed: int,
    pending=None,
    num_candidates: int = _NUM_CANDIDATES,
    backend: str | None = None,
    rng=None,
):
    """GP-UCB: the hyperparameter vector (in [0, 1]^k) maximising mean + κ·std.

    Args:
        X: Observations, shape (n, num_fixed + k); the first ``num_fixed`` columns
            (time, reward before) are context, already scaled to [0, 1], the rest
            the hyperparameters scaled to [0, 1].
        y: The observed reward improvement per unit of time, shape (n,).
        newpoint: The context (time, reward) of the trial being explored.
        num_fixed: Number of context columns.
        pending: Hyperparameter vectors chosen recently for other trials; their
            uncertainty is "hallucinated" away so that a batch spreads out.
    """
    import numpy as np

    rng = rng if rng is not None else np.random.default_rng(random.getrandbits(32))
    backend = backend or _gp_backend()
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    k = X.shape[1] - num_fixed
    std = y.std()
    y_n = (y - y.mean()) / (std if std > 0 else 1.0)
    gp = _GP(backend).fit(X, y_n)
    var_gp = gp
    fixed = np.asarray(newpoint, dtype=float).reshape(1, -1)
    if pending is not None and len(pending):
        pend = np.asarray(pending, dtype=float).reshape(-1, k)
        X_h = np.hstack([np.repeat(fixed, len(pend), axis=0), pend])
        y_h, _ = gp.predict(X_h)
        var_gp = gp.condition(np.vstack([X, X_h]), np.concatenate([y_n, y_h]))
    # Candidates: uniform samples, plus local moves around the best observed configs.
    cand = rng.random((num_candidates, k))
    best = X[np.argsort(-y_n)[: min(10, len(y_n))], num_fixed:]
    local = np.clip(
        np.repeat(best, 20, axis=0) + rng.normal(0, 0.05, (len(best) * 20, k)), 0.0, 1.0
    )
    cand = np.vstack([cand, local])
    full = np.hstack([np.repeat(fixed, len(cand), axis=0), cand])
    mean, _ = gp.predict(full)
    _, sigma = var_gp.predict(full)
    beta = 0.2 + max(0.0, math.log(0.4 * len(X))) if len(X) > 0 else 0.2
    ucb = mean + math.sqrt(beta) * sigma
    return cand[int(np.argmax(ucb))]


def _flat_bounds(bounds: dict, prefix: str = "") -> list[tuple[str, Any]]:
    """``(name, pair)`` of every bound; a dict holds the bounds of nested hyperparameters (``"opt/lr"``)."""
    out = []
    for key, value in bounds.items():
        if isinstance(value, dict):
            out.extend(_flat_bounds(value, f"{prefix}{key}/"))
        else:
            out.append((f"{prefix}{key}", value))
    return out


def _validate_bounds(bounds: Any) -> dict[str, tuple[float, float]]:
    if not isinstance(bounds, dict) or not bounds:
        raise ValueError(
            "PB2 needs `hyperparam_bounds`: a non-empty dict such as {'lr': [1e-4, 1e-1]}; "
            f"got {bounds!r}."
        )
    out = {}
    for key, pair in _flat_bounds(bounds):
        ok = isinstance(pair, (list, tuple)) and len(pair) == 2
        ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair)
        if not ok:
            raise ValueError(
                f"PB2: `hyperparam_bounds[{key!r}]` must be a [low, high] pair of numbers, got {pair!r}."
            )
        low, high = min(pair), max(pair)
        if low == high:
            raise ValueError(f"PB2: `hyperparam_bounds[{key!r}]` has equal ends {pair!r}; give a range.")
        out[key] = (low, high)
    return out


def _uniform_sampler(low: float, high: float, integer: bool) -> Callable[[], Any]:
    if integer:
        return lambda: random.randint(int(low), int(high))
    return lambda: random.uniform(low, high)


def _nested(flat: dict[str, Any]) -> dict:
    """``{"opt/lr": x}`` as ``{"opt": {"lr": x}}``."""
    out: dict = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _assign(config: dict, key: str, value: Any) -> None:
    node = config
    *parents, leaf = key.split("/")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


class PB2(PopulationBasedTraining):
    """Population Based Bandits (Parker-Holder et al., 2020).

    Works like :class:`PopulationBasedTraining` (bottom trials copy the
    checkpoint of a top trial), but the copied config is not perturbed at
    random: a Gaussian process models how fast the reward improved as a
    function of time, reward and hyperparameters, and the new values are those
    maximising its upper confidence bound (GP-UCB) inside
    ``hyperparam_bounds``. Configs chosen for other trials at the same time are
    "hallucinated" so a batch of explorations spreads out.

    Needs scikit-learn (GPy is used when installed): ``pip install "tunesmith[pb2]"``.

    Args:
        time_attr: The result field that measures training progress.
        metric: The result field to optimise. Taken from ``TuneConfig`` when None.
        mode: ``"min"`` or ``"max"``. Taken from ``TuneConfig`` when None.
        perturbation_interval: How much ``time_attr`` passes between perturbations.
        hyperparam_bounds: ``{name: [low, high]}`` for each continuous
            hyperparameter (a dict in place of a pair holds nested ones). A value
            the config lacks is drawn inside the bounds (an int when both ends are
            ints); a value keeps the type it has in the config.
        quantile_fraction: Fraction of the population in the top and bottom quantiles.
        log_config: Write the policy logs (see :class:`PopulationBasedTraining`).
        require_attrs: Raise if a result lacks ``time_attr`` or ``metric``.
        synch: Synchronous mode.
        custom_explore_fn: ``fn(config) -> config`` applied after the GP's choice.

    Example:
        >>> from tunesmith.tune.schedulers.pb2 import PB2
        >>> pb2 = PB2(time_attr="training_iteration", metric="reward", mode="max",
        ...           perturbation_interval=5, hyperparam_bounds={"lr": [1e-4, 1e-1]})
    """

    def __init__(
        self,
        time_attr: str = "time_total_s",
        metric: str | None = None,
        mode: str | None = None,
        perturbation_interval: float = 60.0,
        hyperparam_bounds: dict | None = None,
        quantile_fraction: float = 0.25,
        log_config: bool = True,
        require_attrs: bool = True,
        synch: bool = False,
        custom_explore_fn: Callable[[dict], dict] | None = None,
    ):
        self._backend = _gp_backend()
        bounds = _validate_bounds(hyperparam_bounds)
        self._hyperparam_bounds = bounds
        # A value the config does not have yet is drawn inside its bounds: an int where both ends are
        # ints. Once there, a value keeps its type (a float with bounds [0, 1] stays a float, as on Ray).
        flat = dict(_flat_bounds(hyperparam_bounds))
        samplers = _nested({
            k: _uniform_sampler(lo, hi, all(isinstance(v, int) and not isinstance(v, bool) for v in flat[k]))
            for k, (lo, hi) in bounds.items()
        })
        super().__init__(
            time_attr=time_attr,
            metric=metric,
            mode=mode,
            perturbation_interval=perturbation_interval,
            hyperparam_mutations=samplers,
            quantile_fraction=quantile_fraction,
            resample_probability=0.0,
            custom_explore_fn=custom_explore_fn,
            log_config=log_config,
            require_attrs=require_attrs,
            synch=synch,
        )
        # (trial_id, time, reward, normalised hyperparameters)
        self._data: list[tuple[str, float, float, tuple[float, ...]]] = []
        # Recent choices for other trials: (time, normalised hyperparameters)
        self._recent: list[tuple[float, tuple[float, ...]]] = []

    # -- scaling -------------------------------------------------------------
    def _to_unit(self, config: dict) -> tuple[float, ...]:
        out = []
        for key, (lo, hi) in self._hyperparam_bounds.items():
            value = lookup(config, key, lo)
            out.append(min(max((float(value) - lo) / (hi - lo), 0.0), 1.0))
        return tuple(out)

    def _from_unit(self, vector, like: dict) -> dict[str, Any]:
        """``{name: value}`` for a point of the unit box; a value is an int where ``like`` has an int
        there (as Ray keeps each hyperparameter's type), else a float."""
        out = {}
        for x, (key, (lo, hi)) in zip(vector, self._hyperparam_bounds.items()):
            value = min(max(lo + float(x) * (hi - lo), lo), hi)
            current = lookup(like, key)
            out[key] = int(round(value)) if isinstance(current, int) and not isinstance(current, bool) else value
        return out

    # -- hooks -------------------------------------------------------------------
    def _record_result(self, trial: "Trial", time: float, score: float) -> None:
        self._data.append((trial.trial_id, float(time), float(score), self._to_unit(trial.config)))
        if len(self._data) > 4 * _MAX_DATA:
            del self._data[: len(self._data) - 2 * _MAX_DATA]

    def _training_set(self):
        """Rows (time, reward before, hyperparameters) and the reward change per unit of time."""
        last: dict[tuple, tuple[float, float]] = {}
        rows, ys = [], []
        for trial_id, time, reward, hp in sorted(self._data[-_MAX_DATA * 2 :], key=lambda r: r[1]):
            key = (trial_id, hp)
            prev = last.get(key)
            last[key] = (time, reward)
            if prev is None or time - prev[0] <= 0:
                continue
            rows.append((time, prev[1]) + hp)
            ys.append((reward - prev[1]) / (time - prev[0]))
        return rows[-_MAX_DATA:], ys[-_MAX_DATA:]

    def _explore_config(self, trial: "Trial", donor: "Trial", donor_state: _PBTTrialState) -> dict:
        import numpy as np

        new_config = copy.deepcopy(donor.config)
        time = float(donor_state.last_train_time)
        reward = donor_state.last_score if donor_state.last_score is not None else 0.0
        rows, ys = self._training_set()
        k = len(self._hyperparam_bounds)
        if len(rows) >= 2:
            X = np.asarray(rows, dtype=float)
            ctx = X[:, :2]
            point = np.array([time, reward], dtype=float)
            lo = np.minimum(ctx.min(axis=0), point)
            span = np.maximum(ctx.max(axis=0), point) - lo
            span[span == 0] = 1.0
            X[:, :2] = (ctx - lo) / span
            newpoint = (point - lo) / span
            horizon = time - self._perturbation_interval
            pending = [hp for t, hp in self._recent if t >= horizon]
            vector = select_config(X, np.asarray(ys), newpoint, 2, pending=pending or None, backend=self._backend)
        else:
            # Too little data for a model: draw uniformly inside the bounds.
            vector = [random.random() for _ in range(k)]
        for key, value in self._from_unit(vector, donor.config).items():
            _assign(new_config, key, value)
        unit = self._to_unit(new_config)
        self._recent.append((time, unit))
        if len(self._recent) > 256:
            del self._recent[:128]
        # The recipient's next improvement is measured from the donor's reward.
        self._data.append((trial.trial_id, time, float(reward), unit))
        if self._custom_explore_fn is not None:
            new_config = self._custom_explore_fn(new_config)
            if not isinstance(new_config, dict):
                raise ValueError(
                    f"PB2's custom_explore_fn must return the new config dict, got {type(new_config).__name__}."
                )
        return new_config

    # -- state ----------------------------------------------------------------------
    def _state_settings(self) -> dict[str, Any]:
        bounds = {k: [lo, hi] for k, (lo, hi) in self._hyperparam_bounds.items()}
        return {**super()._state_settings(), "hyperparam_bounds": bounds}

    def get_state(self) -> dict:
        """PBT's state plus the observations the Gaussian process is fitted to."""
        state = super().get_state()
        state["data"] = [[tid, t, r, list(hp)] for tid, t, r, hp in self._data]
        state["recent"] = [[t, list(hp)] for t, hp in self._recent]
        return state

    def set_state(self, state: dict, trials) -> None:
        """Restores the population as PBT does; the observations are kept whole (they are the
        model's data, also from trials that ended)."""
        super().set_state(state, trials)
        self._data = [(tid, float(t), float(r), tuple(hp)) for tid, t, r, hp in state["data"]]
        self._recent = [(float(t), tuple(hp)) for t, hp in state["recent"]]

    def debug_string(self) -> str:
        return "PB2: {} checkpoints, {} perturbs".format(self._num_checkpoints, self._num_perturbations)


__all__ = ["PB2", "select_config"]
